"""The resource's pending interaction record (protocol -11 §5.9, §6.0 server-side pending
record, §6.2 resource-managed access; also the 202 path of the authorization endpoint).

::

    CREATED ──code matches──► INTERACTING ──person decides──► AUTHORIZED | DENIED
       │  wrong code x max ──► FAILED (invalid_code)
       │  deadline ──────────► EXPIRED          (CREATED or INTERACTING)
       │  person leaves ─────► ABANDONED
       └─ DELETE ────────────► CANCELLED (410 afterwards)
    AUTHORIZED / DENIED / EXPIRED / ABANDONED / FAILED ──terminal poll answered──► GONE (410)

Every poll and DELETE is verified (core's verifier) and must be signed by the key that
made the original request; any other key gets 404, whatever the state. The code is
compared in constant time, is single-use (a second arrival gets 410 ``invalid_code``),
and a few wrong codes fail the record. On the poll after approval the resource mints the
session token (random bytes from the poll event), records it, and answers 200 with
``AAuth-Access``: with the result of the held API call (run once through a :class:`Serve`
action as the agent with its new session, §6.2 step 5), or ``{"status": "authorized"}``
when nothing was held (the authorization endpoint's consent).
"""

from __future__ import annotations

import enum
import hmac

from attrs import evolve, frozen

from aauth_core.errors import IllegalTransition
from aauth_core.headers.access import AAUTH_ACCESS
from aauth_core.headers.requirement import Requirement
from aauth_core.http import HttpRequest, HttpResponse
from aauth_core.identifiers import AgentId
from aauth_core.interaction import codes_match
from aauth_flows.machines.actions import Respond, TimerFired
from aauth_flows.machines.engine import Action, ConfiguredMachine, Step, handles, table
from aauth_flows.machines.resource_actions import (
    CodePresented,
    RequestReceived,
    Serve,
    Served,
    ShowConsent,
    UserAbandoned,
    UserDecided,
)
from aauth_flows.machines.resource_answers import (
    Randomness,
    error_response,
    json_response,
    pending,
    problem,
    step,
    verify_call,
)
from aauth_flows.machines.resource_config import AgentPrincipal, ResourceConfig
from aauth_flows.machines.resource_session import SessionGrant, new_session
from aauth_flows.machines.wire import pending_gone, pending_not_found

__all__ = ["PendingState", "Purpose", "InteractionData", "PendingInteraction", "not_found"]


class PendingState(enum.Enum):
    CREATED = "created"
    INTERACTING = "interacting"
    AUTHORIZED = "authorized"
    DENIED = "denied"
    EXPIRED = "expired"
    ABANDONED = "abandoned"
    CANCELLED = "cancelled"
    FAILED = "failed"
    SERVING = "serving"  # authorized: the held call is being served
    GONE = "gone"
    ERROR = "error"


class Purpose(enum.StrEnum):
    SESSION = "session"  # a protected call in resource-managed mode: ends with AAuth-Access
    AUTHORIZATION = "authorization"  # the authorization endpoint's consent (§5.2)


@frozen(kw_only=True)
class InteractionData:
    pending_id: str
    location: str
    code: str
    agent_jkt: str
    agent_issuer: str | None
    agent: str | None
    purpose: Purpose
    scope: str | None
    created_at: int
    expires_at: int
    failed_attempts: int = 0
    #: the API call that met the challenge, served once the person approved (§6.2 step 5)
    held: HttpRequest | None = None
    #: the session minted on the approving poll, until the held call is served
    grant: SessionGrant | None = None

    def __repr__(self) -> str:  # the code is a correlation secret
        return f"InteractionData(pending_id={self.pending_id!r}, purpose={self.purpose.value})"


def not_found() -> HttpResponse:
    """The answer to a poller that is not the requester (indistinguishable from an
    unknown pending URL)."""
    return error_response(pending_not_found())


def _gone() -> HttpResponse:
    return error_response(pending_gone())


S = PendingState
_OPEN = (S.CREATED, S.INTERACTING)
_TERMINAL = (S.AUTHORIZED, S.DENIED, S.EXPIRED, S.ABANDONED, S.FAILED)
_ALL = (*_OPEN, *_TERMINAL, S.CANCELLED, S.GONE)
_DONE_ANSWER: dict[PendingState, tuple[int, str, str]] = {
    S.DENIED: (403, "denied", "the person denied the request"),
    S.ABANDONED: (403, "abandoned", "the person abandoned the interaction"),
    S.EXPIRED: (408, "expired", "the pending request expired"),
    S.FAILED: (410, "invalid_code", "too many wrong interaction codes"),
}


class PendingInteraction(ConfiguredMachine[PendingState, InteractionData, ResourceConfig]):
    """One pending interaction; the driver stores its snapshot under ``pending_id``."""

    State = PendingState
    INITIAL = PendingState.CREATED
    DATA = InteractionData
    TRANSITIONS = table(
        [
            (S.CREATED, CodePresented, {S.CREATED, S.INTERACTING, S.FAILED, S.EXPIRED}),
            *((st, CodePresented, {st}) for st in (S.INTERACTING, *_TERMINAL, S.CANCELLED, S.GONE)),
            (S.INTERACTING, UserDecided, {S.AUTHORIZED, S.DENIED, S.EXPIRED}),
            *((st, UserAbandoned, {S.ABANDONED}) for st in _OPEN),
            *((st, TimerFired, {st, S.EXPIRED}) for st in _OPEN),
            *(
                (st, RequestReceived, {st, S.GONE, S.CANCELLED})
                for st in _ALL
                if st is not S.AUTHORIZED
            ),
            (S.AUTHORIZED, RequestReceived, {S.AUTHORIZED, S.SERVING, S.GONE, S.CANCELLED}),
            (S.SERVING, RequestReceived, {S.SERVING}),
            (S.SERVING, Served, {S.GONE}),
        ]
    )

    # -- the person at the interaction URL -------------------------------------------------

    @handles(CodePresented)
    def _code(
        self, state: PendingState, data: InteractionData, event: CodePresented
    ) -> Step[PendingState, InteractionData]:
        if state is not S.CREATED:
            # single use: the code was consumed (or the record is over)
            return step(state=state, data=data, actions=[Respond(response=_gone())])
        if event.at >= data.expires_at:
            answer = problem(408, "expired", "the interaction has expired")
            return step(state=S.EXPIRED, data=data, actions=[Respond(response=answer)])
        if codes_match(data.code, event.code):
            consent = ShowConsent(pending_id=data.pending_id, agent=data.agent, scope=data.scope)
            return step(state=S.INTERACTING, data=data, actions=[consent])
        failed = evolve(data, failed_attempts=data.failed_attempts + 1)
        answer = problem(410, "invalid_code", "the interaction code does not match")
        next_state = (
            S.FAILED if failed.failed_attempts >= self._config.max_code_attempts else S.CREATED
        )
        return step(state=next_state, data=failed, actions=[Respond(response=answer)])

    @handles(UserDecided)
    def _decided(
        self, state: PendingState, data: InteractionData, event: UserDecided
    ) -> Step[PendingState, InteractionData]:
        if event.at >= data.expires_at:
            return step(state=S.EXPIRED, data=data)
        if not event.approved:
            return step(state=S.DENIED, data=data)
        scope = event.scope if event.scope is not None else data.scope
        return step(state=S.AUTHORIZED, data=evolve(data, scope=scope))

    @handles(UserAbandoned)
    def _abandoned(
        self, state: PendingState, data: InteractionData, event: UserAbandoned
    ) -> Step[PendingState, InteractionData]:
        return step(state=S.ABANDONED, data=data)

    @handles(TimerFired)
    def _timer(
        self, state: PendingState, data: InteractionData, event: TimerFired
    ) -> Step[PendingState, InteractionData]:
        return step(state=S.EXPIRED if event.at >= data.expires_at else state, data=data)

    # -- the agent at the pending URL ------------------------------------------------------

    @handles(RequestReceived)
    def _request(
        self, state: PendingState, data: InteractionData, event: RequestReceived
    ) -> Step[PendingState, InteractionData]:
        verified = verify_call(self._config, event.request, event.at)
        if isinstance(verified, HttpResponse):
            return step(state=state, data=data, actions=[Respond(response=verified)])
        if not hmac.compare_digest(verified.key_thumbprint, data.agent_jkt):
            return step(state=state, data=data, actions=[Respond(response=not_found())])
        if state is S.SERVING:
            answer = pending(data.location, self._config.retry_after, None, status="interacting")
            return step(state=state, data=data, actions=[Respond(response=answer)])
        if event.request.method.upper() == "DELETE":
            if state in (S.CANCELLED, S.GONE):
                return step(state=state, data=data, actions=[Respond(response=_gone())])
            return step(
                state=S.CANCELLED, data=data, actions=[Respond(response=HttpResponse(status=204))]
            )
        if event.request.method.upper() != "GET":
            answer = problem(400, "invalid_request", "poll a pending URL with GET")
            return step(state=state, data=data, actions=[Respond(response=answer)])
        return self._poll(state, data, event)

    def _poll(
        self, state: PendingState, data: InteractionData, event: RequestReceived
    ) -> Step[PendingState, InteractionData]:
        config = self._config
        if state in _OPEN and event.at >= data.expires_at:
            state = S.EXPIRED
        if state is S.CREATED:
            requirement = Requirement.interaction(config.interaction_url, data.code)
            answer = pending(data.location, config.retry_after, requirement)
            return step(state=state, data=data, actions=[Respond(response=answer)])
        if state is S.INTERACTING:
            answer = pending(data.location, config.retry_after, None, status="interacting")
            return step(state=state, data=data, actions=[Respond(response=answer)])
        if state is S.AUTHORIZED:
            return self._authorized(data, event)
        if state in _DONE_ANSWER:
            status, code, detail = _DONE_ANSWER[state]
            answer = problem(status, code, detail)
            return step(state=S.GONE, data=data, actions=[Respond(response=answer)])
        return step(state=state, data=data, actions=[Respond(response=_gone())])

    def _authorized(
        self, data: InteractionData, event: RequestReceived
    ) -> Step[PendingState, InteractionData]:
        grant = new_session(
            self._config,
            token=Randomness.of(event.random).session_token,
            agent_jkt=data.agent_jkt,
            agent_issuer=data.agent_issuer,
            agent=data.agent,
            scope=data.scope,
            at=event.at,
        )
        if data.held is not None and data.agent is not None and data.agent_issuer is not None:
            principal = AgentPrincipal(
                issuer=data.agent_issuer,
                agent=AgentId.parse(data.agent),
                key_thumbprint=data.agent_jkt,
                session=grant.record,
            )
            serve = Serve(principal=principal, request=data.held)
            return step(state=S.SERVING, data=evolve(data, grant=grant), actions=[serve])
        body: dict[str, str] = {"status": "authorized"}
        if data.scope is not None:
            body["scope"] = data.scope
        answer = json_response(200, body, {AAUTH_ACCESS: grant.token, "Cache-Control": "no-store"})
        actions: list[Action] = [grant.action, Respond(response=answer)]
        return step(state=S.GONE, data=data, actions=actions)

    @handles(Served)
    def _served(
        self, state: PendingState, data: InteractionData, event: Served
    ) -> Step[PendingState, InteractionData]:
        grant = data.grant
        if grant is None:
            raise IllegalTransition("SERVING without the session it was entered with")
        response = evolve(
            event.response,
            headers=event.response.headers.with_fields(
                {AAUTH_ACCESS: grant.token, "Cache-Control": "no-store"}
            ),
        )
        actions: list[Action] = [grant.action, Respond(response=response)]
        return step(state=S.GONE, data=evolve(data, grant=None, held=None), actions=actions)
