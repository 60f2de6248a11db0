"""Sans-I/O flow machines: one per role, driven with events, answering with actions."""

from __future__ import annotations

from aauth_flows.machines.actions import (
    Cancel,
    Deliver,
    Fail,
    RecordRevocation,
    Respond,
    ResponseReceived,
    SendRequest,
    ShowInteraction,
    SignatureProduced,
    SignBytes,
    TimerFired,
    Wait,
)
from aauth_flows.machines.engine import Action, Event, Machine, Snapshot, Step, handles, table
from aauth_flows.machines.signing import SigningKey, complete, signing_input

__all__ = [
    "Action",
    "Event",
    "Machine",
    "Snapshot",
    "Step",
    "handles",
    "table",
    "SigningKey",
    "signing_input",
    "complete",
    "SignBytes",
    "SendRequest",
    "Respond",
    "Wait",
    "ShowInteraction",
    "Deliver",
    "Fail",
    "RecordRevocation",
    "SignatureProduced",
    "ResponseReceived",
    "TimerFired",
    "Cancel",
]
