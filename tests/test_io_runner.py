"""The server-side driver loop with real machines, a real signer and a real HTTP client."""

from __future__ import annotations

import httpx
import pytest
from flow_world import PS, World
from structlog.testing import capture_logs

from aauth_core.http import HttpRequest
from aauth_flows.io import egress
from aauth_flows.io.runner import run_machine
from aauth_flows.machines.agent_provider import AgentTokenRevocation, RevokeAgentToken
from aauth_flows.machines.resource import RequestReceived, RevocationEndpoint


def test_a_refused_request_is_answered_and_logged_once() -> None:
    world = World()
    machine = RevocationEndpoint(config=world.rs.config)
    unsigned = HttpRequest(method="POST", url=f"{world.rs.issuer}/revoke", body=b"{}")
    with capture_logs() as logs:
        result = run_machine(
            machine,
            RequestReceived(request=unsigned, at=world.now, random=world.random()),
            signers=world.signers,
            http=None,
            clock=lambda: world.now,
            store=world.rs.store,
        )
    assert result.response is not None
    assert result.response.status == 401
    assert result.records == []  # nothing recorded for a refused request
    [handled] = [e for e in logs if e["event"] == "aauth.io.handled"]
    assert handled["machine"] == "RevocationEndpoint"
    assert handled["status"] == 401
    assert handled["duration_ms"] >= 0


def test_an_unreachable_peer_is_a_502_the_machine_handles() -> None:
    """The AP revokes at a PS nobody can reach (egress refuses the loopback name): the
    machine sees a 502 problem answer, and ends FAILED instead of the loop crashing."""
    world = World()
    machine = AgentTokenRevocation(config=world.ap_config)
    event = RevokeAgentToken(
        jti="t-1", exp=world.now + 60, revocation_endpoint=f"{PS}/revoke", at=world.now
    )
    refusing = egress.EgressPolicy(connect_to={"ps.example": ("127.0.0.1", 9)})
    with egress.client(refusing) as http, capture_logs() as logs:
        result = run_machine(
            machine, event, signers=world.signers, http=http, clock=lambda: world.now
        )
    assert any(e["event"] == "aauth.io.send_failed" for e in logs)
    # a failed peer, not a broken protocol: FAILED (not ERROR), with the reason delivered
    assert machine.state.name == "FAILED", machine.state
    [failed] = [a for a in result.later if type(a).__name__ == "Fail"]
    assert failed.error.status == 502


def test_a_machine_that_sends_needs_a_client() -> None:
    world = World()
    machine = AgentTokenRevocation(config=world.ap_config)
    event = RevokeAgentToken(
        jti="t-2", exp=world.now + 60, revocation_endpoint=f"{PS}/revoke", at=world.now
    )
    with pytest.raises(LookupError, match="no HTTP client"):
        run_machine(machine, event, signers=world.signers, http=None, clock=lambda: world.now)


def test_a_key_nobody_configured_is_a_lookup_error() -> None:
    world = World()
    machine = AgentTokenRevocation(config=world.ap_config)
    event = RevokeAgentToken(
        jti="t-3", exp=world.now + 60, revocation_endpoint=f"{PS}/revoke", at=world.now
    )
    with httpx.Client() as http, pytest.raises(LookupError, match="no signer"):
        run_machine(machine, event, signers={}, http=http, clock=lambda: world.now)
