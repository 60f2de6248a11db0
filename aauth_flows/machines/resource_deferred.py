"""Deferred auth-token delivery (protocol -11 §6.4 step 6, §5.9).

The resource held an invocation and answered ``202`` + ``requirement=auth-token;
resource-token=…``. The agent gets the auth token from its PS and polls the pending URL
signed with it. The resource executes the held invocation **once** (a :class:`Serve`
action), keeps the result keyed by the auth token's ``jti`` until that token's ``exp``,
and answers a repeat presentation of the same auth token from the retained result.
Pollers signing with another key, or presenting another auth token, get 404.

::

    AWAITING_AUTH_TOKEN ──poll Sig(auth token)──► EXECUTING ──Served──► COMPLETED
         │ deadline ──► EXPIRED ──poll──► GONE          COMPLETED ──auth token exp──► GONE
         └ DELETE ────► CANCELLED (410 afterwards)
"""

from __future__ import annotations

import enum
import hmac

from attrs import evolve, frozen

from aauth_core.headers.requirement import Requirement
from aauth_core.http import HttpRequest, HttpResponse
from aauth_flows.machines.actions import Respond, TimerFired
from aauth_flows.machines.engine import ConfiguredMachine, Step, handles, require, table
from aauth_flows.machines.resource_actions import RequestReceived, Serve, Served
from aauth_flows.machines.resource_answers import (
    error_response,
    forbidden,
    pending,
    principal_from,
    problem,
    step,
    verify_call,
)
from aauth_flows.machines.resource_config import AuthorizedPrincipal, ResourceConfig
from aauth_flows.machines.resource_pending import not_found
from aauth_flows.machines.wire import pending_gone

__all__ = ["DeferredState", "DeferredData", "DeferredDelivery"]


class DeferredState(enum.Enum):
    AWAITING_AUTH_TOKEN = "awaiting_auth_token"  # noqa: S105 - a state name
    EXECUTING = "executing"
    COMPLETED = "completed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    GONE = "gone"
    FAILED = "failed"  # the auth token presented cannot serve the held call (403 answered)
    ERROR = "error"


@frozen(kw_only=True)
class DeferredData:
    pending_id: str
    location: str
    held: HttpRequest
    resource_token: str
    ps: str
    sub: str
    agent_jkt: str
    scope: str | None
    created_at: int
    expires_at: int
    auth_jti: str | None = None
    auth_exp: int = 0
    result: HttpResponse | None = None

    def __repr__(self) -> str:  # the held request and result may carry secrets
        return f"DeferredData(pending_id={self.pending_id!r}, auth_jti={self.auth_jti!r})"


D = DeferredState
_POLLABLE = tuple(s for s in D if s is not D.ERROR)


def _gone() -> HttpResponse:
    return error_response(pending_gone())


class DeferredDelivery(ConfiguredMachine[DeferredState, DeferredData, ResourceConfig]):
    State = DeferredState
    INITIAL = DeferredState.AWAITING_AUTH_TOKEN
    DATA = DeferredData
    TRANSITIONS = table(
        [
            (
                D.AWAITING_AUTH_TOKEN,
                RequestReceived,
                {D.AWAITING_AUTH_TOKEN, D.EXECUTING, D.GONE, D.CANCELLED, D.FAILED},
            ),
            (D.EXECUTING, RequestReceived, {D.EXECUTING}),
            (D.COMPLETED, RequestReceived, {D.COMPLETED, D.GONE}),
            (D.EXPIRED, RequestReceived, {D.EXPIRED, D.GONE}),
            (D.CANCELLED, RequestReceived, {D.CANCELLED}),
            (D.GONE, RequestReceived, {D.GONE}),
            (D.FAILED, RequestReceived, {D.FAILED, D.GONE}),
            (D.EXECUTING, Served, {D.COMPLETED}),
            (D.AWAITING_AUTH_TOKEN, TimerFired, {D.AWAITING_AUTH_TOKEN, D.EXPIRED}),
            (D.COMPLETED, TimerFired, {D.COMPLETED, D.GONE}),
        ]
    )

    @handles(TimerFired)
    def _timer(
        self, state: DeferredState, data: DeferredData, event: TimerFired
    ) -> Step[DeferredState, DeferredData]:
        if state is D.AWAITING_AUTH_TOKEN and event.at >= data.expires_at:
            return step(state=D.EXPIRED, data=data)
        if state is D.COMPLETED and event.at >= data.auth_exp:
            return step(state=D.GONE, data=evolve(data, result=None))
        return step(state=state, data=data)

    @handles(Served)
    def _served(
        self, state: DeferredState, data: DeferredData, event: Served
    ) -> Step[DeferredState, DeferredData]:
        return step(
            state=D.COMPLETED,
            data=evolve(data, result=event.response),
            actions=[Respond(response=event.response)],
        )

    @handles(RequestReceived)
    def _request(
        self, state: DeferredState, data: DeferredData, event: RequestReceived
    ) -> Step[DeferredState, DeferredData]:
        verified = verify_call(self._config, event.request, event.at)
        if isinstance(verified, HttpResponse):
            return step(state=state, data=data, actions=[Respond(response=verified)])
        if not hmac.compare_digest(verified.key_thumbprint, data.agent_jkt):
            return step(state=state, data=data, actions=[Respond(response=not_found())])
        method = event.request.method.upper()
        if method == "DELETE":
            if state is not D.AWAITING_AUTH_TOKEN:
                return step(state=state, data=data, actions=[Respond(response=_gone())])
            return step(
                state=D.CANCELLED, data=data, actions=[Respond(response=HttpResponse(status=204))]
            )
        if method != "GET":
            answer = problem(400, "invalid_request", "poll a pending URL with GET")
            return step(state=state, data=data, actions=[Respond(response=answer)])
        principal = principal_from(verified)
        if state is D.AWAITING_AUTH_TOKEN:
            return self._awaiting(data, event, principal)
        if state is D.EXECUTING:
            answer = pending(data.location, self._config.retry_after, None)
            return step(state=state, data=data, actions=[Respond(response=answer)])
        if state is D.COMPLETED:
            if event.at >= data.auth_exp:
                return step(
                    state=D.GONE,
                    data=evolve(data, result=None),
                    actions=[Respond(response=_gone())],
                )
            same = (
                isinstance(principal, AuthorizedPrincipal)
                and data.auth_jti is not None
                and hmac.compare_digest(principal.jti, data.auth_jti)
            )
            result = require(data.result, "a COMPLETED record's result")
            answer = result if same else not_found()
            return step(state=state, data=data, actions=[Respond(response=answer)])
        if state is D.EXPIRED:
            answer = problem(408, "expired", "the pending request expired")
            return step(state=D.GONE, data=data, actions=[Respond(response=answer)])
        after = D.GONE if state is D.FAILED else state
        return step(state=after, data=data, actions=[Respond(response=_gone())])

    def _awaiting(
        self,
        data: DeferredData,
        event: RequestReceived,
        principal: AuthorizedPrincipal | object,
    ) -> Step[DeferredState, DeferredData]:
        if event.at >= data.expires_at:
            answer = problem(408, "expired", "the pending request expired")
            return step(state=D.GONE, data=data, actions=[Respond(response=answer)])
        if not isinstance(principal, AuthorizedPrincipal):
            # still waiting for the auth token: repeat the requirement
            requirement = Requirement.auth_token(data.resource_token)
            answer = pending(data.location, self._config.retry_after, requirement)
            return step(state=D.AWAITING_AUTH_TOKEN, data=data, actions=[Respond(response=answer)])
        if principal.ps != data.ps or principal.sub != data.sub:
            return step(
                state=D.AWAITING_AUTH_TOKEN, data=data, actions=[Respond(response=not_found())]
            )
        needed = frozenset((data.scope or "").split())
        if not needed <= principal.scopes:
            answer = forbidden(
                "the auth token does not grant the held call's scope", "insufficient_scope"
            )
            return step(state=D.FAILED, data=data, actions=[Respond(response=answer)])
        executing = evolve(data, auth_jti=principal.jti, auth_exp=principal.exp)
        return step(
            state=D.EXECUTING,
            data=executing,
            actions=[Serve(principal=principal, request=data.held)],
        )
