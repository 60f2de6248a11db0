"""Protecting an ASGI application with AAuth: the resource machines over real HTTP.

:class:`AAuthMiddleware` wraps any ASGI app (Starlette, FastAPI). Every HTTP request is
read into core's :class:`~aauth_core.http.HttpRequest` (URL rebuilt from the resource's
own issuer, body bounded) and run through the resource machines the way
``tests/flow_world.py`` does it in memory:

- a configured route → :class:`ResourceCall`; its ``Serve`` action runs the wrapped app
  with the verified :class:`~aauth_flows.io.resource_caller.Caller` in
  ``scope["state"]["aauth"]`` and the app's answer goes back as ``Served``;
- the authorization and revocation endpoints → their machines;
- a pending URL → the pending machine restored from its snapshot in the
  :class:`~aauth_flows.io.pending_store.PendingStore` (under that record's own lock),
  saved again after the step (deferred delivery serves the held call through the app
  the same way);
  a ``GET`` poll that asked ``Prefer: wait`` (§5.9) and is still pending is held on the
  event loop until the record changes (a decision, a delivery, another poll) or
  ``min(wait, 25 s)`` passes, then polled again (:mod:`~aauth_flows.io.long_poll`), and
  any ``202`` to a request that asked ``Prefer: wait`` says ``Retry-After: 0``;
- the interaction page → a signed-in person presents the code and decides
  (``CodePresented`` → ``ShowConsent`` → ``UserDecided``); see :class:`AAuthResource`
  for who may (§8: the code never authorizes);
- ``/.well-known/aauth-resource.json`` and the JWKS are served directly;
- paths listed in :attr:`AAuthResource.public` go to the app untouched (no caller).

An API call runs on the event loop when nothing in it can block: every signer is a
software key and keys come from a static set or from the discovery cache (a key not
cached yet raises :class:`~aauth_flows.io.discovery.WouldBlock` and the call starts over
in a worker thread). Everything else (pending URLs, the endpoints, hardware keys, other
resolvers) runs its machine in a worker thread, and the app on the event loop
(``anyio.from_thread.run``). The hop there and back costs several times a signature
check (docs/benchmarks.md), which is why the common call avoids it. With a
:class:`~aauth_flows.io.replay.ReplayCache`, a verified state-changing call (any method
but GET, HEAD and OPTIONS, as the spec's checklist scopes it) whose ``(key, created,
method, authority, path, signature)`` was already served inside the signature window is
refused (401 ``invalid_signature``) before the app runs. Any failure becomes problem JSON: an
:class:`AAuthError` with its own status, anything else a logged 500, and the server
keeps serving.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from functools import partial
from typing import Any, Protocol
from urllib.parse import quote, unquote, urlsplit

import anyio
import anyio.from_thread
import anyio.to_thread
import structlog
from attrs import Factory, define, evolve, field, frozen
from starlette.requests import Request
from starlette.responses import Response

from aauth_backends.software import SoftwareSignerBase
from aauth_core.errors import AAuthError, SignatureFailure
from aauth_core.http import HttpRequest, HttpResponse
from aauth_core.httpsig.verify import read_signature
from aauth_core.metadata import ResourceMetadata
from aauth_core.signer import Signer
from aauth_core.tokens.verify import KeyResolver, StaticKeyResolver
from aauth_flows.io.discovery import Discovery, WouldBlock
from aauth_flows.io.forms import (
    FailureLimiter,
    FormError,
    csrf_ok,
    csrf_token,
    local_next,
    read_form,
    see_other,
)
from aauth_flows.io.long_poll import ChangeCounter, answer_poll, poll_now
from aauth_flows.io.messages import error_response, from_starlette, to_starlette
from aauth_flows.io.pending_store import (
    CODE_INDEX,
    MemoryPendingStore,
    PendingStore,
    code_key_of,
)
from aauth_flows.io.replay import ReplayCache, replay_key
from aauth_flows.io.resource_caller import STATE_KEY, Caller, aauth_caller, caller_of
from aauth_flows.io.resource_page import PAGE_HEADERS, code_form, consent_form, outcome_page
from aauth_flows.io.runner import run_machine
from aauth_flows.machines.engine import Action, Event, Machine, Snapshot
from aauth_flows.machines.resource import (
    RANDOM_BYTES,
    AccessMode,
    AuthorizationEndpoint,
    CodePresented,
    DeferredDelivery,
    MemoryResourceStore,
    OpenPending,
    PendingInteraction,
    PendingState,
    Policy,
    RequestReceived,
    ResourceCall,
    ResourceConfig,
    RevocationEndpoint,
    Route,
    Serve,
    Served,
    ShowConsent,
    UserDecided,
)
from aauth_flows.machines.resource_pending import not_found as pending_not_found
from aauth_flows.machines.signing import SigningKey
from aauth_flows.machines.wire import MAX_BODY, json_bytes, problem_response

__all__ = [
    "Caller",
    "aauth_caller",
    "caller_of",
    "ResourceStore",
    "AAuthResource",
    "AAuthMiddleware",
    "PersonHook",
    "BROWSER_COOKIE",
]

log = structlog.get_logger("aauth.io")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_PENDING_MACHINES: dict[str, type[PendingInteraction] | type[DeferredDelivery]] = {
    "PendingInteraction": PendingInteraction,
    "DeferredDelivery": DeferredDelivery,
}
_MAX_FORM = 4096
_MAX_CODE = 64
_MAX_CLAIMS = 10_000
#: how long a pending record is kept past its expiry (a late poll gets 408/410, not 404)
_GRACE = 3600
#: the interaction page's browser binding for its form tokens (``__Host-``: this origin only)
BROWSER_COOKIE = "__Host-aauth-interaction"
_UNKNOWN_CODE = "Unknown or expired code."

#: the host application's own authentication: the signed-in person's id, or None. Called
#: on the event loop for every request to the interaction page: it must not block.
PersonHook = Callable[[Request], str | None]


class ResourceStore(Protocol):
    """The resource's revocations and sessions: it takes their record actions (a
    :class:`MemoryResourceStore`, whose lookups also serve the config's ``revocations``
    and ``sessions``). Pending records go to :attr:`AAuthResource.pending` instead."""

    def apply(self, action: Any) -> bool: ...


def _now() -> int:
    return int(time.time())


def _path(url: str) -> str:
    return urlsplit(url).path or "/"


def _same_origin_path(url: str | None, issuer: str) -> str | None:
    """The path of ``url`` when it is on ``issuer``'s origin (else not served here)."""
    if not url:
        return None
    parts = urlsplit(url)
    return parts.path if f"{parts.scheme}://{parts.netloc}" == issuer else None


#: requests that change nothing: a repeat is harmless, and Ed25519 signs the same
#: message the same way, so two honest GETs in one second would look like a replay
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class _Refused(Exception):
    """Raised from an action hook to answer at once (a replayed request)."""

    def __init__(self, response: HttpResponse) -> None:
        super().__init__("refused")
        self.response = response


@frozen(kw_only=True)
class _Handled:
    """A machine's answer; for a pending URL also the record's change stamp right after
    this step (what a held poll waits to see move)."""

    response: HttpResponse
    pending_id: str | None = None
    stamp: int = 0


def _crash_response() -> HttpResponse:
    return problem_response(AAuthError("internal error", code="server_error", status=500))


def _json(body: Mapping[str, Any], *, max_age: int = 300) -> Response:
    return Response(
        json_bytes(body),
        media_type="application/json",
        headers={"Cache-Control": f"public, max-age={max_age}"},
    )


def _inline_config(config: ResourceConfig, signers: Mapping[str, Signer]) -> ResourceConfig | None:
    """The config for calls run on the event loop, when nothing in them can block: every
    signer is a software key (microseconds) and keys come from a static set or from a
    :class:`Discovery` cache read without fetching (:class:`WouldBlock` sends the call to a
    worker thread instead). None: always use the worker thread (PKCS#11 keys, other
    resolvers)."""
    if not all(isinstance(signer, SoftwareSignerBase) for signer in signers.values()):
        return None
    keys = config.keys
    if isinstance(keys, StaticKeyResolver):
        return config
    if isinstance(keys, Discovery):
        return evolve(config, keys=keys.without_fetching())
    return None


@define
class AAuthResource:
    """One resource identity: its machines' configuration, store, keys and pages.

    ``signers`` maps the config's ``signing_key.ref`` to the signer of resource tokens;
    ``public`` lists path prefixes the app serves without AAuth (health checks, docs);
    every other path is a configured route or answered 404 by the resource.

    The interaction page (resource-managed access, or a policy that asks for interaction)
    takes decisions from a signed-in person only (§8: the code correlates, it never
    authorizes). ``person`` is the host application's own authentication: it returns the
    signed-in person's id for a request, or None. Without a person the page redirects
    (303) to ``login_url?next=<the page with its code>`` (a path on this origin), or
    answers 401 when there is no ``login_url``. Who may decide: the first signed-in
    person who opens the request with its code claims it; to everyone else the code is
    "unknown or expired", like any wrong code. A person gets ``code_attempts`` wrong
    codes per ``code_window`` seconds, then 429. The decision is posted with a form token
    (HMAC of the person, a ``__Host-`` browser cookie and the pending request) and logged
    with the person's id (``aauth.io.resource.interaction_decided``).

    Building a resource with resource-managed routes and no ``person`` raises ValueError
    unless ``allow_unauthenticated_interaction=True``: then anyone holding a code may
    approve (the code becomes a bearer credential), which a warning says once at
    construction (``aauth.io.resource.unauthenticated_interaction``); form tokens still
    apply, and the wrong-code limit is shared by every visitor. Tests and demos only."""

    config: ResourceConfig
    store: ResourceStore
    signers: Mapping[str, Signer]
    metadata: ResourceMetadata
    clock: Callable[[], int] = _now
    random: Callable[[int], bytes] = os.urandom
    replay: ReplayCache | None = None
    public: tuple[str, ...] = ()
    max_body: int = MAX_BODY
    person: PersonHook | None = None
    login_url: str | None = None
    allow_unauthenticated_interaction: bool = False
    code_attempts: int = 5
    code_window: int = 600
    #: pending machines' snapshots by pending id (with the interaction code index)
    pending: PendingStore = field(
        default=Factory(lambda self: MemoryPendingStore(clock=self.clock), takes_self=True)
    )
    _claims: dict[str, str] = field(factory=dict, init=False, repr=False)
    _claims_lock: threading.Lock = field(factory=threading.Lock, init=False, repr=False)
    _changes: ChangeCounter = field(factory=ChangeCounter, init=False, repr=False)
    _csrf_key: bytes = field(factory=lambda: secrets.token_bytes(32), init=False, repr=False)
    _limiter: FailureLimiter = field(init=False, repr=False)
    #: the config a call may run with on the event loop (keys that never block), or None
    _inline: ResourceConfig | None = field(default=None, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if str(self.metadata.issuer) != self.config.issuer:
            raise ValueError("the metadata and the config name different issuers")
        if self.config.signing_key.ref not in self.signers:
            raise ValueError(f"no signer for the resource key {self.config.signing_key.ref!r}")
        if self.login_url is not None and local_next(self.login_url, "") != self.login_url:
            raise ValueError("login_url must be a path on the resource's own origin")
        self._limiter = FailureLimiter(limit=self.code_attempts, window=self.code_window)
        self._inline = _inline_config(self.config, self.signers)
        if self.person is not None:
            if self.allow_unauthenticated_interaction:
                raise ValueError("a person hook and allow_unauthenticated_interaction exclude")
            return
        if self.allow_unauthenticated_interaction:
            log.warning("aauth.io.resource.unauthenticated_interaction", issuer=self.issuer)
        elif any(r.mode is AccessMode.RESOURCE_MANAGED for r in self.config.routes):
            raise ValueError(
                "resource-managed routes need a person hook (the host's sign-in) for the "
                "interaction page; allow_unauthenticated_interaction=True lets any code "
                "holder approve (tests and demos only)"
            )

    @classmethod
    def build(
        cls,
        *,
        issuer: str,
        signer: Signer,
        keys: KeyResolver,
        routes: tuple[Route, ...],
        scope_descriptions: Mapping[str, str] | None = None,
        access_server: str | None = None,
        policy: Policy | None = None,
        replay: ReplayCache | None = None,
        public: tuple[str, ...] = (),
        clock: Callable[[], int] = _now,
        random: Callable[[int], bytes] = os.urandom,
        key_ref: str = "resource",
        store: MemoryResourceStore | None = None,
        pending: PendingStore | None = None,
        max_body: int = MAX_BODY,
        person: PersonHook | None = None,
        login_url: str | None = None,
        allow_unauthenticated_interaction: bool = False,
        code_attempts: int = 5,
        **config: Any,
    ) -> AAuthResource:
        """A resource with the usual layout: ``/jwks``, ``/authorize``, ``/revoke``,
        ``/pending/<id>``, ``/interaction`` and in-memory stores (``store`` for
        revocations and sessions, ``pending`` for pending records). ``config`` passes
        further :class:`ResourceConfig` fields (``window``, lifetimes, ...); ``person``,
        ``login_url``, ``allow_unauthenticated_interaction`` and ``code_attempts`` are the
        interaction page's (see the class)."""
        store = MemoryResourceStore() if store is None else store
        descriptions = dict(scope_descriptions or {})
        # routes and scopes go through attrs converters mypy cannot type: pass them as Any
        options: dict[str, Any] = dict(config, routes=routes, scope_descriptions=set(descriptions))
        if policy is not None:
            options["policy"] = policy
        resource_config = ResourceConfig(
            issuer=issuer,
            signing_key=SigningKey(ref=key_ref, public_jwk=signer.public_jwk()),
            keys=keys,
            revocations=store,
            sessions=store,
            interaction_url=f"{issuer}/interaction",
            pending_base=f"{issuer}/pending/",
            access_server=access_server,
            **options,
        )
        document: dict[str, Any] = {
            "issuer": issuer,
            "jwks_uri": f"{issuer}/jwks",
            "authorization_endpoint": f"{issuer}/authorize",
            "revocation_endpoint": f"{issuer}/revoke",
            "signature_window": resource_config.window,
        }
        if descriptions:
            document["scope_descriptions"] = descriptions
        extra: dict[str, Any] = {} if pending is None else {"pending": pending}
        return cls(
            config=resource_config,
            store=store,
            signers={key_ref: signer},
            metadata=ResourceMetadata.from_dict(document, expected_issuer=issuer),
            clock=clock,
            random=random,
            replay=replay,
            public=public,
            max_body=max_body,
            person=person,
            login_url=login_url,
            allow_unauthenticated_interaction=allow_unauthenticated_interaction,
            code_attempts=code_attempts,
            **extra,
        )

    @property
    def issuer(self) -> str:
        return self.config.issuer

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.config.signing_key.public_jwk.to_dict()]}

    # -- paths ---------------------------------------------------------------------------

    @property
    def interaction_path(self) -> str | None:
        return _same_origin_path(self.config.interaction_url, self.issuer)

    @property
    def jwks_path(self) -> str | None:
        return _same_origin_path(self.metadata.jwks_uri, self.issuer)

    def is_public(self, path: str) -> bool:
        return any(path == p or path.startswith(p.rstrip("/") + "/") for p in self.public)

    # -- the machines (called in a worker thread) -----------------------------------------

    def version(self, pending_id: str) -> int:
        """The change stamp of a pending record (0: never changed or forgotten); it moves
        whenever the record is saved (a poll, a decision, a delivery, a cancel)."""
        return self._changes.version(pending_id)

    def handle_tracked(
        self, request: HttpRequest, serve: Callable[[Serve], HttpResponse]
    ) -> _Handled:
        """Run ``request`` through the machine its path names (``serve`` runs the app for a
        ``Serve`` action; blocking: from a worker thread it calls into the event loop), and
        for a pending URL the record's change stamp taken under the record's lock right
        after the step (so no later change can be missed)."""
        config = self.config
        path = _path(request.url)
        event = RequestReceived(request=request, at=self.clock(), random=self.random(RANDOM_BYTES))
        pending_path = _path(config.pending_base)
        try:
            if path.startswith(pending_path):
                return self._pending(path.removeprefix(pending_path), event, serve)
            if path == _same_origin_path(self.metadata.authorization_endpoint, self.issuer):
                machine: Machine[Any, Any] = AuthorizationEndpoint(config=config)
                return _Handled(response=self._run(machine, event, None))
            if path == _same_origin_path(self.metadata.revocation_endpoint, self.issuer):
                return _Handled(response=self._run(RevocationEndpoint(config=config), event, None))
            call = ResourceCall(config=config)
            return _Handled(response=self._run(call, event, self._serving(serve, True)))
        except _Refused as refused:
            return _Handled(response=refused.response)

    def is_api_call(self, path: str) -> bool:
        """A path the :class:`ResourceCall` machine answers (not a pending URL or one of
        the resource's own endpoints)."""
        return not (
            path.startswith(_path(self.config.pending_base))
            or path == _same_origin_path(self.metadata.authorization_endpoint, self.issuer)
            or path == _same_origin_path(self.metadata.revocation_endpoint, self.issuer)
        )

    def start_call(self, request: HttpRequest) -> tuple[ResourceCall, HttpResponse | Serve]:
        """Run an API call on the caller's thread up to the app: the answer, or the
        ``Serve`` to run (then :meth:`finish_call`). Raises :class:`WouldBlock` when a
        key is not cached (run :meth:`handle_tracked` in a worker thread instead)."""
        if self._inline is None:
            raise WouldBlock("this resource's keys or signers may block")
        machine = ResourceCall(config=self._inline)
        event = RequestReceived(request=request, at=self.clock(), random=self.random(RANDOM_BYTES))
        served: list[Serve] = []

        def hook(action: Action) -> bool | None:
            if not isinstance(action, Serve):
                return None
            self._check_replay(action)
            served.append(action)
            return True  # the app runs on the loop; Served comes back in finish_call

        try:
            result = run_machine(
                machine,
                event,
                signers=self.signers,
                http=None,
                clock=self.clock,
                store=self,
                on_action=hook,
            )
        except _Refused as refused:
            return machine, refused.response
        if served:
            return machine, served[0]
        if result.response is None:
            raise RuntimeError("ResourceCall gave no answer")
        return machine, result.response

    def finish_call(self, machine: ResourceCall, response: HttpResponse) -> HttpResponse:
        """Feed the app's answer to a call :meth:`start_call` paused at ``Serve``."""
        return self._run(machine, Served(response=response, at=self.clock()), None)

    def _serving(
        self, serve: Callable[[Serve], HttpResponse], check_replay: bool
    ) -> Callable[[Action], Event | bool | None]:
        def hook(action: Action) -> Event | bool | None:
            if not isinstance(action, Serve):
                return None
            if check_replay:
                self._check_replay(action)
            return Served(response=serve(action), at=self.clock())

        return hook

    def _check_replay(self, action: Serve) -> None:
        if self.replay is None:
            return
        request = action.request
        if request.method.upper() in _SAFE_METHODS:
            return
        selected = read_signature(action.request.headers)
        created = selected.input.params.created
        if created is None:  # the verifier already required it
            return
        parts = urlsplit(request.url)
        key = replay_key(
            action.principal.key_thumbprint,
            created,
            request.method.upper(),
            parts.netloc,
            parts.path or "/",
            selected.signature,
        )
        if not self.replay.check_and_add(key, created + self.config.window, now=self.clock()):
            log.warning("aauth.io.replay_refused", path=parts.path, method=request.method)
            error = SignatureFailure("replayed request: this signature was already accepted")
            raise _Refused(problem_response(error))

    def _run(
        self,
        machine: Machine[Any, Any],
        event: Event,
        hook: Callable[[Action], Event | bool | None] | None,
    ) -> HttpResponse:
        result = run_machine(
            machine,
            event,
            signers=self.signers,
            http=None,
            clock=self.clock,
            store=self,
            on_action=hook,
        )
        for action in result.later:
            log.warning("aauth.io.resource_unhandled_action", action=type(action).__name__)
        if result.response is None:
            raise RuntimeError(f"{type(machine).__name__} gave no answer")
        return result.response

    # -- pending records -------------------------------------------------------------------

    def apply(self, action: Any) -> bool:
        """The record store the machines write to: a new pending record goes to
        :attr:`pending`, revocations and sessions to :attr:`store`."""
        if isinstance(action, OpenPending):
            machine = _PENDING_MACHINES[action.snapshot.machine].restore(
                action.snapshot, config=self.config
            )
            self._save(action.pending_id, machine, code=action.code)
            return True
        return self.store.apply(action)

    def _save(self, pending_id: str, machine: Machine[Any, Any], *, code: str | None) -> None:
        expires: int = machine.data.expires_at
        key = code_key_of(code) if code is not None else None
        self.pending.put(
            pending_id,
            machine.snapshot().to_json(),
            expires_at=expires + _GRACE,
            indexes={} if key is None else {CODE_INDEX: key},
            index_expires_at=expires,
        )

    def _restore(self, pending_id: str) -> PendingInteraction | DeferredDelivery | None:
        text = self.pending.get(pending_id)
        if text is None:
            return None
        snapshot = Snapshot.from_json(text)
        return _PENDING_MACHINES[snapshot.machine].restore(snapshot, config=self.config)

    def _pending(
        self, pending_id: str, event: RequestReceived, serve: Callable[[Serve], HttpResponse]
    ) -> _Handled:
        if not pending_id or "/" in pending_id:
            return _Handled(response=pending_not_found())
        with self.pending.lock(pending_id):
            machine = self._restore(pending_id)
            if machine is None:
                return _Handled(response=pending_not_found())
            # saved only after a clean step: a crash (say, in the app serving the held
            # call) leaves the record as it was, and the next poll tries again
            answer = self._run(machine, event, self._serving(serve, False))
            self._save(pending_id, machine, code=getattr(machine.data, "code", None))
            stamp = self._changes.changed(pending_id)
            return _Handled(response=answer, pending_id=pending_id, stamp=stamp)

    def _interaction_for(self, code: str) -> str | None:
        key = code_key_of(code)
        return None if key is None else self.pending.find(CODE_INDEX, key)

    # -- the interaction page --------------------------------------------------------------

    def signed_in(self, request: Request) -> str | None:
        """The person deciding on the interaction page: the hook's answer, or ``""``
        (anyone) in the unauthenticated mode, or None (nobody signed in)."""
        if self.person is None:
            return "" if self.allow_unauthenticated_interaction else None
        return self.person(request) or None

    def code_blocked(self, person: str) -> bool:
        return self._limiter.blocked(person)

    def wrong_code(self, person: str) -> None:
        self._limiter.fail(person)
        log.info("aauth.io.resource.wrong_code", issuer=self.issuer, person=person)

    def form_token(self, person: str, browser: str, pending_id: str) -> str:
        return csrf_token(self._csrf_key, "interaction", person, browser, pending_id)

    def form_token_ok(self, token: object, person: str, browser: str, pending_id: str) -> bool:
        return csrf_ok(self._csrf_key, token, "interaction", person, browser, pending_id)

    def open_request(self, code: str, person: str) -> tuple[str, str | None, str | None] | None:
        """``(pending_id, agent, scope)`` of the open pending request ``code`` belongs to,
        claimed for ``person`` (None: unknown, used, expired, or another person's)."""
        pending_id = self._interaction_for(code)
        if pending_id is None:
            return None
        with self.pending.lock(pending_id):
            machine = self._restore(pending_id)
            if not isinstance(machine, PendingInteraction):
                return None
            data = machine.data
            if machine.state is not PendingState.CREATED or data.expires_at <= self.clock():
                return None
            with self._claims_lock:
                owner = self._claims.setdefault(pending_id, person)
                if owner != person:
                    return None
                while len(self._claims) > _MAX_CLAIMS:
                    del self._claims[next(iter(self._claims))]
            return (pending_id, data.agent, data.scope)

    def decide(self, code: str, approved: bool, *, person: str = "") -> HttpResponse | None:
        """``person`` presented ``code`` and decided: None when the decision was taken,
        else the machine's refusal (unknown, used or expired code). The machine's
        :class:`UserDecided` has no person: the decision is logged with it here."""
        pending_id = self._interaction_for(code)
        if pending_id is None:
            return pending_not_found()
        with self.pending.lock(pending_id):
            machine = self._restore(pending_id)
            if not isinstance(machine, PendingInteraction):
                return pending_not_found()
            shown: list[ShowConsent] = []

            def consent(action: Action) -> Event | bool | None:
                if isinstance(action, ShowConsent):
                    shown.append(action)
                    return UserDecided(approved=approved, at=self.clock())
                return None

            result = run_machine(
                machine,
                CodePresented(code=code, at=self.clock()),
                signers=self.signers,
                http=None,
                clock=self.clock,
                store=self,
                on_action=consent,
            )
            self._save(pending_id, machine, code=machine.data.code)
            self._changes.changed(pending_id)  # wakes the agent's held poll
            with self._claims_lock:
                self._claims.pop(pending_id, None)
        if shown:
            log.info(
                "aauth.io.resource.interaction_decided",
                issuer=self.issuer,
                person=person or None,
                agent=shown[0].agent,
                scope=shown[0].scope,
                approved=approved,
            )
        return result.response


class AAuthMiddleware:
    """ASGI middleware: ``AAuthMiddleware(app, resource=AAuthResource(...))`` (or
    ``app.add_middleware(AAuthMiddleware, resource=...)`` in FastAPI)."""

    def __init__(self, app: ASGIApp, *, resource: AAuthResource, workers: int = 16) -> None:
        self.app = app
        self.resource = resource
        # The machines' worker threads wait on the app while it runs; they take their own
        # limiter so a sync handler (run in the default thread pool) always finds a thread.
        self._workers = anyio.CapacityLimiter(workers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan" or (kind != "http" and self.resource.is_public(scope["path"])):
            await self.app(scope, receive, send)
            return
        if kind != "http":  # websockets are not AAuth-signed: refuse unless public
            await send({"type": "websocket.close", "code": 1008})
            return
        if self.resource.is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        try:
            response = await self._answer(scope, receive)
        except AAuthError as err:
            response = error_response(err)
        except Exception:
            log.exception("aauth.io.resource_crashed", path=scope.get("path"))
            response = to_starlette(_crash_response())
        await response(scope, receive, send)

    async def _answer(self, scope: Scope, receive: Receive) -> Response:
        resource = self.resource
        path: str = scope["path"]
        method: str = scope["method"]
        if method == "GET" and path == "/.well-known/aauth-resource.json":
            return _json(resource.metadata.to_dict())
        if method == "GET" and path == resource.jwks_path:
            return _json(resource.jwks())
        if path == resource.interaction_path:
            return await self._interaction(scope, receive)
        request = await from_starlette(
            Request(scope, receive), origin=resource.issuer, max_body=resource.max_body
        )
        if resource.is_api_call(_path(request.url)):
            inline = await self._inline_call(scope, receive, request)
            if inline is not None:
                return to_starlette(poll_now(request, inline))

        def serve(action: Serve) -> HttpResponse:
            return anyio.from_thread.run(self._call_app, scope, receive, action)

        async def step() -> _Handled:
            return await anyio.to_thread.run_sync(
                resource.handle_tracked, request, serve, limiter=self._workers
            )

        handled = await step()
        pending_id = handled.pending_id
        if pending_id is None:  # not a poll: nothing to hold, Retry-After: 0 if asked
            return to_starlette(poll_now(request, handled.response))

        async def repoll() -> HttpResponse:
            return (await step()).response

        answer = await answer_poll(
            request,
            handled.response,
            seen=handled.stamp,
            version=lambda: resource.version(pending_id),
            repoll=repoll,
        )
        return to_starlette(answer)

    async def _inline_call(
        self, scope: Scope, receive: Receive, request: HttpRequest
    ) -> HttpResponse | None:
        """The common call without leaving the event loop: verification from cached keys
        and software signing take microseconds, where a hop to a worker thread and back
        for the app costs several times that (docs/benchmarks.md). None: it needs the
        network or a slow key, and the worker-thread path takes it from the start."""
        try:
            machine, outcome = self.resource.start_call(request)
        except WouldBlock:
            return None
        if isinstance(outcome, HttpResponse):
            return outcome
        answer = await self._call_app(scope, receive, outcome)
        return self.resource.finish_call(machine, answer)

    # -- the app, for a Serve action --------------------------------------------------------

    async def _call_app(self, base: Scope, receive: Receive, action: Serve) -> HttpResponse:
        request = action.request
        parts = urlsplit(request.url)
        scope = dict(base)
        scope.update(
            method=request.method,
            path=unquote(parts.path),
            raw_path=parts.path.encode("latin-1"),
            query_string=parts.query.encode("latin-1"),
            headers=[
                (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in request.headers.pairs
            ],
        )
        state = dict(base.get("state") or {})
        state[STATE_KEY] = Caller.of(action.principal)
        scope["state"] = state
        delivered = False

        async def app_receive() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": request.body, "more_body": False}
            return await receive()

        started: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def app_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                started["status"] = message["status"]
                started["headers"] = message.get("headers", [])
            elif message["type"] == "http.response.body":
                chunks.append(bytes(message.get("body", b"")))

        await self.app(scope, app_receive, app_send)
        if "status" not in started:
            raise RuntimeError("the application sent no response")
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in started["headers"]
            if k.lower() not in (b"content-length", b"transfer-encoding")
        ]
        return HttpResponse(status=started["status"], headers=headers, body=b"".join(chunks))

    # -- the interaction page ---------------------------------------------------------------

    async def _interaction(self, scope: Scope, receive: Receive) -> Response:
        resource = self.resource
        method = scope["method"]
        if method not in ("GET", "POST"):
            return Response(status_code=405, headers={"Allow": "GET, POST"})
        request = Request(scope, receive)
        form: dict[str, str] = {}
        if method == "POST":
            if _cross_site(scope, resource.issuer):
                # a decision is only taken from the page itself (no cross-site form posts)
                return outcome_page("Not accepted", "Decide on the resource's own page.", 403)
            try:
                form = await read_form(request, max_bytes=_MAX_FORM)
            except FormError as err:
                return outcome_page("Bad request", err.detail, err.status)
            code = form.get("code", "")
        else:
            code = request.query_params.get("code", "")
        code = code.strip()[:_MAX_CODE]
        person = resource.signed_in(request)
        if person is None:
            return self._sign_in(code)
        page = resource.interaction_path or "/"
        if not code:
            return code_form(page, resource.issuer, person=person)
        if method == "POST" and "decision" not in form:
            return see_other(f"{page}?code={quote(code, safe='')}", PAGE_HEADERS)
        if resource.code_blocked(person):
            return outcome_page("Too many codes", "Too many wrong codes: try again later.", 429)
        found = await anyio.to_thread.run_sync(
            resource.open_request, code, person, limiter=self._workers
        )
        if found is None:
            resource.wrong_code(person)
            return code_form(page, resource.issuer, person=person, error=_UNKNOWN_CODE, status=404)
        pending_id, agent, scope_asked = found
        browser = request.cookies.get(BROWSER_COOKIE, "")
        if method == "GET":
            fresh = not (16 <= len(browser) <= 64)
            if fresh:
                browser = secrets.token_urlsafe(24)
            shown = consent_form(
                page,
                resource.issuer,
                code=code,
                csrf=resource.form_token(person, browser, pending_id),
                person=person,
                agent=agent,
                scope=scope_asked,
                descriptions=resource.metadata.scope_descriptions,
            )
            if fresh:
                shown.set_cookie(
                    BROWSER_COOKIE, browser, path="/", secure=True, httponly=True, samesite="lax"
                )
            return shown
        decision = form.get("decision")
        if decision not in ("approve", "deny"):
            return outcome_page("Bad request", "Choose Approve or Deny.", 400)
        if not browser or not resource.form_token_ok(form.get("csrf"), person, browser, pending_id):
            return outcome_page("Form expired", "Reload the page and try again.", 403)
        refused = await anyio.to_thread.run_sync(
            partial(resource.decide, code, decision == "approve", person=person),
            limiter=self._workers,
        )
        if refused is not None:  # decided or expired in between: same answer as a wrong code
            return outcome_page("Not accepted", _UNKNOWN_CODE, 404)
        if decision == "approve":
            return outcome_page("Approved", "You can return to your agent.")
        return outcome_page("Denied", "The agent's request was denied.")

    def _sign_in(self, code: str) -> Response:
        resource = self.resource
        if resource.person is None:  # neither a hook nor the unsafe mode: a policy sent us
            log.error("aauth.io.resource.interaction_without_sign_in", issuer=resource.issuer)
            return outcome_page("Unavailable", "This resource cannot take decisions here.", 503)
        page = resource.interaction_path or "/"
        target = f"{page}?code={quote(code, safe='')}" if code else page
        if resource.login_url is None:
            return outcome_page("Sign in first", f"Sign in to {resource.issuer} first.", 401)
        glue = "&" if "?" in resource.login_url else "?"
        return see_other(f"{resource.login_url}{glue}next={quote(target, safe='')}", PAGE_HEADERS)


def _cross_site(scope: Scope, issuer: str) -> bool:
    headers = {k.lower(): v for k, v in scope.get("headers", [])}
    origin = headers.get(b"origin")
    if origin is not None and origin.decode("latin-1") != issuer:
        return True
    return headers.get(b"sec-fetch-site") in (b"cross-site", b"same-site")
