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
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Mapping
from typing import Any, Protocol

from attrs import evolve, frozen

from aauth_core.errors import AAuthError, LocalProtocolError, MalformedInput, RemoteProtocolError
from aauth_core.headers.requirement import Requirement, RequirementType
from aauth_core.http import HttpResponse
from aauth_core.jwk import PublicJwk
from aauth_core.jws import decode_compact
from aauth_core.metadata import AccessServerMetadata
from aauth_core.tokens.claims import (
    CLAIMS_FOR,
    DWK_ACCESS,
    DWK_PERSON,
    AgentTokenClaims,
    ResourceTokenClaims,
    TokenClaims,
    TokenType,
)
from aauth_core.tokens.verify import DEFAULT_POLICY, KeyResolver, TokenPolicy, verify_auth_token
from aauth_core.urls import endpoint_url
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
    need,
    origin_of,
    read_json_response,
    retry_after,
    same_origin_location,
    step,
)
from aauth_flows.machines.engine import Action, Event, Machine, Step, handles, table
from aauth_flows.machines.federation_api import (
    FederationProgress,
    FederationRequest,
    FederationSettled,
)
from aauth_flows.machines.signing import SigningKey

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


# -- configuration ----------------------------------------------------------------------


@frozen(kw_only=True)
class AccessServerEndpoint:
    """What the client needs from the AS's ``aauth-access.json``."""

    issuer: str
    auth_token_endpoint: str

    @classmethod
    def from_metadata(cls, metadata: AccessServerMetadata) -> AccessServerEndpoint:
        return cls(issuer=str(metadata.issuer), auth_token_endpoint=metadata.auth_token_endpoint)


class ClaimsSource(Protocol):
    """The PS's identity claims for the person a resource knows as ``sub`` (read-only).

    Returns the values it is willing to release among ``names``; ``sub`` is never asked
    for and is dropped if returned."""

    def claims_for(self, resource: str, sub: str, names: tuple[str, ...]) -> Mapping[str, Any]: ...


@frozen
class StaticClaims:
    """A :class:`ClaimsSource` over fixed values per ``(resource, sub)``."""

    values: Mapping[tuple[str, str], Mapping[str, Any]]

    def claims_for(self, resource: str, sub: str, names: tuple[str, ...]) -> Mapping[str, Any]:
        known = self.values.get((resource, sub), {})
        return {name: known[name] for name in names if name in known}


@frozen(kw_only=True)
class FederationClientConfig:
    """The PS's side: its issuer and signing key, the AS keys for the delivery checks."""

    issuer: str
    signing_key: SigningKey
    as_keys: KeyResolver
    claims: ClaimsSource = StaticClaims({})
    token_policy: TokenPolicy = DEFAULT_POLICY
    max_polls: int = 720


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
class DeliveryExpectation:
    """What the delivered auth token must say (§2.6 PS checks)."""

    as_issuer: str
    ps: str
    resource: str
    sub: str
    key: PublicJwk
    max_exp: int
    scope: str | None = None


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


def as_unreachable(detail: str) -> RemoteProtocolError:
    """The PS's answer when the AS is unreachable, malformed or unverifiable (502)."""
    return RemoteProtocolError(detail, code="as_unreachable", status=502)


def _claims(token: str, expected: tuple[TokenType, ...], what: str) -> TokenClaims:
    """Decode a token the PS already verified (a bad one here is the caller's bug)."""
    try:
        jws = decode_compact(token)
        for token_type in expected:
            if jws.typ == token_type.value:
                return CLAIMS_FOR[token_type].from_payload(jws.payload)
    except AAuthError as exc:
        raise LocalProtocolError(f"{what} in the FederationRequest: {exc.detail}") from None
    raise LocalProtocolError(f"{what} in the FederationRequest has the wrong typ")


def check_delivery(
    token: object,
    expect: DeliveryExpectation,
    *,
    keys: KeyResolver,
    now: int,
    policy: TokenPolicy = DEFAULT_POLICY,
) -> int:
    """The PS's checks on an AS-delivered auth token (-11 §9.1.3, digest §2.6); returns
    its ``exp``. Any failure raises :func:`as_unreachable`.

    ``typ`` first (a person token is refused), then signature by the AS's key, ``iss``
    = the AS called, ``dwk`` = ``aauth-access.json``, ``ps`` = this PS, ``sub`` = the
    resource token's, ``aud`` = the resource, ``cnf.jwk`` = the agent (or sub-agent)
    key, ``scope`` ⊆ the resource token's, ``exp`` ≤ the presented token's."""
    if not isinstance(token, str):
        raise as_unreachable("the AS answered 200 without an auth_token")
    try:
        verified = verify_auth_token(
            token, keys=keys, now=now, audience=expect.resource, policy=policy
        )
    except AAuthError as exc:
        raise as_unreachable(f"the AS's auth token does not verify: {exc.detail}") from None
    claims = verified.claims
    if claims.iss != expect.as_issuer:
        raise as_unreachable("the auth token was not issued by the AS called")
    if claims.dwk != DWK_ACCESS:
        raise as_unreachable("an AS-issued auth token has dwk aauth-access.json")
    if claims.ps != expect.ps:
        raise as_unreachable("the auth token names another Person Server")
    if not hmac.compare_digest(claims.sub, expect.sub):
        raise as_unreachable("the auth token's sub is not the resource token's")
    if not claims.cnf.binds(expect.key):
        raise as_unreachable("the auth token is not bound to the agent's key")
    if claims.scope is not None and not claims.scopes <= frozenset((expect.scope or "").split()):
        raise as_unreachable("the auth token's scope is broader than the resource token's")
    if claims.exp > expect.max_exp:
        raise as_unreachable("the auth token outlives the presented token")
    return claims.exp


def _expectation(request: FederationRequest, ps: str, as_issuer: str) -> DeliveryExpectation:
    resource = _claims(request.resource_token, (TokenType.RESOURCE,), "resource_token")
    agent = _claims(request.agent_token, (TokenType.AGENT,), "agent_token")
    presented = _claims(
        request.presented_token, (TokenType.PERSON, TokenType.AUTH), "presented_token"
    )
    assert isinstance(resource, ResourceTokenClaims)
    assert isinstance(agent, AgentTokenClaims)
    key = agent.cnf.jwk
    if request.subagent_token is not None:
        sub_agent = _claims(request.subagent_token, (TokenType.AGENT,), "subagent_token")
        assert isinstance(sub_agent, AgentTokenClaims)
        key = sub_agent.cnf.jwk
    if key is None:
        raise LocalProtocolError("the agent token binds by thumbprint only")
    max_exp = presented.exp
    if request.upstream_token is not None:
        upstream = _claims(
            request.upstream_token, (TokenType.PERSON, TokenType.AUTH), "upstream_token"
        )
        max_exp = min(max_exp, upstream.exp)
    return DeliveryExpectation(
        as_issuer=as_issuer,
        ps=ps,
        resource=resource.iss,
        sub=resource.sub,
        key=key,
        max_exp=max_exp,
        scope=resource.scope,
    )


def _request_body(request: FederationRequest) -> dict[str, str]:
    body = {
        "resource_token": request.resource_token,
        "agent_token": request.agent_token,
        "presented_token": request.presented_token,
    }
    if request.subagent_token is not None:
        body["subagent_token"] = request.subagent_token
    if request.upstream_token is not None:
        body["upstream_token"] = request.upstream_token
    return body


# -- the machine ------------------------------------------------------------------------

S = FederationState


class FederationClient(Machine[FederationState, FederationData]):
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

    def __init__(
        self,
        *,
        config: FederationClientConfig,
        data: FederationData | None = None,
        state: FederationState | None = None,
    ) -> None:
        super().__init__(data=FederationData() if data is None else data, state=state)
        self._config = config

    @property
    def config(self) -> FederationClientConfig:
        return self._config

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
        expect = _expectation(request, self._config.issuer, event.access_server.issuer)
        data = evolve(data, request=request, expect=expect)
        if expect.max_exp <= event.at:
            # A PS MUST NOT forward an expired presented token (-11 §5.5).
            error = AAuthError(
                "the presented token has expired", code="expired_presented_token", status=400
            )
            return self._fail(data, error, event.at)
        access_server = event.access_server
        resource = _claims(request.resource_token, (TokenType.RESOURCE,), "resource_token")
        assert isinstance(resource, ResourceTokenClaims)
        try:
            endpoint = endpoint_url(access_server.auth_token_endpoint)
            origin_of(endpoint)
        except MalformedInput as exc:
            return self._fail(data, as_unreachable(f"AS metadata: {exc.detail}"), event.at)
        if access_server.issuer != request.access_server or access_server.issuer != resource.aud:
            error = as_unreachable("the AS metadata issuer is not the resource token's aud")
            return self._fail(data, error, event.at)
        data = evolve(data, endpoint=endpoint)
        return self._sign(data, "POST", endpoint, _request_body(request), event.at)

    @handles(SignatureProduced)
    def _signed(
        self, state: FederationState, data: FederationData, event: SignatureProduced
    ) -> Step[FederationState, FederationData]:
        signing = need(data.signing, "the request being signed")
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
            request = need(data.request, "the federation request")
            return self._sign(data, "POST", data.endpoint, _request_body(request), event.at)
        return self._sign(data, "GET", data.location, None, event.at)

    @handles(PaymentSettled)
    def _paid(
        self, state: FederationState, data: FederationData, event: PaymentSettled
    ) -> Step[FederationState, FederationData]:
        location = need(data.location, "the pending URL")
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
                return self._wait(data, retry_after(response, DEFAULT_RETRY), None)
            return self._fail(data, self._relayed(response), at)
        except MalformedInput as exc:
            return self._fail(data, as_unreachable(f"malformed AS answer: {exc.detail}"), at)

    def _delivered(
        self, data: FederationData, response: HttpResponse, at: int
    ) -> Step[FederationState, FederationData]:
        expect = need(data.expect, "the delivery expectation")
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
        seconds = retry_after(response, DEFAULT_RETRY)
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
        names = body.get("required_claims")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise MalformedInput("requirement=claims without a required_claims array")
        location = need(data.location, "the pending URL")
        expect = need(data.expect, "the delivery expectation")
        wanted = tuple(dict.fromkeys(n for n in names if n != "sub"))  # never sub (-11)
        values = self._config.claims.claims_for(expect.resource, expect.sub, wanted)
        released = {name: values[name] for name in wanted if name in values}
        data = evolve(data, claims_sent=True, last_requirement=None)
        return self._sign(data, "POST", location, released, at)

    @staticmethod
    def _relayed(response: HttpResponse) -> AAuthError:
        """An AS terminal error keeps its code and status; an unverifiable or
        unexplained one becomes ``as_unreachable``."""
        body = read_json_response(response)
        code = None if body is None else body.get("error")
        if response.status == 401 or not isinstance(code, str) or not code:
            return as_unreachable(f"the AS answered {response.status} without a usable error")
        detail = body.get("detail") if body is not None else None
        text = detail if isinstance(detail, str) else f"the Access Server answered {code}"
        if not 400 <= response.status <= 599:
            return as_unreachable(f"the AS answered an unexpected status {response.status}")
        return RemoteProtocolError(text[:300], code=code[:64], status=response.status)
