"""An agent obtains its agent token from its Agent Provider (enrolment / refresh).

AAuth leaves issuance to the AP; the reference AP (:mod:`aauth_flows.io.servers.agent_provider`)
takes the bootstrap draft's single-key refresh: the agent signs ``POST /agent-token`` with
its own key presented inline (``Signature-Key: sig=hwk;...``), covering ``@method``,
``@authority``, ``@path``, ``signature-key`` and the body (``content-digest``,
``content-type``) of ``{"agent": "aauth:...@<ap host>", "ps": "https://ps..."}``. The AP
answers ``{"agent_token": ..., "expires_in": ...}`` when it has that key enrolled for that
agent.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import structlog

from aauth_core.errors import RemoteProtocolError
from aauth_core.http import HttpRequest, HttpResponse
from aauth_core.httpsig import AAUTH_COMPONENTS, sign_request
from aauth_core.identifiers import AgentId, ServerId
from aauth_core.requests import BODY_COMPONENTS
from aauth_core.signature_key import HwkScheme, serialize_scheme
from aauth_core.signer import Signer
from aauth_flows.io.messages import send, send_async
from aauth_flows.machines.wire import read_json_response

__all__ = [
    "AGENT_TOKEN_PATH",
    "HWK_MEMBERS",
    "agent_token_request",
    "request_agent_token",
    "request_agent_token_async",
]

log = structlog.get_logger("aauth.io")

#: Where the reference AP issues agent tokens (on its issuer's origin).
AGENT_TOKEN_PATH = "/agent-token"  # noqa: S105 - a path, not a secret
#: The JWK members an ``hwk`` key carries (never ``kid``).
HWK_MEMBERS = ("kty", "crv", "x", "y", "n", "e", "alg")

Clock = Callable[[], float]


def _hwk(signer: Signer) -> str:
    jwk = {k: v for k, v in signer.public_jwk().to_dict().items() if k in HWK_MEMBERS}
    return serialize_scheme("sig", HwkScheme(jwk=jwk))


def agent_token_request(
    ap_issuer: str, signer: Signer, agent: AgentId | str, ps: str | None, *, created: int
) -> HttpRequest:
    """The signed ``POST {ap_issuer}/agent-token`` (signing calls ``signer.sign`` once)."""
    issuer = str(ServerId.parse(ap_issuer))
    body: dict[str, Any] = {"agent": str(AgentId.parse(str(agent)))}
    if ps is not None:
        body["ps"] = ps
    bare = HttpRequest(
        method="POST",
        url=f"{issuer}{AGENT_TOKEN_PATH}",
        headers={"Content-Type": "application/json"},
        body=json.dumps(body, separators=(",", ":")).encode(),
    )
    signature_key = _hwk(signer)
    added = sign_request(
        bare,
        signer,
        covered=(*AAUTH_COMPONENTS, *BODY_COMPONENTS),
        created=created,
        extra_headers={"Signature-Key": signature_key},
    )
    headers = [*bare.headers.pairs, ("Signature-Key", signature_key), *added.items()]
    return HttpRequest(method="POST", url=bare.url, headers=headers, body=bare.body)


def _token(response: HttpResponse, ap_issuer: str) -> str:
    body = read_json_response(response) or {}
    if response.status != 200:
        code = body.get("error")
        detail = body.get("detail")
        raise RemoteProtocolError(
            f"the Agent Provider {ap_issuer} refused the agent token request"
            + (f": {detail[:200]}" if isinstance(detail, str) else ""),
            code=code[:64] if isinstance(code, str) and code else "server_error",
            status=response.status,
        )
    token = body.get("agent_token")
    if not isinstance(token, str) or not token:
        raise RemoteProtocolError(
            f"the Agent Provider {ap_issuer} answered without an agent_token",
            code="server_error",
            status=502,
        )
    return token


def _default_clock() -> float:
    return time.time()


def request_agent_token(
    http: httpx.Client,
    ap_issuer: str,
    signer: Signer,
    agent: AgentId | str,
    ps: str | None,
    *,
    clock: Clock = _default_clock,
) -> str:
    """Ask the AP for an agent token bound to ``signer``'s key; returns the JWT.

    A refusal raises :class:`RemoteProtocolError` carrying the AP's ``error`` code and
    status (401 for a signature or an unknown key, 403 when the AP does not vouch for this
    agent with this key); a transport failure raises
    :class:`~aauth_flows.io.egress.EgressRefused`."""
    request = agent_token_request(ap_issuer, signer, agent, ps, created=int(clock()))
    token = _token(send(http, request), ap_issuer)
    log.info("aauth.agent_token.obtained", ap=ap_issuer, agent=str(agent), key=signer.key_id)
    return token


async def request_agent_token_async(
    http: httpx.AsyncClient,
    ap_issuer: str,
    signer: Signer,
    agent: AgentId | str,
    ps: str | None,
    *,
    clock: Clock = _default_clock,
) -> str:
    """:func:`request_agent_token` for async drivers (the signature is made in a worker
    thread: a hardware key may block)."""
    request = await asyncio.to_thread(
        agent_token_request, ap_issuer, signer, agent, ps, created=int(clock())
    )
    response = await send_async(http, request)
    token = _token(response, ap_issuer)
    log.info("aauth.agent_token.obtained", ap=ap_issuer, agent=str(agent), key=signer.key_id)
    return token
