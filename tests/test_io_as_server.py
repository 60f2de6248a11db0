"""The reference Access Server over real TLS sockets: a PS-signed token request exchanged
for an auth token (at once, or through its pending URL after a signed-in person binds her
PS at the AS's ``/bind`` page), the configured scope policy, revocation, and bad input
answered with the right status while the server keeps serving. The bind page is an
approval page (protocol §8): sign-in first, a form token bound to the session and the
request, one answer for every bad code, wrong codes limited per person."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from live import policy, serve
from signing_helpers import JwkSigner, generated_ed25519
from test_io_ap_server import make_context

from aauth_core.headers.requirement import Requirement
from aauth_core.http import HttpRequest, HttpResponse
from aauth_core.identifiers import AgentId
from aauth_core.jwk import PublicJwk
from aauth_core.server_requests import sign_server_request
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
    TokenType,
    inspect_token,
    mint_token,
    verify_token,
)
from aauth_flows.io import egress
from aauth_flows.io.messages import send
from aauth_flows.io.passwords import hash_password
from aauth_flows.io.servers.access import AccessServerSettings, build_app

AS = "https://as.aauth.test"
PS = "https://ps.aauth.test"
OTHER_PS = "https://other.aauth.test"
AP = "https://ap.aauth.test"
RS = "https://calendar.aauth.test"
UNKNOWN_RS = "https://api.aauth.test"
AGENT = AgentId.parse("aauth:assistant@ap.aauth.test")


class Keys:
    def __init__(self) -> None:
        self.signers: dict[str, JwkSigner] = {
            n: generated_ed25519() for n in ("as", "ps", "other-ps", "ap", "rs", "api", "agent")
        }

    def pub(self, name: str) -> PublicJwk:
        return self.signers[name].public_jwk()

    def resolver(self) -> StaticKeyResolver:
        return StaticKeyResolver(
            {
                (PS, DWK_PERSON): (self.pub("ps"),),
                (OTHER_PS, DWK_PERSON): (self.pub("other-ps"),),
                (AP, DWK_AGENT): (self.pub("ap"),),
                (RS, DWK_RESOURCE): (self.pub("rs"),),
                (UNKNOWN_RS, DWK_RESOURCE): (self.pub("api"),),
                (AS, DWK_ACCESS): (self.pub("as"),),
            }
        )


SETTINGS: dict[str, Any] = {
    "person_servers": [PS, OTHER_PS],
    "token_lifetime": 900,
    "resources": {RS: {"scopes": ["calendar.read"]}},
}
PASSWORDS = {"alice": "alice's password", "bob": "bob's password"}
BINDING: dict[str, Any] = {
    **SETTINGS,
    "bind_person_server": True,
    "people": [
        {"id": "alice", "password_hash": hash_password(PASSWORDS["alice"])},
        {"id": "bob", "password": PASSWORDS["bob"]},  # hashed on load (demos)
    ],
}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


class World:
    def __init__(
        self, http: httpx.Client, keys: Keys, app: Any, routes: egress.EgressPolicy
    ) -> None:
        self.http = http
        self.keys = keys
        self.app = app
        self.routes = routes
        self.serial = 0

    def browser(self) -> httpx.Client:
        """Another browser: the same routes to the server, its own cookies."""
        return egress.client(self.routes)

    def jti(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}-{self.serial}-{time.time_ns()}"

    def token_body(
        self, *, resource: str = RS, scope: str = "calendar.read calendar.write"
    ) -> dict[str, Any]:
        now = int(time.time())
        agent_pub = self.keys.pub("agent")
        signer = self.keys.signers
        agent = AgentTokenClaims(
            iss=AP,
            dwk=DWK_AGENT,
            jti=self.jti("agent"),
            iat=now,
            exp=now + 3600,
            sub=AGENT,
            cnf=Confirmation(jwk=agent_pub),
            ps=PS,
        )
        person = PersonTokenClaims(
            iss=PS,
            dwk=DWK_PERSON,
            jti=self.jti("person"),
            iat=now,
            exp=now + 1800,
            aud=resource,
            sub="alice-at-calendar",
            cnf=Confirmation(jwk=agent_pub),
        )
        rt = ResourceTokenClaims(
            iss=resource,
            dwk=DWK_RESOURCE,
            jti=self.jti("rt"),
            iat=now,
            exp=now + 290,
            aud=AS,
            ps=PS,
            sub="alice-at-calendar",
            presented_jti=person.jti,
            agent_jkt=agent_pub.thumbprint(),
            scope=scope,
        )
        return {
            "resource_token": mint_token(rt, signer["rs" if resource == RS else "api"]),
            "agent_token": mint_token(agent, signer["ap"]),
            "presented_token": mint_token(person, signer["ps"]),
        }

    def signed(
        self,
        method: str,
        url: str,
        body: dict[str, Any] | None = None,
        *,
        as_ps: str = "ps",
        issuer: str = PS,
        created: int | None = None,
    ) -> HttpRequest:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        payload = json.dumps(body).encode() if body is not None else b""
        bare = HttpRequest(method=method, url=url, headers=headers, body=payload)
        added = sign_server_request(
            bare,
            self.keys.signers[as_ps],
            issuer=issuer,
            dwk=DWK_PERSON,
            created=int(time.time()) if created is None else created,
        )
        return HttpRequest(method=method, url=url, headers={**headers, **added}, body=payload)

    def send(self, request: HttpRequest) -> HttpResponse:
        return send(self.http, request)

    def auth_token(self, response: HttpResponse) -> AuthTokenClaims:
        assert response.status == 200, response.body
        token = json.loads(response.body)["auth_token"]
        jwks = self.http.get(f"{AS}/jwks").json()["keys"]
        resolver = StaticKeyResolver({(AS, DWK_ACCESS): tuple(map(PublicJwk.from_dict, jwks))})
        verified = verify_token(
            token, expected=(TokenType.AUTH,), keys=resolver, now=int(time.time()), audience=RS
        )
        assert isinstance(verified.claims, AuthTokenClaims)
        return verified.claims


def _serve(settings: dict[str, Any]) -> Iterator[World]:
    keys = Keys()
    app = build_app(
        make_context(AS, keys.signers["as"], keys.resolver()),
        AccessServerSettings.from_toml(settings),
    )
    with serve({"as.aauth.test": app}) as servers:
        routes = policy(servers)
        with egress.client(routes) as http:
            yield World(http, keys, app, routes)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    yield from _serve(SETTINGS)


@pytest.fixture
def binding() -> Iterator[World]:
    yield from _serve(BINDING)


def problem(response: HttpResponse) -> str:
    assert response.headers.get("content-type") == "application/problem+json"
    code: str = json.loads(response.body)["error"]
    return code


def test_metadata_names_the_endpoints(world: World) -> None:
    document = world.http.get(f"{AS}/.well-known/aauth-access.json").json()
    assert document == {
        "issuer": AS,
        "jwks_uri": f"{AS}/jwks",
        "auth_token_endpoint": f"{AS}/token",
        "revocation_endpoint": f"{AS}/revoke",
    }


def test_ps_signed_request_gets_an_auth_token_with_the_configured_scope(world: World) -> None:
    response = world.send(world.signed("POST", f"{AS}/token", world.token_body()))
    claims = world.auth_token(response)
    assert claims.iss == AS and claims.aud == RS and claims.ps == PS
    assert claims.scope == "calendar.read"  # calendar.write asked for, not configured
    assert claims.exp - claims.iat <= 900


def test_policy_denies_unknown_resource_and_unconfigured_scopes(world: World) -> None:
    body = world.token_body(resource=UNKNOWN_RS)
    response = world.send(world.signed("POST", f"{AS}/token", body))
    assert response.status == 403 and problem(response) == "denied"
    body = world.token_body(scope="calendar.write")
    response = world.send(world.signed("POST", f"{AS}/token", body))
    assert response.status == 403 and problem(response) == "denied"


def test_bad_requests_get_their_status_and_the_server_keeps_serving(world: World) -> None:
    body = world.token_body()
    # not signed
    plain = HttpRequest(
        method="POST",
        url=f"{AS}/token",
        headers={"Content-Type": "application/json"},
        body=json.dumps(body).encode(),
    )
    response = world.send(plain)
    assert response.status == 401 and response.headers.get("signature-error")
    # signed by a PS the AS has keys for but with a stale signature
    stale = world.signed("POST", f"{AS}/token", body, created=int(time.time()) - 300)
    assert world.send(stale).status == 401
    # a body changed after signing
    good = world.signed("POST", f"{AS}/token", body)
    tampered = HttpRequest(
        method="POST",
        url=good.url,
        headers=list(good.headers.pairs),
        body=json.dumps({**body, "agent_token": body["presented_token"]}).encode(),
    )
    assert world.send(tampered).status == 401
    # another trusted PS relays tokens whose resource token names the first PS
    relayed = world.signed("POST", f"{AS}/token", body, as_ps="other-ps", issuer=OTHER_PS)
    response = world.send(relayed)
    assert response.status == 400 and problem(response) == "invalid_resource_token"
    # a token swapped for another type
    swapped = {**body, "presented_token": body["agent_token"]}
    response = world.send(world.signed("POST", f"{AS}/token", swapped))
    assert response.status == 400
    # missing members, not JSON, wrong method, unknown pending URL, oversize body
    response = world.send(world.signed("POST", f"{AS}/token", {"agent_token": "x"}))
    assert response.status == 400 and problem(response) == "invalid_request"
    assert world.http.post(f"{AS}/token", content=b"{").status_code == 401
    assert world.http.get(f"{AS}/token").status_code == 405
    response = world.send(world.signed("GET", f"{AS}/pending/nope"))
    assert response.status == 404 and problem(response) == "not_found"
    big = world.http.post(f"{AS}/token", content=b"x" * (300 * 1024))
    assert big.status_code == 413
    # and it still answers a good request
    world.auth_token(world.send(world.signed("POST", f"{AS}/token", world.token_body())))


def test_untrusted_person_server_is_refused() -> None:
    for w in _serve({**SETTINGS, "person_servers": [PS]}):
        body = w.token_body()
        request = w.signed("POST", f"{AS}/token", body, as_ps="other-ps", issuer=OTHER_PS)
        response = w.send(request)
        assert response.status == 403 and problem(response) == "unsupported_iss"


def hidden(page: httpx.Response, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page.text)
    assert found is not None, f"no {name} field in {page.text}"
    return found.group(1)


def sign_in(w: World, person: str, *, client: httpx.Client | None = None) -> httpx.Client:
    """Log ``person`` in through the real form (login CSRF nonce from cookie + field)."""
    http = client if client is not None else w.http
    form = http.get(f"{AS}/login", params={"next": "/bind"})
    assert form.status_code == 200
    done = http.post(
        f"{AS}/login",
        data={
            "next": hidden(form, "next"),
            "nonce": hidden(form, "nonce"),
            "person": person,
            "password": PASSWORDS[person],
        },
    )
    assert done.status_code == 303 and done.headers["location"] == "/bind"
    return http


def ask(w: World) -> tuple[str, str]:
    """A token request that needs the person to bind her PS: (pending URL, code)."""
    first = w.send(w.signed("POST", f"{AS}/token", w.token_body()))
    assert first.status == 202
    location = first.headers.get("location")
    raw = first.headers.get("aauth-requirement")
    assert location is not None and location.startswith(f"{AS}/pending/") and raw is not None
    requirement = Requirement.parse(raw)
    assert requirement.requirement == "interaction" and requirement.code
    assert requirement.url == f"{AS}/bind"
    return location, requirement.code


def confirm(w: World, code: str) -> tuple[httpx.Response, str]:
    """Open the confirm page for ``code``: (the page, its form token)."""
    page = w.http.get(f"{AS}/bind", params={"code": code})
    assert page.status_code == 200, page.text
    return page, hidden(page, "csrf")


def post_bind(w: World, code: str, csrf: str, http: httpx.Client | None = None) -> httpx.Response:
    return (http or w.http).post(f"{AS}/bind", data={"code": code, "csrf": csrf})


def still_pending(w: World, location: str) -> None:
    assert w.send(w.signed("GET", location)).status == 202


def test_pending_flow_binds_the_person_server_then_issues(binding: World) -> None:
    w = binding
    location, code = ask(w)

    # still pending; only the PS that asked may poll
    still_pending(w, location)
    stranger = w.send(w.signed("GET", location, as_ps="other-ps", issuer=OTHER_PS))
    assert stranger.status == 404
    assert w.send(w.signed("PUT", location)).status == 405

    # the code alone opens nothing: the page sends the browser to sign in first
    page = w.http.get(f"{AS}/bind", params={"code": code})
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=" + f"%2Fbind%3Fcode%3D{code}"
    sign_in(w, "alice")

    # the signed-in person sees who asks for what, and binds her PS
    page, csrf = confirm(w, code)
    assert PS in page.text and str(AGENT) in page.text and RS in page.text
    assert "calendar.read" in page.text and "alice" in page.text
    missing = w.http.get(f"{AS}/bind", params={"code": "ZZZZ-ZZZZ"})
    assert missing.status_code == 404
    done = post_bind(w, code, csrf)
    assert done.status_code == 200 and "bound" in done.text
    assert w.app.state.policy.bound_by == {PS: "alice"}

    # the code is spent: the same answer as a code that never existed
    again = post_bind(w, code, csrf)
    assert again.status_code == 404
    assert w.http.get(f"{AS}/bind", params={"code": code}).status_code == 404
    unknown_text = "This code is unknown, expired or already used."
    assert unknown_text in again.text and unknown_text in missing.text

    # the PS's next poll gets the token (restored from the stored snapshot), then 410
    claims = w.auth_token(w.send(w.signed("GET", location)))
    assert claims.scope == "calendar.read"
    assert w.send(w.signed("GET", location)).status == 410

    # once bound, the same PS is answered at once
    w.auth_token(w.send(w.signed("POST", f"{AS}/token", w.token_body())))


def test_bind_needs_a_signed_in_person(binding: World) -> None:
    w = binding
    location, code = ask(w)
    # a post without a session (a code holder, a forged form) binds nothing
    posted = w.http.post(f"{AS}/bind", data={"code": code, "csrf": "x"})
    assert posted.status_code == 303 and posted.headers["location"].startswith("/login?next=")
    assert w.http.get(f"{AS}/bind").status_code == 303
    # a made-up session cookie is no session
    w.http.cookies.set("__Host-aauth-as", "made-up", domain="as.aauth.test")
    assert w.http.get(f"{AS}/bind", params={"code": code}).status_code == 303
    w.http.cookies.clear()
    still_pending(w, location)
    assert w.app.state.policy.bound == set()


def test_login_refuses_wrong_passwords_and_forged_forms(binding: World) -> None:
    w = binding
    form = w.http.get(f"{AS}/login", params={"next": "https://evil.aauth.test/"})
    assert form.status_code == 200
    assert hidden(form, "next") == "/bind"  # only a path on this server is a way back
    fields = {"next": "/bind", "nonce": hidden(form, "nonce"), "person": "alice"}
    wrong = w.http.post(f"{AS}/login", data={**fields, "password": "guess"})
    assert wrong.status_code == 401 and "__Host-aauth-as=" not in wrong.headers.get(
        "set-cookie", ""
    )
    again = {**fields, "nonce": hidden(wrong, "nonce")}  # each form has a fresh nonce
    unknown = w.http.post(f"{AS}/login", data={**again, "person": "mallory", "password": "x"})
    assert unknown.status_code == 401
    # a cross-site post has no login nonce cookie: refused even with the right password
    with w.browser() as other:
        forged = other.post(
            f"{AS}/login", data={**fields, "nonce": "forged", "password": PASSWORDS["alice"]}
        )
        assert forged.status_code == 403
    fresh = w.http.get(f"{AS}/login")
    good = w.http.post(
        f"{AS}/login",
        data={**fields, "nonce": hidden(fresh, "nonce"), "password": PASSWORDS["alice"]},
    )
    assert good.status_code == 303
    cookie = next(
        v for k, v in good.headers.multi_items() if k == "set-cookie" and "aauth-as=" in v
    )
    assert cookie.startswith("__Host-aauth-as=")
    attributes = {a.strip().lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "secure", "samesite=lax", "path=/"} <= attributes
    assert not any(a.startswith("domain") for a in attributes)
    assert w.http.get(f"{AS}/bind").status_code == 200


def test_bind_form_token_is_bound_to_the_session_and_the_request(binding: World) -> None:
    w = binding
    first, first_code = ask(w)
    second, second_code = ask(w)
    sign_in(w, "alice")
    _, first_csrf = confirm(w, first_code)
    _, second_csrf = confirm(w, second_code)
    assert first_csrf != second_csrf
    # no token, a made-up one, the other request's token: 403, nothing bound
    for token in ("", "0" * 64, second_csrf):
        refused = post_bind(w, first_code, token)
        assert refused.status_code == 403 and "Form expired" in refused.text
    # bob's own session cannot use alice's token (a token is good for one session)
    with w.browser() as bob:
        sign_in(w, "bob", client=bob)
        assert post_bind(w, first_code, first_csrf, http=bob).status_code == 403
    # signing in again starts a new session: the old session's form tokens are spent
    sign_in(w, "alice")
    assert post_bind(w, first_code, first_csrf).status_code == 403
    still_pending(w, first)
    still_pending(w, second)
    assert w.app.state.policy.bound == set()
    # the server keeps serving: a fresh token of this session binds
    _, fresh = confirm(w, first_code)
    assert post_bind(w, first_code, fresh).status_code == 200
    assert w.app.state.policy.bound_by == {PS: "alice"}
    w.auth_token(w.send(w.signed("GET", first)))
    # the refusals did not spend the other request's code
    assert w.http.get(f"{AS}/bind", params={"code": second_code}).status_code == 200


def test_wrong_codes_are_limited_per_person(binding: World) -> None:
    w = binding
    location, code = ask(w)
    sign_in(w, "alice")
    _, csrf = confirm(w, code)
    wrong = ["ZZZZ-ZZZZ", "not a code", "0000-0000", "<b>x</b>", "ABCD-EFGH"]
    for n, guess in enumerate(wrong):
        # by link (GET) or by form (POST): each wrong code counts
        if n % 2:
            answer = w.http.get(f"{AS}/bind", params={"code": guess})
        else:
            answer = post_bind(w, guess, csrf)
        assert answer.status_code == 404, (guess, answer.text)
        assert "This code is unknown, expired or already used." in answer.text
        assert "<b>x</b>" not in answer.text
    # the sixth try is refused whatever the code, even the right one
    assert w.http.get(f"{AS}/bind", params={"code": "ZZZZ-ZZZY"}).status_code == 429
    assert post_bind(w, code, csrf).status_code == 429
    assert w.http.get(f"{AS}/bind", params={"code": code}).status_code == 429
    still_pending(w, location)
    # the limit is alice's: bob, signed in elsewhere, still binds (the server keeps serving)
    with w.browser() as bob:
        sign_in(w, "bob", client=bob)
        page = bob.get(f"{AS}/bind", params={"code": code})
        assert page.status_code == 200
        assert post_bind(w, code, hidden(page, "csrf"), http=bob).status_code == 200
    assert w.app.state.policy.bound_by == {PS: "bob"}
    w.auth_token(w.send(w.signed("GET", location)))


def test_pages_escape_what_they_show_and_carry_security_headers(binding: World) -> None:
    w = binding
    hostile = "calendar.read <img/src=x> '&amp;"
    first = w.send(w.signed("POST", f"{AS}/token", w.token_body(scope=hostile)))
    raw = first.headers.get("aauth-requirement")
    assert first.status == 202 and raw is not None
    code = Requirement.parse(raw).code
    assert code
    sign_in(w, "alice")
    page, _ = confirm(w, code)
    assert "<img" not in page.text and "&lt;img/src=x&gt;" in page.text
    assert "&#x27;&amp;amp;" in page.text
    pages = [
        page,
        w.http.get(f"{AS}/bind"),
        w.http.get(f"{AS}/bind", params={"code": "ZZZZ-ZZZZ"}),
        w.http.get(f"{AS}/login"),
        w.http.post(f"{AS}/bind", content=b"{}", headers={"Content-Type": "application/json"}),
    ]
    assert pages[-1].status_code == 415  # a form post is expected: a page, still served
    for shown in pages:
        csp = shown.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert "script" not in csp and "<script" not in shown.text
        assert shown.headers["x-frame-options"] == "DENY"
        assert shown.headers["cache-control"] == "no-store"
        assert shown.headers["referrer-policy"] == "no-referrer"
    # redirects to the sign-in carry them too
    with w.browser() as stranger:
        redirect = stranger.get(f"{AS}/bind")
        assert redirect.status_code == 303 and redirect.headers["x-frame-options"] == "DENY"


def test_pending_request_can_be_cancelled(binding: World) -> None:
    w = binding
    first = w.send(w.signed("POST", f"{AS}/token", w.token_body()))
    location = first.headers.get("location")
    assert first.status == 202 and location is not None
    assert w.send(w.signed("DELETE", location)).status == 204
    assert w.send(w.signed("GET", location)).status == 410


def test_revocation_by_the_person_server(world: World) -> None:
    body = world.token_body()
    claims = world.auth_token(world.send(world.signed("POST", f"{AS}/token", body)))
    person_jti = inspect_token(body["presented_token"]).payload["jti"]
    revoke = world.signed("POST", f"{AS}/revoke", {"jti": person_jti, "exp": claims.exp})
    response = world.send(revoke)
    assert response.status == 200
    # the resource has no revocation endpoint configured: reported, not hidden
    assert json.loads(response.body)["downstream"] == [
        {"recipient": RS, "error": "revocation_unsupported"}
    ]
    # a revoked presented token is refused from now on
    again = world.send(world.signed("POST", f"{AS}/token", body))
    assert again.status == 400
    # an unsigned revocation is 401
    plain = world.http.post(f"{AS}/revoke", json={"jti": "x", "exp": 1})
    assert plain.status_code == 401


def test_settings_refuse_bad_config() -> None:
    with pytest.raises(ValueError, match="person_servers"):
        AccessServerSettings.from_toml({**SETTINGS, "person_servers": []})
    with pytest.raises(ValueError, match="resources"):
        AccessServerSettings.from_toml({**SETTINGS, "resources": {"http://x": {"scopes": []}}})
    with pytest.raises(ValueError, match="unknown key"):
        AccessServerSettings.from_toml({**SETTINGS, "polcy": 1})
    with pytest.raises(ValueError, match="token_lifetime"):
        AccessServerSettings.from_toml({**SETTINGS, "token_lifetime": 7200})


def test_settings_refuse_an_approval_page_nobody_can_sign_in_to() -> None:
    with pytest.raises(ValueError, match="must authenticate its approver"):
        AccessServerSettings.from_toml({**SETTINGS, "bind_person_server": True})
    with pytest.raises(ValueError, match="must authenticate its approver"):
        AccessServerSettings.from_toml({**SETTINGS, "bind_person_server": True, "people": []})
    bad_people: list[Any] = [
        [{"id": "alice"}],  # no password
        [{"id": "", "password": "x"}],
        [{"id": "alice", "password_hash": "plain text"}],
        [{"id": "alice", "password": "x"}, {"id": "alice", "password": "y"}],
        [{"id": "alice", "password": "x", "role": "admin"}],
        {"alice": "x"},
    ]
    for people in bad_people:
        with pytest.raises(ValueError, match="people"):
            AccessServerSettings.from_toml({**BINDING, "people": people})
    for name, value in (("session_lifetime", 10), ("code_attempts", 0), ("code_attempts", True)):
        with pytest.raises(ValueError, match=name):
            AccessServerSettings.from_toml({**BINDING, name: value})
    settings = AccessServerSettings.from_toml({**BINDING, "session_lifetime": 600})
    assert set(settings.people) == {"alice", "bob"} and settings.session_lifetime == 600
    assert "alice" not in repr(settings)  # the hashes stay out of logs and tracebacks


def test_a_full_pending_store_refuses_new_requests_and_keeps_the_live_ones() -> None:
    for w in _serve({**BINDING, "max_pending": 1}):
        location, _ = ask(w)
        refused = w.send(w.signed("POST", f"{AS}/token", w.token_body()))
        assert refused.status == 503 and problem(refused) == "temporarily_unavailable"
        still_pending(w, location)  # the live request was not evicted for it
        assert len(w.app.state.pending) == 1
