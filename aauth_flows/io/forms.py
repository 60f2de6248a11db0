"""HTML forms for people: strict form reading, browser sessions, password login, CSRF
tokens, a limit on wrong guesses and the ``[[…people]]`` config tables. Shared by the
reference PS, the sample resource and the reference AS's ``/bind`` page.

A session is a random id in an ``HttpOnly; Secure; SameSite=Lax`` ``__Host-`` cookie,
mapped here to the person, a per-session CSRF key, the interaction codes tried so far and
the pending requests this browser reached with a valid code. CSRF tokens are an HMAC of
the session key over the form's purpose and the pending URL, so a token is good for one
session and one request only. The login form has its own pre-session CSRF value (the
same random value in a cookie and in the form: a cross-site post has neither).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from urllib.parse import parse_qsl, quote

import structlog
from attrs import define, field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from aauth_core.errors import AAuthError
from aauth_flows.io.egress import BodyBudget
from aauth_flows.io.passwords import hash_password, verify_password

__all__ = [
    "FormError",
    "read_form",
    "local_next",
    "see_other",
    "csrf_token",
    "csrf_ok",
    "Session",
    "MemorySessionStore",
    "PasswordLogin",
    "FailureLimiter",
    "read_people",
]

log = structlog.get_logger("aauth.io")

_FORM = "application/x-www-form-urlencoded"
#: a path (and query) on this server: no scheme, no authority, no whitespace or controls
#: (browsers drop tabs and newlines, so "/\t/evil" would become "//evil")
_LOCAL_PATH = re.compile(r"/[A-Za-z0-9\-._~!$&'()*+,;=:@%/?]{0,1000}")


class FormError(AAuthError):
    default_code = "invalid_request"
    default_status = 400


async def read_form(
    request: Request, *, max_bytes: int = 8 * 1024, max_fields: int = 8
) -> dict[str, str]:
    """A small urlencoded form, bounded and strict (no repeated field)."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != _FORM:
        raise FormError("a form post is expected", status=415)
    budget = BodyBudget(
        max_bytes,
        FormError("the form is too large", status=413),
        request.headers.get("content-length"),
    )
    async for chunk in request.stream():
        budget.add(chunk)
    try:
        pairs = parse_qsl(
            budget.body().decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=False,
            max_num_fields=max_fields,
        )
    except (UnicodeDecodeError, ValueError) as err:
        raise FormError("the form cannot be read") from err
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields:
            raise FormError(f"field {name[:20]!r} is repeated")
        fields[name] = value
    return fields


def local_next(value: str | None, default: str) -> str:
    """Only a path on this server is a place to return to (after a login)."""
    if not value or not _LOCAL_PATH.fullmatch(value) or value.startswith("//"):
        return default
    return value


def see_other(url: str, headers: Mapping[str, str] | None = None) -> Response:
    return RedirectResponse(url, status_code=303, headers=dict(headers or {}))


def csrf_token(key: bytes, *parts: str) -> str:
    """HMAC-SHA256 of ``parts`` (each length-prefixed, so no two lists collide) under
    ``key``: a form token good for exactly what ``parts`` name (a session, a purpose, a
    pending request)."""
    message = "".join(f"{len(part)}:{part}\n" for part in parts)
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def csrf_ok(key: bytes, token: object, *parts: str) -> bool:
    if not isinstance(token, str):
        return False
    return hmac.compare_digest(token.encode(), csrf_token(key, *parts).encode())


# -- sessions ------------------------------------------------------------------------------


@define
class Session:
    person: str
    expires_at: float
    csrf_key: bytes = field(repr=False)
    code_attempts: int = 0
    reached: set[str] = field(factory=set)  # pending URLs opened with a valid code

    def csrf_token(self, purpose: str, url: str = "") -> str:
        return csrf_token(self.csrf_key, purpose, url)

    def csrf_ok(self, token: object, purpose: str, url: str = "") -> bool:
        return csrf_ok(self.csrf_key, token, purpose, url)


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

    @property
    def lifetime(self) -> int:
        return self._lifetime

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


# -- password login -------------------------------------------------------------------------

#: ``login_page(next_url=, nonce=, error=, status=)``: the form (fields ``next``, ``nonce``,
#: ``person``, ``password``) posting to the login path
LoginPage = Callable[..., Response]


@define
class PasswordLogin:
    """``GET``/``POST`` login with an id and a password, a session cookie and its logout.
    ``people`` maps an id to its password hash, checked by ``verify`` (in a worker
    thread: scrypt is slow on purpose)."""

    people: Mapping[str, str] = field(repr=False)
    sessions: MemorySessionStore
    cookie: str  # ``__Host-…``
    login_cookie: str  # ``__Host-…``: the login form's pre-session CSRF value
    page: LoginPage
    #: ``verify(encoded_or_None, password) -> bool`` (``ps_settings.verify_password``)
    verify: Callable[[str | None, str], bool]
    login_path: str = "/login"
    default_next: str = "/"
    headers: Mapping[str, str] = field(factory=dict)  # security headers of redirects

    def current(self, request: Request) -> Session | None:
        return self.sessions.get(request.cookies.get(self.cookie))

    def person(self, request: Request) -> str | None:
        """The signed-in person's id (a hook for :class:`~.resource_asgi.AAuthResource`)."""
        session = self.current(request)
        return None if session is None else session.person

    def redirect(self, url: str) -> Response:
        return see_other(url, self.headers)

    def to_login(self, request: Request) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return self.redirect(f"{self.login_path}?next={quote(target, safe='')}")

    def form_with_nonce(
        self, next_url: str, error: str | None = None, status: int = 200
    ) -> Response:
        nonce = secrets.token_urlsafe(24)
        response = self.page(next_url=next_url, nonce=nonce, error=error, status=status)
        response.set_cookie(
            self.login_cookie,
            nonce,
            max_age=1800,
            path="/",
            secure=True,
            httponly=True,
            samesite="lax",
        )
        return response

    async def show(self, request: Request) -> Response:
        return self.form_with_nonce(local_next(request.query_params.get("next"), self.default_next))

    async def submit(self, request: Request) -> Response:
        form = await read_form(request)
        person, password = form.get("person", ""), form.get("password", "")
        next_url = local_next(form.get("next"), self.default_next)
        nonce = request.cookies.get(self.login_cookie, "")
        sent = form.get("nonce", "")
        if not nonce or not hmac.compare_digest(nonce.encode(), sent.encode()):
            return self.form_with_nonce(next_url, "The form expired: log in again.", 403)
        ok = await run_in_threadpool(self.verify, self.people.get(person), password[:1024])
        if not ok:
            log.info("aauth.io.login_refused")
            return self.form_with_nonce(next_url, "Wrong id or password.", 401)
        self.sessions.drop(request.cookies.get(self.cookie))
        session_id, _ = self.sessions.create(person)
        response = self.redirect(next_url)
        response.delete_cookie(
            self.login_cookie, path="/", secure=True, httponly=True, samesite="lax"
        )
        response.set_cookie(
            self.cookie,
            session_id,
            max_age=self.sessions.lifetime,
            path="/",
            secure=True,
            httponly=True,
            samesite="lax",
        )
        log.info("aauth.io.login", person=person)
        return response

    def logged_out(self, request: Request, to: str) -> Response:
        """Drop the session and its cookie; redirect to ``to``."""
        self.sessions.drop(request.cookies.get(self.cookie))
        response = self.redirect(to)
        response.delete_cookie(self.cookie, path="/", secure=True, httponly=True, samesite="lax")
        return response


def read_people(entries: object, *, what: str) -> dict[str, str]:
    """``[[<what>.people]]`` tables (``id`` and ``password_hash``, or ``password``: hashed
    here, demos only) → id → hash for :class:`PasswordLogin`; each hash is checked at load."""
    if not isinstance(entries, list):
        raise ValueError(f"[{what}] people must be an array of tables")
    people: dict[str, str] = {}
    for n, entry in enumerate(entries):
        where = f"[[{what}.people]] #{n + 1}"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where}: a table with id and password_hash")
        extra = sorted(set(entry) - {"id", "password", "password_hash"})
        if extra:
            raise ValueError(f"{where}: unknown key {str(extra[0])[:40]!r}")
        person = entry.get("id")
        if not isinstance(person, str) or not 0 < len(person) <= 64 or not person.isprintable():
            raise ValueError(f"{where}: id must be a short printable string")
        encoded = entry.get("password_hash")
        if encoded is None and isinstance(entry.get("password"), str):
            encoded = hash_password(entry["password"])
        if not isinstance(encoded, str):
            raise ValueError(f"{where}: password_hash (or password) is required")
        try:
            verify_password(encoded, "")  # ValueError for a hash it cannot read
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from err
        if person in people:
            raise ValueError(f"{where}: person {person!r} is listed twice")
        people[person] = encoded
    return people


# -- a limit on wrong guesses -------------------------------------------------------------


class FailureLimiter:
    """At most ``limit`` failures per key inside a sliding ``window`` (seconds); bounded
    (the keys with the oldest failures are dropped first when full)."""

    def __init__(
        self,
        *,
        limit: int = 5,
        window: float = 600,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a failure limit needs limit >= 1 and a positive window")
        self.limit = limit
        self.window = window
        self._max = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float] | None:
        failures = self._failures.get(key)
        if failures is None:
            return None
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return None
        return failures

    def blocked(self, key: str) -> bool:
        with self._lock:
            failures = self._recent(key, self._clock())
            return failures is not None and len(failures) >= self.limit

    def fail(self, key: str) -> None:
        with self._lock:
            now = self._clock()
            failures = self._recent(key, now)
            if failures is None:
                if len(self._failures) >= self._max:
                    del self._failures[next(iter(self._failures))]
                failures = self._failures[key] = deque(maxlen=self.limit)
            failures.append(now)
