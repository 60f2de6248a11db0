"""Person Server machines: approval-mode prompts (§5.4, §8), resource-initiated interaction
(§5.4), pending-URL hygiene (§5.9, §8) and chained person tokens (§5.3, §7.4), with real
signatures (agents and resources are played with core functions)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from attrs import evolve
from signing_helpers import generated_ed25519
from test_flow_ps_world import (
    AGENT,
    AP,
    NOW,
    PS,
    RS,
    RS_KEY,
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
    signed_get,
    signed_post,
)

from aauth_core.headers.requirement import Requirement
from aauth_core.mission import mission_s256 as s256_of
from aauth_core.requests import sign_aauth_request
from aauth_core.tokens import verify_auth_token, verify_person_token
from aauth_core.tokens.claims import ResourceInteraction
from aauth_flows.machines.actions import SignBytes
from aauth_flows.machines.engine import Action, Snapshot
from aauth_flows.machines.person_server import (
    AuthTokenMachine,
    ConsentMode,
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
    RedirectPerson,
    ResourceCallback,
    TokenRequestState,
    directed_sub,
)

S = TokenRequestState
PT_URL = PS + "/person-token"
AT_URL = PS + "/auth-token"
INTERACTIVE = {"capabilities": ["interaction"]}
LINK = RS + "/link"
R2 = "https://r2.example"
CHAIN_AGENT = "aauth:chain@resource.example"


def bound_store(**kwargs: Any) -> InMemoryPsStore:
    store = new_store(**kwargs)
    store.bindings[(AP, AGENT)] = "alice"
    return store


def of_type(actions: list[Action], kind: type[Any]) -> list[Any]:
    return [a for a in actions if isinstance(a, kind)]


def error_of(response: Any) -> tuple[int, str]:
    return response.status, body_of(response)["error"]


def auth_request(
    store: InMemoryPsStore,
    *,
    interaction: ResourceInteraction | None = None,
    extra: dict[str, Any] | None = None,
    **config: Any,
) -> tuple[AuthTokenMachine, list[Action]]:
    pt, claims = person_token()
    rt = resource_token(claims, interaction=interaction) if interaction else resource_token(claims)
    machine = AuthTokenMachine(config=new_config(store, **config))
    body = {"resource_token": rt, "presented_token": pt, **(extra or {})}
    return machine, arrive(machine, signed_post(AT_URL, body), store)


def signed_by_stranger(url: str, at: int, method: str = "GET") -> Any:
    """A poll signed by another agent of the same AP (its own key and agent token)."""
    from aauth_core.http import HttpRequest

    key = generated_ed25519()
    token = agent_token(key=key, sub="aauth:intruder@agent.example", jti="agent-jti-x")
    bare = HttpRequest(method=method, url=url)
    return evolve(
        bare,
        headers=bare.headers.with_fields(sign_aauth_request(bare, key, token=token, created=at)),
    )


# -- 1. approval mode: the person is prompted through the PS's channel ---------------------


def test_approval_prompt_for_an_auth_token_carries_the_full_context() -> None:
    store = bound_store(reachable={"alice"})
    extra = {"justification": "Find **free** slots"}
    machine, actions = auth_request(store, extra=extra)
    response = response_of(actions)
    assert (response.status, response.headers.get("aauth-requirement")) == (
        202,
        "requirement=approval",
    )
    [prompt] = of_type(actions, ConsentPrompt)
    assert prompt.channel is ConsentMode.APPROVAL and prompt.kind is IssuedKind.AUTH
    assert (prompt.pending_url, prompt.person) == (machine.data.pending_url, "alice")
    assert (prompt.agent, prompt.agent_provider, prompt.resource) == (AGENT, AP, RS)
    assert prompt.scope == "data.read data.write"
    # agent-asserted text is its own field, never merged into what the PS/resource assert
    assert prompt.justification == "Find **free** slots"
    assert prompt.clarification_response is None
    assert not of_type(actions, RecordGrant) and not of_type(actions, SignBytes)

    # the person's decision event resolves the pending request
    decided = drive(
        machine, PersonDecided(decision=Decision.APPROVE, person="alice", at=NOW + 3), store
    )
    assert of_type(decided, RecordGrant) and machine.state is S.COMPLETED
    token = body_of(poll(machine, store, NOW + 4))["auth_token"]
    claims = verify_auth_token(token, keys=new_config(store).keys, now=NOW + 4, audience=RS).claims
    assert claims.sub == directed_sub(SECRET, "alice", RS)


def test_approval_prompt_for_a_person_token_asks_may_this_agent_act_as_you() -> None:
    store = bound_store(reachable={"alice"})
    machine = PersonTokenMachine(config=new_config(store))
    actions = arrive(machine, signed_post(PT_URL, {"resource": RS}), store)
    [prompt] = of_type(actions, ConsentPrompt)
    assert (prompt.kind, prompt.channel, prompt.scope) == (
        IssuedKind.PERSON,
        ConsentMode.APPROVAL,
        None,
    )
    assert (prompt.agent, prompt.agent_provider, prompt.resource) == (AGENT, AP, RS)


def test_interaction_prompt_is_the_same_kind_of_action_with_channel_interaction() -> None:
    store = bound_store()
    machine, actions = auth_request(store, extra=INTERACTIVE)
    assert not of_type(actions, ConsentPrompt)  # nobody to ask until she arrives
    code = Requirement.parse(response_of(actions).headers.get("aauth-requirement") or "").code
    [prompt] = drive(machine, InteractionArrived(code=code or "", at=NOW + 1), store)
    assert isinstance(prompt, ConsentPrompt) and prompt.channel is ConsentMode.INTERACTION
    assert (prompt.agent_provider, prompt.person) == (AP, "alice")


def test_approval_prompt_is_repeated_with_the_agents_clarification_answer() -> None:
    store = bound_store(reachable={"alice"})
    machine, _ = auth_request(store)
    drive(machine, PersonAsked(question="Which calendar?", at=NOW + 1), store)
    answer = {"action": "clarification_response", "clarification_response": "Work only."}
    request = signed_post(machine.data.pending_url, answer, at=NOW + 2)
    actions = drive(machine, PendingRequest(request=request, at=NOW + 2), store)
    assert response_of(actions).headers.get("aauth-requirement") == "requirement=approval"
    [prompt] = of_type(actions, ConsentPrompt)
    assert prompt.channel is ConsentMode.APPROVAL
    assert prompt.clarification_response == "Work only." and prompt.justification is None


def test_s8_approval_decision_by_another_person_is_refused() -> None:
    store = bound_store(reachable={"alice"})
    machine, _ = auth_request(store)
    [refused] = drive(
        machine, PersonDecided(decision=Decision.APPROVE, person="mallory", at=NOW + 1), store
    )
    assert isinstance(refused, DecisionRefused) and machine.state is S.PENDING


# -- 2. resource-initiated interaction (§5.4) ----------------------------------------------

RESOURCE_FLOW = ResourceInteraction(url=LINK, code="RSRC-7Q2K")


def _at_resource(
    store: InMemoryPsStore | None = None, **config: Any
) -> tuple[AuthTokenMachine, InMemoryPsStore, RedirectPerson]:
    store = store if store is not None else bound_store()
    machine, actions = auth_request(store, interaction=RESOURCE_FLOW, extra=INTERACTIVE, **config)
    response = response_of(actions)
    req = Requirement.parse(response.headers.get("aauth-requirement") or "")
    # the agent is sent to the PS's own interaction page, with the PS's own code
    assert (response.status, req.requirement, req.url) == (202, "interaction", PS + "/interact")
    assert req.code != RESOURCE_FLOW.code
    [redirect] = drive(machine, InteractionArrived(code=req.code or "", at=NOW + 2), store)
    assert isinstance(redirect, RedirectPerson) and machine.state is S.AT_RESOURCE
    return machine, store, redirect


def test_resource_interaction_redirects_the_person_then_runs_the_ps_consent() -> None:
    machine, store, redirect = _at_resource()
    parts = urlsplit(redirect.url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == LINK
    query = parse_qs(parts.query)
    assert query["code"] == [RESOURCE_FLOW.code]
    [callback] = query["callback"]
    assert callback == machine.data.callback_url and callback.startswith(PS + "/callback/")
    assert machine.data.pending_url.rsplit("/", 1)[1] not in callback  # not the pending URL

    # while she is at the resource: the agent is told "interacting", nobody decides yet
    assert body_of(poll(machine, store, NOW + 3))["status"] == "interacting"
    [refused] = drive(
        machine, PersonDecided(decision=Decision.APPROVE, person="alice", at=NOW + 4), store
    )
    assert isinstance(refused, DecisionRefused) and machine.state is S.AT_RESOURCE

    [prompt] = drive(machine, ResourceCallback(error=None, at=NOW + 5), store)
    assert isinstance(prompt, ConsentPrompt) and prompt.channel is ConsentMode.INTERACTION
    assert machine.state is S.INTERACTING
    actions = drive(
        machine, PersonDecided(decision=Decision.APPROVE, person="alice", at=NOW + 6), store
    )
    assert of_type(actions, RecordGrant) and of_type(actions, RecordIssued)
    assert "auth_token" in body_of(poll(machine, store, NOW + 7))


def test_resource_interaction_snapshot_round_trips_while_at_the_resource() -> None:
    machine, store, _ = _at_resource()
    snapshot = Snapshot.from_json(machine.snapshot().to_json())
    restored = AuthTokenMachine.restore(snapshot, config=new_config(store))
    assert restored.state is S.AT_RESOURCE and restored.data == machine.data
    [prompt] = drive(restored, ResourceCallback(error=None, at=NOW + 5), store)
    assert isinstance(prompt, ConsentPrompt)


@pytest.mark.parametrize(
    ("error", "code", "status"),
    [
        ("access_denied", "denied", 403),
        ("user_abandoned", "abandoned", 403),
        ("interaction_expired", "expired", 408),
        ("server_error", "server_error", 500),
        ("temporarily_unavailable", "server_error", 500),
        ("something_else", "server_error", 500),
    ],
)
def test_resource_callback_error_maps_to_the_polling_outcome(
    error: str, code: str, status: int
) -> None:
    machine, store, _ = _at_resource()
    actions = drive(machine, ResourceCallback(error=error, at=NOW + 5), store)
    assert machine.state is S.FAILED and not of_type(actions, ConsentPrompt)
    assert not [a for a in actions if type(a).__name__.startswith("Record")]
    assert error_of(poll(machine, store, NOW + 6)) == (status, code)
    assert poll(machine, store, NOW + 7).status == 410


def test_resource_interaction_skips_the_prompt_when_the_grant_is_remembered() -> None:
    store = bound_store()
    store.grants.add(("alice", RS, "data.read data.write", None))
    machine, store, _ = _at_resource(store)
    actions = drive(machine, ResourceCallback(error=None, at=NOW + 5), store)
    assert not of_type(actions, ConsentPrompt) and of_type(actions, RecordIssued)
    assert "auth_token" in body_of(poll(machine, store, NOW + 6))


def test_resource_callback_after_expiry_is_expired() -> None:
    machine, store, _ = _at_resource()
    drive(machine, ResourceCallback(error=None, at=NOW + 600), store)
    assert machine.state is S.FAILED
    assert error_of(poll(machine, store, NOW + 601)) == (408, "expired")


def test_resource_callback_outside_the_detour_is_refused() -> None:
    store = bound_store()
    machine, _ = auth_request(store, extra=INTERACTIVE)  # no resource interaction
    [refused] = drive(machine, ResourceCallback(error=None, at=NOW + 1), store)
    assert isinstance(refused, DecisionRefused) and machine.state is S.PENDING


def test_s8_resource_interaction_url_on_an_unadmitted_origin_is_refused() -> None:
    store = bound_store()
    elsewhere = ResourceInteraction(url="https://phish.example/link", code="RSRC-7Q2K")
    machine, actions = auth_request(store, interaction=elsewhere, extra=INTERACTIVE)
    assert error_of(response_of(actions)) == (400, "invalid_resource_token")
    assert machine.state is S.REJECTED and not of_type(actions, RedirectPerson)
    assert not [a for a in actions if type(a).__name__.startswith("Record")]


def test_resource_interaction_url_on_an_admitted_origin_is_followed() -> None:
    store = bound_store()
    elsewhere = ResourceInteraction(url="https://login.resource-idp.example/link", code="AB12")
    machine, actions = auth_request(
        store,
        interaction=elsewhere,
        extra=INTERACTIVE,
        interaction_origins={"https://login.resource-idp.example"},
    )
    code = Requirement.parse(response_of(actions).headers.get("aauth-requirement") or "").code
    [redirect] = drive(machine, InteractionArrived(code=code or "", at=NOW + 1), store)
    assert isinstance(redirect, RedirectPerson)
    assert redirect.url.startswith("https://login.resource-idp.example/link?code=AB12&callback=")


def test_s8_resource_interaction_code_that_would_need_escaping_is_refused() -> None:
    store = bound_store()
    bad = ResourceInteraction(url=LINK, code="x&callback=https://evil.example")
    _, actions = auth_request(store, interaction=bad, extra=INTERACTIVE)
    assert error_of(response_of(actions)) == (400, "invalid_resource_token")


def test_resource_interaction_without_the_interaction_capability_is_user_unreachable() -> None:
    store = bound_store(reachable={"alice"})
    _, actions = auth_request(store, interaction=RESOURCE_FLOW)
    assert error_of(response_of(actions)) == (403, "user_unreachable")


# -- 3. pending-URL hygiene (§5.9, §8) ------------------------------------------------------


def _completed(store: InMemoryPsStore) -> AuthTokenMachine:
    machine, _ = auth_request(store)
    drive(machine, PersonDecided(decision=Decision.APPROVE, person="alice", at=NOW + 1), store)
    assert machine.state is S.COMPLETED
    return machine


def test_s8_ps_pending_not_yours_is_404_not_found_and_changes_nothing() -> None:
    store = bound_store(reachable={"alice"})
    machine = _completed(store)
    url = machine.data.pending_url
    for method in ("GET", "DELETE"):
        request = signed_by_stranger(url, NOW + 2, method)
        answer = response_of(drive(machine, PendingRequest(request=request, at=NOW + 2), store))
        assert error_of(answer) == (404, "not_found")
        assert answer.headers.get("signature-error") is None
    assert machine.state is S.COMPLETED  # the result was not consumed by the stranger
    assert poll(machine, store, NOW + 3).status == 200


def test_s8_ps_gone_pending_url_is_410_only_to_its_agent() -> None:
    store = bound_store(reachable={"alice"})
    machine = _completed(store)
    url = machine.data.pending_url
    assert poll(machine, store, NOW + 2).status == 200
    assert machine.state is S.GONE
    request = signed_by_stranger(url, NOW + 3)
    stranger = response_of(drive(machine, PendingRequest(request=request, at=NOW + 3), store))
    assert error_of(stranger) == (404, "not_found")  # it must not learn the URL existed
    assert error_of(poll(machine, store, NOW + 4)) == (410, "invalid_code")


def test_s8_ps_pending_poll_with_a_bad_signature_is_401_even_when_gone() -> None:
    store = bound_store(reachable={"alice"})
    machine = _completed(store)
    poll(machine, store, NOW + 2)
    stale = signed_get(machine.data.pending_url, at=NOW - 600)  # outside the window
    answer = response_of(drive(machine, PendingRequest(request=stale, at=NOW + 3), store))
    assert answer.status == 401 and answer.headers.get("signature-error") is not None


def test_s8_ps_not_yours_answer_equals_the_unknown_url_answer() -> None:
    from aauth_flows.machines.person_server import not_found

    store = bound_store(reachable={"alice"})
    machine, _ = auth_request(store)
    request = signed_by_stranger(machine.data.pending_url, NOW + 1)
    answer = response_of(drive(machine, PendingRequest(request=request, at=NOW + 1), store))
    unknown = not_found()
    assert (answer.status, answer.body, answer.headers) == (
        unknown.status,
        unknown.body,
        unknown.headers,
    )


# -- 4. person tokens with upstream_token (§5.3, §7.4) --------------------------------------


def _chain_request(
    store: InMemoryPsStore,
    *,
    up_exp: int = NOW + 700,
    up_mission: str | None = None,
    caps: bool = False,
    at: int = NOW,
) -> tuple[PersonTokenMachine, list[Action], Any, Any]:
    r1_key = generated_ed25519()
    r1_agent = agent_token(key=r1_key, sub=CHAIN_AGENT, iss=RS, signer=RS_KEY)
    upstream, up_claims = person_token(aud=RS, exp=up_exp, mission_s256=up_mission)
    store.directed[(RS, up_claims.sub)] = "alice"
    machine = PersonTokenMachine(config=new_config(store))
    body: dict[str, Any] = {"resource": R2, "upstream_token": upstream}
    if caps:
        body.update(INTERACTIVE)
    actions = arrive(machine, signed_post(PT_URL, body, token=r1_agent, key=r1_key, at=at), store)
    return machine, actions, up_claims, r1_key


def test_chained_person_token_first_time_needs_the_upstream_persons_consent() -> None:
    store = new_store(reachable={"alice"})
    machine, actions, up_claims, r1_key = _chain_request(store)
    response = response_of(actions)
    assert (response.status, response.headers.get("aauth-requirement")) == (
        202,
        "requirement=approval",
    )
    assert not of_type(actions, RecordIssued)
    [prompt] = of_type(actions, ConsentPrompt)
    assert (prompt.person, prompt.agent, prompt.agent_provider, prompt.resource) == (
        "alice",
        CHAIN_AGENT,
        RS,
        R2,
    )
    decided = drive(
        machine, PersonDecided(decision=Decision.APPROVE, person="alice", at=NOW + 1), store
    )
    # consent is recorded for the intermediary; no binding is used or created
    assert [
        (a.person, a.agent_iss, a.agent_sub, a.resource) for a in of_type(decided, RecordConsent)
    ] == [("alice", RS, CHAIN_AGENT, R2)]
    assert not of_type(decided, RecordBinding)
    [record] = of_type(decided, RecordIssued)
    assert record.record.upstream == (PS, up_claims.jti)
    body = body_of(poll_as(machine, store, NOW + 2, r1_key))
    claims = verify_person_token(
        body["person_token"], keys=new_config(store).keys, now=NOW + 2, audience=R2
    ).claims
    assert claims.sub == directed_sub(SECRET, "alice", R2) != up_claims.sub
    assert claims.exp == NOW + 700  # capped at the upstream token's exp

    # remembered: the next chained request is issued at once
    again, actions, _, _ = _chain_request(store, at=NOW + 5)
    assert response_of(actions).status == 200 and again.state is S.ANSWERED


def poll_as(machine: PersonTokenMachine, store: InMemoryPsStore, at: int, key: Any) -> Any:
    from aauth_core.http import HttpRequest

    token = machine.data.agent_token
    bare = HttpRequest(method="GET", url=machine.data.pending_url)
    fields = sign_aauth_request(bare, key, token=token, created=at)
    request = evolve(bare, headers=bare.headers.with_fields(fields))
    return response_of(drive(machine, PendingRequest(request=request, at=at), store))


def test_s8_chained_person_token_decision_by_another_person_is_refused() -> None:
    store = new_store(reachable={"alice"})
    machine, _, _, _ = _chain_request(store)
    [refused] = drive(
        machine, PersonDecided(decision=Decision.APPROVE, person="mallory", at=NOW + 1), store
    )
    assert isinstance(refused, DecisionRefused) and machine.state is S.PENDING


def test_chained_person_token_without_a_channel_is_user_unreachable() -> None:
    store = new_store()  # alice is not reachable, the intermediary cannot show a page
    machine, actions, _, _ = _chain_request(store)
    assert error_of(response_of(actions)) == (403, "user_unreachable")
    assert machine.state is S.REJECTED and not of_type(actions, RecordIssued)


def test_chained_person_token_interaction_when_the_intermediary_can_relay() -> None:
    store = new_store()
    machine, actions, _, _ = _chain_request(store, caps=True)
    req = Requirement.parse(response_of(actions).headers.get("aauth-requirement") or "")
    assert req.requirement == "interaction"
    [prompt] = drive(machine, InteractionArrived(code=req.code or "", at=NOW + 1), store)
    assert isinstance(prompt, ConsentPrompt) and prompt.person == "alice"


def test_chained_person_token_copies_the_upstream_mission_and_caps_exp() -> None:
    s256 = s256_of(b'{"description":"plan the offsite"}')
    store = new_store()
    # the mission is the upstream agent's, not the intermediary's
    store.missions[s256] = MissionRecord(
        s256=s256, agent_iss=AP, agent_sub=AGENT, expires_at=NOW + 500
    )
    store.consents.add(("alice", RS, CHAIN_AGENT, R2))
    _, actions, _, _ = _chain_request(store, up_mission=s256)
    token = body_of(response_of(actions))["person_token"]
    claims = verify_person_token(token, keys=new_config(store).keys, now=NOW, audience=R2).claims
    assert claims.mission_s256 == s256
    assert claims.exp == NOW + 500  # min(upstream 700, mission 500)


def test_s8_chained_person_token_with_a_terminated_mission_is_refused() -> None:
    s256 = s256_of(b'{"description":"plan the offsite"}')
    store = new_store()
    store.missions[s256] = MissionRecord(
        s256=s256, agent_iss=AP, agent_sub=AGENT, active=False, termination_reason="revoked"
    )
    store.consents.add(("alice", RS, CHAIN_AGENT, R2))
    _, actions, _, _ = _chain_request(store, up_mission=s256)
    assert error_of(response_of(actions)) == (403, "mission_terminated")
    assert not of_type(actions, RecordIssued)


def test_chained_person_token_exp_is_capped_after_a_deferred_consent() -> None:
    store = new_store(reachable={"alice"})
    machine, _, _, _ = _chain_request(store, up_exp=NOW + 60)
    drive(machine, PersonDecided(decision=Decision.APPROVE, person="alice", at=NOW + 20), store)
    claims = machine.data.person_claims
    assert claims is not None and (claims.iat, claims.exp) == (NOW + 20, NOW + 60)


def test_chained_person_token_is_not_minted_once_the_upstream_token_expired() -> None:
    store = new_store(reachable={"alice"})
    machine, _, _, r1_key = _chain_request(store, up_exp=NOW + 30)
    actions = drive(
        machine, PersonDecided(decision=Decision.APPROVE, person="alice", at=NOW + 40), store
    )
    assert not of_type(actions, SignBytes) and machine.state is S.FAILED
    assert error_of(poll_as(machine, store, NOW + 41, r1_key)) == (408, "expired")
