"""The Access Server: its ``auth_token_endpoint`` (only a PS calls it) and its
``revocation_endpoint`` (protocol -11 §5.5, §5.8, §6.5, §7.6).

:class:`AuthTokenExchange` is one request to the token endpoint and, when the answer is
deferred, its pending record (the driver stores the snapshot under the pending URL)::

    NEW --TokenRequestReceived--> REJECTED (400/401/403: bad request, signature, tokens)
                                | MINTING  (policy grants: the token is signed)
                                | PENDING  (202 claims/interaction/approval/clarification,
                                            402 payment; Location = pending URL)
                                | REFUSED  (403 by policy)
    PENDING --PendingRequestReceived--> PENDING (202 again, 401/404/400 to bad polls;
                                                 claims, clarification_response or
                                                 updated_request POSTed: decided again)
                                      | MINTING | REFUSED (403, 408 expired, 403 revoked)
                                      | GONE (DELETE)
    MINTING --SignatureProduced--> ISSUED (200 + RecordIssued)
    ISSUED / REFUSED --PendingRequestReceived--> GONE (410 to the PS), same (404 others)

An ``updated_request`` answering a clarification (§5.9) replaces the resource and
presented tokens after :func:`verify_updated_request`; the policy then decides again.

:class:`RevocationRequest` (in :mod:`aauth_flows.machines.as_revocation`, re-exported
here) is one request to the revocation endpoint, with the cascade of a PS revoking a
person token to the auth tokens the AS issued against it, revoked at their resources.

Bad requests are answered (``Respond``), never raised. Every request is checked as a
server signature (``jwks_uri`` scheme, see :mod:`aauth_flows.machines.as_wire`).
"""

from __future__ import annotations

import enum
import hmac
import json
from collections.abc import Mapping
from typing import Any

from attrs import evolve, field, frozen

from aauth_core.b64 import b64url_encode
from aauth_core.errors import (
    AAuthError,
    LocalProtocolError,
    MalformedInput,
    SignatureFailure,
    TokenError,
    TokenParameterError,
)
from aauth_core.headers.requirement import Requirement
from aauth_core.http import HttpRequest
from aauth_core.jwk import PublicJwk
from aauth_core.server_requests import verify_server_request
from aauth_core.tokens.claims import (
    DWK_ACCESS,
    DWK_PERSON,
    AgentTokenClaims,
    AuthTokenClaims,
    Confirmation,
    PersonTokenClaims,
    ResourceTokenClaims,
    TokenType,
)
from aauth_core.tokens.mint import mint_token
from aauth_core.tokens.verify import (
    VerifiedToken,
    verify_agent_token,
    verify_resource_token,
    verify_token,
)
from aauth_flows.machines.actions import Respond, SignatureProduced, SignBytes
from aauth_flows.machines.as_policy import (
    AccessServerConfig,
    Decision,
    Deny,
    Grant,
    IssuedAuthToken,
    PolicyRequest,
    RecordIssued,
    RequireApproval,
    RequireClaims,
    RequireClarification,
    RequireInteraction,
    RequirePayment,
)
from aauth_flows.machines.as_revocation import (
    DownstreamUnavailable,
    RevocationData,
    RevocationReceived,
    RevocationRequest,
    RevocationState,
)
from aauth_flows.machines.as_wire import (
    json_response,
    need,
    problem_response,
    read_json_body,
    step,
)
from aauth_flows.machines.engine import Action, Event, Machine, Step, handles, table
from aauth_flows.machines.signing import complete, signing_input

__all__ = [
    "ExchangeState",
    "GrantContext",
    "ExchangeData",
    "TokenRequestReceived",
    "PendingRequestReceived",
    "AuthTokenExchange",
    "verify_token_request",
    "verify_updated_request",
    "KEPT_CLAIMS",
    "RevocationState",
    "RevocationData",
    "RevocationReceived",
    "DownstreamUnavailable",
    "RevocationRequest",
    "MIN_NONCE",
]

#: Random bytes a request event must carry (pending URL ids and token ``jti``s).
MIN_NONCE = 16
MAX_CLARIFICATION_ROUNDS = 5
_RESERVED = frozenset(
    {"iss", "dwk", "jti", "iat", "exp", "nbf", "aud", "ps", "sub", "cnf", "scope", "act"}
)


def _not_found() -> AAuthError:
    return AAuthError("no such pending request", code="not_found", status=404)


def _nonce(value: bytes) -> bytes:
    if len(value) < MIN_NONCE:
        raise LocalProtocolError(f"request events carry at least {MIN_NONCE} random bytes")
    return value


# -- verification of a token request -------------------------------------------------------


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


def _parameter(exc: AAuthError, parameter: str) -> AAuthError:
    if isinstance(exc, TokenError):
        return exc.as_parameter(parameter)
    if isinstance(exc, SignatureFailure):  # cnf.jwk problems: invalid_key, unsupported_algorithm
        return TokenParameterError(
            exc.detail, code=f"invalid_{parameter}_token", parameter=parameter
        )
    return exc


def _string_member(body: Mapping[str, Any], name: str, *, required: bool) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise MalformedInput(f"{name} is required")
        return None
    if not isinstance(value, str) or not value:
        raise MalformedInput(f"{name} must be a non-empty string")
    return value


def _invalid(parameter: str, detail: str) -> TokenParameterError:
    return TokenParameterError(detail, code=f"invalid_{parameter}_token", parameter=parameter)


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
    assert resource_token is not None
    assert agent_token is not None
    assert presented_token is not None
    keys, policy = config.keys, config.token_policy
    revoked = config.revocations.is_revoked

    resource = _verify_resource(resource_token, config, at)

    # Agent token: verified, with #199's codes restored (the PS, not the agent, signed).
    try:
        agent = verify_agent_token(agent_token, keys=keys, now=at, policy=policy).claims
    except AAuthError as exc:
        raise _parameter(exc, "agent") from None
    if agent.parent_agent is not None:
        raise _invalid("agent", "agent_token names a sub-agent; send the parent's token")
    if revoked(agent.iss, agent.jti):
        raise TokenParameterError(
            "the agent token was revoked", code="revoked_agent_token", parameter="agent"
        )
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

    presented = _verify_presented(presented_token, resource, key, ps, config, at)
    upstream_exp = None
    if upstream_token is not None:
        upstream_exp = _verify_upstream(upstream_token, agent, ps, config, at)
    return GrantContext(
        ps=ps,
        agent=agent,
        subagent=subagent,
        resource=resource,
        presented_type=presented.type,
        presented_iss=presented.claims.iss,
        presented_jti=presented.claims.jti,
        key=key,
        max_exp=_max_exp(agent, subagent, presented.claims.exp, upstream_exp),
        upstream_exp=upstream_exp,
    )


#: What an updated request's resource token must keep from the one it replaces (§5.9).
KEPT_CLAIMS = ("iss", "ps", "sub", "agent_jkt", "mission_s256", "tenant")


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
    assert resource_token is not None
    assert presented_token is not None
    resource = _verify_resource(resource_token, config, at)
    old = context.resource
    for name in KEPT_CLAIMS:
        if getattr(resource, name) != getattr(old, name):
            raise _invalid("resource", f"the updated resource token changed {name}")
    _check_binding(resource, context.key, context.ps)
    presented = _verify_presented(presented_token, resource, context.key, context.ps, config, at)
    return evolve(
        context,
        resource=resource,
        presented_type=presented.type,
        presented_iss=presented.claims.iss,
        presented_jti=presented.claims.jti,
        max_exp=_max_exp(
            context.agent, context.subagent, presented.claims.exp, context.upstream_exp
        ),
    )


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
    if config.revocations.is_revoked(resource.iss, resource.jti):
        raise TokenParameterError(
            "the resource token was revoked", code="revoked_resource_token", parameter="resource"
        )
    return resource


def _check_binding(resource: ResourceTokenClaims, key: PublicJwk, ps: str) -> None:
    if not hmac.compare_digest(resource.agent_jkt, key.thumbprint()):
        raise _invalid("resource", "agent_jkt is not the agent's (or sub-agent's) key")
    if resource.ps != ps:
        raise _invalid("resource", "the resource token's ps is not the signing Person Server")


def _verify_presented(
    token: str,
    resource: ResourceTokenClaims,
    key: PublicJwk,
    ps: str,
    config: AccessServerConfig,
    at: int,
) -> VerifiedToken[Any]:
    try:
        presented = verify_token(
            token,
            expected=(TokenType.PERSON, TokenType.AUTH),
            keys=config.keys,
            now=at,
            audience=resource.iss,  # the presented token's aud is the resource
            policy=config.token_policy,
        )
    except AAuthError as exc:
        raise _parameter(exc, "presented") from None
    claims = presented.claims
    assert isinstance(claims, PersonTokenClaims | AuthTokenClaims)
    if not claims.cnf.binds(key):
        raise _invalid("presented", "the presented token is bound to another key")
    issuer = claims.iss if isinstance(claims, PersonTokenClaims) else claims.ps
    if issuer != ps:
        raise _invalid("presented", "the presented token is not from the signing Person Server")
    if config.revocations.is_revoked(claims.iss, claims.jti):
        raise TokenParameterError(
            "the presented token was revoked", code="revoked_presented_token", parameter="presented"
        )
    # Mission-stripping defence: the resource token must describe the presented token.
    if (
        claims.jti != resource.presented_jti
        or claims.sub != resource.sub
        or claims.mission_s256 != resource.mission_s256
        or claims.tenant != resource.tenant
    ):
        raise _invalid("resource", "the resource token does not match the presented token")
    return presented


def _verify_upstream(
    token: str, agent: AgentTokenClaims, ps: str, config: AccessServerConfig, at: int
) -> int:
    try:
        upstream = verify_token(
            token,
            expected=(TokenType.PERSON, TokenType.AUTH),
            keys=config.keys,
            now=at,
            audience=agent.iss,  # the intermediary's own identifier (-11 §10.1)
            policy=config.token_policy,
        )
    except AAuthError as exc:
        raise _parameter(exc, "upstream") from None
    claims = upstream.claims
    assert isinstance(claims, PersonTokenClaims | AuthTokenClaims)
    issuer = claims.iss if isinstance(claims, PersonTokenClaims) else claims.ps
    if issuer != ps:
        raise _invalid("upstream", "the upstream token is not from the signing Person Server")
    if config.revocations.is_revoked(claims.iss, claims.jti):
        raise TokenParameterError(
            "the upstream token was revoked", code="revoked_upstream_token", parameter="upstream"
        )
    return claims.exp


# -- the token exchange machine -------------------------------------------------------------


class ExchangeState(enum.Enum):
    NEW = "new"
    PENDING = "pending"
    MINTING = "minting"
    ISSUED = "issued"
    REFUSED = "refused"
    REJECTED = "rejected"
    GONE = "gone"
    ERROR = "error"


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


@frozen(kw_only=True)
class TokenRequestReceived(Event):
    """A request to the ``auth_token_endpoint``; ``nonce``: fresh random bytes (≥ 16)."""

    request: HttpRequest
    at: int
    nonce: bytes = field(repr=False)


@frozen(kw_only=True)
class PendingRequestReceived(Event):
    """A request to this exchange's pending URL (GET poll, POST claims/answer, DELETE)."""

    request: HttpRequest
    at: int
    nonce: bytes = field(repr=False)


X = ExchangeState


def _claims_dict(pairs: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    return {name: json.loads(text) for name, text in pairs}


class AuthTokenExchange(Machine[ExchangeState, ExchangeData]):
    """One PS request at the AS's ``auth_token_endpoint``, and its pending record."""

    State = ExchangeState
    INITIAL = ExchangeState.NEW
    DATA = ExchangeData
    TRANSITIONS = table(
        [
            (X.NEW, TokenRequestReceived, {X.REJECTED, X.REFUSED, X.PENDING, X.MINTING}),
            (X.PENDING, PendingRequestReceived, {X.PENDING, X.MINTING, X.REFUSED, X.GONE}),
            (X.MINTING, SignatureProduced, {X.ISSUED}),
            (X.ISSUED, PendingRequestReceived, {X.ISSUED, X.GONE}),
            (X.REFUSED, PendingRequestReceived, {X.REFUSED, X.GONE}),
            (X.GONE, PendingRequestReceived, {X.GONE}),
        ]
    )

    def __init__(
        self,
        *,
        config: AccessServerConfig,
        data: ExchangeData | None = None,
        state: ExchangeState | None = None,
    ) -> None:
        super().__init__(data=ExchangeData() if data is None else data, state=state)
        self._config = config

    @property
    def config(self) -> AccessServerConfig:
        return self._config

    # -- the first request -------------------------------------------------------------

    @handles(TokenRequestReceived)
    def _received(
        self, state: ExchangeState, data: ExchangeData, event: TokenRequestReceived
    ) -> Step[ExchangeState, ExchangeData]:
        nonce = _nonce(event.nonce)
        try:
            context = verify_token_request(self._config, event.request, event.at)
        except AAuthError as exc:
            return step(X.REJECTED, data, [Respond(response=problem_response(exc))])
        data = evolve(data, context=context)
        return self._decide(data, event.at, nonce, pending_id=nonce)

    # -- polls, claims, answers, cancellation -------------------------------------------------

    @handles(PendingRequestReceived)
    def _pending(
        self, state: ExchangeState, data: ExchangeData, event: PendingRequestReceived
    ) -> Step[ExchangeState, ExchangeData]:
        nonce = _nonce(event.nonce)
        request, at = event.request, event.at
        context = data.context
        if context is None or data.pending_url is None or request.url != data.pending_url:
            return step(state, data, [Respond(response=problem_response(_not_found()))])
        try:
            signed = verify_server_request(
                request,
                keys=self._config.keys,
                dwks=(DWK_PERSON,),
                now=at,
                window=self._config.window,
            )
        except AAuthError as exc:
            return step(state, data, [Respond(response=problem_response(exc))])
        if signed.issuer != context.ps:  # only the PS that asked may poll
            return step(state, data, [Respond(response=problem_response(_not_found()))])
        if state is not X.PENDING:
            gone = AAuthError(
                "the pending request has been answered", code="invalid_code", status=410
            )
            return step(X.GONE, data, [Respond(response=problem_response(gone))])
        if request.method == "DELETE":
            return step(X.GONE, data, [Respond(response=json_response(204))])
        if request.method == "POST":
            try:
                data = self._accept_post(data, request, at)
            except AAuthError as exc:
                return step(state, data, [Respond(response=problem_response(exc))])
        elif request.method != "GET":
            error = MalformedInput("a pending URL takes GET, POST or DELETE")
            return step(state, data, [Respond(response=problem_response(error))])
        if at >= context.max_exp:
            expired = AAuthError(
                "the presented token expired while pending", code="expired", status=408
            )
            return step(X.REFUSED, data, [Respond(response=problem_response(expired))])
        revocations = self._config.revocations
        if revocations.is_revoked(context.presented_iss, context.presented_jti):
            revoked = AAuthError("the presented token was revoked", code="revoked", status=403)
            return step(X.REFUSED, data, [Respond(response=problem_response(revoked))])
        return self._decide(data, at, nonce, pending_id=None)

    def _accept_post(self, data: ExchangeData, request: HttpRequest, at: int) -> ExchangeData:
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
            context = need(data.context, "the verified request")
            updated = verify_updated_request(self._config, context, body, at)
            justification = body.get("justification")
            return evolve(
                data,
                context=updated,
                justification=justification if isinstance(justification, str) else None,
                clarification_answer=None,
                clarification_rounds=data.clarification_rounds + 1,
            )
        raise MalformedInput("a POST to the pending URL needs the requested claims or an action")

    # -- deciding and answering ----------------------------------------------------------------

    def _decide(
        self, data: ExchangeData, at: int, nonce: bytes, *, pending_id: bytes | None
    ) -> Step[ExchangeState, ExchangeData]:
        context = data.context
        assert context is not None
        pending_url = data.pending_url
        if pending_url is None and pending_id is not None:
            pending_url = f"{self._config.pending_base}/{b64url_encode(pending_id)}"
        decision: Decision = self._config.policy.decide(
            PolicyRequest(
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
        )
        if isinstance(decision, Grant):
            return self._mint(data, decision, at, nonce)
        if isinstance(decision, Deny):
            denied = AAuthError(decision.detail, code="denied", status=403)
            return step(X.REFUSED, data, [Respond(response=problem_response(denied))])
        assert pending_url is not None
        data = evolve(
            data,
            pending_url=pending_url,
            clarifying=isinstance(decision, RequireClarification),
        )
        pending_headers = {
            "Location": pending_url,
            "Retry-After": str(self._config.retry_after),
            "Cache-Control": "no-store",
        }
        if isinstance(decision, RequirePayment):
            headers = {**decision.headers, **pending_headers}
            paying = {"status": "pending", **decision.body}
            return step(X.PENDING, data, [Respond(response=json_response(402, paying, headers))])
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
        else:
            assert isinstance(decision, RequireApproval)
            requirement = Requirement.approval()
        pending_headers["AAuth-Requirement"] = requirement.serialize()
        return step(X.PENDING, data, [Respond(response=json_response(202, body, pending_headers))])

    def _mint(
        self, data: ExchangeData, grant: Grant, at: int, nonce: bytes
    ) -> Step[ExchangeState, ExchangeData]:
        context = data.context
        assert context is not None
        resource = context.resource
        lifetime = min(grant.lifetime or self._config.token_lifetime, self._config.token_lifetime)
        exp = min(at + lifetime, context.max_exp)
        allowed = resource.scopes
        scope = resource.scope
        if grant.scope is not None:
            # Never broader than the resource token's scope.
            scope = " ".join(s for s in grant.scope.split() if s in allowed) or None
        extra = {k: v for k, v in grant.claims.items() if k not in _RESERVED}
        claims = AuthTokenClaims(
            iss=self._config.issuer,
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
        to_sign = signing_input(self._config.signing_key, lambda s: mint_token(claims, s))
        key = self._config.signing_key
        return step(
            X.MINTING,
            evolve(data, minting=claims, to_sign=to_sign),
            [SignBytes(key=key.ref, data=to_sign)],
        )

    @handles(SignatureProduced)
    def _signed(
        self, state: ExchangeState, data: ExchangeData, event: SignatureProduced
    ) -> Step[ExchangeState, ExchangeData]:
        claims = need(data.minting, "the claims being minted")
        context = need(data.context, "the verified request")
        token = complete(
            self._config.signing_key, lambda s: mint_token(claims, s), data.to_sign, event.signature
        )
        record = IssuedAuthToken(
            jti=claims.jti,
            resource=claims.aud,
            exp=claims.exp,
            presented_jti=context.presented_jti,
            ps=context.ps,
        )
        body = {"auth_token": token, "expires_in": claims.exp - claims.iat}
        actions: list[Action] = [
            RecordIssued(record=record),
            Respond(response=json_response(200, body, {"Cache-Control": "no-store"})),
        ]
        return step(X.ISSUED, evolve(data, minting=None, to_sign=b""), actions)
