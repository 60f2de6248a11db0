"""The optional request replay cache (protocol digest §3.2, §8).

The primary defence against a replayed signed request is the ``created`` window. A
verifier that wants more keeps, for the length of that window, a record of every
``(signing-key thumbprint, created, @method, @authority, @path)`` it accepted and
refuses the same tuple a second time.

:func:`replay_key` turns the tuple into a fixed-size digest (so an attacker cannot make
entries large); :class:`ReplayCache` is what a verifier needs; :class:`MemoryReplayCache`
is the in-process implementation.

When the memory cache is full of entries that are all still live, it refuses the new
request with :class:`ReplayCacheFull` (503 ``temporarily_unavailable``) rather than
forgetting a live entry: forgetting one would silently reopen a replay hole for that
request, while refusing costs only availability, and only while the flood lasts (the
entries expire with the window).
"""

from __future__ import annotations

import hashlib
import heapq
import json
import threading
import time
from typing import ClassVar, Protocol, runtime_checkable

from aauth_core.b64 import b64url_encode
from aauth_core.errors import AAuthError

__all__ = [
    "ReplayCacheFull",
    "replay_key",
    "ReplayCache",
    "MemoryReplayCache",
]


class ReplayCacheFull(AAuthError):
    """The replay cache has no room for another live entry: try again shortly."""

    default_code: ClassVar[str] = "temporarily_unavailable"
    default_status: ClassVar[int] = 503


def replay_key(
    key_thumbprint: str,
    created: int,
    method: str,
    authority: str,
    path: str,
    signature: bytes = b"",
) -> str:
    """The cache key for one signed request: SHA-256 over an unambiguous encoding of the
    tuple (a JSON array, so no component can bleed into the next), base64url.

    ``signature`` (the signature bytes) narrows the spec's suggested tuple to the exact
    message: a replay repeats the signature, while two honest requests in the same second
    to the same path with different bodies (covered by ``content-digest``) differ in it."""
    if isinstance(created, bool) or not isinstance(created, int):
        raise TypeError("created must be an int")
    encoded = json.dumps(
        [key_thumbprint, created, method, authority, path, signature.hex()],
        ensure_ascii=True,
        separators=(",", ":"),
    ).encode("ascii")
    return b64url_encode(hashlib.sha256(encoded).digest())


@runtime_checkable
class ReplayCache(Protocol):
    """Where a verifier records the requests it accepted."""

    def check_and_add(self, key: str, until: int, *, now: int | None = None) -> bool:
        """Atomically: ``True`` if ``key`` has no live entry (it is now recorded until
        ``until``, inclusive), ``False`` if it has one (a replay). ``now`` defaults to the
        current time. May raise :class:`ReplayCacheFull`."""
        ...


class MemoryReplayCache:
    """A thread-safe, bounded, in-process :class:`ReplayCache`.

    An entry lives while ``now <= until``. Expired entries are dropped as time passes
    (a heap ordered by expiry). At most ``max_entries`` live entries are kept; a new key
    arriving when all of them are live raises :class:`ReplayCacheFull` (see the module
    docstring for why it refuses rather than evicts). An ``until`` already in the past is
    not recorded: such a request is outside the window, and the window check refuses it.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max_entries = max_entries
        self._entries: dict[str, int] = {}
        self._expiry: list[tuple[int, str]] = []
        self._lock = threading.Lock()

    @property
    def max_entries(self) -> int:
        return self._max_entries

    def __len__(self) -> int:
        """Entries held (live, or expired but not yet dropped)."""
        with self._lock:
            return len(self._entries)

    def check_and_add(self, key: str, until: int, *, now: int | None = None) -> bool:
        current = int(time.time()) if now is None else now
        with self._lock:
            self._drop_expired(current)
            recorded = self._entries.get(key)
            if recorded is not None and recorded >= current:
                if until > recorded:  # the longer of the two windows protects both
                    self._entries[key] = until
                    self._push(until, key)
                return False
            if until < current:
                return True
            if len(self._entries) >= self._max_entries:
                raise ReplayCacheFull(
                    "the replay cache is full of live entries; retry after the signature window"
                )
            self._entries[key] = until
            self._push(until, key)
            return True

    def _push(self, until: int, key: str) -> None:
        heapq.heappush(self._expiry, (until, key))
        if len(self._expiry) > 2 * self._max_entries:  # superseded pushes: rebuild
            self._expiry = [(value, name) for name, value in self._entries.items()]
            heapq.heapify(self._expiry)

    def _drop_expired(self, now: int) -> None:
        expiry = self._expiry
        while expiry and expiry[0][0] < now:
            until, key = heapq.heappop(expiry)
            if self._entries.get(key) == until:  # not superseded by a later push
                del self._entries[key]
