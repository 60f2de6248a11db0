"""The resource side of a protected API call (protocol -11 §5.1, §6.1-§6.5).

One :class:`ResourceCall` per request::

    RECEIVED ─┬─ unsigned / wrong kind of token ─────────► CHALLENGED (401 AAuth-Requirement)
              ├─ signature or token fails ───────────────► REJECTED   (401 Signature-Error)
              ├─ policy denies / no route ───────────────► REJECTED   (403 / 404, no signature headers)
              ├─ resource-managed, no session ───────────► PENDING    (202 interaction, OpenPending)
              ├─ person token where authorization is needed,
              │  or an auth token short of scope (step-up) ► MINTING ─SignatureProduced─►
              │                         CHALLENGED (401 auth-token) | PENDING (202, deferred delivery)
              └─ allowed ──► SERVING (Serve action) ──Served──► SERVED (+ AAuth-Access rotation)

Serving is an action: the host application gets a :class:`Serve` with the verified
principal (:class:`AgentPrincipal`, :class:`PersonPrincipal` or :class:`AuthorizedPrincipal`)
and answers with :class:`Served`; the machine then adds a rotated session token when the
session is near expiry. Resource tokens are minted only for a verified person or auth token
that is not revoked, through a :class:`SignBytes` action.

The pending machines (:mod:`.resource_pending`, :mod:`.resource_deferred`) and the
endpoints (:mod:`.resource_endpoints`) are re-exported here.
"""

from __future__ import annotations

import enum
from urllib.parse import urlsplit

from attrs import evolve, field, frozen

from aauth_core.errors import SignatureErrorCode, TokenError
from aauth_core.headers.access import AAUTH_ACCESS
from aauth_core.headers.requirement import Requirement
from aauth_core.http import HttpResponse
from aauth_core.tokens.claims import ResourceTokenClaims
from aauth_flows.machines.actions import Respond, SignatureProduced
from aauth_flows.machines.engine import (
    Action,
    ConfiguredMachine,
    Step,
    handles,
    require,
    table,
)
from aauth_flows.machines.resource_actions import (
    CodePresented,
    OpenPending,
    RecordRevocation,
    RecordSession,
    RequestReceived,
    Serve,
    Served,
    ShowConsent,
    UserAbandoned,
    UserDecided,
)
from aauth_flows.machines.resource_answers import (
    Randomness,
    challenge,
    forbidden,
    has_signature,
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
    RANDOM_BYTES,
    AccessMode,
    AgentPrincipal,
    AllowAll,
    AuthorizedPrincipal,
    Decision,
    PersonPrincipal,
    Policy,
    Principal,
    ResourceConfig,
    RevocationLookup,
    Route,
    SessionLookup,
    SessionRecord,
    Verdict,
)
from aauth_flows.machines.resource_deferred import DeferredData, DeferredDelivery, DeferredState
from aauth_flows.machines.resource_endpoints import (
    AuthorizationData,
    AuthorizationEndpoint,
    AuthorizationState,
    RevocationData,
    RevocationEndpoint,
    RevocationState,
    open_interaction,
    verify_server_request,
)
from aauth_flows.machines.resource_memory import MemoryResourceStore
from aauth_flows.machines.resource_pending import (
    InteractionData,
    PendingInteraction,
    PendingState,
    Purpose,
)
from aauth_flows.machines.resource_session import (
    SessionGrant,
    rotate_if_due,
    session_digest,
    session_for,
)

__all__ = [
    # the call machine
    "CallState",
    "CallData",
    "MintFor",
    "ResourceCall",
    # configuration and principals
    "AccessMode",
    "Route",
    "Verdict",
    "Decision",
    "Policy",
    "AllowAll",
    "RevocationLookup",
    "SessionLookup",
    "SessionRecord",
    "ResourceConfig",
    "AgentPrincipal",
    "PersonPrincipal",
    "AuthorizedPrincipal",
    "Principal",
    "RANDOM_BYTES",
    # events and actions
    "RequestReceived",
    "Served",
    "CodePresented",
    "UserDecided",
    "UserAbandoned",
    "Serve",
    "ShowConsent",
    "RecordRevocation",
    "RecordSession",
    "OpenPending",
    # pending machines, endpoints, sessions, memory stores
    "PendingInteraction",
    "PendingState",
    "InteractionData",
    "Purpose",
    "DeferredDelivery",
    "DeferredState",
    "DeferredData",
    "AuthorizationEndpoint",
    "AuthorizationState",
    "AuthorizationData",
    "RevocationEndpoint",
    "RevocationState",
    "RevocationData",
    "verify_server_request",
    "session_digest",
    "MemoryResourceStore",
]


class CallState(enum.Enum):
    RECEIVED = "received"
    MINTING = "minting"
    SERVING = "serving"
    SERVED = "served"
    CHALLENGED = "challenged"
    PENDING = "pending"
    REJECTED = "rejected"  # the request was refused (the server-side FAILED)
    ERROR = "error"


class MintFor(enum.StrEnum):
    CHALLENGE = "challenge"  # 401 requirement=auth-token
    DEFERRED = "deferred"  # 202 requirement=auth-token, the invocation held


@frozen(kw_only=True)
class CallData:
    request_at: int = 0
    random: bytes = field(default=b"", repr=False)
    claims: ResourceTokenClaims | None = None
    to_sign: bytes = field(default=b"", repr=False)
    mint_for: MintFor = MintFor.CHALLENGE
    held: RequestReceived | None = field(default=None, repr=False)
    rotation: SessionGrant | None = field(default=None, repr=False)


C = CallState


def _path(url: str) -> str:
    return urlsplit(url).path or "/"


class ResourceCall(ConfiguredMachine[CallState, CallData, ResourceConfig]):
    """One protected API call at the resource."""

    State = CallState
    INITIAL = CallState.RECEIVED
    DATA = CallData
    TRANSITIONS = table(
        [
            (
                C.RECEIVED,
                RequestReceived,
                {C.MINTING, C.SERVING, C.CHALLENGED, C.PENDING, C.REJECTED},
            ),
            (C.MINTING, SignatureProduced, {C.CHALLENGED, C.PENDING}),
            (C.SERVING, Served, {C.SERVED}),
        ]
    )

    # -- a request ---------------------------------------------------------------------------

    @handles(RequestReceived)
    def _received(
        self, state: CallState, data: CallData, event: RequestReceived
    ) -> Step[CallState, CallData]:
        config = self._config
        request = event.request
        data = CallData(request_at=event.at, random=event.random)
        route = config.route_for(request.method, _path(request.url))
        if route is None:
            return self._reject(data, problem(404, "not_found", "no such resource"))
        if not has_signature(request):
            return self._challenge(data, _base_requirement(route.mode))
        verified = verify_call(config, request, event.at)
        if isinstance(verified, HttpResponse):
            return self._reject(data, verified)
        principal = principal_from(verified)
        if isinstance(principal, AgentPrincipal):
            session = session_for(
                config, request, key_thumbprint=principal.key_thumbprint, at=event.at
            )
            principal = evolve(principal, session=session)
        by_mode = self._by_mode(route, principal, data, event)
        if by_mode is not None:
            return by_mode
        decision = config.policy.decide(principal, route, request)
        return self._apply(decision, route, principal, data, event)

    def _by_mode(
        self, route: Route, principal: Principal, data: CallData, event: RequestReceived
    ) -> Step[CallState, CallData] | None:
        mode = route.mode
        if mode in (AccessMode.AGENT, AccessMode.RESOURCE_MANAGED):
            if not isinstance(principal, AgentPrincipal):
                return self._challenge(data, Requirement.agent_token())
            if mode is AccessMode.RESOURCE_MANAGED and principal.session is None:
                # no session, or an invalid one: (re-)challenge with the resource's own flow
                return self._interaction(data, principal, route.scope, event)
            return None
        if isinstance(principal, AgentPrincipal):
            return self._challenge(data, Requirement.person_token())
        if mode is AccessMode.AUTHORIZATION:
            if isinstance(principal, PersonPrincipal):
                mint_for = MintFor.DEFERRED if route.deferred else MintFor.CHALLENGE
                return self._mint(data, principal, route.scope, mint_for, event)
            if not route.scopes <= principal.scopes:
                # step-up: a new resource token naming this auth token
                return self._mint(data, principal, route.scope, MintFor.CHALLENGE, event)
        return None

    def _apply(
        self,
        decision: Decision,
        route: Route,
        principal: Principal,
        data: CallData,
        event: RequestReceived,
    ) -> Step[CallState, CallData]:
        verdict = decision.verdict
        if verdict is Verdict.ALLOW:
            return self._serve(data, principal, event)
        if verdict in (Verdict.REQUIRE_PERSON, Verdict.REQUIRE_AUTH) and isinstance(
            principal, AgentPrincipal
        ):
            return self._challenge(data, Requirement.person_token())
        if verdict is Verdict.REQUIRE_AUTH and not isinstance(principal, AgentPrincipal):
            scope = decision.scope if decision.scope is not None else route.scope
            return self._mint(data, principal, scope, MintFor.CHALLENGE, event)
        if verdict is Verdict.REQUIRE_INTERACTION:
            scope = decision.scope if decision.scope is not None else route.scope
            return self._interaction(data, principal, scope, event)
        return self._reject(data, forbidden(decision.detail or "denied by policy"))

    # -- outcomes ----------------------------------------------------------------------------

    @staticmethod
    def _reject(data: CallData, response: HttpResponse) -> Step[CallState, CallData]:
        return step(state=C.REJECTED, data=data, actions=[Respond(response=response)])

    @staticmethod
    def _challenge(data: CallData, requirement: Requirement) -> Step[CallState, CallData]:
        return step(
            state=C.CHALLENGED, data=data, actions=[Respond(response=challenge(requirement))]
        )

    def _serve(
        self, data: CallData, principal: Principal, event: RequestReceived
    ) -> Step[CallState, CallData]:
        rotation = None
        if isinstance(principal, AgentPrincipal) and principal.session is not None:
            token = Randomness.of(event.random).session_token
            rotation = rotate_if_due(self._config, principal.session, token=token, at=event.at)
        return step(
            state=C.SERVING,
            data=evolve(data, rotation=rotation),
            actions=[Serve(principal=principal, request=event.request)],
        )

    def _interaction(
        self, data: CallData, principal: Principal, scope: str | None, event: RequestReceived
    ) -> Step[CallState, CallData]:
        opened, answer = open_interaction(
            self._config,
            principal,
            Purpose.SESSION,
            scope,
            event.at,
            event.random,
            held=event.request,
        )
        return step(state=C.PENDING, data=data, actions=[opened, Respond(response=answer)])

    def _mint(
        self,
        data: CallData,
        presented: PersonPrincipal | AuthorizedPrincipal,
        scope: str | None,
        mint_for: MintFor,
        event: RequestReceived,
    ) -> Step[CallState, CallData]:
        config = self._config
        if config.revocations.is_revoked(presented.issuer, presented.jti):
            # never a resource token naming a revoked token (the verifier already refuses it;
            # this holds even for a verifier configured without the lookup)
            error = TokenError("the token has been revoked", code=SignatureErrorCode.REVOKED_JWT)
            return self._reject(data, signature_failure(error, Requirement.person_token()))
        claims = resource_token_claims(
            config, presented, scope=scope, at=event.at, jti=Randomness.of(event.random).jti
        )
        to_sign, action = mint_input(config, claims)
        held = event if mint_for is MintFor.DEFERRED else None
        minting = evolve(data, claims=claims, to_sign=to_sign, mint_for=mint_for, held=held)
        return step(state=C.MINTING, data=minting, actions=[action])

    # -- the resource token is signed ----------------------------------------------------------

    @handles(SignatureProduced)
    def _signed(
        self, state: CallState, data: CallData, event: SignatureProduced
    ) -> Step[CallState, CallData]:
        config = self._config
        claims = require(data.claims, "the claims being minted")  # MINTING is entered with them
        token = mint_complete(config, claims, data.to_sign, event.signature)
        requirement = Requirement.auth_token(token)
        if data.mint_for is MintFor.CHALLENGE or data.held is None:
            return self._challenge(evolve(data, to_sign=b""), requirement)
        held = data.held
        pending_id = Randomness.of(data.random).pending_id
        location = config.pending_url(pending_id)
        deferred = DeferredData(
            pending_id=pending_id,
            location=location,
            held=held.request,
            resource_token=token,
            ps=claims.ps,
            sub=claims.sub,
            agent_jkt=claims.agent_jkt,
            scope=claims.scope,
            created_at=held.at,
            expires_at=held.at + config.pending_lifetime,
        )
        opened = OpenPending(
            pending_id=pending_id, snapshot=DeferredDelivery.initial_snapshot(deferred)
        )
        answer = pending(location, config.retry_after, requirement)
        return step(
            state=C.PENDING,
            data=evolve(data, to_sign=b"", held=None),
            actions=[opened, Respond(response=answer)],
        )

    # -- the host served it ----------------------------------------------------------------------

    @handles(Served)
    def _served(self, state: CallState, data: CallData, event: Served) -> Step[CallState, CallData]:
        response = event.response
        actions: list[Action] = []
        if data.rotation is not None:
            response = evolve(
                response, headers=response.headers.with_fields({AAUTH_ACCESS: data.rotation.token})
            )
            actions.append(data.rotation.action)
        actions.append(Respond(response=response))
        return step(state=C.SERVED, data=evolve(data, rotation=None), actions=actions)


def _base_requirement(mode: AccessMode) -> Requirement:
    """What an unsigned request is asked for: the first credential the mode needs."""
    if mode in (AccessMode.AGENT, AccessMode.RESOURCE_MANAGED):
        return Requirement.agent_token()
    return Requirement.person_token()
