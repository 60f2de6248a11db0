"""The PS ``revocation_endpoint`` and its cascade (protocol -11 §5.8, §7.6).

``POST`` signed by a server in its own right (``Signature-Key: sig=jwks_uri;id=…;dwk=…;
kid=…``, body covered) with ``{"jti", "exp"}``. The caller revokes only its own tokens:
the revocation is recorded under ``(verified caller, jti)``. Repeats are idempotent (``200``,
nothing recorded twice).

Cascade: when an Agent Provider revokes an agent token the PS accepted, the PS revokes
every unexpired person and auth token it issued to that agent (recorded locally, so they
are refused as ``revoked_presented_token`` from then on) and, one signed request at a
time, at their resources and at the ASes the person tokens were presented to. Outcomes
(``revocation_unsupported`` / ``revocation_unavailable``) are recorded, never reported to
the AP. The answer is ``200`` once the cascade is terminal; if the driver's hold timer
fires first, ``202`` with a pending URL the caller polls under the same identity.

Core's :class:`~aauth_core.requests.RequestVerifier` verifies only the ``jwt`` scheme;
:func:`verify_server_request` builds the ``jwks_uri``-scheme check from core parts.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable

from attrs import evolve, frozen

from aauth_core.errors import AAuthError, MalformedInput
from aauth_core.http import HttpRequest, HttpResponse
from aauth_core.server_requests import sign_server_request
from aauth_core.server_requests import verify_server_request as core_verify_server_request
from aauth_core.signer import Signer
from aauth_core.tokens.claims import DWK_ACCESS, DWK_AGENT, DWK_PERSON, DWK_RESOURCE
from aauth_flows.machines.actions import (
    Respond,
    ResponseReceived,
    SendRequest,
    SignatureProduced,
    SignBytes,
    TimerFired,
)
from aauth_flows.machines.engine import (
    Action,
    ConfiguredMachine,
    Event,
    Step,
    handles,
    require,
    table,
)
from aauth_flows.machines.ps_common import (
    IssuedKind,
    PendingRequest,
    PersonServerConfig,
    RecordDownstreamOutcome,
    RecordRevocation,
    RequestArrived,
    gone,
    not_found,
    parse_json_body,
    pending_response,
    problem,
    step,
)
from aauth_flows.machines.signing import complete, signing_input

__all__ = [
    "RevocationState",
    "Downstream",
    "RevocationData",
    "RevocationMachine",
    "DownstreamUnavailable",
    "verify_server_request",
    "SERVER_COMPONENTS",
]

SERVER_COMPONENTS = (
    "@method",
    "@authority",
    "@path",
    "signature-key",
    "content-digest",
    "content-type",
)
_DWKS = frozenset({DWK_AGENT, DWK_PERSON, DWK_ACCESS, DWK_RESOURCE})


def verify_server_request(config: PersonServerConfig, request: HttpRequest, now: int) -> str:
    """Verify a ``jwks_uri``-scheme server signature; return the verified issuer (``id``)."""
    return core_verify_server_request(
        request, keys=config.keys, dwks=_DWKS, now=now, window=config.signature_window
    ).issuer


class RevocationState(enum.Enum):
    RECEIVED = "received"
    SIGNING = "signing"  # a cascade request is being signed
    AWAITING = "awaiting"  # a cascade request is out
    ANSWERED = "answered"  # answered on the initial request (terminal)
    REJECTED = "rejected"  # the initial request was refused (terminal)
    COMPLETED = "completed"  # the cascade ended after a 202: the next poll gets 200
    GONE = "gone"
    FAILED = "failed"  # unused by this machine: a revocation is never validly refused downstream
    ERROR = "error"


@frozen(kw_only=True)
class Downstream:
    """One revocation to send: token ``jti``/``exp`` at ``recipient``'s ``endpoint``."""

    recipient: str
    endpoint: str
    jti: str
    exp: int


@frozen(kw_only=True)
class DownstreamUnavailable(Event):
    """The cascade request could not be sent or timed out."""

    at: int


@frozen(kw_only=True)
class RevocationData:
    caller: str = ""
    jti: str = ""
    exp: int = 0
    at: int = 0
    queue: tuple[Downstream, ...] = ()
    current: HttpRequest | None = None
    to_sign: bytes = b""
    answered: bool = False
    pending_url: str = ""


R = RevocationState


class RevocationMachine(ConfiguredMachine[RevocationState, RevocationData, PersonServerConfig]):
    State = RevocationState
    INITIAL = RevocationState.RECEIVED
    DATA = RevocationData
    TRANSITIONS = table(
        [
            (R.RECEIVED, RequestArrived, {R.ANSWERED, R.REJECTED, R.SIGNING}),
            (R.SIGNING, SignatureProduced, {R.AWAITING}),
            (R.AWAITING, ResponseReceived, {R.SIGNING, R.ANSWERED, R.COMPLETED}),
            (R.AWAITING, DownstreamUnavailable, {R.SIGNING, R.ANSWERED, R.COMPLETED}),
            (R.SIGNING, TimerFired, {R.SIGNING}),
            (R.AWAITING, TimerFired, {R.AWAITING}),
            (R.SIGNING, PendingRequest, {R.SIGNING}),
            (R.AWAITING, PendingRequest, {R.AWAITING}),
            (R.COMPLETED, PendingRequest, {R.COMPLETED, R.GONE}),
            (R.GONE, PendingRequest, {R.GONE}),
        ]
    )

    @handles(RequestArrived)
    def _arrived(
        self, state: R, data: RevocationData, event: RequestArrived
    ) -> Step[R, RevocationData]:
        try:
            return self._start(data, event)
        except AAuthError as exc:
            return step(state=R.REJECTED, data=data, actions=[Respond(response=problem(exc))])

    def _start(self, data: RevocationData, event: RequestArrived) -> Step[R, RevocationData]:
        config = self._config
        at = event.at
        caller = verify_server_request(config, event.request, at)
        body = parse_json_body(event.request, config.max_body)
        jti = body.get("jti")
        exp = body.get("exp")
        if not isinstance(jti, str) or not jti or len(jti) > 1024:
            raise MalformedInput("jti is required and must be a non-empty string")
        if isinstance(exp, bool) or not isinstance(exp, int) or exp < 0:
            raise MalformedInput("exp is required and must be a NumericDate")
        if not config.store.accepts_revocations_from(caller):
            raise AAuthError(
                f"revocations from {caller} are not accepted", code="unsupported_iss", status=403
            )
        store = config.store
        ok = Respond(response=HttpResponse(status=200))
        if store.is_revoked(caller, jti) or exp <= at:
            return step(state=R.ANSWERED, data=data, actions=[ok])  # idempotent: nothing twice
        actions: list[Action] = [RecordRevocation(iss=caller, jti=jti, exp=exp)]
        queue: list[Downstream] = []
        agent_sub = store.agent_token_sub(caller, jti)
        if agent_sub is not None:
            issued = [
                r
                for r in store.issued_to_agent(caller, agent_sub)
                if r.exp > at and not store.is_revoked(r.iss, r.jti)
            ]
            for record in issued:
                if record.kind is IssuedKind.FEDERATED_AUTH:
                    continue  # the AS revokes these when the person token is revoked there
                actions.append(RecordRevocation(iss=record.iss, jti=record.jti, exp=record.exp))
                recipients = [record.aud]
                if record.kind is IssuedKind.PERSON:
                    recipients += sorted(
                        {
                            f.iss
                            for f in issued
                            if f.kind is IssuedKind.FEDERATED_AUTH and f.presented_jti == record.jti
                        }
                    )
                for recipient in recipients:
                    endpoint = store.revocation_endpoint(recipient)
                    if endpoint is None:
                        actions.append(
                            RecordDownstreamOutcome(
                                recipient=recipient,
                                jti=record.jti,
                                outcome="revocation_unsupported",
                            )
                        )
                    else:
                        queue.append(
                            Downstream(
                                recipient=recipient,
                                endpoint=endpoint,
                                jti=record.jti,
                                exp=record.exp,
                            )
                        )
        pending_id = event.random[16:32].hex()
        data = evolve(
            data,
            caller=caller,
            jti=jti,
            exp=exp,
            at=at,
            queue=tuple(queue),
            pending_url=config.pending_base + pending_id,
        )
        if not queue:
            return step(state=R.ANSWERED, data=data, actions=[*actions, ok])
        return self._sign_next(data, at, actions)

    def _sign_next(
        self, data: RevocationData, at: int, actions: list[Action]
    ) -> Step[R, RevocationData]:
        target = data.queue[0]
        body = json.dumps({"jti": target.jti, "exp": target.exp}, separators=(",", ":")).encode()
        request = HttpRequest(
            method="POST",
            url=target.endpoint,
            headers={"Content-Type": "application/json"},
            body=body,
        )
        data = evolve(data, current=request, at=at)
        to_sign = signing_input(self._config.signing_key, _produce(self._config, request, at))
        return step(
            state=R.SIGNING,
            data=evolve(data, to_sign=to_sign),
            actions=[*actions, SignBytes(key=self._config.signing_key.ref, data=to_sign)],
        )

    @handles(SignatureProduced)
    def _signed(
        self, state: R, data: RevocationData, event: SignatureProduced
    ) -> Step[R, RevocationData]:
        current = require(data.current, "the revocation request being signed")
        fields = complete(
            self._config.signing_key,
            _produce(self._config, current, data.at),
            data.to_sign,
            event.signature,
        )
        signed = evolve(current, headers=current.headers.with_fields(fields))
        return step(
            state=R.AWAITING, data=evolve(data, to_sign=b""), actions=[SendRequest(request=signed)]
        )

    def _outcome(
        self, data: RevocationData, outcome: str | None, at: int
    ) -> Step[R, RevocationData]:
        done, rest = data.queue[0], data.queue[1:]
        actions: list[Action] = [
            RecordDownstreamOutcome(recipient=done.recipient, jti=done.jti, outcome=outcome)
        ]
        data = evolve(data, queue=rest, current=None)
        if rest:
            return self._sign_next(data, at, actions)
        if data.answered:
            return step(state=R.COMPLETED, data=data, actions=actions)
        return step(
            state=R.ANSWERED,
            data=data,
            actions=[*actions, Respond(response=HttpResponse(status=200))],
        )

    @handles(ResponseReceived)
    def _response(
        self, state: R, data: RevocationData, event: ResponseReceived
    ) -> Step[R, RevocationData]:
        status = event.response.status
        if 200 <= status < 300:
            outcome = None
        elif status in (403, 404, 405):
            outcome = "revocation_unsupported"
        else:
            outcome = "revocation_unavailable"
        return self._outcome(data, outcome, event.at)

    @handles(DownstreamUnavailable)
    def _unavailable(
        self, state: R, data: RevocationData, event: DownstreamUnavailable
    ) -> Step[R, RevocationData]:
        return self._outcome(data, "revocation_unavailable", event.at)

    @handles(TimerFired)
    def _timer(self, state: R, data: RevocationData, event: TimerFired) -> Step[R, RevocationData]:
        if data.answered:
            return step(state=state, data=data)
        response = pending_response(data.pending_url, self._config.retry_after)
        return step(
            state=state, data=evolve(data, answered=True), actions=[Respond(response=response)]
        )

    @handles(PendingRequest)
    def _poll(
        self, state: R, data: RevocationData, event: PendingRequest
    ) -> Step[R, RevocationData]:
        def answer(response: HttpResponse, next_state: R = state) -> Step[R, RevocationData]:
            return step(state=next_state, data=data, actions=[Respond(response=response)])

        # The caller first (§5.9, §8): another server gets the unknown-URL answer, even
        # once the record is gone; 410 is for the server that asked.
        try:
            caller = verify_server_request(self._config, event.request, event.at)
        except AAuthError as exc:
            return answer(problem(exc))
        if caller != data.caller or not data.answered:
            return answer(not_found())
        if state is R.GONE:
            return answer(gone())
        if state is R.COMPLETED:
            return answer(HttpResponse(status=200), R.GONE)
        return answer(pending_response(data.pending_url, self._config.retry_after))


def _produce(
    config: PersonServerConfig, request: HttpRequest, created: int
) -> Callable[[Signer], dict[str, str]]:
    """Sign a cascade request as the PS itself (``jwks_uri`` scheme, body covered)."""

    def run(signer: Signer) -> dict[str, str]:
        return sign_server_request(
            request, signer, issuer=config.issuer, dwk=DWK_PERSON, created=created
        )

    return run
