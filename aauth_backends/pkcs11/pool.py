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

    __slots__ = ("alive", "generation", "key_epoch", "keys", "session")

    def __init__(self, session: Any, generation: int, key_epoch: int) -> None:
        self.session = session
        self.generation = generation
        self.key_epoch = key_epoch
        self.keys: dict[object, Any] = {}
        self.alive = True

    def __repr__(self) -> str:
        return f"PooledSession(handle={self.session.handle}, keys={len(self.keys)})"


class SessionPool:
    """The holder session, the pool and the recovery steps (re-login, new session).

    ``login`` is called with the holder session to log in; it owns the PIN (the pool never
    sees it) and raises the backend error for a refused PIN.
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
        self._slots = threading.BoundedSemaphore(size)
        self._idle: collections.deque[PooledSession] = collections.deque()
        self._token: Any = None
        self._holder: Any = None
        self._generation = 0
        self._module_generation = -1
        self._epoch = fork_epoch()
        self._closed = False
        self._key_epoch = 0

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
        self._slots = threading.BoundedSemaphore(self._size)
        self._idle = collections.deque()
        self._holder = None
        self._token = None
        self._epoch = fork_epoch()

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

    @contextlib.contextmanager
    def session(self) -> Iterator[PooledSession]:
        """Borrow a session for one operation."""
        self._ensure_started()
        slots = self._slots
        started = time.monotonic()
        if not slots.acquire(timeout=self._timeout):
            raise BorrowTimeout(
                f"no PKCS#11 session of token {self.token_name} became free within "
                f"{self._timeout:g} s (pool size {self._size})"
            )
        waited = time.monotonic() - started
        pooled: PooledSession | None = None
        try:
            pooled = self._take()
            yield pooled
        finally:
            if pooled is not None and pooled.alive:
                if pooled.generation == self._generation:
                    self._idle.append(pooled)
                else:
                    self.discard(pooled)
            slots.release()
            if waited > 0.5:
                log.info("aauth.pkcs11.pool_wait", token=self.token_name, waited_s=round(waited, 3))

    def _take(self) -> PooledSession:
        while True:
            try:
                pooled = self._idle.pop()
            except IndexError:
                break
            if pooled.generation != self._generation:
                self.discard(pooled)
                continue
            if pooled.key_epoch != self._key_epoch:
                pooled.keys.clear()
                pooled.key_epoch = self._key_epoch
            return pooled
        with self._module.lock:
            session = _lib.open_session(self._token)
        return PooledSession(session, self._generation, self._key_epoch)

    def discard(self, pooled: PooledSession) -> None:
        """Drop a session whose handle went bad (it is not put back)."""
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
