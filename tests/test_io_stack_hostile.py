"""Hostile input against the reference servers as they run: four `aauth serve` processes.

The stack is the demo's (real processes, real TLS, real ports); the test plays a hostile
agent with real keys, including the servers' own keys read from their key files, so
every token it sends is exactly as good or as bad as it says. Two peers are served here:
``other.aauth.test`` (reachable) publishes a metadata document naming another issuer;
``evil.aauth.test`` maps to loopback but is not among the names allowed to reach private
addresses, so no server may fetch from it. After every refusal the server answers a good
request: hostile input never stops it.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from live import LiveServer, free_port
from signing_helpers import generated_ed25519
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aauth_backends.uris import open_signer
from aauth_core.http import HttpRequest, HttpResponse
from aauth_core.identifiers import AgentId
from aauth_core.requests import sign_aauth_request
from aauth_core.signer import Signer
from aauth_core.tokens import (
    DWK_AGENT,
    DWK_PERSON,
    AgentTokenClaims,
    Confirmation,
    PersonTokenClaims,
    mint_token,
)
from aauth_flows.io import egress
from aauth_flows.io.agent_async import AsyncAgentClient
from aauth_flows.io.ap_client import request_agent_token
from aauth_flows.io.demo_person import Browser
from aauth_flows.io.demo_stack import AGENT, AP, CALENDAR, FED, PERSON, PS, Stack
from aauth_flows.io.discovery import Discovery
from aauth_flows.io.egress import EgressRefused
from aauth_flows.io.messages import send
from aauth_flows.machines.actions import ShowInteraction

EVIL = "https://evil.aauth.test"
OTHER = "https://other.aauth.test"


def _peer(claimed_issuer: str, signer: Signer) -> Starlette:
    """A peer whose agent metadata names ``claimed_issuer``, and whose person metadata is
    its own but sends the keys to a loopback address (``https://127.0.0.1:…/jwks``)."""

    async def document(request: Request) -> Response:
        host = request.headers["host"]
        return JSONResponse({"issuer": claimed_issuer, "jwks_uri": f"https://{host}/jwks"})

    async def person_document(request: Request) -> Response:
        host = request.headers["host"]
        port = request.url.port or 443
        return JSONResponse(
            {
                "issuer": f"https://{host}",
                "jwks_uri": f"https://127.0.0.1:{port}/jwks",
                "person_token_endpoint": f"https://{host}/person-token",
                "auth_token_endpoint": f"https://{host}/auth-token",
            }
        )

    async def jwks(_request: Request) -> Response:
        return JSONResponse({"keys": [signer.public_jwk().to_dict()]})

    return Starlette(
        routes=[
            Route("/.well-known/aauth-agent.json", document),
            Route("/.well-known/aauth-person.json", person_document),
            Route("/jwks", jwks),
        ]
    )


class Agent:
    def __init__(self, stack: Stack, signer: Signer) -> None:
        self.stack = stack
        self.signer = signer
        self.http = egress.client(stack.egress)
        self.token = request_agent_token(self.http, AP, signer, AGENT, PS)
        self.ap = open_signer(stack.key_refs["ap"])
        self.ps = open_signer(stack.key_refs["ps"])

    def signed(
        self, method: str, url: str, token: str | None = None, body: bytes = b""
    ) -> HttpRequest:
        headers = {"Content-Type": "application/json"} if body else {}
        bare = HttpRequest(method=method, url=url, headers=headers, body=body)
        fields = sign_aauth_request(
            bare, self.signer, token=token or self.token, created=int(time.time()), cover_body=True
        )
        return HttpRequest(
            method=method, url=url, headers=bare.headers.with_fields(fields), body=body
        )

    def send(self, request: HttpRequest) -> HttpResponse:
        return send(self.http, request)

    def agent_token(self, *, iss: str = AP, signer: Signer | None = None, exp: int = 600) -> str:
        now = int(time.time())
        claims = AgentTokenClaims(
            iss=iss,
            dwk=DWK_AGENT,
            jti=secrets.token_urlsafe(12),
            iat=now - 1200 if exp < 0 else now,
            exp=now + exp,
            sub=AgentId.parse(AGENT),
            cnf=Confirmation(jwk=self.signer.public_jwk()),
            ps=PS,
        )
        return mint_token(claims, signer or self.ap)

    def person_token(self, aud: str, *, iss: str = PS, signer: Signer | None = None) -> str:
        now = int(time.time())
        claims = PersonTokenClaims(
            iss=iss,
            dwk=DWK_PERSON,
            jti=secrets.token_urlsafe(12),
            iat=now,
            exp=now + 600,
            aud=aud,
            sub="alice-at-" + aud.removeprefix("https://"),
            cnf=Confirmation(jwk=self.signer.public_jwk()),
        )
        return mint_token(claims, signer or self.ps)

    def still_serving(self) -> None:
        answer = self.send(self.signed("GET", f"{CALENDAR}/whoami"))
        assert answer.status == 200, answer.body
        assert AGENT in answer.body.decode()


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    work: Path = tmp_path_factory.mktemp("stack")
    signer = generated_ed25519()
    evil_port, other_port = free_port(), free_port()
    stack = Stack(
        work,
        signer.public_jwk().thumbprint(),
        extra_hosts={"evil.aauth.test": (evil_port, False), "other.aauth.test": (other_port, True)},
    )
    attacker = generated_ed25519()
    peers = [
        LiveServer(_peer(EVIL, attacker), "evil.aauth.test", port=evil_port, certificate=stack.tls),
        LiveServer(_peer(AP, attacker), "other.aauth.test", port=other_port, certificate=stack.tls),
    ]
    try:
        for peer in peers:
            peer.start()
        stack.start()
        hostile = Agent(stack, signer)
        hostile.attacker = attacker  # type: ignore[attr-defined]
        yield hostile
        hostile.http.close()
    finally:
        codes = stack.stop()
        for peer in peers:
            peer.stop()
    assert all(code == 0 for code in codes.values()), codes


def _error(response: HttpResponse) -> str:
    return response.headers.get("Signature-Error") or ""


def test_a_good_call_is_served(agent: Agent) -> None:
    agent.still_serving()


def test_tampered_request(agent: Agent) -> None:
    good = agent.signed("POST", f"{CALENDAR}/whoami", body=b'{"a":1}')
    tampered = HttpRequest(method=good.method, url=good.url, headers=good.headers, body=b'{"a":2}')
    answer = agent.send(tampered)
    assert answer.status == 401
    assert "error=invalid_signature" in _error(answer)
    agent.still_serving()


def test_expired_token(agent: Agent) -> None:
    answer = agent.send(agent.signed("GET", f"{CALENDAR}/whoami", agent.agent_token(exp=-600)))
    assert answer.status == 401
    assert "error=expired_jwt" in _error(answer)
    agent.still_serving()


def test_token_for_another_audience(agent: Agent) -> None:
    answer = agent.send(agent.signed("GET", f"{CALENDAR}/me/profile", agent.person_token(FED)))
    assert answer.status == 401
    assert "error=invalid_jwt" in _error(answer)
    agent.still_serving()


def test_person_token_where_an_auth_token_is_required(agent: Agent) -> None:
    answer = agent.send(agent.signed("GET", f"{CALENDAR}/events", agent.person_token(CALENDAR)))
    assert answer.status == 401
    requirement = answer.headers.get("AAuth-Requirement") or ""
    assert requirement.startswith("requirement=auth-token")
    assert "resource-token=" in requirement
    agent.still_serving()


def test_replay_inside_the_window(agent: Agent) -> None:
    request = agent.signed("POST", f"{CALENDAR}/whoami", body=b'{"hello":1}')
    assert agent.send(request).status == 405  # verified, then the app: /whoami takes GET
    again = agent.send(request)
    assert again.status == 401
    assert "error=invalid_signature" in _error(again)
    assert "replay" in json.loads(again.body)["detail"]
    agent.still_serving()


def test_oversized_header(agent: Agent) -> None:
    request = agent.signed("GET", f"{CALENDAR}/whoami")
    big = HttpRequest(
        method="GET",
        url=request.url,
        headers=request.headers.with_fields({"X-Big": "x" * 1_000_000}),
    )
    # h11 refuses it before any of our code runs: a 400, or (when the server closes while
    # the client is still writing) the connection dropped; never an answer from the app
    try:
        outcome = str(agent.send(big).status)
    except EgressRefused as err:
        outcome = str(err)
    assert outcome == "400" or outcome.endswith(("RemoteProtocolError", "WriteError")), outcome
    agent.still_serving()


def test_oversized_body_at_the_person_server(agent: Agent) -> None:
    answer = agent.send(agent.signed("POST", f"{PS}/auth-token", body=b"[" * 2_000_000))
    assert answer.status == 413
    assert json.loads(answer.body)["error"] == "invalid_request"
    agent.still_serving()


def test_metadata_whose_issuer_does_not_match(agent: Agent) -> None:
    attacker: Signer = agent.attacker  # type: ignore[attr-defined]
    forged = agent.agent_token(iss=OTHER, signer=attacker)
    answer = agent.send(agent.signed("GET", f"{CALENDAR}/whoami", forged))
    assert answer.status == 401
    assert "error=issuer_mismatch" in _error(answer)
    agent.still_serving()


def test_keys_at_a_private_address_are_never_fetched(agent: Agent) -> None:
    attacker: Signer = agent.attacker  # type: ignore[attr-defined]
    forged = agent.agent_token(iss=EVIL, signer=attacker)
    answer = agent.send(agent.signed("GET", f"{CALENDAR}/whoami", forged))
    assert answer.status == 401
    assert "error=invalid_jwt" in _error(answer)
    assert "private" in json.loads(answer.body)["detail"]
    agent.still_serving()


def test_a_jwks_url_at_a_private_address_is_never_fetched(agent: Agent) -> None:
    """A reachable issuer whose document sends the keys to a loopback address: refused
    before any connection, as a jwks_uri off the issuer's origin (with cross-origin JWKS
    allowed, egress admission refuses the address itself: tests/test_io_discovery.py)."""
    attacker: Signer = agent.attacker  # type: ignore[attr-defined]
    forged = agent.person_token(CALENDAR, iss=OTHER, signer=attacker)
    answer = agent.send(agent.signed("GET", f"{CALENDAR}/me/profile", forged))
    assert answer.status == 401
    assert "error=invalid_jwt" in _error(answer)
    assert "jwks_uri" in json.loads(answer.body)["detail"]
    agent.still_serving()


def test_async_driver_against_the_real_servers(agent: Agent) -> None:
    """The async agent client: PS authorization with the person approving on the page."""
    stack = agent.stack
    browser_http = egress.client(stack.egress)
    browser = Browser(browser_http, logins={PS: PERSON}, report=lambda _t: None)
    threads: list[threading.Thread] = []

    def show(interaction: ShowInteraction) -> None:
        thread = threading.Thread(target=browser.approve, args=(interaction.url, interaction.code))
        threads.append(thread)
        thread.start()

    async def call() -> Any:
        quiet = egress.client(stack.egress)
        discovery = Discovery(quiet)
        async with egress.async_client(stack.egress) as http:
            client = AsyncAgentClient(
                agent.signer,
                agent_token=lambda _current: request_agent_token(
                    quiet, AP, agent.signer, AGENT, PS
                ),
                http=http,
                discovery=discovery,
                keys=discovery,
                on_interaction=show,
                max_wait=30,
            )
            try:
                return await client.request("GET", f"{CALENDAR}/events")
            finally:
                quiet.close()

    try:
        response = asyncio.run(call())
    finally:
        for thread in threads:
            thread.join(timeout=10)
        browser_http.close()
    assert response.status_code == 200, response.text
    assert json.loads(response.content) == {"events": []}
    assert any("Approve access" in page or "approve" in page.lower() for page in browser.pages)
