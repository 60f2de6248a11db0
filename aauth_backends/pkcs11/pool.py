"""Sessions for one token: a login holder and a bounded pool of PIN-less sessions.

Login is per application, not per session: one *holder* session logs in (``C_Login``) and
stays open for the pool's lifetime; the pooled sessions are opened without a PIN and use
that login. A session is borrowed for one operation; when every session is busy a borrower
waits up to ``borrow_timeout`` seconds and then gets :class:`BorrowTimeout`.

Object handles belong to a session, so every pooled session keeps its own cache of the key
handles it looked up, keyed by what identifies the key (CKA_ID, type); handles are never
shared between sessions or kept across a re-login.
"""

from __future__ import annotations

import collections
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import structlog

from aauth_backends.pkcs11 import _lib
from aauth_backends.pkcs11.errors import BorrowTimeout, StoreClosed
from aauth_backends.pkcs11.module import LoadedModule, fork_epoch

__all__ = ["PooledSession", "SessionPool"]

log = structlog.get_logger(__name__)


class PooledSession:
    """One PIN-less session and the key handles found in it."""

    __slots__ = ("alive", "epoch", "generation", "key_epoch", "keys", "session")

    def __init__(self, session: Any, generation: int, key_epoch: int, epoch: int) -> None:
        self.session = session
        self.generation = generation
        self.key_epoch = key_epoch
        self.epoch = epoch
        self.keys: dict[object, Any] = {}
        self.alive = True

    def __repr__(self) -> str:
        return f"PooledSession(handle={self.session.handle}, keys={len(self.keys)})"


class SessionPool:
    """The holder session, the pool and the recovery steps (re-login, new session).

    ``login`` is called with the holder session to log in; it owns the PIN (the pool never
    sees it) and raises the backend error for a refused PIN.

    The bound is a ``queue.SimpleQueue`` holding ``size`` tokens: borrowing takes one
    (waiting up to the borrow timeout when none is left), giving back puts it back, so
    no more than ``size`` sessions are ever in use. Idle sessions wait in a LIFO deque
    (the most recently used one, with its key handles, is reused first). The common
    case is a few C-level calls (queue get/put, deque pop/append), no Python lock.
    """

    def __init__(
        self,
        *,
        module: LoadedModule,
        find_token: Callable[[Any], Any],
        login: Callable[[Any, Any], None],
        size: int,
        borrow_timeout: float,
        token_name: str,
    ) -> None:
        if size < 1:
            raise ValueError("pool size must be at least 1")
        if borrow_timeout <= 0:
            raise ValueError("borrow timeout must be positive")
        self._module = module
        self._find_token = find_token
        self._login = login
        self._size = size
        self._timeout = borrow_timeout
        self.token_name = token_name
        self._state_lock = threading.RLock()
        self._slots = self._new_slots()
        self._idle: collections.deque[PooledSession] = collections.deque()
        self._token: Any = None
        self._holder: Any = None
        self._generation = 0
        self._module_generation = -1
        self._epoch = fork_epoch()
        self._closed = False
        self._key_epoch = 0

    def _new_slots(self) -> queue.SimpleQueue[None]:
        slots: queue.SimpleQueue[None] = queue.SimpleQueue()
        for _ in range(self._size):
            slots.put(None)
        return slots

    # -- state

    @property
    def module(self) -> LoadedModule:
        return self._module

    @property
    def size(self) -> int:
        return self._size

    @property
    def token(self) -> Any:
        self._ensure_started()
        return self._token

    @property
    def holder(self) -> Any:
        """The login holder session (tests use it to log out behind the pool's back)."""
        self._ensure_started()
        return self._holder

    def _ensure_started(self) -> None:
        if self._closed:
            raise StoreClosed(f"the key store for token {self.token_name} is closed")
        if self._epoch != fork_epoch():
            self._after_fork()
        module_generation = self._module.ensure_current()
        if self._holder is not None and module_generation == self._module_generation:
            return
        with self._state_lock:
            if self._holder is not None and module_generation == self._module_generation:
                return
            self._start(module_generation)

    def _start(self, module_generation: int) -> None:
        """Find the token, open the holder session and log in (under the state lock)."""
        self._drop_sessions(close=module_generation == self._module_generation)
        with self._module.lock:
            token = self._find_token(self._module.lib)
            holder = _lib.open_session(token)
        try:
            self._login(token, holder)
        except BaseException:
            with self._module.lock:
                _lib.close_session(holder)
            raise
        self._token = token
        self._holder = holder
        self._module_generation = module_generation
        self._generation += 1

    def _after_fork(self) -> None:
        # In a child: the parent's handles are not ours. Forget them without closing
        # (closing could hit a handle number the child's module reuses) and start again.
        self._state_lock = threading.RLock()
        self._slots = self._new_slots()
        self._idle = collections.deque()
        self._holder = None
        self._token = None
        self._epoch = fork_epoch()
        self._generation += 1  # a session borrowed before the fork is not given back

    def _drop_sessions(self, *, close: bool) -> None:
        idle, self._idle = self._idle, collections.deque()
        for pooled in idle:
            pooled.alive = False
            if close:
                with self._module.lock:
                    _lib.close_session(pooled.session)
        if self._holder is not None and close:
            with self._module.lock:
                _lib.close_session(self._holder)
        self._holder = None

    # -- borrowing

    def borrow(self) -> PooledSession:
        """Take a session for one operation; hand it back with :meth:`give_back`.

        Raises :class:`BorrowTimeout` when no session becomes free within the borrow
        timeout, :class:`StoreClosed` after :meth:`close`.
        """
        if (
            self._holder is None
            or self._closed
            or self._epoch != fork_epoch()
            or self._module.ensure_current() != self._module_generation
        ):
            self._ensure_started()
        slots = self._slots
        try:
            slots.get_nowait()
        except queue.Empty:
            self._wait(slots)
        try:
            pooled: PooledSession | None = self._idle.pop()
        except IndexError:
            pooled = None
        if (
            pooled is not None
            and pooled.generation == self._generation
            and pooled.key_epoch == self._key_epoch
        ):
            return pooled
        return self._refresh(slots, pooled)

    def give_back(self, pooled: PooledSession) -> None:
        """Return a borrowed session (and its slot; a dropped session is not kept)."""
        if pooled.alive and pooled.generation == self._generation:
            self._idle.append(pooled)
            self._slots.put(None)
            return
        if pooled.epoch != self._epoch:
            return  # borrowed in the parent before a fork: the child's slots are fresh
        if pooled.alive:
            self.discard(pooled)
        self._slots.put(None)

    @contextlib.contextmanager
    def session(self) -> Iterator[PooledSession]:
        """Borrow a session for one operation (a context manager over :meth:`borrow`)."""
        pooled = self.borrow()
        try:
            yield pooled
        finally:
            self.give_back(pooled)

    def _wait(self, slots: queue.SimpleQueue[None]) -> None:
        started = time.monotonic()
        try:
            slots.get(True, self._timeout)
        except queue.Empty:
            raise BorrowTimeout(
                f"no PKCS#11 session of token {self.token_name} became free within "
                f"{self._timeout:g} s (pool size {self._size})"
            ) from None
        waited = time.monotonic() - started
        if waited > 0.5:
            log.info("aauth.pkcs11.pool_wait", token=self.token_name, waited_s=round(waited, 3))

    def _refresh(
        self, slots: queue.SimpleQueue[None], pooled: PooledSession | None
    ) -> PooledSession:
        """A current session for a taken slot: stale ones closed, else a new one opened.
        On failure the slot is given back."""
        try:
            while pooled is not None and pooled.generation != self._generation:
                self.discard(pooled)
                try:
                    pooled = self._idle.pop()
                except IndexError:
                    pooled = None
            if pooled is not None:
                if pooled.key_epoch != self._key_epoch:
                    pooled.keys.clear()
                    pooled.key_epoch = self._key_epoch
                return pooled
            with self._module.lock:
                session = _lib.open_session(self._token)
            return PooledSession(session, self._generation, self._key_epoch, self._epoch)
        except BaseException:
            slots.put(None)
            raise

    def discard(self, pooled: PooledSession) -> None:
        """Drop a session whose handle went bad, or that a failed operation may have left
        busy (it is not put back; closing it ends any operation still open on it)."""
        if not pooled.alive:
            return
        pooled.alive = False
        with self._module.lock:
            _lib.close_session(pooled.session)

    def relogin(self) -> None:
        """Log in again after a logout behind the pool's back (one attempt)."""
        with self._state_lock:
            try:
                self._login(self._token, self._holder)
            except _lib.P11Failure as failure:
                if failure.fault is not _lib.Fault.SESSION:
                    raise
                # The holder itself is gone: a new holder, then log in.
                with self._module.lock:
                    holder = _lib.open_session(self._token)
                self._login(self._token, holder)
                self._holder = holder
            # Key handles found before the logout may be stale: look keys up again.
            self._key_epoch += 1

    def restart(self) -> None:
        """Forget every session and log in afresh on the next borrow."""
        with self._state_lock:
            self._drop_sessions(close=True)
            self._generation += 1

    @contextlib.contextmanager
    def admin_session(self) -> Iterator[Any]:
        """A read-write session for key generation, import and listing."""
        self._ensure_started()
        with self._module.lock:
            session = _lib.open_session(self._token, rw=True)
        try:
            yield session
        finally:
            with self._module.lock:
                _lib.close_session(session)

    def close(self, *, logout: bool) -> None:
        """Close every session; log the application out when ``logout`` (last user)."""
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
            if self._epoch != fork_epoch():
                return  # parent handles: nothing of ours to close in a child
            holder = self._holder
            if holder is not None and logout:
                with self._module.lock, contextlib.suppress(_lib.P11Failure):
                    _lib.logout(self._module.lib, holder)
            self._drop_sessions(close=True)

    def __repr__(self) -> str:
        return (
            f"SessionPool(token={self.token_name}, size={self._size}, "
            f"idle={len(self._idle)}, loading={self._module.loading!r})"
        )
