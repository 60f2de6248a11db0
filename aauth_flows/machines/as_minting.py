"""The auth token the Access Server mints on a :class:`~aauth_flows.machines.as_policy.Grant`
and what it does once it is signed (protocol -11 §5.5, §2 auth token).

:func:`auth_token_claims` caps the token by the AS's lifetime and the verified request's
``max_exp`` and never makes it broader than the resource token's scope;
:func:`issued_actions` records the issued token and answers the PS with it.
"""

from __future__ import annotations

from aauth_core.b64 import b64url_encode
from aauth_core.tokens.claims import DWK_ACCESS, AuthTokenClaims, Confirmation
from aauth_flows.machines.actions import Respond
from aauth_flows.machines.as_checks import GrantContext
from aauth_flows.machines.as_policy import (
    AccessServerConfig,
    Grant,
    IssuedAuthToken,
    RecordIssued,
)
from aauth_flows.machines.as_wire import json_response
from aauth_flows.machines.engine import Action

__all__ = ["auth_token_claims", "issued_actions"]

#: Claims the AS sets itself; a grant's extra claims never override them.
_RESERVED = frozenset(
    {"iss", "dwk", "jti", "iat", "exp", "nbf", "aud", "ps", "sub", "cnf", "scope", "act"}
)


def auth_token_claims(
    config: AccessServerConfig, context: GrantContext, grant: Grant, at: int, nonce: bytes
) -> AuthTokenClaims:
    """The claims of the auth token ``grant`` issues (``jti`` from ``nonce``)."""
    resource = context.resource
    lifetime = min(grant.lifetime or config.token_lifetime, config.token_lifetime)
    exp = min(at + lifetime, context.max_exp)
    allowed = resource.scopes
    scope = resource.scope
    if grant.scope is not None:
        # Never broader than the resource token's scope.
        scope = " ".join(s for s in grant.scope.split() if s in allowed) or None
    extra = {k: v for k, v in grant.claims.items() if k not in _RESERVED}
    return AuthTokenClaims(
        iss=config.issuer,
        dwk=DWK_ACCESS,
        jti=b64url_encode(nonce),
        iat=at,
        exp=exp,
        aud=resource.iss,
        ps=context.ps,
        sub=resource.sub,
        cnf=Confirmation(jwk=context.key),
        scope=scope,
        account=resource.account,
        mission_s256=resource.mission_s256,
        tenant=resource.tenant,
        extra=extra,
    )


def issued_actions(claims: AuthTokenClaims, context: GrantContext, token: str) -> list[Action]:
    """Record the signed ``token`` as issued, then answer the PS with it (200)."""
    record = IssuedAuthToken(
        jti=claims.jti,
        resource=claims.aud,
        exp=claims.exp,
        presented_jti=context.presented_jti,
        ps=context.ps,
    )
    body = {"auth_token": token, "expires_in": claims.exp - claims.iat}
    return [
        RecordIssued(record=record),
        Respond(response=json_response(200, body, {"Cache-Control": "no-store"})),
    ]
