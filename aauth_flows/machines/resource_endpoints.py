"""The resource's own endpoints: ``authorization_endpoint`` (protocol -11 §5.2) and
``revocation_endpoint`` (§5.8), each a small per-request machine.

Authorization endpoint: ``POST`` signed with a **person token**; body
``{"scope": "...", "account"?: "..."}`` → 200 ``{"resource_token"}`` (minted through
:class:`SignBytes`), 202 ``requirement=interaction`` when the policy wants the resource's
own consent, 400 ``invalid_request`` / ``invalid_scope`` / ``invalid_account``, 401
``requirement=person-token`` without a person token, 401 ``Signature-Error`` for a failing
one.

Revocation endpoint: ``POST`` signed by a **server** (``jwks_uri`` scheme, body covered);
body ``{"jti", "exp"}``; the revoking issuer is the verified signer. Core's
:class:`~aauth_core.requests.RequestVerifier` verifies only the ``jwt`` scheme, so
:func:`verify_server_request` composes core's pieces (``read_signature``, ``select``, the
key resolver, ``verify_selected``) for the ``jwks_uri`` scheme.
"""

from __future__ import annotations

import enum

from attrs import evolve, field, frozen

from aauth_core.errors import (
    AAuthError,
    MalformedInput,
    SignatureErrorCode,
    SignatureFailure,
)
from aauth_core.headers.requirement import Requirement
from aauth_core.http import HttpRequest, HttpResponse
from aauth_core.server_requests import verify_server_request as core_verify_server_request
from aauth_core.strict_json import json_request_body
from aauth_core.tokens.claims import DWK_ACCESS, DWK_PERSON, ResourceTokenClaims
from aauth_core.tokens.verify import KeyResolver
from aauth_flows.machines.actions import Respond, SignatureProduced
from aauth_flows.machines.engine import ConfiguredMachine, Step, handles, require, table
from aauth_flows.machines.resource_actions import OpenPending, RecordRevocation, RequestReceived
from aauth_flows.machines.resource_answers import (
    Randomness,
    challenge,
    error_response,
    forbidden,
    has_signature,
    json_response,
    mint_complete,
    mint_input,
    pending,
    principal_from,
    problem,
    resource_token_claims,
    signature_failure,
    step,
    verify_call,
)
from aauth_flows.machines.resource_config import (
    AgentPrincipal,
    PersonPrincipal,
    Principal,
    ResourceConfig,
    Verdict,
)
from aauth_flows.machines.resource_pending import InteractionData, PendingInteraction, Purpose

__all__ = [
    "open_interaction",
    "verify_server_request",
    "AuthorizationState",
    "AuthorizationData",
    "AuthorizationEndpoint",
    "RevocationState",
    "RevocationData",
    "RevocationEndpoint",
]

MAX_BODY = 64 * 1024
#: Documents of servers whose tokens a resource accepts and that may revoke them here.
REVOKING_DWKS = frozenset({DWK_PERSON, DWK_ACCESS})


def open_interaction(
    config: ResourceConfig,
    principal: Principal,
    purpose: Purpose,
    scope: str | None,
    at: int,
    random: bytes,
    held: HttpRequest | None = None,
) -> tuple[OpenPending, HttpResponse]:
    """A new pending interaction bound to the requesting key, and its 202 answer; ``held``
    is the API call to serve once the person approves."""
    cut = Randomness.of(random)
    location = config.pending_url(cut.pending_id)
    agent = principal if isinstance(principal, AgentPrincipal) else None
    data = InteractionData(
        pending_id=cut.pending_id,
        location=location,
        code=cut.code,
        agent_jkt=principal.key_thumbprint,
        agent_issuer=None if agent is None else agent.issuer,
        agent=None if agent is None else str(agent.agent),
        purpose=purpose,
        scope=scope,
        created_at=at,
        expires_at=at + config.pending_lifetime,
        held=held,
    )
    opened = OpenPending(
        pending_id=cut.pending_id,
        snapshot=PendingInteraction.initial_snapshot(data),
        code=cut.code,
    )
    requirement = Requirement.interaction(config.interaction_url, cut.code)
    return opened, pending(location, config.retry_after, requirement)


# -- authorization endpoint -------------------------------------------------------------------


class AuthorizationState(enum.Enum):
    RECEIVED = "received"
    MINTING = "minting"
    ANSWERED = "answered"
    CHALLENGED = "challenged"
    PENDING = "pending"
    REJECTED = "rejected"
    ERROR = "error"


@frozen(kw_only=True)
class AuthorizationData:
    claims: ResourceTokenClaims | None = None
    to_sign: bytes = field(default=b"", repr=False)


A = AuthorizationState


def _scope_request(request: HttpRequest) -> tuple[str, str | None]:
    document = json_request_body(
        request.headers, request.body, max_size=MAX_BODY, what="authorization request"
    )
    scope = document.get("scope")
    if not isinstance(scope, str) or not scope.split():
        raise MalformedInput("scope is required: a space-separated string")
    account = document.get("account")
    if account is not None and (not isinstance(account, str) or not account):
        raise MalformedInput("account must be a non-empty string")
    return " ".join(scope.split()), account


class AuthorizationEndpoint(
    ConfiguredMachine[AuthorizationState, AuthorizationData, ResourceConfig]
):
    """One ``POST {authorization_endpoint}`` (§5.2)."""

    State = AuthorizationState
    INITIAL = AuthorizationState.RECEIVED
    DATA = AuthorizationData
    TRANSITIONS = table(
        [
            (A.RECEIVED, RequestReceived, {A.MINTING, A.CHALLENGED, A.PENDING, A.REJECTED}),
            (A.MINTING, SignatureProduced, {A.ANSWERED}),
        ]
    )

    @staticmethod
    def _answer(
        state: AuthorizationState, data: AuthorizationData, response: HttpResponse
    ) -> Step[AuthorizationState, AuthorizationData]:
        return step(state=state, data=data, actions=[Respond(response=response)])

    @handles(RequestReceived)
    def _received(
        self, state: AuthorizationState, data: AuthorizationData, event: RequestReceived
    ) -> Step[AuthorizationState, AuthorizationData]:
        config = self._config
        request = event.request
        if request.method.upper() != "POST":
            return self._answer(A.REJECTED, data, problem(405, "invalid_request", "use POST"))
        if not has_signature(request):
            return self._answer(A.CHALLENGED, data, challenge(Requirement.person_token()))
        verified = verify_call(config, request, event.at)
        if isinstance(verified, HttpResponse):
            return self._answer(A.REJECTED, data, verified)
        principal = principal_from(verified)
        if not isinstance(principal, PersonPrincipal):
            return self._answer(A.CHALLENGED, data, challenge(Requirement.person_token()))
        try:
            scope, account = _scope_request(request)
        except MalformedInput as exc:
            return self._answer(A.REJECTED, data, error_response(exc))
        unknown = set(scope.split()) - config.scope_descriptions
        if unknown:
            detail = f"unknown scope {sorted(unknown)[0][:60]!r}"
            return self._answer(A.REJECTED, data, problem(400, "invalid_scope", detail))
        decision = config.policy.authorize(principal, scope, account)
        if decision.verdict is Verdict.INVALID_ACCOUNT:
            detail = "the person holds no such account"
            return self._answer(A.REJECTED, data, problem(400, "invalid_account", detail))
        if decision.verdict is Verdict.REQUIRE_INTERACTION:
            opened, answer = open_interaction(
                config, principal, Purpose.AUTHORIZATION, scope, event.at, event.random
            )
            return step(state=A.PENDING, data=data, actions=[opened, Respond(response=answer)])
        if decision.verdict is not Verdict.ALLOW:
            return self._answer(A.REJECTED, data, forbidden(decision.detail or "denied by policy"))
        if config.revocations.is_revoked(principal.issuer, principal.jti):
            error = SignatureFailure(
                "the token has been revoked", code=SignatureErrorCode.REVOKED_JWT
            )
            return self._answer(
                A.REJECTED, data, signature_failure(error, Requirement.person_token())
            )
        claims = resource_token_claims(
            config,
            principal,
            scope=scope,
            account=account,
            at=event.at,
            jti=Randomness.of(event.random).jti,
        )
        to_sign, action = mint_input(config, claims)
        return step(
            state=A.MINTING, data=evolve(data, claims=claims, to_sign=to_sign), actions=[action]
        )

    @handles(SignatureProduced)
    def _signed(
        self, state: AuthorizationState, data: AuthorizationData, event: SignatureProduced
    ) -> Step[AuthorizationState, AuthorizationData]:
        claims = require(data.claims, "the claims being minted")  # MINTING is entered with them
        token = mint_complete(self._config, claims, data.to_sign, event.signature)
        answer = json_response(200, {"resource_token": token}, {"Cache-Control": "no-store"})
        return self._answer(A.ANSWERED, evolve(data, to_sign=b""), answer)


# -- revocation endpoint ----------------------------------------------------------------------


def verify_server_request(
    request: HttpRequest,
    *,
    keys: KeyResolver,
    now: int,
    window: int,
    dwks: frozenset[str] = REVOKING_DWKS,
) -> str:
    """Verify a request a server signed in its own right (``jwks_uri`` scheme, body
    covered); return the signer's issuer. Failures are :class:`SignatureFailure`."""
    return core_verify_server_request(request, keys=keys, dwks=dwks, now=now, window=window).issuer


class RevocationState(enum.Enum):
    RECEIVED = "received"
    RECORDED = "recorded"
    REJECTED = "rejected"
    ERROR = "error"


@frozen(kw_only=True)
class RevocationData:
    iss: str | None = None
    jti: str | None = None


R = RevocationState


def _revocation_body(request: HttpRequest) -> tuple[str, int]:
    document = json_request_body(
        request.headers, request.body, max_size=MAX_BODY, what="revocation request"
    )
    jti = document.get("jti")
    exp = document.get("exp")
    if not isinstance(jti, str) or not jti or len(jti) > 4096:
        raise MalformedInput("jti is required: a non-empty string")
    if type(exp) is not int or exp < 0:
        raise MalformedInput("exp is required: a NumericDate")
    return jti, exp


class RevocationEndpoint(ConfiguredMachine[RevocationState, RevocationData, ResourceConfig]):
    """One ``POST {revocation_endpoint}`` (§5.8). Idempotent: a second revocation of the
    same ``(iss, jti)`` answers 200 and records nothing."""

    State = RevocationState
    INITIAL = RevocationState.RECEIVED
    DATA = RevocationData
    TRANSITIONS = table([(R.RECEIVED, RequestReceived, {R.RECORDED, R.REJECTED})])

    @handles(RequestReceived)
    def _received(
        self, state: RevocationState, data: RevocationData, event: RequestReceived
    ) -> Step[RevocationState, RevocationData]:
        config = self._config
        request = event.request

        def reject(response: HttpResponse) -> Step[RevocationState, RevocationData]:
            return step(state=R.REJECTED, data=data, actions=[Respond(response=response)])

        if request.method.upper() != "POST":
            return reject(problem(405, "invalid_request", "use POST"))
        keys = config.server_keys if config.server_keys is not None else config.keys
        try:
            issuer = verify_server_request(request, keys=keys, now=event.at, window=config.window)
        except SignatureFailure as exc:
            return reject(signature_failure(exc))
        except AAuthError as exc:
            return reject(error_response(exc))
        try:
            jti, exp = _revocation_body(request)
        except MalformedInput as exc:
            return reject(error_response(exc))
        allowed = config.revocation_issuers
        if allowed is not None and issuer not in allowed:
            return reject(
                problem(403, "unsupported_iss", "revocations from this issuer are not accepted")
            )
        recorded = RevocationData(iss=issuer, jti=jti)
        answer = Respond(response=HttpResponse(status=200))
        if config.revocations.is_revoked(issuer, jti):
            return step(state=R.RECORDED, data=recorded, actions=[answer])
        record = RecordRevocation(iss=issuer, jti=jti, exp=exp)
        return step(state=R.RECORDED, data=recorded, actions=[record, answer])
