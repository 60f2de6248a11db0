"""``Prefer: wait`` on pending URLs (§5.9, RFC 7240), shared by the servers that hold polls.

A ``GET`` poll that finds nothing new and asked ``Prefer: wait=N`` is held until the
record it polls changes or ``min(N, MAX_HOLD)`` seconds pass, then answered with a fresh
poll. The hold sleeps on the event loop in short ticks: no worker thread waits for it.
A ``202`` to a caller that asked ``Prefer: wait`` says ``Retry-After: 0``: its next poll
is held here, so polling at once is not a busy loop.

The server stamps each change of a record (:class:`ChangeCounter`); a poll reads the
stamp right after its own step and :func:`answer_poll` waits for it to move.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable

import anyio

from aauth_core.errors import AAuthError
from aauth_core.headers.prefer import parse_prefer_wait
from aauth_core.http import HttpRequest, HttpResponse

__all__ = [
    "MAX_HOLD",
    "HOLD_TICK",
    "ChangeCounter",
    "prefer_wait",
    "held_poll",
    "poll_now",
    "hold",
    "answer_poll",
]

#: the longest a poll is held (``Prefer: wait`` asks for more: we answer sooner, §5.9)
MAX_HOLD = 25
#: how often a held poll looks at its record's change count (seconds)
HOLD_TICK = 0.05


def prefer_wait(request: HttpRequest) -> int:
    """Seconds the caller asked to be held (``Prefer: wait=N``), at most :data:`MAX_HOLD`;
    0 without the preference or when the field is malformed (a preference is only a hint)."""
    value = request.headers.get("prefer")
    if value is None:
        return 0
    try:
        wait = parse_prefer_wait(value)
    except AAuthError:
        return 0
    return min(wait or 0, MAX_HOLD)


def held_poll(request: HttpRequest, response: HttpResponse) -> int:
    """Seconds to hold a poll: a ``GET`` that asked ``Prefer: wait`` and is still pending."""
    if request.method.upper() != "GET" or response.status != 202:
        return 0
    return prefer_wait(request)


def poll_now(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """``Retry-After: 0`` on a ``202`` to a caller that asked ``Prefer: wait``; any other
    answer as it is."""
    if response.status != 202 or not prefer_wait(request):
        return response
    headers = response.headers.with_fields({"Retry-After": "0"})
    return HttpResponse(status=response.status, headers=headers, body=response.body)


async def hold(
    version: Callable[[], int], seen: int, wait: float, *, tick: float = HOLD_TICK
) -> bool:
    """Sleep (on the event loop) until ``version()`` is no longer ``seen`` or ``wait``
    seconds pass; True when it changed."""
    deadline = time.monotonic() + wait
    while version() == seen:
        if time.monotonic() >= deadline:
            return False
        await anyio.sleep(tick)
    return True


async def answer_poll(
    request: HttpRequest,
    response: HttpResponse,
    *,
    seen: int,
    version: Callable[[], int],
    repoll: Callable[[], Awaitable[HttpResponse]],
) -> HttpResponse:
    """The answer to a poll whose first step gave ``response`` and left the record at
    change stamp ``seen``: held while nothing changes (when the caller asked), polled again
    once something did, and ``Retry-After: 0`` on a ``202`` for a caller that asked."""
    wait = held_poll(request, response)
    if wait and await hold(version, seen, wait):
        response = await repoll()
    return poll_now(request, response)


class ChangeCounter:
    """A change stamp per record (thread-safe), for held polls: every change gives the
    record a new stamp from one counter, so a stamp never repeats. Bounded: past
    ``max_entries`` the least recently changed record is forgotten (its stamp reads 0, so a
    poll held on it polls again, which is harmless)."""

    def __init__(self, *, max_entries: int = 100_000) -> None:
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._max = max_entries
        self._last = 0

    def version(self, key: str) -> int:
        with self._lock:
            return self._counts.get(key, 0)

    def changed(self, key: str) -> int:
        """Record one change of ``key``; its new stamp."""
        with self._lock:
            self._last += 1
            self._counts.pop(key, None)
            self._counts[key] = self._last  # most recently changed last
            while len(self._counts) > self._max:
                del self._counts[next(iter(self._counts))]
            return self._last
