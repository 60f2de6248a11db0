"""The part the PS token machines share: the deferred consent record (§5.9, §6.0
"server-side pending record"), minting through a signing action, and delivery.

A token request that needs the person becomes a pending record: ``202`` with
``requirement=interaction`` (a single-use code, compared in constant time, a few wrong
codes fail the record), ``approval`` (the PS reaches the person itself) or, when the
person asks the agent something, ``clarification`` (rounds capped). The person decides
through :class:`PersonDecided`; the agent polls, answers and cancels through
:class:`PendingRequest`. After the terminal answer is served the record answers ``410``.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar
from urllib.parse import urlencode

from attrs import evolve, frozen

from aauth_core.errors import AAuthError, LocalProtocolError, MalformedInput, SignatureFailure
from aauth_core.headers.requirement import Requirement, RequirementType
from aauth_core.http import HttpResponse
from aauth_core.interaction import codes_match
from aauth_core.jwk import PublicJwk
from aauth_core.signer import Signer
from aauth_core.tokens.claims import (
    DWK_PERSON,
    AuthTokenClaims,
    Confirmation,
    PersonTokenClaims,
)
from aauth_core.tokens.mint import mint_token
from aauth_flows.machines.actions import SignatureProduced, SignBytes, TimerFired
from aauth_flows.machines.engine import Action, Event, Machine, Step, handles
from aauth_flows.machines.federation_api import (
    FederationAnswer,
    FederationProgress,
    FederationSettled,
)
from aauth_flows.machines.ps_checks import (
    optional_string,
    verify_agent_request,
    verify_resource_and_presented,
)
from aauth_flows.machines.ps_common import (
    CodeRefused,
    ConsentMode,
    ConsentPrompt,
    Decision,
    DecisionRefused,
    InteractionArrived,
    IssuedKind,
    IssuedRecord,
    PendingRequest,
    PersonAsked,
    PersonDecided,
    PersonServerConfig,
    RecordBinding,
    RecordConsent,
    RecordGrant,
    RecordIssued,
    RedirectPerson,
    RequestArrived,
    ResourceCallback,
    callback_outcome,
    directed_sub,
    gone,
    json_response,
    not_found,
    parse_json_body,
    pending_response,
    problem,
    step,
)

__all__ = [
    "TokenRequestState",
    "ConsentMode",
    "TokenRequestData",
    "TokenRequestMachine",
    "CONSENT_ROWS",
    "consent_rows",
    "form_error",
    "TOKEN_TYPE_JWT",
]

TOKEN_TYPE_JWT = "urn:ietf:params:oauth:token-type:jwt"  # noqa: S105 - a URN


class TokenRequestState(enum.Enum):
    RECEIVED = "received"
    MINTING = "minting"
    PENDING = "pending"
    INTERACTING = "interacting"
    AT_RESOURCE = "at_resource"  # the person was sent to the resource's own interaction
    CLARIFYING = "clarifying"
    FEDERATING = "federating"
    COMPLETED = "completed"  # result ready, served on the next poll
    ANSWERED = "answered"  # answered on the initial request (terminal)
    REJECTED = "rejected"  # the initial request was refused (terminal)
    FAILED = "failed"  # denied / abandoned / expired / relayed error, served on the next poll
    GONE = "gone"  # the terminal answer was served: 410 from now on
    ERROR = "error"


@frozen(kw_only=True)
class TokenRequestData:
    """What a token request remembers (snapshot-able: core values only)."""

    kind: IssuedKind
    at: int = 0
    jti: str = ""
    pending_url: str = ""
    pending_expires: int = 0
    mode: ConsentMode | None = None
    code: str | None = None
    code_failures: int = 0
    form: bool = False
    # the caller
    agent_iss: str = ""
    agent_sub: str = ""
    agent_token: str = ""
    signer_jkt: str = ""
    cnf_key: PublicJwk | None = None
    person: str | None = None
    # what is asked for
    resource: str = ""
    scope: str | None = None
    granted_scope: str | None = None
    account: str | None = None
    mission_s256: str | None = None
    tenant: str | None = None
    justification: str | None = None
    exp_cap: int = 0
    upstream: tuple[str, str] | None = None
    # the token pair an auth-token request carried (§5.9 updated_request checks)
    resource_token: str = ""
    presented_token: str = ""
    subagent_token: str | None = None
    upstream_token: str | None = None
    rt_iss: str = ""
    rt_sub: str = ""
    rt_agent_jkt: str = ""
    presented_jti: str = ""
    # clarification
    clarifications: int = 0
    question: str | None = None
    clarification_response: str | None = None
    resume: TokenRequestState = TokenRequestState.PENDING
    # resource-initiated interaction (§5.4): the resource token's ``interaction``
    resource_interaction_url: str | None = None
    resource_interaction_code: str | None = None
    callback_url: str | None = None
    # federation
    access_server: str | None = None
    relayed_requirement: str | None = None
    relayed_body: str | None = None
    # minting and the outcome
    person_claims: PersonTokenClaims | None = None
    auth_claims: AuthTokenClaims | None = None
    to_sign: bytes = b""
    deferred: bool = False
    result: str | None = None
    expires_in: int = 0
    outcome_code: str | None = None
    outcome_status: int = 0
    outcome_detail: str = ""


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


def _terminal(code: str, status: int, detail: str) -> AAuthError:
    return AAuthError(detail, code=code, status=status)


_FORM_CODES = {
    "invalid_request": "invalid_request",
    "invalid_scope": "invalid_scope",
    "unsupported_grant_type": "unsupported_grant_type",
}


def form_error(error: AAuthError) -> HttpResponse:
    """An RFC 6749 §5.2 error for the RFC 8693 binding: token and policy refusals are
    ``invalid_grant`` (the AAuth code is kept in ``aauth_error``); signature failures stay
    401 + ``Signature-Error``; 5xx keep their status."""
    if isinstance(error, SignatureFailure) and error.status == 401:
        return problem(error)
    if error.status >= 500:
        code, status = (
            ("temporarily_unavailable" if error.status == 502 else "server_error"),
            error.status,
        )
    else:
        code, status = _FORM_CODES.get(error.code, "invalid_grant"), 400
    body = {"error": code, "error_description": error.detail, "aauth_error": error.code}
    return HttpResponse(
        status=status,
        headers={"Content-Type": "application/json", "Cache-Control": "no-store"},
        body=json.dumps(body, separators=(",", ":")).encode(),
    )


class TokenRequestMachine(Machine[TokenRequestState, TokenRequestData]):
    """Base of the person-token and auth-token machines (shared handlers)."""

    State = TokenRequestState
    INITIAL = TokenRequestState.RECEIVED
    DATA = TokenRequestData
    KIND: ClassVar[IssuedKind]

    def __init__(
        self,
        *,
        config: PersonServerConfig,
        data: TokenRequestData | None = None,
        state: TokenRequestState | None = None,
    ) -> None:
        super().__init__(
            data=data if data is not None else TokenRequestData(kind=self.KIND), state=state
        )
        self._config = config

    @property
    def config(self) -> PersonServerConfig:
        return self._config

    # -- answers ------------------------------------------------------------------------

    def _error_response(self, data: TokenRequestData, error: AAuthError) -> HttpResponse:
        return form_error(error) if data.form else problem(error)

    def _reject(self, data: TokenRequestData, error: AAuthError) -> Step[S, TokenRequestData]:
        return step(
            state=S.REJECTED, data=data, actions=[_respond(self._error_response(data, error))]
        )

    def _success(self, data: TokenRequestData) -> HttpResponse:
        if data.result is None:
            raise LocalProtocolError("no result to deliver")
        if data.form:
            return json_response(
                200,
                {
                    "access_token": data.result,
                    "issued_token_type": TOKEN_TYPE_JWT,
                    "token_type": "N_A",
                    "expires_in": data.expires_in,
                },
            )
        name = "person_token" if data.kind is IssuedKind.PERSON else "auth_token"
        return json_response(200, {name: data.result, "expires_in": data.expires_in})

    def _pending(self, state: S, data: TokenRequestData) -> HttpResponse:
        retry = self.config.retry_after
        if state is S.CLARIFYING:
            return pending_response(
                data.pending_url,
                retry,
                Requirement.clarification(),
                {"clarification": data.question or ""},
            )
        if state is S.FEDERATING and data.relayed_requirement is not None:
            body = json.loads(data.relayed_body) if data.relayed_body else {}
            body.pop("status", None)
            return pending_response(
                data.pending_url, retry, Requirement.parse(data.relayed_requirement), body
            )
        if state in (S.INTERACTING, S.AT_RESOURCE):
            return pending_response(data.pending_url, retry, None, {"status": "interacting"})
        if state is S.PENDING and data.mode is ConsentMode.INTERACTION:
            assert data.code is not None
            req = Requirement.interaction(self.config.interaction_url, data.code)
            return pending_response(data.pending_url, retry, req)
        if state is S.PENDING and data.mode is ConsentMode.APPROVAL:
            return pending_response(data.pending_url, retry, Requirement.approval())
        return pending_response(data.pending_url, retry)

    def _fail(
        self, data: TokenRequestData, code: str, status: int, detail: str
    ) -> TokenRequestData:
        return evolve(data, outcome_code=code, outcome_status=status, outcome_detail=detail)

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
        actions = [_respond(self._pending(S.PENDING, data))]
        if mode is ConsentMode.APPROVAL:
            # §5.4 requirement=approval: the PS asks the person through its own channel now
            actions.append(self._prompt(data))
        return step(state=S.PENDING, data=data, actions=actions)

    def _producer(self, data: TokenRequestData) -> Callable[[Signer], str]:
        claims = data.person_claims if data.kind is IssuedKind.PERSON else data.auth_claims
        if claims is None:
            raise LocalProtocolError("nothing is being minted: the signature was not asked for")
        return lambda signer: mint_token(claims, signer)

    def _mint(
        self, data: TokenRequestData, at: int, actions: Sequence[Action] = ()
    ) -> Step[S, TokenRequestData]:
        """Build the claims (lifetime capped) and ask for the signature."""
        from aauth_flows.machines.signing import signing_input

        config = self.config
        exp = min(at + config.token_lifetime, data.exp_cap)
        if exp <= at:
            failed = self._fail(data, "expired", 408, "a token it depends on expired meanwhile")
            if not data.deferred:
                err = _terminal("expired_presented_token", 400, failed.outcome_detail)
                return self._reject(data, err)
            return step(state=S.FAILED, data=failed, actions=list(actions))
        assert data.cnf_key is not None
        assert data.person is not None
        if data.kind is IssuedKind.PERSON:
            person_claims = PersonTokenClaims(
                iss=config.issuer,
                dwk=DWK_PERSON,
                jti=data.jti,
                iat=at,
                exp=exp,
                aud=data.resource,
                sub=directed_sub(config.sub_secret, data.person, data.resource),
                cnf=Confirmation(jwk=data.cnf_key),
                mission_s256=data.mission_s256,
                tenant=data.tenant,
            )
            data = evolve(data, person_claims=person_claims)
        else:
            auth_claims = AuthTokenClaims(
                iss=config.issuer,
                dwk=DWK_PERSON,
                jti=data.jti,
                iat=at,
                exp=exp,
                aud=data.resource,
                ps=config.issuer,
                sub=data.rt_sub,
                cnf=Confirmation(jwk=data.cnf_key),
                scope=data.granted_scope,
                account=data.account,
                mission_s256=data.mission_s256,
                tenant=data.tenant,
            )
            data = evolve(data, auth_claims=auth_claims)
        to_sign = signing_input(config.signing_key, self._producer(data))
        return step(
            state=S.MINTING,
            data=evolve(data, to_sign=to_sign),
            actions=[*actions, SignBytes(key=config.signing_key.ref, data=to_sign)],
        )

    @handles(SignatureProduced)
    def _signed(
        self, state: S, data: TokenRequestData, event: SignatureProduced
    ) -> Step[S, TokenRequestData]:
        from aauth_flows.machines.signing import complete

        token = complete(
            self.config.signing_key, self._producer(data), data.to_sign, event.signature
        )
        claims = data.person_claims if data.kind is IssuedKind.PERSON else data.auth_claims
        assert claims is not None
        assert data.person is not None
        record = IssuedRecord(
            kind=data.kind,
            jti=claims.jti,
            iss=claims.iss,
            aud=data.resource,
            exp=claims.exp,
            agent_iss=data.agent_iss,
            agent_sub=data.agent_sub,
            person=data.person,
            sub=claims.sub if isinstance(claims, PersonTokenClaims | AuthTokenClaims) else "",
            upstream=data.upstream,
        )
        data = evolve(data, result=token, expires_in=claims.exp - claims.iat, to_sign=b"")
        actions: list[Action] = [RecordIssued(record=record)]
        if data.deferred:
            return step(state=S.COMPLETED, data=data, actions=actions)
        return step(state=S.ANSWERED, data=data, actions=[*actions, _respond(self._success(data))])

    # -- the person ----------------------------------------------------------------------

    @handles(InteractionArrived)
    def _interaction(
        self, state: S, data: TokenRequestData, event: InteractionArrived
    ) -> Step[S, TokenRequestData]:
        refused = _terminal("invalid_code", 410, "the code is not valid for this request")
        if state is not S.PENDING or data.mode is not ConsentMode.INTERACTION or data.code is None:
            # consumed already (single use), or no code was issued
            return step(state=state, data=data, actions=[CodeRefused(error=refused)])
        if event.at >= data.pending_expires:
            failed = self._fail(data, "expired", 408, "the pending request expired")
            expired = _terminal("expired", 408, "the interaction code expired")
            return step(state=S.FAILED, data=failed, actions=[CodeRefused(error=expired)])
        if codes_match(data.code, event.code):
            if data.resource_interaction_url is not None:
                return step(state=S.AT_RESOURCE, data=data, actions=[self._to_resource(data)])
            return step(state=S.INTERACTING, data=data, actions=[self._prompt(data)])
        failures = data.code_failures + 1
        data = evolve(data, code_failures=failures)
        if failures >= self.config.max_code_failures:
            data = self._fail(data, "invalid_code", 410, "too many wrong interaction codes")
            return step(state=S.FAILED, data=data, actions=[CodeRefused(error=refused)])
        return step(state=state, data=data, actions=[CodeRefused(error=refused)])

    def _prompt(self, data: TokenRequestData) -> ConsentPrompt:
        channel = data.mode if data.mode is not None else ConsentMode.INTERACTION
        return ConsentPrompt(
            pending_url=data.pending_url,
            channel=channel,
            kind=data.kind,
            resource=data.resource,
            agent=data.agent_sub,
            agent_provider=data.agent_iss,
            person=data.person,
            scope=data.scope,
            account=data.account,
            mission_s256=data.mission_s256,
            justification=data.justification,
            clarification_response=data.clarification_response,
        )

    def _to_resource(self, data: TokenRequestData) -> RedirectPerson:
        """§5.4: ``{interaction.url}?code={interaction.code}&callback={ps_callback_url}``
        (the URL was validated and admitted when the request arrived)."""
        assert data.resource_interaction_url is not None
        query = urlencode(
            {"code": data.resource_interaction_code or "", "callback": data.callback_url or ""}
        )
        return RedirectPerson(url=f"{data.resource_interaction_url}?{query}")

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
                state=S.FAILED, data=self._fail(data, "expired", 408, "the pending request expired")
            )
        if event.error is not None:
            code, status = callback_outcome(event.error)
            detail = f"the resource's interaction ended with {event.error[:40]!r}"
            return step(state=S.FAILED, data=self._fail(data, code, status, detail))
        store = self.config.store
        if data.person is not None and store.has_grant(
            data.person, data.resource, data.scope, data.mission_s256
        ):
            return self._mint(data, event.at)
        return step(state=S.INTERACTING, data=data, actions=[self._prompt(data)])

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
                state=S.FAILED, data=self._fail(data, "expired", 408, "the pending request expired")
            )
        if event.decision is Decision.DENY:
            return step(
                state=S.FAILED,
                data=self._fail(data, "denied", 403, "the person denied the request"),
            )
        if event.decision is Decision.ABANDON:
            return step(
                state=S.FAILED,
                data=self._fail(data, "abandoned", 403, "the person abandoned the request"),
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
            failed = self._fail(data, "denied", 403, "clarification rounds exhausted")
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
                state=S.FAILED, data=self._fail(data, "expired", 408, "the pending request expired")
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
            return step(state=next_state, data=next_data, actions=[_respond(response)])

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
                self._error_response(
                    data, _terminal("expired", 408, "the pending request expired")
                ),
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
            return answer(self._success(data), S.GONE)
        if state is S.FAILED:
            assert data.outcome_code is not None
            err = _terminal(data.outcome_code, data.outcome_status, data.outcome_detail)
            return answer(self._error_response(data, err), S.GONE)
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
            return step(state=S.FEDERATING, data=data, actions=[_respond(problem(exc))])
        waiting = evolve(data, relayed_requirement=None, relayed_body=None)
        return step(
            state=S.FEDERATING,
            data=waiting,
            actions=[
                FederationAnswer(body=body),
                _respond(self._pending(S.FEDERATING, waiting)),
            ],
        )

    def _clarification_post(
        self, data: TokenRequestData, event: PendingRequest
    ) -> Step[S, TokenRequestData]:
        def stay(response: HttpResponse) -> Step[S, TokenRequestData]:
            return step(state=S.CLARIFYING, data=data, actions=[_respond(response)])

        try:
            body = parse_json_body(event.request, self.config.max_body)
            action = body.get("action")
            if action == "clarification_response":
                text = optional_string(body, "clarification_response")
                if text is None:
                    raise MalformedInput("clarification_response is required")
                resumed = evolve(data, question=None, clarification_response=text)
            elif action == "updated_request":
                resumed = self._updated_request(data, body, event.at)
            else:
                raise MalformedInput("action must be clarification_response or updated_request")
        except AAuthError as exc:
            return stay(problem(exc))
        actions: list[Action] = [_respond(self._pending(data.resume, resumed))]
        if data.resume is S.INTERACTING or (
            data.resume is S.PENDING and data.mode is ConsentMode.APPROVAL
        ):
            # the person sees the agent's answer (attributed to it) where she is asked
            actions.append(self._prompt(resumed))
        return step(state=data.resume, data=resumed, actions=actions)

    def _updated_request(
        self, data: TokenRequestData, body: dict[str, Any], at: int
    ) -> TokenRequestData:
        """§5.9: a new resource token keeps ``iss``, ``ps``, ``sub``, ``agent_jkt``,
        ``mission_s256`` and ``tenant``; its ``presented_jti`` is the new presented token's."""
        if data.kind is not IssuedKind.AUTH:
            raise MalformedInput("updated_request applies to auth-token requests")
        rt_text = body.get("resource_token")
        pt_text = body.get("presented_token")
        if not isinstance(rt_text, str) or not isinstance(pt_text, str):
            raise MalformedInput("updated_request needs resource_token and presented_token")
        assert data.cnf_key is not None
        pair = verify_resource_and_presented(
            self.config,
            resource_token=rt_text,
            presented_token=pt_text,
            signer_key=data.cnf_key,
            now=at,
        )
        rt = pair.resource
        kept = (rt.iss, rt.sub, rt.agent_jkt, rt.mission_s256, rt.tenant)
        if (
            kept != (data.rt_iss, data.rt_sub, data.rt_agent_jkt, data.mission_s256, data.tenant)
            or not pair.three_party
        ):
            from aauth_core.errors import TokenParameterError

            raise TokenParameterError(
                "the new resource token changes what must stay",
                code="invalid_resource_token",
                parameter="resource",
            )
        justification = optional_string(body, "justification")
        return evolve(
            data,
            question=None,
            resource_token=rt_text,
            presented_token=pt_text,
            presented_jti=pair.presented.jti,
            scope=rt.scope,
            account=rt.account,
            exp_cap=min(data.exp_cap, pair.presented.exp),
            justification=justification if justification is not None else data.justification,
        )

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
            return step(state=S.FAILED, data=self._fail(data, err.code, err.status, err.detail))
        from aauth_core.tokens.verify import inspect_token

        assert event.auth_token is not None
        assert data.access_server is not None
        payload = inspect_token(event.auth_token).payload
        exp = payload.get("exp")
        jti = payload.get("jti")
        sub = payload.get("sub")
        if not isinstance(exp, int) or not isinstance(jti, str) or not isinstance(sub, str):
            failed = self._fail(
                data, "as_unreachable", 502, "the AS delivered a malformed auth token"
            )
            return step(state=S.FAILED, data=failed)
        record = IssuedRecord(
            kind=IssuedKind.FEDERATED_AUTH,
            jti=jti,
            iss=data.access_server,
            aud=data.resource,
            exp=exp,
            agent_iss=data.agent_iss,
            agent_sub=data.agent_sub,
            person=data.person or "",
            sub=sub,
            presented_jti=data.presented_jti,
        )
        expires_in = event.expires_in if event.expires_in is not None else max(exp - event.at, 0)
        data = evolve(data, result=event.auth_token, expires_in=expires_in)
        return step(state=S.COMPLETED, data=data, actions=[RecordIssued(record=record)])


def _respond(response: HttpResponse) -> Action:
    from aauth_flows.machines.actions import Respond

    return Respond(response=response)


# ``RequestArrived`` is re-exported for the machines' start rows.
__all__ += ["RequestArrived"]
