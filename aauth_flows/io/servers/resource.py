"""The sample calendar resource: one process, one or more resource identities by ``Host``.

The demo needs a three-party resource (``https://calendar.aauth.test``: resource tokens
name the agent's PS) and a four-party one (``https://fed.aauth.test`` with
``access_server``: resource tokens name the AS) side by side, so one app serves every
configured identity, each with its own issuer, routes, store, replay cache, metadata and
in-memory calendar; the resource key is the server's own (shared).

The calendar API (``api = "calendar"``)::

    GET  /whoami        agent identity (agent token)
    GET  /availability  resource-managed: agent token + the resource's session token
    GET  /me/profile    person identity (person token, or an auth token)
    GET  /events        auth token with calendar.read
    POST /events        auth token with calendar.write   {"title": ..., "start": ...}
    POST /events/share  auth token with calendar.share, deferred (202 while the agent
                        fetches the auth token; the held call runs once it comes)

``api = "team"`` (the federated one): ``GET /whoami`` and ``GET /team/events``
(calendar.read).

People sign in at ``/login`` (each host its own ``__Host-`` session cookie) before they
decide on the interaction page (§8: the code never authorizes); any signed-in person may
decide a request whose code she holds, and the first to open it claims it (see
:class:`~aauth_flows.io.resource_asgi.AAuthResource`). Configuration (the ``[resource]``
section)::

    replay = true                 # refuse a signed request seen inside the window
    max_body = 65536
    session_lifetime = 28800
    [[resource.people]]           # without people, nobody can approve resource-managed access
    id = "alice"
    password_hash = "scrypt$…"    # or password = "…" (hashed on load: demos only)
    [[resource.identities]]
    issuer = "https://calendar.aauth.test"
    [[resource.identities]]
    issuer = "https://fed.aauth.test"
    api = "team"
    access_server = "https://as.aauth.test"
"""

from __future__ import annotations

import enum
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import structlog
from attrs import field, frozen
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Host
from starlette.routing import Route as WebRoute

from aauth_core.errors import AAuthError
from aauth_core.identifiers import ServerId
from aauth_flows.io.forms import MemorySessionStore, PasswordLogin, read_people
from aauth_flows.io.messages import error_response
from aauth_flows.io.passwords import verify_password
from aauth_flows.io.replay import MemoryReplayCache
from aauth_flows.io.resource_asgi import AAuthMiddleware, AAuthResource
from aauth_flows.io.resource_caller import Caller, caller_of
from aauth_flows.io.resource_page import PAGE_HEADERS, login_page, outcome_page
from aauth_flows.io.servers.context import ServerContext
from aauth_flows.machines.resource import AccessMode, Route
from aauth_flows.machines.wire import MAX_BODY

__all__ = [
    "Api",
    "IdentitySettings",
    "ResourceSettings",
    "CALENDAR_ROUTES",
    "TEAM_ROUTES",
    "SCOPE_DESCRIPTIONS",
    "Calendar",
    "build_resource",
    "sign_in",
    "build_app",
]


log = structlog.get_logger("aauth.io")


class Api(enum.StrEnum):
    CALENDAR = "calendar"
    TEAM = "team"


CALENDAR_ROUTES = (
    Route(path="/whoami", mode=AccessMode.AGENT),
    Route(path="/availability", mode=AccessMode.RESOURCE_MANAGED, scope="calendar.availability"),
    Route(path="/me/profile", mode=AccessMode.PERSON),
    Route(
        path="/events/share",
        mode=AccessMode.AUTHORIZATION,
        methods=["POST"],
        scope="calendar.share",
        deferred=True,
    ),
    Route(path="/events", mode=AccessMode.AUTHORIZATION, methods=["GET"], scope="calendar.read"),
    Route(path="/events", mode=AccessMode.AUTHORIZATION, methods=["POST"], scope="calendar.write"),
)
TEAM_ROUTES = (
    Route(path="/whoami", mode=AccessMode.AGENT),
    Route(path="/team/events", mode=AccessMode.AUTHORIZATION, scope="calendar.read"),
)
SCOPE_DESCRIPTIONS: Mapping[str, str] = {
    "calendar.availability": "See when you are free",
    "calendar.read": "Read your calendar",
    "calendar.write": "Add events to your calendar",
    "calendar.share": "Share events on your behalf",
}
_API_ROUTES = {Api.CALENDAR: CALENDAR_ROUTES, Api.TEAM: TEAM_ROUTES}
_MAX_EVENTS = 1000
#: ``__Host-``: Secure, Path=/, no Domain: each resource host has its own session
COOKIE = "__Host-aauth-resource"
LOGIN_COOKIE = "__Host-aauth-resource-login"
_PUBLIC = ("/login",)


def _check_issuer(_inst: object, _attr: object, value: str) -> None:
    try:
        ServerId.parse(value)
    except AAuthError as err:
        raise ValueError(f"resource issuer {value!r}: {err.detail}") from err


def _check_access_server(_inst: object, _attr: object, value: str | None) -> None:
    if value is not None:
        _check_issuer(_inst, _attr, value)


@frozen(kw_only=True)
class IdentitySettings:
    """One resource identity served by this process (chosen by the ``Host`` header)."""

    issuer: str = field(validator=_check_issuer)
    api: Api = field(default=Api.CALENDAR, converter=Api)
    access_server: str | None = field(default=None, validator=_check_access_server)

    @property
    def host(self) -> str:
        return urlsplit(self.issuer).hostname or ""


def _table(section: object, what: str, known: frozenset[str]) -> dict[str, Any]:
    if not isinstance(section, dict):
        raise ValueError(f"{what} must be a table")
    unknown = sorted(set(section) - known)
    if unknown:
        raise ValueError(f"{what}: unknown setting(s) {', '.join(unknown)}")
    return section


@frozen(kw_only=True)
class ResourceSettings:
    """The ``[resource]`` section. No identities: one calendar at the server's issuer."""

    identities: tuple[IdentitySettings, ...] = ()
    replay: bool = True
    max_body: int = MAX_BODY
    #: who may sign in to decide on the interaction page: id → scrypt hash
    people: Mapping[str, str] = field(factory=dict, repr=False)
    session_lifetime: int = 8 * 3600

    @classmethod
    def from_toml(cls, section: Mapping[str, Any]) -> ResourceSettings:
        known = frozenset({"identities", "replay", "max_body", "people", "session_lifetime"})
        table = _table(dict(section), "[resource]", known)
        replay = table.get("replay", True)
        if not isinstance(replay, bool):
            raise ValueError("[resource] replay must be true or false")
        max_body = table.get("max_body", MAX_BODY)
        if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body < 1:
            raise ValueError("[resource] max_body must be a positive integer (bytes)")
        raw = table.get("identities", [])
        if not isinstance(raw, list):
            raise ValueError("[resource] identities must be an array of tables")
        identities: list[IdentitySettings] = []
        for n, item in enumerate(raw):
            what = f"[[resource.identities]] #{n + 1}"
            entry = _table(item, what, frozenset({"issuer", "api", "access_server"}))
            if not isinstance(entry.get("issuer"), str):
                raise ValueError(f"{what}: issuer is required")
            api = entry.get("api", Api.CALENDAR.value)
            if api not in {a.value for a in Api}:
                raise ValueError(f"{what}: api must be one of {', '.join(a.value for a in Api)}")
            access_server = entry.get("access_server")
            if access_server is not None and not isinstance(access_server, str):
                raise ValueError(f"{what}: access_server must be a server identifier")
            identities.append(
                IdentitySettings(issuer=entry["issuer"], api=api, access_server=access_server)
            )
        hosts = [identity.host for identity in identities]
        if len(set(hosts)) != len(hosts):
            raise ValueError("[resource] two identities share a host name")
        lifetime = table.get("session_lifetime", 8 * 3600)
        if isinstance(lifetime, bool) or not isinstance(lifetime, int) or not lifetime >= 60:
            raise ValueError("[resource] session_lifetime must be an integer >= 60 (seconds)")
        return cls(
            identities=tuple(identities),
            replay=replay,
            max_body=max_body,
            people=read_people(table.get("people", []), what="resource"),
            session_lifetime=lifetime,
        )


# -- the calendar --------------------------------------------------------------------------


class Calendar:
    """One identity's calendar data, in memory, per person ``(iss, sub)``."""

    def __init__(self) -> None:
        self.events: dict[tuple[str, str], list[dict[str, str]]] = {}
        self.shared: list[dict[str, str]] = []

    def of(self, person: tuple[str, str]) -> list[dict[str, str]]:
        return self.events.setdefault(person, [])


def _problem(status: int, code: str, detail: str) -> Response:
    return error_response(AAuthError(detail, code=code, status=status))


def _caller(request: Request) -> Caller:
    caller = caller_of(request)
    if caller is None:  # every calendar path is a protected route
        raise RuntimeError("calendar route reached without a verified caller")
    return caller


def _person(caller: Caller) -> tuple[str, str]:
    if caller.person is None:
        raise RuntimeError("a person route reached with an agent token")
    return caller.person


async def _json_object(request: Request) -> dict[str, Any] | None:
    try:
        body = json.loads(await request.body())
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _text(body: Mapping[str, Any], name: str, limit: int) -> str | None:
    value = body.get(name)
    return value if isinstance(value, str) and 0 < len(value) <= limit else None


def calendar_app(api: Api, calendar: Calendar, login: PasswordLogin | None = None) -> Starlette:
    """The application behind the middleware (it only ever sees verified callers, but for
    the public ``/login``)."""

    async def whoami(request: Request) -> Response:
        return JSONResponse(_caller(request).to_dict())

    async def availability(request: Request) -> Response:
        caller = _caller(request)
        slots = ["09:00-10:00", "13:00-14:30", "16:00-17:00"]
        return JSONResponse({"agent": str(caller.agent), "free": slots})

    async def profile(request: Request) -> Response:
        iss, sub = _person(_caller(request))
        count = len(calendar.of((iss, sub)))
        return JSONResponse({"iss": iss, "sub": sub, "events": count})

    async def events(request: Request) -> Response:
        person = _person(_caller(request))
        mine = calendar.of(person)
        if request.method == "GET":
            return JSONResponse({"events": mine})
        body = await _json_object(request)
        title = None if body is None else _text(body, "title", 200)
        start = None if body is None else _text(body, "start", 64)
        if body is None or title is None or start is None:
            return _problem(400, "invalid_request", "an event is {title, start} (strings)")
        if len(mine) >= _MAX_EVENTS:
            return _problem(400, "invalid_request", "this calendar is full")
        event = {"id": f"e{len(mine) + 1}", "title": title, "start": start}
        mine.append(event)
        return JSONResponse(event, status_code=201)

    async def share(request: Request) -> Response:
        person = _person(_caller(request))
        body = await _json_object(request)
        target = None if body is None else _text(body, "with", 200)
        if target is None:
            return _problem(400, "invalid_request", 'share needs {"with": "..."}')
        record = {"by": person[1], "with": target, "events": str(len(calendar.of(person)))}
        calendar.shared.append(record)
        return JSONResponse({"shared": record})

    async def team_events(request: Request) -> Response:
        iss, sub = _person(_caller(request))
        return JSONResponse({"team": "aauth", "for": sub, "events": calendar.of((iss, sub))})

    if api is Api.TEAM:
        routes = [WebRoute("/whoami", whoami), WebRoute("/team/events", team_events)]
    else:
        routes = [
            WebRoute("/whoami", whoami),
            WebRoute("/availability", availability),
            WebRoute("/me/profile", profile),
            WebRoute("/events/share", share, methods=["POST"]),
            WebRoute("/events", events, methods=["GET", "POST"]),
        ]
    if login is not None:
        routes += [
            WebRoute("/login", login.show, methods=["GET"]),
            WebRoute("/login", _form_errors(login.submit), methods=["POST"]),
        ]
    return Starlette(routes=routes)


def _form_errors(handler: Callable[[Request], Awaitable[Response]]) -> Callable[..., Any]:
    """A bad form is a plain error page, not a traceback."""

    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except AAuthError as err:
            return outcome_page("Bad request", err.detail, err.status)

    return run


def _nobody(_request: Request) -> None:
    return None


def sign_in(settings: ResourceSettings) -> PasswordLogin:
    """One host's ``/login`` (its own sessions; the configured people)."""
    return PasswordLogin(
        people=settings.people,
        sessions=MemorySessionStore(lifetime=settings.session_lifetime),
        cookie=COOKIE,
        login_cookie=LOGIN_COOKIE,
        page=login_page,
        verify=verify_password,
        default_next="/interaction",
        headers=PAGE_HEADERS,
    )


def build_resource(
    context: ServerContext,
    identity: IdentitySettings,
    settings: ResourceSettings,
    login: PasswordLogin | None = None,
) -> AAuthResource:
    """The AAuth side of one identity (its own store and replay cache; the server's key);
    its interaction page takes decisions from people signed in through ``login``."""
    if login is None and identity.api is Api.CALENDAR:
        # fail closed: the page asks for a sign-in nobody can give (nothing is approved)
        log.warning("aauth.io.resource.no_people", issuer=identity.issuer)
    return AAuthResource.build(
        issuer=identity.issuer,
        signer=context.signer,
        key_ref=context.key_ref,
        keys=context.keys,
        routes=_API_ROUTES[identity.api],
        scope_descriptions=SCOPE_DESCRIPTIONS,
        access_server=identity.access_server,
        replay=MemoryReplayCache() if settings.replay else None,
        clock=context.clock,
        random=context.random,
        max_body=settings.max_body,
        public=_PUBLIC if login is not None else (),
        person=_nobody if login is None else login.person,
        login_url=None if login is None else "/login",
    )


def build_app(context: ServerContext, settings: ResourceSettings) -> Starlette:
    """Every identity behind its ``Host`` name; any other host gets 404 problem JSON."""
    identities = settings.identities or (IdentitySettings(issuer=context.issuer),)
    routes: list[Host | WebRoute] = []
    for identity in identities:
        login = sign_in(settings) if settings.people else None
        resource = build_resource(context, identity, settings, login)
        app = AAuthMiddleware(calendar_app(identity.api, Calendar(), login), resource=resource)
        routes.append(Host(identity.host, app=app))

    async def unknown_host(_request: Request) -> Response:
        return _problem(404, "not_found", "no resource is served under this host name")

    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    routes.append(WebRoute("/{path:path}", unknown_host, methods=methods))
    return Starlette(routes=routes)
