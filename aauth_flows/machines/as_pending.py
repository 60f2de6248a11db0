"""The Access Server's pending record for a deferred token request (protocol -11 §5.5,
§5.9, §6.5): what :class:`~aauth_flows.machines.access_server.AuthTokenExchange` keeps
between requests (:class:`ExchangeData`), what the PS may POST to the pending URL
(:func:`accept_post`) and how a decision that defers is answered (:func:`pending_answer`:
202 with ``AAuth-Requirement``, or 402, both with the pending ``Location``).

The driver stores the machine's snapshot under the pending URL; ``ExchangeData`` is
its data, so its class and field names are the snapshot's shape.
"""

from __future__ import annotations

import json
from typing import Any

from attrs import evolve, field, frozen

from aauth_core.errors import AAuthError, LocalProtocolError, MalformedInput
from aauth_core.headers.requirement import Requirement
from aauth_core.http import HttpRequest, HttpResponse
from aauth_core.tokens.claims import AuthTokenClaims
from aauth_flows.machines.as_checks import GrantContext, verify_updated_request
from aauth_flows.machines.as_policy import (
    AccessServerConfig,
    PolicyRequest,
    RequireApproval,
    RequireClaims,
    RequireClarification,
    RequireInteraction,
    RequirePayment,
)
from aauth_flows.machines.as_wire import json_response, read_json_body
from aauth_flows.machines.engine import require
from aauth_flows.machines.wire import pending_gone, pending_not_found

__all__ = [
    "MAX_CLARIFICATION_ROUNDS",
    "ExchangeData",
    "Deferral",
    "not_found",
    "already_answered",
    "poll_refusal",
    "accept_post",
    "policy_request",
    "pending_answer",
]

MAX_CLARIFICATION_ROUNDS = 5

#: A policy decision that keeps the request pending.
Deferral = (
    RequireClaims | RequireInteraction | RequireApproval | RequireClarification | RequirePayment
)


@frozen(kw_only=True)
class ExchangeData:
    context: GrantContext | None = None
    pending_url: str | None = None
    requested_claims: tuple[str, ...] = ()
    #: released claims as (name, JSON text) pairs, in arrival order
    claims: tuple[tuple[str, str], ...] = ()
    clarification_answer: str | None = None
    clarification_rounds: int = 0
    #: the last 202 asked for clarification (an ``updated_request`` may answer it)
    clarifying: bool = False
    #: agent-asserted Markdown from an ``updated_request`` (shown attributed, never trusted)
    justification: str | None = None
    minting: AuthTokenClaims | None = None
    to_sign: bytes = field(default=b"", repr=lambda b: f"<{len(b)} bytes>")


# -- answers to requests at the pending URL --------------------------------------------------


def not_found() -> AAuthError:
    """404: no such pending URL, or a poll by another PS than the one that asked."""
    return pending_not_found()


def already_answered() -> AAuthError:
    """410 to the PS that polls a request already issued or refused."""
    return pending_gone()


def poll_refusal(config: AccessServerConfig, context: GrantContext, at: int) -> AAuthError | None:
    """Why a still-pending request can no longer be granted: the presented token expired
    (408) or was revoked (403) meanwhile; ``None`` if it may be decided again."""
    if at >= context.max_exp:
        return AAuthError("the presented token expired while pending", code="expired", status=408)
    if config.revocations.is_revoked(context.presented_iss, context.presented_jti):
        return AAuthError("the presented token was revoked", code="revoked", status=403)
    return None


def accept_post(
    config: AccessServerConfig, data: ExchangeData, request: HttpRequest, at: int
) -> ExchangeData:
    """A POST to the pending URL: the requested claims, a ``clarification_response`` or an
    ``updated_request`` (§5.9). Raises the error to answer with."""
    body = read_json_body(request)
    if data.requested_claims and "action" not in body:
        if "sub" in body:
            raise MalformedInput("sub is never sent as a claim (-11 §5.5)")
        released = tuple(
            (name, json.dumps(body[name], separators=(",", ":")))
            for name in data.requested_claims
            if name in body  # unknown claims are ignored
        )
        known = {name for name, _ in released}
        kept = tuple(pair for pair in data.claims if pair[0] not in known)
        return evolve(data, claims=kept + released, requested_claims=())
    action = body.get("action")
    if action == "clarification_response":
        answer = body.get("clarification_response")
        if not isinstance(answer, str) or not answer:
            raise MalformedInput("clarification_response must be a non-empty string")
        if data.clarification_rounds >= MAX_CLARIFICATION_ROUNDS:
            raise MalformedInput("too many clarification rounds")
        return evolve(
            data,
            clarification_answer=answer,
            clarification_rounds=data.clarification_rounds + 1,
        )
    if action == "updated_request":
        if not data.clarifying:
            raise MalformedInput("updated_request answers a clarification request")
        if data.clarification_rounds >= MAX_CLARIFICATION_ROUNDS:
            raise MalformedInput("too many clarification rounds")
        context = require(data.context, "the verified request")
        updated = verify_updated_request(config, context, body, at)
        justification = body.get("justification")
        return evolve(
            data,
            context=updated,
            justification=justification if isinstance(justification, str) else None,
            clarification_answer=None,
            clarification_rounds=data.clarification_rounds + 1,
        )
    raise MalformedInput("a POST to the pending URL needs the requested claims or an action")


# -- deciding and deferring ------------------------------------------------------------------


def _claims_dict(pairs: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    return {name: json.loads(text) for name, text in pairs}


def policy_request(
    context: GrantContext, data: ExchangeData, pending_url: str | None, at: int
) -> PolicyRequest:
    """What the policy decides on: the verified request and what the record gathered."""
    return PolicyRequest(
        ps=context.ps,
        agent=context.agent,
        subagent=context.subagent,
        resource=context.resource,
        presented_type=context.presented_type,
        claims=_claims_dict(data.claims),
        clarification_answer=data.clarification_answer,
        justification=data.justification,
        pending_url=pending_url,
        at=at,
    )


def pending_answer(
    data: ExchangeData, decision: Deferral, pending_url: str, retry_after: int
) -> tuple[ExchangeData, HttpResponse]:
    """The record after a deferring ``decision`` and the 202 (or 402) that answers it."""
    data = evolve(
        data,
        pending_url=pending_url,
        clarifying=isinstance(decision, RequireClarification),
    )
    pending_headers = {
        "Location": pending_url,
        "Retry-After": str(retry_after),
        "Cache-Control": "no-store",
    }
    if isinstance(decision, RequirePayment):
        headers = {**decision.headers, **pending_headers}
        paying = {"status": "pending", **decision.body}
        return data, json_response(402, paying, headers)
    body: dict[str, Any] = {"status": "pending"}
    requirement: Requirement
    if isinstance(decision, RequireClaims):
        requirement = Requirement.claims()
        body["required_claims"] = list(decision.names)
        data = evolve(data, requested_claims=decision.names)
    elif isinstance(decision, RequireInteraction):
        requirement = Requirement.interaction(decision.url, decision.code)
    elif isinstance(decision, RequireClarification):
        requirement = Requirement.clarification()
        body["clarification"] = decision.question
        data = evolve(data, clarification_answer=None)
    elif isinstance(decision, RequireApproval):
        requirement = Requirement.approval()
    else:  # the host's policy answered something that is not a Decision
        raise LocalProtocolError(f"the access policy decided {type(decision).__name__!r}")
    pending_headers["AAuth-Requirement"] = requirement.serialize()
    return data, json_response(202, body, pending_headers)
