"""Pure helpers the resource machines share: the answers (401 challenge, 401
``Signature-Error``, 403, 202 pending, problem bodies), verification of a call into a
principal, resource-token claims, and the random material cut from an event.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from attrs import frozen

from aauth_core.b64 import b64url_encode
from aauth_core.errors import AAuthError, MalformedInput, SignatureErrorCode, SignatureFailure
from aauth_core.headers.requirement import HEADER as REQUIREMENT
from aauth_core.headers.requirement import Requirement
from aauth_core.headers.signature_error import signature_error_headers
from aauth_core.http import HttpRequest, HttpResponse
from aauth_core.httpsig import read_signature
from aauth_core.interaction import bytes_needed, generate_code
from aauth_core.requests import VerifiedRequest
from aauth_core.signature_key import JwtScheme, parse_full
from aauth_core.signer import Signer
from aauth_core.tokens.claims import (
    DWK_RESOURCE,
    AgentTokenClaims,
    AuthTokenClaims,
    PersonTokenClaims,
    ResourceTokenClaims,
    TokenType,
)
from aauth_core.tokens.mint import mint_token
from aauth_core.tokens.verify import inspect_token
from aauth_flows.machines import wire
from aauth_flows.machines.actions import SignBytes
from aauth_flows.machines.engine import Action, Step
from aauth_flows.machines.resource_config import (
    AgentPrincipal,
    AuthorizedPrincipal,
    PersonPrincipal,
    Principal,
    ResourceConfig,
)
from aauth_flows.machines.signing import complete, signing_input

__all__ = [
    "Randomness",
    "problem",
    "challenge",
    "signature_failure",
    "forbidden",
    "pending",
    "has_signature",
    "verify_call",
    "principal_from",
    "resource_token_claims",
    "mint_input",
    "mint_complete",
    "json_response",
    "error_response",
    "step",
]


S = TypeVar("S", bound=enum.Enum)
D = TypeVar("D")


@frozen(kw_only=True)
class Randomness:
    """The values a request event's random bytes are cut into (disjoint slices)."""

    jti: str
    pending_id: str
    code: str
    session_token: str

    @classmethod
    def of(cls, random: bytes) -> Randomness:
        code_end = 32 + bytes_needed()
        return cls(
            jti=b64url_encode(random[0:16]),
            pending_id=b64url_encode(random[16:32]),
            code=generate_code(random[32:code_end]),
            session_token=b64url_encode(random[code_end : code_end + 32]),
        )


def json_response(
    status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> HttpResponse:
    return wire.json_response(status, body, headers)


def problem(
    status: int, code: str, detail: str, headers: Mapping[str, str] | None = None
) -> HttpResponse:
    """An RFC 9457 problem answer: ``{"error": code, "detail": detail}``."""
    return wire.problem_response(AAuthError(detail, code=code, status=status), headers)


def error_response(error: AAuthError) -> HttpResponse:
    return problem(error.status, error.code, error.detail)


def challenge(requirement: Requirement, status: int = 401) -> HttpResponse:
    """401 + ``AAuth-Requirement`` (never ``WWW-Authenticate``)."""
    return HttpResponse(status=status, headers={REQUIREMENT: requirement.serialize()})


def signature_failure(
    error: SignatureFailure, requirement: Requirement | None = None
) -> HttpResponse:
    """401 + ``Signature-Error`` (and ``Accept-Signature-*`` when the error names them)."""
    headers = signature_error_headers(error)
    if requirement is not None:
        headers[REQUIREMENT] = requirement.serialize()
    return problem(401, error.code, error.detail, headers)


def forbidden(detail: str, code: str = "denied") -> HttpResponse:
    """403: authenticated but not authorized; carries no signature headers."""
    return problem(403, code, detail)


def pending(
    location: str,
    retry_after: int,
    requirement: Requirement | None,
    status: str = "pending",
) -> HttpResponse:
    """A 202 pending answer (§5.9): ``Location``, ``Retry-After``, ``Cache-Control: no-store``."""
    headers = {
        "Location": location,
        "Retry-After": str(retry_after),
        "Cache-Control": "no-store",
    }
    if requirement is not None:
        headers[REQUIREMENT] = requirement.serialize()
    return json_response(202, {"status": status}, headers)


def has_signature(request: HttpRequest) -> bool:
    """Whether the request tries to sign at all (an unsigned one is challenged, a
    half-signed one fails verification)."""
    headers = request.headers
    return any(name in headers for name in ("signature", "signature-input", "signature-key"))


def revoked_token_type(request: HttpRequest) -> TokenType | None:
    """The ``typ`` of the (unverified) ``jwt`` in ``Signature-Key``: only used to choose the
    ``AAuth-Requirement`` that goes with a ``revoked_jwt`` answer."""
    raw = request.headers.get("signature-key")
    if raw is None:
        return None
    try:
        scheme = parse_full(raw, read_signature(request.headers).label)
        if not isinstance(scheme, JwtScheme):
            return None
        typ = inspect_token(scheme.jwt).typ
        return TokenType(typ) if typ in {t.value for t in TokenType} else None
    except AAuthError:
        return None


def verify_call(
    config: ResourceConfig, request: HttpRequest, at: int
) -> VerifiedRequest | HttpResponse:
    """Verify an agent-signed request (RFC 9421 + token + revocation, all in core) and
    check the auth token's issuer; any failure is the answer to send."""
    try:
        verified = config.verifier().verify(request, now=at)
    except SignatureFailure as exc:
        requirement = None
        if exc.code == SignatureErrorCode.REVOKED_JWT.value and revoked_token_type(request) in (
            TokenType.AUTH,
            TokenType.PERSON,
        ):
            # §5.1: a revoked auth token gets person-token, never a new resource token.
            requirement = Requirement.person_token()
        return signature_failure(exc, requirement)
    except MalformedInput as exc:
        return error_response(exc)
    claims = verified.token.claims
    if isinstance(claims, AuthTokenClaims):
        expected = config.access_server if config.access_server is not None else claims.ps
        if claims.iss != expected:
            return signature_failure(
                SignatureFailure(
                    f"auth tokens here are issued by {expected}, not {claims.iss[:80]}",
                    code=SignatureErrorCode.INVALID_JWT,
                )
            )
    return verified


def principal_from(verified: VerifiedRequest) -> Principal:
    claims = verified.token.claims
    jkt = verified.key_thumbprint
    if isinstance(claims, AgentTokenClaims):
        return AgentPrincipal(issuer=claims.iss, agent=claims.sub, key_thumbprint=jkt)
    if isinstance(claims, PersonTokenClaims):
        return PersonPrincipal(
            issuer=claims.iss,
            sub=claims.sub,
            jti=claims.jti,
            exp=claims.exp,
            key_thumbprint=jkt,
            mission_s256=claims.mission_s256,
            tenant=claims.tenant,
        )
    if isinstance(claims, AuthTokenClaims):
        return AuthorizedPrincipal(
            issuer=claims.iss,
            ps=claims.ps,
            sub=claims.sub,
            jti=claims.jti,
            exp=claims.exp,
            key_thumbprint=jkt,
            scopes=claims.scopes,
            account=claims.account,
            mission_s256=claims.mission_s256,
            tenant=claims.tenant,
        )
    raise AssertionError("the verifier admits agent, person and auth tokens only")


def resource_token_claims(
    config: ResourceConfig,
    presented: PersonPrincipal | AuthorizedPrincipal,
    *,
    scope: str | None,
    at: int,
    jti: str,
    account: str | None = None,
) -> ResourceTokenClaims:
    """The resource token for a verified person or auth token (§2.5): ``aud`` = the AS
    (four-party) or the PS; ``presented_jti`` = that token's ``jti``; ``agent_jkt`` = the
    request-signing key; ``mission_s256`` and ``tenant`` copied, never stripped;
    ``interaction`` when the config's ``token_interaction`` asks for the resource's own flow."""
    ps = presented.issuer if isinstance(presented, PersonPrincipal) else presented.ps
    hook = config.token_interaction
    interaction = hook.interaction(presented, scope, jti) if hook is not None else None
    return ResourceTokenClaims(
        iss=config.issuer,
        dwk=DWK_RESOURCE,
        jti=jti,
        iat=at,
        exp=at + config.resource_token_lifetime,
        aud=config.access_server if config.access_server is not None else ps,
        ps=ps,
        sub=presented.sub,
        presented_jti=presented.jti,
        agent_jkt=presented.key_thumbprint,
        scope=scope,
        account=account,
        mission_s256=presented.mission_s256,
        tenant=presented.tenant,
        interaction=interaction,
    )


def _minter(claims: ResourceTokenClaims) -> Callable[[Signer], str]:
    def run(signer: Signer) -> str:
        return mint_token(claims, signer)

    return run


def mint_input(config: ResourceConfig, claims: ResourceTokenClaims) -> tuple[bytes, SignBytes]:
    """The bytes a resource token's signature covers, and the action asking for it."""
    data = signing_input(config.signing_key, _minter(claims))
    return data, SignBytes(key=config.signing_key.ref, data=data)


def mint_complete(
    config: ResourceConfig, claims: ResourceTokenClaims, data: bytes, signature: bytes
) -> str:
    """The resource token, once the driver signed ``data`` (checked before it leaves)."""
    return complete(config.signing_key, _minter(claims), data, signature)


def step(*, state: S, data: D, actions: Iterable[Action] = ()) -> Step[S, D]:
    """A :class:`Step` (shorthand for the resource handlers)."""
    return Step(state=state, data=data, actions=actions)
