"""Where the reference PS keeps its pending machines between requests.

A deferred token request lives only as the JSON snapshot of its machine, stored under its
pending URL; every poll, person's action and federation event restores a fresh machine
from it and stores the new snapshot after (as ``tests/flow_world.py`` does). Two indexes
lead a browser to the record: the interaction code the person types (kept as a SHA-256 of
its normalised form, never the code itself) and the callback URL a resource's own
interaction sends her back to.

:class:`PendingStore` is the protocol (a Redis store can implement it later: ``lock`` is
the one operation that must then be distributed); :class:`MemoryPendingStore` is the
in-process one. Entries expire: a record is kept a while past its pending lifetime so a
late poll still gets the machine's ``410`` rather than a ``404``.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

from attrs import frozen

__all__ = ["PendingStore", "MemoryPendingStore", "code_key", "StoredPending"]


def code_key(normalized_code: str) -> str:
    """The index key of an interaction code (its normalised form, hashed)."""
    return hashlib.sha256(normalized_code.encode()).hexdigest()


@frozen(kw_only=True)
class StoredPending:
    snapshot: str
    expires_at: int


class PendingStore(Protocol):
    """Pending machine snapshots by pending URL, and the indexes that reach them."""

    def get(self, url: str) -> str | None: ...
    def put(self, url: str, snapshot: str, *, expires_at: int) -> None: ...
    def index_code(self, key: str, url: str, *, expires_at: int) -> None: ...
    def url_for_code(self, key: str) -> str | None: ...
    def index_callback(self, callback_url: str, url: str, *, expires_at: int) -> None: ...
    def url_for_callback(self, callback_url: str) -> str | None: ...
    def lock(self, url: str) -> AbstractContextManager[None]: ...


class MemoryPendingStore:
    """The in-process :class:`PendingStore` (bounded; expired entries dropped as it goes)."""

    def __init__(
        self, *, max_entries: int = 10_000, clock: Callable[[], float] = time.time
    ) -> None:
        self._max = max_entries
        self._clock = clock
        self._guard = threading.Lock()
        self._records: dict[str, StoredPending] = {}
        self._codes: dict[str, tuple[str, int]] = {}
        self._callbacks: dict[str, tuple[str, int]] = {}
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    def _purge(self) -> None:
        now = self._clock()
        for url in [u for u, r in self._records.items() if r.expires_at <= now]:
            del self._records[url]
        for index in (self._codes, self._callbacks):
            for key in [k for k, (_, exp) in index.items() if exp <= now]:
                del index[key]

    def get(self, url: str) -> str | None:
        with self._guard:
            record = self._records.get(url)
            if record is None or record.expires_at <= self._clock():
                return None
            return record.snapshot

    def put(self, url: str, snapshot: str, *, expires_at: int) -> None:
        with self._guard:
            if url not in self._records and len(self._records) >= self._max:
                self._purge()
                if len(self._records) >= self._max:
                    raise OverflowError("too many pending requests")
            self._records[url] = StoredPending(snapshot=snapshot, expires_at=expires_at)

    def index_code(self, key: str, url: str, *, expires_at: int) -> None:
        with self._guard:
            self._codes[key] = (url, expires_at)

    def url_for_code(self, key: str) -> str | None:
        with self._guard:
            found = self._codes.get(key)
        return found[0] if found is not None and found[1] > self._clock() else None

    def index_callback(self, callback_url: str, url: str, *, expires_at: int) -> None:
        with self._guard:
            self._callbacks[callback_url] = (url, expires_at)

    def url_for_callback(self, callback_url: str) -> str | None:
        with self._guard:
            found = self._callbacks.get(callback_url)
        return found[0] if found is not None and found[1] > self._clock() else None

    @contextmanager
    def _locked(self, url: str) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.get(url, (threading.Lock(), 0))
            self._locks[url] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._locks[url]
                if users <= 1:
                    del self._locks[url]
                else:
                    self._locks[url] = (lock, users - 1)

    def lock(self, url: str) -> AbstractContextManager[None]:
        """Held while a machine for ``url`` is restored, run and stored again."""
        return self._locked(url)
