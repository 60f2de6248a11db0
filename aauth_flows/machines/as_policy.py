"""The Access Server's configuration: who it trusts, what it remembers, how it decides.

Cross-request state (issued auth tokens, revocations) is not kept in a machine: the
machines read it through the small read-only Protocols here and write it with actions
(:class:`RecordIssued`, :class:`RecordRevocation`) that the driver applies.
:class:`InMemoryAccessServerStore` implements both sides for tests and the embedded
default.

The policy is a Protocol too: given what was verified (the signing PS, the agent and
its posture claims, the resource token, the claims the PS released, a clarification
answer), it returns a :class:`Decision`. Facts that change while a request is pending
(the user bound their PS at the AS, a payment settled) live in the policy's own store:
each poll asks it again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from attrs import field, frozen

from aauth_core.headers.requirement import validate_interaction_code, validate_interaction_url
from aauth_core.identifiers import ServerId
from aauth_core.tokens.claims import AgentTokenClaims, ResourceTokenClaims, TokenType
from aauth_core.tokens.verify import DEFAULT_POLICY, KeyResolver, TokenPolicy
from aauth_core.urls import https_url
from aauth_flows.machines.actions import RecordRevocation
from aauth_flows.machines.engine import Action
from aauth_flows.machines.signing import SigningKey

__all__ = [
    "IssuedAuthToken",
    "RecordIssued",
    "RecordRevocation",
    "PersonServerDirectory",
    "StaticPersonServers",
    "RevocationLookup",
    "IssuedLookup",
    "ResourceDirectory",
    "StaticResourceDirectory",
    "InMemoryAccessServerStore",
    "PolicyRequest",
    "Grant",
    "RequireClaims",
    "RequireInteraction",
    "RequireApproval",
    "RequireClarification",
    "RequirePayment",
    "Deny",
    "Decision",
    "AccessPolicy",
    "AccessServerConfig",
]


# -- records and the actions that write them -------------------------------------------


@frozen(kw_only=True)
class IssuedAuthToken:
    """What the AS retains per auth token (-11 §7.6): until ``exp`` + skew."""

    jti: str
    resource: str
    exp: int
    presented_jti: str
    ps: str


@frozen(kw_only=True)
class RecordIssued(Action):
    """Store ``record`` (emitted only with the 200 that delivers the token)."""

    record: IssuedAuthToken


# -- read-only lookups -------------------------------------------------------------------


class PersonServerDirectory(Protocol):
    """Which Person Servers this AS deals with (pre-established or admitted trust)."""

    def is_admitted(self, issuer: str) -> bool: ...


@frozen
class StaticPersonServers:
    issuers: frozenset[str]

    def is_admitted(self, issuer: str) -> bool:
        return issuer in self.issuers


class RevocationLookup(Protocol):
    def is_revoked(self, iss: str, jti: str) -> bool: ...


class IssuedLookup(Protocol):
    def issued_against(self, ps: str, presented_jti: str) -> tuple[IssuedAuthToken, ...]:
        """The auth tokens this AS issued for ``ps`` naming ``presented_jti``."""
        ...


class ResourceDirectory(Protocol):
    """Where a resource takes revocations: its metadata's ``revocation_endpoint`` (None:
    it has none, and the AS's auth tokens there live until ``exp``)."""

    def revocation_endpoint(self, resource: str) -> str | None: ...


@frozen
class StaticResourceDirectory:
    endpoints: Mapping[str, str] = field(factory=dict)

    def revocation_endpoint(self, resource: str) -> str | None:
        return self.endpoints.get(resource)


class InMemoryAccessServerStore:
    """Issued-token and revocation records in memory; :meth:`apply` runs the record
    actions (a repeated record changes nothing)."""

    def __init__(self) -> None:
        self.issued: dict[str, IssuedAuthToken] = {}
        self.revoked: dict[tuple[str, str], int] = {}

    def is_revoked(self, iss: str, jti: str) -> bool:
        return (iss, jti) in self.revoked

    def issued_against(self, ps: str, presented_jti: str) -> tuple[IssuedAuthToken, ...]:
        return tuple(
            r for r in self.issued.values() if r.ps == ps and r.presented_jti == presented_jti
        )

    def apply(self, action: Action) -> bool:
        """Apply a record action; False for any other action."""
        if isinstance(action, RecordIssued):
            if action.record.jti in self.issued:
                raise ValueError(f"auth token {action.record.jti} is recorded twice")
            self.issued[action.record.jti] = action.record
            return True
        if isinstance(action, RecordRevocation):
            self.revoked.setdefault((action.iss, action.jti), action.exp)
            return True
        return False


# -- the policy ---------------------------------------------------------------------------


@frozen(kw_only=True)
class PolicyRequest:
    """What the AS verified, for its policy to decide on."""

    ps: str
    agent: AgentTokenClaims
    subagent: AgentTokenClaims | None
    resource: ResourceTokenClaims
    presented_type: TokenType
    claims: Mapping[str, Any] = field(factory=dict)
    clarification_answer: str | None = None
    #: agent-asserted Markdown from an ``updated_request`` (attribute it; never decide on
    #: it alone, -11 §7.4)
    justification: str | None = None
    pending_url: str | None = None
    at: int


@frozen(kw_only=True)
class Grant:
    """Issue an auth token: ``scope`` (⊆ the resource token's; default: all of it),
    extra claims to carry (e.g. the released ``email``), a shorter ``lifetime``."""

    scope: str | None = None
    claims: Mapping[str, Any] = field(factory=dict)
    lifetime: int | None = None


def _no_sub(_inst: object, _attr: object, value: tuple[str, ...]) -> None:
    if "sub" in value:
        raise ValueError("an AS never requests sub (-11 §5.5): the presented token has it")
    if not value or not all(isinstance(n, str) and n for n in value):
        raise ValueError("required_claims is a non-empty list of claim names")


@frozen(kw_only=True)
class RequireClaims:
    """202 ``requirement=claims``: the PS must POST these identity claims."""

    names: tuple[str, ...] = field(converter=tuple, validator=_no_sub)


def _interaction_url(_inst: object, _attr: object, value: str) -> None:
    validate_interaction_url(value)


def _interaction_code(_inst: object, _attr: object, value: str) -> None:
    validate_interaction_code(value)


@frozen(kw_only=True)
class RequireInteraction:
    """202 ``requirement=interaction`` (e.g. the user binds their PS at the AS)."""

    url: str = field(validator=_interaction_url)
    code: str = field(validator=_interaction_code)


@frozen(kw_only=True)
class RequireApproval:
    """202 ``requirement=approval``: decided elsewhere; the PS polls."""


@frozen(kw_only=True)
class RequireClarification:
    """202 ``requirement=clarification`` with ``question`` in the body."""

    question: str


@frozen(kw_only=True)
class RequirePayment:
    """402 with the payment details (headers such as ``WWW-Authenticate: Payment …``,
    and a body) and the pending ``Location``."""

    headers: Mapping[str, str] = field(factory=dict)
    body: Mapping[str, Any] = field(factory=dict)


@frozen(kw_only=True)
class Deny:
    """403: insufficient trust or policy refusal."""

    detail: str = "the Access Server does not grant this request"


Decision = (
    Grant
    | RequireClaims
    | RequireInteraction
    | RequireApproval
    | RequireClarification
    | RequirePayment
    | Deny
)


class AccessPolicy(Protocol):
    def decide(self, request: PolicyRequest) -> Decision: ...


# -- configuration --------------------------------------------------------------------


def _server_id(_inst: object, attr: Any, value: str) -> None:
    if str(ServerId.parse(value)) != value:  # pragma: no cover - parse is exact
        raise ValueError(f"{attr.name} is not a server identifier")


def _https(_inst: object, attr: Any, value: str) -> None:
    https_url(value, what=attr.name, allow_query=False, allow_fragment=False)
    if value.endswith("/"):
        raise ValueError(f"{attr.name} must not end with '/'")


@frozen(kw_only=True)
class AccessServerConfig:
    """The AS: its issuer and key, its pending URL base (same origin, unguessable ids
    appended), the keys of everyone whose tokens or signatures it checks (PS JWKS under
    ``aauth-person.json``, APs, resources, other ASes), its stores and its policy."""

    issuer: str = field(validator=_server_id)
    signing_key: SigningKey
    pending_base: str = field(validator=_https)
    keys: KeyResolver
    person_servers: PersonServerDirectory
    policy: AccessPolicy
    revocations: RevocationLookup
    issued: IssuedLookup
    known_resources: frozenset[str] = frozenset()
    #: the resources' revocation endpoints, for the cascade of §7.6
    resources: ResourceDirectory = field(factory=StaticResourceDirectory)
    window: int = 60
    token_lifetime: int = 3600
    retry_after: int = 5
    token_policy: TokenPolicy = DEFAULT_POLICY

    def __attrs_post_init__(self) -> None:
        if not self.pending_base.startswith(self.issuer + "/"):
            raise ValueError("pending URLs are on the Access Server's own origin")
        if not 0 < self.token_lifetime <= 3600:
            raise ValueError("auth tokens live at most one hour")
