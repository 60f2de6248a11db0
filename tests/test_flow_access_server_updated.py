"""The AS's answer to an ``updated_request`` posted while a request awaits clarification
(protocol -11 §5.9, §6.5 step 6): the new resource and presented tokens are verified like
the initial ones, the resource token keeps ``iss``/``ps``/``sub``/``agent_jkt``/
``mission_s256``/``tenant``, its ``presented_jti`` names the new presented token, and the
policy decides again on the updated request. One named negative test per MUST."""

from __future__ import annotations

import json
from typing import Any

from attrs import evolve
from test_flow_access_server import (
    OTHER_PS,
    _finish,
    exchange,
    good_body,
    poll,
    problem,
    server_signed,
)
from test_flow_federation_world import (
    KEYS,
    NOW,
    PS,
    RESOLVER,
    ScriptedPolicy,
    federation_request,
    jti,
    mint,
    person_claims,
)
from test_flow_federation_world import World as FederationWorld

from aauth_core.http import HttpRequest, HttpResponse
from aauth_core.tokens import (
    DWK_RESOURCE,
    PersonTokenClaims,
    ResourceTokenClaims,
    StaticKeyResolver,
    inspect_token,
)
from aauth_flows.machines.access_server import (
    AuthTokenExchange,
    ExchangeState,
    PendingRequestReceived,
)
from aauth_flows.machines.as_policy import (
    Grant,
    InMemoryAccessServerStore,
    RecordIssued,
    RecordRevocation,
    RequireApproval,
    RequireClarification,
)
from aauth_flows.machines.as_wire import json_request
from aauth_flows.machines.engine import Snapshot
from aauth_flows.machines.federation import AnswerPending, FederationState
from aauth_flows.machines.federation_api import FederationProgress, FederationSettled
from aauth_flows.machines.pending import updated_request

OTHER_RS = "https://other-resource.example"
#: The AS also knows another resource's key, so a token from it verifies and the
#: "keeps iss" rule (not the signature) is what refuses it.
KEYS_WITH_OTHER_RS = StaticKeyResolver(
    {**RESOLVER.keys, (OTHER_RS, DWK_RESOURCE): (KEYS["other"].public_jwk,)}
)
MISSION = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"


def clarifying(
    *after: Any, store: InMemoryAccessServerStore | None = None
) -> tuple[AuthTokenExchange, str, ScriptedPolicy, InMemoryAccessServerStore]:
    """An exchange whose policy asked a clarification question (then ``after``)."""
    policy = ScriptedPolicy(
        RequireClarification(question="Which calendar?"), *(after or (Grant(),))
    )
    store = store or InMemoryAccessServerStore()
    machine, response, _ = exchange(
        server_signed(good_body()), policy=policy, store=store, keys=KEYS_WITH_OTHER_RS
    )
    assert response.status == 202 and machine.state is ExchangeState.PENDING
    assert json.loads(response.body)["clarification"] == "Which calendar?"
    location = response.headers.get("location")
    assert location is not None
    return machine, location, policy, store


def updated_tokens(
    machine: AuthTokenExchange,
    *,
    person: PersonTokenClaims | None = None,
    person_signer: str = "ps",
    resource_signer: str = "rs",
    **rt_over: Any,
) -> tuple[str, str, PersonTokenClaims, ResourceTokenClaims]:
    """A fresh person token and a fresh resource token for it, derived from the pending
    request's resource token (``rt_over`` changes claims of the new resource token)."""
    context = machine.data.context
    assert context is not None
    old = context.resource
    person = person or person_claims(
        aud=rt_over.get("iss", old.iss),
        sub=rt_over.get("sub", old.sub),
        mission_s256=rt_over.get("mission_s256", old.mission_s256),
        tenant=rt_over.get("tenant", old.tenant),
        exp=NOW + 1200,
    )
    fields: dict[str, Any] = {
        "jti": jti("rt"),
        "presented_jti": person.jti,
        "iat": NOW,
        "exp": NOW + 290,
        "scope": "data.read",
    }
    fields.update(rt_over)
    resource = evolve(old, **fields)
    return mint(resource, resource_signer), mint(person, person_signer), person, resource


def post_update(
    machine: AuthTokenExchange,
    location: str,
    rt: str,
    pt: str,
    *,
    justification: str | None = "Only the work calendar",
    signer: str = "ps",
    issuer: str = PS,
) -> HttpResponse:
    body = updated_request(rt, pt, justification)
    request = server_signed(body, url=location, signer=signer, issuer=issuer, created=NOW + 5)
    return poll(machine, request)


def refused(
    machine: AuthTokenExchange, response: HttpResponse, code: str, detail: str = ""
) -> None:
    assert (response.status, problem(response)) == (400, code)
    assert detail in json.loads(response.body)["detail"]
    assert machine.state is ExchangeState.PENDING  # the request still awaits an answer
    assert machine.data.clarification_rounds == 0


# -- the updated request is verified, then decided on ---------------------------------------------


def test_updated_request_reruns_the_policy_on_the_new_tokens() -> None:
    machine, location, policy, _ = clarifying(Grant())
    rt, pt, _, resource = updated_tokens(machine)
    response = poll(machine, server_signed(updated_request(rt, pt, "Only work"), url=location))
    assert response.status == 200 and machine.state is ExchangeState.ISSUED
    asked = policy.asked[-1]
    assert asked.resource == resource and asked.resource.scope == "data.read"
    assert asked.justification == "Only work"
    assert asked.clarification_answer is None
    payload = inspect_token(json.loads(response.body)["auth_token"]).payload
    assert payload["scope"] == "data.read"
    assert payload["exp"] == NOW + 1200  # capped by the new presented token


def test_updated_request_records_the_new_presented_jti() -> None:
    machine, location, _, _ = clarifying(Grant())
    rt, pt, person, _ = updated_tokens(machine)
    actions = machine.handle(
        _pending_event(server_signed(updated_request(rt, pt), url=location, created=NOW + 5))
    )
    response, seen = _finish(machine, actions)
    assert response.status == 200
    [record] = [a for a in seen if isinstance(a, RecordIssued)]
    assert record.record.presented_jti == person.jti


def _pending_event(request: HttpRequest) -> PendingRequestReceived:
    return PendingRequestReceived(request=request, at=NOW + 5, nonce=bytes(range(16))[::-1])


def test_updated_request_may_be_asked_about_again_and_survives_a_snapshot() -> None:
    machine, location, policy, _ = clarifying(RequireClarification(question="And why?"), Grant())
    rt, pt, _, _ = updated_tokens(machine)
    response = post_update(machine, location, rt, pt)
    assert response.status == 202 and json.loads(response.body)["clarification"] == "And why?"
    restored = AuthTokenExchange.restore(
        Snapshot.from_json(machine.snapshot().to_json()), config=machine.config
    )
    assert restored.data == machine.data and restored.data.clarification_rounds == 1
    rt2, pt2, _, resource2 = updated_tokens(restored)
    assert post_update(restored, location, rt2, pt2).status == 200
    assert policy.asked[-1].resource == resource2


# -- MUST: the resource token keeps iss, ps, sub, agent_jkt, mission_s256, tenant -----------------


def test_s8_updated_resource_token_must_keep_iss() -> None:
    machine, location, _, _ = clarifying()
    rt, pt, _, _ = updated_tokens(machine, iss=OTHER_RS, resource_signer="other")
    refused(
        machine, post_update(machine, location, rt, pt), "invalid_resource_token", "changed iss"
    )


def test_s8_updated_resource_token_must_keep_ps() -> None:
    machine, location, _, _ = clarifying()
    rt, pt, _, _ = updated_tokens(machine, ps=OTHER_PS)
    refused(machine, post_update(machine, location, rt, pt), "invalid_resource_token", "changed ps")


def test_s8_updated_resource_token_must_keep_sub() -> None:
    machine, location, _, _ = clarifying()
    rt, pt, _, _ = updated_tokens(machine, sub="another-person")
    refused(
        machine, post_update(machine, location, rt, pt), "invalid_resource_token", "changed sub"
    )


def test_s8_updated_resource_token_must_keep_agent_jkt() -> None:
    machine, location, _, _ = clarifying()
    rt, pt, _, _ = updated_tokens(machine, agent_jkt=KEYS["other"].public_jwk.thumbprint())
    refused(
        machine,
        post_update(machine, location, rt, pt),
        "invalid_resource_token",
        "changed agent_jkt",
    )


def test_s8_updated_resource_token_must_keep_mission_s256() -> None:
    machine, location, _, _ = clarifying()
    rt, pt, _, _ = updated_tokens(machine, mission_s256=MISSION)
    response = post_update(machine, location, rt, pt)
    refused(machine, response, "invalid_resource_token", "changed mission_s256")


def test_s8_updated_resource_token_must_keep_tenant() -> None:
    machine, location, _, _ = clarifying()
    rt, pt, _, _ = updated_tokens(machine, tenant="acme")
    refused(
        machine, post_update(machine, location, rt, pt), "invalid_resource_token", "changed tenant"
    )


def test_s8_updated_presented_jti_must_be_the_new_presented_tokens_jti() -> None:
    machine, location, _, _ = clarifying()
    context = machine.data.context
    assert context is not None
    # The new resource token still names the old presented token.
    rt, pt, _, _ = updated_tokens(machine, presented_jti=context.presented_jti)
    response = post_update(machine, location, rt, pt)
    refused(machine, response, "invalid_resource_token", "does not match the presented token")


# -- MUST: the same signature and PS checks as the initial request --------------------------------


def test_s8_updated_request_must_be_signed_by_the_same_ps() -> None:
    machine, location, _, _ = clarifying()
    rt, pt, _, _ = updated_tokens(machine)
    unsigned = poll(machine, json_request("POST", location, updated_request(rt, pt)))
    assert unsigned.status == 401 and unsigned.headers.get("signature-error")
    other = post_update(machine, location, rt, pt, signer="other", issuer=OTHER_PS)
    assert other.status == 404
    assert machine.state is ExchangeState.PENDING and machine.data.clarification_rounds == 0


def test_s8_updated_request_body_must_be_covered_by_the_signature() -> None:
    machine, location, _, _ = clarifying()
    rt, pt, _, _ = updated_tokens(machine)
    rt2, pt2, _, _ = updated_tokens(machine)
    signed = server_signed(updated_request(rt, pt), url=location, created=NOW + 5)
    swapped = evolve(signed, body=json.dumps(updated_request(rt2, pt2)).encode())
    response = poll(machine, swapped)
    assert response.status == 401 and machine.data.clarification_rounds == 0


def test_s8_updated_resource_token_is_verified() -> None:
    machine, location, _, _ = clarifying()
    rt, pt, _, _ = updated_tokens(machine, aud="https://other-as.example")
    refused(machine, post_update(machine, location, rt, pt), "invalid_resource_token")
    rt, pt, _, _ = updated_tokens(machine, iat=NOW - 300, exp=NOW)
    refused(machine, post_update(machine, location, rt, pt), "expired_resource_token")
    rt, pt, _, _ = updated_tokens(machine, resource_signer="other")
    refused(machine, post_update(machine, location, rt, pt), "invalid_resource_token")


def test_s8_updated_resource_token_revoked() -> None:
    store = InMemoryAccessServerStore()
    machine, location, _, _ = clarifying(store=store)
    rt, pt, _, resource = updated_tokens(machine)
    store.apply(RecordRevocation(iss=resource.iss, jti=resource.jti, exp=resource.exp))
    refused(machine, post_update(machine, location, rt, pt), "revoked_resource_token")


def test_s8_updated_presented_token_must_come_from_the_signing_ps() -> None:
    machine, location, _, _ = clarifying()
    context = machine.data.context
    assert context is not None
    person = person_claims(iss=OTHER_PS, sub=context.resource.sub)
    rt, pt, _, _ = updated_tokens(machine, person=person, person_signer="other")
    refused(machine, post_update(machine, location, rt, pt), "invalid_presented_token")


def test_s8_updated_presented_token_is_verified() -> None:
    machine, location, _, _ = clarifying()
    expired = person_claims(sub="person-directed-7", iat=NOW - 100, exp=NOW)
    rt, pt, _, _ = updated_tokens(machine, person=expired)
    refused(machine, post_update(machine, location, rt, pt), "expired_presented_token")
    forged = person_claims(sub="person-directed-7")
    rt, pt, _, _ = updated_tokens(machine, person=forged, person_signer="other")
    refused(machine, post_update(machine, location, rt, pt), "invalid_presented_token")


def test_s8_updated_presented_token_revoked() -> None:
    store = InMemoryAccessServerStore()
    machine, location, _, _ = clarifying(store=store)
    rt, pt, person, _ = updated_tokens(machine)
    store.apply(RecordRevocation(iss=PS, jti=person.jti, exp=person.exp))
    refused(machine, post_update(machine, location, rt, pt), "revoked_presented_token")


# -- when an updated request is (not) an answer ---------------------------------------------------


def test_updated_request_needs_both_tokens() -> None:
    machine, location, _, _ = clarifying()
    rt, _, _, _ = updated_tokens(machine)
    body = {"action": "updated_request", "resource_token": rt}
    response = poll(machine, server_signed(body, url=location, created=NOW + 5))
    refused(machine, response, "invalid_request")


def test_updated_request_only_answers_a_clarification() -> None:
    policy = ScriptedPolicy(RequireApproval())
    machine, response, _ = exchange(server_signed(good_body()), policy=policy)
    location = response.headers.get("location")
    assert location is not None and response.status == 202
    rt, pt, _, _ = updated_tokens(machine)
    refused(machine, post_update(machine, location, rt, pt), "invalid_request", "clarification")
    assert len(policy.asked) == 1


def test_s8_clarification_rounds_are_capped_for_updated_requests() -> None:
    question = RequireClarification(question="Again?")
    machine, location, policy, _ = clarifying(question)
    for round_ in range(5):
        rt, pt, _, _ = updated_tokens(machine)
        assert post_update(machine, location, rt, pt).status == 202, round_
    rt, pt, _, _ = updated_tokens(machine)
    response = post_update(machine, location, rt, pt)
    assert (response.status, problem(response)) == (400, "invalid_request")
    assert "too many" in json.loads(response.body)["detail"]
    assert len(policy.asked) == 6  # the initial request and five updates


# -- through the PS's federation client (§6.5: the agent's body is forwarded unchanged) ------------


def test_ps_federation_client_forwards_an_updated_request_to_the_as() -> None:
    policy = ScriptedPolicy(RequireClarification(question="Which calendar?"))

    def hold(event: Any) -> None:
        if isinstance(event, FederationProgress) and event.requirement is not None:
            world.hold_waits = True

    world = FederationWorld(policy, on_progress=hold)
    world.start(federation_request())
    assert world.client.state is FederationState.WAITING
    [location] = list(world.pending)
    machine = AuthTokenExchange.restore(
        Snapshot.from_json(world.pending[location]), config=world.config
    )
    rt, pt, person, resource = updated_tokens(machine)
    policy.decisions = [Grant()]
    world.hold_waits = False
    answer = updated_request(rt, pt, "Only the work calendar")
    world.run(world.client.handle(AnswerPending(body=answer, at=world.clock)))
    [settled] = [e for e in world.to_ps if isinstance(e, FederationSettled)]
    assert settled.auth_token is not None
    post = world.sent[1]
    assert post.method == "POST" and post.url == location
    assert json.loads(post.body) == answer
    assert policy.asked[-1].resource == resource
    assert policy.asked[-1].justification == "Only the work calendar"
    payload = inspect_token(settled.auth_token).payload
    assert payload["scope"] == "data.read" and payload["exp"] <= person.exp
