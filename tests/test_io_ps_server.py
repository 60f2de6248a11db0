"""The reference Person Server over real sockets: an agent asks for person and auth tokens
(signed requests, real keys), Alice logs in and decides on the consent page with real form
posts, the agent's poll gets a token it verifies; hostile requests get the right status and
the server keeps serving; a four-party request federates with a live Access Server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from attrs import evolve
from live import dev_tls, policy, serve
from signing_helpers import JwkSigner, generated_ed25519
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aauth_core.headers.requirement import Requirement
from aauth_core.http import HttpRequest, HttpResponse
from aauth_core.identifiers import AgentId
from aauth_core.interaction import generate_code
from aauth_core.requests import sign_aauth_request
from aauth_core.tokens import (
    DWK_ACCESS,
    DWK_AGENT,
    DWK_PERSON,
    DWK_RESOURCE,
    AgentTokenClaims,
    Confirmation,
    ResourceTokenClaims,
    StaticKeyResolver,
    mint_token,
    verify_auth_token,
    verify_person_token,
)
from aauth_core.tokens.claims import ResourceInteraction
from aauth_core.tokens.verify import inspect_token
from aauth_flows.io import egress
from aauth_flows.io.discovery import Discovery
from aauth_flows.io.messages import from_starlette, send, to_starlette
from aauth_flows.io.runner import run_machine
from aauth_flows.io.servers.context import ServerContext
from aauth_flows.io.servers.ps import PersonServerSettings, build_app
from aauth_flows.io.servers.ps_sessions import COOKIE
from aauth_flows.io.servers.ps_settings import hash_password, verify_password
from aauth_flows.machines.access_server import AuthTokenExchange, TokenRequestReceived
from aauth_flows.machines.agent_provider import (
    AgentProviderConfig,
    AgentTokenRevocation,
    RevokeAgentToken,
    StaticAgentRegistry,
)
from aauth_flows.machines.as_policy import (
    AccessServerConfig,
    Grant,
    InMemoryAccessServerStore,
    PolicyRequest,
    StaticPersonServers,
)
from aauth_flows.machines.person_server import directed_sub
from aauth_flows.machines.signing import SigningKey

PS = "https://ps.aauth.test"
AP = "https://ap.aauth.test"
RS = "https://rs.aauth.test"
AS = "https://as.aauth.test"
AGENT = "aauth:assistant@ap.aauth.test"
SECRET = "a directed-sub secret of at least thirty-two bytes"
PASSWORD = "correct horse battery staple"
EVIL = '<script>alert("pwned")</script> & book <b>lunch</b>'

AP_KEY, PS_KEY, RS_KEY, AS_KEY = (generated_ed25519() for _ in range(4))
AGENT_KEY, INTRUDER_KEY = generated_ed25519(), generated_ed25519()
RESOLVER = StaticKeyResolver(
    {
        (AP, DWK_AGENT): (AP_KEY.public_jwk(),),
        (PS, DWK_PERSON): (PS_KEY.public_jwk(),),
        (RS, DWK_RESOURCE): (RS_KEY.public_jwk(),),
        (AS, DWK_ACCESS): (AS_KEY.public_jwk(),),
    }
)
SCOPES = {"calendar.read": "Read <b>your</b> calendar", "calendar.write": "Change your calendar"}
CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


def now() -> int:
    return int(time.time())


def agent_token(key: JwkSigner = AGENT_KEY, sub: str = AGENT) -> str:
    at = now()
    claims = AgentTokenClaims(
        iss=AP,
        dwk=DWK_AGENT,
        jti=f"agent-{sub}-{at}",
        iat=at - 5,
        exp=at + 3600,
        sub=AgentId.parse(sub),
        cnf=Confirmation(jwk=key.public_jwk()),
        ps=PS,
    )
    return mint_token(claims, AP_KEY)


class Agent:
    """An agent that signs its requests with its own key and AP-issued token."""

    def __init__(self, http: httpx.Client, key: JwkSigner = AGENT_KEY, sub: str = AGENT) -> None:
        self.http, self.key, self.token = http, key, agent_token(key, sub)

    def request(
        self, method: str, url: str, body: Any = None, extra: dict[str, str] | None = None
    ) -> HttpResponse:
        raw = (
            b""
            if body is None
            else (body if isinstance(body, bytes) else json.dumps(body).encode())
        )
        headers = {"Content-Type": "application/json"} if raw else {}
        headers.update(extra or {})
        bare = HttpRequest(method=method, url=url, headers=headers, body=raw)
        fields = sign_aauth_request(
            bare, self.key, token=self.token, created=now(), cover_body=bool(raw)
        )
        return send(self.http, evolve(bare, headers=bare.headers.with_fields(fields)))

    def post(self, url: str, body: Any) -> HttpResponse:
        return self.request("POST", url, body)

    def poll(self, url: str) -> HttpResponse:
        return self.request("GET", url)


def body(response: HttpResponse) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(response.body)
    return parsed


def interaction_of(response: HttpResponse) -> tuple[str, str, str]:
    """(pending URL, interaction URL, code) of a 202 that asks for interaction."""
    assert response.status == 202, response.body
    requirement = Requirement.parse(response.headers.get("aauth-requirement") or "")
    assert requirement.requirement == "interaction"
    location = response.headers.get("location")
    assert location is not None and requirement.url is not None and requirement.code
    return location, requirement.url, requirement.code


def resource_token(
    person_token: str,
    *,
    aud: str = PS,
    scope: str = "calendar.read",
    interaction: ResourceInteraction | None = None,
) -> str:
    pt = verify_person_token(person_token, keys=RESOLVER, now=now(), audience=RS).claims
    at = now()
    claims = ResourceTokenClaims(
        iss=RS,
        dwk=DWK_RESOURCE,
        jti=f"rt-{aud}-{at}",
        iat=at - 5,
        exp=at + 290,
        aud=aud,
        ps=PS,
        sub=pt.sub,
        presented_jti=pt.jti,
        agent_jkt=AGENT_KEY.public_jwk().thumbprint(),
        scope=scope,
        mission_s256=pt.mission_s256,
        tenant=pt.tenant,
        interaction=interaction,
    )
    return mint_token(claims, RS_KEY)


# -- the servers ------------------------------------------------------------------------


class Late:
    """An ASGI app whose real app is set once the ports (and so the egress) are known."""

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


def jwks_route(key: JwkSigner) -> Route:
    async def jwks(_request: Request) -> Response:
        return JSONResponse({"keys": [key.public_jwk().to_dict()]})

    return Route("/jwks", jwks)


def document_app(issuer: str, dwk: str, key: JwkSigner, **members: Any) -> Starlette:
    """A peer that publishes its metadata document and its JWKS (for discovery)."""

    async def metadata(_request: Request) -> Response:
        return JSONResponse({"issuer": issuer, "jwks_uri": f"{issuer}/jwks", **members})

    return Starlette(routes=[Route(f"/.well-known/{dwk}", metadata), jwks_route(key)])


def resource_app() -> Starlette:
    return document_app(RS, "aauth-resource.json", RS_KEY, scope_descriptions=SCOPES)


class Scripted:
    """An AS that first answers its token endpoint with ``canned`` responses, in order
    (then the real one), counting the requests it saw."""

    def __init__(self, canned: list[Response]) -> None:
        self.canned, self.inner, self.seen = canned, access_server_app(), 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/token":
            self.seen += 1
            if self.canned:
                await self.canned.pop(0)(scope, receive, send)
                return
        await self.inner(scope, receive, send)


class GrantAll:
    def decide(self, request: PolicyRequest) -> Grant:
        return Grant()


def access_server_app() -> Starlette:
    """A small AS: AuthTokenExchange behind a token endpoint (grants what it verifies)."""
    store = InMemoryAccessServerStore()
    config = AccessServerConfig(
        issuer=AS,
        signing_key=SigningKey(ref="as", public_jwk=AS_KEY.public_jwk()),
        pending_base=f"{AS}/pending",
        keys=RESOLVER,
        person_servers=StaticPersonServers(frozenset({PS})),
        policy=GrantAll(),
        revocations=store,
        issued=store,
        known_resources=frozenset({RS}),
    )

    async def metadata(_request: Request) -> Response:
        return JSONResponse(
            {"issuer": AS, "jwks_uri": f"{AS}/jwks", "auth_token_endpoint": f"{AS}/token"}
        )

    async def token(request: Request) -> Response:
        message = await from_starlette(request, origin=AS)
        event = TokenRequestReceived(request=message, at=now(), nonce=b"n" * 16)
        result = run_machine(
            AuthTokenExchange(config=config),
            event,
            signers={"as": AS_KEY},
            http=None,
            clock=now,
            store=store,
        )
        assert result.response is not None
        return to_starlette(result.response)

    return Starlette(
        routes=[
            Route("/.well-known/aauth-access.json", metadata),
            Route("/token", token, methods=["POST"]),
            jwks_route(AS_KEY),
        ]
    )


def settings(**overrides: Any) -> PersonServerSettings:
    section: dict[str, Any] = {
        "sub_secret": SECRET,
        "people": [
            {"id": "alice", "password_hash": hash_password(PASSWORD)},
            {"id": "bob", "password": "bob's password"},
        ],
        "revocation_issuers": [AP],
        "access_servers": [AS],
        "scopes_supported": ["calendar.read", "calendar.write"],
        "code_attempts": 3,
    }
    section.update(overrides)
    return PersonServerSettings.from_toml(section)


class World:
    def __init__(self, servers: dict[str, Any], http: httpx.Client, app: Starlette) -> None:
        self.servers, self.http, self.app = servers, http, app
        self.agent = Agent(http)
        self.browsers: list[httpx.Client] = []

    def browser(self) -> httpx.Client:
        transport = BrowserTransport({h: srv.port for h, srv in self.servers.items()})
        client = httpx.Client(transport=transport, base_url=PS, follow_redirects=False)
        self.browsers.append(client)
        return client


class BrowserTransport(httpx.BaseTransport):
    """Alice's browser: reaches the test hosts on loopback without rewriting the request
    URL (egress.client pins the address into the URL, so its cookie jar would file the
    session cookie under 127.0.0.1)."""

    def __init__(self, ports: dict[str, int]) -> None:
        self.ports = ports
        self.inner = httpx.HTTPTransport(
            verify=ssl.create_default_context(cafile=dev_tls().ca_file)
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        pinned = httpx.Request(
            request.method,
            request.url.copy_with(host="127.0.0.1", port=self.ports[host]),
            headers=request.headers,
            stream=request.stream,
            extensions={**request.extensions, "sni_hostname": host},
        )
        return self.inner.handle_request(pinned)

    def close(self) -> None:
        self.inner.close()


@contextlib.contextmanager
def ps_world(*, discovery: bool = False, as_app: Any = None, **overrides: Any) -> Iterator[World]:
    """The PS (keys from a static resolver, or by discovery) beside its peers, live."""
    late = Late()
    apps = {
        "ps.aauth.test": late,
        "rs.aauth.test": resource_app(),
        "as.aauth.test": as_app or access_server_app(),
        "ap.aauth.test": document_app(AP, "aauth-agent.json", AP_KEY),
    }
    with serve(apps) as servers, egress.client(policy(servers)) as http:
        context = ServerContext(
            issuer=PS,
            signer=PS_KEY,
            key_ref="software:ps",
            egress=policy(servers),
            http=http,
            keys=Discovery(http) if discovery else RESOLVER,
        )
        late.app = build_app(context, settings(**overrides))
        made = World(servers, http, late.app)
        try:
            yield made
        finally:
            late.app.state.person_server.close()
            for browser in made.browsers:
                browser.close()


@pytest.fixture
def world() -> Iterator[World]:
    with ps_world() as made:
        yield made


NONCE = re.compile(r'name="nonce" value="([^"]+)"')


def login(browser: httpx.Client, person: str = "alice", password: str = PASSWORD) -> httpx.Response:
    form = browser.get("/login", params={"next": "/interaction"})
    nonce = NONCE.search(form.text)
    assert form.status_code == 200 and nonce is not None
    data = {"person": person, "password": password, "next": "/interaction", "nonce": nonce.group(1)}
    return browser.post("/login", data=data)


def enter_code(browser: httpx.Client, code: str) -> httpx.Response:
    form = browser.get("/interaction", params={"code": code})
    assert form.status_code == 200, form.text
    csrf = CSRF.search(form.text)
    assert csrf is not None
    return browser.post("/interaction", data={"code": code, "csrf": csrf.group(1)})


def consent_form(browser: httpx.Client, location: str) -> tuple[httpx.Response, str]:
    page = browser.get(location)
    assert page.status_code == 200, page.text
    csrf = CSRF.search(page.text)
    assert csrf is not None
    return page, csrf.group(1)


def person_token_via_consent(world: World, browser: httpx.Client) -> str:
    answer = world.agent.post(
        f"{PS}/person-token",
        {"resource": RS, "capabilities": ["interaction"], "justification": EVIL},
    )
    pending, url, code = interaction_of(answer)
    assert url == f"{PS}/interaction"
    assert world.agent.poll(pending).status == 202
    assert login(browser).status_code == 303
    entered = enter_code(browser, code)
    assert entered.status_code == 303
    _, csrf = consent_form(browser, entered.headers["location"])
    decided = browser.post(entered.headers["location"], data={"csrf": csrf, "decision": "approve"})
    assert decided.status_code == 200 and "Approved" in decided.text
    delivered = world.agent.poll(pending)
    assert delivered.status == 200, delivered.body
    token: str = body(delivered)["person_token"]
    return token


# -- tests -------------------------------------------------------------------------------


def test_prefer_wait_holds_the_poll_until_the_person_decides(world: World) -> None:
    """§5.9 ``Prefer: wait``: the 202 says ``Retry-After: 0`` (poll at once), and the poll
    is held until the record changes, so it comes back with the token, not another 202."""
    ask = {"resource": RS, "capabilities": ["interaction"]}
    plain = world.agent.post(f"{PS}/person-token", ask)
    assert plain.headers.get("retry-after") == "5"  # no Prefer: the default interval
    prefer = {"Prefer": "wait=20"}
    again = {**ask, "justification": "asked again, willing to wait"}  # not a replay
    answer = world.agent.request("POST", f"{PS}/person-token", again, prefer)
    pending, _, code = interaction_of(answer)
    assert answer.headers.get("retry-after") == "0"
    browser = world.browser()
    assert login(browser).status_code == 303
    entered = enter_code(browser, code)  # the record changes: the agent sees "interacting"
    _, csrf = consent_form(browser, entered.headers["location"])
    held: list[HttpResponse] = []
    poller = threading.Thread(
        target=lambda: held.append(world.agent.request("GET", pending, None, prefer))
    )
    poller.start()
    time.sleep(0.3)  # ordering only: the poll is in before she decides
    assert not held, "the poll was answered before the person decided"
    decided = browser.post(entered.headers["location"], data={"csrf": csrf, "decision": "approve"})
    assert decided.status_code == 200
    poller.join(timeout=30)
    [delivered] = held
    assert delivered.status == 200, delivered.body
    assert body(delivered)["person_token"]


def test_person_token_and_auth_token_through_the_consent_page(world: World) -> None:
    browser = world.browser()
    # the code page needs a session: the browser is sent to log in and brought back
    answer = world.agent.post(
        f"{PS}/person-token",
        {"resource": RS, "capabilities": ["interaction"], "justification": EVIL},
    )
    pending, _, code = interaction_of(answer)
    first = browser.get("/interaction", params={"code": code})
    assert first.status_code == 303 and first.headers["location"].startswith("/login?next=")
    wrong = login(browser, password="wrong password")
    assert wrong.status_code == 401 and "Wrong id or password" in wrong.text
    assert COOKIE not in browser.cookies
    # a login posted without the login form's own cookie (a cross-site form) is refused
    crossed = world.browser().post(
        "/login", data={"person": "alice", "password": PASSWORD, "nonce": "x" * 32}
    )
    assert crossed.status_code == 403
    assert not [c for c in crossed.headers.get_list("set-cookie") if c.startswith(COOKIE + "=")]
    logged = login(browser)
    assert logged.status_code == 303
    [cookie] = [c for c in logged.headers.get_list("set-cookie") if c.startswith(COOKIE + "=")]
    for attribute in ("HttpOnly", "Secure", "SameSite=lax", "Path=/"):
        assert attribute.lower() in cookie.lower()
    prefilled = browser.get("/interaction", params={"code": code})
    assert f'value="{code}"' in prefilled.text

    entered = enter_code(browser, code)
    assert entered.status_code == 303
    consent_url = entered.headers["location"]
    page, csrf = consent_form(browser, consent_url)
    assert AGENT in page.text and AP in page.text and RS in page.text
    assert "<script>" not in page.text and "<b>lunch" not in page.text
    assert (
        "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt; &amp; book &lt;b&gt;lunch"
        in page.text
    )
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert world.agent.poll(pending).status == 202  # she has not decided yet

    # a CSRF token of another purpose (or none) is refused; nothing is decided
    forged = browser.post(consent_url, data={"csrf": "0" * 64, "decision": "approve"})
    assert forged.status_code == 403
    assert world.agent.poll(pending).status == 202
    approved = browser.post(consent_url, data={"csrf": csrf, "decision": "approve"})
    assert approved.status_code == 200
    delivered = world.agent.poll(pending)
    assert delivered.status == 200, delivered.body
    person_token = body(delivered)["person_token"]
    claims = verify_person_token(person_token, keys=RESOLVER, now=now(), audience=RS).claims
    assert claims.iss == PS and claims.sub == directed_sub(SECRET.encode(), "alice", RS)
    assert claims.cnf.binds(AGENT_KEY.public_jwk())
    assert world.agent.poll(pending).status == 410
    again = browser.post(consent_url, data={"csrf": csrf, "decision": "approve"})
    assert again.status_code == 409  # already decided: the machine refuses, the page says so

    # the auth token: same person (bound now), scopes with the resource's descriptions
    rt = resource_token(person_token, scope="calendar.read calendar.write")
    answer = world.agent.post(
        f"{PS}/auth-token",
        {
            "resource_token": rt,
            "presented_token": person_token,
            "capabilities": ["interaction"],
            "justification": "to find a free slot",
        },
    )
    pending, _, code = interaction_of(answer)
    entered = enter_code(browser, code)
    first_csrf = csrf
    page, csrf = consent_form(browser, entered.headers["location"])
    # the token of the first request's form is no good for this one
    other = browser.post(
        entered.headers["location"], data={"csrf": first_csrf, "decision": "approve"}
    )
    assert other.status_code == 403
    assert "calendar.read" in page.text and "calendar.write" in page.text
    assert (
        "Read &lt;b&gt;your&lt;/b&gt; calendar" in page.text and "Change your calendar" in page.text
    )
    assert "to find a free slot" in page.text
    # another agent of the same AP polling this pending URL learns nothing
    intruder = Agent(world.http, INTRUDER_KEY, "aauth:intruder@ap.aauth.test")
    assert intruder.poll(pending).status == 404
    approved = browser.post(entered.headers["location"], data={"csrf": csrf, "decision": "approve"})
    assert approved.status_code == 200
    delivered = world.agent.poll(pending)
    assert delivered.status == 200, delivered.body
    auth = verify_auth_token(body(delivered)["auth_token"], keys=RESOLVER, now=now(), audience=RS)
    assert auth.claims.iss == PS and auth.claims.scope == "calendar.read calendar.write"


def test_denial_reaches_the_agent_and_another_person_cannot_decide(world: World) -> None:
    alice = world.browser()
    person_token = person_token_via_consent(world, alice)
    rt = resource_token(person_token)
    answer = world.agent.post(
        f"{PS}/auth-token",
        {"resource_token": rt, "presented_token": person_token, "capabilities": ["interaction"]},
    )
    pending, _, code = interaction_of(answer)
    # bob logs in and enters alice's code: the page opens, but his decision is not taken
    bob = world.browser()
    assert login(bob, "bob", "bob's password").status_code == 303
    entered = enter_code(bob, code)
    assert entered.status_code == 303
    _, csrf = consent_form(bob, entered.headers["location"])
    refused = bob.post(entered.headers["location"], data={"csrf": csrf, "decision": "approve"})
    assert refused.status_code == 409
    # alice cannot use bob's page (not reached from her session), nor re-use the code
    assert alice.get(entered.headers["location"]).status_code == 404
    reused = enter_code(alice, code)
    assert reused.status_code == 410 and "no longer valid" in reused.text
    _, bob_csrf = consent_form(bob, entered.headers["location"])
    # bob may deny? no: only the bound person decides, deny included
    assert (
        bob.post(
            entered.headers["location"], data={"csrf": bob_csrf, "decision": "deny"}
        ).status_code
        == 409
    )
    assert world.agent.poll(pending).status == 202

    # a fresh request that alice denies
    rt = resource_token(person_token, scope="calendar.write")
    answer = world.agent.post(
        f"{PS}/auth-token",
        {"resource_token": rt, "presented_token": person_token, "capabilities": ["interaction"]},
    )
    pending, _, code = interaction_of(answer)
    entered = enter_code(alice, code)
    _, csrf = consent_form(alice, entered.headers["location"])
    denied = alice.post(entered.headers["location"], data={"csrf": csrf, "decision": "deny"})
    assert denied.status_code == 200 and "Denied" in denied.text
    answer = world.agent.poll(pending)
    assert answer.status == 403 and body(answer)["error"] == "denied"
    assert world.agent.poll(pending).status == 410


def test_wrong_codes_are_refused_and_rate_limited_per_session(world: World) -> None:
    answer = world.agent.post(
        f"{PS}/person-token", {"resource": RS, "capabilities": ["interaction"]}
    )
    pending, _, code = interaction_of(answer)
    browser = world.browser()
    assert login(browser).status_code == 303
    assert enter_code(browser, "ZZZZ-ZZZZ").status_code == 400  # well formed, unknown
    malformed = enter_code(browser, "<not a code>")
    assert malformed.status_code == 400 and "&lt;not a code&gt;" not in malformed.text
    assert enter_code(browser, "AAAA-AAAA").status_code == 400
    limited = enter_code(browser, code)  # even the right code, once the session is over the limit
    assert limited.status_code == 429
    # a new session may still enter it; the interaction form's CSRF is bound to the session
    other = world.browser()
    assert login(other).status_code == 303
    stale = browser.get("/interaction").text
    stolen = CSRF.search(stale)
    assert stolen is not None
    assert (
        other.post("/interaction", data={"code": code, "csrf": stolen.group(1)}).status_code == 403
    )
    assert enter_code(other, code).status_code == 303
    assert world.agent.poll(pending).status == 202


def test_hostile_agent_requests_get_answers_and_the_server_keeps_serving(world: World) -> None:
    agent = world.agent
    big = agent.post(f"{PS}/person-token", b'{"resource":"' + b"x" * 70_000 + b'"}')
    assert big.status == 413
    malformed = agent.post(f"{PS}/person-token", b'{"resource": ')
    assert malformed.status == 400 and body(malformed)["error"] == "invalid_request"
    unsigned = send(world.http, HttpRequest(method="POST", url=f"{PS}/person-token", body=b"{}"))
    assert unsigned.status == 401 and unsigned.headers.get("signature-error") is not None
    assert agent.poll(f"{PS}/pending/no-such-request").status == 404
    assert agent.poll(f"{PS}/nowhere").status == 404
    unreachable = agent.post(f"{PS}/person-token", {"resource": RS})  # no interaction capability
    assert unreachable.status == 403 and body(unreachable)["error"] == "user_unreachable"
    browser = world.browser()
    huge_form = browser.post(
        "/login",
        content=b"a=" + b"b" * 20_000,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert huge_form.status_code == 413
    assert (
        browser.post(
            "/login", content=b"{}", headers={"Content-Type": "application/json"}
        ).status_code
        == 415
    )
    assert browser.get("/consent/whatever").status_code == 303  # no session: log in first
    # where a login returns to is a path on the PS, never another site
    for elsewhere in ("//evil.aauth.test/", "/\t/evil.aauth.test", "https://evil.aauth.test/"):
        form = world.browser().get("/login", params={"next": elsewhere})
        assert 'name="next" value="/interaction"' in form.text
        nonce = NONCE.search(form.text)
        assert nonce is not None
        fields = {"person": "bob", "password": "bob's password", "next": elsewhere}
        done = world.browsers[-1].post("/login", data={**fields, "nonce": nonce.group(1)})
        assert done.status_code == 303 and done.headers["location"] == "/interaction"
    assert login(browser).status_code == 303
    assert browser.get("/consent/whatever").status_code == 404
    assert browser.get("/callback/whatever").status_code == 404
    page = browser.get("/interaction").text
    logout_csrf = re.search(
        r'action=/logout><input type=hidden name="csrf" value="([0-9a-f]+)"', page
    )
    assert logout_csrf is not None
    assert browser.post("/logout", data={"csrf": "f" * 64}).status_code == 403
    assert browser.post("/logout", data={"csrf": logout_csrf.group(1)}).status_code == 303
    assert browser.get("/interaction").status_code == 303  # the session is over
    metadata = world.http.get(f"{PS}/.well-known/aauth-person.json")
    assert metadata.status_code == 200
    document = metadata.json()
    assert document["issuer"] == PS and document["person_token_endpoint"] == f"{PS}/person-token"
    assert world.http.get(f"{PS}/jwks").json()["keys"][0]["x"] == PS_KEY.public_jwk().to_dict()["x"]


def test_four_party_request_federates_with_the_access_server(world: World) -> None:
    browser = world.browser()
    person_token = person_token_via_consent(world, browser)
    rt = resource_token(person_token, aud=AS, scope="calendar.read")
    answer = world.agent.post(
        f"{PS}/auth-token", {"resource_token": rt, "presented_token": person_token}
    )
    assert answer.status == 202, answer.body
    pending = answer.headers.get("location")
    assert pending is not None
    delivered = None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the federation runs in the background
        polled = world.agent.poll(pending)
        if polled.status != 202:
            delivered = polled
            break
        time.sleep(0.05)
    assert delivered is not None and delivered.status == 200, delivered and delivered.body
    auth = verify_auth_token(body(delivered)["auth_token"], keys=RESOLVER, now=now(), audience=RS)
    assert auth.claims.iss == AS and auth.claims.scope == "calendar.read"
    assert world.app.state.person_server.federation.running() == 0


def test_with_discovery_the_ps_finds_peer_keys_descriptions_and_the_access_server(
    discovery_world: World,
) -> None:
    world = discovery_world
    browser = world.browser()
    person_token = person_token_via_consent(world, browser)  # agent token: the AP's JWKS
    rt = resource_token(person_token, scope="calendar.read")  # the resource's JWKS
    answer = world.agent.post(
        f"{PS}/auth-token",
        {"resource_token": rt, "presented_token": person_token, "capabilities": ["interaction"]},
    )
    pending, _, code = interaction_of(answer)
    entered = enter_code(browser, code)
    page, csrf = consent_form(browser, entered.headers["location"])
    assert "Read &lt;b&gt;your&lt;/b&gt; calendar" in page.text  # discovered metadata
    assert (
        browser.post(
            entered.headers["location"], data={"csrf": csrf, "decision": "approve"}
        ).status_code
        == 200
    )
    assert world.agent.poll(pending).status == 200
    federated = world.agent.post(
        f"{PS}/auth-token",
        {"resource_token": resource_token(person_token, aud=AS), "presented_token": person_token},
    )
    location = federated.headers.get("location")
    assert federated.status == 202 and location is not None
    deadline = time.monotonic() + 10
    polled = world.agent.poll(location)
    while polled.status == 202 and time.monotonic() < deadline:
        time.sleep(0.05)
        polled = world.agent.poll(location)
    assert polled.status == 200, polled.body
    auth = verify_auth_token(body(polled)["auth_token"], keys=RESOLVER, now=now(), audience=RS)
    assert auth.claims.iss == AS


def federate(world: World) -> HttpResponse:
    """A four-party request, polled until the PS has the AS's outcome."""
    person_token = person_token_via_consent(world, world.browser())
    answer = world.agent.post(
        f"{PS}/auth-token",
        {"resource_token": resource_token(person_token, aud=AS), "presented_token": person_token},
    )
    location = answer.headers.get("location")
    assert answer.status == 202 and location is not None
    deadline = time.monotonic() + 10
    polled = world.agent.poll(location)
    while polled.status == 202 and time.monotonic() < deadline:
        time.sleep(0.05)
        polled = world.agent.poll(location)
    return polled


def test_federation_waits_out_a_busy_access_server() -> None:
    busy = Response(status_code=503, headers={"Retry-After": "1"})
    access = Scripted([busy])
    with ps_world(as_app=access) as world:
        polled = federate(world)
        assert polled.status == 200, polled.body
        assert access.seen == 2  # the first answer was 503: asked again after Retry-After


def test_federation_refuses_to_pay_unless_configured() -> None:
    payment = Response(
        status_code=402,
        headers={"Location": f"{AS}/pending/pay-1", "WWW-Authenticate": "Payment"},
    )
    with ps_world(as_app=Scripted([payment])) as world:
        polled = federate(world)
        assert polled.status == 402 and body(polled)["error"] == "payment_required"
        assert world.app.state.person_server.federation.running() == 0


def test_settings_from_toml_refuse_bad_config_and_hash_passwords() -> None:
    good = settings()
    assert verify_password(good.people["alice"], PASSWORD)
    assert not verify_password(good.people["alice"], "wrong")
    assert not verify_password(None, PASSWORD)
    assert not verify_password(None, "not a password")  # not even the stand-in's own
    assert verify_password(good.people["bob"], "bob's password")
    assert SECRET not in repr(good) and "scrypt" not in repr(good)
    for bad, message in (
        ({"sub_secret": "short"}, "at least 32"),
        ({"consent_mode": "telepathy"}, "consent_mode"),
        ({"people": []}, "people"),
        ({"access_servers": ["http://as.example"]}, "server identifier"),
        ({"surprise": 1}, "unknown"),
        ({"code_attempts": "3"}, "integer"),
    ):
        with pytest.raises(ValueError, match=message):
            settings(**bad)


def test_the_person_asks_the_agent_and_sees_its_answer_as_text(world: World) -> None:
    answer = world.agent.post(
        f"{PS}/person-token", {"resource": RS, "capabilities": ["interaction"]}
    )
    pending, _, code = interaction_of(answer)
    browser = world.browser()
    assert login(browser).status_code == 303
    consent_url = enter_code(browser, code).headers["location"]
    _, csrf = consent_form(browser, consent_url)
    empty = browser.post(consent_url, data={"csrf": csrf, "decision": "ask", "question": " "})
    assert empty.status_code == 400
    asked = browser.post(
        consent_url, data={"csrf": csrf, "decision": "ask", "question": "Which calendar?"}
    )
    assert asked.status_code == 200 and "Question sent" in asked.text
    polled = world.agent.poll(pending)
    assert polled.status == 202
    assert Requirement.parse(polled.headers.get("aauth-requirement") or "").requirement == (
        "clarification"
    )
    assert body(polled)["clarification"] == "Which calendar?"
    waiting = browser.get(consent_url)
    assert waiting.status_code == 200 and "not answered" in waiting.text
    reply = {"action": "clarification_response", "clarification_response": EVIL}
    assert world.agent.post(pending, reply).status == 202
    page, csrf = consent_form(browser, consent_url)
    assert "The agent answered your question" in page.text
    assert "<script>" not in page.text and "&lt;script&gt;" in page.text
    assert browser.post(consent_url, data={"csrf": csrf, "decision": "approve"}).status_code == 200
    assert world.agent.poll(pending).status == 200


def test_resource_interaction_redirects_the_browser_and_its_callback_resumes(
    world: World,
) -> None:
    browser = world.browser()
    person_token = person_token_via_consent(world, browser)

    def ask(scope: str) -> tuple[str, str]:
        interaction = ResourceInteraction(url=f"{RS}/link", code=generate_code(os.urandom(8)))
        rt = resource_token(person_token, scope=scope, interaction=interaction)
        answer = world.agent.post(
            f"{PS}/auth-token",
            {
                "resource_token": rt,
                "presented_token": person_token,
                "capabilities": ["interaction"],
            },
        )
        pending, _, code = interaction_of(answer)
        sent = enter_code(browser, code)
        assert sent.status_code == 303
        target = httpx.URL(sent.headers["location"])
        assert f"{target.scheme}://{target.host}{target.path}" == f"{RS}/link"
        assert target.params["code"] == interaction.code
        callback = target.params["callback"]
        assert callback.startswith(f"{PS}/callback/")
        assert world.agent.poll(pending).status == 202
        return pending, callback

    # the resource's page completes: back at the PS, the PS's own consent follows
    pending, callback = ask("calendar.read")
    stranger = world.browser()
    assert login(stranger, "bob", "bob's password").status_code == 303
    assert stranger.get(callback).status_code == 404  # not the browser that was sent there
    back = browser.get(callback)
    assert back.status_code == 303
    _, csrf = consent_form(browser, back.headers["location"])
    assert (
        browser.post(
            back.headers["location"], data={"csrf": csrf, "decision": "approve"}
        ).status_code
        == 200
    )
    assert world.agent.poll(pending).status == 200

    # the resource's page says the person refused: the agent is told so
    pending, callback = ask("calendar.write")
    ended = browser.get(callback, params={"error": "access_denied"})
    assert ended.status_code == 410
    refused = world.agent.poll(pending)
    assert refused.status == 403 and body(refused)["error"] == "denied"


@pytest.fixture
def approval_world() -> Iterator[World]:
    with ps_world(consent_mode="approval") as made:
        yield made


@pytest.fixture
def discovery_world() -> Iterator[World]:
    with ps_world(discovery=True) as made:
        yield made


def test_approval_mode_asks_the_bound_person_on_her_approvals_page(approval_world: World) -> None:
    world = approval_world
    alice = world.browser()
    # the first request binds the agent (interaction: the PS does not know whose it is yet)
    person_token = person_token_via_consent(world, alice)
    rt = resource_token(person_token)
    answer = world.agent.post(
        f"{PS}/auth-token", {"resource_token": rt, "presented_token": person_token}
    )
    assert answer.status == 202
    assert answer.headers.get("aauth-requirement") == "requirement=approval"
    pending = answer.headers.get("location")
    assert pending is not None
    bob = world.browser()
    assert login(bob, "bob", "bob's password").status_code == 303
    assert "Nothing is waiting" in bob.get("/approvals").text
    listing = alice.get("/approvals")
    link = re.search(r'href="(/consent/[^"]+)"', listing.text)
    assert link is not None and AGENT in listing.text
    assert bob.get(link.group(1)).status_code == 404
    _, csrf = consent_form(alice, link.group(1))
    assert alice.post(link.group(1), data={"csrf": csrf, "decision": "approve"}).status_code == 200
    delivered = world.agent.poll(pending)
    assert delivered.status == 200
    assert "Nothing is waiting" in alice.get("/approvals").text


def test_app_shutdown_stops_background_federations() -> None:
    with egress.client(policy()) as http:
        context = ServerContext(
            issuer=PS,
            signer=PS_KEY,
            key_ref="software:ps",
            egress=policy(),
            http=http,
            keys=RESOLVER,
        )
        app = build_app(context, settings())
        server = app.state.person_server

        async def run_lifespan() -> bool:
            async with app.router.lifespan_context(app):
                return bool(server.federation._closed)

        assert asyncio.run(run_lifespan()) is False  # running while the app runs
        assert server.federation._closed  # the shutdown closed it


def test_an_agent_provider_revokes_an_agent_token_and_the_ps_refuses_it(world: World) -> None:
    person_token = person_token_via_consent(world, world.browser())
    claims = inspect_token(world.agent.token).payload
    ap = AgentProviderConfig(
        issuer=AP,
        signing_key=SigningKey(ref="ap", public_jwk=AP_KEY.public_jwk()),
        registry=StaticAgentRegistry({}),
        keys=RESOLVER,
    )
    revoke = RevokeAgentToken(
        jti=claims["jti"], exp=claims["exp"], revocation_endpoint=f"{PS}/revoke", at=now()
    )
    result = run_machine(
        AgentTokenRevocation(config=ap), revoke, signers={"ap": AP_KEY}, http=world.http, clock=now
    )
    assert [type(a).__name__ for a in result.later] == ["Deliver"], result.later
    store = world.app.state.person_server.store
    assert store.is_revoked(AP, claims["jti"])
    # the cascade revoked what the PS issued to that agent: the person token too
    issued = verify_person_token(person_token, keys=RESOLVER, now=now(), audience=RS).claims
    assert store.is_revoked(PS, issued.jti)
    refused = world.agent.post(f"{PS}/person-token", {"resource": RS})
    assert refused.status in (401, 403) and "revoked" in body(refused)["error"]
    # another server cannot revoke in the AP's name: an unsigned request is refused
    forged = send(
        world.http,
        HttpRequest(
            method="POST",
            url=f"{PS}/revoke",
            headers={"Content-Type": "application/json"},
            body=json.dumps({"jti": "x", "exp": now() + 60}).encode(),
        ),
    )
    assert forged.status == 401
