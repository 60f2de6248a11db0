"""The sample calendar resource server over real sockets: two identities in one process
(three-party ``calendar.aauth.test`` and four-party ``fed.aauth.test``), chosen by Host."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from live import dev_tls, serve
from signing_helpers import generated_ed25519
from test_io_resource_asgi import AP, PS, Keys, fresh_created, problem, requirement, signed

from aauth_core.headers.access import AAUTH_ACCESS
from aauth_core.http import HttpRequest, HttpResponse
from aauth_core.requests import sign_aauth_request
from aauth_core.tokens import (
    DWK_ACCESS,
    DWK_AGENT,
    DWK_PERSON,
    DWK_RESOURCE,
    AuthTokenClaims,
    Confirmation,
    StaticKeyResolver,
    mint_token,
)
from aauth_core.tokens.claims import TokenType
from aauth_core.tokens.verify import verify_token
from aauth_flows.io import egress
from aauth_flows.io.egress import EgressPolicy
from aauth_flows.io.messages import send
from aauth_flows.io.servers.context import ServerContext
from aauth_flows.io.servers.resource import Api, ResourceSettings, build_app

CAL = "https://calendar.aauth.test"
FED = "https://fed.aauth.test"
AS = "https://as.aauth.test"


class Parties(Keys):
    """The test module's keys plus the AS and the resource's own key."""

    def __init__(self) -> None:
        super().__init__()
        self.access = generated_ed25519()
        self.resolver = StaticKeyResolver(
            {
                (AP, DWK_AGENT): (self.ap.public_jwk(),),
                (PS, DWK_PERSON): (self.ps.public_jwk(),),
                (AS, DWK_ACCESS): (self.access.public_jwk(),),
            }
        )

    def auth_token(self, *, aud: str, scope: str, iss: str = PS, sub: str = "alice") -> str:
        now = int(time.time())
        claims = AuthTokenClaims(
            iss=iss,
            dwk=DWK_PERSON if iss == PS else DWK_ACCESS,
            jti=self.jti(),
            iat=now,
            exp=now + 600,
            aud=aud,
            ps=PS,
            sub=sub,
            cnf=Confirmation(jwk=self.agent.public_jwk()),
            scope=scope,
        )
        return mint_token(claims, self.ps if iss == PS else self.access)


SETTINGS = {
    "identities": [
        {"issuer": CAL},
        {"issuer": FED, "api": "team", "access_server": AS},
    ]
}


@pytest.fixture(scope="module")
def parties() -> Parties:
    return Parties()


@pytest.fixture(scope="module")
def http(parties: Parties) -> Iterator[httpx.Client]:
    with egress.client(EgressPolicy()) as unused:
        context = ServerContext(
            issuer=CAL,
            signer=parties.resource,
            key_ref="software:calendar",
            egress=EgressPolicy(),
            http=unused,
            keys=parties.resolver,
        )
        app = build_app(context, ResourceSettings.from_toml(SETTINGS))
        # ONE server; both names lead to its port
        with serve({"calendar.aauth.test": app}) as servers:
            port = servers["calendar.aauth.test"].port
            names = dict.fromkeys(("calendar.aauth.test", "fed.aauth.test"), ("127.0.0.1", port))
            names["other.aauth.test"] = ("127.0.0.1", port)
            policy = EgressPolicy(allow_private=True, connect_to=names, ca_file=dev_tls().ca_file)
            with egress.client(policy) as client:
                yield client


def get(http: httpx.Client, url: str) -> HttpResponse:
    return send(http, HttpRequest(method="GET", url=url))


# -- settings --------------------------------------------------------------------------------


def test_settings_from_toml() -> None:
    settings = ResourceSettings.from_toml({**SETTINGS, "replay": False, "max_body": 1024})
    assert [i.issuer for i in settings.identities] == [CAL, FED]
    assert settings.identities[1].api is Api.TEAM
    assert settings.identities[1].access_server == AS
    assert settings.identities[0].access_server is None
    assert not settings.replay
    assert settings.max_body == 1024
    assert ResourceSettings.from_toml({}).identities == ()


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"identity": []}, "unknown setting"),
        ({"identities": [{"issuer": "http://calendar.aauth.test"}]}, "resource issuer"),
        ({"identities": [{"issuer": CAL, "api": "mail"}]}, "api must be one of"),
        ({"identities": [{}]}, "issuer is required"),
        ({"identities": [{"issuer": CAL, "access_server": "as"}]}, "resource issuer"),
        ({"identities": [{"issuer": CAL}, {"issuer": CAL}]}, "share a host"),
        ({"identities": {"issuer": CAL}}, "array of tables"),
        ({"replay": "yes"}, "replay"),
        ({"max_body": 0}, "max_body"),
    ],
)
def test_bad_settings_say_what_is_wrong(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ResourceSettings.from_toml(section)


# -- identities by host ----------------------------------------------------------------------


def test_each_host_is_its_own_resource(http: httpx.Client, parties: Parties) -> None:
    for origin in (CAL, FED):
        meta = json.loads(get(http, f"{origin}/.well-known/aauth-resource.json").body)
        assert meta["issuer"] == origin
        assert meta["authorization_endpoint"] == f"{origin}/authorize"
        assert "calendar.read" in meta["scope_descriptions"]
        answer = send(http, signed("GET", f"{origin}/whoami", parties.agent_token(), parties.agent))
        assert answer.status == 200
        assert json.loads(answer.body)["agent"] == "aauth:assistant@ap.aauth.test"
    # a request signed for the calendar does not verify at fed (another @authority)
    good = signed("GET", f"{CAL}/whoami", parties.agent_token(), parties.agent)
    moved = send(http, HttpRequest(method="GET", url=f"{FED}/whoami", headers=good.headers))
    assert moved.status == 401
    assert moved.headers.get("signature-error") == "error=invalid_signature"


def test_unknown_host_is_404_problem(http: httpx.Client) -> None:
    answer = get(http, "https://other.aauth.test/whoami")
    assert answer.status == 404
    assert problem(answer)["error"] == "not_found"


# -- resource-managed access: the interaction page and the pending URL -----------------------


def test_resource_managed_availability_end_to_end(http: httpx.Client, parties: Parties) -> None:
    token = parties.agent_token()
    first = send(http, signed("GET", f"{CAL}/availability", token, parties.agent))
    assert first.status == 202
    location = first.headers.get("location")
    assert location is not None and location.startswith(f"{CAL}/pending/")
    needed = requirement(first)
    assert needed.requirement == "interaction"
    assert needed.url == f"{CAL}/interaction" and needed.code
    # still pending while nobody approved
    poll = send(http, signed("GET", location, token, parties.agent))
    assert poll.status == 202
    # Alice opens the page: she sees who asks, for what; nothing is consumed yet
    page = get(http, needed.interaction_target())
    assert page.status == 200
    assert "aauth:assistant@ap.aauth.test" in page.body.decode()
    assert "calendar.availability" in page.body.decode()
    assert page.headers.get("cache-control") == "no-store"
    form = urlencode({"code": needed.code, "decision": "approve"}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    decided = send(http, HttpRequest(method="POST", url=needed.url, headers=headers, body=form))
    assert decided.status == 200
    assert "Approved" in decided.body.decode()
    again = send(http, HttpRequest(method="POST", url=needed.url, headers=headers, body=form))
    assert again.status in (404, 410)  # the code was single-use
    # the agent's next poll gets the held call's answer and its session token
    done = send(http, signed("GET", location, token, parties.agent))
    assert done.status == 200
    assert json.loads(done.body)["agent"] == "aauth:assistant@ap.aauth.test"
    session = done.headers.get(AAUTH_ACCESS.lower())
    assert session
    # with the session token the call is served directly, and the caller says so
    base = HttpRequest(
        method="GET", url=f"{CAL}/whoami", headers={"Authorization": f"AAuth {session}"}
    )
    fields = sign_aauth_request(base, parties.agent, token=token, created=fresh_created())
    with_session = HttpRequest(
        method="GET", url=base.url, headers={**dict(base.headers.pairs), **fields}
    )
    served = send(http, with_session)
    assert served.status == 200
    assert json.loads(served.body)["session"] is True
    base = HttpRequest(
        method="GET", url=f"{CAL}/availability", headers={"Authorization": f"AAuth {session}"}
    )
    fields = sign_aauth_request(base, parties.agent, token=token, created=fresh_created())
    direct = send(
        http,
        HttpRequest(method="GET", url=base.url, headers={**dict(base.headers.pairs), **fields}),
    )
    assert direct.status == 200
    assert json.loads(direct.body)["free"]


def test_interaction_page_refuses_a_wrong_code_and_denies(
    http: httpx.Client, parties: Parties
) -> None:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    wrong = urlencode({"code": "ZZZZ-ZZZZ", "decision": "approve"}).encode()
    answer = send(
        http, HttpRequest(method="POST", url=f"{CAL}/interaction", headers=headers, body=wrong)
    )
    assert answer.status == 404
    cross = {**headers, "Origin": "https://evil.aauth.test"}
    forged = send(
        http, HttpRequest(method="POST", url=f"{CAL}/interaction", headers=cross, body=wrong)
    )
    assert forged.status == 403
    blank = get(http, f"{CAL}/interaction?code=%3Cscript%3E")
    assert blank.status == 200 and "<script>" not in blank.body.decode()
    token = parties.agent_token()
    first = send(http, signed("GET", f"{CAL}/availability", token, parties.agent))
    needed = requirement(first)
    approve = urlencode({"code": needed.code, "decision": "approve"}).encode()
    site = {**headers, "Sec-Fetch-Site": "cross-site"}
    csrf = send(http, HttpRequest(method="POST", url=needed.url, headers=site, body=approve))
    assert csrf.status == 403  # refused, and the code is still good for the real page
    deny = urlencode({"code": needed.code, "decision": "deny"}).encode()
    denied = send(http, HttpRequest(method="POST", url=needed.url, headers=headers, body=deny))
    assert denied.status == 200 and "Denied" in denied.body.decode()
    location = first.headers.get("location")
    assert location is not None
    poll = send(http, signed("GET", location, token, parties.agent))
    assert poll.status == 403
    assert problem(poll)["error"] == "denied"


# -- auth tokens: the calendar (three-party) and fed (four-party) ---------------------------


def test_events_need_the_right_scope_and_are_kept_per_person(
    http: httpx.Client, parties: Parties
) -> None:
    writer = parties.auth_token(aud=CAL, scope="calendar.read calendar.write", sub="bob")
    body = json.dumps({"title": "Standup", "start": "2026-12-01T09:00"}).encode()
    headers = {"Content-Type": "application/json"}
    created = send(
        http, signed("POST", f"{CAL}/events", writer, parties.agent, body=body, headers=headers)
    )
    assert created.status == 201, created
    assert json.loads(created.body)["title"] == "Standup"
    listed = send(http, signed("GET", f"{CAL}/events", writer, parties.agent))
    assert [e["title"] for e in json.loads(listed.body)["events"]] == ["Standup"]
    # another person sees her own (empty) calendar
    other = parties.auth_token(aud=CAL, scope="calendar.read", sub="carol")
    theirs = send(http, signed("GET", f"{CAL}/events", other, parties.agent))
    assert json.loads(theirs.body)["events"] == []
    # read-only token: writing is a step-up (401 auth-token with a new resource token)
    step_up = send(
        http, signed("POST", f"{CAL}/events", other, parties.agent, body=body, headers=headers)
    )
    assert step_up.status == 401
    assert requirement(step_up).requirement == "auth-token"
    bad = send(
        http,
        signed("POST", f"{CAL}/events", writer, parties.agent, body=b"[]", headers=headers),
    )
    assert bad.status == 400
    profile = send(http, signed("GET", f"{CAL}/me/profile", writer, parties.agent))
    assert json.loads(profile.body) == {"iss": PS, "sub": "bob", "events": 1}


def test_fed_takes_auth_tokens_from_its_access_server_only(
    http: httpx.Client, parties: Parties
) -> None:
    person = parties.person_token(aud=FED)
    challenged = send(http, signed("GET", f"{FED}/team/events", person, parties.agent))
    assert challenged.status == 401
    needed = requirement(challenged)
    assert needed.requirement == "auth-token" and needed.resource_token
    resolver = StaticKeyResolver({(FED, DWK_RESOURCE): (parties.resource.public_jwk(),)})
    minted = verify_token(
        needed.resource_token,
        expected=TokenType.RESOURCE,
        keys=resolver,
        now=int(time.time()),
        audience=AS,
    )
    assert minted.claims.aud == AS and minted.claims.scope == "calendar.read"
    from_ps = parties.auth_token(aud=FED, scope="calendar.read")
    refused = send(http, signed("GET", f"{FED}/team/events", from_ps, parties.agent))
    assert refused.status == 401
    assert refused.headers.get("signature-error") == "error=invalid_jwt"
    from_as = parties.auth_token(aud=FED, scope="calendar.read", iss=AS)
    ok = send(http, signed("GET", f"{FED}/team/events", from_as, parties.agent))
    assert ok.status == 200
    assert json.loads(ok.body)["for"] == "alice"


def test_deferred_share_runs_once_the_auth_token_comes(
    http: httpx.Client, parties: Parties
) -> None:
    person = parties.person_token(aud=CAL, sub="dave")
    body = json.dumps({"with": "erin"}).encode()
    headers = {"Content-Type": "application/json"}
    held = send(
        http,
        signed("POST", f"{CAL}/events/share", person, parties.agent, body=body, headers=headers),
    )
    assert held.status == 202
    needed = requirement(held)
    assert needed.requirement == "auth-token" and needed.resource_token
    location = held.headers.get("location")
    assert location is not None
    auth = parties.auth_token(aud=CAL, scope="calendar.share", sub="dave")
    done = send(http, signed("GET", location, auth, parties.agent))
    assert done.status == 200, done
    assert json.loads(done.body)["shared"]["with"] == "erin"
    # the same auth token again: the retained result, not a second share
    again = send(http, signed("GET", location, auth, parties.agent))
    assert again.status == 200
    assert json.loads(again.body) == json.loads(done.body)


def test_revocation_endpoint_needs_a_server_signature(http: httpx.Client) -> None:
    body = json.dumps({"jti": "x", "exp": int(time.time()) + 60}).encode()
    answer = send(
        http,
        HttpRequest(
            method="POST",
            url=f"{CAL}/revoke",
            headers={"Content-Type": "application/json"},
            body=body,
        ),
    )
    assert answer.status == 401
    assert re.fullmatch(r"application/problem\+json", answer.headers.get("content-type") or "")
