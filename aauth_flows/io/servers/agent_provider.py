"""The reference Agent Provider: ``aauth-agent.json``, its JWKS, and agent token issuance.

Issuance (``POST /agent-token``) is the enrolment/refresh step that AAuth leaves to the
AP; this one takes the bootstrap draft's single-key refresh. The agent signs the request
with its own key presented inline (``Signature-Key: sig=hwk;...``), covering ``@method``,
``@authority``, ``@path``, ``signature-key`` and its JSON body (``content-digest``,
``content-type``): ``{"agent": "aauth:<local>@<AP host>", "ps": "https://..."}``. The AP

1. verifies that HTTP signature with the inline key and its ``created`` window (401 +
   ``Signature-Error`` otherwise);
2. refuses a key that no agent enrolled (401 ``unknown_key``);
3. runs :class:`~aauth_flows.machines.agent_provider.AgentTokenIssuance`, which refuses
   (403 ``access_denied``) an agent the key is not enrolled for, and mints the token.

A replayed request is harmless: the token it yields is bound to the agent's key, which
the replayer does not hold. The client side is :mod:`aauth_flows.io.ap_client`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog
from attrs import field, frozen
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aauth_core.errors import AAuthError, MalformedInput, SignatureErrorCode, SignatureFailure
from aauth_core.http import HttpRequest
from aauth_core.httpsig import (
    AAUTH_REQUIRED_COMPONENTS,
    DEFAULT_WINDOW,
    read_signature,
    verify_selected,
)
from aauth_core.identifiers import AgentId
from aauth_core.jwk import PublicJwk
from aauth_core.metadata import AgentProviderMetadata
from aauth_core.signature_key import HwkScheme, select
from aauth_core.tokens.claims import DWK_AGENT
from aauth_flows.io.ap_client import AGENT_TOKEN_PATH
from aauth_flows.io.messages import error_response, from_starlette, to_starlette
from aauth_flows.io.runner import run_machine
from aauth_flows.io.servers.context import ServerContext, well_known_routes
from aauth_flows.machines.actions import Deliver, Fail
from aauth_flows.machines.agent_provider import (
    MAX_AGENT_TOKEN_LIFETIME,
    AgentProviderConfig,
    AgentTokenIssuance,
    IssueAgentToken,
    IssuedAgentToken,
    RecordAgentToken,
    StaticAgentRegistry,
)
from aauth_flows.machines.as_wire import read_json_body
from aauth_flows.machines.engine import Action, narrow, require
from aauth_flows.machines.wire import json_response

__all__ = [
    "AgentProviderSettings",
    "IssuedAgentTokens",
    "verify_hwk_request",
    "build_app",
]

log = structlog.get_logger("aauth.io")

_MAX_ISSUED = 100_000


def _agents(value: Mapping[str, Any]) -> Mapping[str, frozenset[str]]:
    return {str(k): frozenset(v) for k, v in dict(value).items()}


@frozen(kw_only=True)
class AgentProviderSettings:
    """``agents``: agent identifier → the RFC 7638 thumbprints of the keys it enrolled;
    ``lifetime``: seconds an agent token lives (≤ 24 h); ``window``: the ``created``
    window for issuance requests."""

    agents: Mapping[str, frozenset[str]] = field(converter=_agents)
    lifetime: int = 3600
    window: int = DEFAULT_WINDOW

    def __attrs_post_init__(self) -> None:
        for agent, keys in self.agents.items():
            AgentId.parse(agent)
            if not keys or not all(isinstance(k, str) and k for k in keys):
                raise ValueError(f"agents.{agent!r}: a non-empty list of key thumbprints")
        if not 0 < self.lifetime <= MAX_AGENT_TOKEN_LIFETIME:
            raise ValueError("lifetime: agent tokens live 1 s to 24 h")
        if not 0 < self.window <= 600:
            raise ValueError("window: 1 to 600 seconds")

    @classmethod
    def from_toml(cls, section: Mapping[str, Any]) -> AgentProviderSettings:
        """``[ap]``: ``lifetime``, ``window`` and the table ``[ap.agents]`` of
        ``"aauth:local@host" = ["<jwk thumbprint>", ...]``."""
        known = {"agents", "lifetime", "window"}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r}")
        agents = section.get("agents", {})
        if not isinstance(agents, Mapping):
            raise ValueError("agents: a table of agent identifier = [key thumbprints]")
        parsed: dict[str, frozenset[str]] = {}
        for agent, keys in agents.items():
            if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
                raise ValueError(f"agents.{agent!r}: a list of key thumbprints")
            try:
                AgentId.parse(agent)
            except AAuthError as exc:
                raise ValueError(f"agents.{agent!r}: {exc.detail}") from None
            parsed[agent] = frozenset(keys)
        options: dict[str, Any] = {}
        for name in ("lifetime", "window"):
            if name in section:
                value = section[name]
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError(f"{name}: an integer number of seconds")
                options[name] = value
        return cls(agents=parsed, **options)

    @property
    def enrolled_keys(self) -> frozenset[str]:
        return frozenset().union(*self.agents.values()) if self.agents else frozenset()


class IssuedAgentTokens:
    """What the AP remembers of the tokens it issued (``jti`` → sub and ``exp``), for a
    later revocation at the PS. Bounded: the oldest records go first."""

    def __init__(self, max_entries: int = _MAX_ISSUED) -> None:
        self.records: dict[str, RecordAgentToken] = {}
        self._max = max_entries

    def apply(self, action: Any) -> bool:
        if not isinstance(action, RecordAgentToken):
            return False
        if len(self.records) >= self._max:
            self.records.pop(next(iter(self.records)))
        self.records[action.jti] = action
        return True


def verify_hwk_request(request: HttpRequest, *, now: int, window: int) -> PublicJwk:
    """Verify a request signed with the key it carries inline (``hwk``), covering the
    AAuth components and its body; return that key. Raises :class:`SignatureFailure`."""
    selected = read_signature(request.headers)
    raw_key = require(request.headers.get("signature-key"), "Signature-Key (read_signature)")
    # select admits only the accepted schemes
    scheme = narrow(
        select(raw_key, selected.label, accepted_schemes=("hwk",)), HwkScheme, "the key scheme"
    )
    key = PublicJwk.from_dict(dict(scheme.jwk))
    verify_selected(
        request,
        selected,
        key=key,
        now=now,
        window=window,
        required_components=(*AAUTH_REQUIRED_COMPONENTS, "content-digest"),
        require_body_coverage=True,
    )
    return key


def _request_body(request: HttpRequest) -> tuple[AgentId, str | None]:
    body = read_json_body(request)
    agent, ps = body.get("agent"), body.get("ps")
    if not isinstance(agent, str) or not agent:
        raise MalformedInput("agent: the agent identifier is required")
    if ps is not None and (not isinstance(ps, str) or not ps):
        raise MalformedInput("ps: a Person Server identifier")
    return AgentId.parse(agent), ps


def build_app(context: ServerContext, settings: AgentProviderSettings) -> Starlette:
    """The AP as an ASGI app (see the module docstring)."""
    config = AgentProviderConfig(
        issuer=context.issuer,
        signing_key=context.signing_key,
        registry=StaticAgentRegistry(dict(settings.agents)),
        keys=context.keys,
        lifetime=settings.lifetime,
    )
    enrolled = settings.enrolled_keys
    issued = IssuedAgentTokens()
    metadata = AgentProviderMetadata.from_dict(
        {"issuer": context.issuer, "jwks_uri": f"{context.issuer}/jwks"}
    ).to_dict()

    def issue(request: HttpRequest) -> Response:
        now = context.clock()
        key = verify_hwk_request(request, now=now, window=settings.window)
        if key.thumbprint() not in enrolled:
            raise SignatureFailure(
                "the key is not enrolled at this Agent Provider",
                code=SignatureErrorCode.UNKNOWN_KEY,
            )
        agent, ps = _request_body(request)
        event = IssueAgentToken(agent=agent, key=key, ps=ps, at=now, nonce=context.random(16))
        result = run_machine(
            AgentTokenIssuance(config=config),
            event,
            signers=context.signers,
            http=None,
            clock=context.clock,
            store=issued,
        )
        return _answer(result.later, now, agent)

    def _answer(later: list[Action], now: int, agent: AgentId) -> Response:
        for action in later:
            if isinstance(action, Fail):
                raise action.error
            if isinstance(action, Deliver) and isinstance(action.result, IssuedAgentToken):
                token = action.result
                log.info("aauth.ap.issued", agent=str(agent), jti=token.jti, exp=token.exp)
                body = {"agent_token": token.token, "expires_in": token.exp - now}
                return to_starlette(json_response(200, body, {"Cache-Control": "no-store"}))
        raise AAuthError("the issuance did not complete", code="server_error", status=500)

    async def agent_token(request: Request) -> Response:
        try:
            received = await from_starlette(request, origin=context.issuer)
            response: Response = await run_in_threadpool(issue, received)
            return response
        except AAuthError as err:
            log.info("aauth.ap.refused", code=err.code, status=err.status)
            return error_response(err)

    routes = [
        *well_known_routes(context, DWK_AGENT, metadata),
        Route(AGENT_TOKEN_PATH, agent_token, methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.issued = issued
    return app
