"""The pending (deferred) poller: one machine for every ``202 Accepted`` (protocol -11 §5.9,
§6.0 "Pending (deferred) machine").

Whoever got the 202 (an agent from a resource or its PS, a PS from an AS) builds a
:class:`PendingData` with :meth:`PendingData.create` (the URL it called, the key and the
:class:`PollCredential` it signs polls with) and feeds the 202 as :class:`Accepted`. The
poller then:

- checks ``Location`` (required, same origin as the URL called) and reads ``Retry-After``
  (default 5 s) into a :class:`~aauth_flows.machines.actions.Wait`;
- on ``TimerFired`` signs ``GET Location`` with the same credential (``Prefer: wait=N`` if
  asked) through :class:`~aauth_flows.machines.actions.SignBytes`;
- on ``202`` reports progress (:class:`PendingUpdate`), shows an interaction once per code
  (:class:`~aauth_flows.machines.actions.ShowInteraction` with ``{url}?code={code}``; a
  status of ``interacting`` stops prompting), and stops in ``NEEDS_INPUT`` with
  :class:`PendingInputNeeded` for a requirement only its owner can meet (``clarification``,
  ``auth-token`` for deferred delivery, ``claims``): the owner answers with
  :class:`PostAnswer` (a POST to the pending URL), :class:`UseCredential` (poll on with a new
  token) or :class:`~aauth_flows.machines.actions.Cancel` (``DELETE``);
- ``429`` adds 5 s to the interval (linear), ``503`` backs off per ``Retry-After``;
- ``200`` ends in ``DONE`` with :class:`~aauth_flows.machines.actions.Deliver` of a
  :class:`PendingOutcome`; ``403``/``408``/``410``/``500``/``502`` (and any other refusal) in
  ``FAILED`` with :class:`~aauth_flows.machines.actions.Fail` carrying the peer's code.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from attrs import evolve, field, frozen

from aauth_core.errors import (
    AAuthError,
    MalformedInput,
    RemoteProtocolError,
    SignatureFailure,
)
from aauth_core.headers.prefer import serialize_prefer_wait
from aauth_core.headers.requirement import Requirement, RequirementType
from aauth_core.headers.signature_error import SignatureErrorHeader
from aauth_core.http import Headers, HttpRequest, HttpResponse
from aauth_core.requests import aauth_components, sign_aauth_request
from aauth_core.server_requests import sign_server_request
from aauth_core.signer import Signer
from aauth_core.urls import pending_location
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
from aauth_flows.machines.engine import Action, Event, Machine, Step, handles, require, table
from aauth_flows.machines.signing import SigningKey, complete, signing_input
from aauth_flows.machines.wire import (
    DEFAULT_RETRY_AFTER,
    read_json_response,
    retry_after,
)

__all__ = [
    "DEFAULT_RETRY_AFTER",
    "SLOW_DOWN_STEP",
    "PendingState",
    "PollCredential",
    "PendingData",
    "PendingOutcome",
    "PendingUpdate",
    "PendingInputNeeded",
    "Accepted",
    "PostAnswer",
    "UseCredential",
    "PendingPoller",
    "clarification_response",
    "updated_request",
    "problem_code",
    "retry_after",
    "signature_error",
]

#: What each ``429`` / ``slow_down`` adds to the polling interval (linear).
SLOW_DOWN_STEP = 5

#: Terminal polling statuses and the code used when the problem body names none.
_TERMINAL_CODES = {
    403: "denied",
    408: "expired",
    410: "invalid_code",
    500: "server_error",
    502: "as_unreachable",
}
#: Requirements on a 202 that the poller cannot meet by polling on.
_OWNER_REQUIREMENTS = frozenset(
    {RequirementType.CLARIFICATION, RequirementType.AUTH_TOKEN, RequirementType.CLAIMS}
)


class PendingState(enum.Enum):
    IDLE = "idle"
    WAITING = "waiting"
    SIGNING = "signing"
    POLLING = "polling"
    NEEDS_INPUT = "needs_input"
    CANCELLING = "cancelling"
    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"
    ERROR = "error"


# -- helpers shared with the agent machine --------------------------------------------------


def json_body(response: HttpResponse) -> dict[str, Any]:
    """The response body as a JSON object, or ``{}`` when it is not one."""
    return read_json_response(response) or {}


def problem_code(response: HttpResponse, default: str) -> str:
    """The RFC 9457 ``error`` member (authoritative in AAuth), else ``default``."""
    code = json_body(response).get("error")
    return code if isinstance(code, str) and code and len(code) <= 100 else default


def problem_error(response: HttpResponse, default: str, what: str) -> AAuthError:
    """An :class:`AAuthError` with the peer's code and status, for a ``Fail`` action."""
    code = problem_code(response, default)
    detail = json_body(response).get("detail")
    text = detail[:300] if isinstance(detail, str) else f"{what} answered {response.status}"
    return AAuthError(text, code=code, status=response.status)


def signature_error(response: HttpResponse) -> SignatureErrorHeader | None:
    """The parsed ``Signature-Error`` of a 401, or None."""
    raw = response.headers.get("signature-error")
    return None if raw is None else SignatureErrorHeader.parse(raw)


def clarification_response(text: str) -> dict[str, Any]:
    """The body answering a clarification question (§5.9)."""
    return {"action": "clarification_response", "clarification_response": text}


def updated_request(
    resource_token: str, presented_token: str, justification: str | None = None
) -> dict[str, Any]:
    """The body replacing the request under clarification (§5.9)."""
    body: dict[str, Any] = {
        "action": "updated_request",
        "resource_token": resource_token,
        "presented_token": presented_token,
    }
    if justification is not None:
        body["justification"] = justification
    return body


# -- values --------------------------------------------------------------------------------


@frozen(kw_only=True)
class PollCredential:
    """What signs the polls: an agent presents ``token`` (``jwt`` scheme); a server signs in
    its own right with ``server_id`` + ``dwk`` (``jwks_uri`` scheme, ``kid`` = the key's id)."""

    token: str | None = field(default=None, repr=False)
    server_id: str | None = None
    dwk: str | None = None

    def __attrs_post_init__(self) -> None:
        server = self.server_id is not None and self.dwk is not None
        if (self.token is not None) == server or (self.server_id is None) != (self.dwk is None):
            raise ValueError("a poll credential is a token, or a server_id with its dwk")

    @classmethod
    def jwt(cls, token: str) -> PollCredential:
        return cls(token=token)

    @classmethod
    def server(cls, server_id: str, dwk: str) -> PollCredential:
        return cls(server_id=server_id, dwk=dwk)

    def signer_fields(
        self, request: HttpRequest, signer: Signer, *, created: int, key_id: str
    ) -> dict[str, str]:
        """Sign ``request`` (the body pair covered whenever there is a body)."""
        covered = aauth_components(request, cover_body=True)
        if self.token is not None:
            return sign_aauth_request(
                request, signer, token=self.token, created=created, covered=covered
            )
        # __attrs_post_init__: without a token, server_id and dwk are both set
        return sign_server_request(
            request,
            signer,
            issuer=require(self.server_id, "a server poll credential's server_id"),
            dwk=require(self.dwk, "a server poll credential's dwk"),
            created=created,
        )


@frozen(kw_only=True)
class PendingOutcome:
    """What the pending URL finally answered with ``200`` (a token, an invocation result)."""

    response: HttpResponse


@frozen(kw_only=True)
class PendingData:
    """What the poller remembers (snapshot-able)."""

    key: SigningKey
    credential: PollCredential
    url: str  # the URL whose answer was the 202: origin of Location, base of a relative one
    headers: Headers = field(factory=Headers)  # added to every poll (e.g. Authorization)
    prefer_wait: int | None = None
    location: str | None = None
    retry_after: int = DEFAULT_RETRY_AFTER
    slow_down: int = 0
    status: str = "pending"
    requirement: Requirement | None = None
    prompted_code: str | None = None
    last_body: bytes = b""
    outgoing: HttpRequest | None = None
    created: int = 0
    to_sign: bytes = field(default=b"", repr=False)
    polls: int = 0

    @classmethod
    def create(
        cls,
        *,
        key: SigningKey,
        credential: PollCredential,
        url: str,
        headers: Headers | None = None,
        prefer_wait: int | None = None,
    ) -> PendingData:
        return cls(
            key=key,
            credential=credential,
            url=url,
            headers=headers if headers is not None else Headers(),
            prefer_wait=prefer_wait,
        )


# -- actions and events ----------------------------------------------------------------


@frozen(kw_only=True)
class PendingUpdate(Action):
    """Progress: the pending request's ``status`` (``pending``/``interacting``) and the
    requirement on the latest 202 (informational; no answer needed)."""

    status: str
    requirement: Requirement | None
    body: bytes = field(default=b"", repr=False)


@frozen(kw_only=True)
class PendingInputNeeded(Action):
    """Polling stopped: ``requirement`` needs the owner (answer with :class:`PostAnswer`,
    :class:`UseCredential` or ``Cancel``). ``body`` holds the question / required claims."""

    requirement: Requirement
    body: bytes = field(default=b"", repr=False)


@frozen(kw_only=True)
class Accepted(Event):
    """The initial ``202`` response."""

    response: HttpResponse
    at: int


@frozen(kw_only=True)
class PostAnswer(Event):
    """POST ``body`` (JSON) to the pending URL: a clarification answer, an updated
    request, the claims an AS asked for."""

    body: Mapping[str, Any]
    at: int


@frozen(kw_only=True)
class UseCredential(Event):
    """Poll on now with ``credential`` (deferred delivery: the auth token)."""

    credential: PollCredential
    at: int


_S = PendingState


def _step(
    state: PendingState, data: PendingData, actions: Iterable[Action] = ()
) -> Step[PendingState, PendingData]:
    return Step(state=state, data=data, actions=actions)


class PendingPoller(Machine[PendingState, PendingData]):
    """Polls one pending URL until it settles."""

    State = PendingState
    INITIAL = PendingState.IDLE
    DATA = PendingData
    TRANSITIONS = table(
        [
            (_S.IDLE, Accepted, {_S.WAITING, _S.NEEDS_INPUT}),
            (_S.WAITING, TimerFired, {_S.SIGNING}),
            (_S.WAITING, Cancel, {_S.SIGNING}),
            (_S.SIGNING, SignatureProduced, {_S.POLLING, _S.CANCELLING}),
            (_S.POLLING, ResponseReceived, {_S.WAITING, _S.NEEDS_INPUT, _S.DONE, _S.FAILED}),
            (_S.NEEDS_INPUT, PostAnswer, {_S.SIGNING}),
            (_S.NEEDS_INPUT, UseCredential, {_S.SIGNING}),
            (_S.NEEDS_INPUT, Cancel, {_S.SIGNING}),
            (_S.CANCELLING, ResponseReceived, {_S.CANCELLED}),
        ]
    )

    # -- signing -------------------------------------------------------------------------

    @staticmethod
    def _produce(data: PendingData) -> Callable[[Signer], dict[str, str]]:
        request = require(data.outgoing, "request")

        def run(signer: Signer) -> dict[str, str]:
            return data.credential.signer_fields(
                request, signer, created=data.created, key_id=data.key.key_id
            )

        return run

    def _sign(self, data: PendingData, request: HttpRequest, at: int) -> Step[_S, PendingData]:
        data = evolve(data, outgoing=request, created=at)
        to_sign = signing_input(data.key, self._produce(data))
        return _step(
            state=_S.SIGNING,
            data=evolve(data, to_sign=to_sign),
            actions=[SignBytes(key=data.key.ref, data=to_sign)],
        )

    def _request(self, data: PendingData, method: str, body: bytes = b"") -> HttpRequest:
        location = require(data.location, "location")
        extra: dict[str, str] = {}
        if data.prefer_wait is not None and method == "GET":
            extra["Prefer"] = serialize_prefer_wait(data.prefer_wait)
        if body:
            extra["Content-Type"] = "application/json"
        return HttpRequest(
            method=method,
            url=location,
            headers=data.headers.with_fields(extra),
            body=body,
        )

    # -- handlers ------------------------------------------------------------------------

    @handles(Accepted)
    def _accepted(self, state: _S, data: PendingData, event: Accepted) -> Step[_S, PendingData]:
        if event.response.status != 202:
            raise MalformedInput(f"the poller starts from a 202, not {event.response.status}")
        return self._on_202(data, event.response, event.at)

    @handles(TimerFired)
    def _timer(self, state: _S, data: PendingData, event: TimerFired) -> Step[_S, PendingData]:
        return self._sign(evolve(data, polls=data.polls + 1), self._request(data, "GET"), event.at)

    @handles(PostAnswer)
    def _answer(self, state: _S, data: PendingData, event: PostAnswer) -> Step[_S, PendingData]:
        body = json.dumps(dict(event.body), separators=(",", ":")).encode()
        return self._sign(data, self._request(data, "POST", body), event.at)

    @handles(UseCredential)
    def _use(self, state: _S, data: PendingData, event: UseCredential) -> Step[_S, PendingData]:
        data = evolve(data, credential=event.credential, polls=data.polls + 1)
        return self._sign(data, self._request(data, "GET"), event.at)

    @handles(Cancel)
    def _cancel(self, state: _S, data: PendingData, event: Cancel) -> Step[_S, PendingData]:
        return self._sign(data, self._request(data, "DELETE"), event.at)

    @handles(SignatureProduced)
    def _signed(
        self, state: _S, data: PendingData, event: SignatureProduced
    ) -> Step[_S, PendingData]:
        fields = complete(data.key, self._produce(data), data.to_sign, event.signature)
        request = require(data.outgoing, "request")
        signed = evolve(request, headers=request.headers.with_fields(fields))
        target = _S.CANCELLING if request.method == "DELETE" else _S.POLLING
        return _step(
            state=target,
            data=evolve(data, to_sign=b""),
            actions=[SendRequest(request=signed)],
        )

    @handles(ResponseReceived)
    def _response(
        self, state: _S, data: PendingData, event: ResponseReceived
    ) -> Step[_S, PendingData]:
        response = event.response
        if state is _S.CANCELLING:
            error = AAuthError("the pending request was cancelled", code="cancelled", status=410)
            return _step(state=_S.CANCELLED, data=data, actions=[Fail(error=error)])
        status = response.status
        if status == 202:
            return self._on_202(data, response, event.at)
        if 200 <= status < 300:
            return _step(
                state=_S.DONE,
                data=data,
                actions=[Deliver(result=PendingOutcome(response=response))],
            )
        if status == 429:
            slow = data.slow_down + SLOW_DOWN_STEP
            wait = retry_after(response, at=event.at, default=data.retry_after) + slow
            return _step(
                state=_S.WAITING,
                data=evolve(data, slow_down=slow),
                actions=[Wait(seconds=wait)],
            )
        if status == 503:
            wait = retry_after(response, at=event.at, default=data.retry_after) + data.slow_down
            return _step(state=_S.WAITING, data=data, actions=[Wait(seconds=wait)])
        return _step(state=_S.FAILED, data=data, actions=[Fail(error=_refusal(response))])

    def _on_202(self, data: PendingData, response: HttpResponse, at: int) -> Step[_S, PendingData]:
        location = response.headers.get("location")
        if location is None and data.location is None:
            raise RemoteProtocolError("a 202 without Location", code="invalid_response", status=502)
        if location is not None:
            try:
                resolved = pending_location(data.url, location)
            except MalformedInput as exc:
                raise RemoteProtocolError(
                    f"the pending Location is unusable: {exc.detail}",
                    code="invalid_response",
                    status=502,
                ) from None
            data = evolve(data, location=resolved)
        raw_requirement = response.headers.get("aauth-requirement")
        requirement = None if raw_requirement is None else Requirement.parse(raw_requirement)
        body = json_body(response)
        status = body.get("status")
        status = "interacting" if status == "interacting" else "pending"
        data = evolve(
            data,
            retry_after=retry_after(response, at=at),
            status=status,
            requirement=requirement,
            last_body=response.body,
        )
        actions: list[Action] = [
            PendingUpdate(status=status, requirement=requirement, body=response.body)
        ]
        if requirement is not None and requirement.type is RequirementType.INTERACTION:
            # Requirement: an interaction requirement always carries its code.
            code = require(requirement.code, "an interaction requirement's code")
            # Prompt once per code; once the person is interacting, stop prompting.
            if status != "interacting" and data.prompted_code != code:
                actions.append(ShowInteraction(url=requirement.interaction_target(), code=code))
            data = evolve(data, prompted_code=code)
        if requirement is not None and requirement.type in _OWNER_REQUIREMENTS:
            actions.append(PendingInputNeeded(requirement=requirement, body=response.body))
            return _step(state=_S.NEEDS_INPUT, data=data, actions=actions)
        actions.append(Wait(seconds=data.retry_after + data.slow_down))
        return _step(state=_S.WAITING, data=data, actions=actions)


def _refusal(response: HttpResponse) -> AAuthError:
    """A terminal answer as the error to report: the problem ``error`` code (or the
    ``Signature-Error`` code of a 401), else the §5.9 default for the status."""
    if response.status == 401:
        header = signature_error(response)
        if header is not None:
            return SignatureFailure("the poll was refused", code=str(header.code))
    default = _TERMINAL_CODES.get(response.status, "server_error")
    return problem_error(response, default, "the pending URL")
