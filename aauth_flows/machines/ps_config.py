"""How a host configures its Person Server machines (never part of a snapshot)."""

from __future__ import annotations

from attrs import field, frozen

from aauth_core.identifiers import ServerId
from aauth_core.token_cache import VerifiedTokenCache
from aauth_core.tokens.verify import KeyResolver, TokenPolicy
from aauth_flows.machines.ps_store import PsStore
from aauth_flows.machines.signing import SigningKey

__all__ = ["PersonServerConfig"]


def _server_id(_inst: object, _attr: object, value: str) -> None:
    if str(ServerId.parse(value)) != value:
        raise ValueError(f"{value!r} is not a server identifier")


@frozen(kw_only=True)
class PersonServerConfig:
    """The host's configuration of its PS machines (never part of a snapshot).

    ``sub_secret`` keys the directed ``sub`` (HMAC-SHA-256 of person and resource, the
    minimal-PS appendix). ``pending_base`` is the prefix of pending URLs (same origin),
    ``interaction_url`` the page the person opens with the code. ``callback_base`` is the
    prefix of the URL a resource's own interaction sends the person back to (§5.4; default
    ``{issuer}/callback/``); ``interaction_origins`` admits resource interaction URLs on
    origins other than the resource's own (egress admission, §8). ``token_exchange``
    turns on the RFC 8693 form binding of ``auth_token_endpoint`` (off by default: a form
    request is then ``invalid_request`` 400).
    """

    issuer: str = field(validator=_server_id)
    signing_key: SigningKey
    keys: KeyResolver
    store: PsStore
    sub_secret: bytes = field(repr=False)
    pending_base: str
    interaction_url: str
    token_lifetime: int = 3600
    pending_lifetime: int = 600
    retry_after: int = 5
    max_clarifications: int = 5
    max_code_failures: int = 3
    max_body: int = 64 * 1024
    signature_window: int = 60
    token_exchange: bool = False
    policy: TokenPolicy = field(factory=TokenPolicy)
    callback_base: str | None = None
    interaction_origins: frozenset[str] = field(default=frozenset(), converter=frozenset)
    #: Verified agent tokens kept between requests (a bounded memo of pure verification;
    #: revocation is still asked on every request).
    token_cache: VerifiedTokenCache = field(factory=VerifiedTokenCache, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if not 0 < self.token_lifetime <= 3600:
            raise ValueError("person and auth tokens live at most one hour")
        if not self.pending_base.startswith(self.issuer + "/"):
            raise ValueError("pending URLs are on the PS's own origin")
        if self.callback_base is not None and not self.callback_base.startswith(self.issuer + "/"):
            raise ValueError("callback URLs are on the PS's own origin")

    def callback_url(self, callback_id: str) -> str:
        """Where a resource's own interaction sends the person back (§5.4)."""
        base = self.callback_base if self.callback_base is not None else self.issuer + "/callback/"
        return base + callback_id
