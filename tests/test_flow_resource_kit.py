"""Shared fixtures of the resource-machine tests (no tests here): real keys, real tokens
minted with core, agent requests signed with core, and an in-memory driver that runs the
resource machines against :class:`MemoryResourceStore`."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from signing_helpers import JwkSigner, generated_ed25519

from aauth_core.headers.requirement import Requirement
from aauth_core.http import HttpRequest, HttpResponse
from aauth_core.httpsig import sign_request
from aauth_core.identifiers import AgentId
from aauth_core.requests import sign_aauth_request
from aauth_core.signature_key import serialize_jwks_uri_scheme
from aauth_core.tokens import (
    DWK_ACCESS,
    DWK_AGENT,
    DWK_PERSON,
    DWK_RESOURCE,
    AgentTokenClaims,
    AuthTokenClaims,
    Confirmation,
    PersonTokenClaims,
    StaticKeyResolver,
    mint_token,
)
from aauth_core.tokens.verify import verify_resource_token
from aauth_flows.machines import Respond, SignatureProduced, SignBytes, SigningKey, TimerFired
from aauth_flows.machines.engine import Event, Machine
from aauth_flows.machines.resource import (
    RANDOM_BYTES,
    AllowAll,
    AuthorizationEndpoint,
    CodePresented,
    DeferredDelivery,
    MemoryResourceStore,
    PendingInteraction,
    Policy,
    RequestReceived,
    ResourceCall,
    ResourceConfig,
    RevocationEndpoint,
    Route,
    Serve,
    Served,
    ShowConsent,
    UserDecided,
)

AP = "https://agent.example"
PS = "https://ps.example"
AS = "https://as.example"
RS = "https://resource.example"
NOW = 1_800_000_000
MISSION = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"

AGENT = generated_ed25519()
OTHER = generated_ed25519()
AP_KEY = generated_ed25519()
PS_KEY = generated_ed25519()
AS_KEY = generated_ed25519()
RS_KEY = generated_ed25519()
KEYS = StaticKeyResolver(
    {
        (AP, DWK_AGENT): (AP_KEY.public_jwk(),),
        (PS, DWK_PERSON): (PS_KEY.public_jwk(),),
        (AS, DWK_ACCESS): (AS_KEY.public_jwk(),),
    }
)
RS_KEYS = StaticKeyResolver({(RS, DWK_RESOURCE): (RS_KEY.public_jwk(),)})
AGENT_ID = "aauth:assistant@agent.example"


def random_bytes() -> bytes:
    return os.urandom(RANDOM_BYTES)


def agent_token(*, key: JwkSigner = AGENT, exp: int = NOW + 3600, jti: str = "a-1") -> str:
    return mint_token(
        AgentTokenClaims(
            iss=AP,
            dwk=DWK_AGENT,
            jti=jti,
            iat=NOW - 10,
            exp=exp,
            sub=AgentId.parse(AGENT_ID),
            cnf=Confirmation(jwk=key.public_jwk()),
            ps=PS,
        ),
        AP_KEY,
    )


def person_token(
    *,
    jti: str = "pt-1",
    aud: str = RS,
    key: JwkSigner = AGENT,
    sub: str = "person-7",
    mission_s256: str | None = MISSION,
    tenant: str | None = "acme",
    iat: int = NOW - 10,
    exp: int = NOW + 1800,
) -> str:
    return mint_token(
        PersonTokenClaims(
            iss=PS,
            dwk=DWK_PERSON,
            jti=jti,
            iat=iat,
            exp=exp,
            aud=aud,
            sub=sub,
            cnf=Confirmation(jwk=key.public_jwk()),
            mission_s256=mission_s256,
            tenant=tenant,
        ),
        PS_KEY,
    )


def auth_token(
    *,
    jti: str = "at-1",
    scope: str | None = "data.read",
    iss: str = PS,
    aud: str = RS,
    key: JwkSigner = AGENT,
    sub: str = "person-7",
    account: str | None = None,
    exp: int = NOW + 1800,
) -> str:
    issuer_key = PS_KEY if iss == PS else AS_KEY
    return mint_token(
        AuthTokenClaims(
            iss=iss,
            dwk=DWK_PERSON if iss == PS else DWK_ACCESS,
            jti=jti,
            iat=NOW - 10,
            exp=exp,
            aud=aud,
            ps=PS,
            sub=sub,
            cnf=Confirmation(jwk=key.public_jwk()),
            scope=scope,
            account=account,
            mission_s256=MISSION,
        ),
        issuer_key,
    )


def signed(
    token: str,
    *,
    method: str = "GET",
    url: str = RS + "/data",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    created: int = NOW,
    signer: JwkSigner = AGENT,
    **kwargs: Any,
) -> HttpRequest:
    request = HttpRequest(method=method, url=url, headers=headers or {}, body=body)
    added = sign_aauth_request(request, signer, token=token, created=created, **kwargs)
    return HttpRequest(
        method=method, url=url, headers=request.headers.with_fields(added), body=body
    )


def server_signed(
    body: dict[str, Any] | bytes,
    *,
    issuer: str = PS,
    dwk: str = DWK_PERSON,
    signer: JwkSigner = PS_KEY,
    created: int = NOW,
    covered: tuple[str, ...] = (
        "@method",
        "@authority",
        "@path",
        "content-type",
        "content-digest",
        "signature-key",
    ),
) -> HttpRequest:
    """A revocation request a server signs in its own right (``jwks_uri`` scheme)."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = HttpRequest(
        method="POST",
        url=RS + "/revoke",
        headers={"Content-Type": "application/json"},
        body=raw,
    )
    key = serialize_jwks_uri_scheme("sig", id=issuer, dwk=dwk, kid=signer.key_id)
    added = sign_request(
        request, signer, covered=covered, created=created, extra_headers={"Signature-Key": key}
    )
    return HttpRequest(
        method="POST",
        url=request.url,
        headers=request.headers.with_fields({"Signature-Key": key, **added}),
        body=raw,
    )


def requirement_of(response: HttpResponse) -> Requirement:
    raw = response.headers.get("aauth-requirement")
    assert raw is not None, response
    return Requirement.parse(raw)


def body_of(response: HttpResponse) -> Any:
    return json.loads(response.body)


def verified_resource_token(token: str, *, audience: str = PS, now: int = NOW) -> Any:
    return verify_resource_token(token, keys=RS_KEYS, now=now, audience=audience).claims


ROUTES = (
    Route(path="/agent", mode="agent"),
    Route(path="/managed", mode="resource-managed", scope="notes"),
    Route(path="/person", mode="person"),
    Route(path="/data", mode="authorization", scope="data.read"),
    Route(path="/write", mode="authorization", scope="data.write"),
    Route(path="/held", mode="authorization", scope="data.read", deferred=True),
)

PENDING_MACHINES: dict[str, type[Machine[Any, Any]]] = {
    "PendingInteraction": PendingInteraction,
    "DeferredDelivery": DeferredDelivery,
}

Handler = Callable[[Serve], HttpResponse]


def default_handler(serve: Serve) -> HttpResponse:
    return HttpResponse(
        status=200, body=b'{"ok":true}', headers={"Content-Type": "application/json"}
    )


def make_config(store: MemoryResourceStore, **overrides: Any) -> ResourceConfig:
    values: dict[str, Any] = {
        "issuer": RS,
        "signing_key": SigningKey(ref="software:resource", public_jwk=RS_KEY.public_jwk()),
        "keys": KEYS,
        "routes": ROUTES,
        "revocations": store,
        "sessions": store,
        "interaction_url": RS + "/interact",
        "pending_base": RS + "/pending/",
        "scope_descriptions": frozenset({"data.read", "data.write", "notes"}),
    }
    values.update(overrides)
    return ResourceConfig(**values)


class Resource:
    """The driver: runs a machine to its answer, signing with the resource key, serving
    through ``handler``, applying record actions to the store."""

    def __init__(
        self, *, policy: Policy | None = None, handler: Handler = default_handler, **overrides: Any
    ) -> None:
        self.store = MemoryResourceStore()
        self.config = make_config(self.store, policy=policy or AllowAll(), **overrides)
        self.handler = handler
        self.served: list[Serve] = []
        self.consents: list[ShowConsent] = []
        self.signed_count = 0

    def run(self, machine: Machine[Any, Any], event: Event, at: int = NOW) -> HttpResponse | None:
        actions = list(machine.handle(event))
        response: HttpResponse | None = None
        while actions:
            action = actions.pop(0)
            if isinstance(action, SignBytes):
                assert action.key == "software:resource"
                self.signed_count += 1
                actions += machine.handle(SignatureProduced(signature=RS_KEY.sign(action.data)))
            elif isinstance(action, Serve):
                self.served.append(action)
                actions += machine.handle(Served(response=self.handler(action), at=at))
            elif isinstance(action, Respond):
                assert response is None, "one answer per request"
                response = action.response
            elif isinstance(action, ShowConsent):
                self.consents.append(action)
            elif not self.store.apply(action):
                raise AssertionError(f"unexpected action {action!r}")
        return response

    def _answer(self, machine: Machine[Any, Any], request: HttpRequest, at: int) -> HttpResponse:
        response = self.run(
            machine, RequestReceived(request=request, at=at, random=random_bytes()), at
        )
        assert response is not None
        return response

    def call(self, request: HttpRequest, *, at: int = NOW) -> HttpResponse:
        return self._answer(ResourceCall(config=self.config), request, at)

    def authorize(self, request: HttpRequest, *, at: int = NOW) -> HttpResponse:
        return self._answer(AuthorizationEndpoint(config=self.config), request, at)

    def revoke(self, request: HttpRequest, *, at: int = NOW) -> HttpResponse:
        return self._answer(RevocationEndpoint(config=self.config), request, at)

    # -- pending records: restored from the store for every event -------------------------

    def restore(self, pending_id: str) -> Machine[Any, Any]:
        snapshot = self.store.pending(pending_id)
        assert snapshot is not None
        cls: Any = PENDING_MACHINES[snapshot.machine]
        machine: Machine[Any, Any] = cls.restore(snapshot, config=self.config)
        return machine

    def pending_event(self, pending_id: str, event: Event, *, at: int = NOW) -> HttpResponse | None:
        machine = self.restore(pending_id)
        response = self.run(machine, event, at)
        self.store.save_pending(pending_id, machine.snapshot())
        return response

    def poll(self, location: str, request: HttpRequest, *, at: int = NOW) -> HttpResponse:
        pending_id = location.removeprefix(self.config.pending_base)
        response = self.pending_event(
            pending_id, RequestReceived(request=request, at=at, random=random_bytes()), at=at
        )
        assert response is not None
        return response

    def present_code(self, code: str, *, at: int = NOW) -> tuple[str | None, HttpResponse | None]:
        pending_id = self.store.pending_for_code(code)
        if pending_id is None:
            return None, None
        return pending_id, self.pending_event(pending_id, CodePresented(code=code, at=at), at=at)

    def decide(
        self, pending_id: str, *, approved: bool, at: int = NOW, scope: str | None = None
    ) -> None:
        self.pending_event(pending_id, UserDecided(approved=approved, at=at, scope=scope), at=at)

    def tick(self, pending_id: str, *, at: int) -> None:
        self.pending_event(pending_id, TimerFired(at=at), at=at)

    def state_of(self, pending_id: str) -> Any:
        return self.restore(pending_id).state
