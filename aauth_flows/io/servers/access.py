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
  the AS once, through ``/bind`` (an interaction page; the demo's sign-in is implicit).

Machines verify through a blocking key resolver and sign with a possibly blocking key,
so each request's machine runs in a worker thread.
"""

from __future__ import annotations

import html
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs

import structlog
from attrs import field, frozen
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from aauth_core.errors import AAuthError
from aauth_core.http import HttpRequest
from aauth_core.identifiers import ServerId
from aauth_core.interaction import bytes_needed, codes_match, generate_code
from aauth_core.metadata import AccessServerMetadata
from aauth_core.tokens.claims import DWK_ACCESS
from aauth_core.urls import https_url
from aauth_flows.io.messages import error_response, from_starlette, to_starlette
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
    "ResourceGrant",
    "AccessServerSettings",
    "ConfiguredPolicy",
    "PendingExchanges",
    "LockedAccessServerStore",
    "build_app",
]

log = structlog.get_logger("aauth.io")

TOKEN_PATH = "/token"  # noqa: S105 - a path, not a secret
PENDING_PATH = "/pending"
REVOKE_PATH = "/revoke"
BIND_PATH = "/bind"


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


@frozen(kw_only=True)
class AccessServerSettings:
    """The ``[as]`` section: ``person_servers`` it trusts, the ``resources`` it grants at
    (``[as.resources."https://…"] scopes = [...]``, optional ``revocation_endpoint``),
    ``token_lifetime`` (≤ 3600), ``window``, ``retry_after``, ``bind_person_server``."""

    person_servers: frozenset[str] = field(converter=_issuer_set)
    resources: Mapping[str, ResourceGrant]
    token_lifetime: int = 3600
    window: int = 60
    retry_after: int = 5
    bind_person_server: bool = False
    max_pending: int = 10_000

    def __attrs_post_init__(self) -> None:
        for issuer in self.person_servers:
            _check_issuer("person_servers", issuer)
        for issuer in self.resources:
            _check_issuer("resources", issuer)
        if not 0 < self.token_lifetime <= 3600:
            raise ValueError("token_lifetime: auth tokens live 1 s to 1 h")

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
        ):
            value = _int(section, name, low, high)
            if value is not None:
                options[name] = value
        bind = section.get("bind_person_server", False)
        if not isinstance(bind, bool):
            raise ValueError("bind_person_server: true or false")
        return cls(person_servers=trusted, resources=resources, bind_person_server=bind, **options)


# -- the policy -------------------------------------------------------------------------


class ConfiguredPolicy:
    """Grant the configured scopes at known resources; with ``bind_person_server``, first
    an interaction at ``/bind`` (once per Person Server). Thread-safe."""

    def __init__(
        self, settings: AccessServerSettings, issuer: str, random: Callable[[int], bytes]
    ) -> None:
        self._settings = settings
        self._bind_url = f"{issuer}{BIND_PATH}"
        self._random = random
        self._lock = threading.Lock()
        self.bound: set[str] = set()
        #: pending URL → (interaction code, the PS to bind)
        self._codes: OrderedDict[str, tuple[str, str]] = OrderedDict()

    def decide(self, request: PolicyRequest) -> Decision:
        grant = self._settings.resources.get(request.resource.iss)
        if grant is None:
            return Deny(detail=f"{request.resource.iss} is not a resource this AS serves")
        if self._settings.bind_person_server and request.pending_url is not None:
            with self._lock:
                if request.ps not in self.bound:
                    return RequireInteraction(
                        url=self._bind_url, code=self._code(request.pending_url, request.ps)
                    )
        asked = request.resource.scopes
        if not asked:
            return Grant()
        allowed = asked & grant.scopes
        if not allowed:
            return Deny(detail="none of the requested scopes is granted at this resource")
        return Grant(scope=" ".join(sorted(allowed)))

    def _code(self, pending_url: str, ps: str) -> str:
        known = self._codes.get(pending_url)
        if known is not None:
            return known[0]
        code = generate_code(self._random(bytes_needed()))
        self._codes[pending_url] = (code, ps)
        while len(self._codes) > self._settings.max_pending:
            self._codes.popitem(last=False)
        return code

    def person_server_for(self, code: str) -> str | None:
        """The PS a pending interaction ``code`` would bind (None: no such code)."""
        with self._lock:
            for known, ps in self._codes.values():
                if codes_match(known, code):
                    return ps
        return None

    def bind(self, code: str) -> str | None:
        """The person completed the interaction for ``code``: bind its PS."""
        with self._lock:
            for url, (known, ps) in list(self._codes.items()):
                if codes_match(known, code):
                    self.bound.add(ps)
                    del self._codes[url]
                    return ps
        return None


# -- state shared between requests ------------------------------------------------------------


class LockedAccessServerStore(InMemoryAccessServerStore):
    """:class:`InMemoryAccessServerStore` whose writes are serialised (worker threads)."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def apply(self, action: Action) -> bool:
        with self._lock:
            return super().apply(action)


class PendingExchanges:
    """Pending machines as snapshot JSON keyed by pending URL; bounded (oldest first out).
    :meth:`hold` serialises requests to the same pending URL."""

    def __init__(self, max_entries: int) -> None:
        self._max = max_entries
        self._lock = threading.Lock()
        self._snapshots: OrderedDict[str, str] = OrderedDict()
        self._busy: dict[str, threading.Lock] = {}

    def get(self, url: str) -> str | None:
        with self._lock:
            return self._snapshots.get(url)

    def put(self, url: str, snapshot: str) -> None:
        with self._lock:
            self._snapshots[url] = snapshot
            self._snapshots.move_to_end(url)
            while len(self._snapshots) > self._max:
                old, _ = self._snapshots.popitem(last=False)
                self._busy.pop(old, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._snapshots)

    @contextmanager
    def hold(self, url: str) -> Iterator[None]:
        with self._lock:  # a lock only for a known URL: strangers' URLs are not kept
            known = url in self._snapshots
            lock = self._busy.setdefault(url, threading.Lock()) if known else None
        if lock is None:
            yield
            return
        with lock:
            yield


# -- the app -----------------------------------------------------------------------------------


def _bind_page(issuer: str, code: str, ps: str | None, done: bool = False) -> HTMLResponse:
    title = "Bind your Person Server"
    if done:
        text = f"<p>Done: {html.escape(ps or '')} is bound at this Access Server.</p>"
    elif not code:
        text = (
            f'<form method="get" action="{BIND_PATH}"><label>Code '
            '<input name="code" autocomplete="off"></label>'
            '<button type="submit">Continue</button></form>'
        )
    elif ps is None:
        text = "<p>This code is unknown or already used.</p>"
    else:
        text = (
            f"<p>Allow <b>{html.escape(ps)}</b> to request access for you at "
            f"{html.escape(issuer)}?</p>"
            f'<form method="post" action="{BIND_PATH}">'
            f'<input type="hidden" name="code" value="{html.escape(code)}">'
            '<button type="submit">Bind</button></form>'
        )
    body = f"<!doctype html><title>{title}</title><h1>{title}</h1>{text}"
    status = 404 if code and not done and ps is None else 200
    return HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


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
    pending = PendingExchanges(settings.max_pending)
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

    def token(request: HttpRequest) -> Response:
        machine = AuthTokenExchange(config=config)
        event = TokenRequestReceived(request=request, at=context.clock(), nonce=context.random(16))
        response = run(machine, event)
        url = machine.data.pending_url
        if url is not None:
            pending.put(url, machine.snapshot().to_json())
        log.info("aauth.as.token", status=response.status_code, state=machine.state.value)
        return response

    def poll(request: HttpRequest) -> Response:
        url = request.url
        with pending.hold(url):
            text = pending.get(url)
            if text is None:
                return error_response(not_found())
            machine = AuthTokenExchange.restore(Snapshot.from_json(text), config=config)
            event = PendingRequestReceived(
                request=request, at=context.clock(), nonce=context.random(16)
            )
            response = run(machine, event)
            pending.put(url, machine.snapshot().to_json())
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

    async def bind_page(request: Request) -> Response:
        code = request.query_params.get("code", "")
        return _bind_page(issuer, code, policy.person_server_for(code) if code else None)

    async def bind(request: Request) -> Response:
        try:
            received = await from_starlette(request, origin=issuer, max_body=4096)
        except AAuthError as err:
            return error_response(err)
        form = parse_qs(received.body.decode("latin-1"))
        code = form.get("code", [""])[0]
        ps = policy.bind(code) if code else None
        if ps is not None:
            log.info("aauth.as.bound", ps=ps)
        return _bind_page(issuer, code, ps, done=ps is not None)

    routes = [
        *well_known_routes(context, DWK_ACCESS, metadata),
        Route(TOKEN_PATH, endpoint(token), methods=["POST"]),
        Route(f"{PENDING_PATH}/{{id}}", endpoint(poll), methods=["GET", "POST", "DELETE"]),
        Route(REVOKE_PATH, endpoint(revoke), methods=["POST"]),
    ]
    if settings.bind_person_server:
        routes += [
            Route(BIND_PATH, bind_page, methods=["GET"]),
            Route(BIND_PATH, bind, methods=["POST"]),
        ]
    app = Starlette(routes=routes)
    app.state.store = store
    app.state.policy = policy
    app.state.pending = pending
    return app
