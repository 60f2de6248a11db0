"""The checks an agent makes on tokens it receives (protocol -11 §2.5 "agent-side check",
§2.6 "agent checks on receipt", §8 "Tokens").

``typ`` is checked first, always: a person token and an auth token differ only there.
When the agent has a :class:`~aauth_core.tokens.verify.KeyResolver` (the driver filled it
from discovery) the JWS signature is verified too; without one the claims are still
checked (``exp`` with zero leeway). A failed check means the peer broke the protocol:
:class:`~aauth_core.errors.RemoteProtocolError` with a code naming the token.
"""

from __future__ import annotations

import hmac

from aauth_core.errors import AAuthError, RemoteProtocolError
from aauth_core.jwk import PublicJwk
from aauth_core.jws import decode_compact
from aauth_core.tokens.claims import (
    CLAIMS_FOR,
    AgentTokenClaims,
    AuthTokenClaims,
    PersonTokenClaims,
    ResourceTokenClaims,
    TokenClaims,
    TokenType,
)
from aauth_core.tokens.verify import KeyResolver, verify_token
from aauth_flows.machines.agent_credentials import CachedToken
from aauth_flows.machines.engine import narrow

__all__ = [
    "read_token",
    "check_agent_token",
    "check_person_token",
    "check_resource_token",
    "check_auth_token",
]


def _fail(what: str, detail: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"{what}: {detail}", code=f"invalid_{what}", status=502)


def read_token(
    token: str,
    expected: TokenType,
    *,
    what: str,
    keys: KeyResolver | None,
    now: int,
) -> TokenClaims:
    """``typ`` first; then the signature (with ``keys``) and the claims; ``exp`` > ``now``."""
    try:
        jws = decode_compact(token)
        typ = jws.header.get("typ")
        if typ != expected.value:
            raise _fail(what, f"typ {str(typ)[:40]!r} where {expected.value} is required")
        if keys is not None:
            claims = CLAIMS_FOR[expected].from_payload(jws.payload)
            verified = verify_token(
                token, expected=expected, keys=keys, now=now, audience=claims.audience
            )
            return verified.claims
        claims = CLAIMS_FOR[expected].from_payload(jws.payload)
    except RemoteProtocolError:
        raise
    except AAuthError as exc:
        raise _fail(what, exc.detail) from exc
    if now >= claims.exp:
        raise _fail(what, "the token has expired")
    return claims


def _same_key(a: PublicJwk | None, b: PublicJwk) -> bool:
    return a is not None and hmac.compare_digest(a.thumbprint(), b.thumbprint())


def check_agent_token(token: str, *, key: PublicJwk, now: int) -> CachedToken:
    """The AP's answer to a refresh: an agent token bound to our key, not expired."""
    claims = narrow(
        read_token(token, TokenType.AGENT, what="agent_token", keys=None, now=now),
        AgentTokenClaims,
        "the agent token claims",
    )
    if not _same_key(claims.cnf.jwk, key):
        raise _fail("agent_token", "cnf.jwk is not the agent's key")
    return CachedToken.parse(token)


def check_person_token(
    token: str,
    *,
    resource: str,
    ps: str,
    key: PublicJwk,
    mission_s256: str | None,
    keys: KeyResolver | None,
    now: int,
) -> CachedToken:
    """The PS's person token: ``aud`` = the resource, ``cnf`` = our key, ``iss`` = our PS,
    the mission asked for."""
    claims = narrow(
        read_token(token, TokenType.PERSON, what="person_token", keys=keys, now=now),
        PersonTokenClaims,
        "the person token claims",
    )
    if claims.aud != resource:
        raise _fail("person_token", f"aud {claims.aud!r} is not {resource!r}")
    if claims.iss != ps:
        raise _fail("person_token", f"iss {claims.iss!r} is not the agent's PS")
    if not _same_key(claims.cnf.jwk, key):
        raise _fail("person_token", "cnf.jwk is not the agent's key")
    if claims.mission_s256 != mission_s256:
        raise _fail("person_token", "mission_s256 is not the mission asked for")
    return CachedToken.parse(token)


def check_resource_token(
    token: str,
    *,
    resource: str,
    ps: str,
    key: PublicJwk,
    presented: CachedToken,
    keys: KeyResolver | None,
    now: int,
) -> ResourceTokenClaims:
    """The resource token of a challenge (§2.5 agent-side check): ``iss`` = the resource
    called, ``agent_jkt`` = our key, ``aud`` a server (the PS or an AS), ``ps`` = our PS,
    ``sub`` / ``presented_jti`` = those of the token we presented, not expired."""
    claims = narrow(
        read_token(token, TokenType.RESOURCE, what="resource_token", keys=keys, now=now),
        ResourceTokenClaims,
        "the resource token claims",
    )
    if claims.iss != resource:
        raise _fail("resource_token", f"iss {claims.iss!r} is not the resource called")
    if not hmac.compare_digest(claims.agent_jkt, key.thumbprint()):
        raise _fail("resource_token", "agent_jkt is not the agent key's thumbprint")
    if claims.ps != ps:
        raise _fail("resource_token", f"ps {claims.ps!r} is not the agent's PS")
    if presented.typ not in (TokenType.PERSON.value, TokenType.AUTH.value):
        raise _fail("resource_token", "a resource token answers a person or auth token only")
    if claims.presented_jti != presented.jti or claims.sub != presented.sub:
        raise _fail("resource_token", "presented_jti / sub do not match the token presented")
    return claims


def check_auth_token(
    token: str,
    *,
    resource: str,
    ps: str,
    key: PublicJwk,
    resource_token: ResourceTokenClaims,
    keys: KeyResolver | None,
    now: int,
) -> CachedToken:
    """The PS's auth token (§2.6 agent checks): ``aud`` = the resource, ``cnf`` = our key,
    ``iss`` = the resource token's ``aud`` (the PS, or the AS it federated with), ``ps`` =
    our PS, ``sub`` = the resource token's."""
    claims = narrow(
        read_token(token, TokenType.AUTH, what="auth_token", keys=keys, now=now),
        AuthTokenClaims,
        "the auth token claims",
    )
    if claims.aud != resource:
        raise _fail("auth_token", f"aud {claims.aud!r} is not {resource!r}")
    if not _same_key(claims.cnf.jwk, key):
        raise _fail("auth_token", "cnf.jwk is not the agent's key")
    if claims.iss != resource_token.aud:
        raise _fail("auth_token", f"iss {claims.iss!r} is not the resource token's aud")
    if claims.ps != ps or claims.ps != resource_token.ps:
        raise _fail("auth_token", f"ps {claims.ps!r} is not the agent's PS")
    if claims.sub != resource_token.sub:
        raise _fail("auth_token", "sub is not the resource token's sub")
    return CachedToken.parse(token)
