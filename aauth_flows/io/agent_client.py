"""The agent driver over a blocking :class:`httpx.Client`: call an AAuth resource.

``AgentClient.request`` runs one :class:`~aauth_flows.machines.agent.AgentFlow` to the end
(agent identity, a resource's own interaction, person tokens, PS or AS authorization,
deferred answers, clarification) and returns the resource's final answer as an
:class:`httpx.Response`, or raises the :class:`~aauth_core.errors.AAuthError` the flow
failed with (``.code``/``.status`` are the peer's). The token caches live in the client
between calls. The dispatch loop itself is :func:`aauth_flows.io.agent_common.call_steps`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any, assert_never

import httpx

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

__all__ = ["AgentClient"]


class AgentClient:
    """An AAuth agent making calls with ``signer`` (its key) over ``http``.

    ``agent_token(current)`` returns a fresh agent token (it talks to the Agent Provider);
    ``discovery.person_server(issuer)`` gives the PS metadata; ``keys`` verifies the
    tokens the agent receives. ``on_interaction`` hands an interaction URL and code to the
    person and must return promptly (polling goes on meanwhile); ``on_question`` answers
    a clarification question (without it a question cancels the call). Waits follow
    ``Retry-After`` through ``sleep``, at most ``max_wait`` seconds per call. Safe to
    share between threads; each call works on a snapshot of the token caches and merges
    its changes back.
    """

    def __init__(
        self,
        signer: Signer,
        *,
        agent_token: Callable[[str | None], str],
        http: httpx.Client,
        discovery: PersonServerSource,
        on_interaction: Callable[[ShowInteraction], None],
        keys: KeyResolver | None = None,
        on_question: Callable[[str], str] | None = None,
        capabilities: Sequence[Capability] | None = None,
        key_ref: str = "agent",
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        prefer_wait: int | None = None,
        max_wait: float = DEFAULT_MAX_WAIT,
        margin: int = REFRESH_MARGIN,
        resources: Sequence[ResourceMetadata] = (),
        store: CredentialStore | None = None,
    ) -> None:
        self._signer = signer
        self._agent_token = agent_token
        self._http = http
        self._discovery = discovery
        self._on_interaction = on_interaction
        self._on_question = on_question
        self._sleep = sleep
        self._core = AgentCore(
            signing_key(signer, key_ref),
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
        """The token caches as they are now (a frozen value: snapshot it to persist)."""
        return self._core.store

    def request(
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
        """Make one call to completion. ``authorize=True``: ``url`` is the resource's
        ``authorization_endpoint`` (the proactive path); the auth token is kept for later
        calls. Raises :class:`~aauth_core.errors.AAuthError` when the flow fails."""
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
            outcome = self._run(flow, steps)
        except BaseException:
            self._core.keep(base, flow.data.store)
            raise
        return self._core.finish(flow, base, outcome)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def _run(self, flow: AgentFlow, steps: Generator[Op, Any, Outcome]) -> Outcome:
        answer: Any = None
        try:
            while True:
                answer = self._do(flow, steps.send(answer))
        except StopIteration as stop:
            outcome: Outcome = stop.value
            return outcome
        finally:
            steps.close()

    def _do(self, flow: AgentFlow, op: Op) -> Any:
        if isinstance(op, Handle):
            return flow.handle(op.event)
        if isinstance(op, Sign):
            return self._signer.sign(op.data)
        if isinstance(op, Send):
            return messages.send(self._http, op.request)
        if isinstance(op, Refresh):
            return self._agent_token(op.current)
        if isinstance(op, Discover):
            return self._discovery.person_server(op.issuer)
        if isinstance(op, Show):
            self._on_interaction(op.interaction)
            return None
        if isinstance(op, Ask):
            # call_steps asks only when can_ask, i.e. when on_question was given
            return require(self._on_question, "the on_question callback")(op.question)
        if isinstance(op, Sleep):
            self._sleep(op.seconds)
            return None
        assert_never(op)
