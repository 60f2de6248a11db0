"""AAuthAuth (aauth_flows.io.httpx_auth): plain httpx calls signed as the agent, over real
HTTP against the served World's agent-identity route (``/agent``, which verifies every
signature, the agent token and, when covered, the body digest)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from flow_world import AGENT_ID, AP, RS
from test_io_agent_client import Stage, agent_signer, claims, live_world, trace

from aauth_core.errors import AAuthError
from aauth_flows.io import egress
from aauth_flows.io.httpx_auth import AAuthAuth
from aauth_flows.machines.actions import RecordRevocation
from aauth_flows.machines.agent_credentials import REFRESH_MARGIN

__all__ = ["live_world"]  # the module-scoped served World


@pytest.fixture
def stage(live_world: tuple[Stage, egress.EgressPolicy]) -> Stage:
    served, _ = live_world
    served.reset()
    return served


@pytest.fixture
def admitted(live_world: tuple[Stage, egress.EgressPolicy]) -> egress.EgressPolicy:
    return live_world[1]


def make_auth(stage: Stage, **overrides: Any) -> AAuthAuth:
    options: dict[str, Any] = {"agent_token": stage.agent_token, "clock": stage.now}
    options.update(overrides)
    return AAuthAuth(agent_signer(stage), **options)


def presented_jti(stage: Stage, index: int) -> str:
    raw = stage.world.wire[index].request.headers.get("signature-key") or ""
    return str(claims(raw.split('jwt="')[1].rstrip('"'))["jti"])


def test_sync_get_is_signed_with_the_agent_token(
    stage: Stage, admitted: egress.EgressPolicy
) -> None:
    with egress.client(admitted, auth=make_auth(stage)) as http:
        response = http.get(f"{RS}/agent")
    assert response.status_code == 200
    assert response.json()["principal"] == {
        "kind": "agent",
        "iss": AP,
        "agent": str(AGENT_ID),
        "session": False,
    }
    assert trace(stage.world.wire) == [("GET", f"{RS}/agent", "aa-agent+jwt", 200)]
    assert (stage.world.wire[0].request.headers.get("signature-key") or "").startswith("sig=jwt;")


def test_sync_post_covers_the_final_body(stage: Stage, admitted: egress.EgressPolicy) -> None:
    with egress.client(admitted, auth=make_auth(stage)) as http:
        response = http.post(f"{RS}/agent", json={"note": "hello"})
    assert response.status_code == 200
    seen = stage.world.wire[0].request
    covered = seen.headers.get("signature-input") or ""
    assert '"content-digest"' in covered and '"content-type"' in covered
    assert json.loads(seen.body) == {"note": "hello"}


def test_a_body_changed_after_signing_is_refused(
    stage: Stage, admitted: egress.EgressPolicy
) -> None:
    auth = make_auth(stage)
    signed = httpx.Request("POST", f"{RS}/agent", json={"amount": 1})
    auth.sign(signed, auth.token())
    headers = {k: v for k, v in signed.headers.items() if k.lower() != "content-length"}
    with egress.client(admitted) as http:
        good = http.post(f"{RS}/agent", headers=headers, content=signed.content)
        bad = http.post(f"{RS}/agent", headers=headers, content=b'{"amount":1000}')
    assert good.status_code == 200
    assert bad.status_code == 401
    assert "signature-error" in bad.headers


def test_the_agent_token_is_fetched_again_near_expiry(
    stage: Stage, admitted: egress.EgressPolicy
) -> None:
    world = stage.world
    with egress.client(admitted, auth=make_auth(stage)) as http:
        http.get(f"{RS}/agent")
        http.get(f"{RS}/agent")
        assert len(world.ap_issued) == 1  # reused while fresh
        stage.sleep(world.ap_issued[0].exp - world.now - REFRESH_MARGIN + 1)
        response = http.get(f"{RS}/agent")
    assert response.status_code == 200
    assert len(world.ap_issued) == 2
    assert presented_jti(stage, 2) == world.ap_issued[1].jti != world.ap_issued[0].jti


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_revoked_agent_token_is_replaced_once(
    mode: str, stage: Stage, admitted: egress.EgressPolicy
) -> None:
    world = stage.world
    auth = make_auth(stage)
    token = auth.token()
    with stage.lock:
        issued = world.ap_issued[-1]
        assert world.rs.store.apply(RecordRevocation(iss=AP, jti=issued.jti, exp=issued.exp))

    async def get_async() -> httpx.Response:
        async with egress.async_client(admitted, auth=auth) as http:
            return await http.get(f"{RS}/agent")

    if mode == "sync":
        with egress.client(admitted, auth=auth) as http:
            response = http.get(f"{RS}/agent")
    else:
        response = asyncio.run(get_async())
    assert response.status_code == 200
    assert trace(world.wire) == [
        ("GET", f"{RS}/agent", "aa-agent+jwt", 401),
        ("GET", f"{RS}/agent", "aa-agent+jwt", 200),
    ]
    assert world.wire[0].response.headers.get("signature-error") == "error=revoked_jwt"
    assert presented_jti(stage, 1) == world.ap_issued[-1].jti != issued.jti
    assert auth.token() != token


def test_an_agent_token_for_another_key_is_refused(stage: Stage) -> None:
    other = stage.world.signers["software:intruder"]
    auth = AAuthAuth(other, agent_token=stage.agent_token, clock=stage.now)
    with pytest.raises(AAuthError):
        auth.token()


def test_async_get_and_post_are_signed(stage: Stage, admitted: egress.EgressPolicy) -> None:
    async def main() -> tuple[int, int]:
        async with egress.async_client(admitted) as http:
            auth = make_auth(stage)
            got = await http.get(f"{RS}/agent", auth=auth)
            posted = await http.post(f"{RS}/agent", json={"n": 2}, auth=auth)
            return got.status_code, posted.status_code

    assert asyncio.run(main()) == (200, 200)
    assert trace(stage.world.wire) == [
        ("GET", f"{RS}/agent", "aa-agent+jwt", 200),
        ("POST", f"{RS}/agent", "aa-agent+jwt", 200),
    ]
    assert '"content-digest"' in (stage.world.wire[1].request.headers.get("signature-input") or "")
    assert len(stage.world.ap_issued) == 1
