"""The async agent driver (aauth_flows.io.agent_async) over real HTTP.

The same served World and the same scenarios as tests/test_io_agent_client.py, driven by
:class:`AsyncAgentClient` on an event loop of its own (a thread the scenario's ``call``
hands each request to), plus: a slow signer (a PKCS#11 token taking 0.2 s per signature)
does not hold up the loop, and the wait budget and ``asyncio.sleep``-style waits.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import pytest
from flow_world import RS
from test_io_agent_client import (
    SCENARIOS,
    Stage,
    agent_signer,
    driver_options,
    live_world,
    trace,
)

from aauth_backends.interfaces import AsyncSignerAdapter
from aauth_core.algorithms import Alg
from aauth_core.errors import AAuthError
from aauth_core.jwk import PublicJwk
from aauth_core.signer import Signer
from aauth_flows.io import egress
from aauth_flows.io.agent_async import AsyncAgentClient

__all__ = ["live_world"]  # the module-scoped served World, shared with the sync tests


class LoopThread:
    """An event loop in its own thread: sync scenario code submits coroutines to it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture
def async_stage(
    live_world: tuple[Stage, egress.EgressPolicy],
) -> tuple[Stage, egress.EgressPolicy]:
    stage, admitted = live_world
    stage.reset()
    return stage, admitted


def async_client(stage: Stage, http: httpx.AsyncClient, **overrides: Any) -> AsyncAgentClient:
    options = driver_options(stage, **overrides)
    signer = options.pop("signer", agent_signer(stage))
    return AsyncAgentClient(signer, http=http, sleep=stage.asleep, **options)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_mode_with_the_async_driver(
    name: str, async_stage: tuple[Stage, egress.EgressPolicy]
) -> None:
    stage, admitted = async_stage
    runner = LoopThread()
    try:
        http = runner.run(_open(admitted))
        client = async_client(stage, http)

        def call(method: str, url: str, **kwargs: Any) -> httpx.Response:
            response: httpx.Response = runner.run(client.request(method, url, **kwargs))
            return response

        try:
            SCENARIOS[name](stage, call)
        finally:
            runner.run(http.aclose())
    finally:
        runner.close()


async def _open(admitted: egress.EgressPolicy) -> httpx.AsyncClient:
    return egress.async_client(admitted)


class SlowSigner:
    """A signer that blocks like a PKCS#11 token (0.2 s per signature) and says when."""

    def __init__(self, inner: Signer) -> None:
        self.inner = inner
        self.signing = threading.Event()
        self.signatures = 0

    @property
    def key_id(self) -> str:
        return self.inner.key_id

    @property
    def algorithm(self) -> Alg:
        return self.inner.algorithm

    def public_jwk(self) -> PublicJwk:
        return self.inner.public_jwk()

    def sign(self, data: bytes) -> bytes:
        self.signing.set()
        try:
            time.sleep(0.2)
            self.signatures += 1
            return self.inner.sign(data)
        finally:
            self.signing.clear()


def test_a_slow_signer_does_not_block_the_event_loop(
    async_stage: tuple[Stage, egress.EgressPolicy],
) -> None:
    stage, admitted = async_stage
    slow = SlowSigner(agent_signer(stage))
    seen_while_signing = 0

    async def ticker(stop: asyncio.Event) -> None:
        nonlocal seen_while_signing
        while not stop.is_set():
            if slow.signing.is_set():
                seen_while_signing += 1
            await asyncio.sleep(0.01)

    async def main() -> httpx.Response:
        stop = asyncio.Event()
        tick = asyncio.create_task(ticker(stop))
        async with egress.async_client(admitted) as http:
            client = async_client(stage, http, signer=slow)
            try:
                return await client.request("GET", f"{RS}/profile")
            finally:
                stop.set()
                await tick

    response = asyncio.run(main())
    assert response.status_code == 200
    # the call, the person-token request, the poll at the PS, the call again
    assert slow.signatures == 4
    # The other task ran while a signature was being made: signing was off the loop.
    assert seen_while_signing > 0


def test_a_software_signer_may_sign_on_the_loop(
    async_stage: tuple[Stage, egress.EgressPolicy],
) -> None:
    stage, admitted = async_stage

    async def main() -> httpx.Response:
        async with egress.async_client(admitted) as http:
            inline = AsyncSignerAdapter(agent_signer(stage), in_thread=False)
            client = async_client(stage, http, signer=inline)
            return await client.request("GET", f"{RS}/agent")

    assert asyncio.run(main()).status_code == 200
    assert trace(stage.world.wire) == [("GET", f"{RS}/agent", "aa-agent+jwt", 200)]


def test_async_callbacks_and_the_wait_budget(
    async_stage: tuple[Stage, egress.EgressPolicy],
) -> None:
    stage, admitted = async_stage
    shown: list[str] = []

    async def show(interaction: Any) -> None:
        shown.append(interaction.url)  # Alice never comes

    async def main() -> None:
        async with egress.async_client(admitted) as http:
            client = async_client(stage, http, on_interaction=show, max_wait=7)
            await client.request("GET", f"{RS}/notes")

    with pytest.raises(AAuthError) as raised:
        asyncio.run(main())
    assert (raised.value.code, raised.value.status) == ("timeout", 504)
    assert [url.split("?")[0] for url in shown] == [f"{RS}/interaction"]
    assert [(m, s) for m, _, _, s in trace(stage.world.wire)][:2] == [("GET", 202), ("GET", 202)]
    assert stage.world.wire[-1].request.method == "DELETE"
