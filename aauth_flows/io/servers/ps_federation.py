"""The PS as a client of an Access Server: one background worker per federated request.

When the PS's auth-token machine emits ``Federate`` (four-party, -11 §6.5), the server
starts a :class:`FederationClient` in a worker thread. The worker signs with the PS key,
sends through the egress-admitted client, sleeps on ``Wait`` (woken early by an
``AnswerPending`` the agent posted, or by shutdown), and hands every ``ToPersonServer``
event to ``deliver``, which feeds the PS pending machine under that record's lock. A 402
is answered with ``PaymentSettled`` only when the server is configured to; otherwise the
federation fails with ``payment_required`` (402).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

import httpx
import structlog

from aauth_core.errors import AAuthError
from aauth_core.signer import Signer
from aauth_flows.io.messages import send
from aauth_flows.machines.actions import (
    ResponseReceived,
    SendRequest,
    SignatureProduced,
    SignBytes,
    TimerFired,
    Wait,
)
from aauth_flows.machines.engine import Event
from aauth_flows.machines.federation import (
    AccessServerEndpoint,
    AnswerPending,
    FederationClient,
    FederationClientConfig,
    FederationState,
    Pay,
    PaymentSettled,
    StartFederation,
    ToPersonServer,
    Unreachable,
)
from aauth_flows.machines.federation_api import FederationRequest, FederationSettled

__all__ = ["FederationWorkers", "Deliver"]

log = structlog.get_logger("aauth.io")

#: Feed a federation event to the PS pending machine at a URL.
Deliver = Callable[[str, Event], None]
_DONE = (FederationState.DONE, FederationState.FAILED, FederationState.ERROR)


class _Stop(Event):
    pass


class FederationWorkers:
    """The running federations, by PS pending URL; :meth:`close` stops them all."""

    def __init__(
        self,
        *,
        config: FederationClientConfig,
        signers: dict[str, Signer],
        http: httpx.Client,
        clock: Callable[[], int],
        deliver: Deliver,
        endpoint: Callable[[str], AccessServerEndpoint],
        settle_payments: bool,
    ) -> None:
        self._config = config
        self._signers = signers
        self._http = http
        self._clock = clock
        self._deliver = deliver
        self._endpoint = endpoint
        self._settle = settle_payments
        self._lock = threading.Lock()
        self._inboxes: dict[str, queue.Queue[Event]] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._closed = False

    def start(self, pending_url: str, request: FederationRequest) -> None:
        inbox: queue.Queue[Event] = queue.Queue()
        thread = threading.Thread(
            target=self._run,
            args=(pending_url, request, inbox),
            name="aauth-ps-federation",
            daemon=True,
        )
        with self._lock:
            if self._closed or pending_url in self._threads:
                return
            self._inboxes[pending_url] = inbox
            self._threads[pending_url] = thread
        thread.start()

    def answer(self, pending_url: str, body: dict[str, Any]) -> bool:
        """Pass the agent's answer on to the AS (``FederationAnswer``)."""
        with self._lock:
            inbox = self._inboxes.get(pending_url)
        if inbox is None:
            return False
        inbox.put(AnswerPending(body=body, at=self._clock()))
        return True

    def running(self) -> int:
        with self._lock:
            return len(self._threads)

    def close(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._closed = True
            inboxes = list(self._inboxes.values())
            threads = list(self._threads.values())
        for inbox in inboxes:
            inbox.put(_Stop())
        for thread in threads:
            thread.join(timeout)

    # -- the worker -------------------------------------------------------------------

    def _run(self, url: str, request: FederationRequest, inbox: queue.Queue[Event]) -> None:
        try:
            self._drive(url, request, inbox)
        except Exception as err:
            log.error("aauth.ps.federation_crashed", error=type(err).__name__)
            failure = AAuthError("the federation failed", code="server_error", status=500)
            self._feed(url, FederationSettled(error=failure, at=self._clock()))
        finally:
            with self._lock:
                self._inboxes.pop(url, None)
                self._threads.pop(url, None)

    def _feed(self, url: str, event: Event) -> None:
        try:
            self._deliver(url, event)
        except Exception as err:
            log.warning("aauth.ps.federation_undelivered", error=type(err).__name__)

    def _drive(self, url: str, request: FederationRequest, inbox: queue.Queue[Event]) -> None:
        client = FederationClient(config=self._config)
        try:
            endpoint = self._endpoint(request.access_server)
        except AAuthError as err:
            self._feed(url, FederationSettled(error=err, at=self._clock()))
            return
        start = StartFederation(request=request, access_server=endpoint, at=self._clock())
        events: list[Event] = [start]
        while events and client.state not in _DONE and not self._closed:
            event = events.pop(0)
            for action in client.handle(event):
                if isinstance(action, SignBytes):
                    signer = self._signers[action.key]
                    events.append(SignatureProduced(signature=signer.sign(action.data)))
                elif isinstance(action, SendRequest):
                    try:
                        answer = send(self._http, action.request)
                    except AAuthError as err:
                        events.append(Unreachable(detail=err.detail[:200], at=self._clock()))
                    else:
                        events.append(ResponseReceived(response=answer, at=self._clock()))
                elif isinstance(action, ToPersonServer):
                    self._feed(url, action.event)
                elif isinstance(action, Pay):
                    if not self._settle:
                        refused = AAuthError(
                            "the AS asks for a payment this PS does not make",
                            code="payment_required",
                            status=402,
                        )
                        self._feed(url, FederationSettled(error=refused, at=self._clock()))
                        return
                    events.append(PaymentSettled(at=self._clock()))
                elif isinstance(action, Wait):
                    try:
                        woken = inbox.get(timeout=max(action.seconds, 0))
                    except queue.Empty:
                        events.append(TimerFired(at=self._clock()))
                    else:
                        if isinstance(woken, _Stop):
                            return
                        events.append(woken)
