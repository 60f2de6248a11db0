"""Hostile answers inside a revocation cascade (AP → PS → resources): any downstream
answer replaced by an arbitrary response. The PS still answers the AP (it reports nothing
about downstream outcomes to the AP, §8); a hostile answer to the AP itself ends the AP's
revocation with a coded error. Nothing raises anything but an AAuthError."""

from __future__ import annotations

from typing import Any

from flow_world import PS, RS, World
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aauth_core.errors import AAuthError
from aauth_core.http import HttpRequest, HttpResponse

values = st.one_of(
    st.text(max_size=60),
    st.sampled_from(["/pending/r", "https://evil.example/x", "1", "application/json"]),
)
hostile_responses = st.tuples(
    st.sampled_from([200, 202, 204, 400, 401, 403, 404, 405, 410, 429, 500, 502, 503]),
    st.lists(
        st.tuples(st.sampled_from(["Location", "Retry-After", "Content-Type"]), values),
        max_size=3,
    ),
    st.one_of(st.binary(max_size=100), st.just(b'{"downstream":[]}'), st.just(b"{}")),
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(step=st.integers(min_value=0, max_value=2), hostile=hostile_responses)
def test_a_cascade_survives_any_downstream_or_upstream_answer(step: int, hostile: Any) -> None:
    status, headers, body = hostile
    try:
        replacement = HttpResponse(status=status, headers=headers, body=body)
    except AAuthError:
        return
    world = World()
    world.call("GET", f"{RS}/data")
    issued = world.ap_issued[-1]
    real_send = world.send
    sends = [0]

    def send(request: HttpRequest) -> HttpResponse:
        answer = real_send(request)
        sends[0] += 1
        return replacement if sends[0] - 1 == step else answer

    world.send = send  # type: ignore[method-assign]
    upstream_is_hostile = False
    try:
        answer = world.revoke_agent_token(issued)
    except AAuthError as error:  # the AP's own revocation refused a hostile answer
        upstream_is_hostile = True
        code, refused_status = error.code, error.status
    if upstream_is_hostile:
        assert code
        assert 400 <= refused_status < 600
        return
    # the AP got an answer (the PS's, or the hostile one when it was the AP's)
    ps_answers = [e for e in world.wire if e.request.url == f"{PS}/revoke"]
    assert ps_answers
    if ps_answers[-1].response is not replacement:
        assert ps_answers[-1].response.status in (200, 202)
        assert b"revocation_" not in ps_answers[-1].response.body  # nothing reported to the AP
    assert answer.status >= 200
