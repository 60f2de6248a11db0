"""The agent's answer to a clarification the person asked (§5.9): a
``clarification_response`` text, or an ``updated_request`` with a new resource token that
keeps what must stay."""

from __future__ import annotations

from typing import Any

from attrs import evolve

from aauth_core.errors import MalformedInput, TokenParameterError
from aauth_flows.machines.engine import require
from aauth_flows.machines.ps_checks import optional_string, verify_resource_and_presented
from aauth_flows.machines.ps_config import PersonServerConfig
from aauth_flows.machines.ps_store import IssuedKind
from aauth_flows.machines.ps_token_request import TokenRequestData

__all__ = ["clarified", "updated_request"]


def clarified(
    config: PersonServerConfig, data: TokenRequestData, body: dict[str, Any], at: int
) -> TokenRequestData:
    """``data`` once the agent's answer ``body`` is taken (the question is closed)."""
    action = body.get("action")
    if action == "clarification_response":
        text = optional_string(body, "clarification_response")
        if text is None:
            raise MalformedInput("clarification_response is required")
        return evolve(data, question=None, clarification_response=text)
    if action == "updated_request":
        return updated_request(config, data, body, at)
    raise MalformedInput("action must be clarification_response or updated_request")


def updated_request(
    config: PersonServerConfig, data: TokenRequestData, body: dict[str, Any], at: int
) -> TokenRequestData:
    """§5.9: a new resource token keeps ``iss``, ``ps``, ``sub``, ``agent_jkt``,
    ``mission_s256`` and ``tenant``; its ``presented_jti`` is the new presented token's."""
    if data.kind is not IssuedKind.AUTH:
        raise MalformedInput("updated_request applies to auth-token requests")
    rt_text = body.get("resource_token")
    pt_text = body.get("presented_token")
    if not isinstance(rt_text, str) or not isinstance(pt_text, str):
        raise MalformedInput("updated_request needs resource_token and presented_token")
    pair = verify_resource_and_presented(
        config,
        resource_token=rt_text,
        presented_token=pt_text,
        signer_key=require(data.cnf_key, "the request's cnf_key"),
        now=at,
    )
    rt = pair.resource
    kept = (rt.iss, rt.sub, rt.agent_jkt, rt.mission_s256, rt.tenant)
    if (
        kept != (data.rt_iss, data.rt_sub, data.rt_agent_jkt, data.mission_s256, data.tenant)
        or not pair.three_party
    ):
        raise TokenParameterError(
            "the new resource token changes what must stay",
            code="invalid_resource_token",
            parameter="resource",
        )
    justification = optional_string(body, "justification")
    return evolve(
        data,
        question=None,
        resource_token=rt_text,
        presented_token=pt_text,
        presented_jti=pair.presented.jti,
        scope=rt.scope,
        account=rt.account,
        exp_cap=min(data.exp_cap, pair.presented.exp),
        justification=justification if justification is not None else data.justification,
    )
