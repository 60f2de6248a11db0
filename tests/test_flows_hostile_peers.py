"""Hostile answers to the agent: after the agent sends its first request (and at every
later step of a real PS-authorization flow), the peer's answer is replaced by an arbitrary
response (any status, any of the AAuth headers with any value, any body). The agent either
goes on (actions) or refuses with an AAuthError carrying a wire code and sits in ERROR or
FAILED; it never raises anything else and never delivers a result for a refused answer."""

from __future__ import annotations

import json
from collections import Counter, deque
from typing import Any

from flow_world import RS, World
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aauth_core.errors import AAuthError
from aauth_core.http import HttpRequest, HttpResponse
from aauth_flows.machines import (
    Deliver,
    Fail,
    ResponseReceived,
    SendRequest,
    SignBytes,
    TimerFired,
    Wait,
)
from aauth_flows.machines.agent import (
    AgentTokenRefreshed,
    DiscoverPersonServer,
    PersonServerDiscovered,
    RefreshAgentToken,
    StartCall,
)
from aauth_flows.machines.pending import PendingInputNeeded, PostAnswer, clarification_response

HEADERS = [
    "AAuth-Requirement",
    "Signature-Error",
    "Accept-Signature-Scheme",
    "Accept-Signature-Alg",
    "AAuth-Access",
    "Location",
    "Retry-After",
    "Content-Type",
    "Date",
]
values = st.one_of(
    st.text(max_size=120),
    st.sampled_from(
        [
            'requirement=auth-token; resource-token="a.b.c"',
            "requirement=person-token",
            "requirement=agent-token",
            'requirement=interaction; url="https://resource.example/i"; code="ABCD-EFGH"',
            "requirement=clarification",
            "requirement=unknown-thing",
            "error=expired_jwt",
            'error=invalid_input; required_input=("content-type")',
            "error=clock_skew",
            "error=unsupported_algorithm",
            "https://resource.example/pending/x",
            "https://evil.example/pending/x",
            "5",
            "-1",
            "application/json",
            "Sat, 28 Nov 2026 16:00:00 GMT",
        ]
    ),
)
bodies = st.one_of(
    st.binary(max_size=200),
    st.sampled_from(
        [
            b'{"status":"pending"}',
            b'{"auth_token":"a.b.c","expires_in":3600}',
            b'{"person_token":"a.b.c"}',
            b'{"resource_token":"a.b.c"}',
            b'{"error":"expired_presented_token"}',
            b"[]",
        ]
    ),
)
responses = st.builds(
    lambda status, headers, body: (status, headers, body),
    st.sampled_from(
        [200, 201, 202, 204, 301, 400, 401, 402, 403, 404, 408, 410, 429, 500, 502, 503]
    ),
    st.lists(st.tuples(st.sampled_from(HEADERS), values), max_size=4),
    bodies,
)


def _response(status: int, headers: list[tuple[str, str]], body: bytes) -> HttpResponse | None:
    try:
        return HttpResponse(status=status, headers=headers, body=body)
    except AAuthError:
        return None


def _drive(world: World, flow: Any, hostile_at: int, hostile: HttpResponse) -> Any:
    """Run the agent like a host would; the ``hostile_at``-th request it sends gets
    ``hostile`` instead of the real answer. Returns how it ended."""
    queue: deque[Any] = deque(
        [StartCall(request=HttpRequest(method="GET", url=f"{RS}/data"), at=world.now)]
    )
    sent = 0
    for _ in range(300):
        if not queue:
            return "idle"
        actions = flow.handle(queue.popleft())
        for action in actions:
            if isinstance(action, SignBytes):
                queue.append(world.sign(action))
            elif isinstance(action, SendRequest):
                answer = hostile if sent == hostile_at else world.send(action.request)
                sent += 1
                queue.append(ResponseReceived(response=answer, at=world.now))
            elif isinstance(action, RefreshAgentToken):
                token = world.issue_agent_token()
                queue.append(AgentTokenRefreshed(token=token, at=world.now))
            elif isinstance(action, DiscoverPersonServer):
                queue.append(PersonServerDiscovered(metadata=world.ps_metadata, at=world.now))
            elif isinstance(action, PendingInputNeeded):
                queue.append(PostAnswer(body=clarification_response("yes"), at=world.now))
            elif isinstance(action, Wait):
                world.advance(min(action.seconds, 60))
                queue.append(TimerFired(at=world.now))
            elif isinstance(action, Deliver):
                return "delivered"
            elif isinstance(action, Fail):
                assert action.error.code
                return "failed"
    return "gave up"


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(step=st.integers(min_value=0, max_value=8), hostile=responses)
def test_the_agent_survives_any_answer_at_any_step(step: int, hostile: Any) -> None:
    response = _response(*hostile)
    if response is None:
        return
    world = World()
    flow = world.new_flow()
    ended = ""
    try:
        ended = _drive(world, flow, step, response)
    except AAuthError as error:  # refused with a wire code: the machine sits in ERROR
        OUTCOMES["refused"] += 1
        refused: AAuthError | None = error
    else:
        refused = None
    if refused is not None:
        assert refused.code
        assert 400 <= refused.status < 600
        assert flow.state.name == "ERROR"
        return
    OUTCOMES[ended] += 1
    assert ended in ("delivered", "failed", "idle", "gave up")
    if ended == "failed":
        assert flow.state.name in ("FAILED", "CANCELLED")


OUTCOMES: Counter[str] = Counter()


def test_a_real_flow_is_unchanged_without_hostility() -> None:
    world = World()
    outcome = world.call("GET", f"{RS}/data")
    assert outcome.response.status == 200
    assert json.loads(outcome.response.body)["principal"]["kind"] == "authorized"
