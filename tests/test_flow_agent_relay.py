"""The agent relays interactions to its PS's ``interaction_endpoint`` (protocol -11 §5.7,
§6.0 pending table) and covers a resource's ``additional_signature_components`` from the
first request when it knows the resource's metadata (§4.3, §8 "covered components").

The PS side of the relay is played by test code (the PS machines have no interaction
endpoint); every request is really signed and verified by core."""

from __future__ import annotations

from typing import Any

import pytest
from attrs import evolve
from test_flow_agent import (
    AGENT,
    CONFIG,
    PS,
    PS_META,
    RES,
    RESOLVER,
    T0,
    AuthTokenPS,
    PersonTokenPS,
    Server,
    World,
    failure_of,
    new_flow,
    ok,
    pending,
    problem,
    ps_router,
    result_of,
    run,
    start,
    three_party_resource,
    verify_at_ps,
    verify_at_resource,
)

from aauth_core.errors import SignatureFailure
from aauth_core.headers.requirement import Requirement
from aauth_core.http import HttpRequest, HttpResponse
from aauth_core.metadata import PersonServerMetadata, ResourceMetadata
from aauth_core.requests import AAUTH_REQUIRED_COMPONENTS, RequestVerifier, VerifiedRequest
from aauth_core.tokens import TokenType
from aauth_flows.machines import (
    ResponseReceived,
    SendRequest,
    ShowInteraction,
    SignatureProduced,
    SignBytes,
    Snapshot,
)
from aauth_flows.machines.agent import AgentFlow, AgentState, StartCall
from aauth_flows.machines.agent_credentials import CachedToken, CredentialStore

INTERACT = f"{PS}/interaction"
PS_META_RELAY = PersonServerMetadata.from_dict(
    {**PS_META.to_dict(), "interaction_endpoint": INTERACT}
)
RELAY_CONFIG = evolve(CONFIG, person_server=PS_META_RELAY)
MISSION = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"


class InteractionEndpoint:
    """The PS's ``interaction_endpoint``: verifies the agent-signed POST (agent token,
    body covered) and answers from ``answers`` (202 by default)."""

    def __init__(self, answers: list[HttpResponse] | None = None) -> None:
        self.answers = answers or []
        self.bodies: list[dict[str, Any]] = []
        self.verified: list[VerifiedRequest] = []

    def __call__(self, request: HttpRequest, at: int) -> HttpResponse:
        assert request.url == INTERACT and request.method == "POST"
        verified, body = verify_at_ps(request, at)  # agent token only, body covered
        assert verified.token_type is TokenType.AGENT
        self.verified.append(verified)
        self.bodies.append(body)
        if self.answers:
            return self.answers.pop(0)
        # a relay 202: its Location is the PS's, never polled by the agent
        return pending("/interaction/relay-1", status="pending", **{"Retry-After": "1"})


def interacting_resource(
    polls: list[VerifiedRequest], *, rounds: int = 2, codes: tuple[str, ...] = ("A1B2-C3D4",)
) -> Server:
    """``/data`` answers 202 ``requirement=interaction``; the pending URL answers 202 until
    ``rounds`` polls, then 200 (codes rotate through ``codes``)."""

    def serve(request: HttpRequest, at: int) -> HttpResponse:
        verified = verify_at_resource(request, at)
        if request.url == f"{RES}/data":
            return pending("/pending/1", Requirement.interaction(f"{RES}/interact", codes[0]))
        assert request.url == f"{RES}/pending/1"
        polls.append(verified)
        if len(polls) < rounds:
            code = codes[min(len(polls), len(codes) - 1)]
            return pending("/pending/1", Requirement.interaction(f"{RES}/interact", code))
        return ok({"data": 1})

    return serve


# -- relaying to the PS interaction endpoint ---------------------------------------------------


def test_resource_interaction_is_relayed_to_the_ps_and_the_resource_stays_authoritative() -> None:
    world = World()
    polls: list[VerifiedRequest] = []
    relay = InteractionEndpoint()
    flow = new_flow(world, config=RELAY_CONFIG)
    servers = {RES: interacting_resource(polls), PS: relay}
    actions = run(flow, world, servers, start(justification="Book a table", mission_s256=MISSION))
    assert result_of(actions).response.status == 200
    assert world.shown == []  # the PS reaches the person; the agent shows nothing
    assert relay.bodies == [
        {
            "type": "interaction",
            "url": f"{RES}/interact",
            "code": "A1B2-C3D4",
            "description": "Book a table",
            "mission_s256": MISSION,
        }
    ]
    assert "content-digest" in relay.verified[0].signature.covered
    # the relay went out before the first poll; every poll went to the resource's URL
    assert [(m, u) for m, u, _ in world.log] == [
        ("GET", f"{RES}/data"),
        ("POST", INTERACT),
        ("GET", f"{RES}/pending/1"),
        ("GET", f"{RES}/pending/1"),
    ]
    assert len(polls) == 2 and world.waits == [5, 5]  # the resource's interval, not the PS's


def test_relay_once_per_code_and_again_for_a_new_code() -> None:
    world = World()
    polls: list[VerifiedRequest] = []
    relay = InteractionEndpoint()
    flow = new_flow(world, config=RELAY_CONFIG)
    servers = {
        RES: interacting_resource(polls, rounds=3, codes=("AAAA-1111", "AAAA-1111", "BBBB-2222")),
        PS: relay,
    }
    assert result_of(run(flow, world, servers, start())).response.status == 200
    assert [b["code"] for b in relay.bodies] == ["AAAA-1111", "BBBB-2222"]
    assert "description" not in relay.bodies[0] and "mission_s256" not in relay.bodies[0]


def test_interaction_unavailable_falls_back_to_showing_the_url() -> None:
    world = World()
    polls: list[VerifiedRequest] = []
    relay = InteractionEndpoint(answers=[problem(424, "interaction_unavailable")])
    flow = new_flow(world, config=RELAY_CONFIG)
    actions = run(flow, world, {RES: interacting_resource(polls), PS: relay}, start())
    assert result_of(actions).response.status == 200
    assert world.shown == [ShowInteraction(url=f"{RES}/interact?code=A1B2-C3D4", code="A1B2-C3D4")]
    assert len(relay.bodies) == 1 and len(polls) == 2


def test_user_unreachable_is_terminal() -> None:
    world = World()
    polls: list[VerifiedRequest] = []
    relay = InteractionEndpoint(answers=[problem(403, "user_unreachable")])
    flow = new_flow(world, config=RELAY_CONFIG)
    error = failure_of(run(flow, world, {RES: interacting_resource(polls), PS: relay}, start()))
    assert (error.code, error.status) == ("user_unreachable", 403)
    assert flow.state is AgentState.FAILED
    assert polls == [] and world.shown == []


def test_other_relay_errors_fall_back_to_showing_the_url() -> None:
    world = World()
    polls: list[VerifiedRequest] = []
    relay = InteractionEndpoint(answers=[problem(500, "server_error")])
    flow = new_flow(world, config=RELAY_CONFIG)
    assert (
        result_of(
            run(flow, world, {RES: interacting_resource(polls), PS: relay}, start())
        ).response.status
        == 200
    )
    assert [s.code for s in world.shown] == ["A1B2-C3D4"]
    assert len(relay.bodies) == 1  # tried first


def test_without_an_interaction_endpoint_the_agent_shows_the_url() -> None:
    world = World()
    polls: list[VerifiedRequest] = []

    def no_ps(request: HttpRequest, at: int) -> HttpResponse:
        raise AssertionError(f"nothing goes to the PS: {request.url}")

    flow = new_flow(world)  # PS metadata without interaction_endpoint
    assert (
        result_of(
            run(flow, world, {RES: interacting_resource(polls), PS: no_ps}, start())
        ).response.status
        == 200
    )
    assert [s.code for s in world.shown] == ["A1B2-C3D4"]


def test_interaction_via_the_ps_is_relayed_too() -> None:
    world = World()
    seen: list[VerifiedRequest] = []
    interaction = Requirement.interaction("https://as.example/bind", "WXYZ-2345")
    auth = AuthTokenPS(world, answers=[pending("/pending/auth-1", interaction)])
    relay = InteractionEndpoint()
    polls: list[str] = []

    def ps(request: HttpRequest, at: int) -> HttpResponse:
        if request.url == INTERACT:
            return relay(request, at)
        if request.url == f"{PS}/pending/auth-1":
            verify_at_ps(request, at)
            polls.append(request.url)
            return ok({"auth_token": world.auth_token(auth.last_rt, at), "expires_in": 3600})
        return ps_router(PersonTokenPS(world), auth)(request, at)

    flow = new_flow(world, config=RELAY_CONFIG)
    result = result_of(run(flow, world, {RES: three_party_resource(world, seen), PS: ps}, start()))
    assert result.response.status == 200 and seen[-1].token_type is TokenType.AUTH
    assert [(b["url"], b["code"]) for b in relay.bodies] == [
        ("https://as.example/bind", "WXYZ-2345")
    ]
    assert world.shown == [] and polls == [f"{PS}/pending/auth-1"]


def test_snapshot_while_relaying_restores_from_json_and_completes() -> None:
    world = World()
    polls: list[VerifiedRequest] = []
    relay = InteractionEndpoint()
    servers = {RES: interacting_resource(polls), PS: relay}
    flow = new_flow(world, config=RELAY_CONFIG)
    actions = flow.handle(start())
    while flow.state is not AgentState.RELAYING:
        action = actions.pop(0)
        if isinstance(action, SignBytes):
            actions += flow.handle(SignatureProduced(signature=AGENT.sign(action.data)))
        elif isinstance(action, SendRequest):
            server = next(s for p, s in servers.items() if action.request.url.startswith(p))
            answer = server(action.request, T0)
            actions += flow.handle(ResponseReceived(response=answer, at=T0))
    [send] = [a for a in actions if isinstance(a, SendRequest)]
    assert send.request.url == INTERACT
    text = flow.snapshot().to_json()
    restored = AgentFlow.restore(Snapshot.from_json(text), config=RELAY_CONFIG)
    assert restored.data == flow.data and restored.state is AgentState.RELAYING
    answer = ResponseReceived(response=relay(send.request, T0), at=T0)
    result = result_of(run(restored, world, servers, answer))
    assert result.response.status == 200 and world.shown == []


# -- additional_signature_components up front ---------------------------------------------------

# the body pair is covered on every request with a body anyway; x-tenant only when declared
EXTRA = ("content-type", "content-digest", "x-tenant")
RES_META = ResourceMetadata.from_dict(
    {"issuer": RES, "jwks_uri": f"{RES}/jwks", "additional_signature_components": list(EXTRA)}
)


def strict_resource(seen: list[VerifiedRequest]) -> Server:
    """A resource whose verifier requires the declared components on every request."""
    verifier = RequestVerifier(
        keys=RESOLVER, audience=RES, required_components=(*AAUTH_REQUIRED_COMPONENTS, *EXTRA)
    )

    def serve(request: HttpRequest, at: int) -> HttpResponse:
        seen.append(verifier.verify(request, now=at))  # raises on a missing component
        return ok()

    return serve


def post(at: int = T0) -> StartCall:
    request = HttpRequest(
        method="POST",
        url=f"{RES}/data",
        headers={"Content-Type": "application/json", "X-Tenant": "acme"},
        body=b'{"q":1}',
    )
    return StartCall(request=request, at=at)


def test_declared_components_are_covered_from_the_first_request_via_config() -> None:
    world = World()
    seen: list[VerifiedRequest] = []
    flow = new_flow(world, config=evolve(CONFIG, resources=(RES_META,)))
    assert result_of(run(flow, world, {RES: strict_resource(seen)}, post())).response.status == 200
    [first] = seen  # no invalid_input round trip
    assert all(c in first.signature.covered for c in EXTRA)
    assert len(world.log) == 1


def test_declared_components_are_covered_from_the_first_request_via_the_store() -> None:
    world = World()
    seen: list[VerifiedRequest] = []
    store = CredentialStore(
        agent_token=CachedToken.parse(world.agent_token(T0 - 60))
    ).with_resource_metadata(RES_META)
    assert store.resource_metadata(RES) == RES_META and store.resource_metadata(PS) is None
    flow = new_flow(world, store=store)
    assert result_of(run(flow, world, {RES: strict_resource(seen)}, post())).response.status == 200
    [first] = seen
    assert all(c in first.signature.covered for c in EXTRA)
    # the store with resource metadata survives a JSON snapshot of the flow
    restored = AgentFlow.restore(Snapshot.from_json(flow.snapshot().to_json()), config=CONFIG)
    assert restored.data.store.resource_metadata(RES) == RES_META


def test_s8_without_metadata_the_first_request_lacks_them_and_is_refused() -> None:
    world = World()
    seen: list[VerifiedRequest] = []
    other = ResourceMetadata.from_dict(
        {"issuer": "https://other.example", "additional_signature_components": ["content-type"]}
    )
    flow = new_flow(world, config=evolve(CONFIG, resources=(other,)))  # another resource's
    with pytest.raises(SignatureFailure) as refused:
        run(flow, world, {RES: strict_resource(seen)}, post())
    assert refused.value.code == "invalid_input"
    assert seen == []


def test_resource_metadata_replaces_an_older_copy() -> None:
    store = CredentialStore().with_resource_metadata(
        ResourceMetadata.from_dict({"issuer": RES, "additional_signature_components": ["x-a"]})
    )
    store = store.with_resource_metadata(RES_META)
    assert store.resources == (RES_META,)
