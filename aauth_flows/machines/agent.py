"""The agent request loop (protocol -11 §6.0 "Agent request loop", §5.11 refresh).

One :class:`AgentFlow` per outbound call. The driver starts it with :class:`StartCall`
and a :class:`~aauth_flows.machines.agent_credentials.CredentialStore` in
:class:`AgentData`; the flow signs with the best credential for the resource (auth token
> person token > agent token, plus ``Authorization: AAuth <session token>`` when it holds
one), reacts to every ``AAuth-Requirement`` and ``Signature-Error``, fetches person and
auth tokens at the PS (POST, signed with the agent token, body covered), polls deferred
responses through :class:`~aauth_flows.machines.pending.PendingPoller`, and ends with
:class:`~aauth_flows.machines.actions.Deliver` of a :class:`CallResult` (the response and
the updated store) or :class:`~aauth_flows.machines.actions.Fail`.

What the driver does for it (actions → events):

- :class:`~aauth_flows.machines.actions.SignBytes` → ``SignatureProduced``;
- :class:`~aauth_flows.machines.actions.SendRequest` → ``ResponseReceived``;
- :class:`~aauth_flows.machines.actions.Wait` → ``TimerFired``;
- :class:`RefreshAgentToken` (the AP ceremony) → :class:`AgentTokenRefreshed`;
- :class:`DiscoverPersonServer` (fetch ``{ps}/.well-known/aauth-person.json``) →
  :class:`PersonServerDiscovered` (or put the metadata in :class:`AgentConfig`);
- :class:`~aauth_flows.machines.pending.PendingInputNeeded` (clarification) →
  :class:`~aauth_flows.machines.pending.PostAnswer` or ``Cancel``.

An interaction a 202 asks for (from the resource, or passed on by the PS) is relayed to
the PS's ``interaction_endpoint`` when its metadata has one (§5.7: ``POST {"type":
"interaction", "url", "code", "description"?}`` signed with the agent token, body
covered); polling goes on at the original pending URL. ``interaction_unavailable`` (or any
other refusal) falls back to :class:`~aauth_flows.machines.actions.ShowInteraction`;
``user_unreachable`` fails the call.

Resource metadata known in advance (``AgentConfig.resources`` or the store) makes the
first request cover the resource's ``additional_signature_components``.

Refresh is top-down (agent token → person token → resource + auth token): no token with
less than ``AgentConfig.margin`` (5 minutes) left is presented.

The proactive path of §6.4 is a call too: :class:`StartCall` with ``authorize=True`` for
a ``POST`` to the resource's ``authorization_endpoint`` signs it with a person token and
takes the ``200 {"resource_token"}`` to the PS; the auth token lands in the store.
"""

from __future__ import annotations

import email.utils
import enum
import json
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from attrs import evolve, field, frozen

from aauth_core.errors import (
    AAuthError,
    IllegalTransition,
    LocalProtocolError,
    MalformedInput,
    RemoteProtocolError,
    SignatureErrorCode,
    SignatureFailure,
)
from aauth_core.headers.accept import (
    ACCEPT_SIGNATURE_ALG,
    ACCEPT_SIGNATURE_SCHEME,
    parse_token_list,
)
from aauth_core.headers.access import AccessToken
from aauth_core.headers.capabilities import Capabilities, Capability
from aauth_core.headers.requirement import Requirement, RequirementType
from aauth_core.headers.signature_error import SignatureErrorHeader
from aauth_core.http import Headers, HttpRequest, HttpResponse
from aauth_core.jws import decode_compact
from aauth_core.metadata import PersonServerMetadata, ResourceMetadata
from aauth_core.requests import aauth_components, sign_aauth_request
from aauth_core.signer import Signer
from aauth_core.tokens.claims import ResourceTokenClaims, TokenType
from aauth_core.tokens.verify import KeyResolver
from aauth_flows.machines.actions import (
    Cancel,
    Deliver,
    Fail,
    ResponseReceived,
    SendRequest,
    ShowInteraction,
    SignatureProduced,
    SignBytes,
    TimerFired,
    Wait,
)
from aauth_flows.machines.agent_checks import (
    check_agent_token,
    check_auth_token,
    check_person_token,
    check_resource_token,
)
from aauth_flows.machines.agent_credentials import REFRESH_MARGIN, CachedToken, CredentialStore
from aauth_flows.machines.engine import Action, Event, Machine, Step, handles, table
from aauth_flows.machines.pending import (
    Accepted,
    PendingData,
    PendingInputNeeded,
    PendingOutcome,
    PendingPoller,
    PendingState,
    PollCredential,
    PostAnswer,
    UseCredential,
    json_body,
    problem_error,
    signature_error,
)
from aauth_flows.machines.signing import SigningKey, complete, signing_input

__all__ = [
    "AgentState",
    "AgentConfig",
    "AgentData",
    "Exchange",
    "Need",
    "PollerSlot",
    "Relay",
    "CallResult",
    "StartCall",
    "AgentTokenRefreshed",
    "PersonServerDiscovered",
    "RefreshAgentToken",
    "DiscoverPersonServer",
    "AgentFlow",
]


class AgentState(enum.Enum):
    IDLE = "idle"
    REFRESHING_AGENT = "refreshing_agent"
    DISCOVERING = "discovering"
    SIGNING = "signing"
    AWAIT = "await"
    GET_PERSON_TOKEN = "get_person_token"  # noqa: S105 - a state name
    GET_AUTH_TOKEN = "get_auth_token"  # noqa: S105 - a state name
    PENDING = "pending"
    RELAY_SIGNING = "relay_signing"  # an interaction for the PS's interaction_endpoint
    RELAYING = "relaying"
    WAITING = "waiting"
    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"
    ERROR = "error"


class Exchange(enum.Enum):
    """Whom a signed request goes to."""

    RESOURCE = "resource"
    PERSON_TOKEN = "person_token"  # noqa: S105 - an exchange name
    AUTH_TOKEN = "auth_token"  # noqa: S105 - an exchange name


class Need(enum.Enum):
    """What the loop must get next."""

    CALL = "call"
    PERSON_TOKEN = "person_token"  # noqa: S105 - a step name
    AUTH_TOKEN = "auth_token"  # noqa: S105 - a step name


@frozen(kw_only=True)
class AgentConfig:
    """The agent's fixed configuration (never in a snapshot).

    ``keys`` (issuer keys from discovery) makes the agent verify the signatures of the
    resource, person and auth tokens it receives; without it only their claims are
    checked. ``person_server`` spares a discovery round; with an ``interaction_endpoint``
    the agent relays interactions there (§5.7). ``resources`` (or
    :meth:`CredentialStore.with_resource_metadata`) gives resource metadata up front.
    """

    key: SigningKey
    keys: KeyResolver | None = None
    person_server: PersonServerMetadata | None = None
    #: resources' metadata known in advance (their ``additional_signature_components``
    #: are covered from the first request); the store may hold more
    resources: tuple[ResourceMetadata, ...] = ()
    capabilities: tuple[Capability, ...] = ()
    margin: int = REFRESH_MARGIN
    prefer_wait: int | None = None
    as_unreachable_backoff: int = 5
    max_clock_skew_wait: int = 300
    max_sends: int = 10


@frozen(kw_only=True)
class PollerSlot:
    """A pending poller at rest inside the agent's data."""

    state: PendingState
    data: PendingData
    exchange: Exchange


@frozen(kw_only=True)
class Relay:
    """An interaction being relayed to the PS's ``interaction_endpoint`` (§5.7), with what
    to do afterwards: poll again after ``wait`` seconds, or show ``url``/``code`` if the
    PS cannot reach the person."""

    request: HttpRequest
    token: str = field(repr=False)
    created: int
    to_sign: bytes = field(default=b"", repr=False)
    url: str
    code: str
    wait: int


@frozen(kw_only=True)
class AgentData:
    """What one call remembers (snapshot-able); ``store`` is the agent's credential store."""

    store: CredentialStore
    request: HttpRequest | None = None
    resource: str = ""
    mission_s256: str | None = None
    justification: str | None = None
    need: Need = Need.CALL
    force_agent: bool = False
    presented: CachedToken | None = None
    obtained: CachedToken | None = None
    resource_token: str | None = field(default=None, repr=False)
    extra_components: tuple[str, ...] = ()
    used: tuple[str, ...] = ()
    sends: int = 0
    exchange: Exchange | None = None
    outgoing: HttpRequest | None = None
    signing_token: str = field(default="", repr=False)
    created: int = 0
    to_sign: bytes = field(default=b"", repr=False)
    poller: PollerSlot | None = None
    parked: PollerSlot | None = None
    authorize: bool = False
    authorization: HttpResponse | None = None
    relay: Relay | None = None


@frozen(kw_only=True)
class CallResult:
    """The resource's final answer and the store to keep for the next call."""

    response: HttpResponse
    store: CredentialStore


# -- events and actions ----------------------------------------------------------------


@frozen(kw_only=True)
class StartCall(Event):
    """Make ``request`` (unsigned) to a resource, within ``mission_s256`` if given."""

    request: HttpRequest
    at: int
    mission_s256: str | None = None
    justification: str | None = None
    #: ``request`` is a ``POST`` to the resource's ``authorization_endpoint`` (§5.2, the
    #: proactive path of §6.4): it is signed with a person token, and a ``200
    #: {"resource_token"}`` is taken to the PS; the call delivers that 200 once the auth
    #: token is in the store.
    authorize: bool = False


@frozen(kw_only=True)
class AgentTokenRefreshed(Event):
    """The AP's new agent token (answer to :class:`RefreshAgentToken`)."""

    token: str = field(repr=False)
    at: int


@frozen(kw_only=True)
class PersonServerDiscovered(Event):
    """The PS metadata (answer to :class:`DiscoverPersonServer`)."""

    metadata: PersonServerMetadata
    at: int


@frozen(kw_only=True)
class RefreshAgentToken(Action):
    """Get a fresh agent token from the AP; answer with :class:`AgentTokenRefreshed`."""

    current: str | None = field(default=None, repr=False)


@frozen(kw_only=True)
class DiscoverPersonServer(Action):
    """Fetch ``{issuer}/.well-known/aauth-person.json`` (issuer-checked); answer with
    :class:`PersonServerDiscovered`."""

    issuer: str


_S = AgentState
_NEXT = {_S.REFRESHING_AGENT, _S.DISCOVERING, _S.SIGNING, _S.FAILED}
_ANSWERED = _NEXT | {_S.PENDING, _S.RELAY_SIGNING, _S.WAITING, _S.DONE}
_TOKEN_TYPES = {TokenType.PERSON.value, TokenType.AUTH.value}


def _resource_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def _missing(what: str) -> LocalProtocolError:
    """The machine was put in a state without the data that state needs (misuse)."""
    return LocalProtocolError(f"{what} is missing in this state")


def _step(
    state: AgentState, data: AgentData, actions: Iterable[Action] = ()
) -> Step[AgentState, AgentData]:
    return Step(state=state, data=data, actions=actions)


def _fail(state_data: AgentData, error: AAuthError) -> Step[_S, AgentData]:
    return _step(state=_S.FAILED, data=state_data, actions=[Fail(error=error)])


class AgentFlow(Machine[AgentState, AgentData]):
    """The agent side of one outbound call."""

    State = AgentState
    INITIAL = AgentState.IDLE
    DATA = AgentData
    TRANSITIONS = table(
        [
            (_S.IDLE, StartCall, _NEXT),
            (_S.REFRESHING_AGENT, AgentTokenRefreshed, _NEXT),
            (_S.DISCOVERING, PersonServerDiscovered, _NEXT),
            (_S.SIGNING, SignatureProduced, {_S.AWAIT, _S.GET_PERSON_TOKEN, _S.GET_AUTH_TOKEN}),
            (_S.AWAIT, ResponseReceived, _ANSWERED),
            (_S.GET_PERSON_TOKEN, ResponseReceived, _ANSWERED),
            (_S.GET_AUTH_TOKEN, ResponseReceived, _ANSWERED),
            (_S.PENDING, TimerFired, {_S.PENDING}),
            (_S.PENDING, SignatureProduced, {_S.PENDING}),
            (_S.PENDING, ResponseReceived, _ANSWERED | {_S.CANCELLED}),
            (_S.PENDING, PostAnswer, {_S.PENDING}),
            (_S.PENDING, Cancel, {_S.PENDING}),
            (_S.RELAY_SIGNING, SignatureProduced, {_S.RELAYING}),
            (_S.RELAYING, ResponseReceived, {_S.PENDING, _S.FAILED}),
            (_S.WAITING, TimerFired, _NEXT),
            (_S.WAITING, Cancel, {_S.CANCELLED}),
        ]
    )

    def __init__(
        self, *, config: AgentConfig, data: AgentData, state: AgentState | None = None
    ) -> None:
        super().__init__(data=data, state=state)
        self._config = config

    @property
    def config(self) -> AgentConfig:
        return self._config

    # -- planning: what to do next, top-down -----------------------------------------------

    def _person_server(self, data: AgentData) -> PersonServerMetadata | None:
        ps = data.store.ps
        for meta in (self._config.person_server, data.store.person_server):
            if meta is not None and str(meta.issuer) == ps:
                return meta
        return None

    def _advance(self, data: AgentData, at: int) -> Step[_S, AgentData]:
        """The next step for ``data.need``, refreshing top-down first."""
        cfg = self._config
        agent = data.store.agent_token
        if agent is None or not agent.fresh(at, cfg.margin):
            current = None if agent is None else agent.token
            return _step(
                state=_S.REFRESHING_AGENT, data=data, actions=[RefreshAgentToken(current=current)]
            )
        if data.need is not Need.CALL:
            if agent.ps is None:
                return _fail(data, _unsatisfiable("the resource needs a PS and the agent has none"))
            meta = self._person_server(data)
            if meta is None:
                return _step(
                    state=_S.DISCOVERING, data=data, actions=[DiscoverPersonServer(issuer=agent.ps)]
                )
            if data.need is Need.AUTH_TOKEN:
                presented = data.presented
                if presented is None or data.resource_token is None:
                    raise IllegalTransition("an auth-token step without a resource token")
                if not presented.fresh(at, cfg.margin):
                    # The auth token's exp would be capped by a stale presented token:
                    # refresh the person token first, then get a fresh resource token.
                    data = self._forget(data, presented)
                    data = evolve(data, need=Need.PERSON_TOKEN, resource_token=None)
                    return self._advance(data, at)
                return self._auth_token_request(data, meta, agent, at)
            return self._person_token_request(data, meta, agent, at)
        return self._call(data, agent, at)

    def _forget(self, data: AgentData, token: CachedToken) -> AgentData:
        """Drop a presented token that is stale, expired or revoked (and what hangs on it)."""
        store = data.store
        if token.typ == TokenType.AUTH.value:
            store = store.drop_auth_tokens(data.resource)
            store = store.drop_person_token(data.resource, data.mission_s256)
        elif token.typ == TokenType.PERSON.value:
            store = store.drop_person_token(data.resource, data.mission_s256)
        else:
            store = evolve(store, agent_token=None)
        obtained = None if data.obtained == token else data.obtained
        return evolve(data, store=store, obtained=obtained)

    def _choose(self, data: AgentData, at: int) -> CachedToken | Need:
        """Auth token > person token > agent token; a stale person token → refresh it."""
        cfg = self._config
        store = data.store
        agent = store.agent_token
        if agent is None:
            raise _missing("agent")
        if data.force_agent:
            return agent
        obtained = data.obtained
        if obtained is not None and at < obtained.exp:
            return obtained  # just issued for this call: presented even inside the margin
        auth = None if data.authorize else store.auth_token(data.resource, at, cfg.margin)
        if auth is not None:
            return auth
        if store.has_person_token(data.resource, data.mission_s256):
            person = store.person_token(data.resource, data.mission_s256, at, cfg.margin)
            return person if person is not None else Need.PERSON_TOKEN
        return agent

    def _call(self, data: AgentData, agent: CachedToken, at: int) -> Step[_S, AgentData]:
        cfg = self._config
        if data.sends >= cfg.max_sends:
            return _fail(data, _unsatisfiable(f"no answer after {cfg.max_sends} requests"))
        choice = self._choose(data, at)
        if isinstance(choice, Need):
            data = evolve(
                data,
                need=choice,
                store=data.store.drop_person_token(data.resource, data.mission_s256),
            )
            return self._advance(data, at)
        request = data.request
        if request is None:
            raise _missing("request")
        extra: dict[str, str] = {}
        session = data.store.session_token(data.resource)
        if session is not None:
            extra["Authorization"] = AccessToken(value=session).authorization()
        if cfg.capabilities:
            extra["AAuth-Capabilities"] = Capabilities.of(*cfg.capabilities).serialize()
        outgoing = evolve(request, headers=request.headers.with_fields(extra))
        data = evolve(data, presented=choice, sends=data.sends + 1)
        try:
            return self._sign(data, Exchange.RESOURCE, outgoing, choice.token, at)
        except (ValueError, MalformedInput) as exc:
            # A component the resource demanded (required_input) that this request
            # cannot carry.
            detail = str(exc)[:200]
            return _fail(data, SignatureFailure(detail, code=SignatureErrorCode.INVALID_INPUT))

    def _ps_post(self, endpoint: str, body: dict[str, Any]) -> HttpRequest:
        caps = [c.value for c in Capability if c in self._config.capabilities]
        if caps:
            body["capabilities"] = caps
        return HttpRequest(
            method="POST",
            url=endpoint,
            headers=Headers({"Content-Type": "application/json"}),
            body=json.dumps(body, separators=(",", ":")).encode(),
        )

    def _person_token_request(
        self, data: AgentData, meta: PersonServerMetadata, agent: CachedToken, at: int
    ) -> Step[_S, AgentData]:
        body: dict[str, Any] = {"resource": data.resource}
        if data.mission_s256 is not None:
            body["mission_s256"] = data.mission_s256
        request = self._ps_post(meta.person_token_endpoint, body)
        return self._sign(data, Exchange.PERSON_TOKEN, request, agent.token, at)

    def _auth_token_request(
        self, data: AgentData, meta: PersonServerMetadata, agent: CachedToken, at: int
    ) -> Step[_S, AgentData]:
        if data.resource_token is None:
            raise _missing("resource_token")
        if data.presented is None:
            raise _missing("presented")
        body: dict[str, Any] = {
            "resource_token": data.resource_token,
            "presented_token": data.presented.token,
        }
        if data.justification is not None:
            body["justification"] = data.justification
        login_hint = _resource_claims(data.resource_token).login_hint
        if login_hint is not None:
            body["login_hint"] = login_hint
        request = self._ps_post(meta.auth_token_endpoint, body)
        return self._sign(data, Exchange.AUTH_TOKEN, request, agent.token, at)

    # -- signing ---------------------------------------------------------------------------

    def _produce(self, data: AgentData) -> Callable[[Signer], dict[str, str]]:
        request = data.outgoing
        if request is None:
            raise _missing("request")
        resource = data.exchange is Exchange.RESOURCE
        covered = aauth_components(
            request,
            cover_body=not resource,
            extra=self._resource_components(data) if resource else (),
        )

        def run(signer: Signer) -> dict[str, str]:
            return sign_aauth_request(
                request, signer, token=data.signing_token, created=data.created, covered=covered
            )

        return run

    def _resource_components(self, data: AgentData) -> tuple[str, ...]:
        """What the resource demands beyond the four: its metadata's
        ``additional_signature_components`` (from the first request on) and any
        ``required_input`` it named in an ``invalid_input`` answer."""
        declared: tuple[str, ...] = ()
        for meta in (*self._config.resources, *data.store.resources):
            if str(meta.issuer) == data.resource:
                declared = meta.additional_signature_components or ()
                break
        return tuple(dict.fromkeys((*declared, *data.extra_components)))

    def _sign(
        self, data: AgentData, exchange: Exchange, request: HttpRequest, token: str, at: int
    ) -> Step[_S, AgentData]:
        data = evolve(data, exchange=exchange, outgoing=request, signing_token=token, created=at)
        to_sign = signing_input(self._config.key, self._produce(data))
        return _step(
            state=_S.SIGNING,
            data=evolve(data, to_sign=to_sign),
            actions=[SignBytes(key=self._config.key.ref, data=to_sign)],
        )

    # -- handlers --------------------------------------------------------------------------

    @handles(StartCall)
    def _start(self, state: _S, data: AgentData, event: StartCall) -> Step[_S, AgentData]:
        data = evolve(
            data,
            request=event.request,
            resource=_resource_of(event.request.url),
            mission_s256=event.mission_s256,
            justification=event.justification,
            authorize=event.authorize,
        )
        return self._advance(data, event.at)

    @handles(AgentTokenRefreshed)
    def _refreshed(
        self, state: _S, data: AgentData, event: AgentTokenRefreshed
    ) -> Step[_S, AgentData]:
        token = check_agent_token(event.token, key=self._config.key.public_jwk, now=event.at)
        if not token.fresh(event.at, self._config.margin):
            return _fail(data, _unsatisfiable("the AP issued an agent token inside the margin"))
        return self._advance(evolve(data, store=data.store.with_agent_token(token)), event.at)

    @handles(PersonServerDiscovered)
    def _discovered(
        self, state: _S, data: AgentData, event: PersonServerDiscovered
    ) -> Step[_S, AgentData]:
        if str(event.metadata.issuer) != data.store.ps:
            raise RemoteProtocolError(
                "the PS metadata is not the agent's PS", code="issuer_mismatch", status=502
            )
        data = evolve(data, store=data.store.with_person_server(event.metadata))
        return self._advance(data, event.at)

    @handles(SignatureProduced)
    def _signed(self, state: _S, data: AgentData, event: SignatureProduced) -> Step[_S, AgentData]:
        if state is _S.PENDING:
            return self._poll(data, event, data.created)
        if state is _S.RELAY_SIGNING:
            return self._relay_signed(data, event)
        fields = complete(self._config.key, self._produce(data), data.to_sign, event.signature)
        request = data.outgoing
        if request is None:
            raise _missing("request")
        signed = evolve(request, headers=request.headers.with_fields(fields))
        target = {
            Exchange.RESOURCE: _S.AWAIT,
            Exchange.PERSON_TOKEN: _S.GET_PERSON_TOKEN,
            Exchange.AUTH_TOKEN: _S.GET_AUTH_TOKEN,
        }[data.exchange or Exchange.RESOURCE]
        return _step(
            state=target, data=evolve(data, to_sign=b""), actions=[SendRequest(request=signed)]
        )

    @handles(TimerFired)
    def _timer(self, state: _S, data: AgentData, event: TimerFired) -> Step[_S, AgentData]:
        if state is _S.PENDING:
            return self._poll(data, event, event.at)
        return self._advance(data, event.at)

    @handles(PostAnswer)
    def _answer(self, state: _S, data: AgentData, event: PostAnswer) -> Step[_S, AgentData]:
        return self._poll(data, event, event.at)

    @handles(Cancel)
    def _cancel(self, state: _S, data: AgentData, event: Cancel) -> Step[_S, AgentData]:
        if state is _S.PENDING:
            return self._poll(data, event, event.at)
        error = AAuthError("the call was cancelled", code="cancelled", status=410)
        return _step(state=_S.CANCELLED, data=data, actions=[Fail(error=error)])

    @handles(ResponseReceived)
    def _response(self, state: _S, data: AgentData, event: ResponseReceived) -> Step[_S, AgentData]:
        if state is _S.PENDING:
            return self._poll(data, event, event.at)
        if state is _S.RELAYING:
            return self._relay_answer(data, event.response)
        if state is _S.GET_PERSON_TOKEN:
            return self._person_token_answer(data, event.response, event.at)
        if state is _S.GET_AUTH_TOKEN:
            return self._auth_token_answer(data, event.response, event.at)
        return self._resource_answer(data, event.response, event.at)

    # -- the resource's answer ---------------------------------------------------------------

    def _resource_answer(
        self, data: AgentData, response: HttpResponse, at: int
    ) -> Step[_S, AgentData]:
        data = self._keep_session(data, response)
        status = response.status
        if status == 202:
            if data.presented is None:
                raise _missing("presented")
            if data.outgoing is None:
                raise _missing("outgoing")
            return self._start_poll(data, Exchange.RESOURCE, response, data.presented.token, at)
        if status == 401:
            header = signature_error(response)
            if header is not None:
                return self._signature_error(data, header, response, at)
            return self._requirement(data, _requirement(response), at, status)
        if status == 402:
            requirement = _requirement(response)
            if requirement is not None and requirement.type is RequirementType.AUTH_TOKEN:
                return self._requirement(data, requirement, at, status)
            return _fail(data, problem_error(response, "payment_required", "the resource"))
        if status == 403:
            return _fail(data, problem_error(response, "denied", "the resource"))
        if data.authorize and status == 200:
            resource_token = json_body(response).get("resource_token")
            if isinstance(resource_token, str):
                # §6.4 proactive path: the resource token goes to the PS like a challenge's.
                data = evolve(data, authorization=response)
                return self._challenge(data, resource_token, at, parked=None)
        return self._done(data, response)

    def _done(self, data: AgentData, response: HttpResponse) -> Step[_S, AgentData]:
        result = CallResult(response=response, store=data.store)
        return _step(state=_S.DONE, data=data, actions=[Deliver(result=result)])

    def _keep_session(self, data: AgentData, response: HttpResponse) -> AgentData:
        raw = response.headers.get("aauth-access")
        if raw is None:
            return data
        token = AccessToken.parse(raw)
        return evolve(data, store=data.store.put_session_token(data.resource, token.value))

    def _once(self, data: AgentData, reason: str) -> AgentData | None:
        """Record a one-shot reaction; None if it was already taken in this call."""
        return None if reason in data.used else evolve(data, used=(*data.used, reason))

    def _requirement(
        self, data: AgentData, requirement: Requirement | None, at: int, status: int
    ) -> Step[_S, AgentData]:
        if requirement is None:
            return _fail(
                data, AAuthError("401 without a requirement", code="unauthorized", status=401)
            )
        kind = requirement.type
        if kind is RequirementType.AGENT_TOKEN:
            again = self._once(data, "agent-token")
            if again is None:
                return _fail(data, _unsatisfiable("agent-token asked for twice", status))
            return self._advance(evolve(again, force_agent=True, need=Need.CALL), at)
        if kind is RequirementType.PERSON_TOKEN:
            if data.store.ps is None:
                return _fail(data, _unsatisfiable("person-token needs a PS", status))
            again = self._once(data, "person-token")
            if again is None:
                return _fail(data, _unsatisfiable("person-token asked for twice", status))
            again = evolve(
                again,
                force_agent=False,
                need=Need.PERSON_TOKEN,
                store=again.store.drop_person_token(data.resource, data.mission_s256),
            )
            return self._advance(again, at)
        if kind is RequirementType.AUTH_TOKEN:
            assert requirement.resource_token is not None
            return self._challenge(data, requirement.resource_token, at, parked=None)
        return _fail(
            data,
            AAuthError(
                f"requirement {requirement.requirement[:40]!r} is not supported",
                code="unsupported_requirement",
                status=status,
            ),
        )

    def _challenge(
        self, data: AgentData, resource_token: str, at: int, parked: PollerSlot | None
    ) -> Step[_S, AgentData]:
        """``requirement=auth-token``: check the resource token, then go to the PS with the
        token presented to the resource as ``presented_token``."""
        ps = data.store.ps
        if ps is None:
            return _fail(data, _unsatisfiable("auth-token needs a PS"))
        presented = data.presented
        if presented is None:
            raise IllegalTransition("a challenge before any call")
        check_resource_token(
            resource_token,
            resource=data.resource,
            ps=ps,
            key=self._config.key.public_jwk,
            presented=presented,
            keys=self._config.keys,
            now=at,
        )
        data = evolve(
            data,
            need=Need.AUTH_TOKEN,
            resource_token=resource_token,
            parked=parked,
            poller=None,
            force_agent=False,
        )
        return self._advance(data, at)

    def _signature_error(
        self, data: AgentData, header: SignatureErrorHeader, response: HttpResponse, at: int
    ) -> Step[_S, AgentData]:
        code = str(header.code)
        presented = data.presented
        if presented is None:
            raise _missing("presented")
        refusal = SignatureFailure(
            f"the resource refused the signature: {code}",
            code=code,
            required_input=header.required_input,
            accept_schemes=_token_list(response, ACCEPT_SIGNATURE_SCHEME),
            accept_algs=_token_list(response, ACCEPT_SIGNATURE_ALG),
        )
        if code in (SignatureErrorCode.EXPIRED_JWT, SignatureErrorCode.REVOKED_JWT):
            again = self._once(data, f"{code}:{presented.typ}")
            if again is None:
                return _fail(data, refusal)
            again = self._forget(again, presented)
            if presented.typ in _TOKEN_TYPES:
                if again.store.ps is None:
                    return _fail(data, refusal)
                # Auth token: a new person token first, then re-authorize; person token:
                # a new one.
                return self._advance(evolve(again, need=Need.PERSON_TOKEN), at)
            return self._advance(evolve(again, need=Need.CALL), at)  # agent token: refresh
        if code == SignatureErrorCode.CLOCK_SKEW:
            again = self._once(data, "clock_skew")
            wait = _skew_wait(response, at)
            if again is None or wait is None or wait > self._config.max_clock_skew_wait:
                return _fail(data, refusal)
            return _step(
                state=_S.WAITING, data=evolve(again, need=Need.CALL), actions=[Wait(seconds=wait)]
            )
        if code == SignatureErrorCode.INVALID_INPUT and header.required_input:
            again = self._once(data, "invalid_input")
            if again is None:
                return _fail(data, refusal)
            extra = tuple(dict.fromkeys((*data.extra_components, *header.required_input)))
            return self._advance(evolve(again, extra_components=extra, need=Need.CALL), at)
        if code in (
            SignatureErrorCode.UNSUPPORTED_SCHEME,
            SignatureErrorCode.UNSUPPORTED_ALGORITHM,
        ):
            # The agent signs with one key and only the jwt scheme: nothing to adjust to.
            return _fail(data, refusal)
        return _fail(data, refusal)

    # -- the PS's answers -----------------------------------------------------------------

    def _person_token_answer(
        self, data: AgentData, response: HttpResponse, at: int
    ) -> Step[_S, AgentData]:
        if response.status == 202:
            agent = data.store.agent_token
            if agent is None:
                raise _missing("agent")
            return self._start_poll(data, Exchange.PERSON_TOKEN, response, agent.token, at)
        if response.status != 200:
            refreshed = self._agent_token_refused(data, response, at)
            if refreshed is not None:
                return refreshed
            return _fail(data, problem_error(response, _default_code(response), "the PS"))
        token = json_body(response).get("person_token")
        if not isinstance(token, str):
            raise RemoteProtocolError("the PS answer has no person_token", code="invalid_response")
        ps = data.store.ps
        if ps is None:
            raise _missing("ps")
        cached = check_person_token(
            token,
            resource=data.resource,
            ps=ps,
            key=self._config.key.public_jwk,
            mission_s256=data.mission_s256,
            keys=self._config.keys,
            now=at,
        )
        store = data.store.put_person_token(data.resource, data.mission_s256, cached)
        data = evolve(data, store=store, obtained=cached, need=Need.CALL, poller=None)
        return self._advance(data, at)

    def _auth_token_answer(
        self, data: AgentData, response: HttpResponse, at: int
    ) -> Step[_S, AgentData]:
        status = response.status
        if status == 202:
            agent = data.store.agent_token
            if agent is None:
                raise _missing("agent")
            return self._start_poll(data, Exchange.AUTH_TOKEN, response, agent.token, at)
        if status == 200:
            return self._auth_token_issued(data, response, at)
        refreshed = self._agent_token_refused(data, response, at)
        if refreshed is not None:
            return refreshed
        error = problem_error(response, _default_code(response), "the PS")
        code = error.code
        presented = data.presented
        if presented is None:
            raise _missing("presented")
        if code in ("expired_presented_token", "revoked_presented_token"):
            again = self._once(data, code)
            if again is None:
                return _fail(data, error)
            again = self._forget(again, presented)
            again = evolve(again, need=Need.PERSON_TOKEN, resource_token=None, parked=None)
            return self._advance(again, at)
        if code in ("expired_resource_token", "revoked_resource_token"):
            again = self._once(data, code)
            if again is None:
                return _fail(data, error)
            return self._advance(
                evolve(again, need=Need.CALL, resource_token=None, parked=None), at
            )
        if code == "as_unreachable":
            again = self._once(data, code)
            if again is None:
                return _fail(data, error)
            again = evolve(again, need=Need.CALL, resource_token=None, parked=None)
            return _step(
                state=_S.WAITING,
                data=again,
                actions=[Wait(seconds=self._config.as_unreachable_backoff)],
            )
        return _fail(data, error)

    def _agent_token_refused(
        self, data: AgentData, response: HttpResponse, at: int
    ) -> Step[_S, AgentData] | None:
        """The PS answered 401 ``expired_jwt``/``revoked_jwt``: the agent token it was signed
        with failed (§5.10: agent token failures are 401 + ``Signature-Error``). Refresh it at
        the AP once, then ask again (§6.0 "on agent token → refresh at AP")."""
        header = signature_error(response) if response.status == 401 else None
        if header is None or str(header.code) not in (
            SignatureErrorCode.EXPIRED_JWT,
            SignatureErrorCode.REVOKED_JWT,
        ):
            return None
        again = self._once(data, f"{header.code}:agent-token-at-ps")
        if again is None:
            return None
        return self._advance(evolve(again, store=evolve(again.store, agent_token=None)), at)

    def _auth_token_issued(
        self, data: AgentData, response: HttpResponse, at: int
    ) -> Step[_S, AgentData]:
        token = json_body(response).get("auth_token")
        if not isinstance(token, str):
            raise RemoteProtocolError("the PS answer has no auth_token", code="invalid_response")
        ps = data.store.ps
        if ps is None:
            raise _missing("ps")
        if data.resource_token is None:
            raise _missing("resource_token")
        cached = check_auth_token(
            token,
            resource=data.resource,
            ps=ps,
            key=self._config.key.public_jwk,
            resource_token=_resource_claims(data.resource_token),
            keys=self._config.keys,
            now=at,
        )
        store = data.store.put_auth_token(data.resource, cached)
        data = evolve(
            data, store=store, obtained=cached, need=Need.CALL, resource_token=None, poller=None
        )
        parked = data.parked
        if parked is None and data.authorization is not None:
            return self._done(data, data.authorization)
        if parked is None:
            return self._advance(data, at)
        # Deferred delivery: poll the resource's pending URL presenting the auth token.
        data = evolve(data, parked=None, poller=parked, presented=cached)
        return self._poll(data, UseCredential(credential=PollCredential.jwt(token), at=at), at)

    # -- pending ---------------------------------------------------------------------------

    def _start_poll(
        self, data: AgentData, exchange: Exchange, response: HttpResponse, token: str, at: int
    ) -> Step[_S, AgentData]:
        request = data.outgoing
        if request is None:
            raise _missing("request")
        headers = Headers()
        authorization = request.headers.get("authorization")
        if exchange is Exchange.RESOURCE and authorization is not None:
            headers = Headers({"Authorization": authorization})
        pending = PendingData.create(
            key=self._config.key,
            credential=PollCredential.jwt(token),
            url=request.url,
            headers=headers,
            prefer_wait=self._config.prefer_wait,
        )
        slot = PollerSlot(state=PendingState.IDLE, data=pending, exchange=exchange)
        return self._poll(evolve(data, poller=slot), Accepted(response=response, at=at), at)

    def _poll(self, data: AgentData, event: Event, at: int) -> Step[_S, AgentData]:
        """Feed ``event`` to the poller and act on where it went."""
        slot = data.poller
        if slot is None:
            raise _missing("slot")
        poller = PendingPoller(data=slot.data, state=slot.state)
        actions = poller.handle(event)
        slot = evolve(slot, state=poller.state, data=poller.data)
        data = evolve(data, poller=slot)
        passed: list[Action] = [a for a in actions if not isinstance(a, Deliver | Fail)]
        if poller.state is PendingState.DONE:
            outcome = next(a.result for a in actions if isinstance(a, Deliver))
            assert isinstance(outcome, PendingOutcome)
            step = self._settled(data, slot.exchange, outcome.response, at)
            return _step(state=step.state, data=step.data, actions=(*passed, *step.actions))
        if poller.state in (PendingState.FAILED, PendingState.CANCELLED):
            target = _S.FAILED if poller.state is PendingState.FAILED else _S.CANCELLED
            return _step(state=target, data=data, actions=actions)
        requirement = poller.data.requirement
        if (
            poller.state is PendingState.NEEDS_INPUT
            and requirement is not None
            and requirement.type is RequirementType.AUTH_TOKEN
        ):
            if slot.exchange is not Exchange.RESOURCE:
                raise RemoteProtocolError(
                    "only a resource defers delivery with requirement=auth-token",
                    code="invalid_response",
                )
            assert requirement.resource_token is not None
            step = self._challenge(data, requirement.resource_token, at, parked=slot)
            kept = [a for a in passed if not _is_input_needed(a)]
            return _step(state=step.state, data=step.data, actions=(*kept, *step.actions))
        if poller.state is PendingState.WAITING and requirement is not None:
            relayed = self._relay(data, requirement, actions, at)
            if relayed is not None:
                return relayed
        return _step(state=_S.PENDING, data=data, actions=actions)

    # -- relaying an interaction to the PS (§5.7, §6.0 pending table) -------------------

    def _relay(
        self, data: AgentData, requirement: Requirement, actions: list[Action], at: int
    ) -> Step[_S, AgentData] | None:
        """Send the interaction the poller would show to the PS's ``interaction_endpoint``
        instead (None: no endpoint, nothing to show, no agent token: show it as before).
        The poller's ``Wait`` is held until the PS answers."""
        show = [a for a in actions if isinstance(a, ShowInteraction)]
        waits = [a for a in actions if isinstance(a, Wait)]
        meta = self._person_server(data)
        agent = data.store.agent_token
        if (
            not show
            or len(waits) != 1
            or meta is None
            or meta.interaction_endpoint is None
            or agent is None
            or requirement.url is None
            or requirement.code is None
        ):
            return None
        body: dict[str, Any] = {
            "type": "interaction",
            "url": requirement.url,
            "code": requirement.code,
        }
        if data.justification is not None:
            body["description"] = data.justification
        if data.mission_s256 is not None:
            body["mission_s256"] = data.mission_s256
        request = HttpRequest(
            method="POST",
            url=meta.interaction_endpoint,
            headers=Headers({"Content-Type": "application/json"}),
            body=json.dumps(body, separators=(",", ":")).encode(),
        )
        relay = Relay(
            request=request,
            token=agent.token,
            created=at,
            url=requirement.url,
            code=requirement.code,
            wait=waits[0].seconds,
        )
        to_sign = signing_input(self._config.key, _relay_producer(relay))
        kept = [a for a in actions if not isinstance(a, ShowInteraction | Wait)]
        return _step(
            state=_S.RELAY_SIGNING,
            data=evolve(data, relay=evolve(relay, to_sign=to_sign)),
            actions=[*kept, SignBytes(key=self._config.key.ref, data=to_sign)],
        )

    def _relay_signed(self, data: AgentData, event: SignatureProduced) -> Step[_S, AgentData]:
        relay = data.relay
        if relay is None:
            raise _missing("relay")
        produce = _relay_producer(relay)
        fields = complete(self._config.key, produce, relay.to_sign, event.signature)
        signed = evolve(relay.request, headers=relay.request.headers.with_fields(fields))
        data = evolve(data, relay=evolve(relay, to_sign=b""))
        return _step(state=_S.RELAYING, data=data, actions=[SendRequest(request=signed)])

    def _relay_answer(self, data: AgentData, response: HttpResponse) -> Step[_S, AgentData]:
        """202 (or 200): the PS reaches the person; the original pending URL stays
        authoritative, so polling goes on. ``user_unreachable`` is terminal; anything
        else (``interaction_unavailable``, errors) falls back to showing the URL."""
        relay = data.relay
        if relay is None:
            raise _missing("relay")
        data = evolve(data, relay=None)
        wait = Wait(seconds=relay.wait)
        if 200 <= response.status < 300:
            return _step(state=_S.PENDING, data=data, actions=[wait])
        error = problem_error(response, _default_code(response), "the PS")
        if response.status == 403 and error.code == "user_unreachable":
            return _fail(data, error)
        show = ShowInteraction(url=f"{relay.url}?code={relay.code}", code=relay.code)
        return _step(state=_S.PENDING, data=data, actions=[show, wait])

    def _settled(
        self, data: AgentData, exchange: Exchange, response: HttpResponse, at: int
    ) -> Step[_S, AgentData]:
        if exchange is Exchange.PERSON_TOKEN:
            return self._person_token_answer(data, response, at)
        if exchange is Exchange.AUTH_TOKEN:
            return self._auth_token_issued(data, response, at)
        return self._done(self._keep_session(evolve(data, poller=None), response), response)


# -- small helpers -------------------------------------------------------------------------


def _relay_producer(relay: Relay) -> Callable[[Signer], dict[str, str]]:
    """Sign the relay with the agent token, body covered (a PS endpoint)."""
    covered = aauth_components(relay.request, cover_body=True)

    def run(signer: Signer) -> dict[str, str]:
        return sign_aauth_request(
            relay.request, signer, token=relay.token, created=relay.created, covered=covered
        )

    return run


def _is_input_needed(action: Action) -> bool:
    return isinstance(action, PendingInputNeeded)


def _unsatisfiable(detail: str, status: int = 401) -> AAuthError:
    return AAuthError(detail, code="unsatisfiable", status=status)


def _requirement(response: HttpResponse) -> Requirement | None:
    raw = response.headers.get("aauth-requirement")
    return None if raw is None else Requirement.parse(raw)


def _resource_claims(token: str) -> ResourceTokenClaims:
    """The claims of a resource token already checked by :func:`check_resource_token`."""
    return ResourceTokenClaims.from_payload(decode_compact(token).payload)


def _default_code(response: HttpResponse) -> str:
    return {
        400: "invalid_request",
        403: "denied",
        408: "expired",
        410: "invalid_code",
        502: "as_unreachable",
    }.get(response.status, "server_error")


def _token_list(response: HttpResponse, name: str) -> tuple[str, ...]:
    raw = response.headers.get(name)
    if raw is None:
        return ()
    try:
        return parse_token_list(raw, what=name)
    except MalformedInput:
        return ()


def _skew_wait(response: HttpResponse, at: int) -> int | None:
    """Seconds until the server's clock (its ``Date``) reaches our ``created``; None when
    the server sent no usable ``Date`` or its clock is not behind ours."""
    raw = response.headers.get("date")
    if raw is None:
        return None
    try:
        server_now = int(email.utils.parsedate_to_datetime(raw).timestamp())
    except (TypeError, ValueError):
        return None
    ahead = at - server_now
    return ahead + 1 if ahead > 0 else None
