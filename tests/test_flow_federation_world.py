"""A four-party world for the federation tests: real keys, real tokens minted with core
functions, the PS's federation client and the AS's machines wired together in memory by
a small driver (SignBytes → JwkSigner, SendRequest → the other machine, Respond →
ResponseReceived). The AS's pending records live as JSON snapshots keyed by URL, as a
real AS would keep them."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from attrs import evolve
from signing_helpers import JwkSigner, generated_ed25519

from aauth_core.http import HttpRequest, HttpResponse
from aauth_core.identifiers import AgentId
from aauth_core.tokens import (
    DWK_ACCESS,
    DWK_AGENT,
    DWK_PERSON,
    DWK_RESOURCE,
    AgentTokenClaims,
    AuthTokenClaims,
    Confirmation,
    PersonTokenClaims,
    ResourceTokenClaims,
    StaticKeyResolver,
    mint_token,
)
from aauth_flows.machines.access_server import (
    AuthTokenExchange,
    PendingRequestReceived,
    TokenRequestReceived,
)
from aauth_flows.machines.actions import (
    Fail,
    Respond,
    ResponseReceived,
    SendRequest,
    SignatureProduced,
    SignBytes,
    TimerFired,
    Wait,
)
from aauth_flows.machines.as_policy import (
    AccessServerConfig,
    Decision,
    Grant,
    InMemoryAccessServerStore,
    PolicyRequest,
    StaticPersonServers,
)
from aauth_flows.machines.engine import Action, Snapshot
from aauth_flows.machines.federation import (
    AccessServerEndpoint,
    FederationClient,
    FederationClientConfig,
    Pay,
    PaymentSettled,
    StartFederation,
    StaticClaims,
    ToPersonServer,
)
from aauth_flows.machines.federation_api import FederationRequest
from aauth_flows.machines.signing import SigningKey

PS = "https://ps.example"
AS = "https://as.example"
AP = "https://agent.example"
RS = "https://resource.example"
ENDPOINT = f"{AS}/token"
PENDING = f"{AS}/pending"
NOW = 1_800_000_000
AGENT_ID = AgentId.parse("aauth:assistant@agent.example")
SUB = "person-directed-7"

SIGNERS: dict[str, JwkSigner] = {
    name: generated_ed25519() for name in ("ps", "as", "ap", "rs", "agent", "sub", "other")
}
KEYS = {
    name: SigningKey(ref=f"software:{name}", public_jwk=s.public_jwk())
    for name, s in SIGNERS.items()
}
BY_REF = {key.ref: SIGNERS[name] for name, key in KEYS.items()}

RESOLVER = StaticKeyResolver(
    {
        (PS, DWK_PERSON): (KEYS["ps"].public_jwk,),
        (AS, DWK_ACCESS): (KEYS["as"].public_jwk,),
        (AP, DWK_AGENT): (KEYS["ap"].public_jwk,),
        (RS, DWK_RESOURCE): (KEYS["rs"].public_jwk,),
        ("https://other-ps.example", DWK_PERSON): (KEYS["other"].public_jwk,),
    }
)
_jti = itertools.count(1)


def jti(prefix: str) -> str:
    return f"{prefix}-{next(_jti)}"


def agent_claims(**over: Any) -> AgentTokenClaims:
    base = AgentTokenClaims(
        iss=AP,
        dwk=DWK_AGENT,
        jti=jti("agent"),
        iat=NOW - 10,
        exp=NOW + 3600,
        sub=AGENT_ID,
        cnf=Confirmation(jwk=KEYS["agent"].public_jwk),
        ps=PS,
    )
    return evolve(base, **over)


def subagent_claims(**over: Any) -> AgentTokenClaims:
    return agent_claims(
        sub=AGENT_ID.subagent("search1"),
        parent_agent=AGENT_ID,
        cnf=Confirmation(jwk=KEYS["sub"].public_jwk),
        **over,
    )


def person_claims(**over: Any) -> PersonTokenClaims:
    base = PersonTokenClaims(
        iss=PS,
        dwk=DWK_PERSON,
        jti=jti("pt"),
        iat=NOW - 10,
        exp=NOW + 1800,
        aud=RS,
        sub=SUB,
        cnf=Confirmation(jwk=KEYS["agent"].public_jwk),
    )
    return evolve(base, **over)


def resource_claims(presented_jti: str, **over: Any) -> ResourceTokenClaims:
    base = ResourceTokenClaims(
        iss=RS,
        dwk=DWK_RESOURCE,
        jti=jti("rt"),
        iat=NOW - 5,
        exp=NOW + 290,
        aud=AS,
        ps=PS,
        sub=SUB,
        presented_jti=presented_jti,
        agent_jkt=KEYS["agent"].public_jwk.thumbprint(),
        scope="data.read data.write",
    )
    return evolve(base, **over)


def auth_claims(**over: Any) -> AuthTokenClaims:
    base = AuthTokenClaims(
        iss=AS,
        dwk=DWK_ACCESS,
        jti=jti("at"),
        iat=NOW,
        exp=NOW + 600,
        aud=RS,
        ps=PS,
        sub=SUB,
        cnf=Confirmation(jwk=KEYS["agent"].public_jwk),
        scope="data.read",
    )
    return evolve(base, **over)


def mint(claims: Any, signer: str) -> str:
    return mint_token(claims, SIGNERS[signer])


def federation_request(
    *,
    agent: AgentTokenClaims | None = None,
    person: PersonTokenClaims | None = None,
    resource: Callable[[str], ResourceTokenClaims] | None = None,
    subagent: AgentTokenClaims | None = None,
    upstream: str | None = None,
    signers: dict[str, str] | None = None,
) -> FederationRequest:
    who = {"agent": "ap", "person": "ps", "resource": "rs", "subagent": "ap"} | (signers or {})
    person = person or person_claims()
    rt = resource(person.jti) if resource else resource_claims(person.jti)
    return FederationRequest(
        access_server=AS,
        resource_token=mint(rt, who["resource"]),
        agent_token=mint(agent or agent_claims(), who["agent"]),
        presented_token=mint(person, who["person"]),
        subagent_token=None if subagent is None else mint(subagent, who["subagent"]),
        upstream_token=upstream,
    )


class ScriptedPolicy:
    """Answers from a script (one decision per call, the last one repeating); records
    what it was asked."""

    def __init__(self, *decisions: Decision) -> None:
        self.decisions = list(decisions) or [Grant()]
        self.asked: list[PolicyRequest] = []

    def decide(self, request: PolicyRequest) -> Decision:
        self.asked.append(request)
        if len(self.decisions) > 1:
            return self.decisions.pop(0)
        return self.decisions[0]


def as_config(policy: Any, store: InMemoryAccessServerStore, **over: Any) -> AccessServerConfig:
    values: dict[str, Any] = {
        "issuer": AS,
        "signing_key": KEYS["as"],
        "pending_base": PENDING,
        "keys": RESOLVER,
        "person_servers": StaticPersonServers(frozenset({PS})),
        "policy": policy,
        "revocations": store,
        "issued": store,
        "known_resources": frozenset({RS}),
    }
    values.update(over)
    return AccessServerConfig(**values)


def client_config(**over: Any) -> FederationClientConfig:
    values: dict[str, Any] = {
        "issuer": PS,
        "signing_key": KEYS["ps"],
        "as_keys": RESOLVER,
        "claims": StaticClaims({(RS, SUB): {"email": "p@example.com", "sub": "leak"}}),
    }
    values.update(over)
    return FederationClientConfig(**values)


def sign(action: SignBytes) -> SignatureProduced:
    return SignatureProduced(signature=BY_REF[action.key].sign(action.data))


class World:
    """The driver: runs the federation client against the AS machines."""

    def __init__(
        self,
        policy: Any = None,
        *,
        client: FederationClient | None = None,
        as_over: dict[str, Any] | None = None,
        tamper: Callable[[HttpResponse], HttpResponse] | None = None,
        on_progress: Callable[[Any], None] | None = None,
        on_pay: Callable[[Pay], None] | None = None,
    ) -> None:
        self.policy = policy if policy is not None else ScriptedPolicy()
        self.store = InMemoryAccessServerStore()
        self.config = as_config(self.policy, self.store, **(as_over or {}))
        self.client = client or FederationClient(config=client_config())
        self.pending: dict[str, str] = {}  # pending URL -> AS snapshot JSON
        self.clock = NOW
        self.to_ps: list[Any] = []
        self.failures: list[Fail] = []
        self.sent: list[HttpRequest] = []
        self.answers: list[HttpResponse] = []
        self.tamper = tamper
        self.on_progress = on_progress
        self.on_pay = on_pay
        self.nonce = itertools.count(1)
        self.hold_waits = False  # set by a test: stop at the next Wait (the PS must act)
        self.held: list[Wait] = []

    def start(
        self, request: FederationRequest, *, endpoint: str = ENDPOINT, issuer: str = AS
    ) -> None:
        event = StartFederation(
            request=request,
            access_server=AccessServerEndpoint(issuer=issuer, auth_token_endpoint=endpoint),
            at=self.clock,
        )
        self.run(self.client.handle(event))

    def _nonce(self) -> bytes:
        return next(self.nonce).to_bytes(4, "big") * 8

    def serve(self, request: HttpRequest) -> HttpResponse:
        """The AS side: a new exchange for the endpoint, a restored one for a pending URL."""
        if request.url == ENDPOINT:
            machine = AuthTokenExchange(config=self.config)
            actions = machine.handle(
                TokenRequestReceived(request=request, at=self.clock, nonce=self._nonce())
            )
        elif request.url in self.pending:
            snap = Snapshot.from_json(self.pending[request.url])
            machine = AuthTokenExchange.restore(snap, config=self.config)
            actions = machine.handle(
                PendingRequestReceived(request=request, at=self.clock, nonce=self._nonce())
            )
        else:
            return HttpResponse(status=404)
        response = self._as_actions(machine, actions)
        if machine.data.pending_url is not None:
            self.pending[machine.data.pending_url] = machine.snapshot().to_json()
        return response

    def _as_actions(self, machine: AuthTokenExchange, actions: list[Action]) -> HttpResponse:
        queue = list(actions)
        while queue:
            action = queue.pop(0)
            if isinstance(action, SignBytes):
                queue.extend(machine.handle(sign(action)))
            elif isinstance(action, Respond):
                return action.response
            else:
                assert self.store.apply(action), action
        raise AssertionError("the AS did not answer")

    def run(self, actions: list[Action]) -> None:
        queue = list(actions)
        while queue:
            action = queue.pop(0)
            if isinstance(action, SignBytes):
                queue.extend(self.client.handle(sign(action)))
            elif isinstance(action, SendRequest):
                self.sent.append(action.request)
                response = self.serve(action.request)
                if self.tamper is not None:
                    response = self.tamper(response)
                self.answers.append(response)
                queue.extend(self.client.handle(ResponseReceived(response=response, at=self.clock)))
            elif isinstance(action, Wait) and self.hold_waits:
                self.held.append(action)
            elif isinstance(action, Wait):
                self.clock += action.seconds
                queue.extend(self.client.handle(TimerFired(at=self.clock)))
            elif isinstance(action, ToPersonServer):
                self.to_ps.append(action.event)
                if self.on_progress is not None:
                    self.on_progress(action.event)
            elif isinstance(action, Pay):
                if self.on_pay is not None:
                    self.on_pay(action)
                queue.extend(self.client.handle(PaymentSettled(at=self.clock)))
            elif isinstance(action, Fail):
                self.failures.append(action)
            else:  # pragma: no cover - the client emits nothing else
                raise AssertionError(action)
