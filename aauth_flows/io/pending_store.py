"""Where a server keeps its pending machines between requests (PS, AS, resource).

A deferred request (``202`` + pending URL) lives only as the JSON snapshot of its machine,
stored under a string key (its pending URL or pending id); every poll, person's decision
or background event restores a fresh machine from it under that key's lock, runs it, and
stores the new snapshot (as ``tests/flow_world.py`` does in memory).

The protocol (:class:`PendingStore`):

- ``put(key, snapshot, expires_at=, indexes=, index_expires_at=)`` writes a record and
  its secondary index entries in one step (never one without the other). ``indexes`` maps
  an index name (:data:`CODE_INDEX`: the hash of an interaction code, :func:`code_key`;
  :data:`CALLBACK_INDEX`: a callback URL) to the value that leads to this key; a ``put``
  replaces the record's whole index set. A new key when the store is full of live records
  is refused with :class:`PendingStoreFull` (503 ``temporarily_unavailable``): a live
  record is never evicted to make room (that would silently lose someone's request).
- ``get(key)`` / ``find(index, value)`` read; expired records (and their index entries)
  are dropped lazily, by the read that finds them or by a ``put`` that needs room.
- ``lock(key)`` is a per-key mutual exclusion (a context manager, not reentrant), held
  while a machine is restored, run and stored again: a poll, a person's decision and a
  federation worker never write the same record at once; different keys never wait on
  each other. A key needs no record to be locked (a poll of an unknown URL takes it too).

A Redis implementation can follow the same protocol: the record is ``SET rec:<key>
<json> PXAT <expires_at ms>``; each index entry is ``SET idx:<name>:<value> <key> PXAT
<index expiry>`` written in the same ``MULTI``/``EXEC`` as its record (stale entries of
the previous index set deleted in it too); the bound is a sorted set of keys by expiry
(``ZREMRANGEBYSCORE`` the dead, ``ZCARD`` against the limit, ``ZADD`` the new key, in one
Lua script with the writes); ``lock`` is ``SET lock:<key> <random token> NX PX <ttl>``
retried until taken and released by a compare-and-delete script (a holder must finish
within the TTL, so the TTL must exceed the longest machine step).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import ClassVar, Protocol, runtime_checkable

from attrs import frozen

from aauth_core.errors import AAuthError, MalformedInput
from aauth_core.interaction import normalize_code

__all__ = [
    "CODE_INDEX",
    "CALLBACK_INDEX",
    "PendingStoreFull",
    "PendingStore",
    "MemoryPendingStore",
    "code_key",
    "code_key_of",
]

#: index name: the SHA-256 of an interaction code's normalised form → key
CODE_INDEX = "code"
#: index name: a callback URL (the person's return from a resource's interaction) → key
CALLBACK_INDEX = "callback"


def code_key(normalized_code: str) -> str:
    """The index value of an interaction code (its normalised form, hashed: the store
    never holds the code itself)."""
    return hashlib.sha256(normalized_code.encode()).hexdigest()


def code_key_of(code: str) -> str | None:
    """:func:`code_key` of a code as a person typed it (None: not a code)."""
    try:
        return code_key(normalize_code(code))
    except MalformedInput:
        return None


class PendingStoreFull(AAuthError):
    """Every slot holds a live pending record: try again shortly."""

    default_code: ClassVar[str] = "temporarily_unavailable"
    default_status: ClassVar[int] = 503


@runtime_checkable
class PendingStore(Protocol):
    """Pending machine snapshots by key, with a lock per key and secondary indexes."""

    def get(self, key: str) -> str | None:
        """The live snapshot stored under ``key`` (None: unknown or expired)."""
        ...

    def find(self, index: str, value: str) -> str | None:
        """The key of the live record whose ``index`` entry is ``value``."""
        ...

    def put(
        self,
        key: str,
        snapshot: str,
        *,
        expires_at: float,
        indexes: Mapping[str, str] | None = None,
        index_expires_at: float | None = None,
    ) -> None:
        """Store ``snapshot`` under ``key`` until ``expires_at`` (Unix time) with exactly
        ``indexes`` (name → value), each usable until ``index_expires_at`` (default: the
        record's expiry, never later). Raises :class:`PendingStoreFull` for a new key when
        full, ValueError when an index value already belongs to another live record."""
        ...

    def delete(self, key: str) -> None:
        """Drop the record and its index entries (nothing if unknown)."""
        ...

    def lock(self, key: str) -> AbstractContextManager[None]:
        """Held while a machine for ``key`` is restored, run and stored again."""
        ...


@frozen(kw_only=True)
class _Record:
    snapshot: str
    expires_at: float
    indexes: tuple[tuple[str, str], ...]
    index_expires_at: float


class _KeyLock:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0


class MemoryPendingStore:
    """The in-process :class:`PendingStore` (thread-safe; at most ``max_entries`` records).

    One guard covers the records and index entries (every operation on them is a few dict
    steps, so a record and its indexes change together); the per-key locks live in their
    own table, created on first use and dropped when the last holder or waiter leaves (a
    stranger's URL leaves nothing behind)."""

    def __init__(
        self, *, max_entries: int = 10_000, clock: Callable[[], float] = time.time
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries: at least 1")
        self._max = max_entries
        self._clock = clock
        self._guard = threading.Lock()
        self._records: dict[str, _Record] = {}
        self._index: dict[tuple[str, str], str] = {}
        self._locks_guard = threading.Lock()
        self._locks: dict[str, _KeyLock] = {}

    # -- records (call with the guard held) ---------------------------------------------

    def _drop(self, key: str) -> None:
        record = self._records.pop(key, None)
        if record is None:
            return
        for entry in record.indexes:
            if self._index.get(entry) == key:
                del self._index[entry]

    def _live(self, key: str, now: float) -> _Record | None:
        record = self._records.get(key)
        if record is not None and record.expires_at <= now:
            self._drop(key)
            return None
        return record

    def _purge(self, now: float) -> None:
        for key in [k for k, r in self._records.items() if r.expires_at <= now]:
            self._drop(key)

    # -- the protocol ----------------------------------------------------------------------

    def get(self, key: str) -> str | None:
        with self._guard:
            record = self._live(key, self._clock())
            return None if record is None else record.snapshot

    def find(self, index: str, value: str) -> str | None:
        with self._guard:
            now = self._clock()
            key = self._index.get((index, value))
            if key is None:
                return None
            record = self._live(key, now)
            if record is None or record.index_expires_at <= now:
                return None
            return key

    def put(
        self,
        key: str,
        snapshot: str,
        *,
        expires_at: float,
        indexes: Mapping[str, str] | None = None,
        index_expires_at: float | None = None,
    ) -> None:
        entries = tuple(sorted((indexes or {}).items()))
        until = expires_at if index_expires_at is None else min(index_expires_at, expires_at)
        with self._guard:
            now = self._clock()
            # every check first: a refused put changes nothing
            for entry in entries:
                owner = self._index.get(entry)
                if owner is not None and owner != key and self._live(owner, now) is not None:
                    raise ValueError(f"the {entry[0]} index value already names another record")
            known = self._live(key, now) is not None
            if not known and len(self._records) >= self._max:
                self._purge(now)
                if len(self._records) >= self._max:
                    raise PendingStoreFull("too many pending requests: try again later")
            self._drop(key)
            self._records[key] = _Record(
                snapshot=snapshot, expires_at=expires_at, indexes=entries, index_expires_at=until
            )
            for entry in entries:
                self._index[entry] = key

    def delete(self, key: str) -> None:
        with self._guard:
            self._drop(key)

    def __len__(self) -> int:
        """Live records."""
        with self._guard:
            self._purge(self._clock())
            return len(self._records)

    @contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        with self._locks_guard:
            held = self._locks.get(key)
            if held is None:
                held = self._locks[key] = _KeyLock()
            held.users += 1
        try:
            with held.lock:
                yield
        finally:
            with self._locks_guard:
                held.users -= 1
                if held.users == 0:
                    del self._locks[key]

    def lock(self, key: str) -> AbstractContextManager[None]:
        return self._locked(key)

    def locked_keys(self) -> int:
        """How many keys have a holder or a waiter right now (the lock table's size)."""
        with self._locks_guard:
            return len(self._locks)
