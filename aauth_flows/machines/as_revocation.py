"""The Access Server's ``revocation_endpoint`` and its cascade to resources (protocol -11
§5.8, §7.6).

One :class:`RevocationRequest` per server-signed ``POST {"jti","exp"}``. The caller
revokes only its own tokens: the record is keyed ``(verified caller, jti)``. When a PS
revokes a person token, the AS stops issuing against it and revokes, one resource at a
time, every unexpired auth token it issued naming it as ``presented_token``::

    NEW --RevocationReceived--> REJECTED (401/400/403) | ANSWERED (200, nothing downstream)
                              | SIGNING (the first downstream request)
    SIGNING --SignatureProduced--> AWAITING (POST {resource revocation_endpoint} or a poll)
    AWAITING --ResponseReceived--> SIGNING (next resource) | WAITING (202: poll later)
                                 | ANSWERED (200, with ``downstream`` failures if any)
    AWAITING --DownstreamUnavailable--> SIGNING | ANSWERED   (timeout, no connection)
    WAITING --TimerFired--> SIGNING (signed GET of the resource's pending URL)

Each downstream request is signed by the AS as itself (``jwks_uri`` scheme, ``dwk`` =
``aauth-access.json``, body covered) through :class:`~aauth_flows.machines.actions.SignBytes`.
Outcomes: a 2xx is done; no ``revocation_endpoint``, ``403``/``404``/``405`` are
``revocation_unsupported`` (the token lives until ``exp``); anything else (5xx, 429,
malformed, unreachable, a 202 that never settles) is ``revocation_unavailable``. Failures
go into the ``downstream`` list of the AS's ``200`` to the PS.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable

from attrs import evolve, frozen

from aauth_core.errors import AAuthError, MalformedInput
from aauth_core.http import HttpRequest, HttpResponse
from aauth_core.server_requests import verify_server_request
from aauth_core.tokens.claims import DWK_ACCESS, DWK_PERSON, DWK_RESOURCE
from aauth_flows.machines.actions import (
    RecordRevocation,
    Respond,
    ResponseReceived,
    SendRequest,
    SignatureProduced,
    TimerFired,
    Wait,
)
from aauth_flows.machines.as_policy import AccessServerConfig
from aauth_flows.machines.as_wire import (
    PendingSignature,
    begin_server_request,
    finish_server_request,
    json_response,
    problem_response,
    read_json_body,
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

__all__ = [
    "DownstreamRevocation",
    "RevocationState",
    "RevocationData",
    "RevocationReceived",
    "DownstreamUnavailable",
    "RevocationRequest",
    "MAX_DOWNSTREAM_POLLS",
    "MAX_DOWNSTREAM_WAIT",
]

#: Polls of one resource's pending URL before its outcome is ``revocation_unavailable``
#: (a resource has nothing downstream and should not answer 202 at all, §5.8).
MAX_DOWNSTREAM_POLLS = 3
#: Longest ``Retry-After`` honoured while the PS's request is held (§5.8: ~20 s).
MAX_DOWNSTREAM_WAIT = 20
UNSUPPORTED = "revocation_unsupported"
UNAVAILABLE = "revocation_unavailable"


@frozen(kw_only=True)
class DownstreamRevocation:
    """One auth token of this AS to revoke at ``recipient``'s ``endpoint``."""

    recipient: str
    endpoint: str
    jti: str
    exp: int


class RevocationState(enum.Enum):
    NEW = "new"
    SIGNING = "signing"
    AWAITING = "awaiting"
    WAITING = "waiting"
    ANSWERED = "answered"
    REJECTED = "rejected"
    ERROR = "error"


@frozen(kw_only=True)
class RevocationData:
    caller: str | None = None
    #: the downstream revocations still to run; the first is in flight
    queue: tuple[DownstreamRevocation, ...] = ()
    #: (recipient, error) of those that did not succeed, in order
    failures: tuple[tuple[str, str], ...] = ()
    signing: PendingSignature | None = None
    #: the pending URL of the resource being polled (after its 202)
    location: str | None = None
    polls: int = 0


@frozen(kw_only=True)
class RevocationReceived(Event):
    request: HttpRequest
    at: int


@frozen(kw_only=True)
class DownstreamUnavailable(Event):
    """The downstream request could not be sent or timed out."""

    at: int


R = RevocationState


def _outcome(status: int) -> str | None:
    """The cascade outcome of a resource's final answer (None: revoked)."""
    if 200 <= status < 300:
        return None
    if status in (403, 404, 405):
        return UNSUPPORTED
    return UNAVAILABLE


class RevocationRequest(ConfiguredMachine[RevocationState, RevocationData, AccessServerConfig]):
    """One server-signed ``POST {"jti","exp"}`` at the AS's ``revocation_endpoint``."""

    State = RevocationState
    INITIAL = RevocationState.NEW
    DATA = RevocationData
    TRANSITIONS = table(
        [
            (R.NEW, RevocationReceived, {R.ANSWERED, R.SIGNING, R.REJECTED}),
            (R.SIGNING, SignatureProduced, {R.AWAITING}),
            (R.AWAITING, ResponseReceived, {R.SIGNING, R.WAITING, R.ANSWERED}),
            (R.AWAITING, DownstreamUnavailable, {R.SIGNING, R.ANSWERED}),
            (R.WAITING, TimerFired, {R.SIGNING}),
        ]
    )

    @handles(RevocationReceived)
    def _received(
        self, state: RevocationState, data: RevocationData, event: RevocationReceived
    ) -> Step[RevocationState, RevocationData]:
        config, at = self._config, event.at
        try:
            signed = verify_server_request(
                event.request,
                keys=config.keys,
                dwks=(DWK_PERSON, DWK_RESOURCE),
                now=at,
                window=config.window,
            )
            caller = signed.issuer
            is_ps = signed.dwk == DWK_PERSON and config.person_servers.is_admitted(caller)
            is_resource = signed.dwk == DWK_RESOURCE and caller in config.known_resources
            if not (is_ps or is_resource):
                raise AAuthError(
                    f"{caller} may not revoke here", code="unsupported_iss", status=403
                )
            if event.request.method != "POST":
                raise MalformedInput("the revocation endpoint takes POST")
            body = read_json_body(event.request)
            jti, exp = body.get("jti"), body.get("exp")
            if not isinstance(jti, str) or not jti or len(jti) > 4096:
                raise MalformedInput("jti must be a non-empty string")
            if isinstance(exp, bool) or not isinstance(exp, int) or exp < 0:
                raise MalformedInput("exp must be a NumericDate")
        except AAuthError as exc:
            return step(R.REJECTED, data, [Respond(response=problem_response(exc))])
        actions: list[Action] = [RecordRevocation(iss=caller, jti=jti, exp=exp)]
        queue: list[DownstreamRevocation] = []
        failures: list[tuple[str, str]] = []
        if is_ps:
            for record in config.issued.issued_against(caller, jti):
                if record.exp <= at or config.revocations.is_revoked(config.issuer, record.jti):
                    continue
                actions.append(RecordRevocation(iss=config.issuer, jti=record.jti, exp=record.exp))
                endpoint = config.resources.revocation_endpoint(record.resource)
                if endpoint is None:
                    failures.append((record.resource, UNSUPPORTED))
                    continue
                queue.append(
                    DownstreamRevocation(
                        recipient=record.resource, endpoint=endpoint, jti=record.jti, exp=record.exp
                    )
                )
        data = evolve(data, caller=caller, queue=tuple(queue), failures=tuple(failures))
        return self._next(data, at, actions)

    # -- the cascade -------------------------------------------------------------------------

    def _next(
        self, data: RevocationData, at: int, actions: Iterable[Action] = ()
    ) -> Step[RevocationState, RevocationData]:
        """Sign the next downstream revocation, or answer the caller when none is left."""
        data = evolve(data, location=None, polls=0, signing=None)
        if not data.queue:
            return step(R.ANSWERED, data, [*actions, Respond(response=self._answer(data))])
        target = data.queue[0]
        body = json.dumps({"jti": target.jti, "exp": target.exp}, separators=(",", ":"))
        request = HttpRequest(
            method="POST",
            url=target.endpoint,
            headers={"Content-Type": "application/json"},
            body=body.encode(),
        )
        return self._sign(data, request, at, actions)

    def _sign(
        self, data: RevocationData, request: HttpRequest, at: int, actions: Iterable[Action] = ()
    ) -> Step[RevocationState, RevocationData]:
        config = self._config
        pending, sign = begin_server_request(
            config.signing_key, request, issuer=config.issuer, dwk=DWK_ACCESS, created=at
        )
        return step(R.SIGNING, evolve(data, signing=pending), [*actions, sign])

    @staticmethod
    def _answer(data: RevocationData) -> HttpResponse:
        if not data.failures:
            return json_response(200)
        body = {"downstream": [{"recipient": r, "error": e} for r, e in data.failures]}
        return json_response(200, body)

    def _settle(
        self, data: RevocationData, outcome: str | None, at: int
    ) -> Step[RevocationState, RevocationData]:
        done = require(data.queue[0] if data.queue else None, "the downstream revocation")
        failures = data.failures if outcome is None else (*data.failures, (done.recipient, outcome))
        return self._next(evolve(data, queue=data.queue[1:], failures=failures), at)

    @handles(SignatureProduced)
    def _signed(
        self, state: RevocationState, data: RevocationData, event: SignatureProduced
    ) -> Step[RevocationState, RevocationData]:
        pending = require(data.signing, "the request being signed")
        request = finish_server_request(self._config.signing_key, pending, event.signature)
        return step(R.AWAITING, evolve(data, signing=None), [SendRequest(request=request)])

    @handles(ResponseReceived)
    def _response(
        self, state: RevocationState, data: RevocationData, event: ResponseReceived
    ) -> Step[RevocationState, RevocationData]:
        response, at = event.response, event.at
        if response.status != 202:
            return self._settle(data, _outcome(response.status), at)
        target = require(data.queue[0] if data.queue else None, "the downstream revocation")
        if data.polls >= MAX_DOWNSTREAM_POLLS:
            return self._settle(data, UNAVAILABLE, at)
        try:
            location = same_origin_location(
                target.endpoint, response.headers.get("location") or data.location
            )
        except AAuthError:
            return self._settle(data, UNAVAILABLE, at)
        wait = min(retry_after(response, at=at), MAX_DOWNSTREAM_WAIT)
        data = evolve(data, location=location)
        return step(R.WAITING, data, [Wait(seconds=wait)])

    @handles(DownstreamUnavailable)
    def _unavailable(
        self, state: RevocationState, data: RevocationData, event: DownstreamUnavailable
    ) -> Step[RevocationState, RevocationData]:
        return self._settle(data, UNAVAILABLE, event.at)

    @handles(TimerFired)
    def _timer(
        self, state: RevocationState, data: RevocationData, event: TimerFired
    ) -> Step[RevocationState, RevocationData]:
        location = require(data.location, "the resource's pending URL")
        data = evolve(data, polls=data.polls + 1)
        return self._sign(data, HttpRequest(method="GET", url=location), event.at)
