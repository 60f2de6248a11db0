"""The sample calendar resource server over real sockets: two identities in one process
(three-party ``calendar.aauth.test`` and four-party ``fed.aauth.test``), chosen by Host."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import structlog.testing
from live import dev_tls, policy, serve
from signing_helpers import generated_ed25519
from test_io_resource_asgi import AP, PS, Keys, fresh_created, problem, requirement, signed

from aauth_core.headers.access import AAUTH_ACCESS
from aauth_core.headers.requirement import Requirement
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
from aauth_flows.io.servers.ps_settings import hash_password, verify_password
from aauth_flows.io.servers.resource import COOKIE, Api, ResourceSettings, build_app

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


PEOPLE = {"alice": "alice's password", "bob": "bob's password", "mallory": "mallory's password"}
SETTINGS: dict[str, Any] = {
    "identities": [
        {"issuer": CAL},
        {"issuer": FED, "api": "team", "access_server": AS},
    ],
    "people": [
        {"id": "alice", "password_hash": hash_password(PEOPLE["alice"])},
        {"id": "bob", "password": PEOPLE["bob"]},
        {"id": "mallory", "password": PEOPLE["mallory"]},
    ],
}


@pytest.fixture(scope="module")
def parties() -> Parties:
    return Parties()


def context_for(parties: Parties, http: httpx.Client) -> ServerContext:
    return ServerContext(
        issuer=CAL,
        signer=parties.resource,
        key_ref="software:calendar",
        egress=EgressPolicy(),
        http=http,
        keys=parties.resolver,
    )


@pytest.fixture(scope="module")
def world(parties: Parties) -> Iterator[tuple[httpx.Client, EgressPolicy]]:
    with egress.client(EgressPolicy()) as unused:
        app = build_app(context_for(parties, unused), ResourceSettings.from_toml(SETTINGS))
        # ONE server; both names lead to its port
        with serve({"calendar.aauth.test": app}) as servers:
            port = servers["calendar.aauth.test"].port
            names = dict.fromkeys(("calendar.aauth.test", "fed.aauth.test"), ("127.0.0.1", port))
            names["other.aauth.test"] = ("127.0.0.1", port)
            policy = EgressPolicy(allow_private=True, connect_to=names, ca_file=dev_tls().ca_file)
            with egress.client(policy) as client:
                yield client, policy


@pytest.fixture
def http(world: tuple[httpx.Client, EgressPolicy]) -> httpx.Client:
    return world[0]


@pytest.fixture
def browsers(world: tuple[httpx.Client, EgressPolicy]) -> Iterator[Callable[[], httpx.Client]]:
    """New browsers (each its own cookie jar), closed after the test."""
    opened: list[httpx.Client] = []

    def new() -> httpx.Client:
        opened.append(egress.client(world[1]))
        return opened[-1]

    yield new
    for client in opened:
        client.close()


def alive(http: httpx.Client, parties: Parties) -> None:
    """The server still answers a good call after whatever the test threw at it."""
    answer = send(http, signed("GET", f"{CAL}/whoami", parties.agent_token(), parties.agent))
    assert answer.status == 200, answer


def hidden(page: httpx.Response, name: str) -> str:
    found = re.search(rf"name='{name}' value='([^']*)'", page.text)
    assert found is not None, page.text
    return found.group(1)


def log_in(browser: httpx.Client, person: str, *, next_url: str = "/interaction") -> httpx.Response:
    """Sign in at the calendar's /login as a person would (the form, its nonce cookie)."""
    form = browser.get(f"{CAL}/login", params={"next": next_url})
    assert form.status_code == 200
    data = {
        "person": person,
        "password": PEOPLE[person],
        "nonce": hidden(form, "nonce"),
        "next": hidden(form, "next"),
    }
    return browser.post(f"{CAL}/login", data=data)


def ask_availability(http: httpx.Client, parties: Parties) -> tuple[str, Requirement, str]:
    """The agent's first call: 202 interaction. (agent token, requirement, pending URL)"""
    token = parties.agent_token()
    first = send(http, signed("GET", f"{CAL}/availability", token, parties.agent))
    assert first.status == 202
    location = first.headers.get("location")
    assert location is not None and location.startswith(f"{CAL}/pending/")
    needed = requirement(first)
    assert needed.requirement == "interaction"
    assert needed.url == f"{CAL}/interaction" and needed.code
    return token, needed, location


def decide(browser: httpx.Client, code: str, decision: str, csrf: str | None) -> httpx.Response:
    data = {"code": code, "decision": decision}
    if csrf is not None:
        data["csrf"] = csrf
    return browser.post(f"{CAL}/interaction", data=data, headers={"Origin": CAL})


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
    assert sorted(settings.people) == ["alice", "bob", "mallory"]
    # a plain password is hashed on load and never kept
    assert verify_password(settings.people["bob"], PEOPLE["bob"])
    assert PEOPLE["bob"] not in repr(settings)
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
        ({"people": {"id": "alice"}}, "array of tables"),
        ({"people": [{"id": "alice"}]}, "password_hash"),
        ({"people": [{"id": "", "password": "x"}]}, "short printable string"),
        ({"people": [{"id": "alice", "password_hash": "md5$x"}]}, "scrypt"),
        ({"people": [{"id": "a", "password": "x"}, {"id": "a", "password": "y"}]}, "twice"),
        ({"people": [{"id": "alice", "password": "x", "role": "admin"}]}, "unknown"),
        ({"session_lifetime": 5}, "session_lifetime"),
    ],
)
def test_bad_settings_say_what_is_wrong(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ResourceSettings.from_toml(section)


def test_a_calendar_without_people_approves_nothing(parties: Parties) -> None:
    with egress.client(EgressPolicy()) as unused, structlog.testing.capture_logs() as logs:
        app = build_app(context_for(parties, unused), ResourceSettings.from_toml({}))
    assert any(e["event"] == "aauth.io.resource.no_people" for e in logs)
    with serve({"calendar.aauth.test": app}) as servers, egress.client(policy(servers)) as http:
        _, needed, location = ask_availability(http, parties)
        shown = http.get(needed.interaction_target())
        assert shown.status_code == 401
        form = {"code": needed.code, "decision": "approve"}
        posted = http.post(needed.url or "", data=form, headers={"Origin": CAL})
        assert posted.status_code == 401
        assert http.get(f"{CAL}/login").status_code == 404  # no sign-in to offer
        poll = send(http, signed("GET", location, parties.agent_token(), parties.agent))
        assert poll.status == 202


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


def test_the_page_without_a_session_sends_the_person_to_sign_in(
    http: httpx.Client, parties: Parties, browsers: Callable[[], httpx.Client]
) -> None:
    _, needed, location = ask_availability(http, parties)
    browser = browsers()
    shown = browser.get(needed.interaction_target())
    assert shown.status_code == 303
    target = f"/interaction?code={quote(needed.code or '', safe='')}"
    assert shown.headers["location"] == f"/login?next={quote(target, safe='')}"
    # deciding without a session does not decide either
    posted = decide(browser, needed.code or "", "approve", None)
    assert posted.status_code == 303 and posted.headers["location"].startswith("/login?next=")
    assert send(http, signed("GET", location, parties.agent_token(), parties.agent)).status == 202
    # the login form: a wrong password, a post without the form's own cookie
    assert log_in(browser, "alice").status_code == 303
    stranger = browsers()
    form = stranger.get(f"{CAL}/login")
    wrong = stranger.post(
        f"{CAL}/login",
        data={"person": "alice", "password": "guess", "nonce": hidden(form, "nonce")},
    )
    assert wrong.status_code == 401 and COOKIE not in wrong.cookies
    forged = browsers().post(
        f"{CAL}/login", data={"person": "alice", "password": PEOPLE["alice"], "nonce": "x" * 32}
    )
    assert forged.status_code == 403
    bad = browsers().post(f"{CAL}/login", content=b"{}", headers={"Content-Type": "text/plain"})
    assert bad.status_code == 415
    # where a login returns to is a path on this host, never another site
    elsewhere = log_in(browsers(), "bob", next_url="//evil.aauth.test/x")
    assert elsewhere.status_code == 303 and elsewhere.headers["location"] == "/interaction"
    alive(http, parties)


def test_session_cookie_is_host_only_secure_httponly_lax(
    browsers: Callable[[], httpx.Client],
) -> None:
    done = log_in(browsers(), "alice")
    assert done.status_code == 303
    cookie = next(
        v for k, v in done.headers.multi_items() if k == "set-cookie" and v.startswith(COOKIE)
    )
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert {"secure", "httponly", "samesite=lax", "path=/"} <= flags
    assert not any(flag.startswith("domain") for flag in flags)


def test_resource_managed_availability_end_to_end(
    http: httpx.Client, parties: Parties, browsers: Callable[[], httpx.Client]
) -> None:
    token, needed, location = ask_availability(http, parties)
    # Alice opens the page the agent showed, signs in, and lands back on it
    alice = browsers()
    to_login = alice.get(needed.interaction_target())
    assert to_login.status_code == 303
    login_page = alice.get(f"{CAL}{to_login.headers['location']}")
    back = alice.post(
        f"{CAL}/login",
        data={
            "person": "alice",
            "password": PEOPLE["alice"],
            "nonce": hidden(login_page, "nonce"),
            "next": hidden(login_page, "next"),
        },
    )
    assert back.status_code == 303
    assert back.headers["location"] == f"/interaction?code={quote(needed.code or '', safe='')}"
    page = alice.get(f"{CAL}{back.headers['location']}")
    # she sees the full context: who asks, its provider, which resource, what for, as whom
    assert page.status_code == 200
    text = page.text
    for shown in (
        "aauth:assistant@ap.aauth.test",
        "https://ap.aauth.test",
        CAL,
        "calendar.availability",
        "See when you are free",
        "Signed in as <strong>alice</strong>",
    ):
        assert shown in text, shown
    assert page.headers.get("cache-control") == "no-store"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    csrf = hidden(page, "csrf")
    code = needed.code or ""
    # a decision without the form's token, or with a made-up one, is refused
    assert decide(alice, code, "approve", None).status_code == 403
    assert decide(alice, code, "approve", "0" * 64).status_code == 403
    # the token is bound to this browser: Alice signed in elsewhere cannot replay it
    elsewhere = browsers()
    assert log_in(elsewhere, "alice").status_code == 303
    assert decide(elsewhere, code, "approve", csrf).status_code == 403
    # ... and none of that consumed the code or decided anything
    assert send(http, signed("GET", location, token, parties.agent)).status == 202
    alive(http, parties)
    decided = decide(alice, code, "approve", csrf)
    assert decided.status_code == 200 and "Approved" in decided.text
    again = decide(alice, code, "approve", csrf)
    assert again.status_code == 404 and "Unknown or expired code." in again.text
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


def test_the_person_who_opened_a_request_is_the_one_who_decides(
    http: httpx.Client, parties: Parties, browsers: Callable[[], httpx.Client]
) -> None:
    token, needed, location = ask_availability(http, parties)
    code = needed.code or ""
    alice, bob = browsers(), browsers()
    assert log_in(alice, "alice").status_code == 303
    assert log_in(bob, "bob").status_code == 303
    csrf = hidden(alice.get(needed.interaction_target()), "csrf")
    # to Bob, a request Alice opened is like any wrong code
    theirs = bob.get(needed.interaction_target())
    assert theirs.status_code == 404 and "Unknown or expired code." in theirs.text
    assert "aauth:assistant" not in theirs.text
    assert decide(bob, code, "approve", csrf).status_code == 404
    assert send(http, signed("GET", location, token, parties.agent)).status == 202
    # a cross-site post is refused before anything is read
    forged = alice.post(
        f"{CAL}/interaction",
        data={"code": code, "decision": "approve", "csrf": csrf},
        headers={"Origin": "https://evil.aauth.test"},
    )
    assert forged.status_code == 403
    site = alice.post(
        f"{CAL}/interaction",
        data={"code": code, "decision": "approve", "csrf": csrf},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert site.status_code == 403
    denied = decide(alice, code, "deny", csrf)
    assert denied.status_code == 200 and "Denied" in denied.text
    poll = send(http, signed("GET", location, token, parties.agent))
    assert poll.status == 403
    assert problem(poll)["error"] == "denied"
    alive(http, parties)


def test_the_code_form_and_a_code_typed_in_it(
    http: httpx.Client, parties: Parties, browsers: Callable[[], httpx.Client]
) -> None:
    _, needed, _ = ask_availability(http, parties)
    alice = browsers()
    assert log_in(alice, "alice").status_code == 303
    blank = alice.get(f"{CAL}/interaction")
    assert blank.status_code == 200 and "method='get'" in blank.text
    # a code posted without a decision only opens its page (nothing decided)
    typed = alice.post(f"{CAL}/interaction", data={"code": needed.code}, headers={"Origin": CAL})
    assert typed.status_code == 303
    page = alice.get(f"{CAL}{typed.headers['location']}")
    assert page.status_code == 200 and "calendar.availability" in page.text
    hostile = alice.get(f"{CAL}/interaction", params={"code": "<script>"})
    assert hostile.status_code == 404 and "<script>" not in hostile.text
    assert alice.put(f"{CAL}/interaction").status_code == 405


def test_wrong_codes_are_limited_per_person(
    http: httpx.Client, parties: Parties, browsers: Callable[[], httpx.Client]
) -> None:
    _, needed, location = ask_availability(http, parties)
    mallory = browsers()
    assert log_in(mallory, "mallory").status_code == 303
    for n in range(5):
        guess = mallory.get(f"{CAL}/interaction", params={"code": f"ZZZZ-ZZZ{n}"})
        assert guess.status_code == 404
        assert "Unknown or expired code." in guess.text
        alive(http, parties)
    limited = mallory.get(f"{CAL}/interaction", params={"code": "ZZZZ-ZZZZ"})
    assert limited.status_code == 429
    # even the right code is refused to her now, and posting does not help
    assert mallory.get(needed.interaction_target()).status_code == 429
    assert decide(mallory, needed.code or "", "approve", "0" * 64).status_code == 429
    # in a new session she is still the same person
    again = browsers()
    assert log_in(again, "mallory").status_code == 303
    assert again.get(needed.interaction_target()).status_code == 429
    # someone else is not limited by her guesses, and the request is still open
    bob = browsers()
    assert log_in(bob, "bob").status_code == 303
    assert bob.get(needed.interaction_target()).status_code == 200
    assert send(http, signed("GET", location, parties.agent_token(), parties.agent)).status == 202
    alive(http, parties)


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
