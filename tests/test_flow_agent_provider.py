"""The Agent Provider: agent token issuance and its caps, sub-agent tokens one level deep,
and revocation at the PS signed as a server (checked with the AS-side server-signature
verifier, as the PS would)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_flow_federation_world import AGENT_ID, AP, KEYS, NOW, PS, RESOLVER, sign

from aauth_core.errors import IllegalTransition, LocalProtocolError
from aauth_core.http import HttpResponse
from aauth_core.identifiers import AgentId
from aauth_core.server_requests import verify_server_request
from aauth_core.signature_key import parse_full
from aauth_core.tokens import DWK_AGENT, verify_agent_token
from aauth_flows.machines.actions import (
    Deliver,
    Fail,
    ResponseReceived,
    SendRequest,
    SignatureProduced,
    SignBytes,
    TimerFired,
    Wait,
)
from aauth_flows.machines.agent_provider import (
    MAX_AGENT_TOKEN_LIFETIME,
    AgentProviderConfig,
    AgentTokenIssuance,
    AgentTokenRevocation,
    IssuanceState,
    IssueAgentToken,
    IssuedAgentToken,
    IssueSubAgentToken,
    RecordAgentToken,
    RevocationClientState,
    RevokeAgentToken,
    StaticAgentRegistry,
)
from aauth_flows.machines.engine import Action, Event, Snapshot

NONCE = bytes(range(16))
REGISTRY = StaticAgentRegistry({str(AGENT_ID): frozenset({KEYS["agent"].public_jwk.thumbprint()})})
CONFIG = AgentProviderConfig(issuer=AP, signing_key=KEYS["ap"], registry=REGISTRY, keys=RESOLVER)
PS_REVOKE = f"{PS}/revoke"


def run(machine: Any, actions: list[Action]) -> list[Action]:
    out: list[Action] = []
    queue = list(actions)
    while queue:
        action = queue.pop(0)
        out.append(action)
        if isinstance(action, SignBytes):
            queue.extend(machine.handle(sign(action)))
    return out


def issue(event: Event) -> tuple[AgentTokenIssuance, list[Action]]:
    machine = AgentTokenIssuance(config=CONFIG)
    return machine, run(machine, machine.handle(event))


def issued(actions: list[Action]) -> IssuedAgentToken:
    [deliver] = [a for a in actions if isinstance(a, Deliver)]
    assert isinstance(deliver.result, IssuedAgentToken)
    return deliver.result


def agent_token(**over: Any) -> IssuedAgentToken:
    values: dict[str, Any] = {
        "agent": AGENT_ID,
        "key": KEYS["agent"].public_jwk,
        "ps": PS,
        "at": NOW,
        "nonce": NONCE,
    }
    values.update(over)
    return issued(issue(IssueAgentToken(**values))[1])


def refused(event: Event, code: str) -> None:
    machine, actions = issue(event)
    assert machine.state is IssuanceState.FAILED
    [fail] = actions
    assert isinstance(fail, Fail) and fail.error.code == code


# -- agent tokens ------------------------------------------------------------------------------


def test_agent_token_is_issued_and_verifies() -> None:
    machine, actions = issue(
        IssueAgentToken(agent=AGENT_ID, key=KEYS["agent"].public_jwk, ps=PS, at=NOW, nonce=NONCE)
    )
    result = issued(actions)
    assert machine.state is IssuanceState.ISSUED
    claims = verify_agent_token(result.token, keys=RESOLVER, now=NOW + 1).claims
    assert claims.iss == AP and claims.dwk == DWK_AGENT and claims.sub == AGENT_ID
    assert claims.ps == PS and claims.cnf.binds(KEYS["agent"].public_jwk)
    assert claims.exp == NOW + 3600 and claims.parent_agent is None
    assert RecordAgentToken(jti=claims.jti, sub=AGENT_ID, exp=claims.exp) in actions


def test_agent_token_lifetime_is_capped_at_24_hours() -> None:
    result = agent_token(lifetime=10 * 24 * 3600)
    assert result.exp - NOW == MAX_AGENT_TOKEN_LIFETIME
    with pytest.raises(ValueError, match="24 hours"):
        AgentProviderConfig(
            issuer=AP, signing_key=KEYS["ap"], registry=REGISTRY, keys=RESOLVER, lifetime=90_000
        )


def test_ap_vouches_only_for_enrolled_agent_and_key() -> None:
    refused(
        IssueAgentToken(agent=AGENT_ID, key=KEYS["other"].public_jwk, ps=PS, at=NOW, nonce=NONCE),
        "access_denied",
    )
    stranger = AgentId.parse("aauth:stranger@agent.example")
    refused(
        IssueAgentToken(agent=stranger, key=KEYS["agent"].public_jwk, ps=PS, at=NOW, nonce=NONCE),
        "access_denied",
    )
    foreign = AgentId.parse("aauth:assistant@other.example")
    refused(
        IssueAgentToken(agent=foreign, key=KEYS["agent"].public_jwk, ps=PS, at=NOW, nonce=NONCE),
        "invalid_request",
    )


def test_issuance_needs_fresh_random_bytes() -> None:
    machine = AgentTokenIssuance(config=CONFIG)
    with pytest.raises(LocalProtocolError):
        machine.handle(
            IssueAgentToken(agent=AGENT_ID, key=KEYS["agent"].public_jwk, ps=PS, at=NOW, nonce=b"1")
        )


# -- sub-agents ---------------------------------------------------------------------------------


def test_subagent_token_one_level_with_parent_and_capped_exp() -> None:
    parent = agent_token(lifetime=600)
    _, actions = issue(
        IssueSubAgentToken(
            parent_token=parent.token,
            discriminator="search1",
            key=KEYS["sub"].public_jwk,
            at=NOW + 10,
            nonce=NONCE[::-1],
        )
    )
    child = issued(actions)
    claims = verify_agent_token(child.token, keys=RESOLVER, now=NOW + 11).claims
    assert claims.sub == AGENT_ID.subagent("search1") and claims.parent_agent == AGENT_ID
    assert claims.iss == AP and claims.ps == PS and claims.cnf.binds(KEYS["sub"].public_jwk)
    assert claims.exp == parent.exp  # ≤ the parent's
    # a sub-agent may not mint further sub-agent tokens
    refused(
        IssueSubAgentToken(
            parent_token=child.token,
            discriminator="deeper",
            key=KEYS["other"].public_jwk,
            at=NOW + 20,
            nonce=NONCE,
        ),
        "invalid_request",
    )


def test_subagent_refusals() -> None:
    parent = agent_token()
    refused(
        IssueSubAgentToken(
            parent_token="garbage",
            discriminator="x",
            key=KEYS["sub"].public_jwk,
            at=NOW,
            nonce=NONCE,
        ),
        "invalid_request",
    )
    refused(
        IssueSubAgentToken(
            parent_token=parent.token,
            discriminator="x",
            key=KEYS["sub"].public_jwk,
            at=parent.exp,
            nonce=NONCE,
        ),
        "invalid_request",
    )
    refused(
        IssueSubAgentToken(
            parent_token=parent.token,
            discriminator="x",
            key=KEYS["agent"].public_jwk,
            at=NOW,
            nonce=NONCE,
        ),
        "invalid_request",
    )
    refused(
        IssueSubAgentToken(
            parent_token=parent.token,
            discriminator="bad disc",
            key=KEYS["sub"].public_jwk,
            at=NOW,
            nonce=NONCE,
        ),
        "invalid_request",
    )


def test_issuance_snapshot_mid_signing() -> None:
    machine = AgentTokenIssuance(config=CONFIG)
    [action] = machine.handle(
        IssueAgentToken(agent=AGENT_ID, key=KEYS["agent"].public_jwk, ps=PS, at=NOW, nonce=NONCE)
    )
    assert isinstance(action, SignBytes)
    restored = AgentTokenIssuance.restore(
        Snapshot.from_json(machine.snapshot().to_json()), config=CONFIG
    )
    assert isinstance(issued(restored.handle(sign(action))), IssuedAgentToken)


# -- revocation at the PS ------------------------------------------------------------------------


def start_revocation() -> tuple[AgentTokenRevocation, SendRequest]:
    machine = AgentTokenRevocation(config=CONFIG)
    actions = run(
        machine,
        machine.handle(
            RevokeAgentToken(jti="agent-7", exp=NOW + 600, revocation_endpoint=PS_REVOKE, at=NOW)
        ),
    )
    [send] = [a for a in actions if isinstance(a, SendRequest)]
    return machine, send


def test_revocation_is_a_server_signed_post_to_the_ps() -> None:
    machine, send = start_revocation()
    request = send.request
    assert request.method == "POST" and request.url == PS_REVOKE
    assert json.loads(request.body) == {"jti": "agent-7", "exp": NOW + 600}
    scheme = parse_full(request.headers.get("signature-key") or "", "sig")
    assert scheme.params() == {"id": AP, "dwk": DWK_AGENT, "kid": KEYS["ap"].key_id}
    verified = verify_server_request(request, keys=RESOLVER, dwks=(DWK_AGENT,), now=NOW)
    assert verified.issuer == AP
    assert "content-digest" in verified.signature.covered
    [done] = machine.handle(ResponseReceived(response=HttpResponse(status=200), at=NOW))
    assert isinstance(done, Deliver) and machine.state is RevocationClientState.DONE


def test_revocation_follows_a_202_with_signed_polls_and_slows_down_on_429() -> None:
    machine, _ = start_revocation()
    pending = HttpResponse(status=202, headers={"Location": f"{PS}/pending/r1", "Retry-After": "3"})
    [wait] = machine.handle(ResponseReceived(response=pending, at=NOW))
    assert wait == Wait(seconds=3)
    actions = run(machine, machine.handle(TimerFired(at=NOW + 3)))
    [poll] = [a for a in actions if isinstance(a, SendRequest)]
    assert poll.request.method == "GET" and poll.request.url == f"{PS}/pending/r1"
    assert (
        verify_server_request(poll.request, keys=RESOLVER, dwks=(DWK_AGENT,), now=NOW + 3).issuer
        == AP
    )
    [slower] = machine.handle(ResponseReceived(response=HttpResponse(status=429), at=NOW + 3))
    assert slower == Wait(seconds=8)


def test_revocation_refused_by_the_ps_fails_with_its_code() -> None:
    machine, _ = start_revocation()
    body = b'{"error":"rate_limited","detail":"slow"}'
    [fail] = machine.handle(ResponseReceived(response=HttpResponse(status=400, body=body), at=NOW))
    assert isinstance(fail, Fail) and fail.error.code == "rate_limited"
    assert machine.state is RevocationClientState.FAILED
    machine, _ = start_revocation()
    cross = HttpResponse(status=202, headers={"Location": "https://evil.example/p"})
    [fail] = machine.handle(ResponseReceived(response=cross, at=NOW))
    assert isinstance(fail, Fail) and machine.state is RevocationClientState.FAILED


# -- every (state, event) pair --------------------------------------------------------------------

ISSUANCE_EVENTS: list[Event] = [
    IssueAgentToken(agent=AGENT_ID, key=KEYS["agent"].public_jwk, ps=PS, at=NOW, nonce=NONCE),
    IssueSubAgentToken(
        parent_token="x", discriminator="d", key=KEYS["sub"].public_jwk, at=NOW, nonce=NONCE
    ),
    SignatureProduced(signature=bytes(64)),
]


@settings(max_examples=60)
@given(state=st.sampled_from(list(IssuanceState)), event=st.sampled_from(ISSUANCE_EVENTS))
def test_issuance_every_state_event_pair(state: IssuanceState, event: Event) -> None:
    machine = AgentTokenIssuance(config=CONFIG, state=state)
    allowed = AgentTokenIssuance.TRANSITIONS.get((state, type(event)))
    try:
        machine.handle(event)
    except IllegalTransition:
        assert machine.state is IssuanceState.ERROR
    except LocalProtocolError:
        assert allowed is not None and machine.state.name == "ERROR"
    else:
        assert allowed is not None and machine.state in allowed


REVOCATION_EVENTS: list[Event] = [
    RevokeAgentToken(jti="j", exp=NOW, revocation_endpoint=PS_REVOKE, at=NOW),
    SignatureProduced(signature=bytes(64)),
    ResponseReceived(response=HttpResponse(status=200), at=NOW),
    TimerFired(at=NOW),
]


@settings(max_examples=80)
@given(state=st.sampled_from(list(RevocationClientState)), event=st.sampled_from(REVOCATION_EVENTS))
def test_revocation_every_state_event_pair(state: RevocationClientState, event: Event) -> None:
    machine = AgentTokenRevocation(config=CONFIG, state=state)
    allowed = AgentTokenRevocation.TRANSITIONS.get((state, type(event)))
    try:
        machine.handle(event)
    except IllegalTransition:
        assert machine.state is RevocationClientState.ERROR
    except LocalProtocolError:
        assert allowed is not None and machine.state.name == "ERROR"
    else:
        assert allowed is not None and machine.state in allowed
