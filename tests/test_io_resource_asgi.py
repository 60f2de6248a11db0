"""AAuthMiddleware over real sockets: uvicorn, TLS, httpx through the egress policy.

A plain Starlette app and a FastAPI app are each protected by the middleware; the agent,
person and auth tokens are minted with real keys and every request is signed by core."""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import pytest
import structlog.testing
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
from aauth_flows.io.pending_store import CODE_INDEX, MemoryPendingStore, code_key_of
from aauth_flows.io.replay import MemoryReplayCache
from aauth_flows.io.resource_asgi import (
    BROWSER_COOKIE,
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
RS = "https://rs.aauth.test"  # resource-managed, the host's sign-in is a header (stand-in)
FED = "https://fed.aauth.test"  # resource-managed, with a login page
CAL = "https://calendar.aauth.test"  # resource-managed, the unsafe mode
ONE = "https://resource.example"  # resource-managed, one machine worker (held polls)
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


def header_person(request: Request) -> str | None:
    """The host application's sign-in, in these tests: a header its proxy would set."""
    return request.headers.get("x-test-person")


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
    managed = (Route(path="/whoami", mode=AccessMode.RESOURCE_MANAGED),)
    signed_in = AAuthResource.build(
        issuer=RS, signer=keys.resource, keys=keys.resolver, routes=managed, person=header_person
    )
    with_login = AAuthResource.build(
        issuer=FED,
        signer=keys.resource,
        keys=keys.resolver,
        routes=managed,
        person=header_person,
        login_url="/signin?from=aauth",
    )
    unsafe = AAuthResource.build(
        issuer=CAL,
        signer=keys.resource,
        keys=keys.resolver,
        routes=managed,
        allow_unauthenticated_interaction=True,
    )
    one_worker = AAuthResource.build(
        issuer=ONE, signer=keys.resource, keys=keys.resolver, routes=managed, person=header_person
    )
    apps = {
        "resource.example": AAuthMiddleware(starlette_app(), resource=one_worker, workers=1),
        "rs.aauth.test": AAuthMiddleware(starlette_app(), resource=signed_in),
        "fed.aauth.test": AAuthMiddleware(starlette_app(), resource=with_login),
        "calendar.aauth.test": AAuthMiddleware(starlette_app(), resource=unsafe),
        "api.aauth.test": AAuthMiddleware(starlette_app(), resource=api),
        "app.aauth.test": fastapi_app(app),
        "other.aauth.test": AAuthMiddleware(starlette_app(), resource=broken),
    }
    with serve(apps) as servers, egress.client(policy(servers)) as http:
        BROWSER_POLICY.append(policy(servers))
        yield http, api
        BROWSER_POLICY.clear()


BROWSER_POLICY: list[egress.EgressPolicy] = []


@pytest.fixture
def browser(world: tuple[httpx.Client, AAuthResource]) -> Iterator[httpx.Client]:
    """A fresh browser (its own cookie jar) that reaches the module's servers."""
    with egress.client(BROWSER_POLICY[0]) as client:
        yield client


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


# -- the interaction page: who may decide (§8) -------------------------------------------------


def managed_call(
    http: httpx.Client, keys: Keys, origin: str, headers: dict[str, str] | None = None
) -> tuple[str, str, str]:
    """An agent's first resource-managed call: (agent token, code, pending URL)."""
    token = keys.agent_token()
    first = send(http, signed("GET", f"{origin}/whoami", token, keys.agent, headers=headers))
    assert first.status == 202, first
    expected = "0" if headers and "Prefer" in headers else "5"  # 5: the machine's interval
    assert first.headers.get("retry-after") == expected
    needed = requirement(first)
    assert needed.requirement == "interaction" and needed.url == f"{origin}/interaction"
    location = first.headers.get("location")
    assert needed.code and location
    return token, needed.code, location


def form_token(page: httpx.Response) -> str:
    found = re.search(r"name='csrf' value='([0-9a-f]+)'", page.text)
    assert found is not None, page.text
    return found.group(1)


def test_resource_managed_routes_need_a_sign_in_hook(keys: Keys) -> None:
    managed = (Route(path="/whoami", mode=AccessMode.RESOURCE_MANAGED),)
    common: dict[str, Any] = {"issuer": RS, "signer": keys.resource, "keys": keys.resolver}
    with pytest.raises(ValueError, match="person hook"):
        AAuthResource.build(routes=managed, **common)
    with pytest.raises(ValueError, match="exclude"):
        AAuthResource.build(
            routes=managed,
            person=header_person,
            allow_unauthenticated_interaction=True,
            **common,
        )
    for elsewhere in ("https://evil.aauth.test/login", "//evil.aauth.test/login", "login"):
        with pytest.raises(ValueError, match="login_url"):
            AAuthResource.build(routes=managed, person=header_person, login_url=elsewhere, **common)
    # no resource-managed route: nothing to decide, no hook needed
    assert AAuthResource.build(routes=ROUTES[:1], **common).person is None


def test_the_unsafe_mode_is_said_once_at_construction(keys: Keys) -> None:
    managed = (Route(path="/whoami", mode=AccessMode.RESOURCE_MANAGED),)
    with structlog.testing.capture_logs() as logs:
        AAuthResource.build(
            issuer=RS,
            signer=keys.resource,
            keys=keys.resolver,
            routes=managed,
            allow_unauthenticated_interaction=True,
        )
    warned = [e for e in logs if e["event"] == "aauth.io.resource.unauthenticated_interaction"]
    assert len(warned) == 1 and warned[0]["log_level"] == "warning"


def test_without_a_person_the_page_answers_401_or_sends_to_the_login(
    http: httpx.Client, keys: Keys, browser: httpx.Client
) -> None:
    _, code, location = managed_call(http, keys, RS)
    shown = browser.get(f"{RS}/interaction", params={"code": code})
    assert shown.status_code == 401 and "Sign in" in shown.text
    assert code not in shown.text
    posted = browser.post(
        f"{RS}/interaction", data={"code": code, "decision": "approve"}, headers={"Origin": RS}
    )
    assert posted.status_code == 401
    assert send(http, signed("GET", location, keys.agent_token(), keys.agent)).status == 202
    _, code, _ = managed_call(http, keys, FED)
    sent = browser.get(f"{FED}/interaction", params={"code": code})
    assert sent.status_code == 303
    back = quote(f"/interaction?code={code}", safe="")
    assert sent.headers["location"] == f"/signin?from=aauth&next={back}"
    managed_call(http, keys, RS)  # the page kept serving: a new call still gets its code


def test_a_signed_in_person_decides_with_the_page_token(
    http: httpx.Client, keys: Keys, browser: httpx.Client
) -> None:
    token, code, location = managed_call(http, keys, RS)
    alice = {"X-Test-Person": "alice"}
    page = browser.get(f"{RS}/interaction", params={"code": code}, headers=alice)
    assert page.status_code == 200
    assert str(AGENT) in page.text and "https://ap.aauth.test" in page.text and RS in page.text
    assert "Signed in as <strong>alice</strong>" in page.text
    assert BROWSER_COOKIE in page.headers["set-cookie"]
    csrf = form_token(page)
    form = {"code": code, "decision": "approve", "csrf": csrf}
    # the token is the person's: another person (same browser) cannot post it
    as_bob = browser.post(
        f"{RS}/interaction", data=form, headers={"X-Test-Person": "bob", "Origin": RS}
    )
    assert as_bob.status_code == 404  # and to Bob the claimed request is an unknown code
    missing = browser.post(
        f"{RS}/interaction", data={**form, "csrf": ""}, headers={**alice, "Origin": RS}
    )
    assert missing.status_code == 403
    with structlog.testing.capture_logs() as logs:
        done = browser.post(f"{RS}/interaction", data=form, headers={**alice, "Origin": RS})
    assert done.status_code == 200 and "Approved" in done.text
    decided = [e for e in logs if e["event"] == "aauth.io.resource.interaction_decided"]
    assert decided and decided[0]["person"] == "alice" and decided[0]["approved"] is True
    assert all(code not in json.dumps(e, default=str) for e in logs)
    answer = send(http, signed("GET", location, token, keys.agent))
    assert answer.status == 200 and answer.headers.get("aauth-access")
    managed_call(http, keys, RS)  # the page kept serving: a new call still gets its code


def test_six_wrong_codes_are_429(http: httpx.Client, keys: Keys, browser: httpx.Client) -> None:
    _, code, _ = managed_call(http, keys, RS)
    eve = {"X-Test-Person": "eve"}
    for n in range(5):
        wrong = browser.get(f"{RS}/interaction", params={"code": f"AAAA-AAA{n}"}, headers=eve)
        assert wrong.status_code == 404 and "Unknown or expired code." in wrong.text
    assert browser.get(f"{RS}/interaction", params={"code": code}, headers=eve).status_code == 429
    # another person is not limited by Eve's guesses
    carol = {"X-Test-Person": "carol"}
    assert browser.get(f"{RS}/interaction", params={"code": code}, headers=carol).status_code == 200
    managed_call(http, keys, RS)  # the page kept serving: a new call still gets its code


def test_the_unsafe_mode_still_needs_the_page_token(
    http: httpx.Client, keys: Keys, browser: httpx.Client
) -> None:
    token, code, location = managed_call(http, keys, CAL)
    blind = browser.post(
        f"{CAL}/interaction", data={"code": code, "decision": "approve"}, headers={"Origin": CAL}
    )
    assert blind.status_code == 403
    page = browser.get(f"{CAL}/interaction", params={"code": code})
    assert page.status_code == 200 and "Signed in" not in page.text
    form = {"code": code, "decision": "approve", "csrf": form_token(page)}
    assert browser.post(f"{CAL}/interaction", data=form, headers={"Origin": CAL}).status_code == 200
    assert send(http, signed("GET", location, token, keys.agent)).status == 200


# -- Prefer: wait on the pending URLs (§5.9, RFC 7240) ------------------------------------------

PREFER = {"Prefer": "wait=20"}


def poll(
    http: httpx.Client, keys: Keys, location: str, token: str, headers: dict[str, str] | None
) -> HttpResponse:
    """A signed poll, ``created`` now: a held poll is verified again when it wakes."""
    now = int(time.time())
    return send(http, signed("GET", location, token, keys.agent, headers=headers, created=now))


def held_poll(
    http: httpx.Client, keys: Keys, location: str, token: str
) -> tuple[threading.Thread, list[HttpResponse]]:
    """A ``Prefer: wait=20`` poll in a thread, started; its answer lands in the list."""
    held: list[HttpResponse] = []
    poller = threading.Thread(target=lambda: held.append(poll(http, keys, location, token, PREFER)))
    poller.start()
    return poller, held


def approve(browser: httpx.Client, origin: str, code: str, person: str) -> None:
    who = {"X-Test-Person": person}
    page = browser.get(f"{origin}/interaction", params={"code": code}, headers=who)
    assert page.status_code == 200, page.text
    form = {"code": code, "decision": "approve", "csrf": form_token(page)}
    done = browser.post(f"{origin}/interaction", data=form, headers={**who, "Origin": origin})
    assert done.status_code == 200 and "Approved" in done.text


def test_prefer_wait_holds_the_poll_until_the_person_decides(
    http: httpx.Client, keys: Keys, browser: httpx.Client
) -> None:
    """The 202 says ``Retry-After: 0``; the held poll comes back 200 with the session token
    once she decides, not 202; while it is held, the resource's only machine worker is free
    (the hold sleeps on the event loop)."""
    token, code, location = managed_call(http, keys, ONE, PREFER)
    poller, held = held_poll(http, keys, location, token)
    time.sleep(0.3)  # ordering only: the poll is in before anything else happens
    assert not held, "the poll was answered before anything changed"
    # another agent call needs the one machine worker: it is answered while the poll waits
    managed_call(http, keys, ONE)
    assert not held, "the poll was answered before the person decided"
    approve(browser, ONE, code, "alice")
    poller.join(timeout=30)
    [delivered] = held
    assert delivered.status == 200, delivered
    assert delivered.headers.get("aauth-access")
    assert json.loads(delivered.body)["agent"] == str(AGENT)


def test_without_prefer_the_poll_is_answered_at_once_with_the_machines_interval(
    http: httpx.Client, keys: Keys
) -> None:
    token, _, location = managed_call(http, keys, RS)  # asserts Retry-After: 5
    plain = poll(http, keys, location, token, None)
    assert plain.status == 202 and plain.headers.get("retry-after") == "5"
    # a malformed preference is only ignored: the poll is answered as if it asked nothing
    bad = poll(http, keys, location, token, {"Prefer": "wait=soon"})
    assert bad.status == 202 and bad.headers.get("retry-after") == "5"
    # a wait that ends with nothing new: 202 again, poll at once
    short = poll(http, keys, location, token, {"Prefer": "wait=1"})
    assert short.status == 202 and short.headers.get("retry-after") == "0"


def test_a_cancel_wakes_the_held_poll(http: httpx.Client, keys: Keys) -> None:
    """Any save of the record wakes a held poll (here the agent's own DELETE)."""
    token, _, location = managed_call(http, keys, RS, PREFER)
    poller, held = held_poll(http, keys, location, token)
    time.sleep(0.3)  # ordering only
    assert not held, "the poll was answered before the record changed"
    cancelled = send(http, signed("DELETE", location, token, keys.agent))
    assert cancelled.status in (200, 204), cancelled
    poller.join(timeout=30)
    [answer] = held
    assert answer.status == 410, answer


# -- the pending store ---------------------------------------------------------------------------


def test_pending_records_live_in_the_given_store_and_a_full_one_refuses_new_calls(
    keys: Keys,
) -> None:
    """The middleware keeps its pending machines in its :class:`PendingStore` (indexed by
    the code's hash); full of live records, a new deferred call is a 503 and the live one
    still completes."""
    origin = "https://evil.aauth.test"
    records = MemoryPendingStore(max_entries=1)
    resource = AAuthResource.build(
        issuer=origin,
        signer=keys.resource,
        keys=keys.resolver,
        routes=(Route(path="/whoami", mode=AccessMode.RESOURCE_MANAGED),),
        person=header_person,
        pending=records,
    )
    app = AAuthMiddleware(starlette_app(), resource=resource)
    with serve({"evil.aauth.test": app}) as servers, egress.client(policy(servers)) as http:
        token, code, location = managed_call(http, keys, origin)
        pending_id = location.rsplit("/", 1)[1]
        key = code_key_of(code)
        assert key is not None and records.find(CODE_INDEX, key) == pending_id
        assert records.get(pending_id) is not None and len(records) == 1
        refused = send(http, signed("GET", f"{origin}/whoami", keys.agent_token(), keys.agent))
        assert refused.status == 503 and problem(refused)["error"] == "temporarily_unavailable"
        with egress.client(policy(servers)) as person:
            approve(person, origin, code, "alice")
        answer = send(http, signed("GET", location, token, keys.agent))
        assert answer.status == 200 and answer.headers.get("aauth-access")
