"""What a PS token request answers the agent: ``202`` while pending (with the
requirement the state calls for), the token once minted, the error once failed, and how
a failure is kept until the agent polls for it."""

from __future__ import annotations

import json

from attrs import evolve

from aauth_core.errors import AAuthError, LocalProtocolError
from aauth_core.headers.requirement import Requirement
from aauth_core.http import HttpResponse
from aauth_flows.machines.engine import require
from aauth_flows.machines.ps_config import PersonServerConfig
from aauth_flows.machines.ps_events import ConsentMode
from aauth_flows.machines.ps_http import (
    TOKEN_TYPE_JWT,
    form_error,
    json_response,
    pending_response,
    problem,
)
from aauth_flows.machines.ps_store import IssuedKind
from aauth_flows.machines.ps_token_request import TokenRequestData, TokenRequestState

__all__ = ["pending_answer", "token_answer", "error_answer", "terminal_error", "with_failure"]

S = TokenRequestState


def terminal_error(code: str, status: int, detail: str) -> AAuthError:
    return AAuthError(detail, code=code, status=status)


def with_failure(data: TokenRequestData, code: str, status: int, detail: str) -> TokenRequestData:
    """``data`` with the outcome the next poll serves."""
    return evolve(data, outcome_code=code, outcome_status=status, outcome_detail=detail)


def error_answer(data: TokenRequestData, error: AAuthError) -> HttpResponse:
    """An RFC 6749 error for a form request, an AAuth problem otherwise."""
    return form_error(error) if data.form else problem(error)


def token_answer(data: TokenRequestData) -> HttpResponse:
    """The ``200`` with the minted (or federated) token."""
    if data.result is None:
        raise LocalProtocolError("no result to deliver")
    if data.form:
        return json_response(
            200,
            {
                "access_token": data.result,
                "issued_token_type": TOKEN_TYPE_JWT,
                "token_type": "N_A",
                "expires_in": data.expires_in,
            },
        )
    name = "person_token" if data.kind is IssuedKind.PERSON else "auth_token"
    return json_response(200, {name: data.result, "expires_in": data.expires_in})


def pending_answer(
    config: PersonServerConfig, state: TokenRequestState, data: TokenRequestData
) -> HttpResponse:
    """The ``202`` for a live record: its requirement (clarification, one the AS relayed,
    interaction with the code, approval) or ``status=interacting``."""
    retry = config.retry_after
    if state is S.CLARIFYING:
        return pending_response(
            data.pending_url,
            retry,
            Requirement.clarification(),
            {"clarification": data.question or ""},
        )
    if state is S.FEDERATING and data.relayed_requirement is not None:
        body = json.loads(data.relayed_body) if data.relayed_body else {}
        body.pop("status", None)
        return pending_response(
            data.pending_url, retry, Requirement.parse(data.relayed_requirement), body
        )
    if state in (S.INTERACTING, S.AT_RESOURCE):
        return pending_response(data.pending_url, retry, None, {"status": "interacting"})
    if state is S.PENDING and data.mode is ConsentMode.INTERACTION:
        code = require(data.code, "the interaction code of a PENDING interaction request")
        req = Requirement.interaction(config.interaction_url, code)
        return pending_response(data.pending_url, retry, req)
    if state is S.PENDING and data.mode is ConsentMode.APPROVAL:
        return pending_response(data.pending_url, retry, Requirement.approval())
    return pending_response(data.pending_url, retry)
