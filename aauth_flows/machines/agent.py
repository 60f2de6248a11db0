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

import enum
from collections.abc import Iterable

from attrs import evolve

from aauth_core.errors import (
    AAuthError,
    IllegalTransition,
    MalformedInput,
    RemoteProtocolError,
    SignatureErrorCode,
    SignatureFailure,
)
from aauth_core.headers.requirement import Requirement, RequirementType
from aauth_core.headers.signature_error import SignatureErrorHeader
from aauth_core.http import Headers, HttpRequest, HttpResponse
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
from aauth_flows.machines.agent_config import (
    AgentConfig,
    AgentData,
    CallResult,
    Exchange,
    Need,
    PollerSlot,
    Relay,
)
from aauth_flows.machines.agent_credentials import CachedToken
from aauth_flows.machines.agent_events import (
    AgentTokenRefreshed,
    DiscoverPersonServer,
    PersonServerDiscovered,
    RefreshAgentToken,
    StartCall,
)
from aauth_flows.machines.agent_reactions import (
    SignatureReaction,
    TokenErrorReaction,
    agent_token_refusal,
    default_code,
    issued_by_ps,
    issued_token,
    keep_session,
    once,
    requirement_of,
    signature_reaction,
    signature_refusal,
    skew_wait,
    token_error_reaction,
    unsatisfiable,
)
from aauth_flows.machines.agent_requests import (
    auth_token_request,
    interaction_request,
    person_token_request,
    relay_producer,
    request_producer,
    resource_claims,
    resource_of,
    resource_request,
)
from aauth_flows.machines.agent_selection import choose, forget, person_server
from aauth_flows.machines.engine import (
    Action,
    ConfiguredMachine,
    Event,
    Step,
    handles,
    narrow,
    require,
    table,
)
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
from aauth_flows.machines.signing import complete, signing_input

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


_S = AgentState
_NEXT = {_S.REFRESHING_AGENT, _S.DISCOVERING, _S.SIGNING, _S.FAILED}
_ANSWERED = _NEXT | {_S.PENDING, _S.RELAY_SIGNING, _S.WAITING, _S.DONE}


def _step(
    state: AgentState, data: AgentData, actions: Iterable[Action] = ()
) -> Step[AgentState, AgentData]:
    return Step(state=state, data=data, actions=actions)


def _fail(state_data: AgentData, error: AAuthError) -> Step[_S, AgentData]:
    return _step(state=_S.FAILED, data=state_data, actions=[Fail(error=error)])


class AgentFlow(ConfiguredMachine[AgentState, AgentData, AgentConfig]):
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

    # -- planning: what to do next, top-down -----------------------------------------------

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
                return _fail(data, unsatisfiable("the resource needs a PS and the agent has none"))
            meta = person_server(cfg, data)
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
                    data = forget(data, presented)
                    data = evolve(data, need=Need.PERSON_TOKEN, resource_token=None)
                    return self._advance(data, at)
                request = auth_token_request(cfg, data, meta)
                return self._sign(data, Exchange.AUTH_TOKEN, request, agent.token, at)
            request = person_token_request(cfg, data, meta)
            return self._sign(data, Exchange.PERSON_TOKEN, request, agent.token, at)
        return self._call(data, agent, at)

    def _call(self, data: AgentData, agent: CachedToken, at: int) -> Step[_S, AgentData]:
        cfg = self._config
        if data.sends >= cfg.max_sends:
            return _fail(data, unsatisfiable(f"no answer after {cfg.max_sends} requests"))
        choice = choose(cfg, data, at)
        if isinstance(choice, Need):
            data = evolve(
                data,
                need=choice,
                store=data.store.drop_person_token(data.resource, data.mission_s256),
            )
            return self._advance(data, at)
        outgoing = resource_request(cfg, data)
        data = evolve(data, presented=choice, sends=data.sends + 1)
        try:
            return self._sign(data, Exchange.RESOURCE, outgoing, choice.token, at)
        except (ValueError, MalformedInput) as exc:
            # A component the resource demanded (required_input) that this request
            # cannot carry.
            detail = str(exc)[:200]
            return _fail(data, SignatureFailure(detail, code=SignatureErrorCode.INVALID_INPUT))

    # -- signing ---------------------------------------------------------------------------

    def _sign(
        self, data: AgentData, exchange: Exchange, request: HttpRequest, token: str, at: int
    ) -> Step[_S, AgentData]:
        data = evolve(data, exchange=exchange, outgoing=request, signing_token=token, created=at)
        to_sign = signing_input(self._config.key, request_producer(self._config, data))
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
            resource=resource_of(event.request.url),
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
            return _fail(data, unsatisfiable("the AP issued an agent token inside the margin"))
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
        fields = complete(
            self._config.key, request_producer(self._config, data), data.to_sign, event.signature
        )
        request = require(data.outgoing, "request")
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
        data = keep_session(data, response)
        status = response.status
        if status == 202:
            presented = require(data.presented, "presented")
            require(data.outgoing, "outgoing")
            return self._start_poll(data, Exchange.RESOURCE, response, presented.token, at)
        if status == 401:
            header = signature_error(response)
            if header is not None:
                return self._signature_error(data, header, response, at)
            return self._requirement(data, requirement_of(response), at, status)
        if status == 402:
            requirement = requirement_of(response)
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

    def _requirement(
        self, data: AgentData, requirement: Requirement | None, at: int, status: int
    ) -> Step[_S, AgentData]:
        if requirement is None:
            return _fail(
                data, AAuthError("401 without a requirement", code="unauthorized", status=401)
            )
        kind = requirement.type
        if kind is RequirementType.AGENT_TOKEN:
            again = once(data, "agent-token")
            if again is None:
                return _fail(data, unsatisfiable("agent-token asked for twice", status))
            return self._advance(evolve(again, force_agent=True, need=Need.CALL), at)
        if kind is RequirementType.PERSON_TOKEN:
            if data.store.ps is None:
                return _fail(data, unsatisfiable("person-token needs a PS", status))
            again = once(data, "person-token")
            if again is None:
                return _fail(data, unsatisfiable("person-token asked for twice", status))
            again = evolve(
                again,
                force_agent=False,
                need=Need.PERSON_TOKEN,
                store=again.store.drop_person_token(data.resource, data.mission_s256),
            )
            return self._advance(again, at)
        if kind is RequirementType.AUTH_TOKEN:
            # Requirement: an auth-token requirement always carries its resource token
            token = require(requirement.resource_token, "the auth-token requirement's token")
            return self._challenge(data, token, at, parked=None)
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
            return _fail(data, unsatisfiable("auth-token needs a PS"))
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
        presented = require(data.presented, "presented")
        refusal = signature_refusal(header, response)
        reaction = signature_reaction(header)
        if reaction is SignatureReaction.RENEW_TOKEN:
            again = once(data, f"{code}:{presented.typ}")
            if again is None:
                return _fail(data, refusal)
            again = forget(again, presented)
            if issued_by_ps(presented):
                if again.store.ps is None:
                    return _fail(data, refusal)
                # Auth token: a new person token first, then re-authorize; person token:
                # a new one.
                return self._advance(evolve(again, need=Need.PERSON_TOKEN), at)
            return self._advance(evolve(again, need=Need.CALL), at)  # agent token: refresh
        if reaction is SignatureReaction.WAIT_FOR_CLOCK:
            again = once(data, "clock_skew")
            wait = skew_wait(response, at)
            if again is None or wait is None or wait > self._config.max_clock_skew_wait:
                return _fail(data, refusal)
            return _step(
                state=_S.WAITING, data=evolve(again, need=Need.CALL), actions=[Wait(seconds=wait)]
            )
        if reaction is SignatureReaction.COVER_INPUT:
            again = once(data, "invalid_input")
            if again is None:
                return _fail(data, refusal)
            extra = tuple(dict.fromkeys((*data.extra_components, *header.required_input)))
            return self._advance(evolve(again, extra_components=extra, need=Need.CALL), at)
        return _fail(data, refusal)

    # -- the PS's answers -----------------------------------------------------------------

    def _person_token_answer(
        self, data: AgentData, response: HttpResponse, at: int
    ) -> Step[_S, AgentData]:
        if response.status == 202:
            return self._poll_at_ps(data, Exchange.PERSON_TOKEN, response, at)
        if response.status != 200:
            refreshed = self._agent_token_refused(data, response, at)
            if refreshed is not None:
                return refreshed
            return _fail(data, problem_error(response, default_code(response), "the PS"))
        token, ps = issued_token(data, response, "person_token")
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
            return self._poll_at_ps(data, Exchange.AUTH_TOKEN, response, at)
        if status == 200:
            return self._auth_token_issued(data, response, at)
        refreshed = self._agent_token_refused(data, response, at)
        if refreshed is not None:
            return refreshed
        error = problem_error(response, default_code(response), "the PS")
        code = error.code
        presented = require(data.presented, "presented")
        reaction = token_error_reaction(code)
        if reaction is TokenErrorReaction.GIVE_UP:
            return _fail(data, error)
        again = once(data, code)
        if again is None:
            return _fail(data, error)
        if reaction is TokenErrorReaction.RENEW_PRESENTED:
            again = forget(again, presented)
            again = evolve(again, need=Need.PERSON_TOKEN, resource_token=None, parked=None)
            return self._advance(again, at)
        again = evolve(again, need=Need.CALL, resource_token=None, parked=None)
        if reaction is TokenErrorReaction.RENEW_RESOURCE_TOKEN:
            return self._advance(again, at)
        return _step(  # BACK_OFF
            state=_S.WAITING,
            data=again,
            actions=[Wait(seconds=self._config.as_unreachable_backoff)],
        )

    def _agent_token_refused(
        self, data: AgentData, response: HttpResponse, at: int
    ) -> Step[_S, AgentData] | None:
        """The PS answered 401 ``expired_jwt``/``revoked_jwt``: the agent token it was signed
        with failed (§5.10: agent token failures are 401 + ``Signature-Error``). Refresh it at
        the AP once, then ask again (§6.0 "on agent token → refresh at AP")."""
        header = agent_token_refusal(response)
        if header is None:
            return None
        again = once(data, f"{header.code}:agent-token-at-ps")
        if again is None:
            return None
        return self._advance(evolve(again, store=evolve(again.store, agent_token=None)), at)

    def _auth_token_issued(
        self, data: AgentData, response: HttpResponse, at: int
    ) -> Step[_S, AgentData]:
        token, ps = issued_token(data, response, "auth_token")
        resource_token = require(data.resource_token, "resource_token")
        cached = check_auth_token(
            token,
            resource=data.resource,
            ps=ps,
            key=self._config.key.public_jwk,
            resource_token=resource_claims(resource_token),
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

    def _poll_at_ps(
        self, data: AgentData, exchange: Exchange, response: HttpResponse, at: int
    ) -> Step[_S, AgentData]:
        """The PS deferred its answer (202): poll it with the agent token."""
        agent = require(data.store.agent_token, "agent")
        return self._start_poll(data, exchange, response, agent.token, at)

    def _start_poll(
        self, data: AgentData, exchange: Exchange, response: HttpResponse, token: str, at: int
    ) -> Step[_S, AgentData]:
        request = require(data.outgoing, "request")
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
        slot = require(data.poller, "slot")
        poller = PendingPoller(data=slot.data, state=slot.state)
        actions = poller.handle(event)
        slot = evolve(slot, state=poller.state, data=poller.data)
        data = evolve(data, poller=slot)
        passed: list[Action] = [a for a in actions if not isinstance(a, Deliver | Fail)]
        if poller.state is PendingState.DONE:
            outcome = narrow(
                next(a.result for a in actions if isinstance(a, Deliver)),
                PendingOutcome,
                "what the pending poller delivered",
            )
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
            token = require(requirement.resource_token, "the auth-token requirement's token")
            step = self._challenge(data, token, at, parked=slot)
            kept = [a for a in passed if not isinstance(a, PendingInputNeeded)]
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
        meta = person_server(self._config, data)
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
        request = interaction_request(
            data, meta.interaction_endpoint, url=requirement.url, code=requirement.code
        )
        relay = Relay(
            request=request,
            token=agent.token,
            created=at,
            url=requirement.url,
            code=requirement.code,
            wait=waits[0].seconds,
        )
        to_sign = signing_input(self._config.key, relay_producer(relay))
        kept = [a for a in actions if not isinstance(a, ShowInteraction | Wait)]
        return _step(
            state=_S.RELAY_SIGNING,
            data=evolve(data, relay=evolve(relay, to_sign=to_sign)),
            actions=[*kept, SignBytes(key=self._config.key.ref, data=to_sign)],
        )

    def _relay_signed(self, data: AgentData, event: SignatureProduced) -> Step[_S, AgentData]:
        relay = require(data.relay, "relay")
        produce = relay_producer(relay)
        fields = complete(self._config.key, produce, relay.to_sign, event.signature)
        signed = evolve(relay.request, headers=relay.request.headers.with_fields(fields))
        data = evolve(data, relay=evolve(relay, to_sign=b""))
        return _step(state=_S.RELAYING, data=data, actions=[SendRequest(request=signed)])

    def _relay_answer(self, data: AgentData, response: HttpResponse) -> Step[_S, AgentData]:
        """202 (or 200): the PS reaches the person; the original pending URL stays
        authoritative, so polling goes on. ``user_unreachable`` is terminal; anything
        else (``interaction_unavailable``, errors) falls back to showing the URL."""
        relay = require(data.relay, "relay")
        data = evolve(data, relay=None)
        wait = Wait(seconds=relay.wait)
        if 200 <= response.status < 300:
            return _step(state=_S.PENDING, data=data, actions=[wait])
        error = problem_error(response, default_code(response), "the PS")
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
        return self._done(keep_session(evolve(data, poller=None), response), response)
