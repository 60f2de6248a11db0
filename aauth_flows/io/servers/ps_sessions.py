"""Browser sessions of the people logged in at the reference PS.

A session is a random id in an ``HttpOnly; Secure; SameSite=Lax`` cookie, mapped here to
the person, a per-session CSRF key, the interaction codes tried so far (rate limit) and
the pending requests this browser reached with a valid code (only those may be decided
from it). CSRF tokens are an HMAC of the session key over the form's purpose and the
pending URL, so a token is good for one session and one request only.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable

from attrs import define, field

__all__ = ["Session", "MemorySessionStore", "COOKIE", "LOGIN_COOKIE"]

#: ``__Host-``: Secure, Path=/, no Domain: the cookie cannot be set by a sibling host.
COOKIE = "__Host-aauth-ps"
#: the login form's pre-session CSRF value (double-submit: cookie and form field agree)
LOGIN_COOKIE = "__Host-aauth-ps-login"


@define
class Session:
    person: str
    expires_at: float
    csrf_key: bytes = field(repr=False)
    code_attempts: int = 0
    reached: set[str] = field(factory=set)  # pending URLs opened with a valid code

    def csrf_token(self, purpose: str, url: str = "") -> str:
        mac = hmac.new(self.csrf_key, f"{purpose}\n{url}".encode(), hashlib.sha256)
        return mac.hexdigest()

    def csrf_ok(self, token: object, purpose: str, url: str = "") -> bool:
        if not isinstance(token, str):
            return False
        return hmac.compare_digest(token.encode(), self.csrf_token(purpose, url).encode())


class MemorySessionStore:
    """Sessions in process memory (bounded; the oldest dropped first when full)."""

    def __init__(
        self,
        *,
        lifetime: int,
        max_sessions: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._lifetime = lifetime
        self._max = max_sessions
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}

    def create(self, person: str) -> tuple[str, Session]:
        session_id = secrets.token_urlsafe(32)
        session = Session(
            person=person,
            expires_at=self._clock() + self._lifetime,
            csrf_key=secrets.token_bytes(32),
        )
        with self._lock:
            if len(self._sessions) >= self._max:
                now = self._clock()
                for key in [k for k, s in self._sessions.items() if s.expires_at <= now]:
                    del self._sessions[key]
                while len(self._sessions) >= self._max:
                    del self._sessions[next(iter(self._sessions))]
            self._sessions[session_id] = session
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id or len(session_id) > 128:
            return None
        with self._lock:
            session = self._sessions.get(session_id)
            if session is not None and session.expires_at <= self._clock():
                del self._sessions[session_id]
                return None
            return session

    def drop(self, session_id: str | None) -> None:
        with self._lock:
            self._sessions.pop(session_id or "", None)
