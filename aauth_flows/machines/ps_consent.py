"""The part the PS token machines share: the deferred consent record (§5.9, §6.0
"server-side pending record"), minting through a signing action, and delivery.

A token request that needs the person becomes a pending record: ``202`` with
``requirement=interaction`` (a single-use code, compared in constant time, a few wrong
codes fail the record), ``approval`` (the PS reaches the person itself) or, when the
person asks the agent something, ``clarification`` (rounds capped). The person decides
through :class:`PersonDecided`; the agent polls, answers and cancels through
:class:`PendingRequest`. After the terminal answer is served the record answers ``410``.

This module holds the shared transition rows and the machine's handlers; what they build
lives beside it: the state and data (:mod:`~aauth_flows.machines.ps_token_request`), the
answers to the agent (:mod:`~aauth_flows.machines.ps_pending`), the claims and records
(:mod:`~aauth_flows.machines.ps_minting`), what the person is shown
(:mod:`~aauth_flows.machines.ps_prompts`) and the clarification answers
(:mod:`~aauth_flows.machines.ps_clarification`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import ClassVar

from attrs import evolve

from aauth_core.errors import AAuthError, MalformedInput
from aauth_core.headers.requirement import Requirement, RequirementType
from aauth_core.http import HttpResponse
from aauth_core.interaction import codes_match
from aauth_core.tokens.verify import inspect_token
from aauth_flows.machines.actions import SignatureProduced, SignBytes, TimerFired
from aauth_flows.machines.engine import (
    Action,
    ConfiguredMachine,
    Event,
    Step,
    handles,
    require,
)
from aauth_flows.machines.federation_api import (
    FederationAnswer,
    FederationProgress,
    FederationSettled,
)
from aauth_flows.machines.ps_checks import verify_agent_request
from aauth_flows.machines.ps_clarification import clarified
from aauth_flows.machines.ps_common import step
from aauth_flows.machines.ps_config import PersonServerConfig
from aauth_flows.machines.ps_events import (
    CodeRefused,
    ConsentMode,
    Decision,
    DecisionRefused,
    InteractionArrived,
    PendingRequest,
    PersonAsked,
    PersonDecided,
    RequestArrived,
    ResourceCallback,
    callback_outcome,
)
from aauth_flows.machines.ps_http import (
    TOKEN_TYPE_JWT,
    form_error,
    gone,
    not_found,
    parse_json_body,
    problem,
    respond,
)
from aauth_flows.machines.ps_minting import (
    issued_record,
    minted_claims,
    token_producer,
    with_claims,
)
from aauth_flows.machines.ps_pending import (
    error_answer,
    pending_answer,
    terminal_error,
    token_answer,
    with_failure,
)
from aauth_flows.machines.ps_prompts import consent_prompt, resource_redirect
from aauth_flows.machines.ps_store import (
    IssuedKind,
    IssuedRecord,
    RecordBinding,
    RecordConsent,
    RecordGrant,
    RecordIssued,
)
from aauth_flows.machines.ps_token_request import TokenRequestData, TokenRequestState
from aauth_flows.machines.signing import complete, signing_input

__all__ = [
    "TokenRequestState",
    "ConsentMode",
    "TokenRequestData",
    "TokenRequestMachine",
    "CONSENT_ROWS",
    "consent_rows",
    "form_error",
    "TOKEN_TYPE_JWT",
    # re-exported for the machines' start rows
    "RequestArrived",
]

S = TokenRequestState
_LIVE = (S.PENDING, S.INTERACTING, S.CLARIFYING)
_AFTER = (S.MINTING, S.COMPLETED, S.FAILED, S.GONE)


def consent_rows(*, resource_interaction: bool = False) -> list[tuple[S, type[Event], Iterable[S]]]:
    """The rows both token machines share (the start rows are each machine's own);
    ``resource_interaction`` adds the detour through the resource's own interaction
    (§5.4: ``PENDING`` → ``AT_RESOURCE`` → callback → the PS's consent)."""
    arrival = {S.PENDING, S.INTERACTING, S.FAILED}
    rows: list[tuple[S, type[Event], Iterable[S]]] = [
        (S.MINTING, SignatureProduced, {S.ANSWERED, S.COMPLETED, S.FAILED}),
        (S.MINTING, PendingRequest, {S.MINTING, S.GONE}),
        *[(st, PendingRequest, {st, S.PENDING, S.INTERACTING, S.GONE}) for st in _LIVE],
        (S.COMPLETED, PendingRequest, {S.COMPLETED, S.GONE}),
        (S.FAILED, PendingRequest, {S.FAILED, S.GONE}),
        (S.GONE, PendingRequest, {S.GONE}),
        (
            S.PENDING,
            InteractionArrived,
            arrival | ({S.AT_RESOURCE} if resource_interaction else set()),
        ),
        *[(st, InteractionArrived, {st}) for st in (S.INTERACTING, S.CLARIFYING, *_AFTER)],
        *[(st, PersonDecided, {st, S.MINTING, S.FAILED}) for st in _LIVE],
        *[(st, PersonDecided, {st}) for st in _AFTER],
        *[(st, PersonAsked, {st, S.CLARIFYING, S.FAILED}) for st in _LIVE],
        *[(st, TimerFired, {st, S.FAILED}) for st in _LIVE],
    ]
    if resource_interaction:
        at = S.AT_RESOURCE
        rows += [
            (at, PendingRequest, {at, S.GONE}),
            (at, InteractionArrived, {at}),
            (at, PersonDecided, {at}),
            (at, PersonAsked, {at}),
            (at, TimerFired, {at, S.FAILED}),
            (at, ResourceCallback, {S.INTERACTING, S.MINTING, S.FAILED}),
            *[(st, ResourceCallback, {st}) for st in (*_LIVE, *_AFTER)],
        ]
    return rows


#: The shared rows without the resource-interaction detour.
CONSENT_ROWS = consent_rows()


class TokenRequestMachine(
    ConfiguredMachine[TokenRequestState, TokenRequestData, PersonServerConfig]
):
    """Base of the person-token and auth-token machines (shared handlers)."""

    State = TokenRequestState
    INITIAL = TokenRequestState.RECEIVED
    DATA = TokenRequestData
    KIND: ClassVar[IssuedKind]

    def initial_data(self) -> TokenRequestData:
        return TokenRequestData(kind=self.KIND)

    # -- answers ------------------------------------------------------------------------

    def _reject(self, data: TokenRequestData, error: AAuthError) -> Step[S, TokenRequestData]:
        return step(state=S.REJECTED, data=data, actions=[respond(error_answer(data, error))])

    def _pending(self, state: S, data: TokenRequestData) -> HttpResponse:
        return pending_answer(self.config, state, data)

    # -- consent and minting -------------------------------------------------------------

    def _open_pending(
        self, data: TokenRequestData, mode: ConsentMode, code: str | None, pending_id: str
    ) -> Step[S, TokenRequestData]:
        data = evolve(
            data,
            mode=mode,
            code=code if mode is ConsentMode.INTERACTION else None,
            pending_url=self.config.pending_base + pending_id,
            pending_expires=data.at + self.config.pending_lifetime,
            deferred=True,
        )
        actions = [respond(self._pending(S.PENDING, data))]
        if mode is ConsentMode.APPROVAL:
            # §5.4 requirement=approval: the PS asks the person through its own channel now
            actions.append(consent_prompt(data))
        return step(state=S.PENDING, data=data, actions=actions)

    def _mint(
        self, data: TokenRequestData, at: int, actions: Sequence[Action] = ()
    ) -> Step[S, TokenRequestData]:
        """Build the claims (lifetime capped) and ask for the signature."""
        config = self.config
        exp = min(at + config.token_lifetime, data.exp_cap)
        if exp <= at:
            failed = with_failure(data, "expired", 408, "a token it depends on expired meanwhile")
            if not data.deferred:
                err = terminal_error("expired_presented_token", 400, failed.outcome_detail)
                return self._reject(data, err)
            return step(state=S.FAILED, data=failed, actions=list(actions))
        data = with_claims(config, data, at, exp)
        to_sign = signing_input(config.signing_key, token_producer(data))
        return step(
            state=S.MINTING,
            data=evolve(data, to_sign=to_sign),
            actions=[*actions, SignBytes(key=config.signing_key.ref, data=to_sign)],
        )

    @handles(SignatureProduced)
    def _signed(
        self, state: S, data: TokenRequestData, event: SignatureProduced
    ) -> Step[S, TokenRequestData]:
        token = complete(
            self.config.signing_key, token_producer(data), data.to_sign, event.signature
        )
        claims = require(minted_claims(data), "the claims being minted")
        record = issued_record(data)
        data = evolve(data, result=token, expires_in=claims.exp - claims.iat, to_sign=b"")
        actions: list[Action] = [RecordIssued(record=record)]
        if data.deferred:
            return step(state=S.COMPLETED, data=data, actions=actions)
        return step(state=S.ANSWERED, data=data, actions=[*actions, respond(token_answer(data))])

    # -- the person ----------------------------------------------------------------------

    @handles(InteractionArrived)
    def _interaction(
        self, state: S, data: TokenRequestData, event: InteractionArrived
    ) -> Step[S, TokenRequestData]:
        refused = terminal_error("invalid_code", 410, "the code is not valid for this request")
        if state is not S.PENDING or data.mode is not ConsentMode.INTERACTION or data.code is None:
            # consumed already (single use), or no code was issued
            return step(state=state, data=data, actions=[CodeRefused(error=refused)])
        if event.at >= data.pending_expires:
            failed = with_failure(data, "expired", 408, "the pending request expired")
            expired = terminal_error("expired", 408, "the interaction code expired")
            return step(state=S.FAILED, data=failed, actions=[CodeRefused(error=expired)])
        if codes_match(data.code, event.code):
            if data.resource_interaction_url is not None:
                return step(state=S.AT_RESOURCE, data=data, actions=[resource_redirect(data)])
            return step(state=S.INTERACTING, data=data, actions=[consent_prompt(data)])
        failures = data.code_failures + 1
        data = evolve(data, code_failures=failures)
        if failures >= self.config.max_code_failures:
            data = with_failure(data, "invalid_code", 410, "too many wrong interaction codes")
            return step(state=S.FAILED, data=data, actions=[CodeRefused(error=refused)])
        return step(state=state, data=data, actions=[CodeRefused(error=refused)])

    @handles(ResourceCallback)
    def _callback(
        self, state: S, data: TokenRequestData, event: ResourceCallback
    ) -> Step[S, TokenRequestData]:
        """The person is back from the resource's interaction: its ``?error=`` ends the
        request (mapped per §5.4); otherwise the PS runs its own consent."""
        if state is not S.AT_RESOURCE:
            refused = DecisionRefused(reason="no resource interaction is under way")
            return step(state=state, data=data, actions=[refused])
        if event.at >= data.pending_expires:
            return step(
                state=S.FAILED,
                data=with_failure(data, "expired", 408, "the pending request expired"),
            )
        if event.error is not None:
            code, status = callback_outcome(event.error)
            detail = f"the resource's interaction ended with {event.error[:40]!r}"
            return step(state=S.FAILED, data=with_failure(data, code, status, detail))
        store = self.config.store
        if data.person is not None and store.has_grant(
            data.person, data.resource, data.scope, data.mission_s256
        ):
            return self._mint(data, event.at)
        return step(state=S.INTERACTING, data=data, actions=[consent_prompt(data)])

    @handles(PersonDecided)
    def _decided(
        self, state: S, data: TokenRequestData, event: PersonDecided
    ) -> Step[S, TokenRequestData]:
        def refuse(reason: str) -> Step[S, TokenRequestData]:
            return step(state=state, data=data, actions=[DecisionRefused(reason=reason)])

        if state in _AFTER:
            return refuse("the request is already decided")
        if state is S.AT_RESOURCE:
            return refuse("the resource's own interaction is not complete")
        if state is S.PENDING and data.mode is ConsentMode.INTERACTION:
            return refuse("the interaction code has not been presented")
        if data.person is not None and event.person != data.person:
            return refuse("only the person the agent is bound to decides")
        if event.at >= data.pending_expires:
            return step(
                state=S.FAILED,
                data=with_failure(data, "expired", 408, "the pending request expired"),
            )
        if event.decision is Decision.DENY:
            return step(
                state=S.FAILED,
                data=with_failure(data, "denied", 403, "the person denied the request"),
            )
        if event.decision is Decision.ABANDON:
            return step(
                state=S.FAILED,
                data=with_failure(data, "abandoned", 403, "the person abandoned the request"),
            )
        granted = data.scope
        if event.scope is not None:
            requested = set((data.scope or "").split())
            narrowed = event.scope.split()
            if not set(narrowed) <= requested:
                return refuse("a decision cannot grant scope beyond the resource token")
            granted = " ".join(narrowed) or None
        person = event.person
        records: list[Action] = []
        if data.person is None:
            records.append(
                RecordBinding(agent_iss=data.agent_iss, agent_sub=data.agent_sub, person=person)
            )
        if data.kind is IssuedKind.PERSON:
            records.append(
                RecordConsent(
                    person=person,
                    agent_iss=data.agent_iss,
                    agent_sub=data.agent_sub,
                    resource=data.resource,
                )
            )
        else:
            records.append(
                RecordGrant(
                    person=person,
                    resource=data.resource,
                    scope=granted,
                    mission_s256=data.mission_s256,
                )
            )
        return self._mint(evolve(data, person=person, granted_scope=granted), event.at, records)

    @handles(PersonAsked)
    def _asked(
        self, state: S, data: TokenRequestData, event: PersonAsked
    ) -> Step[S, TokenRequestData]:
        if state is S.AT_RESOURCE or (state is S.PENDING and data.mode is ConsentMode.INTERACTION):
            return step(
                state=state,
                data=data,
                actions=[DecisionRefused(reason="the person has not arrived")],
            )
        if state is S.CLARIFYING:
            return step(
                state=state,
                data=data,
                actions=[DecisionRefused(reason="a question is already open")],
            )
        if data.clarifications >= self.config.max_clarifications:
            failed = with_failure(data, "denied", 403, "clarification rounds exhausted")
            return step(state=S.FAILED, data=failed)
        data = evolve(
            data, question=event.question, clarifications=data.clarifications + 1, resume=state
        )
        return step(state=S.CLARIFYING, data=data)

    @handles(TimerFired)
    def _timer(
        self, state: S, data: TokenRequestData, event: TimerFired
    ) -> Step[S, TokenRequestData]:
        if event.at >= data.pending_expires:
            return step(
                state=S.FAILED,
                data=with_failure(data, "expired", 408, "the pending request expired"),
            )
        return step(state=state, data=data)

    # -- the agent at the pending URL ----------------------------------------------------

    @handles(PendingRequest)
    def _poll(
        self, state: S, data: TokenRequestData, event: PendingRequest
    ) -> Step[S, TokenRequestData]:
        def answer(
            response: HttpResponse, next_state: S = state, next_data: TokenRequestData = data
        ) -> Step[S, TokenRequestData]:
            return step(state=next_state, data=next_data, actions=[respond(response)])

        # The caller is verified before anything is said about the record (§5.9, §8):
        # another agent gets the answer an unknown URL gets, even once it is gone.
        request = event.request
        try:
            caller = verify_agent_request(self.config, request, event.at)
        except AAuthError as exc:
            return answer(problem(exc))
        if caller.verified.key_thumbprint != data.signer_jkt or (
            caller.claims.iss,
            str(caller.claims.sub),
        ) != (data.agent_iss, data.agent_sub):
            return answer(not_found())
        if state is S.GONE:
            return answer(gone())
        method = request.method.upper()
        live = state in (*_LIVE, S.AT_RESOURCE, S.FEDERATING, S.MINTING)
        if live and event.at >= data.pending_expires:
            return answer(
                error_answer(data, terminal_error("expired", 408, "the pending request expired")),
                S.GONE,
            )
        if method == "DELETE":
            if live and state is not S.MINTING:
                return answer(
                    HttpResponse(status=204, headers={"Cache-Control": "no-store"}), S.GONE
                )
            return (
                answer(gone(), S.GONE)
                if state is not S.MINTING
                else answer(self._pending(state, data))
            )
        if method == "POST":
            if state is S.FEDERATING and data.relayed_requirement is not None:
                return self._forward_answer(data, event)
            if state is not S.CLARIFYING:
                return answer(
                    problem(MalformedInput("nothing to answer: no clarification is open"))
                )
            return self._clarification_post(data, event)
        if method != "GET":
            return answer(
                problem(MalformedInput(f"method {method[:10]} is not allowed here", status=405))
            )
        if state is S.COMPLETED:
            return answer(token_answer(data), S.GONE)
        if state is S.FAILED:
            code = require(data.outcome_code, "a FAILED request's outcome code")
            err = terminal_error(code, data.outcome_status, data.outcome_detail)
            return answer(error_answer(data, err), S.GONE)
        return answer(self._pending(state, data))

    def _forward_answer(
        self, data: TokenRequestData, event: PendingRequest
    ) -> Step[S, TokenRequestData]:
        """The agent answers a clarification the AS asked through this PS: the body goes to
        the AS unchanged (-11 §6.5 step 6, §5.9); the agent is told to poll on."""
        relayed = Requirement.parse(data.relayed_requirement or "")
        try:
            if relayed.type is not RequirementType.CLARIFICATION:
                raise MalformedInput("nothing to answer: the AS asked for no clarification")
            body = parse_json_body(event.request, self.config.max_body)
            if body.get("action") not in ("clarification_response", "updated_request"):
                raise MalformedInput("action must be clarification_response or updated_request")
        except AAuthError as exc:
            return step(state=S.FEDERATING, data=data, actions=[respond(problem(exc))])
        waiting = evolve(data, relayed_requirement=None, relayed_body=None)
        return step(
            state=S.FEDERATING,
            data=waiting,
            actions=[
                FederationAnswer(body=body),
                respond(self._pending(S.FEDERATING, waiting)),
            ],
        )

    def _clarification_post(
        self, data: TokenRequestData, event: PendingRequest
    ) -> Step[S, TokenRequestData]:
        def stay(response: HttpResponse) -> Step[S, TokenRequestData]:
            return step(state=S.CLARIFYING, data=data, actions=[respond(response)])

        try:
            body = parse_json_body(event.request, self.config.max_body)
            resumed = clarified(self.config, data, body, event.at)
        except AAuthError as exc:
            return stay(problem(exc))
        actions: list[Action] = [respond(self._pending(data.resume, resumed))]
        if data.resume is S.INTERACTING or (
            data.resume is S.PENDING and data.mode is ConsentMode.APPROVAL
        ):
            # the person sees the agent's answer (attributed to it) where she is asked
            actions.append(consent_prompt(resumed))
        return step(state=data.resume, data=resumed, actions=actions)

    # -- federation (rows only in the auth-token machine) ------------------------------

    @handles(FederationProgress)
    def _federation_progress(
        self, state: S, data: TokenRequestData, event: FederationProgress
    ) -> Step[S, TokenRequestData]:
        requirement = event.requirement.serialize() if event.requirement is not None else None
        body = json.dumps(event.body) if event.body else None
        return step(
            state=S.FEDERATING,
            data=evolve(data, relayed_requirement=requirement, relayed_body=body),
        )

    @handles(FederationSettled)
    def _federation_settled(
        self, state: S, data: TokenRequestData, event: FederationSettled
    ) -> Step[S, TokenRequestData]:
        if event.error is not None:
            err = event.error
            return step(state=S.FAILED, data=with_failure(data, err.code, err.status, err.detail))
        # FederationSettled carries exactly one of auth_token and error
        auth_token = require(event.auth_token, "the delivered auth token")
        access_server = require(data.access_server, "the Access Server federated with")
        payload = inspect_token(auth_token).payload
        exp = payload.get("exp")
        jti = payload.get("jti")
        sub = payload.get("sub")
        if not isinstance(exp, int) or not isinstance(jti, str) or not isinstance(sub, str):
            failed = with_failure(
                data, "as_unreachable", 502, "the AS delivered a malformed auth token"
            )
            return step(state=S.FAILED, data=failed)
        record = IssuedRecord(
            kind=IssuedKind.FEDERATED_AUTH,
            jti=jti,
            iss=access_server,
            aud=data.resource,
            exp=exp,
            agent_iss=data.agent_iss,
            agent_sub=data.agent_sub,
            person=data.person or "",
            sub=sub,
            presented_jti=data.presented_jti,
        )
        expires_in = event.expires_in if event.expires_in is not None else max(exp - event.at, 0)
        data = evolve(data, result=auth_token, expires_in=expires_in)
        return step(state=S.COMPLETED, data=data, actions=[RecordIssued(record=record)])
