"""Every access mode end to end, with real machines of every role (tests/flow_world.py):
agent identity, resource-managed with a session token, person identity, PS authorization
(reactive and proactive), federated through an AS, deferred responses with interaction and
clarification, step-up, revocation, refresh at the margin, and an agent flow snapshotted
mid-poll and finished by a new object restored from JSON.

Each test asserts what the wire shows (statuses, the headers that matter, the ``typ`` and
claims of the token presented at each step, the final body) and that no record action was
applied twice.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from flow_world import AGENT_ID, AP, AS, FED, PS, RS, T0, Exchange, World

from aauth_core.headers.requirement import Requirement, RequirementType
from aauth_core.http import HttpRequest, HttpResponse
from aauth_core.jws import decode_compact
from aauth_core.tokens import TokenType
from aauth_flows.machines.actions import TimerFired
from aauth_flows.machines.agent import AgentFlow, AgentState
from aauth_flows.machines.agent import Exchange as AgentExchange
from aauth_flows.machines.engine import Snapshot
from aauth_flows.machines.resource import OpenPending, RecordSession

AGENT = TokenType.AGENT.value
PERSON = TokenType.PERSON.value
RESOURCE = TokenType.RESOURCE.value
AUTH = TokenType.AUTH.value

_JWT = re.compile(r'jwt="([^"]+)"')
_SERVER = re.compile(r'sig=jwks_uri;id="([^"]+)"')


# -- reading the wire ------------------------------------------------------------------------


def claims(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    jws = decode_compact(token)
    return dict(jws.header), dict(jws.payload)


def presented(request: HttpRequest) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and payload of the token in the request's ``Signature-Key``."""
    match = _JWT.search(request.headers.get("signature-key") or "")
    assert match is not None, f"{request.url} is not signed with a token"
    return claims(match.group(1))


def credential(request: HttpRequest) -> str:
    """What signed the request: the presented token's ``typ``, or ``server:<id>``."""
    raw = request.headers.get("signature-key") or ""
    server = _SERVER.search(raw)
    if server is not None:
        return f"server:{server.group(1)}"
    return str(presented(request)[0]["typ"])


def where(url: str) -> str:
    """The URL with a pending id replaced by ``*`` (ids are random)."""
    head, sep, _ = url.partition("/pending/")
    return f"{head}/pending/*" if sep else url


def trace(exchanges: list[Exchange]) -> list[tuple[str, str, str, int]]:
    return [
        (e.request.method, where(e.url), credential(e.request), e.response.status)
        for e in exchanges
    ]


def requirement(response: HttpResponse) -> Requirement:
    raw = response.headers.get("aauth-requirement")
    assert raw is not None, "no AAuth-Requirement"
    return Requirement.parse(raw)


def body(message: HttpRequest | HttpResponse) -> dict[str, Any]:
    value = json.loads(message.body)
    assert isinstance(value, dict)
    return value


def covered(request: HttpRequest) -> str:
    return request.headers.get("signature-input") or ""


def assert_pending(response: HttpResponse, origin: str) -> None:
    """A §5.9 202: same-origin Location, Retry-After, Cache-Control: no-store."""
    assert response.status == 202
    assert (response.headers.get("location") or "").startswith(f"{origin}/pending/")
    assert response.headers.get("retry-after") == "5"
    assert response.headers.get("cache-control") == "no-store"


def assert_recorded_once(world: World) -> None:
    """No store was asked to record the same thing twice."""

    def key(store: str, action: object) -> str:
        if isinstance(action, OpenPending):
            return f"{store}:OpenPending:{action.pending_id}"
        if isinstance(action, RecordSession):
            return f"{store}:RecordSession:{action.digest}"
        return f"{store}:{action!r}"

    counts = Counter(key(store, action) for store, action in world.recorded_by)
    assert world.records, "nothing was recorded at all"
    assert [k for k, n in counts.items() if n > 1] == []


def resource_challenge(exchange: Exchange) -> tuple[dict[str, Any], dict[str, Any]]:
    """The resource token of a ``requirement=auth-token`` answer."""
    req = requirement(exchange.response)
    assert req.type is RequirementType.AUTH_TOKEN
    assert req.resource_token is not None
    return claims(req.resource_token)


# -- the access modes ------------------------------------------------------------------------


def test_agent_identity_access() -> None:
    world = World()
    outcome = world.call("GET", f"{RS}/agent")

    assert trace(world.wire) == [("GET", f"{RS}/agent", AGENT, 200)]
    header, payload = presented(world.wire[0].request)
    assert header["alg"] == "Ed25519"
    assert (payload["iss"], payload["sub"], payload["ps"]) == (AP, str(AGENT_ID), PS)
    assert payload["cnf"]["jwk"]["x"] == world.agent_key.public_jwk.to_dict()["x"]
    for component in ('"@method"', '"@authority"', '"@path"', '"signature-key"'):
        assert component in covered(world.wire[0].request)
    assert outcome.body == {
        "path": "/agent",
        "principal": {"kind": "agent", "iss": AP, "agent": str(AGENT_ID), "session": False},
    }
    assert world.records == []  # nothing to remember in this mode
    assert len(world.ap_issued) == 1


def test_resource_managed_access_with_a_session_token() -> None:
    world = World()
    first = world.call("GET", f"{RS}/notes")

    assert trace(world.wire) == [
        ("GET", f"{RS}/notes", AGENT, 202),
        ("GET", f"{RS}/pending/*", AGENT, 200),
    ]
    challenge, granted = world.wire
    assert_pending(challenge.response, RS)
    req = requirement(challenge.response)
    assert req.type is RequirementType.INTERACTION
    assert world.person.visits == [f"{RS}/interaction?code={req.code}"]
    session = granted.response.headers.get("aauth-access")
    assert session
    assert granted.response.headers.get("cache-control") == "no-store"
    # §6.2 step 5: the poll answers with the held call, served with the new session
    assert first.body == {
        "path": "/notes",
        "principal": {"kind": "agent", "iss": AP, "agent": str(AGENT_ID), "session": True},
    }

    second = world.call("GET", f"{RS}/notes")
    call = world.wire[-1]
    assert trace([call]) == [("GET", f"{RS}/notes", AGENT, 200)]
    assert call.request.headers.get("authorization") == f"AAuth {session}"
    assert '"authorization"' in covered(call.request)
    assert second.body["principal"] == {
        "kind": "agent",
        "iss": AP,
        "agent": str(AGENT_ID),
        "session": True,
    }
    assert sum(isinstance(a, RecordSession) for a in world.records) == 1
    assert_recorded_once(world)


def test_resource_managed_denial_fails_the_call() -> None:
    world = World()
    world.person.plan = ["deny"]
    outcome = world.call("GET", f"{RS}/notes")

    assert trace(world.wire) == [
        ("GET", f"{RS}/notes", AGENT, 202),
        ("GET", f"{RS}/pending/*", AGENT, 403),
    ]
    assert outcome.error is not None
    assert (outcome.error.code, outcome.error.status) == ("denied", 403)
    assert not any(isinstance(a, RecordSession) for a in world.records)


def test_person_identity_access() -> None:
    world = World()
    outcome = world.call("GET", f"{RS}/profile")

    assert trace(world.wire) == [
        ("GET", f"{RS}/profile", AGENT, 401),
        ("POST", f"{PS}/person-token", AGENT, 202),
        ("GET", f"{PS}/pending/*", AGENT, 200),
        ("GET", f"{RS}/profile", PERSON, 200),
    ]
    challenge, ask, poll, call = world.wire
    assert requirement(challenge.response).type is RequirementType.PERSON_TOKEN
    assert body(ask.request) == {"resource": RS, "capabilities": ["interaction"]}
    for component in ('"content-digest"', '"content-type"'):
        assert component in covered(ask.request)
    assert_pending(ask.response, PS)
    assert requirement(ask.response).type is RequirementType.INTERACTION
    header, person = claims(body(poll.response)["person_token"])
    assert header["typ"] == PERSON
    assert (person["iss"], person["dwk"], person["aud"]) == (PS, "aauth-person.json", RS)
    assert "scope" not in person
    assert presented(call.request)[1]["jti"] == person["jti"]
    assert outcome.body["principal"] == {"kind": "person", "iss": PS, "sub": person["sub"]}
    assert_recorded_once(world)


def test_ps_authorization_reactive_from_a_401() -> None:
    world = World()
    outcome = world.call("GET", f"{RS}/data")

    assert trace(world.wire) == [
        ("GET", f"{RS}/data", AGENT, 401),
        ("POST", f"{PS}/person-token", AGENT, 202),
        ("GET", f"{PS}/pending/*", AGENT, 200),
        ("GET", f"{RS}/data", PERSON, 401),
        ("POST", f"{PS}/auth-token", AGENT, 202),
        ("GET", f"{PS}/pending/*", AGENT, 200),
        ("GET", f"{RS}/data", AUTH, 200),
    ]
    person = claims(body(world.wire[2].response)["person_token"])[1]
    rt_header, rt = resource_challenge(world.wire[3])
    assert rt_header["typ"] == RESOURCE
    assert (rt["iss"], rt["aud"], rt["ps"], rt["scope"]) == (RS, PS, PS, "data.read")
    assert (rt["sub"], rt["presented_jti"]) == (person["sub"], person["jti"])
    assert rt["agent_jkt"] == world.agent_key.thumbprint
    assert rt["exp"] - rt["iat"] <= 300
    assert "cnf" not in rt
    ask = body(world.wire[4].request)
    assert ask["presented_token"] == _token_of(world.wire[3].request)
    auth_header, auth = claims(body(world.wire[5].response)["auth_token"])
    assert auth_header["typ"] == AUTH
    assert (auth["iss"], auth["ps"], auth["dwk"], auth["aud"]) == (
        PS,
        PS,
        "aauth-person.json",
        RS,
    )
    assert (auth["sub"], auth["scope"]) == (rt["sub"], "data.read")
    assert auth["exp"] <= person["exp"]
    assert "agent" not in auth and "act" not in auth
    assert presented(world.wire[6].request)[1]["jti"] == auth["jti"]
    assert outcome.body["principal"] == {
        "kind": "authorized",
        "iss": PS,
        "ps": PS,
        "sub": rt["sub"],
        "scope": "data.read",
    }
    # After its terminal answer the PS's pending URL is gone (§5.9, §5.10 polling code).
    gone = world.send(_resign_like(world, world.wire[5].request))
    assert (gone.status, body(gone)["error"]) == (410, "invalid_code")
    assert_recorded_once(world)

    # The next call goes straight through with the cached auth token.
    world.call("GET", f"{RS}/data")
    assert trace(world.wire[-1:]) == [("GET", f"{RS}/data", AUTH, 200)]
    assert_recorded_once(world)


def test_ps_authorization_proactive_through_the_authorization_endpoint() -> None:
    world = World()
    outcome = world.call("POST", f"{RS}/authorize", {"scope": "data.read"}, authorize=True)

    assert trace(world.wire) == [
        ("POST", f"{RS}/authorize", AGENT, 401),
        ("POST", f"{PS}/person-token", AGENT, 202),
        ("GET", f"{PS}/pending/*", AGENT, 200),
        ("POST", f"{RS}/authorize", PERSON, 200),
        ("POST", f"{PS}/auth-token", AGENT, 202),
        ("GET", f"{PS}/pending/*", AGENT, 200),
    ]
    assert requirement(world.wire[0].response).type is RequirementType.PERSON_TOKEN
    person = claims(body(world.wire[2].response)["person_token"])[1]
    resource_token = outcome.body["resource_token"]
    rt = claims(resource_token)[1]
    assert (rt["aud"], rt["presented_jti"], rt["scope"]) == (PS, person["jti"], "data.read")
    assert body(world.wire[4].request)["resource_token"] == resource_token
    assert body(world.wire[4].request)["presented_token"] == _token_of(world.wire[3].request)

    # The API call presents the auth token at once: no challenge.
    after = world.call("GET", f"{RS}/data")
    assert trace(world.wire[6:]) == [("GET", f"{RS}/data", AUTH, 200)]
    assert after.body["principal"]["scope"] == "data.read"
    assert_recorded_once(world)


def test_federated_authorization_through_an_access_server() -> None:
    world = World()
    world.as_policy.interaction = True  # Alice binds her PS at the AS first
    outcome = world.call("GET", f"{FED}/data")

    assert trace(world.wire) == [
        ("GET", f"{FED}/data", AGENT, 401),
        ("POST", f"{PS}/person-token", AGENT, 202),
        ("GET", f"{PS}/pending/*", AGENT, 200),
        ("GET", f"{FED}/data", PERSON, 401),
        ("POST", f"{AS}/token", f"server:{PS}", 202),
        ("POST", f"{PS}/auth-token", AGENT, 202),
        ("GET", f"{AS}/pending/*", f"server:{PS}", 202),
        ("GET", f"{PS}/pending/*", AGENT, 202),
        ("GET", f"{AS}/pending/*", f"server:{PS}", 200),
        ("GET", f"{PS}/pending/*", AGENT, 200),
        ("GET", f"{FED}/data", AUTH, 200),
    ]
    person = claims(body(world.wire[2].response)["person_token"])[1]
    rt = resource_challenge(world.wire[3])[1]
    assert (rt["iss"], rt["aud"], rt["ps"], rt["presented_jti"]) == (FED, AS, PS, person["jti"])
    federate = world.wire[4]
    assert body(federate.request).keys() == {"resource_token", "agent_token", "presented_token"}
    assert claims(body(federate.request)["agent_token"])[0]["typ"] == AGENT
    for component in ('"content-digest"', '"content-type"', '"signature-key"'):
        assert component in covered(federate.request)
    as_interaction = requirement(federate.response)
    assert as_interaction.type is RequirementType.INTERACTION
    # the PS relays the AS's requirement to the agent, who sends Alice there
    relayed = world.wire[7]
    assert requirement(relayed.response).serialize() == as_interaction.serialize()
    assert f"{AS}/bind?code={as_interaction.code}" in world.person.visits
    header, auth = claims(body(world.wire[8].response)["auth_token"])
    assert header["typ"] == AUTH
    assert (auth["iss"], auth["dwk"], auth["ps"], auth["aud"]) == (
        AS,
        "aauth-access.json",
        PS,
        FED,
    )
    assert auth["sub"] == rt["sub"] == person["sub"]
    assert auth["exp"] <= person["exp"]
    assert body(world.wire[9].response)["auth_token"] == body(world.wire[8].response)["auth_token"]
    assert outcome.body["principal"] == {
        "kind": "authorized",
        "iss": AS,
        "ps": PS,
        "sub": rt["sub"],
        "scope": "data.read",
    }
    assert_recorded_once(world)


# -- deferred responses, step-up, refusals ---------------------------------------------------


def test_deferred_with_interaction_and_clarification_at_the_ps() -> None:
    world = World()
    world.person.plan = ["approve", "ask:Which calendar will you read?", "approve"]
    world.agent_answers = ["The **work** calendar only."]
    outcome = world.call("GET", f"{RS}/data")

    ps = [e for e in world.wire if e.url.startswith(PS)]
    assert trace(ps[2:]) == [
        ("POST", f"{PS}/auth-token", AGENT, 202),
        ("GET", f"{PS}/pending/*", AGENT, 202),
        ("POST", f"{PS}/pending/*", AGENT, 202),
        ("GET", f"{PS}/pending/*", AGENT, 200),
    ]
    ask, question, answer, issued = ps[2:]
    assert requirement(ask.response).type is RequirementType.INTERACTION
    assert requirement(question.response).type is RequirementType.CLARIFICATION
    assert body(question.response)["clarification"] == "Which calendar will you read?"
    assert body(answer.request) == {
        "action": "clarification_response",
        "clarification_response": "The **work** calendar only.",
    }
    assert body(answer.response)["status"] == "interacting"
    # Alice saw the answer, attributed to the agent, before approving
    last_prompt = world.person.prompts[-1]
    assert getattr(last_prompt, "clarification_response", None) == "The **work** calendar only."
    assert claims(body(issued.response)["auth_token"])[0]["typ"] == AUTH
    assert outcome.response.status == 200
    assert_recorded_once(world)


def test_person_denial_at_the_ps_fails_the_call() -> None:
    world = World()
    world.person.plan = ["approve", "deny"]  # yes to the person token, no to the scope
    outcome = world.call("GET", f"{RS}/data")

    assert trace(world.wire[-2:]) == [
        ("POST", f"{PS}/auth-token", AGENT, 202),
        ("GET", f"{PS}/pending/*", AGENT, 403),
    ]
    assert body(world.wire[-1].response)["error"] == "denied"
    assert outcome.error is not None
    assert (outcome.error.code, outcome.error.status) == ("denied", 403)
    assert not any(type(a).__name__ == "RecordGrant" for a in world.records)
    assert_recorded_once(world)


def test_deferred_delivery_of_a_held_invocation() -> None:
    world = World()
    outcome = world.call("POST", f"{RS}/reports", {"month": "2027-01"})

    assert trace(world.wire) == [
        ("POST", f"{RS}/reports", AGENT, 401),
        ("POST", f"{PS}/person-token", AGENT, 202),
        ("GET", f"{PS}/pending/*", AGENT, 200),
        ("POST", f"{RS}/reports", PERSON, 202),
        ("POST", f"{PS}/auth-token", AGENT, 202),
        ("GET", f"{PS}/pending/*", AGENT, 200),
        ("GET", f"{RS}/pending/*", AUTH, 200),
    ]
    held = world.wire[3]
    assert_pending(held.response, RS)
    rt = resource_challenge(held)[1]
    assert rt["presented_jti"] == presented(held.request)[1]["jti"]
    poll = world.wire[6]
    assert poll.url == held.response.headers.get("location")
    assert outcome.body["path"] == "/reports"
    assert outcome.body["principal"]["kind"] == "authorized"

    # A repeat presentation of the same auth token is answered from the retained result.
    again = world.send(_resign_like(world, poll.request))
    assert (again.status, again.body) == (200, poll.response.body)
    assert_recorded_once(world)


def test_step_up_to_a_broader_scope() -> None:
    world = World()
    world.call("GET", f"{RS}/data")
    first_auth = presented(world.wire[-1].request)[1]
    start = len(world.wire)
    outcome = world.call("GET", f"{RS}/admin")

    assert trace(world.wire[start:]) == [
        ("GET", f"{RS}/admin", AUTH, 401),
        ("POST", f"{PS}/auth-token", AGENT, 202),
        ("GET", f"{PS}/pending/*", AGENT, 200),
        ("GET", f"{RS}/admin", AUTH, 200),
    ]
    rt = resource_challenge(world.wire[start])[1]
    assert (rt["presented_jti"], rt["sub"], rt["ps"]) == (first_auth["jti"], first_auth["sub"], PS)
    assert rt["scope"] == "data.read data.write"
    ask = body(world.wire[start + 1].request)
    assert claims(ask["presented_token"])[1]["jti"] == first_auth["jti"]
    new_auth = claims(body(world.wire[start + 2].response)["auth_token"])[1]
    assert new_auth["scope"] == "data.read data.write"
    assert new_auth["exp"] <= first_auth["exp"]
    assert outcome.body["principal"]["scope"] == "data.read data.write"
    assert_recorded_once(world)


def test_step_up_through_the_access_server() -> None:
    world = World()
    world.call("GET", f"{FED}/data")
    first_auth = presented(world.wire[-1].request)[1]
    start = len(world.wire)
    outcome = world.call("GET", f"{FED}/admin")

    assert trace(world.wire[start:]) == [
        ("GET", f"{FED}/admin", AUTH, 401),
        ("POST", f"{AS}/token", f"server:{PS}", 200),
        ("POST", f"{PS}/auth-token", AGENT, 202),
        ("GET", f"{PS}/pending/*", AGENT, 200),
        ("GET", f"{FED}/admin", AUTH, 200),
    ]
    rt = resource_challenge(world.wire[start])[1]
    assert (rt["aud"], rt["presented_jti"]) == (AS, first_auth["jti"])
    forwarded = body(world.wire[start + 1].request)
    assert claims(forwarded["presented_token"])[1]["iss"] == AS
    assert outcome.body["principal"]["scope"] == "data.read data.write"
    assert_recorded_once(world)


# -- revocation and refresh ------------------------------------------------------------------


def test_revocation_cascade_from_the_agent_provider() -> None:
    world = World()
    world.call("GET", f"{RS}/data")
    old_auth = presented(world.wire[-1].request)[1]
    start = len(world.wire)

    answer = world.revoke_agent_token(world.ap_issued[-1])

    assert (answer.status, answer.body) == (200, b"")
    assert trace(world.wire[start:]) == [
        ("POST", f"{RS}/revoke", f"server:{PS}", 200),
        ("POST", f"{RS}/revoke", f"server:{PS}", 200),
        ("POST", f"{PS}/revoke", f"server:{AP}", 200),
    ]
    revoked = {body(e.request)["jti"] for e in world.wire[start : start + 2]}
    assert old_auth["jti"] in revoked  # the auth token and the person token it was issued on
    assert world.rs.store.is_revoked(PS, old_auth["jti"])

    # The agent's next call: the auth token is refused, the agent token too (at the PS);
    # a fresh agent token from the AP, then a new person token and auth token.
    start = len(world.wire)
    outcome = world.call("GET", f"{RS}/data")
    assert trace(world.wire[start:]) == [
        ("GET", f"{RS}/data", AUTH, 401),
        ("POST", f"{PS}/person-token", AGENT, 401),
        ("POST", f"{PS}/person-token", AGENT, 200),
        ("GET", f"{RS}/data", PERSON, 401),
        ("POST", f"{PS}/auth-token", AGENT, 200),
        ("GET", f"{RS}/data", AUTH, 200),
    ]
    refused = world.wire[start].response
    assert refused.headers.get("signature-error") == "error=revoked_jwt"
    assert requirement(refused).type is RequirementType.PERSON_TOKEN
    assert world.wire[start + 1].response.headers.get("signature-error") == "error=revoked_jwt"
    old_agent, new_agent = world.ap_issued
    assert presented(world.wire[start + 1].request)[1]["jti"] == old_agent.jti
    assert presented(world.wire[start + 2].request)[1]["jti"] == new_agent.jti
    assert outcome.response.status == 200
    assert_recorded_once(world)


def test_refresh_at_the_margin_is_top_down() -> None:
    world = World()
    world.call("GET", f"{RS}/data")
    auth = presented(world.wire[-1].request)[1]
    world.advance(auth["exp"] - world.now - 240)  # four minutes left: inside the margin
    start = len(world.wire)
    outcome = world.call("GET", f"{RS}/data")

    assert trace(world.wire[start:]) == [
        ("POST", f"{PS}/person-token", AGENT, 200),
        ("GET", f"{RS}/data", PERSON, 401),
        ("POST", f"{PS}/auth-token", AGENT, 200),
        ("GET", f"{RS}/data", AUTH, 200),
    ]
    # top-down: the agent token (its exp capped the others) first, then person, then auth
    assert len(world.ap_issued) == 2
    agent = presented(world.wire[start].request)[1]
    assert agent["jti"] == world.ap_issued[-1].jti
    assert agent["exp"] - world.now >= 300
    person = claims(body(world.wire[start].response)["person_token"])[1]
    assert person["exp"] <= agent["exp"]
    new_auth = claims(body(world.wire[start + 2].response)["auth_token"])[1]
    assert new_auth["jti"] != auth["jti"]
    assert new_auth["exp"] - world.now >= 300
    assert new_auth["exp"] <= person["exp"]
    # no request carried a token inside its margin
    for exchange in world.wire[start:]:
        assert presented(exchange.request)[1]["exp"] - world.now >= 300
    assert outcome.response.status == 200
    assert world.now > T0 + 3000
    assert_recorded_once(world)


# -- snapshot / restore ----------------------------------------------------------------------


def test_agent_flow_snapshotted_while_polling_is_restored_and_completes() -> None:
    world = World()

    def polling_the_ps_for_the_auth_token(flow: AgentFlow) -> bool:
        slot = flow.data.poller
        return (
            flow.state is AgentState.PENDING
            and slot is not None
            and slot.exchange is AgentExchange.AUTH_TOKEN
        )

    stopped = world.call("GET", f"{RS}/data", stop=polling_the_ps_for_the_auth_token)
    assert stopped.result is None and stopped.error is None
    assert trace(world.wire[-1:]) == [("POST", f"{PS}/auth-token", AGENT, 202)]

    text = stopped.flow.snapshot().to_json()
    json.loads(text)  # plain JSON, nothing process-bound
    restored = AgentFlow.restore(Snapshot.from_json(text), config=world.agent_config)
    assert restored is not stopped.flow
    assert (restored.state, restored.data) == (stopped.flow.state, stopped.flow.data)

    world.advance(5)
    outcome = world.drive(restored, TimerFired(at=world.now))

    assert trace(world.wire[-2:]) == [
        ("GET", f"{PS}/pending/*", AGENT, 200),
        ("GET", f"{RS}/data", AUTH, 200),
    ]
    assert outcome.body["principal"]["scope"] == "data.read"
    assert stopped.flow.state is AgentState.PENDING  # the original was left untouched
    assert_recorded_once(world)


# -- helpers that need the world ----------------------------------------------------------


def _token_of(request: HttpRequest) -> str:
    match = _JWT.search(request.headers.get("signature-key") or "")
    assert match is not None
    return match.group(1)


def _resign_like(world: World, request: HttpRequest) -> HttpRequest:
    """The same poll signed again now (a repeat presentation of the same auth token)."""
    from aauth_core.requests import aauth_components, sign_aauth_request

    bare = HttpRequest(method=request.method, url=request.url)
    signer = world.signers[world.agent_key.ref]
    fields = sign_aauth_request(
        bare,
        signer,
        token=_token_of(request),
        created=world.now,
        covered=aauth_components(bare),
    )
    return HttpRequest(method=bare.method, url=bare.url, headers=fields)


def test_federated_clarification_is_passed_through_the_ps() -> None:
    world = World()
    world.as_policy.question = "Which project is this for?"
    world.agent_answers = ["Project *Apollo*."]
    outcome = world.call("GET", f"{FED}/data")

    ps_and_as = [e for e in world.wire if e.url.startswith((PS, AS))][2:]
    assert trace(ps_and_as) == [
        ("POST", f"{AS}/token", f"server:{PS}", 202),
        ("POST", f"{PS}/auth-token", AGENT, 202),
        ("GET", f"{AS}/pending/*", f"server:{PS}", 202),
        ("GET", f"{PS}/pending/*", AGENT, 202),
        ("POST", f"{AS}/pending/*", f"server:{PS}", 200),
        ("POST", f"{PS}/pending/*", AGENT, 202),
        ("GET", f"{PS}/pending/*", AGENT, 200),
    ]
    asked, relayed = ps_and_as[0], ps_and_as[3]
    assert requirement(asked.response).type is RequirementType.CLARIFICATION
    assert requirement(relayed.response).type is RequirementType.CLARIFICATION
    assert body(relayed.response)["clarification"] == "Which project is this for?"
    answer = {"action": "clarification_response", "clarification_response": "Project *Apollo*."}
    assert body(ps_and_as[5].request) == answer  # the agent answers the PS ...
    assert body(ps_and_as[4].request) == answer  # ... which forwards it to the AS unchanged
    assert world.as_policy.answers == ["Project *Apollo*."]
    assert claims(body(ps_and_as[6].response)["auth_token"])[1]["iss"] == AS
    assert outcome.body["principal"]["iss"] == AS
    assert_recorded_once(world)
