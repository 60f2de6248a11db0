"""Driving the Person Server machines with real I/O (the synchronous half of the server).

Everything here blocks (key resolution, signing, outbound requests, the per-record lock),
so the Starlette routes call it in a worker thread. It does over real HTTP what
``tests/flow_world.py`` does in memory: a request at an endpoint runs a fresh machine; a
request at a pending URL, the person's code, decision or question, her return from a
resource's own interaction and every federation event restore the machine from its stored
snapshot under that record's lock, run it through :func:`~aauth_flows.io.runner.run_machine`
and store the new snapshot. ``Federate`` starts a background federation once the record is
stored; ``FederationAnswer`` reaches the running one.
"""

from __future__ import annotations

import threading
from typing import Any

import structlog
from attrs import define, field

from aauth_core.errors import AAuthError
from aauth_core.http import HttpRequest, HttpResponse
from aauth_core.interaction import normalize_code
from aauth_flows.io.discovery import Discovery
from aauth_flows.io.long_poll import ChangeCounter
from aauth_flows.io.pending_store import (
    CALLBACK_INDEX,
    CODE_INDEX,
    MemoryPendingStore,
    PendingStore,
    code_key,
)
from aauth_flows.io.runner import run_machine
from aauth_flows.io.servers.context import ServerContext
from aauth_flows.io.servers.ps_federation import FederationWorkers
from aauth_flows.io.servers.ps_settings import PersonServerSettings
from aauth_flows.machines.actions import Wait
from aauth_flows.machines.engine import Action, Event, Machine, Snapshot
from aauth_flows.machines.federation import AccessServerEndpoint, FederationClientConfig
from aauth_flows.machines.federation_api import Federate, FederationAnswer
from aauth_flows.machines.person_server import (
    RANDOM_BYTES,
    AuthTokenMachine,
    CodeRefused,
    ConsentMode,
    ConsentPrompt,
    DecisionRefused,
    InMemoryPsStore,
    PendingRequest,
    PersonServerConfig,
    PersonTokenMachine,
    RedirectPerson,
    RequestArrived,
    RevocationMachine,
    TokenRequestState,
)
from aauth_flows.machines.person_server import not_found as pending_not_found
from aauth_flows.machines.ps_prompts import consent_prompt

__all__ = ["PersonServer", "PersonOutcome", "MACHINES"]

log = structlog.get_logger("aauth.io")

MACHINES: dict[str, type[Any]] = {
    "PersonTokenMachine": PersonTokenMachine,
    "AuthTokenMachine": AuthTokenMachine,
    "RevocationMachine": RevocationMachine,
}
#: states after which a machine has nothing left to store
_UNSTORED = ("ANSWERED", "REJECTED", "RECEIVED")
#: how long a record is kept past its pending lifetime (late polls get 410, not 404)
_GRACE = 3600


@define
class PersonOutcome:
    """What one person-side event led to (for the page the browser gets next)."""

    state: str = ""
    prompts: list[ConsentPrompt] = field(factory=list)
    refused_code: AAuthError | None = None
    refused_decision: str | None = None
    redirect: str | None = None


class _LockedStore:
    """The PS store's writer, serialised (requests and federation workers write at once)."""

    def __init__(self, store: InMemoryPsStore) -> None:
        self._store = store
        self._lock = threading.Lock()

    def apply(self, action: Any) -> bool:
        with self._lock:
            return self._store.apply(action)


class PersonServer:
    """One PS: its machines' configuration, stores, pending records and federations."""

    def __init__(
        self,
        context: ServerContext,
        settings: PersonServerSettings,
        *,
        pending: PendingStore | None = None,
        store: InMemoryPsStore | None = None,
    ) -> None:
        issuer = context.issuer
        self.context = context
        self.settings = settings
        self.store = store if store is not None else InMemoryPsStore()
        self.store.revocation_issuers.update(settings.revocation_issuers)
        self.store.revocation_endpoints.update(settings.revocation_endpoints)
        if settings.consent_mode == "approval":
            self.store.reachable.update(settings.people)
        self._writer = _LockedStore(self.store)
        #: pending machines' snapshots by pending URL (indexed by code hash and callback)
        self.records: PendingStore = (
            pending if pending is not None else MemoryPendingStore(clock=context.clock)
        )
        #: what the person's pages look up (a code, a callback URL → the pending URL)
        self.config = PersonServerConfig(
            issuer=issuer,
            signing_key=context.signing_key,
            keys=context.keys,
            store=self.store,
            sub_secret=settings.sub_secret,
            pending_base=f"{issuer}/pending/",
            interaction_url=f"{issuer}/interaction",
            callback_base=f"{issuer}/callback/",
            pending_lifetime=settings.pending_lifetime,
            max_body=settings.max_body,
            token_exchange=settings.token_exchange,
        )
        self.endpoints = {
            f"{issuer}/person-token": PersonTokenMachine,
            f"{issuer}/auth-token": AuthTokenMachine,
            f"{issuer}/revoke": RevocationMachine,
        }
        #: pending URL → the person asked through the PS's own channel (approval mode)
        self.approvals: dict[str, str] = {}
        self._changes = ChangeCounter()  # pending URL → change stamp (held polls)
        #: peer metadata (an AS to federate with, a resource's scope descriptions): the
        #: key resolver when it is a Discovery, else one of our own over the same client
        self.discovery = (
            context.keys if isinstance(context.keys, Discovery) else Discovery(context.http)
        )
        self.federation = FederationWorkers(
            config=FederationClientConfig(
                issuer=issuer, signing_key=context.signing_key, as_keys=context.keys
            ),
            signers=context.signers,
            http=context.http,
            clock=context.clock,
            deliver=self.deliver,
            endpoint=self.access_server,
            settle_payments=settings.settle_payments,
        )

    # -- metadata ---------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        issuer = self.context.issuer
        document: dict[str, Any] = {
            "issuer": issuer,
            "jwks_uri": f"{issuer}/jwks",
            "person_token_endpoint": f"{issuer}/person-token",
            "auth_token_endpoint": f"{issuer}/auth-token",
            "revocation_endpoint": f"{issuer}/revoke",
        }
        # No ``interaction_endpoint``: that is §5.7's agent-facing relay API, which this
        # PS does not offer; ``/interaction`` is the person's own page (code entry).
        if self.settings.scopes_supported:
            document["scopes_supported"] = list(self.settings.scopes_supported)
        return document

    # -- running machines -------------------------------------------------------------

    def _run(
        self, machine: Machine[Any, Any], event: Event
    ) -> tuple[HttpResponse | None, list[Action]]:
        taken: list[Action] = []

        def hook(action: Action) -> bool:
            if isinstance(
                action,
                ConsentPrompt
                | CodeRefused
                | DecisionRefused
                | RedirectPerson
                | Federate
                | FederationAnswer
                | Wait,
            ):
                taken.append(action)
                return True
            return False

        result = run_machine(
            machine,
            event,
            signers=self.context.signers,
            http=self.context.http,
            clock=self.context.clock,
            store=self._writer,
            on_action=hook,
        )
        return result.response, taken

    def restore(self, url: str) -> Machine[Any, Any] | None:
        text = self.records.get(url)
        if text is None:
            return None
        snapshot = Snapshot.from_json(text)
        machine: Machine[Any, Any] = MACHINES[snapshot.machine].restore(
            snapshot, config=self.config
        )
        return machine

    def version(self, url: str) -> int:
        """The record's change stamp (a held poll waits for it to move)."""
        return self._changes.version(url)

    def _save(self, machine: Machine[Any, Any]) -> None:
        data = machine.data
        url = getattr(data, "pending_url", "") or ""
        if url:
            self._changes.changed(url)
        if not url or machine.state.name in _UNSTORED:
            return
        expires = getattr(data, "pending_expires", 0) or (
            self.context.clock() + self.settings.pending_lifetime
        )
        indexes: dict[str, str] = {}
        code = getattr(data, "code", None)
        if code is not None:
            indexes[CODE_INDEX] = code_key(normalize_code(code))
        callback = getattr(data, "callback_url", None)
        if callback is not None:
            indexes[CALLBACK_INDEX] = callback
        # the record outlives its indexes: a late poll still gets the machine's 410
        self.records.put(
            url,
            machine.snapshot().to_json(),
            expires_at=expires + _GRACE,
            indexes=indexes,
            index_expires_at=expires,
        )

    def _after(self, url: str, actions: list[Action]) -> None:
        """What a stored machine asked for beyond its answer (run once it is saved)."""
        for action in actions:
            if isinstance(action, Federate):
                self.federation.start(url, action.request)
            elif isinstance(action, FederationAnswer):
                if not self.federation.answer(url, action.body):
                    log.warning("aauth.ps.federation_answer_dropped")
            elif (
                isinstance(action, ConsentPrompt)
                and action.channel is ConsentMode.APPROVAL
                and action.person is not None
            ):
                self.approvals[action.pending_url] = action.person

    # -- the agent ---------------------------------------------------------------------

    def endpoint_request(self, request: HttpRequest) -> HttpResponse | None:
        """A signed request at one of the PS's endpoints (None: not an endpoint)."""
        kind = self.endpoints.get(request.url.split("?", 1)[0])
        if kind is None:
            return None
        machine: Machine[Any, Any] = kind(config=self.config)
        event = RequestArrived(
            request=request, at=self.context.clock(), random=self.context.random(RANDOM_BYTES)
        )
        response, later = self._run(machine, event)
        url = getattr(machine.data, "pending_url", "") or ""
        if url:
            with self.records.lock(url):
                self._save(machine)
            self._after(url, later)
        if response is None:
            raise AAuthError("the request was not answered", code="server_error", status=500)
        return response

    def pending_request_tracked(self, request: HttpRequest) -> tuple[HttpResponse, int]:
        """A signed poll, answer or cancel at a pending URL (404 for an unknown one), and
        the record's change stamp read under its lock right after the step, so a decision
        made a moment later always moves it (held polls)."""
        url = request.url.split("?", 1)[0]
        with self.records.lock(url):
            machine = self.restore(url)
            if machine is None:
                return pending_not_found(), self.version(url)
            response, later = self._run(
                machine, PendingRequest(request=request, at=self.context.clock())
            )
            self._save(machine)
            seen = self.version(url)
        self._after(url, later)
        if response is None:
            raise AAuthError("the poll was not answered", code="server_error", status=500)
        return response, seen

    # -- the person and the federation ------------------------------------------------

    def person_event(self, url: str, event: Event) -> PersonOutcome:
        """Feed the person's ``event`` (code, decision, question, callback) to ``url``."""
        outcome = PersonOutcome()
        with self.records.lock(url):
            machine = self.restore(url)
            if machine is None:
                outcome.state = "MISSING"
                return outcome
            _, later = self._run(machine, event)
            self._save(machine)
            outcome.state = machine.state.name
        for action in later:
            if isinstance(action, ConsentPrompt):
                outcome.prompts.append(action)
            elif isinstance(action, CodeRefused):
                outcome.refused_code = action.error
            elif isinstance(action, DecisionRefused):
                outcome.refused_decision = action.reason
            elif isinstance(action, RedirectPerson):
                outcome.redirect = action.url
        self._after(url, later)
        return outcome

    def deliver(self, url: str, event: Event) -> None:
        """A federation event for the record at ``url`` (from a worker thread)."""
        self.person_event(url, event)

    def prompt_for(self, url: str) -> tuple[str, ConsentPrompt | None]:
        """The record's state and, when it waits on the person, what to ask her."""
        machine = self.restore(url)
        if machine is None:
            return "MISSING", None
        state = machine.state
        if not isinstance(machine, PersonTokenMachine | AuthTokenMachine):
            return state.name, None
        data = machine.data
        waiting = state is TokenRequestState.INTERACTING or (
            state is TokenRequestState.PENDING and data.mode is ConsentMode.APPROVAL
        )
        return state.name, consent_prompt(data) if waiting else None

    # -- peers' documents -------------------------------------------------------------

    def access_server(self, issuer: str) -> AccessServerEndpoint:
        """The AS a resource token names, if this PS federates with it (§6.5)."""
        if issuer not in self.settings.access_servers:
            raise AAuthError(
                "this PS does not federate with that access server",
                code="as_unreachable",
                status=502,
            )
        try:
            metadata = self.discovery.access_server(issuer)
        except AAuthError as err:
            raise AAuthError(
                f"the access server's metadata: {err.detail}", code="as_unreachable", status=502
            ) from err
        return AccessServerEndpoint.from_metadata(metadata)

    def scope_descriptions(self, resource: str) -> dict[str, str]:
        """The resource's ``scope_descriptions`` (empty when its metadata cannot be had;
        :class:`Discovery` caches documents and failures alike)."""
        try:
            return dict(self.discovery.resource(resource).scope_descriptions or {})
        except AAuthError as err:
            log.info("aauth.ps.scope_descriptions_unavailable", resource=resource, code=err.code)
            return {}

    def close(self) -> None:
        """Stop background federations (app shutdown)."""
        self.federation.close()
