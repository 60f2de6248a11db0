"""The Access Server: its ``auth_token_endpoint`` (only a PS calls it) and its
``revocation_endpoint`` (protocol -11 §5.5, §5.8, §6.5, §7.6).

:class:`AuthTokenExchange` is one request to the token endpoint and, when the answer is
deferred, its pending record (the driver stores the snapshot under the pending URL)::

    NEW --TokenRequestReceived--> REJECTED (400/401/403: bad request, signature, tokens)
                                | MINTING  (policy grants: the token is signed)
                                | PENDING  (202 claims/interaction/approval/clarification,
                                            402 payment; Location = pending URL)
                                | REFUSED  (403 by policy)
    PENDING --PendingRequestReceived--> PENDING (202 again, 401/404/400 to bad polls)
                                      | MINTING | REFUSED (403, 408 expired, 403 revoked)
                                      | GONE (DELETE)
    MINTING --SignatureProduced--> ISSUED (200 + RecordIssued)
    ISSUED / REFUSED --PendingRequestReceived--> GONE (410 to the PS), same (404 others)

:class:`RevocationRequest` is one request to the revocation endpoint, with the cascade
of a PS revoking a person token to the auth tokens the AS issued against it.

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
    DWK_RESOURCE,
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
    RecordRevocation,
    RequireApproval,
    RequireClaims,
    RequireClarification,
    RequireInteraction,
    RequirePayment,
    RevokeAtResource,
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
    "RevocationState",
    "RevocationData",
    "RevocationReceived",
    "DownstreamSettled",
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

    try:
        rt = verify_resource_token(
            resource_token, keys=keys, now=at, audience=config.issuer, policy=policy
        )
    except AAuthError as exc:
        raise _parameter(exc, "resource") from None
    resource = rt.claims
    if revoked(resource.iss, resource.jti):
        raise TokenParameterError(
            "the resource token was revoked", code="revoked_resource_token", parameter="resource"
        )

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
    if not hmac.compare_digest(resource.agent_jkt, key.thumbprint()):
        raise _invalid("resource", "agent_jkt is not the agent's (or sub-agent's) key")
    if resource.ps != ps:
        raise _invalid("resource", "the resource token's ps is not the signing Person Server")

    presented = _verify_presented(presented_token, resource, key, ps, config, at)
    max_exp = min(agent.exp, presented.exp)
    if subagent is not None:
        max_exp = min(max_exp, subagent.exp)
    if upstream_token is not None:
        max_exp = min(max_exp, _verify_upstream(upstream_token, agent, ps, config, at))
    return GrantContext(
        ps=ps,
        agent=agent,
        subagent=subagent,
        resource=resource,
        presented_type=presented.type,
        presented_iss=presented.claims.iss,
        presented_jti=presented.claims.jti,
        key=key,
        max_exp=max_exp,
    )


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
                data = self._accept_post(data, request)
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

    def _accept_post(self, data: ExchangeData, request: HttpRequest) -> ExchangeData:
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
        data = evolve(data, pending_url=pending_url)
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


# -- the revocation endpoint ----------------------------------------------------------------


class RevocationState(enum.Enum):
    NEW = "new"
    CASCADING = "cascading"
    ANSWERED = "answered"
    REJECTED = "rejected"
    ERROR = "error"


@frozen(kw_only=True)
class RevocationData:
    caller: str | None = None
    #: (recipient, jti) of the downstream revocations still running
    outstanding: tuple[tuple[str, str], ...] = ()
    #: (recipient, error) of those that did not succeed
    failures: tuple[tuple[str, str], ...] = ()


@frozen(kw_only=True)
class RevocationReceived(Event):
    request: HttpRequest
    at: int


#: Downstream outcomes: ``revoked`` (done) or the two -11 error values.
DOWNSTREAM_OUTCOMES = frozenset({"revoked", "revocation_unsupported", "revocation_unavailable"})


@frozen(kw_only=True)
class DownstreamSettled(Event):
    """The outcome of one :class:`RevokeAtResource`."""

    recipient: str
    jti: str
    outcome: str
    at: int


R = RevocationState


class RevocationRequest(Machine[RevocationState, RevocationData]):
    """One server-signed ``POST {"jti","exp"}`` at the AS's ``revocation_endpoint``.

    The caller revokes only its own tokens: the record is keyed ``(caller, jti)``. A PS
    revoking a person token cascades to the AS's auth tokens that named it as
    ``presented_token`` (recorded as revoked, and revoked at their resources); the 200
    comes when the cascade is terminal, with ``downstream`` failures if any."""

    State = RevocationState
    INITIAL = RevocationState.NEW
    DATA = RevocationData
    TRANSITIONS = table(
        [
            (R.NEW, RevocationReceived, {R.ANSWERED, R.CASCADING, R.REJECTED}),
            (R.CASCADING, DownstreamSettled, {R.CASCADING, R.ANSWERED}),
        ]
    )

    def __init__(
        self,
        *,
        config: AccessServerConfig,
        data: RevocationData | None = None,
        state: RevocationState | None = None,
    ) -> None:
        super().__init__(data=RevocationData() if data is None else data, state=state)
        self._config = config

    @handles(RevocationReceived)
    def _received(
        self, state: RevocationState, data: RevocationData, event: RevocationReceived
    ) -> Step[RevocationState, RevocationData]:
        config, at = self._config, event.at
        try:
            signed = verify_server_request(
                event.request,
                keys=config.keys,
                dwks=(DWK_PERSON, DWK_RESOURCE),
                now=at,
                window=config.window,
            )
            caller = signed.issuer
            is_ps = signed.dwk == DWK_PERSON and config.person_servers.is_admitted(caller)
            is_resource = signed.dwk == DWK_RESOURCE and caller in config.known_resources
            if not (is_ps or is_resource):
                raise AAuthError(
                    f"{caller} may not revoke here", code="unsupported_iss", status=403
                )
            if event.request.method != "POST":
                raise MalformedInput("the revocation endpoint takes POST")
            body = read_json_body(event.request)
            jti, exp = body.get("jti"), body.get("exp")
            if not isinstance(jti, str) or not jti or len(jti) > 4096:
                raise MalformedInput("jti must be a non-empty string")
            if isinstance(exp, bool) or not isinstance(exp, int) or exp < 0:
                raise MalformedInput("exp must be a NumericDate")
        except AAuthError as exc:
            return step(R.REJECTED, data, [Respond(response=problem_response(exc))])
        actions: list[Action] = [RecordRevocation(iss=caller, jti=jti, exp=exp)]
        outstanding: list[tuple[str, str]] = []
        if is_ps:
            for record in config.issued.issued_against(caller, jti):
                if record.exp <= at or config.revocations.is_revoked(config.issuer, record.jti):
                    continue
                actions.append(RecordRevocation(iss=config.issuer, jti=record.jti, exp=record.exp))
                actions.append(
                    RevokeAtResource(recipient=record.resource, jti=record.jti, exp=record.exp)
                )
                outstanding.append((record.resource, record.jti))
        data = evolve(data, caller=caller, outstanding=tuple(outstanding))
        if not outstanding:
            actions.append(Respond(response=json_response(200)))
            return step(R.ANSWERED, data, actions)
        return step(R.CASCADING, data, actions)

    @handles(DownstreamSettled)
    def _downstream(
        self, state: RevocationState, data: RevocationData, event: DownstreamSettled
    ) -> Step[RevocationState, RevocationData]:
        entry = (event.recipient, event.jti)
        if entry not in data.outstanding or event.outcome not in DOWNSTREAM_OUTCOMES:
            raise LocalProtocolError("a downstream outcome this revocation did not ask for")
        outstanding = tuple(e for e in data.outstanding if e != entry)
        failures = data.failures
        if event.outcome != "revoked":
            failures = (*failures, (event.recipient, event.outcome))
        data = evolve(data, outstanding=outstanding, failures=failures)
        if outstanding:
            return step(R.CASCADING, data)
        if not failures:
            return step(R.ANSWERED, data, [Respond(response=json_response(200))])
        body = {"downstream": [{"recipient": r, "error": e} for r, e in failures]}
        return step(R.ANSWERED, data, [Respond(response=json_response(200, body))])
