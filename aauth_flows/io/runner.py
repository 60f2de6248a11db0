"""Running one server-side machine to its answer: the driver loop every server shares.

A server machine (resource call, PS token request, AS exchange, revocation) is fed one
event and asks for work: signatures, outbound requests, records for its store. The loop
here does that work with real I/O and feeds the answers back until the queue is empty:

- ``SignBytes`` → the :class:`~aauth_core.signer.Signer` its ``key`` names signs;
- ``SendRequest`` → the egress-admitted httpx client sends it (a transport failure comes
  back as a ``502`` problem response, which every machine already treats as a failed peer);
- ``Respond`` → kept as the answer;
- anything else → ``on_action`` first (a role's own actions: consent prompts, ``Serve``,
  ``Federate``), then the store's ``apply`` (record actions); what nobody takes is
  returned in :attr:`RunResult.later`.

It is synchronous on purpose: machines verify tokens through a blocking key resolver and
PKCS#11 signs block too, so ASGI servers call :func:`run_machine` in a worker thread
(``starlette.concurrency.run_in_threadpool``) and the event loop never waits on either.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import httpx
import structlog
from attrs import define, field

from aauth_core.errors import AAuthError
from aauth_core.http import HttpRequest, HttpResponse
from aauth_core.signer import Signer
from aauth_flows.io.messages import send
from aauth_flows.machines.actions import (
    Respond,
    ResponseReceived,
    SendRequest,
    SignatureProduced,
    SignBytes,
)
from aauth_flows.machines.engine import Action, Event, Machine
from aauth_flows.machines.wire import problem_response

__all__ = ["RecordStore", "RunResult", "ActionHook", "unreachable_response", "run_machine"]

log = structlog.get_logger("aauth.io")


class RecordStore(Protocol):
    """A role's store: takes the record actions its machines emit."""

    def apply(self, action: Any) -> bool: ...


#: A role's own action handler: an event to feed back, ``True`` when it took the action
#: with nothing to feed back, or ``None``/``False`` when the action is not its own.
ActionHook = Callable[[Action], "Event | bool | None"]


@define
class RunResult:
    response: HttpResponse | None = None
    later: list[Action] = field(factory=list)
    records: list[Action] = field(factory=list)


def unreachable_response(error: AAuthError) -> HttpResponse:
    """What a machine sees when its outbound request never got an answer."""
    return problem_response(AAuthError(error.detail, code="server_error", status=502))


def _signature(signers: Mapping[str, Signer], action: SignBytes) -> SignatureProduced:
    signer = signers.get(action.key)
    if signer is None:
        raise LookupError(f"no signer configured for key {action.key!r}")
    return SignatureProduced(signature=signer.sign(action.data))


def _send(http: httpx.Client, request: HttpRequest) -> HttpResponse:
    try:
        return send(http, request)
    except AAuthError as err:
        log.warning("aauth.io.send_failed", url=request.url, code=err.code, detail=err.detail)
        return unreachable_response(err)


def run_machine(
    machine: Machine[Any, Any],
    event: Event,
    *,
    signers: Mapping[str, Signer],
    http: httpx.Client | None,
    clock: Callable[[], int],
    store: RecordStore | None = None,
    on_action: ActionHook | None = None,
) -> RunResult:
    """Feed ``event`` to ``machine`` and every answer the driver owes it; see the module.
    Logs one ``aauth.io.handled`` event (machine, final state, status, duration)."""
    started = time.perf_counter()
    result = RunResult()
    queue: deque[Event] = deque([event])
    while queue:
        for action in machine.handle(queue.popleft()):
            if isinstance(action, SignBytes):
                queue.append(_signature(signers, action))
            elif isinstance(action, SendRequest):
                if http is None:
                    raise LookupError("this machine sends requests but no HTTP client was given")
                answer = _send(http, action.request)
                queue.append(ResponseReceived(response=answer, at=clock()))
            elif isinstance(action, Respond):
                result.response = action.response
            else:
                taken = on_action(action) if on_action is not None else None
                if isinstance(taken, Event):
                    queue.append(taken)
                elif taken:
                    continue
                elif store is not None and store.apply(action):
                    result.records.append(action)
                else:
                    result.later.append(action)
    log.info(
        "aauth.io.handled",
        machine=type(machine).__name__,
        state=machine.state.name,
        status=None if result.response is None else result.response.status,
        duration_ms=round((time.perf_counter() - started) * 1000, 3),
    )
    return result
