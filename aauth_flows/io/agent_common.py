"""What the sync and async agent drivers share: one dispatch loop, written once.

:func:`call_steps` is a generator that runs an :class:`~aauth_flows.machines.agent.AgentFlow`
exactly as ``tests/flow_world.py``'s reference driver does, but yields every piece of I/O
as a small request value (:class:`Handle`, :class:`Sign`, :class:`Send`, :class:`Refresh`,
:class:`Discover`, :class:`Show`, :class:`Ask`, :class:`Sleep`) and takes the answer back
through ``send``. The sync driver answers with blocking calls, the async one with awaits
(and worker threads for what blocks), so the action → event mapping, the wait budget,
clarification and cancellation live only here.

:class:`AgentCore` holds what both drivers keep between calls: the flow configuration and
the :class:`~aauth_flows.machines.agent_credentials.CredentialStore`, merged back under a
lock after every call (three-way, so concurrent calls do not erase each other's tokens).
"""

from __future__ import annotations

import json as jsonlib
import threading
from collections import deque
from collections.abc import Callable, Generator, Hashable, Mapping, Sequence
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import httpx
import structlog
from attrs import evolve, field, frozen

from aauth_core.errors import AAuthError, LocalProtocolError
from aauth_core.headers.capabilities import Capability
from aauth_core.headers.requirement import RequirementType
from aauth_core.http import HttpRequest, HttpResponse
from aauth_core.metadata import PersonServerMetadata, ResourceMetadata
from aauth_core.signer import Signer
from aauth_core.tokens.verify import KeyResolver
from aauth_flows.machines.actions import (
    Cancel,
    Deliver,
    Fail,
    ResponseReceived,
    SendRequest,
    ShowInteraction,
    SignatureProduced,
    SignBytes,
    TimerFired,
    Wait,
)
from aauth_flows.machines.agent import (
    AgentConfig,
    AgentData,
    AgentFlow,
    AgentTokenRefreshed,
    CallResult,
    DiscoverPersonServer,
    PersonServerDiscovered,
    RefreshAgentToken,
    StartCall,
)
from aauth_flows.machines.agent_credentials import REFRESH_MARGIN, CredentialStore
from aauth_flows.machines.engine import Event, narrow, require
from aauth_flows.machines.pending import PendingInputNeeded, PostAnswer, clarification_response
from aauth_flows.machines.signing import SigningKey

__all__ = [
    "DEFAULT_MAX_WAIT",
    "WaitTimeout",
    "PersonServerSource",
    "Handle",
    "Sign",
    "Send",
    "Refresh",
    "Discover",
    "Show",
    "Ask",
    "Sleep",
    "Op",
    "Outcome",
    "call_steps",
    "merge_stores",
    "AgentCore",
    "to_httpx_response",
    "signing_key",
]

log = structlog.get_logger("aauth.io")

#: The longest a call waits in total (Retry-After, clock-skew waits) before giving up.
DEFAULT_MAX_WAIT = 600.0


class WaitTimeout(AAuthError):
    """The call would have waited longer than the driver's ``max_wait`` in total."""

    default_code = "timeout"
    default_status = 504


class PersonServerSource(Protocol):
    """What the drivers need from discovery (``aauth_flows.io.discovery.Discovery`` is one)."""

    def person_server(self, issuer: str) -> PersonServerMetadata: ...


# -- the I/O a flow asks for -------------------------------------------------------------


@frozen(kw_only=True)
class Handle:
    """Feed ``event`` to the flow; answer with its actions (``list[Action]``)."""

    event: Event


@frozen(kw_only=True)
class Sign:
    """Sign ``data`` with the agent key; answer with the signature (``bytes``)."""

    data: bytes = field(repr=lambda b: f"<{len(b)} bytes>")


@frozen(kw_only=True)
class Send:
    """Send ``request``; answer with the :class:`HttpResponse`."""

    request: HttpRequest


@frozen(kw_only=True)
class Refresh:
    """Get a fresh agent token (``current`` is the one held); answer with it (``str``)."""

    current: str | None = field(repr=False)


@frozen(kw_only=True)
class Discover:
    """Fetch the PS metadata of ``issuer``; answer with :class:`PersonServerMetadata`."""

    issuer: str


@frozen(kw_only=True)
class Show:
    """Hand ``interaction`` to the person (no answer; polling goes on)."""

    interaction: ShowInteraction


@frozen(kw_only=True)
class Ask:
    """A clarification ``question`` for the agent; answer with its reply (``str``)."""

    question: str


@frozen(kw_only=True)
class Sleep:
    """Wait ``seconds``; answer with None."""

    seconds: int


Op = Handle | Sign | Send | Refresh | Discover | Show | Ask | Sleep


@frozen(kw_only=True)
class Outcome:
    """How a call ended: ``result`` or ``error``, and the store the flow ended with."""

    store: CredentialStore
    result: CallResult | None = None
    error: AAuthError | None = None


def _question(action: PendingInputNeeded) -> str | None:
    if action.requirement.type is not RequirementType.CLARIFICATION:
        return None
    try:
        body = jsonlib.loads(action.body or b"{}")
    except ValueError:
        return None
    text = body.get("clarification") if isinstance(body, dict) else None
    return text if isinstance(text, str) and text else None


def call_steps(
    flow: AgentFlow,
    start: StartCall,
    *,
    key_ref: str,
    clock: Callable[[], float],
    max_wait: float = DEFAULT_MAX_WAIT,
    can_ask: bool = False,
) -> Generator[Op, Any, Outcome]:
    """Run ``flow`` from ``start``, yielding each piece of I/O (see the module docstring).

    Waits accumulate against ``max_wait``; past it the flow is cancelled (a pending poll
    sends its ``DELETE``) and the call ends in :class:`WaitTimeout`. A clarification the
    driver cannot ask (``can_ask`` false) and any other requirement only the caller could
    meet (``claims``) also cancel the call."""

    def now() -> int:
        return int(clock())

    queue: deque[Event] = deque([start])
    waited = 0.0
    timed_out = False
    while queue:
        actions = yield Handle(event=queue.popleft())
        waits: list[Wait] = []
        for action in actions:
            if isinstance(action, SignBytes):
                if action.key != key_ref:
                    raise LocalProtocolError(f"the flow asked for key {action.key!r}")
                signature = yield Sign(data=action.data)
                queue.append(SignatureProduced(signature=signature))
            elif isinstance(action, SendRequest):
                response = yield Send(request=action.request)
                queue.append(ResponseReceived(response=response, at=now()))
            elif isinstance(action, RefreshAgentToken):
                token = yield Refresh(current=action.current)
                queue.append(AgentTokenRefreshed(token=token, at=now()))
            elif isinstance(action, DiscoverPersonServer):
                metadata = yield Discover(issuer=action.issuer)
                queue.append(PersonServerDiscovered(metadata=metadata, at=now()))
            elif isinstance(action, ShowInteraction):
                yield Show(interaction=action)
            elif isinstance(action, PendingInputNeeded):
                question = _question(action) if can_ask else None
                if question is None:
                    log.info("aauth.agent.cannot_answer", requirement=str(action.requirement.type))
                    queue.append(Cancel(at=now()))
                else:
                    answer = yield Ask(question=question)
                    queue.append(PostAnswer(body=clarification_response(answer), at=now()))
            elif isinstance(action, Wait):
                waits.append(action)
            elif isinstance(action, Deliver):
                result = narrow(action.result, CallResult, "what the agent machine delivered")
                return Outcome(store=result.store, result=result)
            elif isinstance(action, Fail):
                error = action.error
                if timed_out:
                    error = WaitTimeout(f"gave up after waiting {waited:g} s in total")
                return Outcome(store=flow.data.store, error=error)
        for wait in waits:
            if waited + wait.seconds > max_wait:
                timed_out = True
                log.info("aauth.agent.timeout", waited=waited, next_wait=wait.seconds)
                queue.append(Cancel(at=now()))
                break
            yield Sleep(seconds=wait.seconds)
            waited += wait.seconds
            queue.append(TimerFired(at=now()))
    error = LocalProtocolError("the flow stopped without delivering or failing")
    return Outcome(store=flow.data.store, error=error)


# -- the credential store shared by concurrent calls --------------------------------------

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def _merge_keyed(
    base: Sequence[V], ours: Sequence[V], current: Sequence[V], key: Callable[[V], K]
) -> tuple[V, ...]:
    """Three-way merge of keyed entries: what this call changed (against ``base``) wins,
    everything else stays as ``current`` has it."""
    before = {key(e): e for e in base}
    after = {key(e): e for e in ours}
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    kept = [e for e in current if key(e) not in changed]
    added = [e for e in ours if key(e) in changed]
    return (*kept, *added)


def _merge_one(base: V, ours: V, current: V) -> V:
    return current if ours == base else ours


def merge_stores(
    base: CredentialStore, ours: CredentialStore, current: CredentialStore
) -> CredentialStore:
    """``current`` with the changes one call made (from ``base`` to ``ours``) applied."""
    return evolve(
        current,
        agent_token=_merge_one(base.agent_token, ours.agent_token, current.agent_token),
        person_server=_merge_one(base.person_server, ours.person_server, current.person_server),
        resources=_merge_keyed(
            base.resources, ours.resources, current.resources, lambda m: str(m.issuer)
        ),
        person_tokens=_merge_keyed(
            base.person_tokens,
            ours.person_tokens,
            current.person_tokens,
            lambda e: (e.resource, e.mission_s256),
        ),
        auth_tokens=_merge_keyed(
            base.auth_tokens, ours.auth_tokens, current.auth_tokens, lambda e: (e.resource, e.scope)
        ),
        sessions=_merge_keyed(base.sessions, ours.sessions, current.sessions, lambda e: e.resource),
    )


class AgentCore:
    """The configuration and credential store both drivers keep between calls."""

    def __init__(
        self,
        public_key: SigningKey,
        *,
        keys: KeyResolver | None,
        capabilities: Sequence[Capability] | None,
        can_ask: bool,
        prefer_wait: int | None,
        resources: Sequence[ResourceMetadata],
        margin: int = REFRESH_MARGIN,
        max_wait: float = DEFAULT_MAX_WAIT,
        clock: Callable[[], float],
        store: CredentialStore | None,
    ) -> None:
        if capabilities is None:
            capabilities = (Capability.INTERACTION,)
            if can_ask:
                capabilities = (*capabilities, Capability.CLARIFICATION)
        self.config = AgentConfig(
            key=public_key,
            keys=keys,
            resources=tuple(resources),
            capabilities=tuple(capabilities),
            margin=margin,
            prefer_wait=prefer_wait,
        )
        self.key_ref = public_key.ref
        self.can_ask = can_ask
        self.max_wait = max_wait
        self.clock = clock
        self._store = store if store is not None else CredentialStore()
        self._lock = threading.Lock()

    @property
    def store(self) -> CredentialStore:
        with self._lock:
            return self._store

    def begin(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        content: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        authorize: bool = False,
        mission_s256: str | None = None,
        justification: str | None = None,
    ) -> tuple[AgentFlow, Generator[Op, Any, Outcome]]:
        """A new flow for one call (on a snapshot of the store) and its step generator."""
        fields = dict(headers or {})
        body = b""
        if json is not None and content is not None:
            raise ValueError("pass json or content, not both")
        if json is not None:
            body = jsonlib.dumps(json, separators=(",", ":")).encode()
            if not any(k.lower() == "content-type" for k in fields):
                fields["Content-Type"] = "application/json"
        elif content is not None:
            body = content.encode() if isinstance(content, str) else bytes(content)
        request = HttpRequest(method=method.upper(), url=url, headers=fields, body=body)
        start = StartCall(
            request=request,
            at=int(self.clock()),
            authorize=authorize,
            mission_s256=mission_s256,
            justification=justification,
        )
        flow = AgentFlow(config=self.config, data=AgentData(store=self.store))
        steps = call_steps(
            flow,
            start,
            key_ref=self.key_ref,
            clock=self.clock,
            max_wait=self.max_wait,
            can_ask=self.can_ask,
        )
        log.debug("aauth.agent.call", method=request.method, resource=_origin(url))
        return flow, steps

    def keep(self, base: CredentialStore, ours: CredentialStore) -> None:
        """Merge what one call did to the store (from ``base`` to ``ours``)."""
        with self._lock:
            self._store = merge_stores(base, ours, self._store)

    def finish(self, flow: AgentFlow, base: CredentialStore, outcome: Outcome) -> httpx.Response:
        """Keep the store; the resource's answer as an httpx response, or raise the error."""
        self.keep(base, outcome.store)
        if outcome.error is not None:
            log.info("aauth.agent.failed", code=outcome.error.code, status=outcome.error.status)
            raise outcome.error
        result = require(outcome.result, "the outcome's result")  # error is None: result is set
        request = flow.data.request
        return to_httpx_response(result.response, request)


#: Framing headers that described the body on the wire, not the decoded body we hold.
_FRAMING = frozenset({"content-encoding", "content-length", "transfer-encoding"})


def to_httpx_response(response: HttpResponse, request: HttpRequest | None) -> httpx.Response:
    """Core's response as an (already read) :class:`httpx.Response`."""
    out = httpx.Response(
        status_code=response.status,
        headers=[(k, v) for k, v in response.headers.pairs if k.lower() not in _FRAMING],
        content=response.body,
    )
    if request is not None:
        out.request = httpx.Request(request.method, request.url)
    return out


def _origin(url: str) -> str:
    parts = urlsplit(url)  # not httpx.URL: this runs for every call, logged or not
    return f"{parts.scheme}://{parts.hostname}"


def signing_key(signer: Signer, key_ref: str) -> SigningKey:
    """The machine-side view of ``signer`` (its reference and public key)."""
    return SigningKey(ref=key_ref, public_jwk=signer.public_jwk())
