"""The Person Server's federation client: the PS as a client of a resource's Access Server.

It starts from a :class:`~aauth_flows.machines.federation_api.FederationRequest` (the
PS's auth-token machine emitted ``Federate``) and ends with what the driver feeds back to
that machine: :class:`~aauth_flows.machines.federation_api.FederationProgress` while the
AS defers, then one :class:`~aauth_flows.machines.federation_api.FederationSettled`
(both carried by a :class:`ToPersonServer` action).

Flow (protocol -11 §5.5, §6.5, §5.9; protocol digest §2.6 for the delivery checks)::

    IDLE --StartFederation--> SIGNING --SignatureProduced--> AWAITING
    AWAITING --200--> DONE (delivery checks pass) | FAILED (as_unreachable 502)
    AWAITING --202 claims--> SIGNING (POST the claims to Location, never ``sub``)
    AWAITING --202 other / 429 / 503--> WAITING (Wait(Retry-After), progress relayed)
    AWAITING --402--> PAYING (Pay action) --PaymentSettled--> SIGNING (poll)
    WAITING --TimerFired--> SIGNING (signed GET Location)
    WAITING --AnswerPending--> SIGNING (POST the PS's or agent's answer to Location)
    AWAITING --4xx/5xx problem--> FAILED (the AS's code and status, relayed)
    AWAITING --garbage / Unreachable--> FAILED (as_unreachable 502)

Every request is server-signed (``jwks_uri`` scheme, ``dwk="aauth-person.json"``). The
generic agent-side pending poller (``pending.py``) did not exist when this was written,
so the polling loop lives here. The AS's metadata (issuer and ``auth_token_endpoint``)
comes on the start event: discovery is the driver's I/O.

The machine's helpers live in small modules, re-exported here: its configuration in
:mod:`~aauth_flows.machines.federation_config`, the requests it sends in
:mod:`~aauth_flows.machines.federation_requests` and the checks on what the AS answers
in :mod:`~aauth_flows.machines.federation_checks`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from attrs import evolve, frozen

from aauth_core.errors import AAuthError, LocalProtocolError, MalformedInput, RemoteProtocolError
from aauth_core.headers.requirement import Requirement, RequirementType
from aauth_core.http import HttpResponse
from aauth_core.tokens.claims import DWK_PERSON
from aauth_flows.machines.actions import (
    Fail,
    ResponseReceived,
    SendRequest,
    SignatureProduced,
    TimerFired,
    Wait,
)
from aauth_flows.machines.as_wire import (
    PendingSignature,
    begin_server_request,
    finish_server_request,
    json_request,
    read_json_response,
    retry_after,
    same_origin_location,
    step,
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
from aauth_flows.machines.federation_api import (
    FederationProgress,
    FederationRequest,
    FederationSettled,
)
from aauth_flows.machines.federation_checks import (
    DeliveryExpectation,
    as_unreachable,
    check_delivery,
    delivery_expectation,
    relayed_error,
)
from aauth_flows.machines.federation_config import (
    AccessServerEndpoint,
    ClaimsSource,
    FederationClientConfig,
    StaticClaims,
)
from aauth_flows.machines.federation_requests import (
    released_claims,
    requested_claim_names,
    token_endpoint,
    token_request_body,
)

__all__ = [
    "FederationState",
    "AccessServerEndpoint",
    "ClaimsSource",
    "StaticClaims",
    "FederationClientConfig",
    "DeliveryExpectation",
    "FederationData",
    "FederationClient",
    "StartFederation",
    "PaymentSettled",
    "AnswerPending",
    "Unreachable",
    "ToPersonServer",
    "Pay",
    "as_unreachable",
    "check_delivery",
]

DEFAULT_RETRY = 5
SLOW_DOWN_STEP = 5


class FederationState(enum.Enum):
    IDLE = "idle"
    SIGNING = "signing"
    AWAITING = "awaiting"
    WAITING = "waiting"
    PAYING = "paying"
    DONE = "done"
    FAILED = "failed"
    ERROR = "error"


# -- events and actions -----------------------------------------------------------------


@frozen(kw_only=True)
class StartFederation(Event):
    """Run ``request`` against the AS described by ``access_server``."""

    request: FederationRequest
    access_server: AccessServerEndpoint
    at: int


@frozen(kw_only=True)
class PaymentSettled(Event):
    """The driver paid what a 402 asked for (or the PS's billing did); polling resumes."""

    at: int


@frozen(kw_only=True)
class AnswerPending(Event):
    """A body to POST to the AS's pending URL (a clarification answer, or an agent's
    ``updated_request`` passed through unchanged)."""

    body: dict[str, Any]
    at: int


@frozen(kw_only=True)
class Unreachable(Event):
    """The driver could not reach the AS (connect error, timeout, TLS failure)."""

    detail: str
    at: int


@frozen(kw_only=True)
class ToPersonServer(Action):
    """Feed ``event`` to the PS's auth-token machine."""

    event: FederationProgress | FederationSettled


@frozen(kw_only=True)
class Pay(Action):
    """The AS answered 402: settle the payment its ``response`` describes (x402,
    ``WWW-Authenticate: Payment``) and answer with :class:`PaymentSettled`."""

    location: str
    response: HttpResponse


# -- data -------------------------------------------------------------------------------


@frozen(kw_only=True)
class FederationData:
    request: FederationRequest | None = None
    endpoint: str = ""
    expect: DeliveryExpectation | None = None
    location: str | None = None
    retry: int = DEFAULT_RETRY
    polls: int = 0
    last_requirement: str | None = None
    claims_sent: bool = False
    signing: PendingSignature | None = None


# -- the machine ------------------------------------------------------------------------

S = FederationState


class FederationClient(ConfiguredMachine[FederationState, FederationData, FederationClientConfig]):
    """PS → AS: one federated auth-token request, to a delivered token or an error."""

    State = FederationState
    INITIAL = FederationState.IDLE
    DATA = FederationData
    TRANSITIONS = table(
        [
            (S.IDLE, StartFederation, {S.SIGNING, S.FAILED}),
            (S.SIGNING, SignatureProduced, {S.AWAITING}),
            (
                S.AWAITING,
                ResponseReceived,
                {S.DONE, S.FAILED, S.WAITING, S.PAYING, S.SIGNING},
            ),
            (S.AWAITING, Unreachable, {S.FAILED}),
            (S.WAITING, TimerFired, {S.SIGNING, S.FAILED}),
            (S.WAITING, AnswerPending, {S.SIGNING}),
            (S.PAYING, PaymentSettled, {S.SIGNING}),
        ]
    )

    # -- helpers ---------------------------------------------------------------------

    def _sign(
        self, data: FederationData, method: str, url: str, body: Mapping[str, Any] | None, at: int
    ) -> Step[FederationState, FederationData]:
        pending, action = begin_server_request(
            self._config.signing_key,
            json_request(method, url, body),
            issuer=self._config.issuer,
            dwk=DWK_PERSON,
            created=at,
        )
        return step(state=S.SIGNING, data=evolve(data, signing=pending), actions=[action])

    def _fail(
        self, data: FederationData, error: AAuthError, at: int
    ) -> Step[FederationState, FederationData]:
        settled = FederationSettled(error=error, at=at)
        return step(
            state=S.FAILED,
            data=evolve(data, signing=None),
            actions=[Fail(error=error), ToPersonServer(event=settled)],
        )

    def _wait(
        self, data: FederationData, seconds: int, progress: FederationProgress | None
    ) -> Step[FederationState, FederationData]:
        actions: list[Action] = [] if progress is None else [ToPersonServer(event=progress)]
        actions.append(Wait(seconds=seconds))
        return step(state=S.WAITING, data=evolve(data, retry=seconds), actions=actions)

    # -- handlers --------------------------------------------------------------------

    @handles(StartFederation)
    def _start(
        self, state: FederationState, data: FederationData, event: StartFederation
    ) -> Step[FederationState, FederationData]:
        request = event.request
        expect = delivery_expectation(request, self._config.issuer, event.access_server.issuer)
        data = evolve(data, request=request, expect=expect)
        if expect.max_exp <= event.at:
            # A PS MUST NOT forward an expired presented token (-11 §5.5).
            error = AAuthError(
                "the presented token has expired", code="expired_presented_token", status=400
            )
            return self._fail(data, error, event.at)
        try:
            endpoint = token_endpoint(event.access_server, request)
        except RemoteProtocolError as exc:
            return self._fail(data, exc, event.at)
        data = evolve(data, endpoint=endpoint)
        return self._sign(data, "POST", endpoint, token_request_body(request), event.at)

    @handles(SignatureProduced)
    def _signed(
        self, state: FederationState, data: FederationData, event: SignatureProduced
    ) -> Step[FederationState, FederationData]:
        signing = require(data.signing, "the request being signed")
        signed = finish_server_request(self._config.signing_key, signing, event.signature)
        return step(
            state=S.AWAITING,
            data=evolve(data, signing=None),
            actions=[SendRequest(request=signed)],
        )

    @handles(Unreachable)
    def _unreachable(
        self, state: FederationState, data: FederationData, event: Unreachable
    ) -> Step[FederationState, FederationData]:
        return self._fail(data, as_unreachable(f"the AS is unreachable: {event.detail}"), event.at)

    @handles(TimerFired)
    def _timer(
        self, state: FederationState, data: FederationData, event: TimerFired
    ) -> Step[FederationState, FederationData]:
        if data.polls >= self._config.max_polls:
            return self._fail(data, as_unreachable("the AS kept the request pending"), event.at)
        data = evolve(data, polls=data.polls + 1)
        if data.location is None:  # 429/503 on the first POST: send it again
            request = require(data.request, "the federation request")
            return self._sign(data, "POST", data.endpoint, token_request_body(request), event.at)
        return self._sign(data, "GET", data.location, None, event.at)

    @handles(PaymentSettled)
    def _paid(
        self, state: FederationState, data: FederationData, event: PaymentSettled
    ) -> Step[FederationState, FederationData]:
        location = require(data.location, "the pending URL")
        return self._sign(data, "GET", location, None, event.at)

    @handles(AnswerPending)
    def _answer(
        self, state: FederationState, data: FederationData, event: AnswerPending
    ) -> Step[FederationState, FederationData]:
        location = data.location
        if location is None:
            raise LocalProtocolError("there is no pending URL to answer yet")
        # A new question after this answer is relayed again, even if it looks the same.
        data = evolve(data, last_requirement=None)
        return self._sign(data, "POST", location, event.body, event.at)

    @handles(ResponseReceived)
    def _response(
        self, state: FederationState, data: FederationData, event: ResponseReceived
    ) -> Step[FederationState, FederationData]:
        response, at = event.response, event.at
        status = response.status
        try:
            if status == 200:
                return self._delivered(data, response, at)
            if status in (202, 402):
                return self._deferred(data, response, at)
            if status == 429:  # slow_down: the interval grows by 5 s (linear)
                return self._wait(data, data.retry + SLOW_DOWN_STEP, None)
            if status == 503:
                return self._wait(data, retry_after(response, at=at, default=DEFAULT_RETRY), None)
            return self._fail(data, relayed_error(response), at)
        except MalformedInput as exc:
            return self._fail(data, as_unreachable(f"malformed AS answer: {exc.detail}"), at)

    def _delivered(
        self, data: FederationData, response: HttpResponse, at: int
    ) -> Step[FederationState, FederationData]:
        expect = require(data.expect, "the delivery expectation")
        body = read_json_response(response)
        if body is None:
            return self._fail(data, as_unreachable("the AS's 200 is not a JSON object"), at)
        try:
            exp = check_delivery(
                body.get("auth_token"),
                expect,
                keys=self._config.as_keys,
                now=at,
                policy=self._config.token_policy,
            )
        except RemoteProtocolError as exc:
            return self._fail(data, exc, at)
        token = body["auth_token"]
        settled = FederationSettled(auth_token=token, expires_in=max(exp - at, 0), at=at)
        return step(
            state=S.DONE,
            data=evolve(data, signing=None),
            actions=[ToPersonServer(event=settled)],
        )

    def _deferred(
        self, data: FederationData, response: HttpResponse, at: int
    ) -> Step[FederationState, FederationData]:
        location = same_origin_location(data.endpoint, response.headers.get("location"))
        seconds = retry_after(response, at=at, default=DEFAULT_RETRY)
        data = evolve(data, location=location, retry=seconds)
        raw = response.headers.get("aauth-requirement")
        requirement = Requirement.parse(raw) if raw is not None else None
        body = read_json_response(response) or {}
        if response.status == 402:
            return step(
                state=S.PAYING,
                data=data,
                actions=[Pay(location=location, response=response)],
            )
        if requirement is not None and requirement.type is RequirementType.CLAIMS:
            return self._send_claims(data, body, at)
        if requirement is not None and requirement.type in (
            RequirementType.AGENT_TOKEN,
            RequirementType.PERSON_TOKEN,
            RequirementType.AUTH_TOKEN,
        ):
            raise MalformedInput(f"requirement={requirement.requirement} is not an AS requirement")
        progress = None
        serialized = None if requirement is None else requirement.serialize()
        if requirement is not None and serialized != data.last_requirement:
            progress = FederationProgress(requirement=requirement, body=body, at=at)
        data = evolve(data, last_requirement=serialized)
        return self._wait(data, seconds, progress)

    def _send_claims(
        self, data: FederationData, body: Mapping[str, Any], at: int
    ) -> Step[FederationState, FederationData]:
        wanted = requested_claim_names(body)
        location = require(data.location, "the pending URL")
        expect = require(data.expect, "the delivery expectation")
        released = released_claims(self._config.claims, expect, wanted)
        data = evolve(data, claims_sent=True, last_requirement=None)
        return self._sign(data, "POST", location, released, at)
