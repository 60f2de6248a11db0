"""Events and actions of the resource machines.

A request arrives as :class:`RequestReceived` (with ``at`` and CSPRNG bytes the driver
draws, since machines draw none). A verified call that the resource serves is handed to
the host application as a :class:`Serve` action; the host answers with :class:`Served`
and the machine adds what AAuth needs (a rotated ``AAuth-Access``) before it
:class:`~aauth_flows.machines.actions.Respond`\\ s. Cross-request writes are record actions
the driver applies to its stores.
"""

from __future__ import annotations

from attrs import field, frozen

from aauth_core.http import HttpRequest, HttpResponse
from aauth_flows.machines.actions import RecordRevocation
from aauth_flows.machines.engine import Action, Event, Snapshot
from aauth_flows.machines.resource_config import RANDOM_BYTES, Principal, SessionRecord

__all__ = [
    "RequestReceived",
    "Served",
    "CodePresented",
    "UserDecided",
    "UserAbandoned",
    "Serve",
    "ShowConsent",
    "RecordRevocation",
    "RecordSession",
    "OpenPending",
]


def _check_random(_inst: object, _attr: object, value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) < RANDOM_BYTES:
        raise ValueError(f"a request event carries at least {RANDOM_BYTES} random bytes")


# -- events -------------------------------------------------------------------------------


@frozen(kw_only=True)
class RequestReceived(Event):
    """A request reached the resource (an API call, an endpoint, or a poll / DELETE of a
    pending URL). ``random`` comes from the driver's CSPRNG."""

    request: HttpRequest
    at: int
    random: bytes = field(validator=_check_random, repr=False)


@frozen(kw_only=True)
class Served(Event):
    """The host application's answer to a :class:`Serve`."""

    response: HttpResponse
    at: int


@frozen(kw_only=True)
class CodePresented(Event):
    """A person arrived at the interaction URL with ``code``."""

    code: str = field(repr=False)
    at: int


@frozen(kw_only=True)
class UserDecided(Event):
    """The person decided at the resource, through an authenticated channel (the code
    only correlated the visit). ``scope`` narrows what was asked for."""

    approved: bool
    at: int
    scope: str | None = None


@frozen(kw_only=True)
class UserAbandoned(Event):
    """The person left the interaction without deciding."""

    at: int


# -- actions ------------------------------------------------------------------------------


@frozen(kw_only=True)
class Serve(Action):
    """Run the application's handler for ``request`` as ``principal`` (verified); answer
    with :class:`Served`."""

    principal: Principal
    request: HttpRequest


@frozen(kw_only=True)
class ShowConsent(Action):
    """The code matched: show the person the consent page for ``pending_id`` (with the
    full context: agent, resource, ``scope``); answer with :class:`UserDecided`."""

    pending_id: str
    agent: str | None
    scope: str | None


@frozen(kw_only=True)
class RecordSession(Action):
    """Store ``record`` under ``digest`` (SHA-256 of the session token, base64url)."""

    digest: str
    record: SessionRecord


@frozen(kw_only=True)
class OpenPending(Action):
    """Store ``snapshot`` (a pending machine at rest) under ``pending_id``; ``code`` (when
    set) indexes it for the interaction URL. Later events for that URL go to the restored
    machine, and every step's new snapshot replaces the stored one."""

    pending_id: str
    snapshot: Snapshot
    code: str | None = field(default=None, repr=False)
