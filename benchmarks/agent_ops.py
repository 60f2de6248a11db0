"""The agent rows of ``make bench``: what the agent drivers cost per call, against the raw
Ed25519 sign the "AAuth request sign (cryptography)" row is compared with (the agent key
here is that row's key, a :class:`~aauth_backends.software.CryptographySigner`).

- :class:`~aauth_flows.io.httpx_auth.AAuthAuth`: httpx's sync auth flow driven directly
  (``next(auth.sync_auth_flow(request))`` on a built :class:`httpx.Request`, no client, no
  transport): reading the httpx request into core's value, the held agent token checked
  for freshness, the covered components chosen, the signature, and the headers written
  back into the httpx request. The request is built once and signed again each call (the
  signature headers a call finds are dropped and rewritten, as on a retry), so building
  it is not counted.
- :class:`~aauth_flows.io.agent_client.AgentClient` ``.request("GET", url)`` over an
  :class:`httpx.Client` whose transport is :class:`httpx.MockTransport` answering 200:
  the call's snapshot of the credential store, the agent machine (``StartCall`` → sign →
  send → deliver), the dispatch loop, the signature, httpx's client and the conversion of
  the answer both ways. The transport is not under test; the agent token is cached (its
  callback runs once, before timing) and discovery is never asked (agent identity needs no
  PS).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from aauth_core.metadata import PersonServerMetadata
from aauth_core.signer import Signer
from aauth_core.tokens.verify import KeyResolver
from aauth_flows.io.agent_client import AgentClient
from aauth_flows.io.httpx_auth import AAuthAuth
from aauth_flows.machines.actions import ShowInteraction
from benchmarks.harness import Operation

__all__ = ["AUTH_ROW", "CLIENT_ROW", "build"]

AUTH_ROW = "AAuthAuth, sign one httpx request"
CLIENT_ROW = "AgentClient, agent-identity call (in-process transport)"


def _auth_call(signer: Signer, token: str, url: str, now: int) -> Callable[[], object]:
    fetched: list[str | None] = []

    def agent_token(current: str | None) -> str:
        fetched.append(current)
        return token

    auth = AAuthAuth(signer, agent_token=agent_token, clock=lambda: now)
    auth.token()  # hold the token: no fetch while timing
    request = httpx.Request("GET", url, headers={"Accept": "application/json"})

    def call() -> httpx.Request:
        return next(auth.sync_auth_flow(request))

    signed = call()
    if "signature" not in signed.headers or "signature-key" not in signed.headers:
        raise RuntimeError(f"AAuthAuth did not sign the request: {signed.headers}")
    for _ in range(20):
        call()
    if fetched != [None]:
        raise RuntimeError(f"AAuthAuth fetched the agent token {len(fetched)} times, not once")
    return call


class _NoDiscovery:
    """Agent identity needs no person server: asking for one is a benchmark bug."""

    def person_server(self, issuer: str) -> PersonServerMetadata:
        raise RuntimeError(f"discovery asked for {issuer} in an agent-identity call")


def _no_interaction(interaction: ShowInteraction) -> None:
    raise RuntimeError("an agent-identity call asked for an interaction")


def _client_call(
    signer: Signer, token: str, keys: KeyResolver, url: str, now: int
) -> tuple[Callable[[], object], httpx.Client]:
    fetched: list[str | None] = []

    def agent_token(current: str | None) -> str:
        fetched.append(current)
        return token

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Type": "text/plain"}, content=b"ok")

    http = httpx.Client(transport=httpx.MockTransport(answer))
    client = AgentClient(
        signer,
        agent_token=agent_token,
        http=http,
        discovery=_NoDiscovery(),
        on_interaction=_no_interaction,
        keys=keys,
        clock=lambda: now,
    )

    def call() -> int:
        return client.request("GET", url).status_code

    try:
        status = call()
        if status != 200:
            raise RuntimeError(f"the AgentClient call answered {status}, not 200")
        if fetched != [None]:
            raise RuntimeError(f"the agent token callback ran {len(fetched)} times, not once")
        for _ in range(20):
            call()
        if len(fetched) != 1:
            raise RuntimeError("the agent token was fetched again: the timing would include it")
    except BaseException:
        http.close()
        raise
    return call, http


def build(
    *,
    signer: Signer,
    token: str,
    keys: KeyResolver,
    url: str,
    now: int,
    baseline: str,
) -> tuple[list[Operation], list[Any]]:
    """The two rows for a GET of ``url`` by the agent holding ``signer`` and its agent
    ``token`` (valid at ``now``); and what to close after the run."""
    auth = _auth_call(signer, token, url, now)
    client, http = _client_call(signer, token, keys, url, now)
    return [
        Operation(AUTH_ROW, auth, baseline=baseline, group="agent"),
        Operation(CLIENT_ROW, client, baseline=baseline, group="agent"),
    ], [http]
