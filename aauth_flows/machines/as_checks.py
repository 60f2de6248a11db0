"""What the Access Server checks on a request to its ``auth_token_endpoint`` before its
policy decides (protocol -11 §5.5, §5.9, §6.5 step 6; digest §2.5).

:func:`verify_token_request` checks the PS's server signature, the body and the four
tokens it carries and returns the :class:`GrantContext` the policy decides on;
:func:`verify_updated_request` re-checks the tokens of an ``updated_request`` that
answers a clarification. Both raise the error to answer with (never a ``Respond``: the
machine in :mod:`aauth_flows.machines.access_server` turns it into one).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any, Literal, overload

from attrs import evolve, frozen

from aauth_core.errors import (
    AAuthError,
    MalformedInput,
    SignatureFailure,
    TokenError,
    TokenParameterError,
)
from aauth_core.http import HttpRequest
from aauth_core.jwk import PublicJwk
from aauth_core.server_requests import verify_server_request
from aauth_core.tokens.claims import (
    DWK_PERSON,
    AgentTokenClaims,
    AuthTokenClaims,
    PersonTokenClaims,
    ResourceTokenClaims,
    TokenType,
)
from aauth_core.tokens.mint import presented_mismatches
from aauth_core.tokens.verify import (
    verify_agent_token,
    verify_resource_token,
    verify_token,
)
from aauth_flows.machines.as_policy import AccessServerConfig
from aauth_flows.machines.as_wire import read_json_body
from aauth_flows.machines.engine import narrow

__all__ = [
    "GrantContext",
    "KEPT_CLAIMS",
    "verify_token_request",
    "verify_updated_request",
]

#: What an updated request's resource token must keep from the one it replaces (§5.9).
KEPT_CLAIMS = ("iss", "ps", "sub", "agent_jkt", "mission_s256", "tenant")


@frozen(kw_only=True)
class GrantContext:
    """What the AS verified on a token request (kept while the request is pending)."""

    ps: str
    agent: AgentTokenClaims
    subagent: AgentTokenClaims | None
    resource: ResourceTokenClaims
    presented_type: TokenType
    presented_iss: str
    presented_jti: str
    key: PublicJwk
    max_exp: int
    #: the upstream token's ``exp`` (call chaining), kept to re-cap an updated request
    upstream_exp: int | None = None


def verify_token_request(config: AccessServerConfig, request: HttpRequest, at: int) -> GrantContext:
    """Everything the AS checks before its policy (-11 §5.5, §6.5 step 6; digest §2.5).

    Raises the error to answer with: 401 + ``Signature-Error`` for the PS's signature,
    403 ``unsupported_iss`` for a PS it does not deal with, 400 ``invalid_request`` for
    the body, 400 ``<invalid|expired|revoked>_<parameter>_token`` for the tokens."""
    signed = verify_server_request(
        request, keys=config.keys, dwks=(DWK_PERSON,), now=at, window=config.window
    )
    ps = signed.issuer
    if not config.person_servers.is_admitted(ps):
        raise AAuthError(
            f"{ps} is not a Person Server this AS deals with", code="unsupported_iss", status=403
        )
    if request.method != "POST":
        raise MalformedInput("the auth token endpoint takes POST")
    body = read_json_body(request)
    resource_token = _string_member(body, "resource_token", required=True)
    agent_token = _string_member(body, "agent_token", required=True)
    presented_token = _string_member(body, "presented_token", required=True)
    subagent_token = _string_member(body, "subagent_token", required=False)
    upstream_token = _string_member(body, "upstream_token", required=False)
    keys, policy = config.keys, config.token_policy

    resource = _verify_resource(resource_token, config, at)

    # Agent token: verified, with #199's codes restored (the PS, not the agent, signed).
    try:
        agent = verify_agent_token(agent_token, keys=keys, now=at, policy=policy).claims
    except AAuthError as exc:
        raise _parameter(exc, "agent") from None
    if agent.parent_agent is not None:
        raise _invalid("agent", "agent_token names a sub-agent; send the parent's token")
    _refuse_revoked(config, "agent", agent.iss, agent.jti)
    key = agent.cnf.jwk
    subagent: AgentTokenClaims | None = None
    if subagent_token is not None:
        try:
            subagent = verify_agent_token(subagent_token, keys=keys, now=at, policy=policy).claims
        except AAuthError as exc:
            raise _parameter(exc, "subagent") from None
        if subagent.parent_agent != agent.sub or subagent.iss != agent.iss:
            raise _invalid("subagent", "the sub-agent token is not the agent token's child")
        key = subagent.cnf.jwk
    if key is None:
        raise _invalid("subagent" if subagent else "agent", "the token binds by thumbprint only")
    _check_binding(resource, key, ps)

    presented_type, presented = _verify_presented(presented_token, resource, key, ps, config, at)
    upstream_exp = None
    if upstream_token is not None:
        upstream_exp = _verify_upstream(upstream_token, agent, ps, config, at)
    return GrantContext(
        ps=ps,
        agent=agent,
        subagent=subagent,
        resource=resource,
        presented_type=presented_type,
        presented_iss=presented.iss,
        presented_jti=presented.jti,
        key=key,
        max_exp=_max_exp(agent, subagent, presented.exp, upstream_exp),
        upstream_exp=upstream_exp,
    )


def verify_updated_request(
    config: AccessServerConfig, context: GrantContext, body: Mapping[str, Any], at: int
) -> GrantContext:
    """An ``updated_request`` answering a clarification (§5.9, §6.5 step 6): the new
    resource and presented tokens get the initial request's checks (the POST's server
    signature by the same PS is checked by the caller); the new resource token MUST keep
    :data:`KEPT_CLAIMS` of the old one, and its ``presented_jti`` MUST name the new
    presented token. Returns the context the policy decides on next."""
    resource_token = _string_member(body, "resource_token", required=True)
    presented_token = _string_member(body, "presented_token", required=True)
    _string_member(body, "justification", required=False)
    resource = _verify_resource(resource_token, config, at)
    old = context.resource
    for name in KEPT_CLAIMS:
        if getattr(resource, name) != getattr(old, name):
            raise _invalid("resource", f"the updated resource token changed {name}")
    _check_binding(resource, context.key, context.ps)
    presented_type, presented = _verify_presented(
        presented_token, resource, context.key, context.ps, config, at
    )
    return evolve(
        context,
        resource=resource,
        presented_type=presented_type,
        presented_iss=presented.iss,
        presented_jti=presented.jti,
        max_exp=_max_exp(context.agent, context.subagent, presented.exp, context.upstream_exp),
    )


# -- the body --------------------------------------------------------------------------------


@overload
def _string_member(body: Mapping[str, Any], name: str, *, required: Literal[True]) -> str: ...
@overload
def _string_member(
    body: Mapping[str, Any], name: str, *, required: Literal[False]
) -> str | None: ...
def _string_member(body: Mapping[str, Any], name: str, *, required: bool) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise MalformedInput(f"{name} is required")
        return None
    if not isinstance(value, str) or not value:
        raise MalformedInput(f"{name} must be a non-empty string")
    return value


# -- token-endpoint errors -------------------------------------------------------------------


def _parameter(exc: AAuthError, parameter: str) -> AAuthError:
    if isinstance(exc, TokenError):
        return exc.as_parameter(parameter)
    if isinstance(exc, SignatureFailure):  # cnf.jwk problems: invalid_key, unsupported_algorithm
        return TokenParameterError(
            exc.detail, code=f"invalid_{parameter}_token", parameter=parameter
        )
    return exc


def _invalid(parameter: str, detail: str) -> TokenParameterError:
    return TokenParameterError(detail, code=f"invalid_{parameter}_token", parameter=parameter)


def _refuse_revoked(config: AccessServerConfig, parameter: str, iss: str, jti: str) -> None:
    """``revoked_<parameter>_token`` if the AS knows the token ``(iss, jti)`` is revoked."""
    if config.revocations.is_revoked(iss, jti):
        raise TokenParameterError(
            f"the {parameter} token was revoked",
            code=f"revoked_{parameter}_token",
            parameter=parameter,
        )


# -- the tokens ------------------------------------------------------------------------------


def _max_exp(
    agent: AgentTokenClaims,
    subagent: AgentTokenClaims | None,
    presented_exp: int,
    upstream_exp: int | None,
) -> int:
    """The auth token's ``exp`` cap: agent, sub-agent, presented and upstream tokens."""
    caps = [agent.exp, presented_exp]
    if subagent is not None:
        caps.append(subagent.exp)
    if upstream_exp is not None:
        caps.append(upstream_exp)
    return min(caps)


def _verify_resource(token: str, config: AccessServerConfig, at: int) -> ResourceTokenClaims:
    try:
        rt = verify_resource_token(
            token, keys=config.keys, now=at, audience=config.issuer, policy=config.token_policy
        )
    except AAuthError as exc:
        raise _parameter(exc, "resource") from None
    resource = rt.claims
    _refuse_revoked(config, "resource", resource.iss, resource.jti)
    return resource


def _check_binding(resource: ResourceTokenClaims, key: PublicJwk, ps: str) -> None:
    if not hmac.compare_digest(resource.agent_jkt, key.thumbprint()):
        raise _invalid("resource", "agent_jkt is not the agent's (or sub-agent's) key")
    if resource.ps != ps:
        raise _invalid("resource", "the resource token's ps is not the signing Person Server")


def _verify_person_or_auth(
    token: str, parameter: str, audience: str, config: AccessServerConfig, at: int
) -> tuple[TokenType, PersonTokenClaims | AuthTokenClaims]:
    """A presented or upstream token: a person token or an auth token for ``audience``."""
    try:
        verified = verify_token(
            token,
            expected=(TokenType.PERSON, TokenType.AUTH),
            keys=config.keys,
            now=at,
            audience=audience,
            policy=config.token_policy,
        )
    except AAuthError as exc:
        raise _parameter(exc, parameter) from None
    # expected admits only these two types
    claims = narrow(
        verified.claims, (PersonTokenClaims, AuthTokenClaims), f"the {parameter} claims"
    )
    return verified.type, claims


def _issuing_ps(claims: PersonTokenClaims | AuthTokenClaims) -> str:
    """The Person Server behind a person token (its issuer) or an auth token (its ``ps``)."""
    return claims.iss if isinstance(claims, PersonTokenClaims) else claims.ps


def _verify_presented(
    token: str,
    resource: ResourceTokenClaims,
    key: PublicJwk,
    ps: str,
    config: AccessServerConfig,
    at: int,
) -> tuple[TokenType, PersonTokenClaims | AuthTokenClaims]:
    # The presented token's aud is the resource.
    presented_type, claims = _verify_person_or_auth(token, "presented", resource.iss, config, at)
    if not claims.cnf.binds(key):
        raise _invalid("presented", "the presented token is bound to another key")
    if _issuing_ps(claims) != ps:
        raise _invalid("presented", "the presented token is not from the signing Person Server")
    _refuse_revoked(config, "presented", claims.iss, claims.jti)
    # Mission-stripping defence: the resource token must describe the presented token.
    if presented_mismatches(resource, claims):
        raise _invalid("resource", "the resource token does not match the presented token")
    return presented_type, claims


def _verify_upstream(
    token: str, agent: AgentTokenClaims, ps: str, config: AccessServerConfig, at: int
) -> int:
    # The upstream token's aud is the intermediary's own identifier (-11 §10.1).
    _, claims = _verify_person_or_auth(token, "upstream", agent.iss, config, at)
    if _issuing_ps(claims) != ps:
        raise _invalid("upstream", "the upstream token is not from the signing Person Server")
    _refuse_revoked(config, "upstream", claims.iss, claims.jti)
    return claims.exp
