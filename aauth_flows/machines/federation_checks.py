"""The Person Server's checks on what an Access Server answers its federation client
(protocol -11 §9.1.3; protocol digest §2.6).

:func:`delivery_expectation` reads, from the tokens the PS forwards, what the delivered
auth token must say; :func:`check_delivery` checks the delivered token against it;
:func:`relayed_error` turns an AS's terminal error into the one the PS relays. Whatever
the AS got wrong is :func:`as_unreachable` (502).
"""

from __future__ import annotations

import hmac
from typing import TypeVar

from attrs import frozen

from aauth_core.errors import AAuthError, LocalProtocolError, RemoteProtocolError
from aauth_core.http import HttpResponse
from aauth_core.jwk import PublicJwk
from aauth_core.jws import decode_compact
from aauth_core.tokens.claims import (
    CLAIMS_FOR,
    DWK_ACCESS,
    AgentTokenClaims,
    ResourceTokenClaims,
    TokenClaims,
    TokenType,
)
from aauth_core.tokens.verify import DEFAULT_POLICY, KeyResolver, TokenPolicy, verify_auth_token
from aauth_flows.machines.as_wire import read_json_response
from aauth_flows.machines.engine import narrow
from aauth_flows.machines.federation_api import FederationRequest

C = TypeVar("C", bound=TokenClaims)

__all__ = [
    "DeliveryExpectation",
    "as_unreachable",
    "forwarded_claims",
    "forwarded",
    "delivery_expectation",
    "check_delivery",
    "relayed_error",
]


@frozen(kw_only=True)
class DeliveryExpectation:
    """What the delivered auth token must say (§2.6 PS checks)."""

    as_issuer: str
    ps: str
    resource: str
    sub: str
    key: PublicJwk
    max_exp: int
    scope: str | None = None


def as_unreachable(detail: str) -> RemoteProtocolError:
    """The PS's answer when the AS is unreachable, malformed or unverifiable (502)."""
    return RemoteProtocolError(detail, code="as_unreachable", status=502)


def forwarded_claims(token: str, expected: tuple[TokenType, ...], what: str) -> TokenClaims:
    """Decode a token the PS already verified (a bad one here is the caller's bug)."""
    try:
        jws = decode_compact(token)
        for token_type in expected:
            if jws.typ == token_type.value:
                return CLAIMS_FOR[token_type].from_payload(jws.payload)
    except AAuthError as exc:
        raise LocalProtocolError(f"{what} in the FederationRequest: {exc.detail}") from None
    raise LocalProtocolError(f"{what} in the FederationRequest has the wrong typ")


def forwarded(token: str, cls: type[C], what: str) -> C:
    """:func:`forwarded_claims` for one token type, typed: the claims built for
    ``cls.TYPE`` are a ``cls`` (``CLAIMS_FOR``)."""
    return narrow(forwarded_claims(token, (cls.TYPE,), what), cls, f"the forwarded {what} claims")


def delivery_expectation(
    request: FederationRequest, ps: str, as_issuer: str
) -> DeliveryExpectation:
    """What the auth token ``as_issuer`` delivers for ``request`` must say: the resource
    token's ``sub``, ``aud`` and ``scope``, the agent's (or sub-agent's) key, and an
    ``exp`` within the presented (and upstream) token's."""
    resource = forwarded(request.resource_token, ResourceTokenClaims, "resource_token")
    agent = forwarded(request.agent_token, AgentTokenClaims, "agent_token")
    presented = forwarded_claims(
        request.presented_token, (TokenType.PERSON, TokenType.AUTH), "presented_token"
    )
    key = agent.cnf.jwk
    if request.subagent_token is not None:
        key = forwarded(request.subagent_token, AgentTokenClaims, "subagent_token").cnf.jwk
    if key is None:
        raise LocalProtocolError("the agent token binds by thumbprint only")
    max_exp = presented.exp
    if request.upstream_token is not None:
        upstream = forwarded_claims(
            request.upstream_token, (TokenType.PERSON, TokenType.AUTH), "upstream_token"
        )
        max_exp = min(max_exp, upstream.exp)
    return DeliveryExpectation(
        as_issuer=as_issuer,
        ps=ps,
        resource=resource.iss,
        sub=resource.sub,
        key=key,
        max_exp=max_exp,
        scope=resource.scope,
    )


def check_delivery(
    token: object,
    expect: DeliveryExpectation,
    *,
    keys: KeyResolver,
    now: int,
    policy: TokenPolicy = DEFAULT_POLICY,
) -> int:
    """The PS's checks on an AS-delivered auth token (-11 §9.1.3, digest §2.6); returns
    its ``exp``. Any failure raises :func:`as_unreachable`.

    ``typ`` first (a person token is refused), then signature by the AS's key, ``iss``
    = the AS called, ``dwk`` = ``aauth-access.json``, ``ps`` = this PS, ``sub`` = the
    resource token's, ``aud`` = the resource, ``cnf.jwk`` = the agent (or sub-agent)
    key, ``scope`` ⊆ the resource token's, ``exp`` ≤ the presented token's."""
    if not isinstance(token, str):
        raise as_unreachable("the AS answered 200 without an auth_token")
    try:
        verified = verify_auth_token(
            token, keys=keys, now=now, audience=expect.resource, policy=policy
        )
    except AAuthError as exc:
        raise as_unreachable(f"the AS's auth token does not verify: {exc.detail}") from None
    claims = verified.claims
    if claims.iss != expect.as_issuer:
        raise as_unreachable("the auth token was not issued by the AS called")
    if claims.dwk != DWK_ACCESS:
        raise as_unreachable("an AS-issued auth token has dwk aauth-access.json")
    if claims.ps != expect.ps:
        raise as_unreachable("the auth token names another Person Server")
    if not hmac.compare_digest(claims.sub, expect.sub):
        raise as_unreachable("the auth token's sub is not the resource token's")
    if not claims.cnf.binds(expect.key):
        raise as_unreachable("the auth token is not bound to the agent's key")
    if claims.scope is not None and not claims.scopes <= frozenset((expect.scope or "").split()):
        raise as_unreachable("the auth token's scope is broader than the resource token's")
    if claims.exp > expect.max_exp:
        raise as_unreachable("the auth token outlives the presented token")
    return claims.exp


def relayed_error(response: HttpResponse) -> AAuthError:
    """An AS terminal error keeps its code and status; an unverifiable or
    unexplained one becomes ``as_unreachable``."""
    body = read_json_response(response)
    code = None if body is None else body.get("error")
    if response.status == 401 or not isinstance(code, str) or not code:
        return as_unreachable(f"the AS answered {response.status} without a usable error")
    detail = body.get("detail") if body is not None else None
    text = detail if isinstance(detail, str) else f"the Access Server answered {code}"
    if not 400 <= response.status <= 599:
        return as_unreachable(f"the AS answered an unexpected status {response.status}")
    return RemoteProtocolError(text[:300], code=code[:64], status=response.status)
