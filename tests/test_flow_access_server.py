"""The Access Server's machines on their own: every §8 check that applies to the AS's
token and revocation endpoints as a named negative test, the pending record's rules,
the issuance caps, the revocation cascade, and every (state, event) pair."""

from __future__ import annotations

import json
from typing import Any

import pytest
from attrs import evolve
from hypothesis import given, settings
from hypothesis import strategies as st
from test_flow_federation_world import (
    AGENT_ID,
    AP,
    AS,
    ENDPOINT,
    KEYS,
    NOW,
    PENDING,
    PS,
    RS,
    SIGNERS,
    ScriptedPolicy,
    agent_claims,
    as_config,
    auth_claims,
    federation_request,
    mint,
    person_claims,
    resource_claims,
    sign,
    subagent_claims,
)

from aauth_core.errors import AAuthError, IllegalTransition, LocalProtocolError
from aauth_core.http import HttpRequest, HttpResponse
from aauth_core.httpsig import sign_request
from aauth_core.requests import sign_aauth_request
from aauth_core.signature_key import serialize_jwks_uri_scheme
from aauth_core.tokens import DWK_AGENT, DWK_PERSON, DWK_RESOURCE, Confirmation, inspect_token
from aauth_flows.machines.access_server import (
    AuthTokenExchange,
    DownstreamUnavailable,
    ExchangeState,
    PendingRequestReceived,
    RevocationReceived,
    RevocationRequest,
    RevocationState,
    TokenRequestReceived,
)
from aauth_flows.machines.actions import (
    Respond,
    ResponseReceived,
    SendRequest,
    SignatureProduced,
    SignBytes,
    TimerFired,
)
from aauth_flows.machines.as_policy import (
    AccessServerConfig,
    Deny,
    Grant,
    InMemoryAccessServerStore,
    IssuedAuthToken,
    RecordIssued,
    RecordRevocation,
    RequireApproval,
    RequireClaims,
    StaticPersonServers,
    StaticResourceDirectory,
)
from aauth_flows.machines.as_revocation import DownstreamRevocation
from aauth_flows.machines.as_wire import begin_server_request, finish_server_request, json_request
from aauth_flows.machines.engine import Action, Event, Snapshot
from aauth_flows.machines.federation_api import FederationRequest

OTHER_PS = "https://other-ps.example"
NONCE = bytes(range(16))


def body_of(request: FederationRequest) -> dict[str, Any]:
    body = {
        "resource_token": request.resource_token,
        "agent_token": request.agent_token,
        "presented_token": request.presented_token,
    }
    if request.subagent_token:
        body["subagent_token"] = request.subagent_token
    if request.upstream_token:
        body["upstream_token"] = request.upstream_token
    return body


def server_signed(
    body: dict[str, Any] | None,
    *,
    url: str = ENDPOINT,
    method: str = "POST",
    signer: str = "ps",
    issuer: str = PS,
    dwk: str = DWK_PERSON,
    created: int = NOW,
) -> HttpRequest:
    pending, action = begin_server_request(
        KEYS[signer], json_request(method, url, body), issuer=issuer, dwk=dwk, created=created
    )
    return finish_server_request(KEYS[signer], pending, SIGNERS[signer].sign(action.data))


def exchange(
    request: HttpRequest,
    policy: Any = None,
    store: InMemoryAccessServerStore | None = None,
    **over: Any,
) -> tuple[AuthTokenExchange, HttpResponse, list[Action]]:
    store = store or InMemoryAccessServerStore()
    machine = AuthTokenExchange(config=as_config(policy or ScriptedPolicy(Grant()), store, **over))
    actions = machine.handle(TokenRequestReceived(request=request, at=NOW, nonce=NONCE))
    return machine, *_finish(machine, actions)


def _finish(machine: Any, actions: list[Action]) -> tuple[HttpResponse, list[Action]]:
    seen: list[Action] = []
    queue = list(actions)
    while queue:
        action = queue.pop(0)
        seen.append(action)
        if isinstance(action, SignBytes):
            queue.extend(machine.handle(sign(action)))
        elif isinstance(action, Respond):
            return action.response, seen
    raise AssertionError("no response")


def problem(response: HttpResponse) -> str:
    assert response.headers.get("content-type") == "application/problem+json"
    code: str = json.loads(response.body)["error"]
    return code


def rejected(request: HttpRequest, status: int, code: str, **over: Any) -> HttpResponse:
    machine, response, actions = exchange(request, **over)
    assert (response.status, problem(response)) == (status, code)
    assert machine.state is ExchangeState.REJECTED
    assert not any(isinstance(a, RecordIssued | SignBytes) for a in actions)  # nothing issued
    return response


def good_body(**kwargs: Any) -> dict[str, Any]:
    return body_of(federation_request(**kwargs))


# -- §8 signatures and keys (the PS's server signature) ---------------------------------------


def test_grant_answers_200_and_records_the_token_once() -> None:
    store = InMemoryAccessServerStore()
    machine, response, actions = exchange(server_signed(good_body()), store=store)
    assert response.status == 200 and machine.state is ExchangeState.ISSUED
    body = json.loads(response.body)
    assert set(body) == {"auth_token", "expires_in"}
    records = [a for a in actions if isinstance(a, RecordIssued)]
    assert len(records) == 1
    assert records[0].record.jti == inspect_token(body["auth_token"]).payload["jti"]


def test_s8_signature_headers_required() -> None:
    request = json_request("POST", ENDPOINT, good_body())
    response = rejected(request, 401, "invalid_signature")
    assert response.headers.get("signature-error") == "error=invalid_signature"


def test_s8_agent_jwt_scheme_is_unsupported_for_a_ps() -> None:
    request = json_request("POST", ENDPOINT, good_body())
    fields = sign_aauth_request(
        request, SIGNERS["agent"], token=mint(agent_claims(), "ap"), created=NOW, cover_body=True
    )
    signed = evolve(request, headers=request.headers.with_fields(fields))
    response = rejected(signed, 401, "unsupported_scheme")
    assert response.headers.get("accept-signature-scheme") == "jwks_uri"


def test_s8_body_must_be_covered() -> None:
    request = json_request("POST", ENDPOINT, good_body())
    key = serialize_jwks_uri_scheme("sig", id=PS, dwk=DWK_PERSON, kid=KEYS["ps"].key_id)
    fields = sign_request(
        request,
        SIGNERS["ps"],
        covered=("@method", "@authority", "@path", "signature-key"),
        created=NOW,
        extra_headers={"Signature-Key": key},
    )
    signed = evolve(request, headers=request.headers.with_fields({"Signature-Key": key, **fields}))
    response = rejected(signed, 401, "invalid_input")
    assert "content-digest" in (response.headers.get("signature-error") or "")


def test_s8_content_digest_checked_against_the_body() -> None:
    signed = server_signed(good_body())
    tampered = evolve(signed, body=signed.body.replace(b"resource_token", b"resource_tokem"))
    rejected(tampered, 401, "invalid_signature")


def test_s8_created_window_stale_and_future() -> None:
    rejected(server_signed(good_body(), created=NOW - 61), 401, "invalid_signature")
    rejected(server_signed(good_body(), created=NOW + 61), 401, "clock_skew")


def test_s8_unknown_kid_is_unknown_key() -> None:
    # PS's identity, another key: the PS's JWKS has no such kid.
    rejected(server_signed(good_body(), signer="agent"), 401, "unknown_key")


def test_s8_wrong_signature_for_the_key_is_invalid_signature() -> None:
    signed = server_signed(good_body())
    other = server_signed(good_body(), created=NOW - 1)
    swapped = evolve(
        signed,
        headers=signed.headers.with_fields({"Signature": other.headers.get("signature") or ""}),
    )
    rejected(swapped, 401, "invalid_signature")


def test_s8_server_dwk_must_be_the_ps_document() -> None:
    rejected(
        server_signed(good_body(), issuer=AP, dwk=DWK_AGENT, signer="ap"), 401, "invalid_signature"
    )


def test_s8_signer_must_be_an_admitted_ps_and_403_has_no_signature_error() -> None:
    response = rejected(
        server_signed(good_body(), issuer=OTHER_PS, signer="other"), 403, "unsupported_iss"
    )
    assert "signature-error" not in response.headers
    assert "accept-signature-scheme" not in response.headers


# -- §8 tokens --------------------------------------------------------------------------------


def test_s8_body_must_be_json_with_the_three_tokens() -> None:
    rejected(server_signed({"resource_token": "x"}), 400, "invalid_request")
    body = good_body()
    body["presented_token"] = 5
    rejected(server_signed(body), 400, "invalid_request")


def test_s8_typ_first_resource_token_that_is_a_person_token() -> None:
    body = good_body()
    body["resource_token"] = body["presented_token"]
    rejected(server_signed(body), 400, "invalid_resource_token")


def test_s8_resource_token_aud_must_be_this_as() -> None:
    body = good_body(resource=lambda j: resource_claims(j, aud="https://other-as.example"))
    rejected(server_signed(body), 400, "invalid_resource_token")


def test_s8_resource_token_expired() -> None:
    body = good_body(resource=lambda j: resource_claims(j, iat=NOW - 100, exp=NOW))
    rejected(server_signed(body), 400, "expired_resource_token")


def test_s8_resource_token_revoked() -> None:
    request = federation_request()
    store = InMemoryAccessServerStore()
    rt_jti = inspect_token(request.resource_token).payload["jti"]
    store.apply(RecordRevocation(iss=RS, jti=rt_jti, exp=NOW + 300))
    rejected(server_signed(body_of(request)), 400, "revoked_resource_token", store=store)


def test_s8_agent_jkt_must_be_the_agent_key() -> None:
    body = good_body(
        resource=lambda j: resource_claims(j, agent_jkt=KEYS["other"].public_jwk.thumbprint())
    )
    rejected(server_signed(body), 400, "invalid_resource_token")


def test_s8_resource_token_ps_must_be_the_signing_ps() -> None:
    body = good_body(resource=lambda j: resource_claims(j, ps=OTHER_PS))
    rejected(server_signed(body), 400, "invalid_resource_token")


def test_s8_agent_token_verified_with_restored_codes() -> None:
    rejected(server_signed(good_body(signers={"agent": "other"})), 400, "invalid_agent_token")
    expired = agent_claims(iat=NOW - 100, exp=NOW)
    rejected(server_signed(good_body(agent=expired)), 400, "expired_agent_token")


def test_s8_presented_token_must_come_from_the_signing_ps() -> None:
    person = person_claims(iss=OTHER_PS)
    body = good_body(person=person, signers={"person": "other"})
    rejected(server_signed(body), 400, "invalid_presented_token")


def test_s8_presented_token_aud_must_be_the_resource_token_iss() -> None:
    body = good_body(person=person_claims(aud="https://elsewhere.example"))
    rejected(server_signed(body), 400, "invalid_presented_token")


def test_s8_presented_token_expired() -> None:
    body = good_body(person=person_claims(iat=NOW - 100, exp=NOW))
    rejected(server_signed(body), 400, "expired_presented_token")


def test_s8_presented_token_cnf_must_match_agent_jkt() -> None:
    body = good_body(person=person_claims(cnf=Confirmation(jwk=KEYS["other"].public_jwk)))
    rejected(server_signed(body), 400, "invalid_presented_token")


def test_s8_presented_token_revoked() -> None:
    person = person_claims()
    store = InMemoryAccessServerStore()
    store.apply(RecordRevocation(iss=PS, jti=person.jti, exp=person.exp))
    rejected(server_signed(good_body(person=person)), 400, "revoked_presented_token", store=store)


def test_s8_mission_stripping_is_invalid_resource_token() -> None:
    mission = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    body = good_body(person=person_claims(mission_s256=mission))  # resource token dropped it
    rejected(server_signed(body), 400, "invalid_resource_token")
    body = good_body(person=person_claims(tenant="acme"))
    rejected(server_signed(body), 400, "invalid_resource_token")
    body = good_body(resource=lambda j: resource_claims(j, sub="another-person"))
    rejected(server_signed(body), 400, "invalid_resource_token")


def test_s8_subagent_token_must_be_the_agents_child() -> None:
    sub = subagent_claims()
    other_parent = agent_claims(sub=type(AGENT_ID).parse("aauth:other@agent.example"))
    body = good_body(agent=other_parent, subagent=sub)
    rejected(server_signed(body), 400, "invalid_subagent_token")


def test_s8_agent_token_param_must_not_be_a_subagent() -> None:
    rejected(server_signed(good_body(agent=subagent_claims())), 400, "invalid_agent_token")


def test_s8_upstream_aud_must_be_the_intermediary() -> None:
    upstream = mint(person_claims(aud="https://elsewhere.example"), "ps")
    rejected(server_signed(good_body(upstream=upstream)), 400, "invalid_upstream_token")
    typ_wrong = mint(resource_claims("x"), "rs")
    rejected(server_signed(good_body(upstream=typ_wrong)), 400, "invalid_upstream_token")


def test_upstream_token_bounds_the_auth_token() -> None:
    upstream = mint(person_claims(aud=AP, exp=NOW + 200), "ps")
    _, response, _ = exchange(server_signed(good_body(upstream=upstream)))
    assert response.status == 200
    assert inspect_token(json.loads(response.body)["auth_token"]).payload["exp"] == NOW + 200


def test_s8_auth_token_lifetime_at_most_one_hour_and_agent_token() -> None:
    body = good_body(
        person=person_claims(iat=NOW, exp=NOW + 3600), agent=agent_claims(exp=NOW + 3000)
    )
    _, response, _ = exchange(server_signed(body), policy=ScriptedPolicy(Grant(lifetime=7200)))
    payload = inspect_token(json.loads(response.body)["auth_token"]).payload
    assert payload["exp"] == NOW + 3000  # min(1 h, agent token, presented token)
    body = good_body(person=person_claims(iat=NOW, exp=NOW + 3600))
    _, response, _ = exchange(server_signed(body), policy=ScriptedPolicy(Grant(lifetime=7200)))
    payload = inspect_token(json.loads(response.body)["auth_token"]).payload
    assert payload["exp"] - payload["iat"] == 3600
    with pytest.raises(ValueError, match="one hour"):
        as_config(ScriptedPolicy(), InMemoryAccessServerStore(), token_lifetime=3601)


def test_s8_scope_never_broader_than_the_resource_token() -> None:
    policy = ScriptedPolicy(Grant(scope="data.read admin", claims={"email": "e@x", "sub": "no"}))
    _, response, _ = exchange(server_signed(good_body()), policy=policy)
    payload = inspect_token(json.loads(response.body)["auth_token"]).payload
    assert payload["scope"] == "data.read"
    assert payload["email"] == "e@x" and payload["sub"] != "no"


def test_policy_sees_the_agent_posture_and_the_ps() -> None:
    policy = ScriptedPolicy(Deny())
    agent = agent_claims(extra={"platform_integrity": "attested"})
    machine, response, _ = exchange(server_signed(good_body(agent=agent)), policy=policy)
    assert response.status == 403 and machine.state is ExchangeState.REFUSED
    assert "signature-error" not in response.headers
    [asked] = policy.asked
    assert asked.ps == PS and asked.agent.extra["platform_integrity"] == "attested"


# -- pending records ------------------------------------------------------------------------------


def pending_exchange(
    *decisions: Any,
) -> tuple[AuthTokenExchange, str, InMemoryAccessServerStore, ScriptedPolicy]:
    policy = ScriptedPolicy(*decisions)
    store = InMemoryAccessServerStore()
    machine, response, _ = exchange(server_signed(good_body()), policy=policy, store=store)
    assert response.status == 202 and machine.state is ExchangeState.PENDING
    assert response.headers.get("cache-control") == "no-store"
    location = response.headers.get("location")
    assert location is not None
    return machine, location, store, policy


def poll(machine: AuthTokenExchange, request: HttpRequest, at: int = NOW + 5) -> HttpResponse:
    actions = machine.handle(PendingRequestReceived(request=request, at=at, nonce=NONCE[::-1]))
    return _finish(machine, actions)[0]


def test_s8_pending_urls_are_unguessable_and_same_origin() -> None:
    policy = ScriptedPolicy(RequireApproval())
    urls = set()
    for nonce in (bytes(16), bytes([1]) * 16, bytes([2]) * 32):
        machine = AuthTokenExchange(config=as_config(policy, InMemoryAccessServerStore()))
        actions = machine.handle(
            TokenRequestReceived(request=server_signed(good_body()), at=NOW, nonce=nonce)
        )
        urls.add(_finish(machine, actions)[0].headers.get("location"))
    assert len(urls) == 3 and all(u and u.startswith(f"{PENDING}/") for u in urls)
    machine = AuthTokenExchange(config=as_config(policy, InMemoryAccessServerStore()))
    with pytest.raises(LocalProtocolError, match="random bytes"):
        machine.handle(
            TokenRequestReceived(request=server_signed(good_body()), at=NOW, nonce=b"short")
        )


def test_s8_only_the_same_ps_may_poll() -> None:
    machine, location, _, _ = pending_exchange(RequireApproval())
    other = server_signed(
        None, url=location, method="GET", signer="other", issuer=OTHER_PS, created=NOW + 5
    )
    assert poll(machine, other).status == 404
    unsigned = json_request("GET", location)
    assert poll(machine, unsigned).status == 401
    assert machine.state is ExchangeState.PENDING


def test_s8_410_after_the_terminal_answer() -> None:
    machine, location, _, policy = pending_exchange(RequireApproval())
    policy.decisions = [Grant()]
    get = server_signed(None, url=location, method="GET", created=NOW + 5)
    assert poll(machine, get).status == 200 and machine.state is ExchangeState.ISSUED
    assert poll(machine, get).status == 410 and machine.state is ExchangeState.GONE
    assert poll(machine, get).status == 410


def test_delete_cancels_then_410() -> None:
    machine, location, _, _ = pending_exchange(RequireApproval())
    delete = server_signed(None, url=location, method="DELETE", created=NOW + 5)
    assert poll(machine, delete).status == 204 and machine.state is ExchangeState.GONE
    assert (
        poll(machine, server_signed(None, url=location, method="GET", created=NOW + 6)).status
        == 410
    )


def test_s8_claims_step_sub_refused_and_unknown_claims_ignored() -> None:
    machine, location, _, policy = pending_exchange(RequireClaims(names=("email",)))
    with_sub = server_signed({"email": "p@x", "sub": "x"}, url=location, created=NOW + 5)
    response = poll(machine, with_sub)
    assert (response.status, problem(response)) == (400, "invalid_request")
    assert machine.state is ExchangeState.PENDING
    policy.decisions = [Grant()]
    ok = server_signed({"email": "p@x", "shoe_size": 44}, url=location, created=NOW + 6)
    assert poll(machine, ok).status == 200
    assert policy.asked[-1].claims == {"email": "p@x"}
    with pytest.raises(ValueError, match="never requests sub"):
        RequireClaims(names=("email", "sub"))


def test_pending_request_ends_when_the_presented_token_expires_or_is_revoked() -> None:
    machine, location, store, _ = pending_exchange(RequireApproval())
    late = server_signed(None, url=location, method="GET", created=NOW + 1800)
    response = poll(machine, late, at=NOW + 1800)
    assert (response.status, problem(response)) == (408, "expired")
    machine, location, store, _ = pending_exchange(RequireApproval())
    [asked] = machine.config.policy.asked  # type: ignore[attr-defined]
    presented_jti = asked.resource.presented_jti
    store.apply(RecordRevocation(iss=PS, jti=presented_jti, exp=NOW + 1800))
    response = poll(machine, server_signed(None, url=location, method="GET", created=NOW + 5))
    assert (response.status, problem(response)) == (403, "revoked")


def test_pending_record_survives_a_json_snapshot() -> None:
    machine, location, _store, policy = pending_exchange(RequireApproval())
    text = machine.snapshot().to_json()
    restored = AuthTokenExchange.restore(Snapshot.from_json(text), config=machine.config)
    assert restored.data == machine.data
    policy.decisions = [Grant()]
    assert (
        poll(restored, server_signed(None, url=location, method="GET", created=NOW + 5)).status
        == 200
    )


# -- revocation -----------------------------------------------------------------------------------


RS_REVOKE = f"{RS}/revoke"


def revoke(
    store: InMemoryAccessServerStore, body: dict[str, Any], **sig: Any
) -> tuple[RevocationRequest, list[Action]]:
    resources = StaticResourceDirectory({RS: RS_REVOKE})
    machine = RevocationRequest(config=as_config(ScriptedPolicy(), store, resources=resources))
    request = server_signed(body, url=f"{AS}/revoke", **sig)
    return machine, machine.handle(RevocationReceived(request=request, at=NOW))


def _issued(store: InMemoryAccessServerStore, jti: str, presented: str, ps: str = PS) -> None:
    store.apply(
        RecordIssued(
            record=IssuedAuthToken(
                jti=jti, resource=RS, exp=NOW + 600, presented_jti=presented, ps=ps
            )
        )
    )


def test_ps_revoking_a_person_token_cascades_to_the_as_tokens() -> None:
    store = InMemoryAccessServerStore()
    _issued(store, "at-1", "pt-9")
    _issued(store, "at-2", "pt-other")
    machine, actions = revoke(store, {"jti": "pt-9", "exp": NOW + 900})
    assert machine.state is RevocationState.SIGNING
    assert RecordRevocation(iss=PS, jti="pt-9", exp=NOW + 900) in actions
    assert RecordRevocation(iss=AS, jti="at-1", exp=NOW + 600) in actions
    assert not any(getattr(a, "jti", None) == "at-2" for a in actions)
    [send] = machine.handle(sign(next(a for a in actions if isinstance(a, SignBytes))))
    assert isinstance(send, SendRequest) and send.request.url == RS_REVOKE
    assert json.loads(send.request.body) == {"jti": "at-1", "exp": NOW + 600}
    [respond] = machine.handle(DownstreamUnavailable(at=NOW))
    assert isinstance(respond, Respond) and respond.response.status == 200
    assert json.loads(respond.response.body) == {
        "downstream": [{"recipient": RS, "error": "revocation_unavailable"}]
    }


def test_s8_caller_revokes_only_its_own_tokens() -> None:
    store = InMemoryAccessServerStore()
    _issued(store, "at-1", "pt-9")  # issued for PS
    both = StaticPersonServers(frozenset({PS, OTHER_PS}))
    machine = RevocationRequest(config=as_config(ScriptedPolicy(), store, person_servers=both))
    request = server_signed(
        {"jti": "pt-9", "exp": NOW + 900}, url=f"{AS}/revoke", signer="other", issuer=OTHER_PS
    )
    actions = machine.handle(RevocationReceived(request=request, at=NOW))
    assert actions[0] == RecordRevocation(iss=OTHER_PS, jti="pt-9", exp=NOW + 900)
    assert not any(isinstance(a, SignBytes) for a in actions)
    assert machine.state is RevocationState.ANSWERED
    assert isinstance(actions[-1], Respond) and actions[-1].response.body == b""


def test_revocation_without_cascade_is_an_empty_200_and_idempotent() -> None:
    store = InMemoryAccessServerStore()
    for _ in range(2):
        _machine, actions = revoke(store, {"jti": "pt-1", "exp": NOW + 10})
        for action in actions:
            store.apply(action)
        assert isinstance(actions[-1], Respond) and actions[-1].response.status == 200
    assert store.revoked == {(PS, "pt-1"): NOW + 10}


def test_revocation_refusals() -> None:
    store = InMemoryAccessServerStore()
    machine, actions = revoke(store, {"jti": "", "exp": 1})
    assert machine.state is RevocationState.REJECTED
    assert [a.response.status for a in actions if isinstance(a, Respond)] == [400]
    machine, actions = revoke(store, {"jti": "x", "exp": 1}, signer="ap", issuer=AP, dwk=DWK_AGENT)
    assert [a.response.status for a in actions if isinstance(a, Respond)] == [401]
    machine, actions = revoke(store, {"jti": "x", "exp": 1}, signer="other", issuer=OTHER_PS)
    assert [problem(a.response) for a in actions if isinstance(a, Respond)] == ["unsupported_iss"]
    machine, actions = revoke(
        store, {"jti": "rt-1", "exp": NOW}, signer="rs", issuer=RS, dwk=DWK_RESOURCE
    )
    assert actions[0] == RecordRevocation(iss=RS, jti="rt-1", exp=NOW)


# -- every (state, event) pair ----------------------------------------------------------------------

_GOOD = server_signed(good_body())
EXCHANGE_EVENTS: list[Event] = [
    TokenRequestReceived(request=_GOOD, at=NOW, nonce=NONCE),
    PendingRequestReceived(request=json_request("GET", f"{PENDING}/x"), at=NOW, nonce=NONCE),
    SignatureProduced(signature=bytes(64)),
]


@settings(max_examples=100)
@given(state=st.sampled_from(list(ExchangeState)), event=st.sampled_from(EXCHANGE_EVENTS))
def test_exchange_every_state_event_pair(state: ExchangeState, event: Event) -> None:
    machine = AuthTokenExchange(
        config=as_config(ScriptedPolicy(Grant()), InMemoryAccessServerStore()), state=state
    )
    allowed = AuthTokenExchange.TRANSITIONS.get((state, type(event)))
    try:
        machine.handle(event)
    except IllegalTransition:
        assert machine.state is ExchangeState.ERROR
    except LocalProtocolError:
        assert allowed is not None and machine.state is ExchangeState.ERROR
    else:
        assert allowed is not None and machine.state in allowed


REVOCATION_EVENTS: list[Event] = [
    RevocationReceived(request=server_signed({"jti": "a", "exp": NOW}, url=f"{AS}/revoke"), at=NOW),
    SignatureProduced(signature=bytes(64)),
    ResponseReceived(response=HttpResponse(status=200), at=NOW),
    DownstreamUnavailable(at=NOW),
    TimerFired(at=NOW),
]


@settings(max_examples=50)
@given(state=st.sampled_from(list(RevocationState)), event=st.sampled_from(REVOCATION_EVENTS))
def test_revocation_every_state_event_pair(state: RevocationState, event: Event) -> None:
    data = evolve(
        RevocationRequest(config=as_config(ScriptedPolicy(), InMemoryAccessServerStore())).data,
        queue=(DownstreamRevocation(recipient=RS, endpoint=RS_REVOKE, jti="at-1", exp=NOW + 9),),
    )
    machine = RevocationRequest(
        config=as_config(ScriptedPolicy(), InMemoryAccessServerStore()), data=data, state=state
    )
    allowed = RevocationRequest.TRANSITIONS.get((state, type(event)))
    try:
        machine.handle(event)
    except IllegalTransition:
        assert machine.state is RevocationState.ERROR
    except AAuthError:
        # a row exists but this bare data cannot take it (nothing being signed, no
        # pending URL, a signature that does not verify): refused, sticky ERROR
        assert allowed is not None and machine.state is RevocationState.ERROR
    else:
        assert allowed is not None and machine.state in allowed


def test_config_rejects_a_foreign_pending_base() -> None:
    with pytest.raises(ValueError, match="own origin"):
        as_config(
            ScriptedPolicy(), InMemoryAccessServerStore(), pending_base="https://evil.example/p"
        )
    assert isinstance(as_config(ScriptedPolicy(), InMemoryAccessServerStore()), AccessServerConfig)
    assert auth_claims().iss == AS
