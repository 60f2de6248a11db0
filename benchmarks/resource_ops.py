"""The resource rows of ``make bench``: what the layers a resource deploys cost per request,
against the raw Ed25519 verification the warm request-verify row is compared with.

- ``ResourceCall`` driven by :func:`~aauth_flows.io.runner.run_machine`: the machine, its
  route lookup, the verifier it builds per call (token from the cache, revocation asked),
  the principal, the policy, the ``Serve`` action (a hook answering a fixed 200) and the
  driver loop.
- :class:`~aauth_flows.io.resource_asgi.AAuthMiddleware` around a trivial Starlette app,
  called in-process with a hand-built ASGI scope: reading the request, the hop to a worker
  thread for the machine, the hop back to the event loop for the app, Starlette, and the
  answer. No replay cache (a GET would skip it anyway).

The event loop is kept for the whole run and one long-lived task on it handles the calls
one at a time, each call driving the loop until its answer is ready. Handling them in that
one task matters: anyio ties its worker threads to the root task, so a fresh
``run_until_complete`` per call would start (and stop) a thread per request and measure
thread creation instead of the hop a running server makes. A server such as uvicorn also
creates a task per request, which is not counted here (a few µs).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route as StarletteRoute

from aauth_backends.software import CryptographySigner
from aauth_core.http import HttpRequest, HttpResponse
from aauth_core.signer import Signer
from aauth_core.token_cache import VerifiedTokenCache
from aauth_core.tokens.verify import KeyResolver
from aauth_flows.io.resource_asgi import AAuthMiddleware, AAuthResource
from aauth_flows.io.runner import run_machine
from aauth_flows.machines.engine import Action, Event
from aauth_flows.machines.resource import (
    RANDOM_BYTES,
    AccessMode,
    MemoryResourceStore,
    RequestReceived,
    ResourceCall,
    ResourceConfig,
    Route,
    Serve,
    Served,
)
from aauth_flows.machines.signing import SigningKey
from benchmarks.harness import Operation

__all__ = ["MACHINE_ROW", "MIDDLEWARE_ROW", "build"]

MACHINE_ROW = "resource machine, agent-identity call (warm token cache)"
MIDDLEWARE_ROW = "AAuthMiddleware, in-process ASGI call (agent identity, warm)"
_KEY_REF = "software:resource"
_OK = HttpResponse(status=200, headers={"Content-Type": "text/plain"}, body=b"ok")


def _machine_call(
    signed: HttpRequest, keys: KeyResolver, issuer: str, path: str, now: int
) -> Callable[[], object]:
    """One ``ResourceCall`` per request, as a server's driver runs it."""
    rs_signer = CryptographySigner.generate("Ed25519")
    store = MemoryResourceStore()
    # routes go through an attrs converter mypy cannot type (as in resource_asgi.build)
    routes: Any = (Route(path=path, mode=AccessMode.AGENT),)
    config = ResourceConfig(
        issuer=issuer,
        signing_key=SigningKey(ref=_KEY_REF, public_jwk=rs_signer.public_jwk()),
        keys=keys,
        routes=routes,
        revocations=store,
        sessions=store,
        interaction_url=f"{issuer}/interaction",
        pending_base=f"{issuer}/pending/",
        token_cache=VerifiedTokenCache(),
    )
    signers: dict[str, Signer] = {_KEY_REF: rs_signer}

    def serve(action: Action) -> Event | bool | None:
        return Served(response=_OK, at=now) if isinstance(action, Serve) else None

    def clock() -> int:
        return now

    def call() -> HttpResponse | None:
        event = RequestReceived(request=signed, at=now, random=os.urandom(RANDOM_BYTES))
        return run_machine(
            ResourceCall(config=config),
            event,
            signers=signers,
            http=None,
            clock=clock,
            store=store,
            on_action=serve,
        ).response

    answer = call()
    if answer is None or answer.status != 200:
        raise RuntimeError(f"the resource machine did not serve the call: {answer}")
    return call


class _InProcessServer:
    """A persistent event loop with one long-lived task that runs ASGI calls in turn."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.queue: asyncio.Queue[tuple[dict[str, Any], asyncio.Future[int]]] = (
            self.loop.run_until_complete(self._make_queue())
        )
        self.task = self.loop.create_task(self._serve())

    @staticmethod
    async def _make_queue() -> asyncio.Queue[tuple[dict[str, Any], asyncio.Future[int]]]:
        return asyncio.Queue()

    async def _serve(self) -> None:
        while True:
            scope, done = await self.queue.get()
            try:
                done.set_result(await self._one(scope))
            except BaseException as exc:  # handed to the caller
                done.set_exception(exc)

    async def _one(self, scope: dict[str, Any]) -> int:
        received = False

        async def receive() -> dict[str, Any]:
            nonlocal received
            if not received:
                received = True
                return {"type": "http.request", "body": b"", "more_body": False}
            return {"type": "http.disconnect"}

        status: list[int] = []

        async def send(message: Any) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        await self.app(scope, receive, send)
        return status[0]

    def call(self, scope: dict[str, Any]) -> int:
        done: asyncio.Future[int] = self.loop.create_future()
        self.queue.put_nowait((scope, done))
        return self.loop.run_until_complete(done)

    def close(self) -> None:
        self.task.cancel()
        self.loop.run_until_complete(asyncio.gather(self.task, return_exceptions=True))
        self.loop.run_until_complete(self.loop.shutdown_default_executor())
        self.loop.close()


def _middleware_call(
    signed: HttpRequest, keys: KeyResolver, issuer: str, now: int
) -> tuple[Callable[[], object], _InProcessServer]:
    parts = signed.url.removeprefix(issuer)
    path, _, query = parts.partition("?")

    async def endpoint(request: Request) -> Response:
        return PlainTextResponse("ok")

    resource = AAuthResource.build(
        issuer=issuer,
        signer=CryptographySigner.generate("Ed25519"),
        keys=keys,
        routes=(Route(path=path, mode=AccessMode.AGENT),),
        replay=None,
        clock=lambda: now,
        token_cache=VerifiedTokenCache(),
    )
    app = AAuthMiddleware(
        Starlette(routes=[StarletteRoute(path, endpoint)]),
        resource=resource,
    )
    host = issuer.removeprefix("https://")
    template: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": signed.method,
        "scheme": "https",
        "path": path,
        "raw_path": path.encode("latin-1"),
        "query_string": query.encode("latin-1"),
        "root_path": "",
        "headers": [(b"host", host.encode("latin-1"))]
        + [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in signed.headers.pairs],
        "client": ("127.0.0.1", 50000),
        "server": (host, 443),
    }
    server = _InProcessServer(app)

    def call() -> int:
        scope = dict(template)
        scope["state"] = {}
        return server.call(scope)

    status = call()
    if status != 200:
        server.close()
        raise RuntimeError(f"the middleware did not serve the call: {status}")
    # The worker thread is reused from call to call (not one started per request).
    threads = threading.active_count()
    for _ in range(20):
        call()
    if threading.active_count() != threads:
        server.close()
        raise RuntimeError("the middleware calls start threads: the timing would include them")
    return call, server


def build(
    *,
    signed: HttpRequest,
    keys: KeyResolver,
    audience: str,
    now: int,
    baseline: str,
) -> tuple[list[Operation], list[Any]]:
    """The two rows for ``signed`` (a GET signed by an agent with a valid agent token,
    ``created`` = ``now``) at the resource ``audience``; and what to close after the run."""
    path = signed.url.removeprefix(audience).partition("?")[0]
    machine = _machine_call(signed, keys, audience, path, now)
    middleware, server = _middleware_call(signed, keys, audience, now)
    return [
        Operation(MACHINE_ROW, machine, baseline=baseline, group="resource"),
        Operation(MIDDLEWARE_ROW, middleware, baseline=baseline, group="resource"),
    ], [server]
