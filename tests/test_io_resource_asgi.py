"""AAuthMiddleware over real sockets: uvicorn, TLS, httpx through the egress policy.

A plain Starlette app and a FastAPI app are each protected by the middleware; the agent,
person and auth tokens are minted with real keys and every request is signed by core."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from live import policy, serve
from signing_helpers import JwkSigner, generated_ed25519
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route as WebRoute

from aauth_core.headers.requirement import Requirement
from aauth_core.http import HttpRequest, HttpResponse
from aauth_core.identifiers import AgentId
from aauth_core.requests import sign_aauth_request
from aauth_core.tokens import (
    DWK_AGENT,
    DWK_PERSON,
    DWK_RESOURCE,
    AgentTokenClaims,
    Confirmation,
    PersonTokenClaims,
    StaticKeyResolver,
    mint_token,
)
from aauth_core.tokens.claims import TokenType
from aauth_core.tokens.verify import verify_token
from aauth_flows.io import egress
from aauth_flows.io.messages import send
from aauth_flows.io.replay import MemoryReplayCache
from aauth_flows.io.resource_asgi import (
    AAuthMiddleware,
    AAuthResource,
    Caller,
    aauth_caller,
    caller_of,
)
from aauth_flows.machines.resource import AccessMode, Decision, PersonPrincipal, Principal, Route

AP = "https://ap.aauth.test"
PS = "https://ps.aauth.test"
API = "https://api.aauth.test"
APP = "https://app.aauth.test"
OTHER = "https://other.aauth.test"  # a resource whose policy crashes
AGENT = AgentId.parse("aauth:assistant@ap.aauth.test")


class Keys:
    """The AP, PS, agent and resource keys of one test module, and tokens minted now."""

    def __init__(self) -> None:
        self.ap = generated_ed25519()
        self.ps = generated_ed25519()
        self.agent = generated_ed25519()
        self.resource = generated_ed25519()
        self.resolver = StaticKeyResolver(
            {
                (AP, DWK_AGENT): (self.ap.public_jwk(),),
                (PS, DWK_PERSON): (self.ps.public_jwk(),),
            }
        )
        self._jti = 0

    def jti(self) -> str:
        self._jti += 1
        return f"t-{self._jti}"

    def agent_token(self, *, iat: int | None = None, lifetime: int = 3600) -> str:
        now = int(time.time()) if iat is None else iat
        claims = AgentTokenClaims(
            iss=AP,
            dwk=DWK_AGENT,
            jti=self.jti(),
            iat=now,
            exp=now + lifetime,
            sub=AGENT,
            cnf=Confirmation(jwk=self.agent.public_jwk()),
            ps=PS,
        )
        return mint_token(claims, self.ap)

    def person_token(self, *, aud: str, sub: str = "alice") -> str:
        now = int(time.time())
        claims = PersonTokenClaims(
            iss=PS,
            dwk=DWK_PERSON,
            jti=self.jti(),
            iat=now,
            exp=now + 600,
            aud=aud,
            sub=sub,
            cnf=Confirmation(jwk=self.agent.public_jwk()),
        )
        return mint_token(claims, self.ps)


_STEP = itertools.count()


def fresh_created() -> int:
    """A ``created`` no other request of this module used: the replay cache keys on
    ``(key, created, method, authority, path)``, so two calls to one path in the same
    second would be one request twice. Stays inside the 60 s window."""
    return int(time.time()) - 50 + next(_STEP) % 60


def signed(
    method: str,
    url: str,
    token: str,
    signer: JwkSigner,
    *,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    created: int | None = None,
) -> HttpRequest:
    fields = dict(headers or {})
    bare = HttpRequest(method=method, url=url, headers=fields, body=body)
    when = fresh_created() if created is None else created
    added = sign_aauth_request(bare, signer, token=token, created=when)
    return HttpRequest(method=method, url=url, headers={**fields, **added}, body=body)


def problem(response: HttpResponse) -> dict[str, Any]:
    assert response.headers.get("content-type") == "application/problem+json"
    body: dict[str, Any] = json.loads(response.body)
    return body


def requirement(response: HttpResponse) -> Requirement:
    raw = response.headers.get("aauth-requirement")
    assert raw is not None, response
    return Requirement.parse(raw)


# -- the protected apps ------------------------------------------------------------------------

ROUTES = (
    Route(path="/whoami", mode=AccessMode.AGENT),
    Route(path="/me", mode=AccessMode.PERSON),
    Route(path="/data", mode=AccessMode.AUTHORIZATION, scope="data.read"),
    Route(path="/boom", mode=AccessMode.AGENT),
    Route(path="/upload", mode=AccessMode.AGENT),
)


async def whoami(request: Request) -> Response:
    caller = caller_of(request)
    assert caller is not None
    return JSONResponse(caller.to_dict())


async def boom(request: Request) -> Response:
    raise RuntimeError("the handler crashed")


async def upload(request: Request) -> Response:
    body = await request.body()
    return JSONResponse({"size": len(body)})


async def health(request: Request) -> Response:
    return JSONResponse({"ok": True, "caller": caller_of(request) is not None})


def starlette_app() -> Starlette:
    return Starlette(
        routes=[
            WebRoute("/whoami", whoami),
            WebRoute("/me", whoami),
            WebRoute("/data", whoami),
            WebRoute("/boom", boom),
            WebRoute("/upload", upload, methods=["POST"]),
            WebRoute("/health", health),
        ]
    )


def fastapi_app(resource: AAuthResource) -> FastAPI:
    app = FastAPI()
    app.add_middleware(AAuthMiddleware, resource=resource)

    @app.get("/whoami")
    def fast_whoami(caller: Annotated[Caller, Depends(aauth_caller)]) -> dict[str, Any]:
        return caller.to_dict()

    @app.get("/health")
    def fast_health() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/health/leaky")  # public by mistake: the dependency refuses it
    def leaky(caller: Annotated[Caller, Depends(aauth_caller)]) -> dict[str, Any]:
        return caller.to_dict()

    return app


class Crashing:
    """A policy with a bug: the machine's handler raises."""

    def decide(self, principal: Principal, route: Route, request: HttpRequest) -> Decision:
        raise ZeroDivisionError("policy bug")

    def authorize(self, principal: PersonPrincipal, scope: str, account: str | None) -> Decision:
        raise ZeroDivisionError("policy bug")


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


@pytest.fixture(scope="module")
def world(keys: Keys) -> Iterator[tuple[httpx.Client, AAuthResource]]:
    api = AAuthResource.build(
        issuer=API,
        signer=keys.resource,
        keys=keys.resolver,
        routes=ROUTES,
        scope_descriptions={"data.read": "Read your data"},
        replay=MemoryReplayCache(),
        public=("/health",),
        max_body=4096,
    )
    app = AAuthResource.build(
        issuer=APP, signer=keys.resource, keys=keys.resolver, routes=ROUTES[:1], public=("/health",)
    )
    broken = AAuthResource.build(
        issuer=OTHER, signer=keys.resource, keys=keys.resolver, routes=ROUTES, policy=Crashing()
    )
    apps = {
        "api.aauth.test": AAuthMiddleware(starlette_app(), resource=api),
        "app.aauth.test": fastapi_app(app),
        "other.aauth.test": AAuthMiddleware(starlette_app(), resource=broken),
    }
    with serve(apps) as servers, egress.client(policy(servers)) as http:
        yield http, api


@pytest.fixture
def http(world: tuple[httpx.Client, AAuthResource]) -> httpx.Client:
    return world[0]


def alive(http: httpx.Client, keys: Keys, origin: str = API) -> None:
    """The server still answers a good call after whatever the test threw at it."""
    answer = send(http, signed("GET", f"{origin}/whoami", keys.agent_token(), keys.agent))
    assert answer.status == 200, answer
    assert json.loads(answer.body)["agent"] == str(AGENT)


# -- the tests ---------------------------------------------------------------------------------


def test_agent_identity_call_reaches_the_app_with_the_caller(
    http: httpx.Client, keys: Keys
) -> None:
    answer = send(http, signed("GET", f"{API}/whoami", keys.agent_token(), keys.agent))
    assert answer.status == 200
    body = json.loads(answer.body)
    assert body == {
        "token_type": TokenType.AGENT.value,
        "key_thumbprint": keys.agent.public_jwk().thumbprint(),
        "agent": str(AGENT),
        "session": False,
    }


def test_unsigned_call_is_challenged_for_an_agent_token(http: httpx.Client) -> None:
    answer = send(http, HttpRequest(method="GET", url=f"{API}/whoami"))
    assert answer.status == 401
    assert requirement(answer).requirement == "agent-token"


def test_person_route_with_only_an_agent_token_asks_for_a_person_token(
    http: httpx.Client, keys: Keys
) -> None:
    answer = send(http, signed("GET", f"{API}/me", keys.agent_token(), keys.agent))
    assert answer.status == 401
    assert requirement(answer).requirement == "person-token"
    assert "signature-error" not in answer.headers
    alive(http, keys)


def test_person_token_names_the_person(http: httpx.Client, keys: Keys) -> None:
    token = keys.person_token(aud=API, sub="alice")
    answer = send(http, signed("GET", f"{API}/me", token, keys.agent))
    assert answer.status == 200
    body = json.loads(answer.body)
    assert body["token_type"] == TokenType.PERSON.value
    assert body["person"] == {"iss": PS, "sub": "alice"}
    assert "agent" not in body


def test_tampered_request_is_refused(http: httpx.Client, keys: Keys) -> None:
    good = signed("GET", f"{API}/whoami", keys.agent_token(), keys.agent)
    # the same signature fields on another path (the signature covers @path)
    tampered = HttpRequest(method="GET", url=f"{API}/whoami/other", headers=good.headers)
    answer = send(http, tampered)
    assert answer.status == 401
    assert answer.headers.get("signature-error") == "error=invalid_signature"
    assert problem(answer)["error"] == "invalid_signature"
    alive(http, keys)


def test_expired_agent_token_is_refused(http: httpx.Client, keys: Keys) -> None:
    old = int(time.time()) - 7200
    token = keys.agent_token(iat=old, lifetime=600)
    answer = send(http, signed("GET", f"{API}/whoami", token, keys.agent))
    assert answer.status == 401
    assert answer.headers.get("signature-error") == "error=expired_jwt"
    alive(http, keys)


def test_person_token_for_another_audience_is_refused(http: httpx.Client, keys: Keys) -> None:
    token = keys.person_token(aud=APP)
    answer = send(http, signed("GET", f"{API}/me", token, keys.agent))
    assert answer.status == 401
    assert answer.headers.get("signature-error") == "error=invalid_jwt"
    assert "aud" in problem(answer)["detail"]
    alive(http, keys)


def test_person_token_where_an_auth_token_is_needed_gets_a_resource_token(
    http: httpx.Client, keys: Keys
) -> None:
    token = keys.person_token(aud=API)
    answer = send(http, signed("GET", f"{API}/data", token, keys.agent))
    assert answer.status == 401
    needed = requirement(answer)
    assert needed.requirement == "auth-token"
    assert needed.resource_token is not None
    resolver = StaticKeyResolver({(API, DWK_RESOURCE): (keys.resource.public_jwk(),)})
    minted = verify_token(
        needed.resource_token,
        expected=TokenType.RESOURCE,
        keys=resolver,
        now=int(time.time()),
        audience=PS,
    )
    assert minted.claims.scope == "data.read"
    assert minted.claims.agent_jkt == keys.agent.public_jwk().thumbprint()


def test_replay_inside_the_window_is_refused(http: httpx.Client, keys: Keys) -> None:
    request = signed("POST", f"{API}/upload", keys.agent_token(), keys.agent, body=b"x")
    assert send(http, request).status == 200
    again = send(http, request)
    assert again.status == 401
    assert again.headers.get("signature-error") == "error=invalid_signature"
    assert "replay" in problem(again)["detail"]
    alive(http, keys)


def test_a_repeated_get_is_not_a_replay(http: httpx.Client, keys: Keys) -> None:
    """The cache covers state-changing requests only: a safe request signed twice in the
    same second by a deterministic (Ed25519) key is served both times."""
    request = signed("GET", f"{API}/whoami", keys.agent_token(), keys.agent)
    assert send(http, request).status == 200
    assert send(http, request).status == 200


def test_the_app_crashing_is_a_500_problem_and_the_server_goes_on(
    http: httpx.Client, keys: Keys
) -> None:
    answer = send(http, signed("GET", f"{API}/boom", keys.agent_token(), keys.agent))
    assert answer.status == 500
    assert problem(answer)["error"] == "server_error"
    assert b"Traceback" not in answer.body
    alive(http, keys)


def test_oversized_body_is_413(http: httpx.Client, keys: Keys) -> None:
    small = signed("POST", f"{API}/upload", keys.agent_token(), keys.agent, body=b"x" * 100)
    assert json.loads(send(http, small).body) == {"size": 100}
    big = signed("POST", f"{API}/upload", keys.agent_token(), keys.agent, body=b"x" * 5000)
    answer = send(http, big)
    assert answer.status == 413
    assert problem(answer)["error"] == "invalid_request"
    alive(http, keys)


def test_oversized_header_is_refused_by_the_server(http: httpx.Client, keys: Keys) -> None:
    huge = HttpRequest(method="GET", url=f"{API}/whoami", headers={"X-Big": "a" * 1_000_000})
    answer = send(http, huge)
    # h11 refuses it before the middleware or the app sees it (no AAuth answer)
    assert answer.status == 400
    assert "aauth-requirement" not in answer.headers
    alive(http, keys)


@pytest.mark.parametrize(
    "fields",
    [
        {"Signature-Input": "sig=(", "Signature": "sig=:AAAA:", "Signature-Key": "sig=jwt"},
        {"Signature-Input": 'sig=("@method");created=1', "Signature": "nope"},
        {"Signature-Key": 'sig=jwt;jwt="a.b.c"'},
    ],
)
def test_malformed_signature_headers_are_problem_json(
    http: httpx.Client, keys: Keys, fields: dict[str, str]
) -> None:
    answer = send(http, HttpRequest(method="GET", url=f"{API}/whoami", headers=fields))
    assert answer.status in (400, 401)
    assert problem(answer)["error"]
    alive(http, keys)


def test_unknown_path_is_404_and_public_path_has_no_caller(http: httpx.Client, keys: Keys) -> None:
    answer = send(http, signed("GET", f"{API}/nowhere", keys.agent_token(), keys.agent))
    assert answer.status == 404
    public = send(http, HttpRequest(method="GET", url=f"{API}/health"))
    assert json.loads(public.body) == {"ok": True, "caller": False}


def test_metadata_and_jwks_are_served(http: httpx.Client, keys: Keys) -> None:
    meta = send(http, HttpRequest(method="GET", url=f"{API}/.well-known/aauth-resource.json"))
    document = json.loads(meta.body)
    assert document["issuer"] == API
    assert document["jwks_uri"] == f"{API}/jwks"
    assert document["scope_descriptions"] == {"data.read": "Read your data"}
    jwks = json.loads(send(http, HttpRequest(method="GET", url=document["jwks_uri"])).body)
    assert jwks["keys"][0]["x"] == keys.resource.public_jwk().to_dict()["x"]


def test_fastapi_route_gets_the_caller_through_the_dependency(
    http: httpx.Client, keys: Keys
) -> None:
    answer = send(http, signed("GET", f"{APP}/whoami", keys.agent_token(), keys.agent))
    assert answer.status == 200
    assert json.loads(answer.body)["agent"] == str(AGENT)
    unsigned = send(http, HttpRequest(method="GET", url=f"{APP}/whoami"))
    assert unsigned.status == 401
    assert requirement(unsigned).requirement == "agent-token"
    assert json.loads(send(http, HttpRequest(method="GET", url=f"{APP}/health")).body) == {
        "ok": True
    }
    leaky = send(http, HttpRequest(method="GET", url=f"{APP}/health/leaky"))
    assert leaky.status == 401
    assert requirement(leaky).requirement == "agent-token"
    alive(http, keys, APP)


def test_request_signed_for_another_resource_is_refused(http: httpx.Client, keys: Keys) -> None:
    # signed for app.aauth.test, delivered to api.aauth.test: @authority differs
    good = signed("GET", f"{APP}/whoami", keys.agent_token(), keys.agent)
    moved = HttpRequest(method="GET", url=f"{API}/whoami", headers=good.headers)
    answer = send(http, moved)
    assert answer.status == 401
    assert answer.headers.get("signature-error") == "error=invalid_signature"


def test_a_crash_inside_the_machine_is_a_500_problem(http: httpx.Client, keys: Keys) -> None:
    for _ in range(2):
        answer = send(http, signed("GET", f"{OTHER}/whoami", keys.agent_token(), keys.agent))
        assert answer.status == 500
        assert problem(answer) == {"error": "server_error", "detail": "internal error"}
    # unsigned requests never reach the policy: still answered
    assert send(http, HttpRequest(method="GET", url=f"{OTHER}/whoami")).status == 401
    alive(http, keys)


def test_concurrent_calls_to_sync_fastapi_handlers_all_answer(
    http: httpx.Client, keys: Keys
) -> None:
    # each call holds a machine worker while its (sync) handler needs a pool thread
    requests = [signed("GET", f"{APP}/whoami", keys.agent_token(), keys.agent) for _ in range(48)]
    with ThreadPoolExecutor(max_workers=24) as pool:
        answers = list(pool.map(lambda r: send(http, r), requests))
    assert [a.status for a in answers] == [200] * len(requests)
