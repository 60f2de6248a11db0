"""The reference Access Server: ``aauth-access.json``, its JWKS, the auth token endpoint
(only a Person Server calls it), pending URLs, revocation, and a config-driven policy.

- ``POST /token`` runs :class:`~aauth_flows.machines.access_server.AuthTokenExchange`;
  a deferred answer's machine is kept as its snapshot JSON under its pending URL and
  restored for each request there (``GET`` poll, ``POST`` claims/answers, ``DELETE``).
- ``POST /revoke`` runs :class:`~aauth_flows.machines.access_server.RevocationRequest`
  (a PS revoking a person token cascades to the resources' revocation endpoints).
- The policy (:class:`ConfiguredPolicy`) grants, for a trusted PS and a known resource,
  the scopes the resource asked for that the configuration allows for that resource;
  anything else is denied. With ``bind_person_server`` the person first binds her PS at
  the AS once, through ``/bind``: an approval page, so (protocol §8) its approver signs
  in first (``/login``, ``[[as.people]]``, :mod:`aauth_flows.io.forms`); the code only
  names the pending request, the signed-in person's form post (a CSRF token bound to her
  session and that request) approves it, wrong codes are limited per person, and the
  person who bound a PS is logged and kept (``ConfiguredPolicy.bound_by``).

Machines verify through a blocking key resolver and sign with a possibly blocking key,
so each request's machine runs in a worker thread.
"""

from __future__ import annotations

import html
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote

import structlog
from attrs import field, frozen
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from aauth_core.errors import AAuthError, MalformedInput
from aauth_core.http import HttpRequest
from aauth_core.identifiers import ServerId
from aauth_core.interaction import bytes_needed, generate_code, normalize_code
from aauth_core.metadata import AccessServerMetadata
from aauth_core.tokens.claims import DWK_ACCESS
from aauth_core.urls import https_url
from aauth_flows.io.forms import (
    FailureLimiter,
    MemorySessionStore,
    PasswordLogin,
    read_form,
    read_people,
)
from aauth_flows.io.messages import error_response, from_starlette, to_starlette
from aauth_flows.io.passwords import verify_password
from aauth_flows.io.pending_store import MemoryPendingStore, PendingStore
from aauth_flows.io.runner import run_machine
from aauth_flows.io.servers.context import ServerContext, well_known_routes
from aauth_flows.machines.access_server import (
    AuthTokenExchange,
    PendingRequestReceived,
    RevocationReceived,
    RevocationRequest,
    TokenRequestReceived,
)
from aauth_flows.machines.actions import TimerFired, Wait
from aauth_flows.machines.as_pending import not_found
from aauth_flows.machines.as_policy import (
    AccessServerConfig,
    Decision,
    Deny,
    Grant,
    InMemoryAccessServerStore,
    PolicyRequest,
    RequireInteraction,
    StaticPersonServers,
    StaticResourceDirectory,
)
from aauth_flows.machines.as_revocation import MAX_DOWNSTREAM_WAIT
from aauth_flows.machines.engine import Action, Event, Machine, Snapshot

__all__ = [
    "BindRequest",
    "ResourceGrant",
    "AccessServerSettings",
    "ConfiguredPolicy",
    "LockedAccessServerStore",
    "PAGE_HEADERS",
    "login_page",
    "build_app",
]

log = structlog.get_logger("aauth.io")

TOKEN_PATH = "/token"  # noqa: S105 - a path, not a secret
PENDING_PATH = "/pending"
REVOKE_PATH = "/revoke"
BIND_PATH = "/bind"
#: how long a pending record is kept past its presented token's expiry (late polls)
PENDING_GRACE = 3600


# -- settings ---------------------------------------------------------------------------


def _scopes(value: Any) -> frozenset[str]:
    return frozenset(value)


@frozen(kw_only=True)
class ResourceGrant:
    """What the AS grants at one resource: at most ``scopes``; where it revokes there."""

    scopes: frozenset[str] = field(converter=_scopes)
    revocation_endpoint: str | None = None

    def __attrs_post_init__(self) -> None:
        if not all(isinstance(s, str) and s and " " not in s for s in self.scopes):
            raise ValueError("scopes: a list of scope names")
        if self.revocation_endpoint is not None:
            https_url(
                self.revocation_endpoint,
                what="revocation_endpoint",
                allow_query=False,
                allow_fragment=False,
            )


def _issuer_set(value: Any) -> frozenset[str]:
    return frozenset(value)


def _check_issuer(what: str, value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what}: a server identifier (https://host)")
    try:
        return str(ServerId.parse(value))
    except AAuthError as exc:
        raise ValueError(f"{what}: {exc.detail}") from None


def _int(section: Mapping[str, Any], name: str, low: int, high: int) -> int | None:
    if name not in section:
        return None
    value = section[name]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name}: an integer from {low} to {high}")
    return value


def _people(value: Mapping[str, str]) -> Mapping[str, str]:
    return dict(value)


@frozen(kw_only=True)
class AccessServerSettings:
    """The ``[as]`` section: ``person_servers`` it trusts, the ``resources`` it grants at
    (``[as.resources."https://…"] scopes = [...]``, optional ``revocation_endpoint``),
    ``token_lifetime`` (≤ 3600), ``window``, ``retry_after``, ``bind_person_server``.

    ``bind_person_server`` puts an approval page on the AS (``/bind``): it needs
    ``[[as.people]]`` (``id`` and ``password_hash``, or ``password``) who sign in there
    for ``session_lifetime`` seconds; ``code_attempts`` wrong codes per person within
    ``code_window`` seconds are refused with 429."""

    person_servers: frozenset[str] = field(converter=_issuer_set)
    resources: Mapping[str, ResourceGrant]
    token_lifetime: int = 3600
    window: int = 60
    retry_after: int = 5
    bind_person_server: bool = False
    max_pending: int = 10_000
    #: who may sign in to the ``/bind`` page: id → scrypt hash (``hash_password``)
    people: Mapping[str, str] = field(factory=dict, converter=_people, repr=False)
    session_lifetime: int = 8 * 3600
    code_attempts: int = 5
    code_window: int = 600

    def __attrs_post_init__(self) -> None:
        for issuer in self.person_servers:
            _check_issuer("person_servers", issuer)
        for issuer in self.resources:
            _check_issuer("resources", issuer)
        if not 0 < self.token_lifetime <= 3600:
            raise ValueError("token_lifetime: auth tokens live 1 s to 1 h")
        if self.bind_person_server and not self.people:
            raise ValueError(
                "bind_person_server needs [[as.people]]: an approval page must "
                "authenticate its approver (the interaction code alone never authorizes)"
            )
        if not 60 <= self.session_lifetime <= 7 * 86400:
            raise ValueError("session_lifetime: 60 s to 7 days")
        if not 1 <= self.code_attempts <= 100:
            raise ValueError("code_attempts: an integer from 1 to 100")
        if not 1 <= self.code_window <= 86400:
            raise ValueError("code_window: 1 s to 1 day")

    @classmethod
    def from_toml(cls, section: Mapping[str, Any]) -> AccessServerSettings:
        known = {
            "person_servers",
            "resources",
            "token_lifetime",
            "window",
            "retry_after",
            "bind_person_server",
            "max_pending",
            "people",
            "session_lifetime",
            "code_attempts",
            "code_window",
        }
        unknown = sorted(set(section) - known)
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r}")
        servers = section.get("person_servers")
        if not isinstance(servers, list) or not servers:
            raise ValueError("person_servers: a non-empty list of Person Server identifiers")
        trusted = frozenset(_check_issuer("person_servers", s) for s in servers)
        raw_resources = section.get("resources")
        if not isinstance(raw_resources, Mapping) or not raw_resources:
            raise ValueError('resources: a table of [as.resources."https://host"] sections')
        resources: dict[str, ResourceGrant] = {}
        for issuer, entry in raw_resources.items():
            what = f"resources.{issuer!r}"
            _check_issuer(what, issuer)
            if not isinstance(entry, Mapping):
                raise ValueError(f"{what}: a table with scopes = [...]")
            extra = sorted(set(entry) - {"scopes", "revocation_endpoint"})
            if extra:
                raise ValueError(f"{what}: unknown key {extra[0]!r}")
            scopes = entry.get("scopes")
            if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
                raise ValueError(f"{what}.scopes: a list of scope names")
            endpoint = entry.get("revocation_endpoint")
            if endpoint is not None and not isinstance(endpoint, str):
                raise ValueError(f"{what}.revocation_endpoint: an https URL")
            try:
                resources[issuer] = ResourceGrant(scopes=scopes, revocation_endpoint=endpoint)
            except (ValueError, AAuthError) as exc:
                raise ValueError(f"{what}: {exc}") from None
        options: dict[str, Any] = {}
        for name, low, high in (
            ("token_lifetime", 1, 3600),
            ("window", 1, 600),
            ("retry_after", 1, 300),
            ("max_pending", 1, 1_000_000),
            ("session_lifetime", 60, 7 * 86400),
            ("code_attempts", 1, 100),
            ("code_window", 1, 86400),
        ):
            value = _int(section, name, low, high)
            if value is not None:
                options[name] = value
        bind = section.get("bind_person_server", False)
        if not isinstance(bind, bool):
            raise ValueError("bind_person_server: true or false")
        people = read_people(
            section.get("people", []),
            what="as",
        )
        return cls(
            person_servers=trusted,
            resources=resources,
            bind_person_server=bind,
            people=people,
            **options,
        )


# -- the policy -------------------------------------------------------------------------


@frozen(kw_only=True)
class BindRequest:
    """A pending request waiting for its person to bind ``ps`` at this AS, and what the
    page shows about it (agent-asserted values: escape them)."""

    pending_url: str
    code: str = field(repr=False)
    ps: str
    agent: str
    agent_provider: str
    resource: str
    scope: str


class ConfiguredPolicy:
    """Grant the configured scopes at known resources; with ``bind_person_server``, first
    an interaction at ``/bind`` (once per Person Server), approved by a signed-in person.
    Thread-safe."""

    def __init__(
        self, settings: AccessServerSettings, issuer: str, random: Callable[[int], bytes]
    ) -> None:
        self._settings = settings
        self._bind_url = f"{issuer}{BIND_PATH}"
        self._random = random
        self._lock = threading.Lock()
        self.bound: set[str] = set()
        #: the PS → the person who bound it
        self.bound_by: dict[str, str] = {}
        #: pending URL → its bind request; normalised code → pending URL
        self._requests: OrderedDict[str, BindRequest] = OrderedDict()
        self._codes: dict[str, str] = {}

    def decide(self, request: PolicyRequest) -> Decision:
        grant = self._settings.resources.get(request.resource.iss)
        if grant is None:
            return Deny(detail=f"{request.resource.iss} is not a resource this AS serves")
        if self._settings.bind_person_server and request.pending_url is not None:
            with self._lock:
                if request.ps not in self.bound:
                    return RequireInteraction(url=self._bind_url, code=self._code(request))
        asked = request.resource.scopes
        if not asked:
            return Grant()
        allowed = asked & grant.scopes
        if not allowed:
            return Deny(detail="none of the requested scopes is granted at this resource")
        return Grant(scope=" ".join(sorted(allowed)))

    def _code(self, request: PolicyRequest) -> str:
        url = request.pending_url or ""
        known = self._requests.get(url)
        if known is not None:
            return known.code
        code = generate_code(self._random(bytes_needed()))
        self._requests[url] = BindRequest(
            pending_url=url,
            code=code,
            ps=request.ps,
            agent=str(request.agent.sub),
            agent_provider=request.agent.iss,
            resource=request.resource.iss,
            scope=request.resource.scope or "",
        )
        self._codes[normalize_code(code)] = url
        while len(self._requests) > self._settings.max_pending:
            _, old = self._requests.popitem(last=False)
            self._codes.pop(normalize_code(old.code), None)
        return code

    def find(self, code: str) -> BindRequest | None:
        """The request an interaction ``code`` names (None: malformed, unknown or used)."""
        try:
            key = normalize_code(code)
        except MalformedInput:
            return None
        with self._lock:
            url = self._codes.get(key)
            return None if url is None else self._requests.get(url)

    def bind(self, code: str, *, pending_url: str, person: str) -> BindRequest | None:
        """``person`` approved the request at ``pending_url`` that ``code`` names: bind its
        PS. The code is used up; None if it no longer names that request."""
        found = self.find(code)
        with self._lock:
            if found is None or found.pending_url != pending_url:
                return None
            if self._requests.pop(pending_url, None) is None:  # used in between
                return None
            self._codes.pop(normalize_code(found.code), None)
            self.bound.add(found.ps)
            self.bound_by[found.ps] = person
            return found


# -- state shared between requests ------------------------------------------------------------


class LockedAccessServerStore(InMemoryAccessServerStore):
    """:class:`InMemoryAccessServerStore` whose writes are serialised (worker threads)."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def apply(self, action: Action) -> bool:
        with self._lock:
            return super().apply(action)


# -- the app -----------------------------------------------------------------------------------


#: every page: no script at all, no framing, no caching, no Referer (the code is in URLs)
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
#: ``__Host-``: Secure, Path=/, no Domain (a sibling host cannot set it)
COOKIE = "__Host-aauth-as"
LOGIN_COOKIE = "__Host-aauth-as-login"  # the login form's pre-session CSRF value
#: one answer for a malformed, unknown, expired or used code (no oracle)
UNKNOWN_CODE = "This code is unknown, expired or already used."


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _hidden(name: str, value: str) -> str:
    return f'<input type=hidden name="{_e(name)}" value="{_e(value)}">'


def _page(title: str, body: str, *, status: int = 200) -> Response:
    """A complete page; ``body`` is markup built here from escaped values."""
    text = (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        f"<title>{_e(title)}</title></head><body><h1>{_e(title)}</h1>{body}</body></html>\n"
    )
    return HTMLResponse(text, status_code=status, headers=PAGE_HEADERS)


def _message(title: str, text: str, *, status: int = 200) -> Response:
    return _page(title, f"<p>{_e(text)}</p>", status=status)


def login_page(
    *, next_url: str = "", nonce: str, error: str | None = None, status: int = 200
) -> Response:
    """The AS's sign-in form (a :data:`~aauth_flows.io.forms.LoginPage`)."""
    problem = f"<p role=alert>{_e(error)}</p>" if error else ""
    body = (
        f"{problem}<form method=post action=/login>{_hidden('next', next_url)}"
        f"{_hidden('nonce', nonce)}"
        "<p><label>Id <input name=person autocomplete=username required></label></p>"
        "<p><label>Password <input type=password name=password "
        "autocomplete=current-password required></label></p>"
        "<p><button type=submit>Sign in</button></p></form>"
    )
    return _page("Sign in to the Access Server", body, status=status)


def _code_page(person: str, *, error: str | None = None, status: int = 200) -> Response:
    problem = f"<p role=alert>{_e(error)}</p>" if error else ""
    body = (
        f"<p>Signed in as <strong>{_e(person)}</strong>.</p>{problem}"
        f"<form method=get action={BIND_PATH}><p><label>Code "
        "<input name=code autocomplete=off maxlength=64 required></label></p>"
        "<p><button type=submit>Continue</button></p></form>"
    )
    return _page("Bind your Person Server", body, status=status)


def _confirm_page(issuer: str, person: str, found: BindRequest, code: str, csrf: str) -> Response:
    rows = [
        ("Person Server", found.ps),
        ("Agent", found.agent),
        ("Agent provider", found.agent_provider),
        ("Resource", found.resource),
        ("Access asked for", found.scope or "(no scope)"),
    ]
    listing = "".join(f"<dt>{_e(k)}</dt><dd><code>{_e(v)}</code></dd>" for k, v in rows)
    body = (
        f"<p>Signed in as <strong>{_e(person)}</strong>.</p>"
        f"<p>Allow <strong>{_e(found.ps)}</strong> to request access for you at "
        f"{_e(issuer)}?</p><dl>{listing}</dl>"
        f"<form method=post action={BIND_PATH}>{_hidden('code', code)}{_hidden('csrf', csrf)}"
        "<p><button type=submit>Bind</button></p></form>"
    )
    return _page("Bind your Person Server", body)


def build_app(context: ServerContext, settings: AccessServerSettings) -> Starlette:
    """The AS as an ASGI app (see the module docstring)."""
    issuer = context.issuer
    store = LockedAccessServerStore()
    policy = ConfiguredPolicy(settings, issuer, context.random)
    endpoints = {
        r: g.revocation_endpoint
        for r, g in settings.resources.items()
        if g.revocation_endpoint is not None
    }
    config = AccessServerConfig(
        issuer=issuer,
        signing_key=context.signing_key,
        pending_base=f"{issuer}{PENDING_PATH}",
        keys=context.keys,
        person_servers=StaticPersonServers(settings.person_servers),
        policy=policy,
        revocations=store,
        issued=store,
        known_resources=frozenset(settings.resources),
        resources=StaticResourceDirectory(endpoints),
        window=settings.window,
        token_lifetime=settings.token_lifetime,
        retry_after=settings.retry_after,
    )
    pending: PendingStore = MemoryPendingStore(
        max_entries=settings.max_pending, clock=context.clock
    )
    metadata = AccessServerMetadata.from_dict(
        {
            "issuer": issuer,
            "jwks_uri": f"{issuer}/jwks",
            "auth_token_endpoint": f"{issuer}{TOKEN_PATH}",
            "revocation_endpoint": f"{issuer}{REVOKE_PATH}",
        }
    ).to_dict()

    def wait(action: Action) -> Event | None:
        if isinstance(action, Wait):  # a resource's 202 during the revocation cascade
            time.sleep(min(action.seconds, MAX_DOWNSTREAM_WAIT))
            return TimerFired(at=context.clock())
        return None

    def run(machine: Machine[Any, Any], event: Event) -> Response:
        result = run_machine(
            machine,
            event,
            signers=context.signers,
            http=context.http,
            clock=context.clock,
            store=store,
            on_action=wait,
        )
        if result.response is None:
            raise AAuthError("the request was not answered", code="server_error", status=500)
        return to_starlette(result.response)

    def save(url: str, machine: AuthTokenExchange) -> None:
        # kept until the presented token expires (the machine answers 408 then), and a
        # while after so a late poll still gets the machine's answer rather than a 404
        grant = machine.data.context
        until = grant.max_exp if grant is not None else context.clock() + settings.window
        pending.put(url, machine.snapshot().to_json(), expires_at=until + PENDING_GRACE)

    def token(request: HttpRequest) -> Response:
        machine = AuthTokenExchange(config=config)
        event = TokenRequestReceived(request=request, at=context.clock(), nonce=context.random(16))
        response = run(machine, event)
        url = machine.data.pending_url
        if url is not None:
            save(url, machine)
        log.info("aauth.as.token", status=response.status_code, state=machine.state.value)
        return response

    def poll(request: HttpRequest) -> Response:
        url = request.url
        with pending.lock(url):
            text = pending.get(url)
            if text is None:
                return error_response(not_found())
            machine = AuthTokenExchange.restore(Snapshot.from_json(text), config=config)
            event = PendingRequestReceived(
                request=request, at=context.clock(), nonce=context.random(16)
            )
            response = run(machine, event)
            save(url, machine)
        log.info("aauth.as.pending", status=response.status_code, state=machine.state.value)
        return response

    def revoke(request: HttpRequest) -> Response:
        machine = RevocationRequest(config=config)
        response = run(machine, RevocationReceived(request=request, at=context.clock()))
        log.info("aauth.as.revoke", status=response.status_code, state=machine.state.value)
        return response

    def endpoint(handler: Callable[[HttpRequest], Response]) -> Callable[[Request], Any]:
        async def serve(request: Request) -> Response:
            try:
                received = await from_starlette(request, origin=issuer)
                response: Response = await run_in_threadpool(handler, received)
                return response
            except AAuthError as err:
                return error_response(err)

        return serve

    logins = PasswordLogin(
        people=settings.people,
        sessions=MemorySessionStore(lifetime=settings.session_lifetime),
        cookie=COOKIE,
        login_cookie=LOGIN_COOKIE,
        page=login_page,
        verify=verify_password,
        default_next=BIND_PATH,
        headers=PAGE_HEADERS,
    )
    wrong_codes = FailureLimiter(limit=settings.code_attempts, window=settings.code_window)

    def for_people(handler: Callable[[Request], Awaitable[Response]]) -> Callable[..., Any]:
        async def serve(request: Request) -> Response:
            try:
                return await handler(request)
            except AAuthError as err:
                return _message("Something is wrong", err.detail, status=err.status)

        return serve

    def wrong_code(person: str) -> Response:
        wrong_codes.fail(person)
        log.info("aauth.as.bind_code_refused", person=person)
        return _code_page(person, error=UNKNOWN_CODE, status=404)

    def too_many() -> Response:
        return _message("Too many codes", "Too many wrong codes: try again later.", status=429)

    async def bind_page(request: Request) -> Response:
        session = logins.current(request)
        if session is None:
            return logins.to_login(request)
        person = session.person
        code = request.query_params.get("code", "").strip()[:64]
        if not code:
            return _code_page(person)
        if wrong_codes.blocked(person):
            return too_many()
        found = policy.find(code)
        if found is None:
            return wrong_code(person)
        csrf = session.csrf_token("bind", found.pending_url)
        return _confirm_page(issuer, person, found, code, csrf)

    async def bind(request: Request) -> Response:
        session = logins.current(request)
        if session is None:
            return logins.redirect(f"{logins.login_path}?next={quote(BIND_PATH, safe='')}")
        person = session.person
        form = await read_form(request, max_bytes=4096, max_fields=4)
        if wrong_codes.blocked(person):
            return too_many()
        code = form.get("code", "").strip()[:64]
        found = policy.find(code) if code else None
        if found is None:
            return wrong_code(person)
        if not session.csrf_ok(form.get("csrf"), "bind", found.pending_url):
            return _message("Form expired", "Reload the page and try again.", status=403)
        bound = policy.bind(code, pending_url=found.pending_url, person=person)
        if bound is None:  # used in between: the same answer as any other spent code
            return _code_page(person, error=UNKNOWN_CODE, status=404)
        log.info("aauth.as.bound", ps=bound.ps, person=person)
        return _message("Bound", f"Done: {bound.ps} is bound at this Access Server.")

    routes = [
        *well_known_routes(context, DWK_ACCESS, metadata),
        Route(TOKEN_PATH, endpoint(token), methods=["POST"]),
        Route(f"{PENDING_PATH}/{{id}}", endpoint(poll), methods=["GET", "POST", "DELETE"]),
        Route(REVOKE_PATH, endpoint(revoke), methods=["POST"]),
    ]
    if settings.bind_person_server:
        routes += [
            Route("/login", for_people(logins.show), methods=["GET"]),
            Route("/login", for_people(logins.submit), methods=["POST"]),
            Route(BIND_PATH, for_people(bind_page), methods=["GET"]),
            Route(BIND_PATH, for_people(bind), methods=["POST"]),
        ]
    app = Starlette(routes=routes)
    app.state.store = store
    app.state.policy = policy
    app.state.pending = pending
    app.state.logins = logins
    return app
