"""An in-memory AAuth world: real machines of every role wired together by a small driver.

This is the reference for embedding the flow machines (drivers over httpx/ASGI come later).
Everything is real except the network: Ed25519 keys (``JwkSigner``), tokens minted by the
machines through ``SignBytes``, every request verified by core. The driver only moves
values around:

- ``SignBytes`` → the key named by its ref signs → ``SignatureProduced``;
- ``SendRequest`` → :meth:`World.send` routes by origin and path to a fresh server machine
  (or, for a pending URL, to one restored from its JSON snapshot) and returns the machine's
  ``Respond`` as ``ResponseReceived``;
- record actions → the role's in-memory store (``apply``), and :attr:`World.records`;
- ``Federate`` → a :class:`FederationClient` for the PS against the AS, whose progress and
  outcome go back to the PS's pending machine;
- ``Wait`` → :meth:`World.advance` moves the clock (background federation polls run first),
  then ``TimerFired``;
- ``ShowInteraction`` / consent prompts → :class:`Person`, who follows a script (a prompt
  through the PS's own channel, ``requirement=approval``, is answered at once or, with
  :attr:`Person.approval_delay`, when the clock has moved that far);
- ``RedirectPerson`` → :meth:`World.browse`: Alice's browser at a resource's own
  interaction page (:class:`ResourceUserFlow`), then back at the PS callback URL;
- ``Serve`` → :meth:`World.app`, a handler answering 200 with the principal in JSON.

Server machines that outlive a request (pending records) are kept only as JSON: the PS's and
the AS's in :attr:`World.pending` keyed by pending URL, the resource's in its own
:class:`MemoryResourceStore` (keyed by pending id, with its code index). Each poll restores
a new machine from that JSON, so snapshot/restore is exercised on every round.
"""

from __future__ import annotations

import json
import random
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from attrs import define, field, frozen
from signing_helpers import JwkSigner, generated_ed25519

from aauth_core.errors import AAuthError
from aauth_core.headers.capabilities import Capability
from aauth_core.http import HttpRequest, HttpResponse
from aauth_core.identifiers import AgentId
from aauth_core.interaction import generate_code, normalize_code
from aauth_core.metadata import AccessServerMetadata, PersonServerMetadata, ResourceMetadata
from aauth_core.requests import sign_aauth_request
from aauth_core.server_requests import sign_server_request
from aauth_core.tokens import (
    DWK_ACCESS,
    DWK_AGENT,
    DWK_PERSON,
    DWK_RESOURCE,
    AgentTokenClaims,
    Confirmation,
    StaticKeyResolver,
    mint_token,
)
from aauth_core.tokens.claims import ResourceInteraction
from aauth_flows.machines.access_server import (
    AuthTokenExchange,
    PendingRequestReceived,
    TokenRequestReceived,
)
from aauth_flows.machines.actions import (
    Deliver,
    Fail,
    Respond,
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
from aauth_flows.machines.agent_credentials import CredentialStore
from aauth_flows.machines.agent_provider import (
    AgentProviderConfig,
    AgentTokenIssuance,
    AgentTokenRevocation,
    IssueAgentToken,
    IssuedAgentToken,
    RevokeAgentToken,
    StaticAgentRegistry,
)
from aauth_flows.machines.as_policy import (
    AccessServerConfig,
    Decision,
    Grant,
    InMemoryAccessServerStore,
    PolicyRequest,
    RequireClarification,
    RequireInteraction,
    StaticPersonServers,
)
from aauth_flows.machines.engine import Action, Event, Machine, Snapshot
from aauth_flows.machines.federation import (
    AccessServerEndpoint,
    AnswerPending,
    FederationClient,
    FederationClientConfig,
    Pay,
    PaymentSettled,
    StartFederation,
    ToPersonServer,
)
from aauth_flows.machines.federation_api import Federate, FederationAnswer
from aauth_flows.machines.pending import PendingInputNeeded, PostAnswer, clarification_response
from aauth_flows.machines.person_server import (
    AuthTokenMachine,
    ConsentMode,
    ConsentPrompt,
    InMemoryPsStore,
    InteractionArrived,
    PendingRequest,
    PersonAsked,
    PersonDecided,
    PersonServerConfig,
    PersonTokenMachine,
    RedirectPerson,
    RequestArrived,
    ResourceCallback,
    RevocationMachine,
)
from aauth_flows.machines.person_server import (
    Decision as PersonDecision,
)
from aauth_flows.machines.person_server import not_found as ps_not_found
from aauth_flows.machines.resource import (
    AccessMode,
    AgentPrincipal,
    AuthorizationEndpoint,
    AuthorizedPrincipal,
    CodePresented,
    DeferredDelivery,
    MemoryResourceStore,
    PendingInteraction,
    PersonPrincipal,
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
from aauth_flows.machines.resource_pending import not_found as resource_not_found
from aauth_flows.machines.signing import SigningKey

__all__ = [
    "T0",
    "AP",
    "PS",
    "AS",
    "RS",
    "FED",
    "OTHER_PS",
    "AGENT_ID",
    "Exchange",
    "Person",
    "ResourceUserFlow",
    "CallOutcome",
    "Resource",
    "World",
]

T0 = 1_800_000_000
AP = "https://ap.example"
PS = "https://ps.example"
AS = "https://as.example"
RS = "https://resource.example"  # three-party: resource tokens name the PS
FED = "https://federated.example"  # four-party: resource tokens name the AS
OTHER_PS = "https://other-ps.example"  # a PS the AS knows the keys of, but never asked
AGENT_ID = AgentId.parse("aauth:assistant@ap.example")
RANDOM = 96  # enough for every role's request event


@frozen(kw_only=True)
class Exchange:
    """One request on the wire and its answer."""

    request: HttpRequest
    response: HttpResponse

    @property
    def url(self) -> str:
        return self.request.url


@define
class Person:
    """Alice, authenticated at her PS, at the resource and at the AS. ``plan`` says what she
    does at each consent prompt, in order: ``"approve"``, ``"deny"`` or ``"ask:<question>"``
    (approve once the plan is used up); at a resource's own interaction page also
    ``"abandon"``, ``"expire"``, ``"fail"`` or ``"busy"`` (the ``?error=`` it sends back).
    ``approval_delay`` > 0: she answers a prompt pushed through the PS's channel
    (``requirement=approval``) only once the clock has moved that many seconds."""

    id: str = "alice"
    plan: list[str] = field(factory=list)
    visits: list[str] = field(factory=list)  # interaction URLs she opened
    prompts: list[Action] = field(factory=list)  # consent pages she saw
    refused: list[Action] = field(factory=list)  # CodeRefused / DecisionRefused
    approval_delay: int = 0

    def next(self) -> str:
        return self.plan.pop(0) if self.plan else "approve"


@frozen(kw_only=True)
class CallOutcome:
    """How an agent flow ended (or where it stopped)."""

    flow: AgentFlow
    result: CallResult | None = None
    error: AAuthError | None = None

    @property
    def response(self) -> HttpResponse:
        assert self.result is not None, f"the call failed: {self.error!r}"
        return self.result.response

    @property
    def body(self) -> Any:
        return json.loads(self.response.body)


@frozen(kw_only=True)
class Resource:
    """A resource server: its configuration, store and metadata."""

    config: ResourceConfig
    store: MemoryResourceStore
    metadata: ResourceMetadata

    @property
    def issuer(self) -> str:
        return self.config.issuer


#: What Alice's choice at a resource's interaction page sends back to the PS callback.
_RESOURCE_PAGE_ERRORS: dict[str, str | None] = {
    "approve": None,
    "deny": "access_denied",
    "abandon": "user_abandoned",
    "expire": "interaction_expired",
    "fail": "server_error",
    "busy": "temporarily_unavailable",
}


class ResourceUserFlow:
    """A resource's own user flow before the PS's consent (§5.4): when ``enabled`` every
    resource token it mints carries ``interaction`` = its ``/link`` page and a fresh code;
    the page (:meth:`World.browse`) takes each code once."""

    def __init__(self, issuer: str, random: Callable[[int], bytes]) -> None:
        self.url = f"{issuer}/link"
        self.enabled = False
        self._random = random
        self.codes: dict[str, str] = {}  # normalised code → resource token jti

    def interaction(
        self, presented: PersonPrincipal | AuthorizedPrincipal, scope: str | None, jti: str
    ) -> ResourceInteraction | None:
        if not self.enabled:
            return None
        code = generate_code(self._random(8))
        self.codes[normalize_code(code)] = jti
        return ResourceInteraction(url=self.url, code=code)

    def consume(self, code: str) -> bool:
        return self.codes.pop(normalize_code(code), None) is not None


class AccessPolicyScript:
    """The AS's policy: grant, but first make the person bind her PS at the AS (once per
    PS) when ``interaction`` is on, and have ``question`` answered when set. The binding is
    the policy's own fact, set when Alice completes the AS's interaction page."""

    def __init__(self) -> None:
        self.interaction = False
        self.question: str | None = None
        self.answers: list[str] = []
        self.bound: set[str] = set()
        self.codes: dict[str, str] = {}  # pending URL → code

    def decide(self, request: PolicyRequest) -> Decision:
        if self.interaction and request.ps not in self.bound:
            assert request.pending_url is not None
            code = self.codes.setdefault(request.pending_url, f"BIND-{len(self.codes) + 1:04d}")
            return RequireInteraction(url=f"{AS}/bind", code=code)
        if self.question is not None:
            if request.clarification_answer is None:
                return RequireClarification(question=self.question)
            self.answers.append(request.clarification_answer)
        return Grant()


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _path(url: str) -> str:
    return urlsplit(url).path


def _as_not_found() -> HttpResponse:
    """The AS's answer for a pending URL that is not there (the one it gives a poller that
    is not the PS that asked)."""
    body = {"error": "not_found", "detail": "no such pending request"}
    return HttpResponse(
        status=404,
        headers={"Content-Type": "application/problem+json"},
        body=json.dumps(body, separators=(",", ":")).encode(),
    )


def _not_found() -> HttpResponse:
    return HttpResponse(status=404, headers={"Content-Type": "text/plain"}, body=b"not found")


def _principal(principal: object) -> dict[str, Any]:
    if isinstance(principal, AgentPrincipal):
        named: dict[str, Any] = {"kind": "agent", "iss": principal.issuer}
        named["agent"] = str(principal.agent)
        named["session"] = principal.session is not None
        return named
    if isinstance(principal, PersonPrincipal):
        return {"kind": "person", "iss": principal.issuer, "sub": principal.sub}
    assert isinstance(principal, AuthorizedPrincipal)
    return {
        "kind": "authorized",
        "iss": principal.issuer,
        "ps": principal.ps,
        "sub": principal.sub,
        "scope": " ".join(sorted(principal.scopes)),
    }


class World:
    """AP, PS, AS and two resources, one agent and one person, in one process."""

    def __init__(self, seed: int = 7) -> None:
        self.now = T0
        self._rng = random.Random(seed)
        self.signers: dict[str, JwkSigner] = {}
        names = ("agent", "ap", "ps", "as", "rs", "fed", "other-ps", "intruder")
        keys = {name: self._key(name) for name in names}
        self.agent_key = keys["agent"]
        self.resolver = StaticKeyResolver(
            {
                (AP, DWK_AGENT): (keys["ap"].public_jwk,),
                (PS, DWK_PERSON): (keys["ps"].public_jwk,),
                (AS, DWK_ACCESS): (keys["as"].public_jwk,),
                (RS, DWK_RESOURCE): (keys["rs"].public_jwk,),
                (FED, DWK_RESOURCE): (keys["fed"].public_jwk,),
                (OTHER_PS, DWK_PERSON): (keys["other-ps"].public_jwk,),
            }
        )
        self.person = Person()
        self.agent_answers: list[str] = []  # what the agent answers to clarification questions
        self.wire: list[Exchange] = []
        self.records: list[Action] = []
        #: (which store, what): the same action may rightly reach two roles' stores
        self.recorded_by: list[tuple[str, Action]] = []
        self.pending: dict[str, str] = {}  # PS and AS pending machines: URL → snapshot JSON
        self._ps_codes: dict[str, str] = {}  # normalised interaction code → PS pending URL
        self._ps_callbacks: dict[str, str] = {}  # PS callback URL → PS pending URL
        self._approvals: list[tuple[int, ConsentPrompt]] = []  # (answer at, prompt)
        self._background: dict[str, tuple[int, str]] = {}  # PS pending URL → (wake, client)
        self.ap_issued: list[IssuedAgentToken] = []

        # -- Agent Provider --------------------------------------------------------------
        self.ap_config = AgentProviderConfig(
            issuer=AP,
            signing_key=keys["ap"],
            registry=StaticAgentRegistry({str(AGENT_ID): frozenset({keys["agent"].thumbprint})}),
            keys=self.resolver,
        )

        # -- resources -------------------------------------------------------------------
        self.rs_flow = ResourceUserFlow(RS, self.random)
        self.rs = self._resource(
            RS,
            keys["rs"],
            routes=(
                Route(path="/agent", mode=AccessMode.AGENT),
                Route(path="/notes", mode=AccessMode.RESOURCE_MANAGED, scope="notes"),
                Route(path="/profile", mode=AccessMode.PERSON),
                Route(path="/data", mode=AccessMode.AUTHORIZATION, scope="data.read"),
                Route(path="/admin", mode=AccessMode.AUTHORIZATION, scope="data.read data.write"),
                Route(
                    path="/reports",
                    mode=AccessMode.AUTHORIZATION,
                    scope="data.read",
                    deferred=True,
                ),
            ),
            access_server=None,
            token_interaction=self.rs_flow,
        )
        self.fed = self._resource(
            FED,
            keys["fed"],
            routes=(
                Route(path="/data", mode=AccessMode.AUTHORIZATION, scope="data.read"),
                Route(path="/admin", mode=AccessMode.AUTHORIZATION, scope="data.read data.write"),
            ),
            access_server=AS,
        )

        # -- Person Server ---------------------------------------------------------------
        self.ps_metadata = PersonServerMetadata.from_dict(
            {
                "issuer": PS,
                "jwks_uri": f"{PS}/jwks",
                "person_token_endpoint": f"{PS}/person-token",
                "auth_token_endpoint": f"{PS}/auth-token",
                "revocation_endpoint": f"{PS}/revoke",
            }
        )
        self.ps_store = InMemoryPsStore()
        self.ps_store.revocation_issuers.add(AP)
        for resource in (self.rs, self.fed):
            assert resource.metadata.revocation_endpoint is not None
            self.ps_store.revocation_endpoints[resource.issuer] = (
                resource.metadata.revocation_endpoint
            )
        self.ps_config = PersonServerConfig(
            issuer=PS,
            signing_key=keys["ps"],
            keys=self.resolver,
            store=self.ps_store,
            sub_secret=b"world directed-sub secret",
            pending_base=f"{PS}/pending/",
            interaction_url=f"{PS}/interaction",
        )
        self.federation_config = FederationClientConfig(
            issuer=PS, signing_key=keys["ps"], as_keys=self.resolver
        )

        # -- Access Server ---------------------------------------------------------------
        self.as_metadata = AccessServerMetadata.from_dict(
            {"issuer": AS, "jwks_uri": f"{AS}/jwks", "auth_token_endpoint": f"{AS}/token"}
        )
        self.as_store = InMemoryAccessServerStore()
        self.as_policy = AccessPolicyScript()
        self.as_config = AccessServerConfig(
            issuer=AS,
            signing_key=keys["as"],
            pending_base=f"{AS}/pending",
            keys=self.resolver,
            person_servers=StaticPersonServers(frozenset({PS})),
            policy=self.as_policy,
            revocations=self.as_store,
            issued=self.as_store,
            known_resources=frozenset({FED}),
        )

        # -- the agent -------------------------------------------------------------------
        self.agent_config = AgentConfig(
            key=keys["agent"], keys=self.resolver, capabilities=(Capability.INTERACTION,)
        )
        self.agent_store = CredentialStore()

    # -- set-up helpers ---------------------------------------------------------------------

    def _key(self, name: str) -> SigningKey:
        signer = generated_ed25519()
        ref = f"software:{name}"
        self.signers[ref] = signer
        return SigningKey(ref=ref, public_jwk=signer.public_jwk())

    def _resource(
        self,
        issuer: str,
        key: SigningKey,
        *,
        routes: tuple[Route, ...],
        access_server: str | None,
        token_interaction: ResourceUserFlow | None = None,
    ) -> Resource:
        store = MemoryResourceStore()
        config = ResourceConfig(
            issuer=issuer,
            signing_key=key,
            keys=self.resolver,
            routes=routes,
            revocations=store,
            sessions=store,
            interaction_url=f"{issuer}/interaction",
            pending_base=f"{issuer}/pending/",
            access_server=access_server,
            scope_descriptions=frozenset({"data.read", "data.write", "notes"}),
            token_interaction=token_interaction,
        )
        metadata = ResourceMetadata.from_dict(
            {
                "issuer": issuer,
                "jwks_uri": f"{issuer}/jwks",
                "authorization_endpoint": f"{issuer}/authorize",
                "revocation_endpoint": f"{issuer}/revoke",
                "scope_descriptions": {
                    "data.read": "Read your data",
                    "data.write": "Change your data",
                    "notes": "Your notes",
                },
            }
        )
        return Resource(config=config, store=store, metadata=metadata)

    # -- strangers at other parties' pending URLs ----------------------------------------

    def as_intruder(self, method: str, url: str) -> HttpRequest:
        """``method url`` signed now by another agent of the same AP (its own key and a
        valid agent token): a poller that is not the one the pending record belongs to."""
        key = self.signers["software:intruder"]
        claims = AgentTokenClaims(
            iss=AP,
            dwk=DWK_AGENT,
            jti=f"intruder-{self.now}",
            iat=self.now,
            exp=self.now + 3600,
            sub=AgentId.parse("aauth:intruder@ap.example"),
            cnf=Confirmation(jwk=key.public_jwk()),
            ps=PS,
        )
        token = mint_token(claims, self.signers["software:ap"])
        bare = HttpRequest(method=method, url=url)
        fields = sign_aauth_request(bare, key, token=token, created=self.now)
        return HttpRequest(method=method, url=url, headers=fields)

    def as_other_ps(self, method: str, url: str) -> HttpRequest:
        """``method url`` signed now by :data:`OTHER_PS` as a server (``jwks_uri`` scheme)."""
        bare = HttpRequest(method=method, url=url)
        fields = sign_server_request(
            bare,
            self.signers["software:other-ps"],
            issuer=OTHER_PS,
            dwk=DWK_PERSON,
            created=self.now,
        )
        return HttpRequest(method=method, url=url, headers=fields)

    def random(self, n: int = RANDOM) -> bytes:
        return self._rng.randbytes(n)

    def sign(self, action: SignBytes) -> SignatureProduced:
        return SignatureProduced(signature=self.signers[action.key].sign(action.data))

    # -- time --------------------------------------------------------------------------------

    def advance(self, seconds: int) -> None:
        """Move the clock; background work that fell due (federation polls) runs first."""
        self.now += seconds
        for url, (wake, text) in sorted(self._background.items(), key=lambda kv: kv[1][0]):
            if wake <= self.now and url in self._background:
                del self._background[url]
                self._run_federation(url, Snapshot.from_json(text), TimerFired(at=self.now))
        due = [prompt for when, prompt in self._approvals if when <= self.now]
        self._approvals = [(when, p) for when, p in self._approvals if when > self.now]
        for prompt in due:  # Alice answers on her device, later
            self._ps_event(prompt.pending_url, self._decide(prompt))

    # -- the wire ----------------------------------------------------------------------------

    def send(self, request: HttpRequest) -> HttpResponse:
        """Deliver ``request`` to the server its URL names and return that server's answer."""
        origin = _origin(request.url)
        if origin == PS:
            response = self._person_server(request)
        elif origin == AS:
            response = self._access_server(request)
        elif origin in (RS, FED):
            response = self._at_resource(self.rs if origin == RS else self.fed, request)
        else:
            response = _not_found()
        self.wire.append(Exchange(request=request, response=response))
        return response

    # -- running one server machine ----------------------------------------------------------

    def _run(
        self, machine: Machine[Any, Any], event: Event, store: Any
    ) -> tuple[HttpResponse | None, list[Action]]:
        """Feed ``event`` and every answer the driver owes it (record actions go to
        ``store``); return the machine's ``Respond`` (if any) and the actions left for the
        caller (``Federate``)."""
        queue: deque[Event] = deque([event])
        response: HttpResponse | None = None
        later: list[Action] = []
        while queue:
            for action in machine.handle(queue.popleft()):
                if isinstance(action, SignBytes):
                    queue.append(self.sign(action))
                elif isinstance(action, SendRequest):
                    answer = self.send(action.request)
                    queue.append(ResponseReceived(response=answer, at=self.now))
                elif isinstance(action, Respond):
                    response = action.response
                elif isinstance(action, Serve):
                    queue.append(Served(response=self.app(action), at=self.now))
                elif isinstance(action, ConsentPrompt | ShowConsent):
                    self.person.prompts.append(action)
                    if (
                        isinstance(action, ConsentPrompt)
                        and action.channel is ConsentMode.APPROVAL
                        and self.person.approval_delay > 0
                    ):
                        self._approvals.append((self.now + self.person.approval_delay, action))
                    else:
                        queue.append(self._decide(action))
                elif isinstance(action, Federate | FederationAnswer | RedirectPerson):
                    later.append(action)  # once the PS machine is saved
                elif store.apply(action):
                    self.records.append(action)
                    self.recorded_by.append((type(store).__name__, action))
                else:
                    self.person.refused.append(action)  # CodeRefused / DecisionRefused
        return response, later

    def _decide(self, prompt: ConsentPrompt | ShowConsent) -> Event:
        choice = self.person.next()
        if isinstance(prompt, ShowConsent):
            return UserDecided(approved=choice == "approve", at=self.now)
        if choice.startswith("ask:"):
            return PersonAsked(question=choice.removeprefix("ask:"), at=self.now)
        decision = PersonDecision.APPROVE if choice == "approve" else PersonDecision.DENY
        return PersonDecided(decision=decision, person=self.person.id, at=self.now)

    def app(self, serve: Serve) -> HttpResponse:
        """The resource's application: 200 naming who called."""
        body = {"path": _path(serve.request.url), "principal": _principal(serve.principal)}
        return HttpResponse(
            status=200,
            headers={"Content-Type": "application/json"},
            body=json.dumps(body).encode(),
        )

    # -- the resource ------------------------------------------------------------------------

    def _at_resource(self, resource: Resource, request: HttpRequest) -> HttpResponse:
        config, path = resource.config, _path(request.url)
        event = RequestReceived(request=request, at=self.now, random=self.random())
        if path.startswith("/pending/"):
            pending_id = path.removeprefix("/pending/")
            snapshot = resource.store.pending(pending_id)
            if snapshot is None:
                return resource_not_found()
            machine = _RESOURCE_PENDING[snapshot.machine].restore(snapshot, config=config)
            response, _ = self._run(machine, event, resource.store)
            resource.store.save_pending(pending_id, machine.snapshot())
        elif path == _path(resource.metadata.authorization_endpoint or ""):
            response, _ = self._run(AuthorizationEndpoint(config=config), event, resource.store)
        elif path == _path(resource.metadata.revocation_endpoint or ""):
            response, _ = self._run(RevocationEndpoint(config=config), event, resource.store)
        else:
            response, _ = self._run(ResourceCall(config=config), event, resource.store)
        assert response is not None, f"the resource did not answer {request.url}"
        return response

    # -- the Person Server -------------------------------------------------------------------

    def _person_server(self, request: HttpRequest) -> HttpResponse:
        url = request.url
        machine: Machine[Any, Any]
        event: Event
        if url in self.pending:
            machine = self._restore_ps(url)
            event = PendingRequest(request=request, at=self.now)
        else:
            arrived = RequestArrived(request=request, at=self.now, random=self.random())
            endpoints = {
                self.ps_metadata.person_token_endpoint: PersonTokenMachine,
                self.ps_metadata.auth_token_endpoint: AuthTokenMachine,
                self.ps_metadata.revocation_endpoint: RevocationMachine,
            }
            kind = endpoints.get(url)
            if kind is None:
                return ps_not_found() if "/pending/" in url else _not_found()
            machine, event = kind(config=self.ps_config), arrived
        response, later = self._run(machine, event, self.ps_store)
        self._save_ps(machine)
        for action in later:
            if isinstance(action, Federate):
                self._federate(machine.data.pending_url, action)
            elif isinstance(action, FederationAnswer):
                _, text = self._background.pop(url)
                answer = AnswerPending(body=action.body, at=self.now)
                self._run_federation(url, Snapshot.from_json(text), answer)
            elif isinstance(action, RedirectPerson):
                self.browse(action.url)
        assert response is not None, f"the PS did not answer {url}"
        return response

    def _restore_ps(self, url: str) -> Machine[Any, Any]:
        snapshot = Snapshot.from_json(self.pending[url])
        kind = _PS_MACHINES[snapshot.machine]
        machine: Machine[Any, Any] = kind.restore(snapshot, config=self.ps_config)
        return machine

    def _save_ps(self, machine: Machine[Any, Any]) -> None:
        url = getattr(machine.data, "pending_url", "")
        if not url or machine.state.name in ("ANSWERED", "REJECTED", "RECEIVED"):
            return
        self.pending[url] = machine.snapshot().to_json()
        code = getattr(machine.data, "code", None)
        if code is not None:
            self._ps_codes[normalize_code(code)] = url
        callback = getattr(machine.data, "callback_url", None)
        if callback is not None:
            self._ps_callbacks[callback] = url

    def _ps_event(self, url: str, event: Event) -> None:
        machine = self._restore_ps(url)
        _, later = self._run(machine, event, self.ps_store)
        self._save_ps(machine)
        for action in later:
            if isinstance(action, RedirectPerson):
                self.browse(action.url)

    # -- federation: the PS as a client of the AS --------------------------------------------

    def _federate(self, ps_pending_url: str, action: Federate) -> None:
        client = FederationClient(config=self.federation_config)
        start = StartFederation(
            request=action.request,
            access_server=AccessServerEndpoint.from_metadata(self.as_metadata),
            at=self.now,
        )
        self._run_federation(ps_pending_url, client.snapshot(), start)

    def _run_federation(self, ps_url: str, snapshot: Snapshot, event: Event) -> None:
        client = FederationClient.restore(snapshot, config=self.federation_config)
        queue: deque[Event] = deque([event])
        while queue:
            for action in client.handle(queue.popleft()):
                if isinstance(action, SignBytes):
                    queue.append(self.sign(action))
                elif isinstance(action, SendRequest):
                    answer = self.send(action.request)
                    queue.append(ResponseReceived(response=answer, at=self.now))
                elif isinstance(action, Pay):
                    queue.append(PaymentSettled(at=self.now))
                elif isinstance(action, Wait):
                    wake = self.now + action.seconds
                    self._background[ps_url] = (wake, client.snapshot().to_json())
                elif isinstance(action, ToPersonServer):
                    self._ps_event(ps_url, action.event)

    # -- the Access Server -------------------------------------------------------------------

    def _access_server(self, request: HttpRequest) -> HttpResponse:
        url = request.url
        machine = AuthTokenExchange(config=self.as_config)
        event: Event
        if url in self.pending:
            machine = AuthTokenExchange.restore(
                Snapshot.from_json(self.pending[url]), config=self.as_config
            )
            event = PendingRequestReceived(request=request, at=self.now, nonce=self.random(16))
        elif url == self.as_metadata.auth_token_endpoint:
            event = TokenRequestReceived(request=request, at=self.now, nonce=self.random(16))
        elif "/pending" in url:
            return _as_not_found()
        else:
            return _not_found()
        response, _ = self._run(machine, event, self.as_store)
        if machine.data.pending_url is not None:
            self.pending[machine.data.pending_url] = machine.snapshot().to_json()
        assert response is not None
        return response

    # -- the person at an interaction URL ----------------------------------------------------

    def visit(self, show: ShowInteraction) -> None:
        """Alice opens the interaction URL with its code (authenticated wherever she lands)."""
        self.person.visits.append(show.url)
        code = show.code or parse_qs(urlsplit(show.url).query).get("code", [""])[0]
        origin = _origin(show.url)
        if origin == PS:
            url = self._ps_codes.get(normalize_code(code))
            if url is not None:
                self._ps_event(url, InteractionArrived(code=code, at=self.now))
        elif origin == AS:
            if code in self.as_policy.codes.values():
                self.as_policy.bound.add(PS)  # she signed in at the AS and bound her PS
        elif origin in (RS, FED):
            resource = self.rs if origin == RS else self.fed
            pending_id = resource.store.pending_for_code(code)
            if pending_id is None:
                return
            snapshot = resource.store.pending(pending_id)
            assert snapshot is not None
            machine = PendingInteraction.restore(snapshot, config=resource.config)
            self._run(machine, CodePresented(code=code, at=self.now), resource.store)
            resource.store.save_pending(pending_id, machine.snapshot())

    def browse(self, url: str) -> None:
        """Alice's browser is sent to ``url``: a resource's own interaction page (she does
        what her plan says; the page redirects her to its ``callback``, with ``?error=`` on
        failure), or the PS callback URL (the PS resumes her pending request)."""
        self.person.visits.append(url)
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        origin, path = _origin(url), parts.path
        if origin == RS and path == urlsplit(self.rs_flow.url).path:
            callback = query.get("callback", [""])[0]
            if not self.rs_flow.consume(query.get("code", [""])[0]) or not callback:
                return  # the page says "unknown code": nothing happens
            error = _RESOURCE_PAGE_ERRORS[self.person.next()]
            self.browse(callback if error is None else f"{callback}?{urlencode({'error': error})}")
        elif origin == PS:
            pending = self._ps_callbacks.get(f"{origin}{path}")
            if pending is not None:
                error = query.get("error", [None])[0]
                self._ps_event(pending, ResourceCallback(error=error, at=self.now))

    # -- the Agent Provider ------------------------------------------------------------------

    def issue_agent_token(self) -> str:
        machine = AgentTokenIssuance(config=self.ap_config)
        event: Event = IssueAgentToken(
            agent=AGENT_ID,
            key=self.agent_key.public_jwk,
            ps=PS,
            at=self.now,
            nonce=self.random(16),
        )
        queue: deque[Event] = deque([event])
        while queue:
            for action in machine.handle(queue.popleft()):
                if isinstance(action, SignBytes):
                    queue.append(self.sign(action))
                elif isinstance(action, Deliver):
                    self.ap_issued.append(action.result)
        return self.ap_issued[-1].token

    def revoke_agent_token(self, issued: IssuedAgentToken) -> HttpResponse:
        """The AP revokes an agent token at the PS (which cascades); the PS's last answer."""
        machine = AgentTokenRevocation(config=self.ap_config)
        assert self.ps_metadata.revocation_endpoint is not None
        event: Event = RevokeAgentToken(
            jti=issued.jti,
            exp=issued.exp,
            revocation_endpoint=self.ps_metadata.revocation_endpoint,
            at=self.now,
        )
        queue: deque[Event] = deque([event])
        last: HttpResponse | None = None
        while queue:
            for action in machine.handle(queue.popleft()):
                if isinstance(action, SignBytes):
                    queue.append(self.sign(action))
                elif isinstance(action, SendRequest):
                    last = self.send(action.request)
                    queue.append(ResponseReceived(response=last, at=self.now))
                elif isinstance(action, Wait):
                    self.advance(action.seconds)
                    queue.append(TimerFired(at=self.now))
        assert last is not None
        return last

    # -- the agent ---------------------------------------------------------------------------

    def new_flow(self) -> AgentFlow:
        return AgentFlow(config=self.agent_config, data=AgentData(store=self.agent_store))

    def call(
        self,
        method: str,
        url: str,
        body: Any = None,
        *,
        authorize: bool = False,
        stop: Callable[[AgentFlow], bool] | None = None,
    ) -> CallOutcome:
        """Make one agent call to completion (or until ``stop`` says so)."""
        headers: dict[str, str] = {}
        payload = b""
        if body is not None:
            headers["Content-Type"] = "application/json"
            payload = json.dumps(body).encode()
        request = HttpRequest(method=method, url=url, headers=headers, body=payload)
        start = StartCall(request=request, at=self.now, authorize=authorize)
        return self.drive(self.new_flow(), start, stop=stop)

    def drive(
        self,
        flow: AgentFlow,
        event: Event,
        *,
        stop: Callable[[AgentFlow], bool] | None = None,
    ) -> CallOutcome:
        """Run ``flow`` from ``event`` until it delivers, fails, or ``stop(flow)`` holds
        when it waits (the moment a host could snapshot it)."""
        queue: deque[Event] = deque([event])
        while queue:
            actions = flow.handle(queue.popleft())
            waits: list[Wait] = []
            for action in actions:
                if isinstance(action, SignBytes):
                    queue.append(self.sign(action))
                elif isinstance(action, SendRequest):
                    answer = self.send(action.request)
                    queue.append(ResponseReceived(response=answer, at=self.now))
                elif isinstance(action, RefreshAgentToken):
                    token = self.issue_agent_token()
                    queue.append(AgentTokenRefreshed(token=token, at=self.now))
                elif isinstance(action, DiscoverPersonServer):
                    assert action.issuer == PS
                    queue.append(PersonServerDiscovered(metadata=self.ps_metadata, at=self.now))
                elif isinstance(action, ShowInteraction):
                    self.visit(action)
                elif isinstance(action, PendingInputNeeded):
                    answer_text = self.agent_answers.pop(0)
                    body = clarification_response(answer_text)
                    queue.append(PostAnswer(body=body, at=self.now))
                elif isinstance(action, Wait):
                    waits.append(action)
                elif isinstance(action, Deliver):
                    assert isinstance(action.result, CallResult)
                    self.agent_store = action.result.store
                    return CallOutcome(flow=flow, result=action.result)
                elif isinstance(action, Fail):
                    self.agent_store = flow.data.store
                    return CallOutcome(flow=flow, error=action.error)
            for wait in waits:
                if stop is not None and stop(flow):
                    return CallOutcome(flow=flow)
                self.advance(wait.seconds)
                queue.append(TimerFired(at=self.now))
        return CallOutcome(flow=flow)


_PS_MACHINES: dict[str, type[Any]] = {
    "PersonTokenMachine": PersonTokenMachine,
    "AuthTokenMachine": AuthTokenMachine,
    "RevocationMachine": RevocationMachine,
}
_RESOURCE_PENDING: dict[str, type[Any]] = {
    "PendingInteraction": PendingInteraction,
    "DeferredDelivery": DeferredDelivery,
}
