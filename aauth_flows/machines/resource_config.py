"""What a resource server configures: routes and their access modes, the policy hook, the
read-only lookups of its cross-request state, and the verified principals its handlers see.

Cross-request state (revocations, session records, pending records) is never kept in a
machine: machines read it through the small Protocols here and write it by emitting the
record actions of :mod:`aauth_flows.machines.resource_actions`, which the driver applies.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Protocol

from attrs import field, frozen

from aauth_core.headers.requirement import validate_interaction_url
from aauth_core.http import HttpRequest
from aauth_core.httpsig import DEFAULT_WINDOW
from aauth_core.identifiers import AgentId, ServerId
from aauth_core.requests import RequestVerifier
from aauth_core.token_cache import VerifiedTokenCache
from aauth_core.tokens.claims import ResourceInteraction, ResourceTokenClaims
from aauth_core.tokens.verify import KeyResolver
from aauth_flows.machines.signing import SigningKey

__all__ = [
    "AccessMode",
    "Route",
    "Verdict",
    "Decision",
    "SessionRecord",
    "AgentPrincipal",
    "PersonPrincipal",
    "AuthorizedPrincipal",
    "Principal",
    "Policy",
    "AllowAll",
    "RevocationLookup",
    "SessionLookup",
    "TokenInteraction",
    "ResourceConfig",
    "RANDOM_BYTES",
]

#: Random bytes a request event must carry (resource token ``jti``, pending id,
#: interaction code, session token are all cut from them).
RANDOM_BYTES = 80


class AccessMode(enum.StrEnum):
    """What a route requires (protocol -11 §6.1-§6.5)."""

    AGENT = "agent"  # §6.1: the agent token
    RESOURCE_MANAGED = "resource-managed"  # §6.2: agent token + the resource's session token
    PERSON = "person"  # §6.3: a person token (or an auth token, which names the person too)
    AUTHORIZATION = "authorization"  # §6.4 / §6.5: an auth token from the PS or the AS


def _methods(value: Iterable[str] | None) -> frozenset[str] | None:
    return None if value is None else frozenset(m.upper() for m in value)


def _check_path(_inst: object, _attr: object, value: str) -> None:
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError("a route path is a prefix starting with '/'")


@frozen(kw_only=True)
class Route:
    """A route: requests whose path starts with ``path`` (and whose method is one of
    ``methods``; None = any) need ``mode``. ``scope`` (space-separated) is what an auth
    token must grant here; ``deferred`` holds the invocation (202 ``auth-token``) instead
    of answering 401 when a person token arrives (§6.4 step 6)."""

    path: str = field(validator=_check_path)
    mode: AccessMode = field(converter=AccessMode)
    methods: frozenset[str] | None = field(default=None, converter=_methods)
    scope: str | None = None
    deferred: bool = False

    def matches(self, method: str, path: str) -> bool:
        if self.methods is not None and method.upper() not in self.methods:
            return False
        return path == self.path or path.startswith(self.path.rstrip("/") + "/")

    @property
    def scopes(self) -> frozenset[str]:
        return frozenset((self.scope or "").split())


class Verdict(enum.Enum):
    """What the policy hook decides."""

    ALLOW = "allow"
    DENY = "deny"  # 403, no signature headers
    REQUIRE_PERSON = "require_person"  # 401 requirement=person-token
    REQUIRE_AUTH = "require_auth"  # 401 requirement=auth-token + a resource token for ``scope``
    REQUIRE_INTERACTION = (
        "require_interaction"  # 202 requirement=interaction (the resource's own flow)
    )
    INVALID_ACCOUNT = "invalid_account"  # authorization endpoint: the person holds no such account


@frozen(kw_only=True)
class Decision:
    verdict: Verdict = field(converter=Verdict)
    scope: str | None = None
    detail: str = ""

    @classmethod
    def allow(cls) -> Decision:
        return cls(verdict=Verdict.ALLOW)

    @classmethod
    def deny(cls, detail: str = "denied by policy") -> Decision:
        return cls(verdict=Verdict.DENY, detail=detail)

    @classmethod
    def require_person(cls) -> Decision:
        return cls(verdict=Verdict.REQUIRE_PERSON)

    @classmethod
    def require_auth(cls, scope: str) -> Decision:
        return cls(verdict=Verdict.REQUIRE_AUTH, scope=scope)

    @classmethod
    def invalid_account(cls) -> Decision:
        return cls(verdict=Verdict.INVALID_ACCOUNT)

    @classmethod
    def require_interaction(cls, scope: str | None = None) -> Decision:
        return cls(verdict=Verdict.REQUIRE_INTERACTION, scope=scope)


@frozen(kw_only=True)
class SessionRecord:
    """What the resource remembers about a session token (looked up by the token's
    SHA-256 digest; the token itself is never stored)."""

    agent_jkt: str  # the session is useless without this key's signature
    agent_issuer: str | None = None  # the agent token's iss and sub, when one was presented
    agent: str | None = None
    scope: str | None = None
    issued_at: int
    expires_at: int


@frozen(kw_only=True)
class AgentPrincipal:
    """An agent token verified (§6.1); ``session`` when a valid session token came too."""

    issuer: str
    agent: AgentId
    key_thumbprint: str
    session: SessionRecord | None = None


@frozen(kw_only=True)
class PersonPrincipal:
    """A person token verified (§6.3): the person is ``(issuer, sub)``."""

    issuer: str
    sub: str
    jti: str
    exp: int
    key_thumbprint: str
    mission_s256: str | None = None
    tenant: str | None = None

    @property
    def person(self) -> tuple[str, str]:
        return (self.issuer, self.sub)


@frozen(kw_only=True)
class AuthorizedPrincipal:
    """An auth token verified (§6.4/§6.5): the person is ``(ps, sub)``, ``scopes`` and
    ``account`` what the PS or AS granted."""

    issuer: str
    ps: str
    sub: str
    jti: str
    exp: int
    key_thumbprint: str
    scopes: frozenset[str] = frozenset()
    account: str | None = None
    mission_s256: str | None = None
    tenant: str | None = None

    @property
    def person(self) -> tuple[str, str]:
        return (self.ps, self.sub)


Principal = AgentPrincipal | PersonPrincipal | AuthorizedPrincipal


class Policy(Protocol):
    """The resource's own rules, asked after the route's mode is satisfied."""

    def decide(self, principal: Principal, route: Route, request: HttpRequest) -> Decision:
        """200 (ALLOW), 403 (DENY) or an escalation for a protected call."""
        ...

    def authorize(self, principal: PersonPrincipal, scope: str, account: str | None) -> Decision:
        """The authorization endpoint (§5.2): ALLOW (resource token), DENY,
        REQUIRE_INTERACTION (the resource's own consent) or INVALID_ACCOUNT."""
        ...


class AllowAll:
    """A policy that allows whatever the route's mode admits."""

    def decide(self, principal: Principal, route: Route, request: HttpRequest) -> Decision:
        return Decision.allow()

    def authorize(self, principal: PersonPrincipal, scope: str, account: str | None) -> Decision:
        return Decision.allow()


class RevocationLookup(Protocol):
    def is_revoked(self, iss: str, jti: str) -> bool: ...


class SessionLookup(Protocol):
    def session(self, digest: str) -> SessionRecord | None: ...


class TokenInteraction(Protocol):
    """The resource's own user flow before the PS's consent (§2.5 ``interaction``, §5.4),
    asked once per resource token minted. It returns the https URL of the resource's
    interaction page and a code for this token (the host's page keeps what it needs to
    recognise the code and MUST redirect the person to the ``callback`` it is given), or
    None when no flow of its own is needed."""

    def interaction(
        self, presented: PersonPrincipal | AuthorizedPrincipal, scope: str | None, jti: str
    ) -> ResourceInteraction | None: ...


def _server_id(_inst: object, _attr: object, value: str | None) -> None:
    if value is not None:
        ServerId.parse(value)


def _required_server_id(_inst: object, _attr: object, value: str) -> None:
    ServerId.parse(value)


def _check_interaction_url(_inst: object, _attr: object, value: str) -> None:
    validate_interaction_url(value)


def _check_lifetime(_inst: object, _attr: object, value: int) -> None:
    if not 0 < value <= ResourceTokenClaims.ISSUE_LIFETIME:
        raise ValueError(f"resource tokens live at most {ResourceTokenClaims.ISSUE_LIFETIME} s")


@frozen(kw_only=True)
class ResourceConfig:
    """A resource server's frozen configuration (never part of a snapshot).

    ``keys`` resolves token issuers (AP, PS, AS); ``server_keys`` resolves servers that
    sign revocation requests with the ``jwks_uri`` scheme (defaults to ``keys``).
    ``access_server`` set = four-party: resource tokens name it as ``aud`` and only auth
    tokens it issued are accepted. ``token_interaction`` (optional) puts ``interaction``
    in resource tokens when the resource needs its own user flow first. ``pending_base`` is the prefix of pending URLs (same
    origin as ``issuer``).
    """

    issuer: str = field(validator=_required_server_id)
    signing_key: SigningKey
    keys: KeyResolver
    routes: tuple[Route, ...] = field(converter=tuple)
    revocations: RevocationLookup
    sessions: SessionLookup
    interaction_url: str = field(validator=_check_interaction_url)
    pending_base: str
    policy: Policy = field(factory=AllowAll)
    access_server: str | None = field(default=None, validator=_server_id)
    scope_descriptions: frozenset[str] = field(default=frozenset(), converter=frozenset)
    server_keys: KeyResolver | None = None
    revocation_issuers: frozenset[str] | None = None
    window: int = DEFAULT_WINDOW
    retry_after: int = 5
    pending_lifetime: int = 600
    resource_token_lifetime: int = field(default=300, validator=_check_lifetime)
    session_lifetime: int = 3600
    session_refresh_margin: int = 300
    max_code_attempts: int = 5
    token_interaction: TokenInteraction | None = None
    #: Verified agent, person and auth tokens kept between calls (a memo of pure
    #: verification, bounded, each entry expiring with its token; revocation is still
    #: asked on every call), so a repeat caller costs one signature check, not two.
    token_cache: VerifiedTokenCache = field(factory=VerifiedTokenCache, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if not self.pending_base.startswith(self.issuer + "/"):
            raise ValueError("pending URLs must be on the resource's own origin")

    def route_for(self, method: str, path: str) -> Route | None:
        for route in self.routes:
            if route.matches(method, path):
                return route
        return None

    def pending_url(self, pending_id: str) -> str:
        return self.pending_base + pending_id

    def verifier(self) -> RequestVerifier:
        """The request verifier for agent-signed calls (revocations checked on every call)."""
        return RequestVerifier(
            keys=self.keys,
            audience=self.issuer,
            window=self.window,
            cache=self.token_cache,
            is_revoked=self.revocations.is_revoked,
        )
