"""The agent request loop (protocol -11 §6.0): every access mode, every requirement and
Signature-Error reaction, refresh at the 5-minute margin, the §8 agent-side checks.

The AP, PS and resource are test code built on core: tokens minted with ``mint_token``
and real keys, every agent request checked with ``RequestVerifier``, answers built with
the core header serialisers.
"""

from __future__ import annotations

import email.utils
import json
from collections.abc import Callable
from typing import Any

import pytest
from attrs import evolve
from hypothesis import given, settings
from hypothesis import strategies as st
from signing_helpers import JwkSigner, generated_ed25519

from aauth_core.errors import (
    AAuthError,
    IllegalTransition,
    RemoteProtocolError,
    SignatureFailure,
)
from aauth_core.headers.capabilities import Capability
from aauth_core.headers.requirement import Requirement
from aauth_core.headers.signature_error import signature_error_headers
from aauth_core.http import HttpRequest, HttpResponse
from aauth_core.identifiers import AgentId
from aauth_core.jws import decode_compact
from aauth_core.metadata import PersonServerMetadata
from aauth_core.requests import RequestVerifier, VerifiedRequest
from aauth_core.tokens import (
    DWK_ACCESS,
    DWK_AGENT,
    DWK_PERSON,
    DWK_RESOURCE,
    AgentTokenClaims,
    AuthTokenClaims,
    Confirmation,
    PersonTokenClaims,
    ResourceTokenClaims,
    StaticKeyResolver,
    TokenType,
    mint_token,
    verify_resource_token,
    verify_token,
)
from aauth_flows.machines import (
    Cancel,
    Deliver,
    Fail,
    ResponseReceived,
    SendRequest,
    ShowInteraction,
    SignatureProduced,
    SignBytes,
    SigningKey,
    Snapshot,
    TimerFired,
    Wait,
)
from aauth_flows.machines.agent import (
    AgentConfig,
    AgentData,
    AgentFlow,
    AgentState,
    AgentTokenRefreshed,
    CallResult,
    DiscoverPersonServer,
    PersonServerDiscovered,
    RefreshAgentToken,
    StartCall,
)
from aauth_flows.machines.agent_credentials import CachedToken, CredentialStore
from aauth_flows.machines.pending import (
    PendingInputNeeded,
    PendingUpdate,
    PostAnswer,
    clarification_response,
)

AP = "https://ap.example"
PS = "https://ps.example"
RES = "https://resource.example"
AS = "https://as.example"
T0 = 1_800_000_000
AGENT_ID = AgentId.parse("aauth:assistant@ap.example")

AGENT = generated_ed25519()
AP_KEY = generated_ed25519()
PS_KEY = generated_ed25519()
RES_KEY = generated_ed25519()
AS_KEY = generated_ed25519()
OTHER = generated_ed25519()
KEY = SigningKey(ref="software:agent", public_jwk=AGENT.public_jwk())
RESOLVER = StaticKeyResolver(
    {
        (AP, DWK_AGENT): (AP_KEY.public_jwk(),),
        (PS, DWK_PERSON): (PS_KEY.public_jwk(),),
        (RES, DWK_RESOURCE): (RES_KEY.public_jwk(),),
        (AS, DWK_ACCESS): (AS_KEY.public_jwk(),),
    }
)
PS_META = PersonServerMetadata.from_dict(
    {
        "issuer": PS,
        "jwks_uri": f"{PS}/jwks",
        "person_token_endpoint": f"{PS}/person-token",
        "auth_token_endpoint": f"{PS}/auth-token",
    }
)
CONFIG = AgentConfig(key=KEY, keys=RESOLVER, person_server=PS_META)


# -- the peers -------------------------------------------------------------------------


class World:
    """AP, PS and resource state shared by one test; every token is really minted."""

    def __init__(self) -> None:
        self.serial = 0
        self.log: list[tuple[str, str, str | None]] = []  # (method, url, token typ)
        self.ps_bodies: list[dict[str, Any]] = []
        self.shown: list[ShowInteraction] = []
        self.waits: list[int] = []
        self.refreshes = 0
        self.discoveries = 0

    def jti(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}-{self.serial}"

    def agent_token(self, iat: int, life: int = 3600, ps: str | None = PS) -> str:
        claims = AgentTokenClaims(
            iss=AP,
            dwk=DWK_AGENT,
            jti=self.jti("at"),
            iat=iat,
            exp=iat + life,
            sub=AGENT_ID,
            cnf=Confirmation(jwk=AGENT.public_jwk()),
            ps=ps,
        )
        return mint_token(claims, AP_KEY)

    def person_token(
        self, iat: int, life: int = 3600, aud: str = RES, key: JwkSigner = AGENT, **kw: Any
    ) -> str:
        claims = PersonTokenClaims(
            iss=PS,
            dwk=DWK_PERSON,
            jti=self.jti("pt"),
            iat=iat,
            exp=iat + life,
            aud=aud,
            sub="person-1",
            cnf=Confirmation(jwk=key.public_jwk()),
            **kw,
        )
        return mint_token(claims, PS_KEY)

    def resource_token(
        self,
        presented: VerifiedRequest,
        iat: int,
        *,
        iss: str = RES,
        aud: str = PS,
        jkt: str | None = None,
        signer: JwkSigner = RES_KEY,
    ) -> str:
        claims = presented.token.claims
        assert isinstance(claims, PersonTokenClaims | AuthTokenClaims)
        rt = ResourceTokenClaims(
            iss=iss,
            dwk=DWK_RESOURCE,
            jti=self.jti("rt"),
            iat=iat,
            exp=iat + 300,
            aud=aud,
            ps=PS,
            sub=claims.sub,
            presented_jti=claims.jti,
            agent_jkt=jkt or presented.key_thumbprint,
            scope="data.read",
        )
        return mint_token(rt, signer)

    def auth_token(
        self,
        rt: str,
        iat: int,
        life: int = 3600,
        *,
        aud: str | None = None,
        key: JwkSigner = AGENT,
        iss: str = PS,
        signer: JwkSigner = PS_KEY,
    ) -> str:
        claims = ResourceTokenClaims.from_payload(decode_compact(rt).payload)
        token = AuthTokenClaims(
            iss=iss,
            dwk=DWK_PERSON if iss == PS else DWK_ACCESS,
            jti=self.jti("auth"),
            iat=iat,
            exp=iat + life,
            aud=aud or claims.iss,
            ps=PS,
            sub=claims.sub,
            cnf=Confirmation(jwk=key.public_jwk()),
            scope=claims.scope,
        )
        return mint_token(token, signer)


def verify_at_resource(request: HttpRequest, at: int) -> VerifiedRequest:
    return RequestVerifier(keys=RESOLVER, audience=RES).verify(request, now=at)


def verify_at_ps(request: HttpRequest, at: int) -> tuple[VerifiedRequest, dict[str, Any]]:
    verifier = RequestVerifier(
        keys=RESOLVER,
        audience=PS,
        accepted_types=frozenset({TokenType.AGENT}),
        require_body_coverage=True,
    )
    verified = verifier.verify(request, now=at)
    body = json.loads(request.body) if request.body else {}
    return verified, body


def ok(body: dict[str, Any] | None = None, **headers: str) -> HttpResponse:
    raw = json.dumps(body or {"ok": True}).encode()
    return HttpResponse(
        status=200, headers={"Content-Type": "application/json", **headers}, body=raw
    )


def requirement(status: int, req: Requirement) -> HttpResponse:
    return HttpResponse(status=status, headers={"AAuth-Requirement": req.serialize()})


def pending(
    location: str, req: Requirement | None = None, status: str = "pending", **headers: str
) -> HttpResponse:
    fields = {"Location": location, "Cache-Control": "no-store", **headers}
    if req is not None:
        fields["AAuth-Requirement"] = req.serialize()
    return HttpResponse(status=202, headers=fields, body=json.dumps({"status": status}).encode())


def problem(status: int, code: str) -> HttpResponse:
    body = json.dumps({"error": code, "detail": code}).encode()
    return HttpResponse(
        status=status, headers={"Content-Type": "application/problem+json"}, body=body
    )


def sig_error(code: str, **kw: Any) -> HttpResponse:
    headers = signature_error_headers(SignatureFailure(code, code=code, **kw))
    return HttpResponse(status=401, headers=headers)


Server = Callable[[HttpRequest, int], HttpResponse]


def run(
    flow: AgentFlow,
    world: World,
    servers: dict[str, Server],
    first: Any,
    *,
    at: int = T0,
    answers: dict[str, Any] | None = None,
) -> list[Any]:
    """Drive ``flow`` like a driver would, until it delivers, fails or needs input.
    Returns every action seen."""
    seen: list[Any] = []
    queue = list(flow.handle(first))
    now = at
    while queue:
        action = queue.pop(0)
        seen.append(action)
        if isinstance(action, SignBytes):
            assert action.key == KEY.ref
            queue += flow.handle(SignatureProduced(signature=AGENT.sign(action.data)))
        elif isinstance(action, SendRequest):
            request = action.request
            typ = None
            if "signature-key" in request.headers:
                token = request.headers.get("signature-key").split('jwt="')[1].rstrip('"')  # type: ignore[union-attr]
                typ = CachedToken.parse(token).typ
            world.log.append((request.method, request.url, typ))
            server = next(s for prefix, s in servers.items() if request.url.startswith(prefix))
            queue += flow.handle(ResponseReceived(response=server(request, now), at=now))
        elif isinstance(action, Wait):
            world.waits.append(action.seconds)
            now += action.seconds
            queue += flow.handle(TimerFired(at=now))
        elif isinstance(action, RefreshAgentToken):
            world.refreshes += 1
            world.log.append(("REFRESH", AP, None))
            queue += flow.handle(AgentTokenRefreshed(token=world.agent_token(now), at=now))
        elif isinstance(action, DiscoverPersonServer):
            world.discoveries += 1
            queue += flow.handle(PersonServerDiscovered(metadata=PS_META, at=now))
        elif isinstance(action, ShowInteraction):
            world.shown.append(action)
        elif isinstance(action, PendingInputNeeded):
            if answers is None or "clarification" not in answers:
                return seen
            queue += flow.handle(PostAnswer(body=answers.pop("clarification"), at=now))
        elif isinstance(action, Deliver | Fail | PendingUpdate):
            continue
        else:  # pragma: no cover - a new action kind the test does not know
            raise AssertionError(action)
    return seen


def new_flow(
    world: World,
    store: CredentialStore | None = None,
    config: AgentConfig = CONFIG,
) -> AgentFlow:
    if store is None:
        store = CredentialStore(agent_token=CachedToken.parse(world.agent_token(T0 - 60)))
    return AgentFlow(config=config, data=AgentData(store=store))


def start(url: str = f"{RES}/data", method: str = "GET", at: int = T0, **kw: Any) -> StartCall:
    return StartCall(request=HttpRequest(method=method, url=url), at=at, **kw)


def result_of(actions: list[Any]) -> CallResult:
    [deliver] = [a for a in actions if isinstance(a, Deliver)]
    assert isinstance(deliver.result, CallResult)
    return deliver.result


def failure_of(actions: list[Any]) -> AAuthError:
    [fail] = [a for a in actions if isinstance(a, Fail)]
    return fail.error


class PersonTokenPS:
    """A PS person-token endpoint: verifies the agent's signed POST, mints for ``resource``."""

    def __init__(self, world: World, *, answers: list[HttpResponse] | None = None) -> None:
        self.world = world
        self.answers = answers or []
        self.issued: list[str] = []

    def __call__(self, request: HttpRequest, at: int) -> HttpResponse:
        verified, body = verify_at_ps(request, at)
        assert verified.token_type is TokenType.AGENT
        assert "content-digest" in verified.signature.covered
        self.world.ps_bodies.append(body)
        if self.answers:
            return self.answers.pop(0)
        token = self.world.person_token(at, aud=body["resource"])
        self.issued.append(token)
        return ok({"person_token": token, "expires_in": 3600})


class AuthTokenPS:
    """A PS auth-token endpoint; ``answers`` are returned first (202s, errors)."""

    def __init__(self, world: World, *, answers: list[HttpResponse] | None = None) -> None:
        self.world = world
        self.answers = answers or []
        self.presented: list[str] = []
        self.issued: list[str] = []

    def __call__(self, request: HttpRequest, at: int) -> HttpResponse:
        verified, body = verify_at_ps(request, at)
        assert verified.token_type is TokenType.AGENT
        self.world.ps_bodies.append(body)
        assert "presented_token" in body, "presented_token is REQUIRED (-11)"
        self.presented.append(body["presented_token"])
        self.last_rt = body["resource_token"]
        # §2.5 step 3 at the PS: the resource token names the presented token
        rt = verify_resource_token(body["resource_token"], keys=RESOLVER, now=at, audience=PS)
        presented = verify_token(
            body["presented_token"],
            expected=(TokenType.PERSON, TokenType.AUTH),
            keys=RESOLVER,
            now=at,
            audience=rt.claims.iss,
        )
        assert rt.claims.presented_jti == presented.claims.jti
        assert rt.claims.agent_jkt == AGENT.public_jwk().thumbprint()
        if self.answers:
            return self.answers.pop(0)
        token = self.world.auth_token(body["resource_token"], at)
        self.issued.append(token)
        return ok({"auth_token": token, "expires_in": 3600})


def ps_router(person: Server, auth: Server) -> Server:
    def route(request: HttpRequest, at: int) -> HttpResponse:
        if request.url == PS_META.person_token_endpoint:
            return person(request, at)
        if request.url == PS_META.auth_token_endpoint:
            return auth(request, at)
        raise AssertionError(request.url)

    return route


def three_party_resource(world: World, seen: list[VerifiedRequest]) -> Server:
    """agent token → person-token; person token → auth-token + RT; auth token → 200."""

    def serve(request: HttpRequest, at: int) -> HttpResponse:
        verified = verify_at_resource(request, at)
        seen.append(verified)
        if verified.token_type is TokenType.AGENT:
            return requirement(401, Requirement.person_token())
        if verified.token_type is TokenType.PERSON:
            rt = world.resource_token(verified, at)
            return requirement(401, Requirement.auth_token(rt))
        return ok({"data": "secret"})

    return serve


# -- the five access modes ---------------------------------------------------------------


def test_agent_identity_succeeds_on_the_first_try() -> None:
    world = World()
    seen: list[VerifiedRequest] = []

    def resource(request: HttpRequest, at: int) -> HttpResponse:
        seen.append(verify_at_resource(request, at))
        return ok({"hello": "agent"})

    flow = new_flow(world)
    actions = run(flow, world, {RES: resource}, start())
    result = result_of(actions)
    assert result.response.status == 200 and flow.state is AgentState.DONE
    assert [v.token_type for v in seen] == [TokenType.AGENT]
    assert seen[0].agent == AGENT_ID
    assert len([a for a in actions if isinstance(a, SendRequest)]) == 1


def test_resource_managed_interaction_then_session_token_on_the_next_call() -> None:
    world = World()
    polls: list[VerifiedRequest] = []
    later: list[VerifiedRequest] = []
    interaction = Requirement.interaction("https://resource.example/interact", "A1B2-C3D4")

    def resource(request: HttpRequest, at: int) -> HttpResponse:
        verified = verify_at_resource(request, at)
        assert verified.token_type is TokenType.AGENT
        if request.url == f"{RES}/data" and "authorization" not in request.headers:
            return pending("/pending/1", interaction)
        if request.url == f"{RES}/pending/1":
            polls.append(verified)
            if len(polls) == 1:
                return pending("/pending/1", interaction, status="interacting")
            return ok({"data": 1}, **{"AAuth-Access": "sess-abc.123"})
        later.append(verified)
        return ok({"data": 2})

    flow = new_flow(world)
    result = result_of(run(flow, world, {RES: resource}, start()))
    assert world.shown == [
        ShowInteraction(url="https://resource.example/interact?code=A1B2-C3D4", code="A1B2-C3D4")
    ]
    assert world.waits == [5, 5]  # no Retry-After: the 5 s default
    assert [m for m, _, _ in world.log] == ["GET", "GET", "GET"]
    assert result.store.session_token(RES) == "sess-abc.123"

    second = new_flow(world, store=result.store)
    run(second, world, {RES: resource}, start(at=T0 + 30))
    [call] = later
    assert "authorization" in call.signature.covered
    sent = [r for r in world.log if r[1] == f"{RES}/data"]
    assert len(sent) == 2


def test_person_identity_gets_a_person_token_then_succeeds() -> None:
    world = World()
    seen: list[VerifiedRequest] = []

    def resource(request: HttpRequest, at: int) -> HttpResponse:
        verified = verify_at_resource(request, at)
        seen.append(verified)
        if verified.token_type is TokenType.AGENT:
            return requirement(401, Requirement.person_token())
        return ok({"person": verified.person})

    person = PersonTokenPS(world)
    config = evolve(CONFIG, capabilities=(Capability.INTERACTION,))
    flow = new_flow(world, config=config)
    result = result_of(
        run(flow, world, {RES: resource, PS: ps_router(person, AuthTokenPS(world))}, start())
    )
    assert [v.token_type for v in seen] == [TokenType.AGENT, TokenType.PERSON]
    assert seen[1].person == (PS, "person-1")
    assert world.ps_bodies == [{"resource": RES, "capabilities": ["interaction"]}]
    assert result.store.person_token(RES, None, T0) is not None


def test_person_server_metadata_comes_from_discovery_when_not_configured() -> None:
    world = World()
    seen: list[VerifiedRequest] = []
    flow = new_flow(world, config=evolve(CONFIG, person_server=None))
    servers = {
        RES: three_party_resource(world, seen),
        PS: ps_router(PersonTokenPS(world), AuthTokenPS(world)),
    }
    result = result_of(run(flow, world, servers, start()))
    assert world.discoveries == 1 and result.store.person_server == PS_META


def test_ps_authorization_reactive_with_interaction_at_the_ps() -> None:
    world = World()
    seen: list[VerifiedRequest] = []
    interaction = Requirement.interaction("https://ps.example/consent", "WXYZ-2345")
    auth = AuthTokenPS(
        world, answers=[pending("/pending/auth-1", interaction, **{"Retry-After": "2"})]
    )
    polls: list[VerifiedRequest] = []

    def ps(request: HttpRequest, at: int) -> HttpResponse:
        if request.url == f"{PS}/pending/auth-1":
            verified = RequestVerifier(
                keys=RESOLVER, audience=PS, accepted_types=frozenset({TokenType.AGENT})
            ).verify(request, now=at)
            polls.append(verified)
            assert request.method == "GET" and not request.body
            return ok({"auth_token": world.auth_token(auth.last_rt, at), "expires_in": 3600})
        return ps_router(PersonTokenPS(world), auth)(request, at)

    flow = new_flow(world)
    result = result_of(
        run(
            flow,
            world,
            {RES: three_party_resource(world, seen), PS: ps},
            start(justification="find times"),
        )
    )
    assert [v.token_type for v in seen] == [TokenType.AGENT, TokenType.PERSON, TokenType.AUTH]
    # presented_token is the person token the resource answered with the resource token
    assert auth.presented == [seen[1].token.token]
    assert world.ps_bodies[-1]["justification"] == "find times"
    assert world.shown == [
        ShowInteraction(url="https://ps.example/consent?code=WXYZ-2345", code="WXYZ-2345")
    ]
    assert world.waits == [2] and len(polls) == 1
    assert result.response.status == 200
    assert result.store.auth_token(RES, T0 + 10) is not None


def test_402_with_auth_token_requirement_is_handled_like_401() -> None:
    world = World()
    seen: list[VerifiedRequest] = []

    def resource(request: HttpRequest, at: int) -> HttpResponse:
        verified = verify_at_resource(request, at)
        seen.append(verified)
        if verified.token_type is TokenType.AGENT:
            return requirement(401, Requirement.person_token())
        if verified.token_type is TokenType.PERSON:
            rt = world.resource_token(verified, at)
            response = requirement(402, Requirement.auth_token(rt))
            return evolve(
                response, headers=response.headers.with_fields({"WWW-Authenticate": "Payment x"})
            )
        return ok()

    auth = AuthTokenPS(world)
    flow = new_flow(world)
    result = result_of(
        run(flow, world, {RES: resource, PS: ps_router(PersonTokenPS(world), auth)}, start())
    )
    assert result.response.status == 200 and len(auth.issued) == 1
    assert seen[-1].token.token == auth.issued[0]


def test_step_up_presents_the_auth_token_as_presented_token() -> None:
    world = World()
    seen: list[VerifiedRequest] = []
    first_auth: list[str] = []

    def resource(request: HttpRequest, at: int) -> HttpResponse:
        verified = verify_at_resource(request, at)
        seen.append(verified)
        if verified.token_type is TokenType.AGENT:
            return requirement(401, Requirement.person_token())
        if verified.token_type is TokenType.PERSON:
            return requirement(401, Requirement.auth_token(world.resource_token(verified, at)))
        if not first_auth:
            first_auth.append(verified.token.token)
            # step-up: a new resource token naming the auth token just presented
            return requirement(401, Requirement.auth_token(world.resource_token(verified, at)))
        return ok()

    auth = AuthTokenPS(world)
    flow = new_flow(world)
    result = result_of(
        run(flow, world, {RES: resource, PS: ps_router(PersonTokenPS(world), auth)}, start())
    )
    assert result.response.status == 200
    assert auth.presented[0] == seen[1].token.token  # the person token
    assert auth.presented[1] == first_auth[0]  # step-up: the auth token presented
    assert seen[-1].token.token == auth.issued[1]


def test_deferred_auth_token_delivery_polls_presenting_the_auth_token() -> None:
    world = World()
    polls: list[VerifiedRequest] = []

    def resource(request: HttpRequest, at: int) -> HttpResponse:
        verified = verify_at_resource(request, at)
        if request.url == f"{RES}/pending/inv-9":
            polls.append(verified)
            return ok({"result": "held invocation ran"})
        if verified.token_type is TokenType.AGENT:
            return requirement(401, Requirement.person_token())
        rt = world.resource_token(verified, at)
        return pending("/pending/inv-9", Requirement.auth_token(rt))

    auth = AuthTokenPS(world)
    flow = new_flow(world)
    actions = run(
        flow,
        world,
        {RES: resource, PS: ps_router(PersonTokenPS(world), auth)},
        start("https://resource.example/api", "POST"),
    )
    result = result_of(actions)
    assert json.loads(result.response.body) == {"result": "held invocation ran"}
    [poll] = polls
    assert poll.token_type is TokenType.AUTH and poll.token.token == auth.issued[0]
    assert not [a for a in actions if isinstance(a, PendingInputNeeded)]
    assert [m for m, u, _ in world.log if u.startswith(RES)] == ["POST", "POST", "GET"]


# -- Signature-Error reactions ---------------------------------------------------------------


def scripted(answers: list[HttpResponse], seen: list[VerifiedRequest]) -> Server:
    def serve(request: HttpRequest, at: int) -> HttpResponse:
        seen.append(verify_at_resource(request, at))
        return answers.pop(0) if answers else ok()

    return serve


def test_expired_jwt_on_the_agent_token_refreshes_it_at_the_ap() -> None:
    world = World()
    seen: list[VerifiedRequest] = []
    flow = new_flow(world)
    result = result_of(run(flow, world, {RES: scripted([sig_error("expired_jwt")], seen)}, start()))
    assert world.refreshes == 1 and result.response.status == 200
    assert seen[0].token.token != seen[1].token.token
    assert (
        result.store.agent_token is not None
        and result.store.agent_token.token == seen[1].token.token
    )


def test_revoked_jwt_on_the_auth_token_gets_a_new_person_token_then_reauthorizes() -> None:
    world = World()
    seen: list[VerifiedRequest] = []
    revoked: list[str] = []

    def resource(request: HttpRequest, at: int) -> HttpResponse:
        verified = verify_at_resource(request, at)
        seen.append(verified)
        if verified.token_type is TokenType.AUTH and not revoked:
            revoked.append(verified.token.token)
            response = sig_error("revoked_jwt")
            return evolve(
                response,
                headers=response.headers.with_fields(
                    {"AAuth-Requirement": Requirement.person_token().serialize()}
                ),
            )
        return three_party_resource(world, [])(request, at)

    person = PersonTokenPS(world)
    auth = AuthTokenPS(world)
    flow = new_flow(world)
    result = result_of(run(flow, world, {RES: resource, PS: ps_router(person, auth)}, start()))
    assert result.response.status == 200
    types = [v.token_type for v in seen]
    assert types == [
        TokenType.AGENT,
        TokenType.PERSON,
        TokenType.AUTH,  # revoked
        TokenType.PERSON,  # a new person token
        TokenType.AUTH,  # re-authorized
    ]
    assert len(person.issued) == 2 and seen[3].token.token == person.issued[1]
    assert auth.presented[1] == person.issued[1]


def test_expired_jwt_on_the_person_token_gets_a_new_one() -> None:
    world = World()
    seen: list[VerifiedRequest] = []
    expired: list[str] = []

    def resource(request: HttpRequest, at: int) -> HttpResponse:
        verified = verify_at_resource(request, at)
        seen.append(verified)
        if verified.token_type is TokenType.AGENT:
            return requirement(401, Requirement.person_token())
        if not expired:
            expired.append(verified.token.token)
            return sig_error("expired_jwt")
        return ok()

    person = PersonTokenPS(world)
    flow = new_flow(world)
    result = result_of(
        run(flow, world, {RES: resource, PS: ps_router(person, AuthTokenPS(world))}, start())
    )
    assert result.response.status == 200 and len(person.issued) == 2
    assert seen[-1].token.token == person.issued[1] != expired[0]


def _date(at: int) -> str:
    return email.utils.formatdate(at, usegmt=True)


def test_clock_skew_waits_for_the_server_clock_then_resends_once() -> None:
    world = World()
    seen: list[VerifiedRequest] = []
    answers = [sig_error("clock_skew")]
    answers[0] = evolve(
        answers[0], headers=answers[0].headers.with_fields({"Date": _date(T0 - 20)})
    )
    flow = new_flow(world)
    result = result_of(run(flow, world, {RES: scripted(answers, seen)}, start()))
    assert world.waits == [21] and result.response.status == 200
    assert seen[1].signature.created == T0 + 21


@pytest.mark.parametrize("date", [None, "garbage", "ahead"])
def test_clock_skew_without_a_usable_server_date_fails(date: str | None) -> None:
    world = World()
    response = sig_error("clock_skew")
    if date is not None:
        value = _date(T0 + 100) if date == "ahead" else date
        response = evolve(response, headers=response.headers.with_fields({"Date": value}))
    flow = new_flow(world)
    error = failure_of(run(flow, world, {RES: scripted([response], [])}, start()))
    assert error.code == "clock_skew" and error.status == 401 and flow.state is AgentState.FAILED


def test_clock_skew_twice_fails() -> None:
    world = World()
    skew = sig_error("clock_skew")
    skew = evolve(skew, headers=skew.headers.with_fields({"Date": _date(T0 - 10)}))
    flow = new_flow(world)
    error = failure_of(run(flow, world, {RES: scripted([skew, skew], [])}, start()))
    assert error.code == "clock_skew" and world.waits == [11]


def test_invalid_input_adds_the_required_components_and_resends_once() -> None:
    world = World()
    seen: list[VerifiedRequest] = []
    answers = [sig_error("invalid_input", required_input=("content-type", "content-digest"))]

    def resource(request: HttpRequest, at: int) -> HttpResponse:
        if answers:
            verify_at_resource(request, at)
            return answers.pop(0)
        verified = RequestVerifier(
            keys=RESOLVER,
            audience=RES,
            required_components=(
                "@method",
                "@authority",
                "@path",
                "signature-key",
                "content-type",
                "content-digest",
            ),
        ).verify(request, now=at)
        seen.append(verified)
        return ok()

    flow = new_flow(world)
    request = HttpRequest(
        method="POST", url=f"{RES}/data", headers={"Content-Type": "application/json"}, body=b"{}"
    )
    result = result_of(run(flow, world, {RES: resource}, StartCall(request=request, at=T0)))
    assert result.response.status == 200
    assert "content-type" in seen[0].signature.covered
    assert "content-digest" in seen[0].signature.covered


def test_invalid_input_that_cannot_be_covered_fails() -> None:
    world = World()
    flow = new_flow(world)
    response = sig_error("invalid_input", required_input=("x-missing-header",))
    error = failure_of(run(flow, world, {RES: scripted([response], [])}, start()))
    assert error.code == "invalid_input" and flow.state is AgentState.FAILED


def test_invalid_input_twice_fails() -> None:
    world = World()
    response = sig_error("invalid_input", required_input=("@query",))
    flow = new_flow(world)
    error = failure_of(
        run(flow, world, {RES: scripted([response, response], [])}, start(f"{RES}/data?x=1"))
    )
    assert error.code == "invalid_input" and len(world.log) == 2


@pytest.mark.parametrize(
    ("code", "kw"),
    [
        ("unsupported_scheme", {"accept_schemes": ("jwks_uri",)}),
        ("unsupported_algorithm", {"accept_algs": ("ES256",)}),
        ("invalid_signature", {}),
        ("unknown_key", {}),
        ("invalid_jwt", {}),
    ],
)
def test_signature_errors_the_agent_cannot_fix_fail(code: str, kw: dict[str, Any]) -> None:
    world = World()
    flow = new_flow(world)
    error = failure_of(run(flow, world, {RES: scripted([sig_error(code, **kw)], [])}, start()))
    assert isinstance(error, SignatureFailure) and error.code == code
    assert error.accept_schemes == kw.get("accept_schemes", ())
    assert error.accept_algs == kw.get("accept_algs", ())
    assert flow.state is AgentState.FAILED and len(world.log) == 1


def test_403_is_a_denial() -> None:
    world = World()
    flow = new_flow(world)
    error = failure_of(run(flow, world, {RES: scripted([problem(403, "denied")], [])}, start()))
    assert (error.code, error.status) == ("denied", 403) and flow.state is AgentState.FAILED


def test_s8_unknown_requirement_on_401_fails() -> None:
    world = World()
    flow = new_flow(world)
    response = requirement(401, Requirement(requirement="mystery-token"))
    error = failure_of(run(flow, world, {RES: scripted([response], [])}, start()))
    assert error.code == "unsupported_requirement" and flow.state is AgentState.FAILED


def test_agent_token_requirement_switches_once_then_fails() -> None:
    world = World()
    seen: list[VerifiedRequest] = []
    store = CredentialStore(
        agent_token=CachedToken.parse(world.agent_token(T0 - 60)),
        person_server=PS_META,
    ).put_person_token(RES, None, CachedToken.parse(world.person_token(T0 - 60)))
    answers = [
        requirement(401, Requirement.agent_token()),
        requirement(401, Requirement.agent_token()),
    ]
    flow = new_flow(world, store=store)
    error = failure_of(run(flow, world, {RES: scripted(answers, seen)}, start()))
    assert [v.token_type for v in seen] == [TokenType.PERSON, TokenType.AGENT]
    assert error.code == "unsatisfiable"


def test_person_token_requirement_without_a_ps_is_unsatisfiable() -> None:
    world = World()
    store = CredentialStore(agent_token=CachedToken.parse(world.agent_token(T0 - 60, ps=None)))
    flow = new_flow(world, store=store)
    error = failure_of(
        run(
            flow,
            world,
            {RES: scripted([requirement(401, Requirement.person_token())], [])},
            start(),
        )
    )
    assert error.code == "unsatisfiable" and flow.state is AgentState.FAILED


# -- refresh at the margin, top-down --------------------------------------------------------


def test_refresh_at_the_five_minute_margin_goes_top_down() -> None:
    world = World()
    seen: list[VerifiedRequest] = []
    at = T0 + 3600 - 240  # four minutes before every token below expires
    old_pt = world.person_token(T0)
    store = CredentialStore(agent_token=CachedToken.parse(world.agent_token(T0)))
    store = store.put_person_token(RES, None, CachedToken.parse(old_pt))
    rt = world.resource_token(verify_at_resource_like(old_pt), T0)
    store = store.put_auth_token(RES, CachedToken.parse(world.auth_token(rt, T0)))
    person = PersonTokenPS(world)
    auth = AuthTokenPS(world)
    flow = new_flow(world, store=store)
    result = result_of(
        run(
            flow,
            world,
            {RES: three_party_resource(world, seen), PS: ps_router(person, auth)},
            start(at=at),
            at=at,
        )
    )
    order = [(m, u) for m, u, _ in world.log]
    assert order == [
        ("REFRESH", AP),  # agent token first
        ("POST", PS_META.person_token_endpoint),  # then the person token
        ("GET", f"{RES}/data"),  # then a fresh resource token
        ("POST", PS_META.auth_token_endpoint),  # then the auth token
        ("GET", f"{RES}/data"),
    ]
    assert [v.token_type for v in seen] == [TokenType.PERSON, TokenType.AUTH]
    for verified in seen:  # nothing inside the margin was presented
        assert verified.token.exp - at >= 300
    assert result.response.status == 200


def verify_at_resource_like(person_token: str) -> VerifiedRequest:
    """A VerifiedRequest for ``person_token`` (to mint a resource token outside a call)."""
    request = HttpRequest(method="GET", url=f"{RES}/x")
    from aauth_core.requests import sign_aauth_request

    fields = sign_aauth_request(request, AGENT, token=person_token, created=T0)
    signed = evolve(request, headers=request.headers.with_fields(fields))
    return verify_at_resource(signed, T0)


def test_fresh_tokens_are_reused_without_any_ps_round_trip() -> None:
    world = World()
    seen: list[VerifiedRequest] = []
    pt = world.person_token(T0)
    rt = world.resource_token(verify_at_resource_like(pt), T0)
    store = CredentialStore(agent_token=CachedToken.parse(world.agent_token(T0)))
    store = store.put_person_token(RES, None, CachedToken.parse(pt))
    store = store.put_auth_token(RES, CachedToken.parse(world.auth_token(rt, T0)))
    flow = new_flow(world, store=store)
    run(flow, world, {RES: three_party_resource(world, seen)}, start(at=T0 + 600), at=T0 + 600)
    assert [v.token_type for v in seen] == [TokenType.AUTH] and world.refreshes == 0


# -- token-endpoint errors -----------------------------------------------------------------


def test_expired_presented_token_gets_a_new_person_token_then_a_fresh_resource_token() -> None:
    world = World()
    seen: list[VerifiedRequest] = []
    person = PersonTokenPS(world)
    auth = AuthTokenPS(world, answers=[problem(400, "expired_presented_token")])
    flow = new_flow(world)
    result = result_of(
        run(
            flow,
            world,
            {RES: three_party_resource(world, seen), PS: ps_router(person, auth)},
            start(),
        )
    )
    assert result.response.status == 200 and len(person.issued) == 2
    assert auth.presented == [person.issued[0], person.issued[1]]
    assert [v.token_type for v in seen] == [
        TokenType.AGENT,
        TokenType.PERSON,
        TokenType.PERSON,
        TokenType.AUTH,
    ]


def test_expired_resource_token_calls_the_resource_again() -> None:
    world = World()
    seen: list[VerifiedRequest] = []
    person = PersonTokenPS(world)
    auth = AuthTokenPS(world, answers=[problem(400, "expired_resource_token")])
    flow = new_flow(world)
    result = result_of(
        run(
            flow,
            world,
            {RES: three_party_resource(world, seen), PS: ps_router(person, auth)},
            start(),
        )
    )
    assert result.response.status == 200 and len(person.issued) == 1
    assert [v.token_type for v in seen] == [
        TokenType.AGENT,
        TokenType.PERSON,
        TokenType.PERSON,
        TokenType.AUTH,
    ]


def test_as_unreachable_backs_off_then_gets_a_fresh_resource_token() -> None:
    world = World()
    seen: list[VerifiedRequest] = []
    auth = AuthTokenPS(world, answers=[problem(502, "as_unreachable")])
    flow = new_flow(world)
    result = result_of(
        run(
            flow,
            world,
            {RES: three_party_resource(world, seen), PS: ps_router(PersonTokenPS(world), auth)},
            start(),
        )
    )
    assert world.waits == [CONFIG.as_unreachable_backoff] and result.response.status == 200
    rts = [b["resource_token"] for b in world.ps_bodies if "resource_token" in b]
    assert len(rts) == 2 and rts[0] != rts[1]


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (403, "user_unreachable"),
        (403, "denied"),
        (403, "mission_terminated"),
        (400, "invalid_presented_token"),
    ],
)
def test_terminal_token_endpoint_errors_fail(status: int, code: str) -> None:
    world = World()
    auth = AuthTokenPS(world, answers=[problem(status, code)])
    flow = new_flow(world)
    error = failure_of(
        run(
            flow,
            world,
            {RES: three_party_resource(world, []), PS: ps_router(PersonTokenPS(world), auth)},
            start(),
        )
    )
    assert (error.code, error.status) == (code, status) and flow.state is AgentState.FAILED


def test_person_token_endpoint_refusal_fails() -> None:
    world = World()
    person = PersonTokenPS(world, answers=[problem(403, "user_unreachable")])
    flow = new_flow(world)
    error = failure_of(
        run(
            flow,
            world,
            {RES: three_party_resource(world, []), PS: ps_router(person, AuthTokenPS(world))},
            start(),
        )
    )
    assert error.code == "user_unreachable"


def test_mission_goes_into_the_person_token_request_and_keys_the_cache() -> None:
    world = World()
    mission = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"

    class MissionPS(PersonTokenPS):
        def __call__(self, request: HttpRequest, at: int) -> HttpResponse:
            _, body = verify_at_ps(request, at)
            self.world.ps_bodies.append(body)
            token = self.world.person_token(
                at, aud=body["resource"], mission_s256=body["mission_s256"]
            )
            return ok({"person_token": token, "expires_in": 3600})

    def resource(request: HttpRequest, at: int) -> HttpResponse:
        verified = verify_at_resource(request, at)
        if verified.token_type is TokenType.AGENT:
            return requirement(401, Requirement.person_token())
        return ok()

    flow = new_flow(world)
    result = result_of(
        run(
            flow,
            world,
            {RES: resource, PS: ps_router(MissionPS(world), AuthTokenPS(world))},
            start(mission_s256=mission),
        )
    )
    assert world.ps_bodies[0]["mission_s256"] == mission
    assert result.store.person_token(RES, mission, T0) is not None
    assert result.store.person_token(RES, None, T0) is None


# -- clarification, cancel, snapshot ---------------------------------------------------------


def test_clarification_is_answered_with_a_post_to_the_pending_url() -> None:
    world = World()
    auth = AuthTokenPS(world, answers=[pending("/pending/c1", Requirement.clarification())])
    answered: list[dict[str, Any]] = []

    def ps(request: HttpRequest, at: int) -> HttpResponse:
        if request.url == f"{PS}/pending/c1":
            _, body = verify_at_ps(request, at)
            assert request.method == "POST"
            answered.append(body)
            return ok({"auth_token": world.auth_token(auth.last_rt, at), "expires_in": 3600})
        return ps_router(PersonTokenPS(world), auth)(request, at)

    flow = new_flow(world)
    servers = {RES: three_party_resource(world, []), PS: ps}
    actions = run(flow, world, servers, start())
    [needed] = [a for a in actions if isinstance(a, PendingInputNeeded)]
    assert needed.requirement == Requirement.clarification() and flow.state is AgentState.PENDING
    more = run_from(
        flow, world, servers, PostAnswer(body=clarification_response("Tuesdays only"), at=T0 + 5)
    )
    assert answered == [
        {"action": "clarification_response", "clarification_response": "Tuesdays only"}
    ]
    assert result_of(more).response.status == 200


def run_from(flow: AgentFlow, world: World, servers: dict[str, Server], event: Any) -> list[Any]:
    return run(flow, world, servers, event, at=getattr(event, "at", T0))


def test_cancel_sends_delete_to_the_pending_url() -> None:
    world = World()
    deleted: list[VerifiedRequest] = []

    def resource(request: HttpRequest, at: int) -> HttpResponse:
        verified = verify_at_resource(request, at)
        if request.method == "DELETE":
            deleted.append(verified)
            return HttpResponse(status=204)
        return pending("/pending/9", Requirement.approval())

    flow = new_flow(world)
    [sign] = flow.handle(start())
    [send] = flow.handle(SignatureProduced(signature=AGENT.sign(sign.data)))
    actions = flow.handle(ResponseReceived(response=resource(send.request, T0), at=T0))
    assert isinstance(actions[-1], Wait) and flow.state is AgentState.PENDING
    [sign] = flow.handle(Cancel(at=T0 + 1))
    [send] = flow.handle(SignatureProduced(signature=AGENT.sign(sign.data)))
    assert send.request.method == "DELETE" and send.request.url == f"{RES}/pending/9"
    [fail] = flow.handle(ResponseReceived(response=resource(send.request, T0 + 1), at=T0 + 1))
    assert isinstance(fail, Fail) and fail.error.code == "cancelled"
    assert flow.state is AgentState.CANCELLED and len(deleted) == 1


def test_snapshot_while_polling_restores_from_json_and_completes() -> None:
    world = World()
    seen: list[VerifiedRequest] = []
    interaction = Requirement.interaction("https://ps.example/consent", "QRST-7890")
    auth = AuthTokenPS(world, answers=[pending("/pending/a", interaction)])

    def ps(request: HttpRequest, at: int) -> HttpResponse:
        if request.url == f"{PS}/pending/a":
            verify_at_ps(request, at)
            return ok({"auth_token": world.auth_token(auth.last_rt, at), "expires_in": 3600})
        return ps_router(PersonTokenPS(world), auth)(request, at)

    servers = {RES: three_party_resource(world, seen), PS: ps}
    flow = new_flow(world)
    # drive by hand until the flow waits to poll the PS
    actions = flow.handle(start())
    now = T0
    while not any(isinstance(a, Wait) for a in actions):
        action = actions.pop(0)
        if isinstance(action, SignBytes):
            actions += flow.handle(SignatureProduced(signature=AGENT.sign(action.data)))
        elif isinstance(action, SendRequest):
            server = next(s for p, s in servers.items() if action.request.url.startswith(p))
            actions += flow.handle(ResponseReceived(response=server(action.request, now), at=now))
    assert flow.state is AgentState.PENDING
    text = flow.snapshot().to_json()
    json.loads(text)  # plain JSON
    restored = AgentFlow.restore(Snapshot.from_json(text), config=CONFIG)
    assert restored is not flow and restored.data == flow.data and restored.state is flow.state
    result = result_of(run(restored, world, servers, TimerFired(at=T0 + 5), at=T0 + 5))
    assert result.response.status == 200 and seen[-1].token_type is TokenType.AUTH


# -- §8 agent-side checks (named negative tests) ---------------------------------------------


def _challenge_with(
    make_rt: Callable[[World, VerifiedRequest, int], str],
) -> tuple[AgentFlow, World, dict[str, Server]]:
    world = World()

    def resource(request: HttpRequest, at: int) -> HttpResponse:
        verified = verify_at_resource(request, at)
        if verified.token_type is TokenType.AGENT:
            return requirement(401, Requirement.person_token())
        return requirement(401, Requirement.auth_token(make_rt(world, verified, at)))

    servers = {RES: resource, PS: ps_router(PersonTokenPS(world), AuthTokenPS(world))}
    return new_flow(world), world, servers


@pytest.mark.parametrize(
    ("name", "make_rt", "match"),
    [
        (
            "wrong_agent_jkt",
            lambda w, v, at: w.resource_token(v, at, jkt=OTHER.public_jwk().thumbprint()),
            "agent_jkt",
        ),
        ("wrong_iss", lambda w, v, at: w.resource_token(v, at, iss="https://evil.example"), "iss"),
        ("wrong_typ", lambda w, v, at: w.person_token(at), "typ"),
        (
            "wrong_signer",
            lambda w, v, at: w.resource_token(v, at, signer=OTHER),
            "invalid_resource_token",
        ),
        ("expired", lambda w, v, at: w.resource_token(v, at - 300), "expired"),
    ],
)
def test_s8_resource_token_checks(name: str, make_rt: Any, match: str) -> None:
    flow, world, servers = _challenge_with(make_rt)
    with pytest.raises(RemoteProtocolError, match=match) as info:
        run(flow, world, servers, start())
    assert info.value.code == "invalid_resource_token"
    assert flow.state is AgentState.ERROR
    assert not [u for _, u, _ in world.log if u == PS_META.auth_token_endpoint]


def _bad_auth_token(
    issue: Callable[[World, str, int], str],
) -> tuple[AgentFlow, World, dict[str, Server]]:
    world = World()

    class BadPS(AuthTokenPS):
        def __call__(self, request: HttpRequest, at: int) -> HttpResponse:
            _, body = verify_at_ps(request, at)
            return ok({"auth_token": issue(self.world, body["resource_token"], at)})

    servers = {
        RES: three_party_resource(world, []),
        PS: ps_router(PersonTokenPS(world), BadPS(world)),
    }
    return new_flow(world), world, servers


@pytest.mark.parametrize(
    ("name", "issue", "match"),
    [
        ("wrong_cnf", lambda w, rt, at: w.auth_token(rt, at, key=OTHER), "cnf"),
        ("wrong_aud", lambda w, rt, at: w.auth_token(rt, at, aud="https://other.example"), "aud"),
        ("wrong_iss", lambda w, rt, at: w.auth_token(rt, at, iss=AS, signer=AS_KEY), "iss"),
        ("person_token_where_auth_expected", lambda w, rt, at: w.person_token(at), "typ"),
        ("wrong_typ_resource", lambda w, rt, at: rt, "typ"),
        ("expired_zero_leeway", lambda w, rt, at: w.auth_token(rt, at - 3600), "expired"),
    ],
)
def test_s8_auth_token_checks(name: str, issue: Any, match: str) -> None:
    flow, world, servers = _bad_auth_token(issue)
    with pytest.raises(RemoteProtocolError, match=match) as info:
        run(flow, world, servers, start())
    assert info.value.code == "invalid_auth_token" and flow.state is AgentState.ERROR
    assert world.log[-1][1] == PS_META.auth_token_endpoint  # never presented to the resource


@pytest.mark.parametrize(
    ("name", "issue", "match"),
    [
        ("wrong_aud", lambda w, at: w.person_token(at, aud="https://other.example"), "aud"),
        ("wrong_cnf", lambda w, at: w.person_token(at, key=OTHER), "cnf"),
        ("expired_zero_leeway", lambda w, at: w.person_token(at - 3600), "expired"),
    ],
)
def test_s8_person_token_checks(name: str, issue: Any, match: str) -> None:
    world = World()

    class BadPS(PersonTokenPS):
        def __call__(self, request: HttpRequest, at: int) -> HttpResponse:
            verify_at_ps(request, at)
            return ok({"person_token": issue(self.world, at)})

    flow = new_flow(world)
    servers = {
        RES: three_party_resource(world, []),
        PS: ps_router(BadPS(world), AuthTokenPS(world)),
    }
    with pytest.raises(RemoteProtocolError, match=match):
        run(flow, world, servers, start())
    assert flow.state is AgentState.ERROR


def test_s8_pending_location_of_another_origin_is_refused() -> None:
    world = World()
    response = pending("https://evil.example/pending/1", Requirement.approval())
    flow = new_flow(world)
    with pytest.raises(RemoteProtocolError, match="origin"):
        run(flow, world, {RES: scripted([response], [])}, start())
    assert flow.state is AgentState.ERROR


def test_s8_agent_token_from_the_ap_must_bind_the_agent_key() -> None:
    world = World()
    flow = new_flow(world, store=CredentialStore())
    [refresh] = flow.handle(start())
    assert isinstance(refresh, RefreshAgentToken) and refresh.current is None
    claims = AgentTokenClaims(
        iss=AP,
        dwk=DWK_AGENT,
        jti="x",
        iat=T0,
        exp=T0 + 3600,
        sub=AGENT_ID,
        cnf=Confirmation(jwk=OTHER.public_jwk()),
    )
    with pytest.raises(RemoteProtocolError, match="cnf"):
        flow.handle(AgentTokenRefreshed(token=mint_token(claims, AP_KEY), at=T0))
    assert flow.state is AgentState.ERROR


def test_s8_ps_metadata_of_another_issuer_is_refused() -> None:
    world = World()
    flow = new_flow(world, config=evolve(CONFIG, person_server=None))
    servers = {RES: scripted([requirement(401, Requirement.person_token())], [])}
    actions = flow.handle(start())
    [send] = flow.handle(SignatureProduced(signature=AGENT.sign(actions[0].data)))
    [discover] = flow.handle(ResponseReceived(response=servers[RES](send.request, T0), at=T0))
    assert isinstance(discover, DiscoverPersonServer) and discover.issuer == PS
    other = PersonServerMetadata.from_dict({**PS_META.to_dict(), "issuer": "https://other.example"})
    with pytest.raises(RemoteProtocolError):
        flow.handle(PersonServerDiscovered(metadata=other, at=T0))


# -- every (state, event) pair -------------------------------------------------------------

_EVENTS = [
    start(),
    AgentTokenRefreshed(token="x.y.z", at=T0),
    PersonServerDiscovered(metadata=PS_META, at=T0),
    SignatureProduced(signature=bytes(64)),
    ResponseReceived(response=HttpResponse(status=200), at=T0),
    TimerFired(at=T0),
    Cancel(at=T0),
    PostAnswer(body={"action": "clarification_response", "clarification_response": "x"}, at=T0),
]


@settings(max_examples=200)
@given(state=st.sampled_from(list(AgentState)), event=st.sampled_from(_EVENTS))
def test_every_state_event_pair_is_a_transition_or_illegal(state: AgentState, event: Any) -> None:
    world = World()
    store = CredentialStore(agent_token=CachedToken.parse(world.agent_token(T0 - 60)))
    flow = AgentFlow(config=CONFIG, data=AgentData(store=store), state=state)
    allowed = AgentFlow.TRANSITIONS.get((state, type(event)))
    try:
        flow.handle(event)
    except IllegalTransition:
        assert flow.state is AgentState.ERROR
    except AAuthError:
        # a row exists but this bare data cannot take it (no request, no poller, a
        # forged token): the machine refuses and sticks in ERROR
        assert allowed is not None and flow.state is AgentState.ERROR
    else:
        assert allowed is not None and flow.state in allowed


def test_the_table_covers_each_waiting_state() -> None:
    for state in (
        AgentState.REFRESHING_AGENT,
        AgentState.DISCOVERING,
        AgentState.SIGNING,
        AgentState.AWAIT,
        AgentState.PENDING,
        AgentState.RELAY_SIGNING,
        AgentState.RELAYING,
        AgentState.WAITING,
    ):
        assert AgentFlow.events_for(state), state
    for state in (AgentState.DONE, AgentState.FAILED, AgentState.CANCELLED, AgentState.ERROR):
        assert not AgentFlow.events_for(state), state


def test_without_issuer_keys_the_claims_are_still_checked() -> None:
    config = evolve(CONFIG, keys=None)
    world = World()
    seen: list[VerifiedRequest] = []
    servers = {
        RES: three_party_resource(world, seen),
        PS: ps_router(PersonTokenPS(world), AuthTokenPS(world)),
    }
    flow = new_flow(world, config=config)
    assert result_of(run(flow, world, servers, start())).response.status == 200

    def bad_rt(w: World, v: VerifiedRequest, at: int) -> str:
        return w.resource_token(v, at, jkt=OTHER.public_jwk().thumbprint())

    flow, world, servers = _challenge_with(bad_rt)
    flow = AgentFlow(config=config, data=flow.data)
    with pytest.raises(RemoteProtocolError, match="agent_jkt"):
        run(flow, world, servers, start())
