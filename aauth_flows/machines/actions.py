"""What machines ask their drivers to do, and the events drivers feed back.

Actions and events shared by every machine live here; a machine's own events (its
start event, a person's decision, …) live in its module. Everything is a frozen attrs
value. Time arrives on events as Unix seconds (``at``); machines never read a clock.
"""

from __future__ import annotations

from typing import Any

from attrs import field, frozen

from aauth_core.errors import AAuthError
from aauth_core.http import HttpRequest, HttpResponse
from aauth_flows.machines.engine import Action, Event

__all__ = [
    # actions
    "SignBytes",
    "SendRequest",
    "Respond",
    "Wait",
    "ShowInteraction",
    "Deliver",
    "Fail",
    "RecordRevocation",
    # events
    "SignatureProduced",
    "ResponseReceived",
    "TimerFired",
    "Cancel",
]


# -- actions ------------------------------------------------------------------------------


@frozen(kw_only=True)
class SignBytes(Action):
    """Sign ``data`` with the key that ``key`` names (a ``software:``/``file:``/``pkcs11:``
    reference); answer with :class:`SignatureProduced`. The HSM or YubiKey call is the
    driver's I/O."""

    key: str
    data: bytes = field(repr=lambda b: f"<{len(b)} bytes>")


@frozen(kw_only=True)
class SendRequest(Action):
    """Send ``request``; answer with :class:`ResponseReceived`."""

    request: HttpRequest


@frozen(kw_only=True)
class Respond(Action):
    """Server side: answer the request being handled with ``response``."""

    response: HttpResponse


@frozen(kw_only=True)
class Wait(Action):
    """Wait ``seconds`` (a deferred response's ``Retry-After``); answer with
    :class:`TimerFired`. A driver may snapshot the machine and resume it elsewhere."""

    seconds: int


@frozen(kw_only=True)
class ShowInteraction(Action):
    """Send the person to ``url`` (with ``code``): open a browser, show a QR code, relay
    it to the Person Server. No answer is needed; polling goes on."""

    url: str
    code: str | None = None


@frozen(kw_only=True)
class Deliver(Action):
    """The flow finished: ``result`` is what the caller asked for."""

    result: Any


@frozen(kw_only=True)
class Fail(Action):
    """The peer validly refused, or the flow cannot go on: ``error`` says why (its
    ``code`` and ``status`` are the wire values)."""

    error: AAuthError


@frozen(kw_only=True)
class RecordRevocation(Action):
    """Server side: remember that the token ``(iss, jti)`` is revoked; the record may be
    dropped after ``exp`` plus the allowed clock skew. ``iss`` is the verified caller (a
    caller revokes only its own tokens), or the server itself in a cascade."""

    iss: str
    jti: str
    exp: int


# -- events -------------------------------------------------------------------------------


@frozen(kw_only=True)
class SignatureProduced(Event):
    """The signature a :class:`SignBytes` action asked for (JOSE format)."""

    signature: bytes = field(repr=lambda b: f"<{len(b)} bytes>")


@frozen(kw_only=True)
class ResponseReceived(Event):
    """The response to the last :class:`SendRequest`, received at ``at``."""

    response: HttpResponse
    at: int


@frozen(kw_only=True)
class TimerFired(Event):
    """The :class:`Wait` is over."""

    at: int


@frozen(kw_only=True)
class Cancel(Event):
    """The caller gives up (a deferred flow sends ``DELETE`` to its pending URL)."""

    at: int
