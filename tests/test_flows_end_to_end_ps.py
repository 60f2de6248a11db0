"""Person Server gaps end to end, with real machines of every role (tests/flow_world.py):
consent through the PS's own channel (``requirement=approval``), resource-initiated
interaction (§5.4: PS page → resource page → PS callback → PS consent), and pending-URL
hygiene at the PS, the AS and the resource (§5.9, §8)."""

from __future__ import annotations

from urllib.parse import parse_qs, quote, urlsplit

import pytest
from flow_world import AGENT_ID, AP, AS, FED, PS, RS, World
from test_flows_end_to_end import (
    AGENT,
    AUTH,
    PERSON,
    assert_recorded_once,
    body,
    claims,
    requirement,
    resource_challenge,
    trace,
)

from aauth_core.headers.requirement import RequirementType
from aauth_core.http import HttpRequest
from aauth_flows.machines.actions import TimerFired
from aauth_flows.machines.agent import StartCall
from aauth_flows.machines.person_server import (
    ConsentMode,
    ConsentPrompt,
    IssuedKind,
    RecordGrant,
)


def _prompts(world: World) -> list[ConsentPrompt]:
    return [p for p in world.person.prompts if isinstance(p, ConsentPrompt)]


# -- 1. approval mode ------------------------------------------------------------------------


def test_approval_mode_prompts_the_person_through_the_ps_channel() -> None:
    world = World()
    world.ps_store.reachable.add("alice")  # the PS can reach her (e.g. a push to her phone)
    world.person.approval_delay = 7  # she answers a few seconds later
    request = HttpRequest(method="GET", url=f"{RS}/data")
    start = StartCall(request=request, at=world.now, justification="Check **Q3** numbers")
    outcome = world.drive(world.new_flow(), start)

    assert trace(world.wire) == [
        ("GET", f"{RS}/data", AGENT, 401),
        ("POST", f"{PS}/person-token", AGENT, 202),  # first contact: interaction binds her
        ("GET", f"{PS}/pending/*", AGENT, 200),
        ("GET", f"{RS}/data", PERSON, 401),
        ("POST", f"{PS}/auth-token", AGENT, 202),
        ("GET", f"{PS}/pending/*", AGENT, 202),  # she has not answered yet
        ("GET", f"{PS}/pending/*", AGENT, 200),
        ("GET", f"{RS}/data", AUTH, 200),
    ]
    ask = world.wire[4]
    assert requirement(ask.response).type is RequirementType.APPROVAL
    assert requirement(world.wire[5].response).type is RequirementType.APPROVAL
    interaction, approval = _prompts(world)
    assert interaction.channel is ConsentMode.INTERACTION and interaction.kind is IssuedKind.PERSON
    assert approval.channel is ConsentMode.APPROVAL and approval.kind is IssuedKind.AUTH
    assert approval.pending_url == ask.response.headers.get("location")
    assert (approval.person, approval.agent, approval.agent_provider) == (
        "alice",
        str(AGENT_ID),
        AP,
    )
    assert (approval.resource, approval.scope) == (RS, "data.read")
    assert approval.justification == "Check **Q3** numbers"  # agent-asserted, kept apart
    rt = resource_challenge(world.wire[3])[1]
    auth = claims(body(world.wire[6].response)["auth_token"])[1]
    assert (auth["sub"], auth["scope"]) == (rt["sub"], "data.read")
    assert outcome.response.status == 200
    assert_recorded_once(world)


def test_approval_mode_denial_resolves_the_pending_request() -> None:
    world = World()
    world.ps_store.reachable.add("alice")
    world.person.plan = ["approve", "deny"]  # yes to the person token, no on her phone
    outcome = world.call("GET", f"{RS}/data")

    assert trace(world.wire[-2:]) == [
        ("POST", f"{PS}/auth-token", AGENT, 202),
        ("GET", f"{PS}/pending/*", AGENT, 403),
    ]
    assert requirement(world.wire[-2].response).type is RequirementType.APPROVAL
    assert body(world.wire[-1].response)["error"] == "denied"
    assert outcome.error is not None and outcome.error.code == "denied"
    assert _prompts(world)[-1].channel is ConsentMode.APPROVAL
    assert not any(isinstance(a, RecordGrant) for a in world.records)
    assert_recorded_once(world)


def test_approval_mode_clarification_reaches_the_person_with_the_agents_answer() -> None:
    world = World()
    world.ps_store.reachable.add("alice")
    world.person.plan = ["approve", "ask:Which quarter?", "approve"]
    world.agent_answers = ["Q3 only."]
    outcome = world.call("GET", f"{RS}/data")

    ps = [e for e in world.wire if e.url.startswith(PS)][2:]
    assert trace(ps) == [
        ("POST", f"{PS}/auth-token", AGENT, 202),
        ("GET", f"{PS}/pending/*", AGENT, 202),
        ("POST", f"{PS}/pending/*", AGENT, 202),
        ("GET", f"{PS}/pending/*", AGENT, 200),
    ]
    assert requirement(ps[1].response).type is RequirementType.CLARIFICATION
    asked, answered = _prompts(world)[1:]
    assert asked.channel is answered.channel is ConsentMode.APPROVAL
    assert (asked.clarification_response, answered.clarification_response) == (None, "Q3 only.")
    assert outcome.response.status == 200
    assert_recorded_once(world)


# -- 2. resource-initiated interaction ---------------------------------------------------------


def test_resource_initiated_interaction_end_to_end() -> None:
    world = World()
    world.rs_flow.enabled = True  # the resource links her account first
    outcome = world.call("GET", f"{RS}/data")

    assert trace(world.wire) == [
        ("GET", f"{RS}/data", AGENT, 401),
        ("POST", f"{PS}/person-token", AGENT, 202),
        ("GET", f"{PS}/pending/*", AGENT, 200),
        ("GET", f"{RS}/data", PERSON, 401),
        ("POST", f"{PS}/auth-token", AGENT, 202),
        ("GET", f"{PS}/pending/*", AGENT, 200),
        ("GET", f"{RS}/data", AUTH, 200),
    ]
    rt = resource_challenge(world.wire[3])[1]
    assert rt["interaction"]["url"] == f"{RS}/link"
    resource_code = rt["interaction"]["code"]
    # the agent is sent to the PS's own page with the PS's own code, not the resource's
    ps_req = requirement(world.wire[4].response)
    assert (ps_req.type, ps_req.url) == (RequirementType.INTERACTION, f"{PS}/interaction")
    assert ps_req.code != resource_code
    # Alice: PS page → resource page (code + callback) → PS callback → PS consent
    ps_page, link, back = world.person.visits[-3:]
    assert ps_page == f"{PS}/interaction?code={ps_req.code}"
    callback = parse_qs(urlsplit(link).query)["callback"][0]
    assert link == f"{RS}/link?code={resource_code}&callback={quote(callback, safe='')}"
    assert callback.startswith(f"{PS}/callback/") and back == callback
    last = _prompts(world)[-1]
    assert (last.kind, last.resource, last.scope) == (IssuedKind.AUTH, RS, "data.read")
    auth = claims(body(world.wire[5].response)["auth_token"])[1]
    assert (auth["iss"], auth["aud"], auth["sub"]) == (PS, RS, rt["sub"])
    assert outcome.body["principal"]["scope"] == "data.read"
    assert world.rs_flow.codes == {}  # the resource's code was used once
    assert_recorded_once(world)


@pytest.mark.parametrize(
    ("choice", "error", "code", "status"),
    [
        ("deny", "access_denied", "denied", 403),
        ("abandon", "user_abandoned", "abandoned", 403),
        ("expire", "interaction_expired", "expired", 408),
        ("fail", "server_error", "server_error", 500),
        ("busy", "temporarily_unavailable", "server_error", 500),
    ],
)
def test_resource_interaction_callback_error_fails_the_agents_request(
    choice: str, error: str, code: str, status: int
) -> None:
    world = World()
    world.rs_flow.enabled = True
    world.person.plan = ["approve", choice]  # person token yes; then at the resource page
    outcome = world.call("GET", f"{RS}/data")

    assert world.person.visits[-1].endswith(f"?error={error}")
    assert trace(world.wire[-2:]) == [
        ("POST", f"{PS}/auth-token", AGENT, 202),
        ("GET", f"{PS}/pending/*", AGENT, status),
    ]
    assert body(world.wire[-1].response)["error"] == code
    assert outcome.error is not None and outcome.error.code == code
    assert len(_prompts(world)) == 1  # the PS never asked for the auth token
    assert not any(isinstance(a, RecordGrant) for a in world.records)


def test_resource_interaction_is_not_used_without_the_flag() -> None:
    world = World()
    world.call("GET", f"{RS}/data")
    assert "interaction" not in resource_challenge(world.wire[3])[1]
    assert not any("/link" in v for v in world.person.visits)


# -- 3. pending-URL hygiene ------------------------------------------------------------------


def test_s8_ps_gone_pending_url_answers_404_to_another_agent_and_410_to_its_own() -> None:
    world = World()
    world.call("GET", f"{RS}/data")
    url = world.wire[5].request.url  # the auth-token pending URL, answered 200: gone now
    from test_flows_end_to_end import _resign_like

    stranger = world.send(world.as_intruder("GET", url))
    unknown = world.send(world.as_intruder("GET", f"{PS}/pending/never-issued"))
    assert (stranger.status, body(stranger)["error"]) == (404, "not_found")
    assert (stranger.status, stranger.body) == (unknown.status, unknown.body)
    own = world.send(_resign_like(world, world.wire[5].request))
    assert (own.status, body(own)["error"]) == (410, "invalid_code")


def test_s8_ps_live_pending_url_is_not_consumed_by_another_agent() -> None:
    world = World()
    world.ps_store.reachable.add("alice")
    world.person.approval_delay = 7

    def waiting_for_approval(_flow: object) -> bool:
        return world.wire[-1].url == f"{PS}/auth-token"

    parked = world.call("GET", f"{RS}/data", stop=waiting_for_approval)
    assert parked.result is None and parked.error is None
    url = world.wire[-1].response.headers.get("location")
    assert url is not None and url.startswith(f"{PS}/pending/")
    for method in ("GET", "DELETE"):
        answer = world.send(world.as_intruder(method, url))
        assert (answer.status, body(answer)["error"]) == (404, "not_found")
    # Alice approves on her phone; the agent's own poll still gets the token
    world.advance(10)
    outcome = world.drive(parked.flow, TimerFired(at=world.now))
    assert outcome.response.status == 200
    assert trace(world.wire[-2:]) == [
        ("GET", f"{PS}/pending/*", AGENT, 200),
        ("GET", f"{RS}/data", AUTH, 200),
    ]


def test_s8_as_pending_url_answers_another_ps_like_an_unknown_url() -> None:
    world = World()
    world.as_policy.interaction = True
    world.call("GET", f"{FED}/data")
    as_pending = next(e.url for e in world.wire if e.url.startswith(f"{AS}/pending/"))
    stranger = world.send(world.as_other_ps("GET", as_pending))
    unknown = world.send(world.as_other_ps("GET", f"{AS}/pending/never-issued"))
    assert (stranger.status, body(stranger)["error"]) == (404, "not_found")
    assert (unknown.status, body(unknown)["error"]) == (404, "not_found")


def test_s8_resource_pending_url_answers_another_agent_like_an_unknown_url() -> None:
    world = World()
    world.call("POST", f"{RS}/reports", {"month": "2027-01"})
    held = next(e.url for e in world.wire if e.url.startswith(f"{RS}/pending/"))
    stranger = world.send(world.as_intruder("GET", held))
    unknown = world.send(world.as_intruder("GET", f"{RS}/pending/never-issued"))
    assert (stranger.status, body(stranger)["error"]) == (404, "not_found")
    assert (stranger.status, stranger.body) == (unknown.status, unknown.body)
