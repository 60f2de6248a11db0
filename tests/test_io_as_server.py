"""The reference Access Server over real TLS sockets: a PS-signed token request exchanged
for an auth token (at once, or through its pending URL after the person binds her PS at
the AS), the configured scope policy, revocation, and bad input answered with the right
status while the server keeps serving."""

from __future__ import annotations

import json
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


class World:
    def __init__(self, http: httpx.Client, keys: Keys) -> None:
        self.http = http
        self.keys = keys
        self.serial = 0

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
    with serve({"as.aauth.test": app}) as servers, egress.client(policy(servers)) as http:
        yield World(http, keys)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    yield from _serve(SETTINGS)


@pytest.fixture
def binding() -> Iterator[World]:
    yield from _serve({**SETTINGS, "bind_person_server": True})


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


def test_pending_flow_binds_the_person_server_then_issues(binding: World) -> None:
    w = binding
    first = w.send(w.signed("POST", f"{AS}/token", w.token_body()))
    assert first.status == 202
    location = first.headers.get("location")
    assert location is not None and location.startswith(f"{AS}/pending/")
    raw_requirement = first.headers.get("aauth-requirement")
    assert raw_requirement is not None
    requirement = Requirement.parse(raw_requirement)
    assert requirement.requirement == "interaction" and requirement.code
    assert requirement.url == f"{AS}/bind"

    # still pending; only the PS that asked may poll
    assert w.send(w.signed("GET", location)).status == 202
    stranger = w.send(w.signed("GET", location, as_ps="other-ps", issuer=OTHER_PS))
    assert stranger.status == 404
    assert w.send(w.signed("PUT", location)).status == 405

    # the person opens the interaction page and binds her PS
    page = w.http.get(f"{AS}/bind", params={"code": requirement.code})
    assert page.status_code == 200 and PS in page.text
    assert w.http.get(f"{AS}/bind", params={"code": "ZZZZ-ZZZZ"}).status_code == 404
    done = w.http.post(
        f"{AS}/bind",
        content=f"code={requirement.code}".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert done.status_code == 200 and "bound" in done.text

    # the PS's next poll gets the token (restored from the stored snapshot), then 410
    claims = w.auth_token(w.send(w.signed("GET", location)))
    assert claims.scope == "calendar.read"
    assert w.send(w.signed("GET", location)).status == 410

    # once bound, the same PS is answered at once
    w.auth_token(w.send(w.signed("POST", f"{AS}/token", w.token_body())))


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
