"""Every flow machine's table, checked whole: each (state, event type) pair without a row
raises IllegalTransition and leaves the machine in ERROR, for every machine in
``aauth_flows.machines``; each machine has ERROR, and FAILED apart from it where it can
fail; rows name only the machine's own states. (Allowed pairs are exercised with real
events, by hypothesis, in each machine's own tests.)"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import pytest

import aauth_flows.machines as machines
from aauth_core.errors import IllegalTransition
from aauth_flows.machines.engine import Event, Machine


def _machines() -> list[type[Machine[Any, Any]]]:
    found: dict[type, None] = {}
    for info in pkgutil.iter_modules(machines.__path__):
        module = importlib.import_module(f"aauth_flows.machines.{info.name}")
        for obj in vars(module).values():
            if (
                isinstance(obj, type)
                and issubclass(obj, Machine)
                and obj is not Machine
                and getattr(obj, "TRANSITIONS", None) is not None
            ):
                found[obj] = None
    return sorted(found, key=lambda cls: cls.__name__)


MACHINES = _machines()


def test_every_role_has_its_machines() -> None:
    names = {cls.__name__ for cls in MACHINES}
    for expected in (
        "AgentFlow",
        "PendingPoller",
        "ResourceCall",
        "PendingInteraction",
        "DeferredDelivery",
        "AuthorizationEndpoint",
        "PersonTokenMachine",
        "AuthTokenMachine",
        "FederationClient",
        "AuthTokenExchange",
        "AgentTokenIssuance",
    ):
        assert expected in names


def _blank(event_type: type[Event]) -> Event:
    # The engine refuses a missing row before any handler reads the event's fields.
    return object.__new__(event_type)


@pytest.mark.parametrize("machine", MACHINES, ids=lambda cls: cls.__name__)
def test_every_pair_without_a_row_is_illegal_and_sticks(machine: type[Machine[Any, Any]]) -> None:
    states = list(machine.State)
    assert "ERROR" in machine.State.__members__
    assert machine.INITIAL in states
    for (state, _), targets in machine.TRANSITIONS.items():
        assert state in states and targets <= set(states) and targets
    event_types = {event_type for _, event_type in machine.TRANSITIONS}
    checked = 0
    for state in states:
        for event_type in sorted(event_types, key=lambda t: t.__name__):
            if (state, event_type) in machine.TRANSITIONS:
                continue
            m = object.__new__(machine)
            m._state = state
            m._data = None
            with pytest.raises(IllegalTransition):
                m.handle(_blank(event_type))
            assert m.state is machine.State["ERROR"]
            with pytest.raises(IllegalTransition):  # sticky
                m.handle(_blank(event_type))
            checked += 1
    assert checked > 0


@pytest.mark.parametrize("machine", MACHINES, ids=lambda cls: cls.__name__)
def test_error_accepts_nothing(machine: type[Machine[Any, Any]]) -> None:
    error = machine.State["ERROR"]
    assert not [pair for pair in machine.TRANSITIONS if pair[0] is error]
    assert not [t for t in machine.TRANSITIONS.values() if error in t]
