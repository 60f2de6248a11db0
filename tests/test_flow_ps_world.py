"""A small world for the Person Server machine tests: real keys for an AP, a PS, a
resource and an AS, tokens minted with core, requests signed with core, and a driver loop
that signs through the PS key and applies record actions to the in-memory store."""

from __future__ import annotations

import json
from typing import Any

from attrs import evolve
from signing_helpers import JwkSigner, generated_ed25519

from aauth_core.http import HttpRequest, HttpResponse
from aauth_core.identifiers import AgentId
from aauth_core.jwk import PublicJwk
from aauth_core.requests import sign_aauth_request
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
from aauth_flows.machines.actions import Respond, SignatureProduced, SignBytes
from aauth_flows.machines.engine import Action, Event, Machine
from aauth_flows.machines.person_server import (
    RANDOM_BYTES,
    InMemoryPsStore,
    PendingRequest,
    PersonServerConfig,
    RequestArrived,
    directed_sub,
)
from aauth_flows.machines.signing import SigningKey

NOW = 1_800_000_000
PS = "https://ps.example"
AP = "https://agent.example"
RS = "https://resource.example"
AS = "https://as.example"
AGENT = "aauth:assistant@agent.example"
SECRET = b"s" * 32

AP_KEY = generated_ed25519()
PS_KEY = generated_ed25519()
RS_KEY = generated_ed25519()
AS_KEY = generated_ed25519()
OTHER_PS_KEY = generated_ed25519()
AGENT_KEY = generated_ed25519()

RESOLVER = StaticKeyResolver(
    {
        (AP, DWK_AGENT): (AP_KEY.public_jwk(),),
        (PS, DWK_PERSON): (PS_KEY.public_jwk(),),
        (RS, DWK_RESOURCE): (RS_KEY.public_jwk(),),
        (RS, DWK_AGENT): (RS_KEY.public_jwk(),),
        (AS, DWK_ACCESS): (AS_KEY.public_jwk(),),
        (AS, DWK_RESOURCE): (AS_KEY.public_jwk(),),
        ("https://other-ps.example", DWK_PERSON): (OTHER_PS_KEY.public_jwk(),),
    }
)


def random_bytes(seed: int) -> bytes:
    return bytes((seed + i) % 256 for i in range(RANDOM_BYTES))


def new_store(**kwargs: Any) -> InMemoryPsStore:
    return InMemoryPsStore(**kwargs)


def new_config(store: InMemoryPsStore, **kwargs: Any) -> PersonServerConfig:
    return PersonServerConfig(
        issuer=PS,
        signing_key=SigningKey(ref="software:ps", public_jwk=PS_KEY.public_jwk()),
        keys=RESOLVER,
        store=store,
        sub_secret=SECRET,
        pending_base=PS + "/pending/",
        interaction_url=PS + "/interact",
        **kwargs,
    )


def agent_token(
    *,
    key: JwkSigner = AGENT_KEY,
    sub: str = AGENT,
    exp: int = NOW + 3600,
    iat: int = NOW - 10,
    parent: str | None = None,
    iss: str = AP,
    signer: JwkSigner = AP_KEY,
    jti: str = "agent-jti-1",
) -> str:
    claims = AgentTokenClaims(
        iss=iss,
        dwk=DWK_AGENT,
        jti=jti,
        iat=iat,
        exp=exp,
        sub=AgentId.parse(sub),
        cnf=Confirmation(jwk=key.public_jwk()),
        ps=PS,
        parent_agent=AgentId.parse(parent) if parent else None,
    )
    return mint_token(claims, signer)


def person_token(
    *,
    person: str = "alice",
    aud: str = RS,
    key: PublicJwk | None = None,
    exp: int = NOW + 1800,
    iat: int = NOW - 10,
    jti: str = "pt-1",
    mission_s256: str | None = None,
    iss: str = PS,
    signer: JwkSigner = PS_KEY,
    tenant: str | None = None,
) -> tuple[str, PersonTokenClaims]:
    claims = PersonTokenClaims(
        iss=iss,
        dwk=DWK_PERSON,
        jti=jti,
        iat=iat,
        exp=exp,
        aud=aud,
        sub=directed_sub(SECRET, person, aud),
        cnf=Confirmation(jwk=key or AGENT_KEY.public_jwk()),
        mission_s256=mission_s256,
        tenant=tenant,
    )
    return mint_token(claims, signer), claims


def resource_token(
    presented: PersonTokenClaims | AuthTokenClaims,
    *,
    aud: str = PS,
    ps: str = PS,
    scope: str | None = "data.read data.write",
    exp: int = NOW + 295,
    iat: int = NOW - 5,
    jti: str = "rt-1",
    agent_jkt: str | None = None,
    **overrides: Any,
) -> str:
    claims = ResourceTokenClaims(
        iss=RS,
        dwk=DWK_RESOURCE,
        jti=jti,
        iat=iat,
        exp=exp,
        aud=aud,
        ps=ps,
        sub=presented.sub,
        presented_jti=presented.jti,
        agent_jkt=agent_jkt or AGENT_KEY.public_jwk().thumbprint(),
        scope=scope,
        mission_s256=presented.mission_s256,
        tenant=presented.tenant,
    )
    if overrides:
        claims = evolve(claims, **overrides)
    return mint_token(claims, RS_KEY)


def signed_post(
    url: str,
    body: dict[str, Any] | bytes,
    *,
    token: str | None = None,
    key: JwkSigner = AGENT_KEY,
    at: int = NOW,
    content_type: str = "application/json",
) -> HttpRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = HttpRequest(method="POST", url=url, headers={"Content-Type": content_type}, body=raw)
    fields = sign_aauth_request(
        request, key, token=token or agent_token(), created=at, cover_body=True
    )
    return evolve(request, headers=request.headers.with_fields(fields))


def signed_get(url: str, *, at: int, token: str | None = None, method: str = "GET") -> HttpRequest:
    request = HttpRequest(method=method, url=url)
    fields = sign_aauth_request(request, AGENT_KEY, token=token or agent_token(), created=at)
    return evolve(request, headers=request.headers.with_fields(fields))


def drive(machine: Machine[Any, Any], event: Event, store: InMemoryPsStore) -> list[Action]:
    """Feed ``event``; sign what the machine asks the PS key to sign; apply records.
    Returns every action emitted (SignBytes included)."""
    out: list[Action] = []
    pending = machine.handle(event)
    while pending:
        action = pending.pop(0)
        out.append(action)
        store.apply(action)
        if isinstance(action, SignBytes):
            assert action.key == "software:ps"
            pending.extend(machine.handle(SignatureProduced(signature=PS_KEY.sign(action.data))))
    return out


def response_of(actions: list[Action]) -> HttpResponse:
    [respond] = [a for a in actions if isinstance(a, Respond)]
    return respond.response


def body_of(response: HttpResponse) -> dict[str, Any]:
    value = json.loads(response.body)
    assert isinstance(value, dict)
    return value


def poll(
    machine: Machine[Any, Any], store: InMemoryPsStore, at: int, method: str = "GET"
) -> HttpResponse:
    url = machine.data.pending_url
    return response_of(
        drive(machine, PendingRequest(request=signed_get(url, at=at, method=method), at=at), store)
    )


def arrive(
    machine: Machine[Any, Any],
    request: HttpRequest,
    store: InMemoryPsStore,
    *,
    at: int = NOW,
    seed: int = 1,
) -> list[Action]:
    return drive(machine, RequestArrived(request=request, at=at, random=random_bytes(seed)), store)
