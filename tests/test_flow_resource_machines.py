"""The resource machines as machines: every (state, event) pair is an allowed transition or
an IllegalTransition into ERROR, and pending flows survive a JSON snapshot mid-way."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_flow_resource_kit import (
    AGENT,
    NOW,
    OTHER,
    RS,
    RS_KEY,
    Resource,
    agent_token,
    auth_token,
    make_config,
    person_token,
    random_bytes,
    requirement_of,
    server_signed,
    signed,
    verified_resource_token,
)

from aauth_core.errors import IllegalTransition, LocalProtocolError
from aauth_core.http import HttpResponse
from aauth_core.tokens import DWK_RESOURCE, ResourceTokenClaims
from aauth_flows.machines import Respond, SignatureProduced, SignBytes, Snapshot, TimerFired
from aauth_flows.machines.engine import Event, Machine
from aauth_flows.machines.resource import (
    AuthorizationData,
    AuthorizationEndpoint,
    CallData,
    CallState,
    CodePresented,
    DeferredData,
    DeferredDelivery,
    DeferredState,
    InteractionData,
    MemoryResourceStore,
    MintFor,
    OpenPending,
    PendingInteraction,
    PendingState,
    Purpose,
    RecordRevocation,
    RecordSession,
    RequestReceived,
    ResourceCall,
    RevocationEndpoint,
    Serve,
    Served,
    ShowConsent,
    UserAbandoned,
    UserDecided,
    session_digest,
)
from aauth_flows.machines.resource_answers import mint_input

STORE = MemoryResourceStore()
CONFIG = make_config(STORE)
JKT = AGENT.public_jwk().thumbprint()
CLAIMS = ResourceTokenClaims(
    iss=RS,
    dwk=DWK_RESOURCE,
    jti="rt-1",
    iat=NOW,
    exp=NOW + 300,
    aud="https://ps.example",
    ps="https://ps.example",
    sub="person-7",
    presented_jti="pt-1",
    agent_jkt=JKT,
    scope="data.read",
)
TO_SIGN, _ = mint_input(CONFIG, CLAIMS)
LOCATION = RS + "/pending/p1"


def received(request: Any) -> RequestReceived:
    return RequestReceived(request=request, at=NOW, random=random_bytes())


HELD = received(signed(person_token(), url=RS + "/held"))
ANSWER = HttpResponse(status=200, body=b"ok")

COMMON_EVENTS: list[Event] = [
    SignatureProduced(signature=bytes(64)),
    SignatureProduced(signature=RS_KEY.sign(TO_SIGN)),
    Served(response=ANSWER, at=NOW),
    CodePresented(code="ZZZZ-ZZZZ", at=NOW),
    CodePresented(code="A1B2-C3D4", at=NOW),
    UserDecided(approved=True, at=NOW),
    UserDecided(approved=False, at=NOW),
    UserAbandoned(at=NOW),
    TimerFired(at=NOW),
    TimerFired(at=NOW + 10_000),
    received(signed(agent_token(), url=RS + "/agent")),
    received(signed(person_token(), url=RS + "/data")),
    received(signed(agent_token(), url=LOCATION)),
    received(signed(agent_token(), url=LOCATION, method="DELETE")),
    received(signed(agent_token(key=OTHER), url=LOCATION, signer=OTHER)),
    received(signed(auth_token(), url=LOCATION)),
    received(signed(auth_token(jti="at-other"), url=LOCATION)),
    received(signed(person_token(), url=LOCATION)),
    received(
        signed(
            person_token(),
            method="POST",
            url=RS + "/authorize",
            headers={"Content-Type": "application/json"},
            body=b'{"scope":"data.read"}',
            cover_body=True,
        )
    ),
    received(server_signed({"jti": "x-1", "exp": NOW + 60})),
]


def check(machine: Machine[Any, Any], event: Event) -> None:
    state = machine.state
    allowed = type(machine).TRANSITIONS.get((state, type(event)))
    try:
        actions = machine.handle(event)
    except IllegalTransition:
        assert machine.state.name == "ERROR"
        return
    except LocalProtocolError:
        # a signature that does not verify with the resource key, caught before use
        assert allowed is not None and isinstance(event, SignatureProduced)
        assert machine.state.name == "ERROR"
        return
    assert allowed is not None and machine.state in allowed
    known = (Respond, SignBytes, Serve, OpenPending, RecordSession, RecordRevocation, ShowConsent)
    assert all(isinstance(action, known) for action in actions), actions


CALL_DATA = CallData(
    request_at=NOW,
    random=random_bytes(),
    claims=CLAIMS,
    to_sign=TO_SIGN,
    mint_for=MintFor.DEFERRED,
    held=HELD,
)


@settings(max_examples=300, deadline=None)
@given(state=st.sampled_from(list(CallState)), event=st.sampled_from(COMMON_EVENTS))
def test_resource_call_every_state_event_pair(state: CallState, event: Event) -> None:
    check(ResourceCall(config=CONFIG, data=CALL_DATA, state=state), event)


INTERACTION = InteractionData(
    pending_id="p1",
    location=LOCATION,
    code="A1B2-C3D4",
    agent_jkt=JKT,
    agent_issuer="https://agent.example",
    agent="aauth:assistant@agent.example",
    purpose=Purpose.SESSION,
    scope="notes",
    created_at=NOW - 10,
    expires_at=NOW + 600,
)


@settings(max_examples=400, deadline=None)
@given(state=st.sampled_from(list(PendingState)), event=st.sampled_from(COMMON_EVENTS))
def test_pending_interaction_every_state_event_pair(state: PendingState, event: Event) -> None:
    check(PendingInteraction(config=CONFIG, data=INTERACTION, state=state), event)


DEFERRED = DeferredData(
    pending_id="p1",
    location=LOCATION,
    held=HELD.request,
    resource_token="eyJ.placeholder.rt",
    ps="https://ps.example",
    sub="person-7",
    agent_jkt=JKT,
    scope="data.read",
    created_at=NOW - 10,
    expires_at=NOW + 600,
    auth_jti="at-1",
    auth_exp=NOW + 1800,
    result=ANSWER,
)


@settings(max_examples=400, deadline=None)
@given(state=st.sampled_from(list(DeferredState)), event=st.sampled_from(COMMON_EVENTS))
def test_deferred_delivery_every_state_event_pair(state: DeferredState, event: Event) -> None:
    check(DeferredDelivery(config=CONFIG, data=DEFERRED, state=state), event)


@settings(max_examples=200, deadline=None)
@given(
    state=st.sampled_from(list(AuthorizationEndpoint.State)), event=st.sampled_from(COMMON_EVENTS)
)
def test_authorization_endpoint_every_state_event_pair(state: Any, event: Event) -> None:
    data = AuthorizationData(claims=CLAIMS, to_sign=TO_SIGN)
    check(AuthorizationEndpoint(config=CONFIG, data=data, state=state), event)


@settings(max_examples=150, deadline=None)
@given(state=st.sampled_from(list(RevocationEndpoint.State)), event=st.sampled_from(COMMON_EVENTS))
def test_revocation_endpoint_every_state_event_pair(state: Any, event: Event) -> None:
    check(RevocationEndpoint(config=CONFIG, state=state), event)


def test_error_is_sticky() -> None:
    machine = PendingInteraction(config=CONFIG, data=INTERACTION)
    with pytest.raises(IllegalTransition):
        machine.handle(Served(response=ANSWER, at=NOW))
    assert machine.state is PendingState.ERROR
    for event in COMMON_EVENTS[:3]:
        try:
            machine.handle(event)
        except IllegalTransition:
            continue
        raise AssertionError("a machine in ERROR took an event")


def test_user_decision_before_the_code_is_illegal() -> None:
    machine = PendingInteraction(config=CONFIG, data=INTERACTION)
    try:
        machine.handle(UserDecided(approved=True, at=NOW))
    except IllegalTransition:
        assert machine.state is PendingState.ERROR
    else:
        raise AssertionError("a decision needs the person to have arrived with the code")


# -- snapshots mid-flow ---------------------------------------------------------------------


def test_pending_interaction_snapshot_after_202_restores_in_a_new_process() -> None:
    r = Resource()
    first = r.call(signed(agent_token(), url=RS + "/managed"))
    location = first.headers.get("location")
    code = requirement_of(first).code
    assert first.status == 202 and location is not None and code is not None
    pending_id = location.rsplit("/", 1)[1]
    stored = r.store.pending(pending_id)
    assert stored is not None
    text = stored.to_json()
    # "another process": a new store and config sharing only the JSON text
    other_store = MemoryResourceStore()
    config = make_config(other_store)
    machine = PendingInteraction.restore(Snapshot.from_json(text), config=config)
    assert machine.state is PendingState.CREATED and machine.data == r.restore(pending_id).data
    assert code not in repr(machine.data)
    [consent] = machine.handle(CodePresented(code=code, at=NOW + 5))
    assert isinstance(consent, ShowConsent) and consent.pending_id == pending_id
    assert machine.state is PendingState.INTERACTING
    text = machine.snapshot().to_json()
    machine = PendingInteraction.restore(Snapshot.from_json(text), config=config)
    machine.handle(UserDecided(approved=True, at=NOW + 6))
    poll = signed(agent_token(), url=location, created=NOW + 7)
    [serve] = machine.handle(RequestReceived(request=poll, at=NOW + 7, random=random_bytes()))
    # §6.2 step 5: the held call is served (once) as the agent with its new session
    assert isinstance(serve, Serve) and serve.request.url == RS + "/managed"
    assert machine.state is PendingState.SERVING
    text = machine.snapshot().to_json()
    machine = PendingInteraction.restore(Snapshot.from_json(text), config=config)
    served = HttpResponse(status=200, headers={"Content-Type": "application/json"}, body=b"{}")
    record, answer = machine.handle(Served(response=served, at=NOW + 7))
    assert other_store.apply(record)
    assert isinstance(answer, Respond) and answer.response.status == 200
    token = answer.response.headers.get("aauth-access")
    assert token is not None
    assert other_store.session(session_digest(token)) is not None
    assert machine.state is PendingState.GONE


def test_resource_call_snapshot_while_minting_then_deferred() -> None:
    store = MemoryResourceStore()
    config = make_config(store)
    call = ResourceCall(config=config)
    [sign] = call.handle(received(signed(person_token(), url=RS + "/held/x")))
    assert isinstance(sign, SignBytes) and call.state is CallState.MINTING
    text = call.snapshot().to_json()
    resumed = ResourceCall.restore(Snapshot.from_json(text), config=config)
    assert resumed.data == call.data
    opened, respond = resumed.handle(SignatureProduced(signature=RS_KEY.sign(sign.data)))
    assert isinstance(opened, OpenPending) and isinstance(respond, Respond)
    assert respond.response.status == 202 and resumed.state is CallState.PENDING
    token = requirement_of(respond.response).resource_token
    assert token is not None and verified_resource_token(token).presented_jti == "pt-1"
    # the deferred record, restored from its JSON, executes the held call
    deferred = DeferredDelivery.restore(
        Snapshot.from_json(opened.snapshot.to_json()), config=config
    )
    location = respond.response.headers.get("location")
    assert location is not None
    [serve] = deferred.handle(received(signed(auth_token(), url=location)))
    assert isinstance(serve, Serve) and serve.request.url == RS + "/held/x"
    mid = DeferredDelivery.restore(Snapshot.from_json(deferred.snapshot().to_json()), config=config)
    assert mid.state is DeferredState.EXECUTING
    [done] = mid.handle(Served(response=ANSWER, at=NOW))
    assert isinstance(done, Respond) and done.response == ANSWER
    assert mid.state is DeferredState.COMPLETED
    again = DeferredDelivery.restore(Snapshot.from_json(mid.snapshot().to_json()), config=config)
    [repeat] = again.handle(received(signed(auth_token(), url=location)))
    assert isinstance(repeat, Respond) and repeat.response == ANSWER
