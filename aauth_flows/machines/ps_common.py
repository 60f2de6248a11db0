"""What every Person Server machine shares: configuration, the read-only store protocol,
record actions, the person's events, and the response builders.

Cross-request state (bindings, consents, issued tokens, revocations, missions, replay
keys) is never kept in a machine: machines *read* it through :class:`PsStore` and *write*
it by emitting ``Record…`` actions that the driver applies (:class:`InMemoryPsStore.apply`
does it for the in-memory store). A rejected request emits no record action; a repeated
one is refused by the lookup.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, TypeVar

from attrs import field, frozen

from aauth_core.b64 import b64url_encode
from aauth_core.errors import AAuthError, MalformedInput, SignatureFailure
from aauth_core.headers.requirement import Requirement
from aauth_core.headers.signature_error import signature_error_headers
from aauth_core.http import HttpRequest, HttpResponse
from aauth_core.identifiers import ServerId
from aauth_core.strict_json import load_json_object
from aauth_core.tokens.verify import KeyResolver, TokenPolicy
from aauth_flows.machines.actions import RecordRevocation
from aauth_flows.machines.engine import Action, Event, Step
from aauth_flows.machines.signing import SigningKey

__all__ = [
    "IssuedKind",
    "IssuedRecord",
    "MissionRecord",
    "PsStore",
    "InMemoryPsStore",
    "PersonServerConfig",
    "RecordIssued",
    "RecordConsent",
    "RecordGrant",
    "RecordBinding",
    "RecordRequestSeen",
    "RecordRevocation",
    "RecordAgentToken",
    "RecordDownstreamOutcome",
    "RequestArrived",
    "PendingRequest",
    "InteractionArrived",
    "Decision",
    "PersonDecided",
    "PersonAsked",
    "CodeRefused",
    "DecisionRefused",
    "ConsentPrompt",
    "ConsentMode",
    "ResourceCallback",
    "RedirectPerson",
    "CALLBACK_ERRORS",
    "callback_outcome",
    "not_found",
    "directed_sub",
    "problem",
    "json_response",
    "pending_response",
    "gone",
    "parse_json_body",
    "RANDOM_BYTES",
    "step",
]

St = TypeVar("St", bound=enum.Enum)
Dt = TypeVar("Dt")

#: Random bytes a request event carries: 16 for the ``jti``, 16 for the pending URL,
#: 8 for the interaction code (5 used), 16 for the callback URL of a resource interaction.
RANDOM_BYTES = 56


# -- records ------------------------------------------------------------------------------


class IssuedKind(enum.Enum):
    PERSON = "person"
    AUTH = "auth"
    #: An auth token an AS issued against a person token this PS presented to it.
    FEDERATED_AUTH = "federated-auth"


@frozen(kw_only=True)
class IssuedRecord:
    """A token this PS issued (or obtained from an AS): kept until ``exp`` + skew."""

    kind: IssuedKind
    jti: str
    iss: str
    aud: str
    exp: int
    agent_iss: str
    agent_sub: str
    person: str
    #: The directed person identifier the token carries.
    sub: str
    #: For a federated auth token: the person token presented to the AS.
    presented_jti: str | None = None
    #: For a person token issued against an ``upstream_token``: its ``(iss, jti)``.
    upstream: tuple[str, str] | None = None


@frozen(kw_only=True)
class MissionRecord:
    """What the PS knows of a mission (§2.8, §6.6)."""

    s256: str
    agent_iss: str
    agent_sub: str
    active: bool = True
    expires_at: int | None = None
    termination_reason: str | None = None


class PsStore(Protocol):
    """Read-only lookups a PS machine makes (writes are ``Record…`` actions)."""

    def person_for_agent(self, agent_iss: str, agent_sub: str) -> str | None: ...
    def has_person_consent(
        self, person: str, agent_iss: str, agent_sub: str, resource: str
    ) -> bool: ...
    def has_grant(
        self, person: str, resource: str, scope: str | None, mission_s256: str | None
    ) -> bool: ...
    def can_reach(self, person: str) -> bool: ...
    def is_revoked(self, iss: str, jti: str) -> bool: ...
    def mission(self, s256: str) -> MissionRecord | None: ...
    def request_seen(self, replay_key: str) -> bool: ...
    def person_for_directed(self, aud: str, sub: str) -> str | None: ...
    def issued_to_agent(self, agent_iss: str, agent_sub: str) -> tuple[IssuedRecord, ...]: ...
    def agent_token_sub(self, iss: str, jti: str) -> str | None: ...
    def accepts_revocations_from(self, iss: str) -> bool: ...
    def revocation_endpoint(self, server: str) -> str | None: ...


@frozen(kw_only=True)
class RecordIssued(Action):
    record: IssuedRecord


@frozen(kw_only=True)
class RecordConsent(Action):
    """The person let ``agent`` act at ``resource`` as them (person tokens)."""

    person: str
    agent_iss: str
    agent_sub: str
    resource: str


@frozen(kw_only=True)
class RecordGrant(Action):
    """The person granted ``scope`` at ``resource`` (within ``mission_s256``)."""

    person: str
    resource: str
    scope: str | None
    mission_s256: str | None


@frozen(kw_only=True)
class RecordBinding(Action):
    """First consent bound the agent to the approving person (§7.2)."""

    agent_iss: str
    agent_sub: str
    person: str


@frozen(kw_only=True)
class RecordRequestSeen(Action):
    """A signed request was accepted: refuse a replay of it until ``until``."""

    replay_key: str
    until: int


@frozen(kw_only=True)
class RecordAgentToken(Action):
    """An agent token the PS accepted: lets an AP's revocation find the agent (§7.6)."""

    iss: str
    jti: str
    sub: str
    exp: int


@frozen(kw_only=True)
class RecordDownstreamOutcome(Action):
    """A cascade revocation at ``recipient`` ended with ``outcome`` (``None`` = done;
    ``revocation_unsupported`` / ``revocation_unavailable`` otherwise)."""

    recipient: str
    jti: str
    outcome: str | None


@frozen
class InMemoryPsStore:
    """The in-memory :class:`PsStore`; :meth:`apply` is the driver's writer."""

    bindings: dict[tuple[str, str], str] = field(factory=dict)
    consents: set[tuple[str, str, str, str]] = field(factory=set)
    grants: set[tuple[str, str, str | None, str | None]] = field(factory=set)
    reachable: set[str] = field(factory=set)
    revoked: dict[tuple[str, str], int] = field(factory=dict)
    missions: dict[str, MissionRecord] = field(factory=dict)
    seen: dict[str, int] = field(factory=dict)
    directed: dict[tuple[str, str], str] = field(factory=dict)
    issued: list[IssuedRecord] = field(factory=list)
    agent_tokens: dict[tuple[str, str], str] = field(factory=dict)
    revocation_issuers: set[str] = field(factory=set)
    revocation_endpoints: dict[str, str] = field(factory=dict)
    downstream: list[RecordDownstreamOutcome] = field(factory=list)

    def person_for_agent(self, agent_iss: str, agent_sub: str) -> str | None:
        return self.bindings.get((agent_iss, agent_sub))

    def has_person_consent(
        self, person: str, agent_iss: str, agent_sub: str, resource: str
    ) -> bool:
        return (person, agent_iss, agent_sub, resource) in self.consents

    def has_grant(
        self, person: str, resource: str, scope: str | None, mission_s256: str | None
    ) -> bool:
        return (person, resource, scope, mission_s256) in self.grants

    def can_reach(self, person: str) -> bool:
        return person in self.reachable

    def is_revoked(self, iss: str, jti: str) -> bool:
        return (iss, jti) in self.revoked

    def mission(self, s256: str) -> MissionRecord | None:
        return self.missions.get(s256)

    def request_seen(self, replay_key: str) -> bool:
        return replay_key in self.seen

    def person_for_directed(self, aud: str, sub: str) -> str | None:
        return self.directed.get((aud, sub))

    def issued_to_agent(self, agent_iss: str, agent_sub: str) -> tuple[IssuedRecord, ...]:
        return tuple(
            r for r in self.issued if r.agent_iss == agent_iss and r.agent_sub == agent_sub
        )

    def agent_token_sub(self, iss: str, jti: str) -> str | None:
        return self.agent_tokens.get((iss, jti))

    def accepts_revocations_from(self, iss: str) -> bool:
        return iss in self.revocation_issuers

    def revocation_endpoint(self, server: str) -> str | None:
        return self.revocation_endpoints.get(server)

    def apply(self, action: Action) -> bool:
        """Apply a record action; False for any other action (the driver's business)."""
        if isinstance(action, RecordIssued):
            self.issued.append(action.record)
            self.directed[(action.record.aud, action.record.sub)] = action.record.person
        elif isinstance(action, RecordConsent):
            self.consents.add((action.person, action.agent_iss, action.agent_sub, action.resource))
        elif isinstance(action, RecordGrant):
            self.grants.add((action.person, action.resource, action.scope, action.mission_s256))
        elif isinstance(action, RecordBinding):
            self.bindings.setdefault((action.agent_iss, action.agent_sub), action.person)
        elif isinstance(action, RecordRequestSeen):
            self.seen[action.replay_key] = action.until
        elif isinstance(action, RecordRevocation):
            self.revoked[(action.iss, action.jti)] = action.exp
        elif isinstance(action, RecordAgentToken):
            self.agent_tokens[(action.iss, action.jti)] = action.sub
        elif isinstance(action, RecordDownstreamOutcome):
            self.downstream.append(action)
        else:
            return False
        return True


# -- configuration ------------------------------------------------------------------------


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


# -- the person's events and the consent UI's actions ------------------------------------


@frozen(kw_only=True)
class RequestArrived(Event):
    """A signed request at a PS endpoint; ``random`` is CSPRNG bytes (at least
    :data:`RANDOM_BYTES`) for the token ``jti``, the pending URL and the interaction code."""

    request: HttpRequest
    at: int
    random: bytes = field(repr=False)

    def __attrs_post_init__(self) -> None:
        if len(self.random) < RANDOM_BYTES:
            raise ValueError(f"a request event needs {RANDOM_BYTES} random bytes")


@frozen(kw_only=True)
class PendingRequest(Event):
    """A signed request at this machine's pending URL: ``GET`` polls, ``POST`` answers a
    clarification, ``DELETE`` cancels."""

    request: HttpRequest
    at: int


@frozen(kw_only=True)
class InteractionArrived(Event):
    """The person, authenticated at the PS, entered (or arrived with) ``code``."""

    code: str
    at: int


class ConsentMode(enum.Enum):
    """How the PS reaches the person: she opens its interaction page with the code the
    agent relays (``interaction``), or the PS asks her through a pre-established channel
    (``approval``, §5.4, preferred by §8)."""

    INTERACTION = "interaction"
    APPROVAL = "approval"


class Decision(enum.Enum):
    APPROVE = "approve"
    DENY = "deny"
    ABANDON = "abandon"


@frozen(kw_only=True)
class PersonDecided(Event):
    """The authenticated ``person`` decided. ``scope`` may narrow the requested scope."""

    decision: Decision
    person: str
    at: int
    scope: str | None = None


@frozen(kw_only=True)
class PersonAsked(Event):
    """The person asks the agent a question (``requirement=clarification``)."""

    question: str
    at: int


@frozen(kw_only=True)
class CodeRefused(Action):
    """Tell the person's browser the code was not accepted (``invalid_code``)."""

    error: AAuthError


@frozen(kw_only=True)
class DecisionRefused(Action):
    """The decision was not taken (wrong person, code not yet presented, already decided)."""

    reason: str


@frozen(kw_only=True)
class ConsentPrompt(Action):
    """Ask the person, with the full context §8 asks for (agent and its provider,
    resource, scope, mission) and agent-asserted text (``justification``,
    ``clarification_response``) kept apart for display as such.

    ``channel`` says where: the PS page the person opened with the interaction code
    (``interaction``), or pushed to ``person`` through the PS's pre-established channel
    (``approval``: the host must reach her there). Either way her answer comes back as
    :class:`PersonDecided` (or :class:`PersonAsked`) for ``pending_url``."""

    pending_url: str
    channel: ConsentMode
    #: PERSON: "may this agent act at this resource as you?"; AUTH: "grant this scope?"
    kind: IssuedKind
    resource: str
    agent: str
    agent_provider: str
    person: str | None = None
    scope: str | None = None
    account: str | None = None
    mission_s256: str | None = None
    justification: str | None = None
    clarification_response: str | None = None


@frozen(kw_only=True)
class ResourceCallback(Event):
    """The person's browser came back to the PS callback URL from the resource's own
    interaction (§5.4): ``error`` is its ``?error=`` value, None when the flow completed."""

    error: str | None
    at: int


@frozen(kw_only=True)
class RedirectPerson(Action):
    """Send the person's browser to ``url``: the resource's interaction with its code and
    the PS callback (§5.4). The URL was validated (https, admitted origin) first."""

    url: str


#: §5.4 / §5.10: the resource's ``?error=`` on the callback → the polling outcome.
CALLBACK_ERRORS: dict[str, tuple[str, int]] = {
    "access_denied": ("denied", 403),
    "user_abandoned": ("abandoned", 403),
    "interaction_expired": ("expired", 408),
    "server_error": ("server_error", 500),
    "temporarily_unavailable": ("server_error", 500),
}


def callback_outcome(error: str) -> tuple[str, int]:
    """The polling code and status for a callback ``error`` (an unknown value is the
    resource's failure: ``server_error``)."""
    return CALLBACK_ERRORS.get(error, ("server_error", 500))


# -- helpers ------------------------------------------------------------------------------


def step(*, state: St, data: Dt, actions: Iterable[Action] = ()) -> Step[St, Dt]:
    """A :class:`Step` (shorthand for the PS handlers)."""
    return Step(state=state, data=data, actions=actions)


def directed_sub(secret: bytes, person: str, resource: str) -> str:
    """The person's identifier for ``resource``: stable across agents and keys, unlinkable
    across resources without ``secret``."""
    message = b"%d:%s|%s" % (len(person), person.encode(), resource.encode())
    return b64url_encode(hmac.new(secret, message, hashlib.sha256).digest()[:24])


_JSON = {"Content-Type": "application/json", "Cache-Control": "no-store"}


def json_response(status: int, body: Mapping[str, Any]) -> HttpResponse:
    return HttpResponse(
        status=status, headers=_JSON, body=json.dumps(dict(body), separators=(",", ":")).encode()
    )


def problem(error: AAuthError, **members: Any) -> HttpResponse:
    """The error answer: 401 + ``Signature-Error`` for a signature failure, an RFC 9457
    problem body otherwise (a 403 never carries ``Signature-Error``)."""
    headers = {"Content-Type": "application/problem+json", "Cache-Control": "no-store"}
    if isinstance(error, SignatureFailure) and error.status == 401:
        headers.update(signature_error_headers(error))
    body = {**error.to_problem(), **members}
    return HttpResponse(
        status=error.status, headers=headers, body=json.dumps(body, separators=(",", ":")).encode()
    )


def pending_response(
    location: str,
    retry_after: int,
    requirement: Requirement | None = None,
    body: Mapping[str, Any] | None = None,
) -> HttpResponse:
    headers = {
        "Location": location,
        "Retry-After": str(retry_after),
        "Cache-Control": "no-store",
        "Content-Type": "application/json",
    }
    if requirement is not None:
        headers["AAuth-Requirement"] = requirement.serialize()
    content = {"status": "pending", **(body or {})}
    return HttpResponse(
        status=202, headers=headers, body=json.dumps(content, separators=(",", ":")).encode()
    )


def not_found() -> HttpResponse:
    """The answer for a pending URL that does not exist *or* is not the caller's: the same
    status, code and body, so a poller learns nothing about other agents' requests (§5.9,
    §8; the resource and the AS answer the same)."""
    return problem(AAuthError("no such pending request", code="not_found", status=404))


def gone() -> HttpResponse:
    # §5.10: the one polling code for 410 (a pending URL after its terminal answer)
    return problem(AAuthError("the pending request is gone", code="invalid_code", status=410))


def parse_json_body(request: HttpRequest, max_size: int) -> dict[str, Any]:
    """A strict JSON object body with ``Content-Type: application/json``."""
    content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise MalformedInput("the body must be application/json")
    return load_json_object(request.body, max_size=max_size, what="request body")
