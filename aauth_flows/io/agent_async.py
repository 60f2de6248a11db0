"""The agent driver over :class:`httpx.AsyncClient`: :class:`AgentClient` for asyncio.

The same dispatch loop (:func:`aauth_flows.io.agent_common.call_steps`), answered with
awaits. Nothing that can block runs on the event loop: signatures go through
:class:`~aauth_backends.interfaces.AsyncSignerAdapter` (a PKCS#11 token or a YubiKey
waiting for a touch), and ``flow.handle`` (it verifies received tokens through ``keys``,
which may fetch JWKS), the agent-token callback, PS discovery and a blocking
``on_question`` run in worker threads.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from typing import Any, assert_never

import httpx

from aauth_backends.interfaces import AsyncSignerAdapter
from aauth_core.headers.capabilities import Capability
from aauth_core.metadata import ResourceMetadata
from aauth_core.signer import Signer
from aauth_core.tokens.verify import KeyResolver
from aauth_flows.io import messages
from aauth_flows.io.agent_common import (
    DEFAULT_MAX_WAIT,
    AgentCore,
    Ask,
    Discover,
    Handle,
    Op,
    Outcome,
    PersonServerSource,
    Refresh,
    Send,
    Show,
    Sign,
    Sleep,
    signing_key,
)
from aauth_flows.machines.actions import ShowInteraction
from aauth_flows.machines.agent import AgentFlow
from aauth_flows.machines.agent_credentials import REFRESH_MARGIN, CredentialStore
from aauth_flows.machines.engine import require

__all__ = ["AsyncAgentClient"]


class AsyncAgentClient:
    """:class:`~aauth_flows.io.agent_client.AgentClient` over an async client.

    ``signer`` may be a :class:`~aauth_core.signer.Signer` (wrapped in an
    :class:`AsyncSignerAdapter` that signs in a worker thread) or an adapter of your own
    (``in_thread=False`` for a software key). ``on_interaction`` and ``on_question`` may be
    plain functions or coroutine functions; a plain ``on_interaction`` is called on the
    loop and must return at once, a plain ``on_question`` runs in a worker thread.
    ``sleep`` is awaited for every wait (``asyncio.sleep`` by default).
    """

    def __init__(
        self,
        signer: Signer | AsyncSignerAdapter,
        *,
        agent_token: Callable[[str | None], str],
        http: httpx.AsyncClient,
        discovery: PersonServerSource,
        on_interaction: Callable[[ShowInteraction], Awaitable[None] | None],
        keys: KeyResolver | None = None,
        on_question: Callable[[str], str] | Callable[[str], Awaitable[str]] | None = None,
        capabilities: Sequence[Capability] | None = None,
        key_ref: str = "agent",
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        prefer_wait: int | None = None,
        max_wait: float = DEFAULT_MAX_WAIT,
        margin: int = REFRESH_MARGIN,
        resources: Sequence[ResourceMetadata] = (),
        store: CredentialStore | None = None,
    ) -> None:
        adapter = signer if isinstance(signer, AsyncSignerAdapter) else AsyncSignerAdapter(signer)
        self._signer = adapter
        self._agent_token = agent_token
        self._http = http
        self._discovery = discovery
        self._on_interaction = on_interaction
        self._on_question = on_question
        self._sleep = sleep
        self._core = AgentCore(
            signing_key(adapter.signer, key_ref),
            keys=keys,
            capabilities=capabilities,
            can_ask=on_question is not None,
            prefer_wait=prefer_wait,
            resources=resources,
            margin=margin,
            max_wait=max_wait,
            clock=clock,
            store=store,
        )

    @property
    def store(self) -> CredentialStore:
        """The token caches as they are now."""
        return self._core.store

    async def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        content: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        authorize: bool = False,
        mission_s256: str | None = None,
        justification: str | None = None,
    ) -> httpx.Response:
        """Make one call to completion (see :meth:`AgentClient.request`)."""
        flow, steps = self._core.begin(
            method,
            url,
            json=json,
            content=content,
            headers=headers,
            authorize=authorize,
            mission_s256=mission_s256,
            justification=justification,
        )
        base = flow.data.store
        try:
            outcome = await self._run(flow, steps)
        except BaseException:
            self._core.keep(base, flow.data.store)
            raise
        return self._core.finish(flow, base, outcome)

    async def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", url, **kwargs)

    async def _run(self, flow: AgentFlow, steps: Generator[Op, Any, Outcome]) -> Outcome:
        answer: Any = None
        try:
            while True:
                answer = await self._do(flow, steps.send(answer))
        except StopIteration as stop:
            outcome: Outcome = stop.value
            return outcome
        finally:
            steps.close()

    async def _do(self, flow: AgentFlow, op: Op) -> Any:
        if isinstance(op, Handle):
            return await asyncio.to_thread(flow.handle, op.event)
        if isinstance(op, Sign):
            return await self._signer.sign(op.data)
        if isinstance(op, Send):
            return await messages.send_async(self._http, op.request)
        if isinstance(op, Refresh):
            return await asyncio.to_thread(self._agent_token, op.current)
        if isinstance(op, Discover):
            return await asyncio.to_thread(self._discovery.person_server, op.issuer)
        if isinstance(op, Show):
            shown = self._on_interaction(op.interaction)
            if inspect.isawaitable(shown):
                await shown
            return None
        if isinstance(op, Ask):
            # call_steps asks only when can_ask, i.e. when on_question was given
            ask = require(self._on_question, "the on_question callback")
            if inspect.iscoroutinefunction(ask):
                return await ask(op.question)
            return await asyncio.to_thread(ask, op.question)
        if isinstance(op, Sleep):
            await self._sleep(op.seconds)
            return None
        assert_never(op)
