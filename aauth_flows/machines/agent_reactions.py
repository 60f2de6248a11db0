"""Reading an answer: what the resource or the PS said, and what the agent does about it.

Pure functions over a response (its ``AAuth-Requirement``, ``Signature-Error``,
``AAuth-Access``, ``Date`` and problem codes); :class:`~aauth_flows.machines.agent.AgentFlow`
turns each reaction into its next step. Every retry is one-shot per call (:func:`once`).
"""

from __future__ import annotations

import email.utils
import enum

from attrs import evolve

from aauth_core.errors import (
    AAuthError,
    MalformedInput,
    RemoteProtocolError,
    SignatureErrorCode,
    SignatureFailure,
)
from aauth_core.headers.accept import (
    ACCEPT_SIGNATURE_ALG,
    ACCEPT_SIGNATURE_SCHEME,
    parse_token_list,
)
from aauth_core.headers.access import AccessToken
from aauth_core.headers.requirement import Requirement
from aauth_core.headers.signature_error import SignatureErrorHeader
from aauth_core.http import HttpResponse
from aauth_core.tokens.claims import TokenType
from aauth_flows.machines.agent_config import AgentData
from aauth_flows.machines.agent_credentials import CachedToken
from aauth_flows.machines.engine import require
from aauth_flows.machines.pending import json_body, signature_error

__all__ = [
    "SignatureReaction",
    "TokenErrorReaction",
    "signature_reaction",
    "token_error_reaction",
    "agent_token_refusal",
    "signature_refusal",
    "skew_wait",
    "requirement_of",
    "default_code",
    "keep_session",
    "issued_by_ps",
    "issued_token",
    "once",
    "unsatisfiable",
]

_RENEWABLE = (SignatureErrorCode.EXPIRED_JWT, SignatureErrorCode.REVOKED_JWT)
_TOKEN_TYPES = {TokenType.PERSON.value, TokenType.AUTH.value}


class SignatureReaction(enum.Enum):
    """What a resource's ``Signature-Error`` asks of the agent."""

    RENEW_TOKEN = "renew_token"  # noqa: S105 - expired_jwt / revoked_jwt: a fresh token
    WAIT_FOR_CLOCK = "wait_for_clock"  # clock_skew: sign again once its clock caught up
    COVER_INPUT = "cover_input"  # invalid_input with required_input: cover it
    GIVE_UP = "give_up"  # anything else, incl. unsupported scheme/algorithm


class TokenErrorReaction(enum.Enum):
    """What a refusal from the PS's ``auth_token_endpoint`` asks of the agent."""

    RENEW_PRESENTED = "renew_presented"  # a new person token, then a new resource token
    RENEW_RESOURCE_TOKEN = "renew_resource_token"  # noqa: S105 - call the resource again
    BACK_OFF = "back_off"  # as_unreachable: wait, then call the resource again
    GIVE_UP = "give_up"


def signature_reaction(header: SignatureErrorHeader) -> SignatureReaction:
    code = str(header.code)
    if code in _RENEWABLE:
        return SignatureReaction.RENEW_TOKEN
    if code == SignatureErrorCode.CLOCK_SKEW:
        return SignatureReaction.WAIT_FOR_CLOCK
    if code == SignatureErrorCode.INVALID_INPUT and header.required_input:
        return SignatureReaction.COVER_INPUT
    # The agent signs with one key and only the jwt scheme: nothing to adjust to.
    return SignatureReaction.GIVE_UP


def token_error_reaction(code: str) -> TokenErrorReaction:
    if code in ("expired_presented_token", "revoked_presented_token"):
        return TokenErrorReaction.RENEW_PRESENTED
    if code in ("expired_resource_token", "revoked_resource_token"):
        return TokenErrorReaction.RENEW_RESOURCE_TOKEN
    if code == "as_unreachable":
        return TokenErrorReaction.BACK_OFF
    return TokenErrorReaction.GIVE_UP


def agent_token_refusal(response: HttpResponse) -> SignatureErrorHeader | None:
    """The PS's 401 ``expired_jwt``/``revoked_jwt`` ``Signature-Error``: the agent token
    it was signed with failed (§5.10: agent token failures are 401 + ``Signature-Error``)."""
    header = signature_error(response) if response.status == 401 else None
    if header is None or str(header.code) not in _RENEWABLE:
        return None
    return header


def signature_refusal(header: SignatureErrorHeader, response: HttpResponse) -> SignatureFailure:
    """The error a call fails with when the resource's ``Signature-Error`` stands."""
    code = str(header.code)
    return SignatureFailure(
        f"the resource refused the signature: {code}",
        code=code,
        required_input=header.required_input,
        accept_schemes=_token_list(response, ACCEPT_SIGNATURE_SCHEME),
        accept_algs=_token_list(response, ACCEPT_SIGNATURE_ALG),
    )


def skew_wait(response: HttpResponse, at: int) -> int | None:
    """Seconds until the server's clock (its ``Date``) reaches our ``created``; None when
    the server sent no usable ``Date`` or its clock is not behind ours."""
    raw = response.headers.get("date")
    if raw is None:
        return None
    try:
        server_now = int(email.utils.parsedate_to_datetime(raw).timestamp())
    except (TypeError, ValueError):
        return None
    ahead = at - server_now
    return ahead + 1 if ahead > 0 else None


def requirement_of(response: HttpResponse) -> Requirement | None:
    raw = response.headers.get("aauth-requirement")
    return None if raw is None else Requirement.parse(raw)


def default_code(response: HttpResponse) -> str:
    """The error code of a PS answer without a problem body's own."""
    return {
        400: "invalid_request",
        403: "denied",
        408: "expired",
        410: "invalid_code",
        502: "as_unreachable",
    }.get(response.status, "server_error")


def keep_session(data: AgentData, response: HttpResponse) -> AgentData:
    """Store the session token a resource handed out in ``AAuth-Access``."""
    raw = response.headers.get("aauth-access")
    if raw is None:
        return data
    token = AccessToken.parse(raw)
    return evolve(data, store=data.store.put_session_token(data.resource, token.value))


def issued_token(data: AgentData, response: HttpResponse, name: str) -> tuple[str, str]:
    """The token a PS endpoint's 200 carries in ``name``, and the agent's PS."""
    token = json_body(response).get(name)
    if not isinstance(token, str):
        raise RemoteProtocolError(f"the PS answer has no {name}", code="invalid_response")
    ps = require(data.store.ps, "ps")
    return token, ps


def issued_by_ps(token: CachedToken) -> bool:
    """A person or auth token (renewed at the PS), not the agent token (at the AP)."""
    return token.typ in _TOKEN_TYPES


def once(data: AgentData, reason: str) -> AgentData | None:
    """Record a one-shot reaction; None if it was already taken in this call."""
    return None if reason in data.used else evolve(data, used=(*data.used, reason))


def unsatisfiable(detail: str, status: int = 401) -> AAuthError:
    return AAuthError(detail, code="unsatisfiable", status=status)


def _token_list(response: HttpResponse, name: str) -> tuple[str, ...]:
    raw = response.headers.get(name)
    if raw is None:
        return ()
    try:
        return parse_token_list(raw, what=name)
    except MalformedInput:
        return ()
