"""Hostile Access Server answers to the PS's federation client: at any step of a claims
→ approval → grant exchange, the AS's answer is replaced by an arbitrary response (any
status, AAuth and pending headers with any value, any body). The client never raises: it
settles for the PS (a delivered token that passed every check, or an error with a code,
``as_unreachable`` 502 for anything malformed) or fails with a code."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_flow_federation_world import ScriptedPolicy, World, federation_request

from aauth_core.errors import AAuthError
from aauth_core.http import HttpResponse
from aauth_flows.machines.as_policy import Grant, RequireApproval, RequireClaims
from aauth_flows.machines.federation_api import FederationSettled

HEADERS = ["AAuth-Requirement", "Location", "Retry-After", "Content-Type", "Signature-Error"]
values = st.one_of(
    st.text(max_size=80),
    st.sampled_from(
        [
            "requirement=claims",
            "requirement=approval",
            'requirement=interaction; url="https://as.example/i"; code="ABCD-EFGH"',
            "requirement=clarification",
            "/pending/x",
            "https://evil.example/p",
            "3",
            "application/json",
        ]
    ),
)
bodies = st.one_of(
    st.binary(max_size=200),
    st.sampled_from(
        [
            b'{"auth_token":"a.b.c","expires_in":3600}',
            b'{"auth_token":"a.b.c"}',
            b'{"status":"pending","required_claims":["email"]}',
            b'{"error":"denied"}',
            b'{"error":5}',
            b"[]",
        ]
    ),
)
hostile_responses = st.tuples(
    st.sampled_from([200, 202, 400, 401, 402, 403, 404, 408, 410, 429, 500, 502, 503]),
    st.lists(st.tuples(st.sampled_from(HEADERS), values), max_size=3),
    bodies,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(step=st.integers(min_value=0, max_value=3), hostile=hostile_responses)
def test_the_federation_client_survives_any_as_answer(step: int, hostile: Any) -> None:
    status, headers, body = hostile
    try:
        replacement = HttpResponse(status=status, headers=headers, body=body)
    except AAuthError:
        return
    answered = [0]

    def tamper(response: HttpResponse) -> HttpResponse:
        answered[0] += 1
        return replacement if answered[0] - 1 == step else response

    policy = ScriptedPolicy(RequireClaims(names=("email",)), RequireApproval(), Grant())
    world = World(policy, tamper=tamper)
    world.start(federation_request())  # raises on any non-AAuth misbehaviour: the test fails
    settled = [e for e in world.to_ps if isinstance(e, FederationSettled)]
    if settled:
        outcome = settled[-1]
        if outcome.error is not None:
            assert outcome.error.code
            assert 400 <= outcome.error.status < 600
    else:
        assert world.failures or world.client.state.name not in ("ERROR",)
    assert world.client.state.name != "ERROR"
