"""The shared machine engine: table lookup, sticky ERROR, atomic steps, snapshot/restore,
and signing as an action (two runs of a core signing function around a driver's sign)."""

from __future__ import annotations

import enum

import pytest
from attrs import evolve, frozen
from hypothesis import given
from hypothesis import strategies as st
from signing_helpers import generated_ed25519

from aauth_core.errors import IllegalTransition, LocalProtocolError, MalformedInput, TokenError
from aauth_core.http import HttpRequest, HttpResponse
from aauth_core.requests import sign_aauth_request
from aauth_flows.machines import (
    Deliver,
    Event,
    Machine,
    ResponseReceived,
    SendRequest,
    SignatureProduced,
    SignBytes,
    SigningKey,
    Snapshot,
    Step,
    complete,
    handles,
    signing_input,
    table,
)


class State(enum.Enum):
    IDLE = "idle"
    SIGNING = "signing"
    AWAIT = "await"
    DONE = "done"
    FAILED = "failed"
    ERROR = "error"


@frozen(kw_only=True)
class Start(Event):
    request: HttpRequest
    at: int


@frozen(kw_only=True)
class Data:
    key: SigningKey
    token: str
    request: HttpRequest | None = None
    created: int = 0
    to_sign: bytes = b""
    calls: int = 0


class ToyClient(Machine[State, Data]):
    State = State
    INITIAL = State.IDLE
    DATA = Data
    TRANSITIONS = table(
        [
            (State.IDLE, Start, {State.SIGNING}),
            (State.SIGNING, SignatureProduced, {State.AWAIT}),
            (State.AWAIT, ResponseReceived, {State.DONE, State.FAILED}),
        ]
    )

    def _produce(self, data: Data):  # type: ignore[no-untyped-def]
        assert data.request is not None
        request = data.request

        def run(signer):  # type: ignore[no-untyped-def]
            return sign_aauth_request(request, signer, token=data.token, created=data.created)

        return run

    @handles(Start)
    def _start(self, state: State, data: Data, event: Start) -> Step[State, Data]:
        data = evolve(data, request=event.request, created=event.at)
        to_sign = signing_input(data.key, self._produce(data))
        return Step(
            state=State.SIGNING,
            data=evolve(data, to_sign=to_sign),
            actions=[SignBytes(key=data.key.ref, data=to_sign)],
        )

    @handles(SignatureProduced)
    def _signed(self, state: State, data: Data, event: SignatureProduced) -> Step[State, Data]:
        fields = complete(data.key, self._produce(data), data.to_sign, event.signature)
        assert data.request is not None
        signed = evolve(data.request, headers=data.request.headers.with_fields(fields))
        return Step(
            state=State.AWAIT,
            data=evolve(data, calls=data.calls + 1),
            actions=[SendRequest(request=signed)],
        )

    @handles(ResponseReceived)
    def _response(self, state: State, data: Data, event: ResponseReceived) -> Step[State, Data]:
        if event.response.status == 500:
            raise TokenError("the peer broke the protocol")
        if event.response.status == 299:
            return Step(state=State.IDLE, data=data)  # not allowed by the table
        done = event.response.status == 200
        return Step(
            state=State.DONE if done else State.FAILED,
            data=data,
            actions=[Deliver(result=event.response.status)],
        )


SIGNER = generated_ed25519()
KEY = SigningKey(ref="software:agent", public_jwk=SIGNER.public_jwk())
REQUEST = HttpRequest(method="GET", url="https://r.example/data")


def new() -> ToyClient:
    return ToyClient(data=Data(key=KEY, token="eyJ.fake.token"))


def test_happy_path_signs_through_the_driver() -> None:
    m = new()
    [sign] = m.handle(Start(request=REQUEST, at=1_700_000_000))
    assert isinstance(sign, SignBytes) and sign.key == "software:agent"
    assert m.state is State.SIGNING
    [send] = m.handle(SignatureProduced(signature=SIGNER.sign(sign.data)))
    assert isinstance(send, SendRequest)
    direct = sign_aauth_request(REQUEST, SIGNER, token="eyJ.fake.token", created=1_700_000_000)
    assert {k: send.request.headers.get(k) for k in direct} == direct
    [done] = m.handle(ResponseReceived(response=HttpResponse(status=200), at=1))
    assert done == Deliver(result=200) and m.state is State.DONE


def test_missing_row_is_illegal_and_sticks_in_error() -> None:
    m = new()
    with pytest.raises(IllegalTransition):
        m.handle(SignatureProduced(signature=bytes(64)))
    assert m.state is State.ERROR
    with pytest.raises(IllegalTransition):
        m.handle(Start(request=REQUEST, at=1))
    assert m.state is State.ERROR


def test_a_signature_that_does_not_verify_is_refused_before_sending() -> None:
    m = new()
    m.handle(Start(request=REQUEST, at=1_700_000_000))
    before = m.data
    with pytest.raises(LocalProtocolError, match="does not verify"):
        m.handle(SignatureProduced(signature=bytes(64)))
    assert m.state is State.ERROR
    assert m.data is before  # nothing half-changed


def test_handler_choosing_a_state_outside_the_row_is_illegal() -> None:
    m = new()
    [sign] = m.handle(Start(request=REQUEST, at=1_700_000_000))
    m.handle(SignatureProduced(signature=SIGNER.sign(sign.data)))
    with pytest.raises(IllegalTransition, match="chose IDLE"):
        m.handle(ResponseReceived(response=HttpResponse(status=299), at=1))
    assert m.state is State.ERROR


def test_remote_error_moves_to_error_with_its_wire_code() -> None:
    m = new()
    [sign] = m.handle(Start(request=REQUEST, at=1_700_000_000))
    m.handle(SignatureProduced(signature=SIGNER.sign(sign.data)))
    with pytest.raises(TokenError) as info:
        m.handle(ResponseReceived(response=HttpResponse(status=500), at=1))
    assert info.value.status == 401 and m.state is State.ERROR


def test_refusal_is_failed_not_error() -> None:
    m = new()
    [sign] = m.handle(Start(request=REQUEST, at=1_700_000_000))
    m.handle(SignatureProduced(signature=SIGNER.sign(sign.data)))
    m.handle(ResponseReceived(response=HttpResponse(status=403), at=1))
    assert m.state is State.FAILED


def test_snapshot_mid_signing_restores_in_a_new_object_and_completes() -> None:
    m = new()
    [sign] = m.handle(Start(request=REQUEST, at=1_700_000_000))
    text = m.snapshot().to_json()
    resumed = ToyClient.restore(Snapshot.from_json(text))
    assert resumed is not m and resumed.state is State.SIGNING and resumed.data == m.data
    [send] = resumed.handle(SignatureProduced(signature=SIGNER.sign(sign.data)))
    assert isinstance(send, SendRequest)


def test_restore_refuses_other_machines_and_unknown_states() -> None:
    snap = new().snapshot()
    with pytest.raises(MalformedInput):
        ToyClient.restore(Snapshot(machine="Other", state=snap.state, data=snap.data))
    with pytest.raises(MalformedInput):
        ToyClient.restore(Snapshot(machine="ToyClient", state="nope", data=snap.data))
    with pytest.raises(MalformedInput):
        ToyClient.restore(Snapshot(machine="ToyClient", state="idle", data={"key": 1}))
    with pytest.raises(MalformedInput):
        Snapshot.from_json("[1,2")


def test_table_refuses_duplicate_rows_and_handlerless_rows() -> None:
    with pytest.raises(ValueError, match="twice"):
        table([(State.IDLE, Start, {State.DONE}), (State.IDLE, Start, {State.FAILED})])
    with pytest.raises(TypeError, match="without a handler"):

        class Broken(Machine[State, Data]):
            State = State
            INITIAL = State.IDLE
            DATA = Data
            TRANSITIONS = table([(State.IDLE, Start, {State.DONE})])


EVENTS = [
    Start(request=REQUEST, at=1_700_000_000),
    SignatureProduced(signature=bytes(64)),
    ResponseReceived(response=HttpResponse(status=200), at=1),
]


@given(state=st.sampled_from(list(State)), event=st.sampled_from(EVENTS))
def test_every_state_event_pair_is_a_transition_or_illegal(state: State, event: Event) -> None:
    m = ToyClient(data=Data(key=KEY, token="t", request=REQUEST, created=1), state=state)
    allowed = ToyClient.TRANSITIONS.get((state, type(event)))
    try:
        m.handle(event)
    except IllegalTransition:
        assert m.state is State.ERROR
    except LocalProtocolError:
        assert allowed is not None and m.state is State.ERROR
    else:
        assert allowed is not None and m.state in allowed


def test_diagram_is_generated_from_the_table() -> None:
    from aauth_flows.machines.diagrams import mermaid, refresh

    text = mermaid(ToyClient)
    assert text.startswith("```mermaid\nstateDiagram-v2\n    [*] --> IDLE\n")
    for (state, event_type), targets in ToyClient.TRANSITIONS.items():
        for target in targets:
            assert f"    {state.name} --> {target.name}: {event_type.__name__}\n" in text
    assert "    DONE --> [*]\n" in text and "ERROR --> [*]" not in text
    page = "intro\n<!-- diagram:test_flow_engine:ToyClient -->\nold\n<!-- /diagram:test_flow_engine:ToyClient -->\n"
    assert refresh(page) == (
        "intro\n<!-- diagram:test_flow_engine:ToyClient -->\n"
        + text
        + "<!-- /diagram:test_flow_engine:ToyClient -->\n"
    )


def test_a_bug_in_a_handler_also_leaves_the_machine_in_error() -> None:
    m = new()
    with pytest.raises(AssertionError):  # the toy handler asserts it has a request
        m.handle(Start(request=None, at=1))  # type: ignore[arg-type]
    assert m.state is State.ERROR


def test_flow_docs_diagrams_are_the_tables() -> None:
    """docs/flows*.md hold diagrams generated from the machines' tables, never edited by
    hand: regenerating them changes nothing."""
    from pathlib import Path

    from aauth_flows.machines.diagrams import _MARKER, main

    root = Path(__file__).resolve().parent.parent / "docs"
    pages = [root / "flows.md", *sorted((root / "flows").glob("*.md"))]
    assert len(pages) >= 6
    assert sum(len(_MARKER.findall(p.read_text(encoding="utf-8"))) for p in pages) >= 15
    assert main(["--check", *map(str, pages)]) == 0


def test_initial_snapshot_is_what_a_new_machine_would_snapshot() -> None:
    data = Data(key=KEY, token="t")
    assert ToyClient.initial_snapshot(data) == ToyClient(data=data).snapshot()
    with pytest.raises(TypeError):
        ToyClient.initial_snapshot({"key": 1})
