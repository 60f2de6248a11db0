"""Person Server machines: person tokens, three-party auth tokens and their consent
records, with real signatures (agents and resources are played with core functions)."""

from __future__ import annotations

from typing import Any

import pytest
from test_flow_ps_world import (
    AGENT,
    AGENT_KEY,
    AP,
    AP_KEY,
    NOW,
    OTHER_PS_KEY,
    PS,
    PS_KEY,
    RESOLVER,
    RS,
    SECRET,
    agent_token,
    arrive,
    body_of,
    drive,
    new_config,
    new_store,
    person_token,
    poll,
    resource_token,
    response_of,
    signed_post,
)

from aauth_core.headers.requirement import Requirement
from aauth_core.mission import mission_s256 as s256_of
from aauth_core.tokens import (
    DWK_PERSON,
    verify_auth_token,
    verify_person_token,
)
from aauth_flows.machines.actions import Respond, SignBytes, TimerFired
from aauth_flows.machines.engine import Action, Snapshot
from aauth_flows.machines.person_server import (
    AuthTokenMachine,
    CodeRefused,
    ConsentPrompt,
    Decision,
    DecisionRefused,
    InMemoryPsStore,
    InteractionArrived,
    IssuedKind,
    MissionRecord,
    PendingRequest,
    PersonAsked,
    PersonDecided,
    PersonTokenMachine,
    RecordBinding,
    RecordConsent,
    RecordGrant,
    RecordIssued,
    TokenRequestState,
    directed_sub,
)

S = TokenRequestState
PT_URL = PS + "/person-token"
AT_URL = PS + "/auth-token"
INTERACTIVE = {"capabilities": ["interaction"]}


def records(actions: list[Action]) -> list[Action]:
    return [a for a in actions if type(a).__name__.startswith("Record")]


def issued(actions: list[Action]) -> list[RecordIssued]:
    return [a for a in actions if isinstance(a, RecordIssued)]


def error_of(actions: list[Action]) -> tuple[int, str]:
    response = response_of(actions)
    return response.status, body_of(response)["error"]


def bound_store(**kwargs: Any) -> InMemoryPsStore:
    store = new_store(**kwargs)
    store.bindings[(AP, AGENT)] = "alice"
    return store


def auth_request(
    store: InMemoryPsStore,
    *,
    rt: str,
    pt: str,
    extra: dict[str, Any] | None = None,
    at: int = NOW,
    seed: int = 1,
    token: str | None = None,
    **config: Any,
) -> tuple[AuthTokenMachine, list[Action]]:
    machine = AuthTokenMachine(config=new_config(store, **config))
    body = {"resource_token": rt, "presented_token": pt, **(extra or {})}
    actions = arrive(
        machine, signed_post(AT_URL, body, at=at, token=token), store, at=at, seed=seed
    )
    return machine, actions


def pair(**pt_kwargs: Any) -> tuple[str, str, Any]:
    pt, claims = person_token(**pt_kwargs)
    return pt, resource_token(claims), claims


# -- person tokens (§5.3, §6.3) -----------------------------------------------------------


def test_person_token_first_time_needs_the_persons_approval_through_interaction() -> None:
    store = new_store()
    machine = PersonTokenMachine(config=new_config(store))
    actions = arrive(machine, signed_post(PT_URL, {"resource": RS, **INTERACTIVE}), store)
    response = response_of(actions)
    assert response.status == 202 and machine.state is S.PENDING
    requirement = Requirement.parse(response.headers.get("aauth-requirement") or "")
    assert requirement.requirement == "interaction" and requirement.url == PS + "/interact"
    assert response.headers.get("location") == machine.data.pending_url
    assert not issued(actions)
    assert poll(machine, store, NOW + 1).status == 202

    [prompt] = drive(machine, InteractionArrived(code=requirement.code or "", at=NOW + 5), store)
    assert isinstance(prompt, ConsentPrompt) and prompt.resource == RS
    actions = drive(
        machine, PersonDecided(decision=Decision.APPROVE, person="alice", at=NOW + 10), store
    )
    kinds = [type(a) for a in actions]
    assert RecordBinding in kinds and RecordConsent in kinds and SignBytes in kinds
    [record] = issued(actions)
    response = poll(machine, store, NOW + 11)
    assert response.status == 200
    body = body_of(response)
    token = verify_person_token(body["person_token"], keys=RESOLVER, now=NOW + 11, audience=RS)
    claims = token.claims
    assert claims.iss == PS and claims.dwk == DWK_PERSON
    assert claims.sub == directed_sub(SECRET, "alice", RS)
    assert claims.cnf.binds(AGENT_KEY.public_jwk())
    assert claims.exp <= NOW + 3600 and body["expires_in"] == claims.exp - claims.iat
    assert (record.record.jti, record.record.aud, record.record.exp) == (claims.jti, RS, claims.exp)
    assert poll(machine, store, NOW + 12).status == 410


def test_person_token_is_issued_at_once_when_consent_is_remembered() -> None:
    store = bound_store()
    store.consents.add(("alice", AP, AGENT, RS))
    machine = PersonTokenMachine(config=new_config(store))
    actions = arrive(machine, signed_post(PT_URL, {"resource": RS}), store)
    response = response_of(actions)
    assert response.status == 200 and machine.state is S.ANSWERED
    token = verify_person_token(
        body_of(response)["person_token"], keys=RESOLVER, now=NOW, audience=RS
    )
    # directed per resource, stable for the person
    assert token.claims.sub == directed_sub(SECRET, "alice", RS)
    assert token.claims.sub != directed_sub(SECRET, "alice", "https://other.example")
    assert len(issued(actions)) == 1


def test_person_token_approval_when_the_ps_reaches_the_person() -> None:
    store = bound_store(reachable={"alice"})
    machine = PersonTokenMachine(config=new_config(store))
    response = response_of(arrive(machine, signed_post(PT_URL, {"resource": RS}), store))
    assert response.status == 202
    assert response.headers.get("aauth-requirement") == "requirement=approval"
    # another person cannot take the decision for alice
    [refused] = drive(
        machine, PersonDecided(decision=Decision.APPROVE, person="mallory", at=NOW + 1), store
    )
    assert isinstance(refused, DecisionRefused)
    drive(machine, PersonDecided(decision=Decision.APPROVE, person="alice", at=NOW + 2), store)
    assert poll(machine, store, NOW + 3).status == 200


def test_person_token_user_unreachable_without_interaction_capability() -> None:
    store = bound_store()
    machine = PersonTokenMachine(config=new_config(store))
    actions = arrive(machine, signed_post(PT_URL, {"resource": RS}), store)
    assert error_of(actions) == (403, "user_unreachable")
    assert response_of(actions).headers.get("signature-error") is None
    assert machine.state is S.REJECTED and not records(actions)


def test_person_token_exp_is_capped_by_the_agent_token() -> None:
    store = bound_store()
    store.consents.add(("alice", AP, AGENT, RS))
    token = agent_token(exp=NOW + 600)
    machine = PersonTokenMachine(config=new_config(store))
    actions = arrive(machine, signed_post(PT_URL, {"resource": RS}, token=token), store)
    pt = body_of(response_of(actions))["person_token"]
    claims = verify_person_token(pt, keys=RESOLVER, now=NOW, audience=RS).claims
    assert claims.exp == NOW + 600


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "invalid_request"),
        ({"resource": "http://resource.example"}, "invalid_request"),
        ({"resource": RS, "capabilities": "interaction"}, "invalid_request"),
        ({"resource": RS, "mission_s256": "A" * 43, "upstream_token": "x.y.z"}, "invalid_request"),
        ({"resource": RS, "mission_s256": "A" * 43}, "invalid_request"),  # unknown mission
    ],
)
def test_person_token_bad_requests(body: dict[str, Any], code: str) -> None:
    store = bound_store()
    machine = PersonTokenMachine(config=new_config(store))
    actions = arrive(machine, signed_post(PT_URL, body), store)
    assert error_of(actions) == (400, code) and not records(actions)


def test_person_token_mission_checks() -> None:
    blob = b'{"agent":"aauth:assistant@agent.example"}'
    s256 = s256_of(blob)
    store = bound_store()
    store.consents.add(("alice", AP, AGENT, RS))
    store.missions[s256] = MissionRecord(
        s256=s256, agent_iss=AP, agent_sub=AGENT, expires_at=NOW + 900
    )
    machine = PersonTokenMachine(config=new_config(store))
    actions = arrive(machine, signed_post(PT_URL, {"resource": RS, "mission_s256": s256}), store)
    pt = body_of(response_of(actions))["person_token"]
    claims = verify_person_token(pt, keys=RESOLVER, now=NOW, audience=RS).claims
    assert claims.mission_s256 == s256 and claims.exp == NOW + 900  # capped by the mission
    store.missions[s256] = MissionRecord(
        s256=s256, agent_iss=AP, agent_sub=AGENT, active=False, termination_reason="revoked"
    )
    machine = PersonTokenMachine(config=new_config(store))
    actions = arrive(
        machine, signed_post(PT_URL, {"resource": RS, "mission_s256": s256}, at=NOW + 1), store
    )
    response = response_of(actions)
    assert (response.status, body_of(response)["error"]) == (403, "mission_terminated")
    assert body_of(response)["termination_reason"] == "revoked"


def test_person_token_for_a_subagent_binds_the_subagents_key() -> None:
    from signing_helpers import generated_ed25519

    sub_key = generated_ed25519()
    sub_token = agent_token(key=sub_key, sub="aauth:assistant+s1@agent.example", parent=AGENT)
    store = bound_store()
    store.consents.add(("alice", AP, AGENT, RS))
    machine = PersonTokenMachine(config=new_config(store))
    body = {"resource": RS, "subagent_token": sub_token}
    pt = body_of(response_of(arrive(machine, signed_post(PT_URL, body), store)))["person_token"]
    claims = verify_person_token(pt, keys=RESOLVER, now=NOW, audience=RS).claims
    assert claims.cnf.binds(sub_key.public_jwk())
    # a sub-agent token whose parent is someone else
    stranger = agent_token(
        key=sub_key, sub="aauth:other+s1@agent.example", parent="aauth:other@agent.example"
    )
    machine = PersonTokenMachine(config=new_config(store))
    actions = arrive(
        machine, signed_post(PT_URL, {"resource": RS, "subagent_token": stranger}), store, seed=2
    )
    assert error_of(actions) == (400, "invalid_subagent_token")


def test_person_token_for_call_chaining_names_the_upstream_person() -> None:
    """R1 (its own AP) asks for a person token for R2 with the token the agent presented."""
    from signing_helpers import generated_ed25519

    r1_key = generated_ed25519()
    r1_agent = agent_token(
        key=r1_key,
        sub="aauth:chain@resource.example",
        iss=RS,
        signer=__import__("test_flow_ps_world").RS_KEY,
    )
    upstream, up_claims = person_token(aud=RS, exp=NOW + 700)
    store = new_store()
    store.directed[(RS, up_claims.sub)] = "alice"
    # alice let the intermediary act at R2 as her before (same consent rule as unchained)
    store.consents.add(("alice", RS, "aauth:chain@resource.example", "https://r2.example"))
    machine = PersonTokenMachine(config=new_config(store))
    body = {"resource": "https://r2.example", "upstream_token": upstream}
    request = signed_post(PT_URL, body, token=r1_agent, key=r1_key)
    actions = arrive(machine, request, store)
    pt = body_of(response_of(actions))["person_token"]
    claims = verify_person_token(pt, keys=RESOLVER, now=NOW, audience="https://r2.example").claims
    assert claims.sub == directed_sub(SECRET, "alice", "https://r2.example") != up_claims.sub
    assert claims.exp == NOW + 700 and claims.cnf.binds(r1_key.public_jwk())
    assert issued(actions)[0].record.upstream == (PS, up_claims.jti)
    assert not any(isinstance(a, RecordBinding) for a in actions)


# -- three-party auth tokens (§5.4, §6.4) --------------------------------------------------


def test_auth_token_reactive_with_interaction_consent() -> None:
    store = bound_store()
    pt, rt, pt_claims = pair()
    machine, actions = auth_request(
        store, rt=rt, pt=pt, extra={**INTERACTIVE, "justification": "find slots"}
    )
    response = response_of(actions)
    assert response.status == 202 and machine.state is S.PENDING
    code = Requirement.parse(response.headers.get("aauth-requirement") or "").code or ""
    [prompt] = drive(machine, InteractionArrived(code=code.lower(), at=NOW + 3), store)
    assert isinstance(prompt, ConsentPrompt) and prompt.justification == "find slots"
    assert body_of(poll(machine, store, NOW + 4)) == {"status": "interacting"}
    actions = drive(
        machine, PersonDecided(decision=Decision.APPROVE, person="alice", at=NOW + 10), store
    )
    assert [type(a) for a in records(actions)] == [RecordGrant, RecordIssued]
    response = poll(machine, store, NOW + 11)
    assert response.status == 200
    at = verify_auth_token(
        body_of(response)["auth_token"], keys=RESOLVER, now=NOW + 11, audience=RS
    )
    claims = at.claims
    assert (claims.iss, claims.ps, claims.dwk, claims.aud) == (PS, PS, DWK_PERSON, RS)
    assert claims.sub == pt_claims.sub and claims.scope == "data.read data.write"
    assert claims.cnf.binds(AGENT_KEY.public_jwk())
    assert claims.exp == pt_claims.exp  # capped by the presented token


def test_auth_token_step_up_with_an_auth_token_presented() -> None:
    store = bound_store()
    store.grants.add(("alice", RS, "data.read data.write", None))
    pt, rt, _ = pair()
    _, actions = auth_request(store, rt=rt, pt=pt)
    first = body_of(response_of(actions))["auth_token"]
    at_claims = verify_auth_token(first, keys=RESOLVER, now=NOW, audience=RS).claims
    step_up_rt = resource_token(at_claims, jti="rt-2")
    machine, actions = auth_request(store, rt=step_up_rt, pt=first, seed=2, at=NOW + 1)
    response = response_of(actions)
    assert response.status == 200 and machine.state is S.ANSWERED
    second = verify_auth_token(
        body_of(response)["auth_token"], keys=RESOLVER, now=NOW + 1, audience=RS
    )
    assert second.claims.exp <= at_claims.exp and second.claims.jti != at_claims.jti


def test_interaction_code_is_single_use() -> None:
    store = bound_store()
    pt, rt, _ = pair()
    machine, _ = auth_request(store, rt=rt, pt=pt, extra=INTERACTIVE)
    code = machine.data.code or ""
    drive(machine, InteractionArrived(code=code, at=NOW + 1), store)
    [refused] = drive(machine, InteractionArrived(code=code, at=NOW + 2), store)
    assert isinstance(refused, CodeRefused) and refused.error.code == "invalid_code"
    assert machine.state is S.INTERACTING


def test_wrong_interaction_codes_are_rate_limited_then_the_request_fails() -> None:
    store = bound_store()
    pt, rt, _ = pair()
    machine, _ = auth_request(store, rt=rt, pt=pt, extra=INTERACTIVE)
    right = machine.data.code or ""
    for i in range(2):
        [refused] = drive(machine, InteractionArrived(code="0000-0000", at=NOW + i), store)
        assert isinstance(refused, CodeRefused) and machine.state is S.PENDING
    drive(machine, InteractionArrived(code="0000-0000", at=NOW + 3), store)
    assert machine.state is S.FAILED
    [refused] = drive(machine, InteractionArrived(code=right, at=NOW + 4), store)
    assert isinstance(refused, CodeRefused)  # even the right code is refused now
    response = poll(machine, store, NOW + 5)
    assert (response.status, body_of(response)["error"]) == (410, "invalid_code")


def test_a_decision_needs_the_code_first_in_interaction_mode() -> None:
    store = bound_store()
    pt, rt, _ = pair()
    machine, _ = auth_request(store, rt=rt, pt=pt, extra=INTERACTIVE)
    [refused] = drive(
        machine, PersonDecided(decision=Decision.APPROVE, person="alice", at=NOW + 1), store
    )
    assert isinstance(refused, DecisionRefused) and machine.state is S.PENDING


def test_approval_then_denial_is_failed_and_answers_403_denied() -> None:
    store = bound_store(reachable={"alice"})
    pt, rt, _ = pair()
    machine, actions = auth_request(store, rt=rt, pt=pt)
    assert response_of(actions).headers.get("aauth-requirement") == "requirement=approval"
    actions = drive(
        machine, PersonDecided(decision=Decision.DENY, person="alice", at=NOW + 2), store
    )
    assert machine.state is S.FAILED and not records(actions)
    response = poll(machine, store, NOW + 3)
    assert (response.status, body_of(response)["error"]) == (403, "denied")
    assert response.headers.get("signature-error") is None
    assert poll(machine, store, NOW + 4).status == 410


def test_abandoned_answers_403_abandoned() -> None:
    store = bound_store(reachable={"alice"})
    pt, rt, _ = pair()
    machine, _ = auth_request(store, rt=rt, pt=pt)
    drive(machine, PersonDecided(decision=Decision.ABANDON, person="alice", at=NOW + 2), store)
    response = poll(machine, store, NOW + 3)
    assert (response.status, body_of(response)["error"]) == (403, "abandoned")


def test_pending_request_expires_with_408() -> None:
    store = bound_store(reachable={"alice"})
    pt, rt, _ = pair()
    machine, _ = auth_request(store, rt=rt, pt=pt)
    drive(machine, TimerFired(at=NOW + 100), store)
    assert machine.state is S.PENDING
    drive(machine, TimerFired(at=NOW + 600), store)
    assert machine.state is S.FAILED
    response = poll(machine, store, NOW + 601)
    assert (response.status, body_of(response)["error"]) == (408, "expired")


def test_delete_cancels_then_410() -> None:
    store = bound_store(reachable={"alice"})
    pt, rt, _ = pair()
    machine, _ = auth_request(store, rt=rt, pt=pt)
    assert poll(machine, store, NOW + 1, method="DELETE").status == 204
    assert machine.state is S.GONE
    assert poll(machine, store, NOW + 2).status == 410
    [refused] = drive(
        machine, PersonDecided(decision=Decision.APPROVE, person="alice", at=NOW + 3), store
    )
    assert isinstance(refused, DecisionRefused)


def test_another_agent_cannot_poll_the_pending_url() -> None:
    from signing_helpers import generated_ed25519
    from test_flow_ps_world import signed_get

    store = bound_store(reachable={"alice"})
    pt, rt, _ = pair()
    machine, _ = auth_request(store, rt=rt, pt=pt)
    other_key = generated_ed25519()
    other = agent_token(key=other_key, sub="aauth:other@agent.example")
    request = signed_get(machine.data.pending_url, at=NOW + 1, token=other)
    # signed by the other agent's own key
    from attrs import evolve

    from aauth_core.requests import sign_aauth_request

    bare = evolve(request, headers={})
    fields = sign_aauth_request(bare, other_key, token=other, created=NOW + 1)
    request = evolve(bare, headers=bare.headers.with_fields(fields))
    response = response_of(drive(machine, PendingRequest(request=request, at=NOW + 1), store))
    assert response.status == 404 and machine.state is S.PENDING


def _clarify(
    machine: AuthTokenMachine, store: InMemoryPsStore, body: dict[str, Any], at: int
) -> Any:
    request = signed_post(machine.data.pending_url, body, at=at)
    return response_of(drive(machine, PendingRequest(request=request, at=at), store))


def test_clarification_rounds_are_capped() -> None:
    store = bound_store(reachable={"alice"})
    pt, rt, _ = pair()
    machine, _ = auth_request(store, rt=rt, pt=pt)
    for round_ in range(5):
        drive(machine, PersonAsked(question=f"why {round_}?", at=NOW + round_), store)
        assert machine.state is S.CLARIFYING
        response = poll(machine, store, NOW + round_)
        assert response.headers.get("aauth-requirement") == "requirement=clarification"
        assert body_of(response)["clarification"] == f"why {round_}?"
        answer = {"action": "clarification_response", "clarification_response": "because"}
        assert _clarify(machine, store, answer, NOW + round_).status == 202
        assert machine.state is S.PENDING
    drive(machine, PersonAsked(question="and?", at=NOW + 10), store)
    assert machine.state is S.FAILED
    assert body_of(poll(machine, store, NOW + 11))["error"] == "denied"


def test_clarification_post_needs_a_known_action() -> None:
    store = bound_store(reachable={"alice"})
    pt, rt, _ = pair()
    machine, _ = auth_request(store, rt=rt, pt=pt)
    assert (
        _clarify(
            machine, store, {"action": "clarification_response", "clarification_response": "x"}, NOW
        ).status
        == 400
    )
    drive(machine, PersonAsked(question="why?", at=NOW + 1), store)
    assert _clarify(machine, store, {"clarification_response": "x"}, NOW + 1).status == 400
    assert _clarify(machine, store, {"action": "nope"}, NOW + 1).status == 400
    assert machine.state is S.CLARIFYING


def test_updated_request_with_a_new_resource_token() -> None:
    store = bound_store(reachable={"alice"})
    pt, rt, pt_claims = pair()
    machine, _ = auth_request(store, rt=rt, pt=pt)
    drive(machine, PersonAsked(question="only read?", at=NOW + 1), store)
    # a new resource token naming another person is refused, the record stays
    other_pt, other_claims = person_token(person="bob", jti="pt-bob")
    bad = {
        "action": "updated_request",
        "resource_token": resource_token(other_claims, jti="rt-b"),
        "presented_token": other_pt,
    }
    response = _clarify(machine, store, bad, NOW + 2)
    assert (response.status, body_of(response)["error"]) == (400, "invalid_resource_token")
    assert machine.state is S.CLARIFYING
    good_rt = resource_token(pt_claims, jti="rt-3", scope="data.read")
    good = {"action": "updated_request", "resource_token": good_rt, "presented_token": pt}
    assert _clarify(machine, store, good, NOW + 3).status == 202
    assert machine.state is S.PENDING and machine.data.scope == "data.read"
    drive(machine, PersonDecided(decision=Decision.APPROVE, person="alice", at=NOW + 4), store)
    token = body_of(poll(machine, store, NOW + 5))["auth_token"]
    assert (
        verify_auth_token(token, keys=RESOLVER, now=NOW + 5, audience=RS).claims.scope
        == "data.read"
    )


def test_consent_snapshot_mid_flow_restores_and_completes() -> None:
    store = bound_store()
    pt, rt, _ = pair()
    machine, _ = auth_request(store, rt=rt, pt=pt, extra=INTERACTIVE)
    drive(machine, InteractionArrived(code=machine.data.code or "", at=NOW + 1), store)
    text = machine.snapshot().to_json()
    restored = AuthTokenMachine.restore(Snapshot.from_json(text), config=new_config(store))
    assert restored is not machine and restored.state is S.INTERACTING
    assert restored.data == machine.data
    drive(restored, PersonDecided(decision=Decision.APPROVE, person="alice", at=NOW + 2), store)
    # mid-signing too
    assert restored.state is S.COMPLETED
    response = poll(restored, store, NOW + 3)
    assert response.status == 200
    verify_auth_token(body_of(response)["auth_token"], keys=RESOLVER, now=NOW + 3, audience=RS)


def test_snapshot_while_minting_restores_and_finishes() -> None:
    from aauth_flows.machines.actions import SignatureProduced

    store = bound_store(reachable={"alice"})
    pt, rt, _ = pair()
    machine, _ = auth_request(store, rt=rt, pt=pt)
    actions = machine.handle(PersonDecided(decision=Decision.APPROVE, person="alice", at=NOW + 2))
    [sign] = [a for a in actions if isinstance(a, SignBytes)]
    restored = AuthTokenMachine.restore(
        Snapshot.from_json(machine.snapshot().to_json()), config=new_config(store)
    )
    assert restored.state is S.MINTING
    [record] = restored.handle(SignatureProduced(signature=PS_KEY.sign(sign.data)))
    assert isinstance(record, RecordIssued) and restored.state is S.COMPLETED


# -- nothing issued or recorded twice --------------------------------------------------


def test_s8_second_decision_records_nothing() -> None:
    store = bound_store(reachable={"alice"})
    pt, rt, _ = pair()
    machine, _ = auth_request(store, rt=rt, pt=pt)
    first = drive(
        machine, PersonDecided(decision=Decision.APPROVE, person="alice", at=NOW + 1), store
    )
    assert len(issued(first)) == 1
    again = drive(
        machine, PersonDecided(decision=Decision.APPROVE, person="alice", at=NOW + 2), store
    )
    assert [type(a) for a in again] == [DecisionRefused]
    poll(machine, store, NOW + 3)
    again = drive(machine, PersonDecided(decision=Decision.DENY, person="alice", at=NOW + 4), store)
    assert [type(a) for a in again] == [DecisionRefused]


def test_s8_replayed_request_is_refused_and_records_nothing() -> None:
    store = bound_store()
    store.grants.add(("alice", RS, "data.read data.write", None))
    pt, rt, _ = pair()
    request = signed_post(AT_URL, {"resource_token": rt, "presented_token": pt})
    first = AuthTokenMachine(config=new_config(store))
    assert len(issued(arrive(first, request, store))) == 1
    second = AuthTokenMachine(config=new_config(store))
    actions = arrive(second, request, store, at=NOW + 1, seed=9)
    assert response_of(actions).status == 401 and not records(actions)
    assert response_of(actions).headers.get("signature-error") == "error=invalid_signature"


# -- §8 negatives ----------------------------------------------------------------------


def test_s8_wrong_typ_first_person_token_as_resource_token() -> None:
    store = bound_store()
    pt, _, _ = pair()
    _, actions = auth_request(store, rt=pt, pt=pt)
    assert error_of(actions) == (400, "invalid_resource_token") and not records(actions)


def test_s8_wrong_typ_resource_token_as_presented_token() -> None:
    store = bound_store()
    _, rt, _ = pair()
    _, actions = auth_request(store, rt=rt, pt=rt)
    assert error_of(actions) == (400, "invalid_presented_token")


def test_s8_person_token_where_an_agent_token_must_sign() -> None:
    store = bound_store()
    pt, rt, _ = pair()
    _, actions = auth_request(store, rt=rt, pt=pt, token=pt)
    response = response_of(actions)
    assert response.status == 401 and "invalid_jwt" in (
        response.headers.get("signature-error") or ""
    )


def test_s8_mismatched_presented_jti() -> None:
    store = bound_store()
    pt, claims = person_token()
    rt = resource_token(claims, presented_jti="some-other-jti")
    _, actions = auth_request(store, rt=rt, pt=pt)
    assert error_of(actions) == (400, "invalid_resource_token")


def test_s8_stripped_mission_s256() -> None:
    store = bound_store()
    pt, claims = person_token(mission_s256=s256_of(b"{}"))
    rt = resource_token(claims, mission_s256=None)
    _, actions = auth_request(store, rt=rt, pt=pt)
    assert error_of(actions) == (400, "invalid_resource_token") and not records(actions)


def test_s8_tenant_and_sub_must_agree() -> None:
    store = bound_store()
    pt, claims = person_token(tenant="acme")
    _, actions = auth_request(store, rt=resource_token(claims, tenant="evil"), pt=pt)
    assert error_of(actions) == (400, "invalid_resource_token")
    _, actions = auth_request(store, rt=resource_token(claims, sub="someone-else"), pt=pt, seed=2)
    assert error_of(actions) == (400, "invalid_resource_token")


def test_s8_resource_token_aud_not_this_ps_for_three_party() -> None:
    store = bound_store()
    pt, claims = person_token()
    rt = resource_token(claims, aud="https://other-ps.example", ps="https://other-ps.example")
    _, actions = auth_request(store, rt=rt, pt=pt)
    assert error_of(actions) == (400, "invalid_resource_token")
    assert not any(isinstance(a, SignBytes) for a in actions)


def test_s8_agent_jkt_mismatch() -> None:
    store = bound_store()
    pt, claims = person_token()
    rt = resource_token(claims, agent_jkt=AP_KEY.public_jwk().thumbprint())
    _, actions = auth_request(store, rt=rt, pt=pt)
    assert error_of(actions) == (400, "invalid_resource_token")


def test_s8_presented_token_bound_to_another_key() -> None:
    store = bound_store()
    pt, claims = person_token(key=AP_KEY.public_jwk())
    _, actions = auth_request(store, rt=resource_token(claims), pt=pt)
    assert error_of(actions) == (400, "invalid_presented_token")


def test_s8_presented_token_from_another_ps() -> None:
    store = bound_store()
    pt, claims = person_token(iss="https://other-ps.example", signer=OTHER_PS_KEY)
    _, actions = auth_request(store, rt=resource_token(claims), pt=pt)
    assert error_of(actions) == (400, "invalid_presented_token")


def test_s8_expired_tokens_with_zero_leeway() -> None:
    store = bound_store()
    pt, claims = person_token()
    rt = resource_token(claims, exp=NOW, iat=NOW - 100)
    _, actions = auth_request(store, rt=rt, pt=pt)
    assert error_of(actions) == (400, "expired_resource_token")
    pt, claims = person_token(exp=NOW, iat=NOW - 100)
    _, actions = auth_request(store, rt=resource_token(claims), pt=pt, seed=2)
    assert error_of(actions) == (400, "expired_presented_token")
    _, actions = auth_request(store, rt=rt, pt=pt, token=agent_token(exp=NOW), seed=3)
    response = response_of(actions)
    assert response.status == 401 and response.headers.get("signature-error") == "error=expired_jwt"


def test_s8_future_iat_is_clock_skew() -> None:
    store = bound_store()
    pt, claims = person_token()
    rt = resource_token(claims, iat=NOW + 120, exp=NOW + 300)
    _, actions = auth_request(store, rt=rt, pt=pt)
    assert error_of(actions) == (400, "clock_skew")


def test_s8_revoked_tokens_as_parameters() -> None:
    store = bound_store()
    pt, claims = person_token()
    store.revoked[(PS, claims.jti)] = claims.exp
    _, actions = auth_request(store, rt=resource_token(claims), pt=pt)
    assert error_of(actions) == (400, "revoked_presented_token")
    store = bound_store()
    store.revoked[(RS, "rt-1")] = NOW + 300
    _, actions = auth_request(store, rt=resource_token(claims), pt=pt)
    assert error_of(actions) == (400, "revoked_resource_token")


def test_s8_subagent_signer_refused_at_both_token_endpoints() -> None:
    from signing_helpers import generated_ed25519

    sub_key = generated_ed25519()
    sub_token = agent_token(key=sub_key, sub="aauth:assistant+s1@agent.example", parent=AGENT)
    store = bound_store()
    pt, claims = person_token(key=sub_key.public_jwk())
    rt = resource_token(claims, agent_jkt=sub_key.public_jwk().thumbprint())
    machine = AuthTokenMachine(config=new_config(store))
    request = signed_post(
        AT_URL, {"resource_token": rt, "presented_token": pt}, token=sub_token, key=sub_key
    )
    actions = arrive(machine, request, store)
    assert error_of(actions) == (400, "invalid_request") and not records(actions)
    machine2 = PersonTokenMachine(config=new_config(store))
    request = signed_post(PT_URL, {"resource": RS}, token=sub_token, key=sub_key)
    assert error_of(arrive(machine2, request, store)) == (400, "invalid_request")


def test_s8_parent_mediated_subagent_auth_token_binds_the_subagent() -> None:
    from signing_helpers import generated_ed25519

    sub_key = generated_ed25519()
    sub_token = agent_token(key=sub_key, sub="aauth:assistant+s1@agent.example", parent=AGENT)
    store = bound_store()
    store.grants.add(("alice", RS, "data.read data.write", None))
    pt, claims = person_token(key=sub_key.public_jwk())
    rt = resource_token(claims, agent_jkt=sub_key.public_jwk().thumbprint())
    _, actions = auth_request(store, rt=rt, pt=pt, extra={"subagent_token": sub_token})
    token = body_of(response_of(actions))["auth_token"]
    assert verify_auth_token(token, keys=RESOLVER, now=NOW, audience=RS).claims.cnf.binds(
        sub_key.public_jwk()
    )
    # without the subagent_token the resource token's agent_jkt does not match the signer
    _, actions = auth_request(store, rt=rt, pt=pt, seed=2)
    assert error_of(actions) == (400, "invalid_resource_token")


def test_s8_scope_escalation_in_a_decision_is_refused() -> None:
    store = bound_store(reachable={"alice"})
    pt, rt, _ = pair()
    machine, _ = auth_request(store, rt=rt, pt=pt)
    [refused] = drive(
        machine,
        PersonDecided(
            decision=Decision.APPROVE, person="alice", scope="data.read admin", at=NOW + 1
        ),
        store,
    )
    assert isinstance(refused, DecisionRefused) and machine.state is S.PENDING
    drive(
        machine,
        PersonDecided(decision=Decision.APPROVE, person="alice", scope="data.read", at=NOW + 2),
        store,
    )
    token = body_of(poll(machine, store, NOW + 3))["auth_token"]
    assert (
        verify_auth_token(token, keys=RESOLVER, now=NOW + 3, audience=RS).claims.scope
        == "data.read"
    )


@pytest.mark.parametrize(
    ("agent_exp", "pt_exp", "mission_exp", "expected"),
    [
        (NOW + 3600, NOW + 3600, None, NOW + 3600),  # one hour
        (NOW + 900, NOW + 3000, None, NOW + 900),  # agent token
        (NOW + 3600, NOW + 1200, None, NOW + 1200),  # presented token
        (NOW + 3600, NOW + 3000, NOW + 700, NOW + 700),  # mission expiry
    ],
)
def test_s8_auth_token_lifetime_caps(
    agent_exp: int, pt_exp: int, mission_exp: int | None, expected: int
) -> None:
    store = bound_store()
    mission = None
    if mission_exp is not None:
        mission = s256_of(b'{"m":1}')
        store.missions[mission] = MissionRecord(
            s256=mission, agent_iss=AP, agent_sub=AGENT, expires_at=mission_exp
        )
    store.grants.add(("alice", RS, "data.read data.write", mission))
    pt, claims = person_token(exp=pt_exp, iat=NOW, mission_s256=mission)
    _, actions = auth_request(
        store, rt=resource_token(claims), pt=pt, token=agent_token(exp=agent_exp, iat=NOW)
    )
    token = body_of(response_of(actions))["auth_token"]
    claims_out = verify_auth_token(token, keys=RESOLVER, now=NOW, audience=RS).claims
    assert claims_out.exp == expected and claims_out.exp - claims_out.iat <= 3600


def test_s8_terminated_mission_is_refused() -> None:
    store = bound_store()
    mission = s256_of(b'{"m":2}')
    store.missions[mission] = MissionRecord(
        s256=mission, agent_iss=AP, agent_sub=AGENT, active=False, termination_reason="completed"
    )
    pt, claims = person_token(mission_s256=mission)
    _, actions = auth_request(store, rt=resource_token(claims), pt=pt)
    assert error_of(actions) == (403, "mission_terminated")


def test_auth_token_for_a_person_the_ps_does_not_know() -> None:
    store = new_store()  # no binding, no record
    pt, rt, _ = pair()
    _, actions = auth_request(store, rt=rt, pt=pt)
    assert error_of(actions) == (400, "invalid_presented_token")


def test_auth_token_bad_bodies() -> None:
    store = bound_store()
    pt, rt, _ = pair()
    for body in (
        {"presented_token": pt},
        {"resource_token": rt},
        {"resource_token": rt, "presented_token": pt, "capabilities": [1]},
    ):
        machine = AuthTokenMachine(config=new_config(store))
        actions = arrive(machine, signed_post(AT_URL, body), store)
        assert error_of(actions) == (400, "invalid_request")
    machine = AuthTokenMachine(config=new_config(store))
    raw = b'{"resource_token": "a", "resource_token": "b", "presented_token": "c"}'
    assert error_of(arrive(machine, signed_post(AT_URL, raw), store)) == (400, "invalid_request")


def test_issued_auth_token_record() -> None:
    store = bound_store()
    store.grants.add(("alice", RS, "data.read data.write", None))
    pt, rt, _ = pair()
    _, actions = auth_request(store, rt=rt, pt=pt)
    [record] = issued(actions)
    assert record.record.kind is IssuedKind.AUTH and record.record.aud == RS
    assert isinstance(actions[-1], Respond) and actions[-1].response.status == 200
