"""The sync agent driver (aauth_flows.io.agent_client) over real HTTP.

tests/flow_world.py's World (every machine of every role) is served by one Starlette app
under all its names (PS, AS and both resources, each on its own TLS port through
tests/live.py); the driver reaches it through an egress-admitted httpx client. The world's
clock is the driver's clock, and the driver's waits move it. Every access mode runs to the
end, and the trace the servers saw must be the reference driver's
(tests/test_flows_end_to_end.py).

The scenarios are plain functions of a ``call`` function so that tests/test_io_agent_async.py
runs the very same ones through the async driver.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from flow_world import AGENT_ID, AP, AS, FED, PS, RS, T0, Exchange, World
from live import policy, serve
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aauth_core.errors import AAuthError
from aauth_core.http import HttpRequest, HttpResponse
from aauth_core.jws import decode_compact
from aauth_core.metadata import PersonServerMetadata
from aauth_flows.io import egress
from aauth_flows.io.agent_client import AgentClient
from aauth_flows.io.messages import error_response, from_starlette, to_starlette
from aauth_flows.machines.actions import ShowInteraction

HOSTS = ("ps.example", "as.example", "resource.example", "federated.example")
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
_JWT = re.compile(r'jwt="([^"]+)"')
_SERVER = re.compile(r'sig=jwks_uri;id="([^"]+)"')
AGENT, PERSON, AUTH = "aa-agent+jwt", "aa-person+jwt", "aa-auth+jwt"


class Stage:
    """The current World behind one lock: the servers' thread and the driver's share it."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.world = World()
        self.questions: list[str] = []
        self.shown: list[ShowInteraction] = []

    def reset(self) -> World:
        with self.lock:
            self.world = World()
            self.questions = []
            self.shown = []
            return self.world

    # -- the server side ------------------------------------------------------------------

    def send(self, request: HttpRequest) -> HttpResponse:
        with self.lock:
            return self.world.send(request)

    async def endpoint(self, request: Request) -> Response:
        host = request.headers.get("host", "").split(":")[0]
        if host not in HOSTS:
            return Response(status_code=421)
        try:
            core = await from_starlette(request, origin=f"https://{host}")
        except AAuthError as err:
            return error_response(err)
        return to_starlette(await run_in_threadpool(self.send, core))

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self.endpoint, methods=METHODS)])

    # -- what the driver is given ---------------------------------------------------------

    def now(self) -> float:
        with self.lock:
            return float(self.world.now)

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.world.advance(int(seconds))

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)

    def agent_token(self, current: str | None) -> str:
        with self.lock:
            return self.world.issue_agent_token()

    def show(self, interaction: ShowInteraction) -> None:
        """Alice opens the URL at once (the hand-off returns; polling goes on)."""
        with self.lock:
            self.shown.append(interaction)
            self.world.visit(interaction)

    def answer(self, question: str) -> str:
        with self.lock:
            self.questions.append(question)
            return self.world.agent_answers.pop(0)

    def person_server(self, issuer: str) -> PersonServerMetadata:
        """Stand-in for aauth_flows.io.discovery.Discovery (the World serves no metadata)."""
        assert issuer == PS
        return self.world.ps_metadata

    @property
    def resolver(self) -> Any:
        return self.world.resolver


@pytest.fixture(scope="module")
def live_world() -> Iterator[tuple[Stage, egress.EgressPolicy]]:
    stage = Stage()
    app = stage.app()
    with serve(dict.fromkeys(HOSTS, app)) as servers:
        yield stage, policy(servers)


def driver_options(stage: Stage, **overrides: Any) -> dict[str, Any]:
    """What both drivers are built with in these tests."""
    options: dict[str, Any] = {
        "agent_token": stage.agent_token,
        "discovery": stage,
        "keys": stage.resolver,
        "clock": stage.now,
        "on_interaction": stage.show,
        "on_question": stage.answer,
        "key_ref": stage.world.agent_key.ref,
    }
    options.update(overrides)
    return options


def agent_signer(stage: Stage) -> Any:
    return stage.world.signers[stage.world.agent_key.ref]


# -- reading what the servers saw -----------------------------------------------------------


def claims(token: str) -> dict[str, Any]:
    return dict(decode_compact(token).payload)


def body(message: HttpRequest | HttpResponse) -> Any:
    return json.loads(message.body)


def credential(request: HttpRequest) -> str:
    raw = request.headers.get("signature-key") or ""
    server = _SERVER.search(raw)
    if server is not None:
        return f"server:{server.group(1)}"
    match = _JWT.search(raw)
    assert match is not None, f"{request.url} is not signed"
    return str(decode_compact(match.group(1)).header["typ"])


def where(url: str) -> str:
    head, sep, _ = url.partition("/pending/")
    return f"{head}/pending/*" if sep else url


def trace(exchanges: list[Exchange]) -> list[tuple[str, str, str, int]]:
    return [
        (e.request.method, where(e.url), credential(e.request), e.response.status)
        for e in exchanges
    ]


# -- the scenarios (world, call) -------------------------------------------------------------

Call = Callable[..., httpx.Response]


def agent_identity(stage: Stage, call: Call) -> None:
    world = stage.world
    response = call("GET", f"{RS}/agent")
    assert response.status_code == 200
    assert response.json() == {
        "path": "/agent",
        "principal": {"kind": "agent", "iss": AP, "agent": str(AGENT_ID), "session": False},
    }
    assert trace(world.wire) == [("GET", f"{RS}/agent", AGENT, 200)]
    assert '"@authority"' in (world.wire[0].request.headers.get("signature-input") or "")
    call("GET", f"{RS}/agent")
    assert len(world.ap_issued) == 1  # the cached agent token served the second call


def resource_managed(stage: Stage, call: Call) -> None:
    world = stage.world
    first = call("GET", f"{RS}/notes")
    assert trace(world.wire) == [
        ("GET", f"{RS}/notes", AGENT, 202),
        ("GET", f"{RS}/pending/*", AGENT, 200),
    ]
    assert [s.url.split("?")[0] for s in stage.shown] == [f"{RS}/interaction"]
    assert first.json()["principal"]["session"] is True
    session = world.wire[1].response.headers.get("aauth-access")
    second = call("GET", f"{RS}/notes")
    assert second.status_code == 200
    assert world.wire[-1].request.headers.get("authorization") == f"AAuth {session}"
    assert trace(world.wire[2:]) == [("GET", f"{RS}/notes", AGENT, 200)]


def person_identity(stage: Stage, call: Call) -> None:
    world = stage.world
    response = call("GET", f"{RS}/profile")
    assert trace(world.wire) == [
        ("GET", f"{RS}/profile", AGENT, 401),
        ("POST", f"{PS}/person-token", AGENT, 202),
        ("GET", f"{PS}/pending/*", AGENT, 200),
        ("GET", f"{RS}/profile", PERSON, 200),
    ]
    person = claims(body(world.wire[2].response)["person_token"])
    assert response.json()["principal"] == {"kind": "person", "iss": PS, "sub": person["sub"]}


def ps_reactive(stage: Stage, call: Call) -> None:
    world = stage.world
    response = call("GET", f"{RS}/data")
    assert trace(world.wire) == [
        ("GET", f"{RS}/data", AGENT, 401),
        ("POST", f"{PS}/person-token", AGENT, 202),
        ("GET", f"{PS}/pending/*", AGENT, 200),
        ("GET", f"{RS}/data", PERSON, 401),
        ("POST", f"{PS}/auth-token", AGENT, 202),
        ("GET", f"{PS}/pending/*", AGENT, 200),
        ("GET", f"{RS}/data", AUTH, 200),
    ]
    assert response.json()["principal"]["scope"] == "data.read"
    call("GET", f"{RS}/data")  # the cached auth token goes straight through
    assert trace(world.wire[7:]) == [("GET", f"{RS}/data", AUTH, 200)]


def ps_proactive(stage: Stage, call: Call) -> None:
    world = stage.world
    response = call("POST", f"{RS}/authorize", json={"scope": "data.read"}, authorize=True)
    assert trace(world.wire) == [
        ("POST", f"{RS}/authorize", AGENT, 401),
        ("POST", f"{PS}/person-token", AGENT, 202),
        ("GET", f"{PS}/pending/*", AGENT, 200),
        ("POST", f"{RS}/authorize", PERSON, 200),
        ("POST", f"{PS}/auth-token", AGENT, 202),
        ("GET", f"{PS}/pending/*", AGENT, 200),
    ]
    assert claims(response.json()["resource_token"])["scope"] == "data.read"
    after = call("GET", f"{RS}/data")
    assert trace(world.wire[6:]) == [("GET", f"{RS}/data", AUTH, 200)]
    assert after.json()["principal"]["kind"] == "authorized"


def deferred(stage: Stage, call: Call) -> None:
    world = stage.world
    response = call("POST", f"{RS}/reports", json={"month": "2027-01"})
    assert trace(world.wire) == [
        ("POST", f"{RS}/reports", AGENT, 401),
        ("POST", f"{PS}/person-token", AGENT, 202),
        ("GET", f"{PS}/pending/*", AGENT, 200),
        ("POST", f"{RS}/reports", PERSON, 202),
        ("POST", f"{PS}/auth-token", AGENT, 202),
        ("GET", f"{PS}/pending/*", AGENT, 200),
        ("GET", f"{RS}/pending/*", AUTH, 200),
    ]
    assert body(world.wire[0].request) == {"month": "2027-01"}
    assert world.wire[6].url == world.wire[3].response.headers.get("location")
    assert response.json()["path"] == "/reports"
    assert response.json()["principal"]["kind"] == "authorized"


def federated(stage: Stage, call: Call) -> None:
    world = stage.world
    world.as_policy.interaction = True  # Alice binds her PS at the AS first
    response = call("GET", f"{FED}/data")
    assert trace(world.wire) == [
        ("GET", f"{FED}/data", AGENT, 401),
        ("POST", f"{PS}/person-token", AGENT, 202),
        ("GET", f"{PS}/pending/*", AGENT, 200),
        ("GET", f"{FED}/data", PERSON, 401),
        ("POST", f"{AS}/token", f"server:{PS}", 202),
        ("POST", f"{PS}/auth-token", AGENT, 202),
        ("GET", f"{AS}/pending/*", f"server:{PS}", 202),
        ("GET", f"{PS}/pending/*", AGENT, 202),
        ("GET", f"{AS}/pending/*", f"server:{PS}", 200),
        ("GET", f"{PS}/pending/*", AGENT, 200),
        ("GET", f"{FED}/data", AUTH, 200),
    ]
    assert any(s.url.startswith(f"{AS}/bind") for s in stage.shown)
    assert response.json()["principal"]["iss"] == AS


def clarification(stage: Stage, call: Call) -> None:
    world = stage.world
    world.person.plan = ["approve", "ask:Which calendar will you read?", "approve"]
    world.agent_answers = ["The work calendar only."]
    response = call("GET", f"{RS}/data")
    assert response.status_code == 200
    assert stage.questions == ["Which calendar will you read?"]
    posted = [e for e in world.wire if e.request.method == "POST" and "/pending/" in e.url]
    assert [body(e.request) for e in posted] == [
        {"action": "clarification_response", "clarification_response": "The work calendar only."}
    ]


def denial(stage: Stage, call: Call) -> None:
    world = stage.world
    world.person.plan = ["approve", "deny"]  # yes to the person token, no to the scope
    with pytest.raises(AAuthError) as raised:
        call("GET", f"{RS}/data")
    assert (raised.value.code, raised.value.status) == ("denied", 403)
    assert trace(world.wire[-2:]) == [
        ("POST", f"{PS}/auth-token", AGENT, 202),
        ("GET", f"{PS}/pending/*", AGENT, 403),
    ]


SCENARIOS: dict[str, Callable[[Stage, Call], None]] = {
    "agent-identity": agent_identity,
    "resource-managed": resource_managed,
    "person-identity": person_identity,
    "ps-reactive": ps_reactive,
    "ps-proactive": ps_proactive,
    "deferred": deferred,
    "federated": federated,
    "clarification": clarification,
    "denial": denial,
}


# -- the sync driver ------------------------------------------------------------------------


@pytest.fixture
def sync_stage(live_world: tuple[Stage, egress.EgressPolicy]) -> Iterator[tuple[Stage, Any]]:
    stage, admitted = live_world
    stage.reset()
    with egress.client(admitted) as http:
        yield stage, http


def sync_client(stage: Stage, http: httpx.Client, **overrides: Any) -> AgentClient:
    options = driver_options(stage, **overrides)
    return AgentClient(agent_signer(stage), http=http, sleep=stage.sleep, **options)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_mode_with_the_sync_driver(name: str, sync_stage: tuple[Stage, Any]) -> None:
    stage, http = sync_stage
    client = sync_client(stage, http)
    SCENARIOS[name](stage, client.request)


def test_a_question_nobody_can_answer_cancels_the_pending_request(
    sync_stage: tuple[Stage, Any],
) -> None:
    stage, http = sync_stage
    world = stage.world
    world.person.plan = ["approve", "ask:Which calendar?"]
    client = sync_client(stage, http, on_question=None)
    with pytest.raises(AAuthError):
        client.request("GET", f"{RS}/data")
    last = world.wire[-1]
    assert (last.request.method, where(last.url)) == ("DELETE", f"{PS}/pending/*")
    assert stage.questions == []


def test_the_wait_budget_cancels_the_call_with_a_timeout(sync_stage: tuple[Stage, Any]) -> None:
    stage, http = sync_stage
    world = stage.world
    client = sync_client(stage, http, on_interaction=lambda show: None, max_wait=12)
    with pytest.raises(AAuthError) as raised:
        client.request("GET", f"{RS}/notes")  # Alice never comes: polls every 5 s
    assert (raised.value.code, raised.value.status) == ("timeout", 504)
    assert trace(world.wire) == [
        ("GET", f"{RS}/notes", AGENT, 202),
        ("GET", f"{RS}/pending/*", AGENT, 202),
        ("GET", f"{RS}/pending/*", AGENT, 202),
        ("DELETE", f"{RS}/pending/*", AGENT, world.wire[-1].response.status),
    ]
    assert world.now - T0 == 10  # two waits of Retry-After: 5 fit in 12 s


def test_prefer_wait_goes_on_every_poll(sync_stage: tuple[Stage, Any]) -> None:
    stage, http = sync_stage
    client = sync_client(stage, http, prefer_wait=20)
    client.request("GET", f"{RS}/profile")
    polls = [e for e in stage.world.wire if "/pending/" in e.url]
    assert polls
    assert {e.request.headers.get("prefer") for e in polls} == {"wait=20"}


def test_caches_are_shared_by_threads_and_kept_between_calls(
    sync_stage: tuple[Stage, Any],
) -> None:
    stage, http = sync_stage
    client = sync_client(stage, http)
    client.request("GET", f"{RS}/data")  # an auth token for RS
    errors: list[BaseException] = []
    statuses: list[int] = []

    def work(url: str) -> None:
        try:
            statuses.append(client.request("GET", url).status_code)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=work, args=(f"{RS}/{p}",)) for p in ("agent", "profile")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(statuses) == [200, 200]
    store = client.store
    # each call's additions survived the other's: the auth token, the person token for RS
    assert store.auth_token(RS, stage.world.now) is not None
    assert store.person_token(RS, None, stage.world.now) is not None
    start = len(stage.world.wire)
    client.request("GET", f"{RS}/data")
    assert trace(stage.world.wire[start:]) == [("GET", f"{RS}/data", AUTH, 200)]
