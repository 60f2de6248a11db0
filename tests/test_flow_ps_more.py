"""Person Server machines: the four-party hand-off, the RFC 8693 form binding, revocation
with its cascade, and every (state, event) pair of the three machines."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest
from attrs import evolve
from hypothesis import given, settings
from hypothesis import strategies as st
from test_flow_ps_world import (
    AGENT,
    AGENT_KEY,
    AP,
    AP_KEY,
    AS,
    AS_KEY,
    NOW,
    PS,
    PS_KEY,
    RESOLVER,
    RS,
    RS_KEY,
    agent_token,
    arrive,
    body_of,
    drive,
    new_config,
    new_store,
    person_token,
    poll,
    random_bytes,
    resource_token,
    response_of,
    signed_post,
)

from aauth_core.errors import AAuthError, IllegalTransition
from aauth_core.headers.requirement import Requirement
from aauth_core.http import HttpRequest, HttpResponse
from aauth_core.httpsig import read_signature, sign_request, verify_selected
from aauth_core.signature_key import serialize_jwks_uri_scheme
from aauth_core.tokens import (
    DWK_ACCESS,
    DWK_AGENT,
    DWK_PERSON,
    AuthTokenClaims,
    Confirmation,
    mint_token,
    verify_auth_token,
)
from aauth_flows.machines.actions import (
    ResponseReceived,
    SendRequest,
    SignatureProduced,
    TimerFired,
)
from aauth_flows.machines.engine import Action, Event
from aauth_flows.machines.federation_api import Federate, FederationProgress, FederationSettled
from aauth_flows.machines.person_server import (
    AuthTokenMachine,
    Decision,
    DownstreamUnavailable,
    InMemoryPsStore,
    InteractionArrived,
    IssuedKind,
    IssuedRecord,
    PendingRequest,
    PersonAsked,
    PersonDecided,
    PersonTokenMachine,
    RecordDownstreamOutcome,
    RecordIssued,
    RecordRevocation,
    RequestArrived,
    ResourceCallback,
    RevocationMachine,
    RevocationState,
    TokenRequestState,
)

S = TokenRequestState
R = RevocationState
AT_URL = PS + "/auth-token"
REVOKE_URL = PS + "/revoke"
FORM = "application/x-www-form-urlencoded"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"


def bound_store(**kwargs: Any) -> InMemoryPsStore:
    store = new_store(**kwargs)
    store.bindings[(AP, AGENT)] = "alice"
    return store


def error_of(response: HttpResponse) -> tuple[int, str]:
    return response.status, body_of(response)["error"]


# -- four-party (§5.4, §5.5, §6.5) --------------------------------------------------------


def as_auth_token(pt_claims: Any, *, exp: int = NOW + 1200, jti: str = "as-at-1") -> str:
    claims = AuthTokenClaims(
        iss=AS,
        dwk=DWK_ACCESS,
        jti=jti,
        iat=NOW,
        exp=exp,
        aud=RS,
        ps=PS,
        sub=pt_claims.sub,
        cnf=Confirmation(jwk=AGENT_KEY.public_jwk()),
        scope="data.read",
    )
    return mint_token(claims, AS_KEY)


def federated(store: InMemoryPsStore) -> tuple[AuthTokenMachine, list[Action], Any, str, str]:
    pt, pt_claims = person_token()
    store.directed[(RS, pt_claims.sub)] = "alice"
    rt = resource_token(pt_claims, aud=AS)
    machine = AuthTokenMachine(config=new_config(store))
    token = agent_token()
    request = signed_post(AT_URL, {"resource_token": rt, "presented_token": pt}, token=token)
    return machine, arrive(machine, request, store), pt_claims, rt, pt


def test_four_party_hands_off_and_relays_progress_and_the_token() -> None:
    store = bound_store()
    machine, actions, pt_claims, rt, pt = federated(store)
    [federate] = [a for a in actions if isinstance(a, Federate)]
    request = federate.request
    assert request.access_server == AS and request.resource_token == rt
    assert request.presented_token == pt and request.agent_token == agent_token()
    assert response_of(actions).status == 202 and machine.state is S.FEDERATING
    assert not any(isinstance(a, RecordIssued) for a in actions)
    # the AS wants the user: the requirement reaches the agent through the PS's record
    relay = Requirement.interaction("https://as.example/bind", "ABCD-EFGH")
    drive(
        machine,
        FederationProgress(requirement=relay, body={"status": "pending"}, at=NOW + 1),
        store,
    )
    response = poll(machine, store, NOW + 2)
    assert response.status == 202
    assert Requirement.parse(response.headers.get("aauth-requirement") or "") == relay
    token = as_auth_token(pt_claims)
    actions = drive(
        machine, FederationSettled(auth_token=token, expires_in=1200, at=NOW + 3), store
    )
    [record] = [a for a in actions if isinstance(a, RecordIssued)]
    assert record.record.kind is IssuedKind.FEDERATED_AUTH and record.record.iss == AS
    assert record.record.presented_jti == pt_claims.jti
    response = poll(machine, store, NOW + 4)
    assert response.status == 200 and body_of(response) == {"auth_token": token, "expires_in": 1200}
    assert poll(machine, store, NOW + 5).status == 410


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (AAuthError("insufficient trust", code="denied", status=403), 403),
        (AAuthError("the AS cannot be reached", code="as_unreachable", status=502), 502),
    ],
)
def test_four_party_relays_the_as_error(error: AAuthError, status: int) -> None:
    store = bound_store()
    machine, _, _, _, _ = federated(store)
    actions = drive(machine, FederationSettled(error=error, at=NOW + 1), store)
    assert machine.state is S.FAILED and not actions
    response = poll(machine, store, NOW + 2)
    assert error_of(response) == (status, error.code)


def test_s8_expired_presented_token_is_not_forwarded() -> None:
    store = bound_store()
    pt, pt_claims = person_token(exp=NOW, iat=NOW - 60)
    rt = resource_token(pt_claims, aud=AS)
    machine = AuthTokenMachine(config=new_config(store))
    actions = arrive(
        machine, signed_post(AT_URL, {"resource_token": rt, "presented_token": pt}), store
    )
    assert error_of(response_of(actions)) == (400, "expired_presented_token")
    assert not any(isinstance(a, Federate) for a in actions)


def test_four_party_pending_expires_and_cancel() -> None:
    store = bound_store()
    machine, _, _, _, _ = federated(store)
    drive(machine, TimerFired(at=NOW + 600), store)
    assert error_of(poll(machine, store, NOW + 601)) == (408, "expired")
    machine, _, _, _, _ = federated(bound_store())
    assert poll(machine, store, NOW + 1, method="DELETE").status == 204


# -- RFC 8693 binding ---------------------------------------------------------------------


def form(params: list[tuple[str, str]]) -> bytes:
    return urlencode(params).encode()


def exchange_params(rt: str, pt: str) -> list[tuple[str, str]]:
    return [
        ("grant_type", EXCHANGE),
        ("subject_token", rt),
        ("subject_token_type", JWT_TYPE),
        ("actor_token", pt),
        ("actor_token_type", JWT_TYPE),
    ]


def exchange(
    store: InMemoryPsStore, body: bytes, *, enabled: bool = True, seed: int = 1
) -> tuple[AuthTokenMachine, list[Action]]:
    machine = AuthTokenMachine(config=new_config(store, token_exchange=enabled))
    request = signed_post(AT_URL, body, content_type=FORM)
    return machine, arrive(machine, request, store, seed=seed)


def granted_pair(store: InMemoryPsStore) -> tuple[str, str]:
    store.grants.add(("alice", RS, "data.read data.write", None))
    pt, claims = person_token()
    return resource_token(claims), pt


def test_token_exchange_success() -> None:
    store = bound_store()
    rt, pt = granted_pair(store)
    _, actions = exchange(store, form(exchange_params(rt, pt)))
    response = response_of(actions)
    assert response.status == 200
    body = body_of(response)
    assert body["issued_token_type"] == JWT_TYPE and body["token_type"] == "N_A"
    claims = verify_auth_token(body["access_token"], keys=RESOLVER, now=NOW, audience=RS).claims
    assert body["expires_in"] == claims.exp - claims.iat and claims.iss == PS


def test_token_exchange_with_consent_answers_in_its_own_form() -> None:
    store = bound_store(reachable={"alice"})
    pt, claims = person_token()
    machine, actions = exchange(store, form(exchange_params(resource_token(claims), pt)))
    assert response_of(actions).status == 202
    drive(machine, PersonDecided(decision=Decision.APPROVE, person="alice", at=NOW + 1), store)
    assert "access_token" in body_of(poll(machine, store, NOW + 2))


def test_token_exchange_is_off_by_default() -> None:
    store = bound_store()
    rt, pt = granted_pair(store)
    _, actions = exchange(store, form(exchange_params(rt, pt)), enabled=False)
    response = response_of(actions)
    assert error_of(response) == (400, "invalid_request")
    assert response.headers.get("content-type") == "application/problem+json"
    assert not any(isinstance(a, RecordIssued) for a in actions)


def _with(params: list[tuple[str, str]], name: str, value: str | None) -> list[tuple[str, str]]:
    kept = [(k, v) for k, v in params if k != name]
    return kept if value is None else [*kept, (name, value)]


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (lambda p: [*p, ("subject_token", p[1][1])], "invalid_request"),  # duplicate
        (
            lambda p: _with(
                p, "subject_token_type", "urn:ietf:params:oauth:token-type:access_token"
            ),
            "invalid_request",
        ),
        (lambda p: _with(p, "actor_token_type", None), "invalid_request"),
        (lambda p: _with(p, "actor_token", None), "invalid_request"),
        (lambda p: _with(p, "grant_type", "client_credentials"), "unsupported_grant_type"),
        (lambda p: _with(p, "requested_token_type", "urn:x"), "invalid_request"),
        (
            lambda p: _with(p, "subject_token", p[3][1]),
            "invalid_grant",
        ),  # a person token as subject
        (lambda p: _with(p, "scope", "data.read admin"), "invalid_scope"),
    ],
)
def test_token_exchange_errors(mutate: Any, error: str) -> None:
    store = bound_store()
    rt, pt = granted_pair(store)
    _, actions = exchange(store, form(mutate(exchange_params(rt, pt))))
    response = response_of(actions)
    assert response.status == 400 and body_of(response)["error"] == error
    assert "error_description" in body_of(response)
    assert not any(isinstance(a, RecordIssued) for a in actions)


def test_token_exchange_oversized_and_malformed_bodies() -> None:
    store = bound_store()
    rt, pt = granted_pair(store)
    big = form([*exchange_params(rt, pt), ("pad", "x" * 70_000)])
    _, actions = exchange(store, big)
    assert error_of(response_of(actions)) == (400, "invalid_request")
    _, actions = exchange(store, b"grant_type=%ZZ&&=", seed=2)
    assert error_of(response_of(actions)) == (400, "invalid_request")
    _, actions = exchange(store, b"\xff\xfe", seed=3)
    assert error_of(response_of(actions)) == (400, "invalid_request")


def test_token_exchange_narrower_scope() -> None:
    store = bound_store()
    store.grants.add(("alice", RS, "data.read", None))
    pt, claims = person_token()
    params = [*exchange_params(resource_token(claims), pt), ("scope", "data.read")]
    _, actions = exchange(store, form(params))
    token = body_of(response_of(actions))["access_token"]
    assert verify_auth_token(token, keys=RESOLVER, now=NOW, audience=RS).claims.scope == "data.read"


# -- revocation (§5.8, §7.6) --------------------------------------------------------------

SERVER_COVERED = (
    "@method",
    "@authority",
    "@path",
    "signature-key",
    "content-digest",
    "content-type",
)


def server_signed(
    url: str,
    body: dict[str, Any],
    *,
    iss: str = AP,
    dwk: str = DWK_AGENT,
    signer: Any = AP_KEY,
    at: int = NOW,
    method: str = "POST",
) -> HttpRequest:
    raw = json.dumps(body).encode() if method == "POST" else b""
    headers = {"Content-Type": "application/json"} if raw else {}
    request = HttpRequest(method=method, url=url, headers=headers, body=raw)
    key = serialize_jwks_uri_scheme("sig", id=iss, dwk=dwk, kid=signer.key_id)
    covered = SERVER_COVERED if raw else SERVER_COVERED[:4]
    fields = sign_request(
        request, signer, covered=covered, created=at, extra_headers={"Signature-Key": key}
    )
    return evolve(request, headers=request.headers.with_fields({"Signature-Key": key, **fields}))


def cascade_store() -> tuple[InMemoryPsStore, str, str]:
    store = bound_store(revocation_issuers={AP, RS})
    store.agent_tokens[(AP, "agent-jti-1")] = AGENT
    pt, claims = person_token()
    for kind, jti, aud in ((IssuedKind.PERSON, claims.jti, RS), (IssuedKind.AUTH, "at-1", RS)):
        store.issued.append(
            IssuedRecord(
                kind=kind,
                jti=jti,
                iss=PS,
                aud=aud,
                exp=NOW + 1800,
                agent_iss=AP,
                agent_sub=AGENT,
                person="alice",
                sub=claims.sub,
            )
        )
    store.issued.append(
        IssuedRecord(
            kind=IssuedKind.FEDERATED_AUTH,
            jti="as-at",
            iss=AS,
            aud=RS,
            exp=NOW + 900,
            agent_iss=AP,
            agent_sub=AGENT,
            person="alice",
            sub=claims.sub,
            presented_jti=claims.jti,
        )
    )
    store.revocation_endpoints[RS] = RS + "/revoke"
    return store, pt, claims.jti


def revoke(
    store: InMemoryPsStore, body: dict[str, Any], **kwargs: Any
) -> tuple[RevocationMachine, list[Action]]:
    machine = RevocationMachine(config=new_config(store))
    actions = drive(
        machine,
        RequestArrived(
            request=server_signed(REVOKE_URL, body, **kwargs), at=NOW, random=random_bytes(3)
        ),
        store,
    )
    return machine, actions


def test_revocation_of_an_agent_token_cascades_to_what_the_ps_issued() -> None:
    store, pt, pt_jti = cascade_store()
    machine, actions = revoke(store, {"jti": "agent-jti-1", "exp": NOW + 3600})
    revoked = {(a.iss, a.jti) for a in actions if isinstance(a, RecordRevocation)}
    assert revoked == {(AP, "agent-jti-1"), (PS, pt_jti), (PS, "at-1")}
    # AS has no endpoint known: recorded as unsupported, never sent
    unsupported = [a for a in actions if isinstance(a, RecordDownstreamOutcome)]
    assert [(a.recipient, a.outcome) for a in unsupported] == [(AS, "revocation_unsupported")]
    [send] = [a for a in actions if isinstance(a, SendRequest)]
    sent = send.request
    assert sent.url == RS + "/revoke" and json.loads(sent.body) == {
        "jti": pt_jti,
        "exp": NOW + 1800,
    }
    # the resource verifies the PS's server signature with the PS key
    selected = read_signature(sent.headers)
    verify_selected(sent, selected, key=PS_KEY.public_jwk(), now=NOW, require_body_coverage=True)
    assert 'sig=jwks_uri;id="https://ps.example";dwk="aauth-person.json"' in (
        sent.headers.get("signature-key") or ""
    )
    assert machine.state is R.AWAITING and not any(type(a).__name__ == "Respond" for a in actions)
    actions = drive(machine, ResponseReceived(response=HttpResponse(status=200), at=NOW + 1), store)
    assert any(isinstance(a, SendRequest) for a in actions)  # the auth token, at the resource
    actions = drive(machine, DownstreamUnavailable(at=NOW + 2), store)
    outcome = [a for a in actions if isinstance(a, RecordDownstreamOutcome)]
    assert outcome[0].outcome == "revocation_unavailable"
    response = response_of(actions)
    assert response.status == 200 and response.body == b"" and machine.state is R.ANSWERED
    # the revoked agent token no longer signs; the revoked person token is refused as a
    # presented token even with another (unrevoked) agent token of the same agent
    from aauth_core.tokens import verify_person_token

    claims = verify_person_token(pt, keys=RESOLVER, now=NOW, audience=RS).claims
    body = {"resource_token": resource_token(claims), "presented_token": pt}
    for token, expected in (
        (agent_token(), (401, "revoked_jwt")),
        (agent_token(jti="agent-jti-2"), (400, "revoked_presented_token")),
    ):
        machine2 = AuthTokenMachine(config=new_config(store))
        request = signed_post(AT_URL, body, at=NOW + 3, token=token)
        response = response_of(arrive(machine2, request, store, at=NOW + 3, seed=7))
        assert (response.status, body_of(response)["error"]) == expected


def test_revocation_is_idempotent_and_records_nothing_twice() -> None:
    store = bound_store(revocation_issuers={RS})
    _, first = revoke(
        store, {"jti": "rt-9", "exp": NOW + 60}, iss=RS, dwk="aauth-resource.json", signer=RS_KEY
    )
    assert [type(a) for a in first if isinstance(a, RecordRevocation)] == [RecordRevocation]
    _, again = revoke(
        store, {"jti": "rt-9", "exp": NOW + 60}, iss=RS, dwk="aauth-resource.json", signer=RS_KEY
    )
    assert response_of(again).status == 200 and not any(
        isinstance(a, RecordRevocation) for a in again
    )


def test_revocation_errors() -> None:
    store = bound_store(revocation_issuers={AP})
    _, actions = revoke(store, {"jti": "x"})
    assert error_of(response_of(actions)) == (400, "invalid_request")
    _, actions = revoke(store, {"jti": "", "exp": NOW + 5})
    assert error_of(response_of(actions)) == (400, "invalid_request")
    _, actions = revoke(
        store, {"jti": "x", "exp": NOW + 5}, iss=RS, dwk="aauth-resource.json", signer=RS_KEY
    )
    response = response_of(actions)
    assert (
        error_of(response) == (403, "unsupported_iss")
        and response.headers.get("signature-error") is None
    )
    # an agent-style (jwt scheme) signature is not a server signature
    machine = RevocationMachine(config=new_config(store))
    request = signed_post(REVOKE_URL, {"jti": "x", "exp": NOW + 5})
    actions = drive(machine, RequestArrived(request=request, at=NOW, random=random_bytes(1)), store)
    response = response_of(actions)
    assert response.status == 401 and "unsupported_scheme" in (
        response.headers.get("signature-error") or ""
    )
    # a signature by a key that is not the caller's
    _, actions = revoke(store, {"jti": "x", "exp": NOW + 5}, signer=RS_KEY)
    assert response_of(actions).status == 401
    assert not any(isinstance(a, RecordRevocation) for a in actions)


def test_revocation_answers_202_when_the_cascade_is_slow_then_200_to_the_same_caller() -> None:
    store, _, _ = cascade_store()
    machine, _ = revoke(store, {"jti": "agent-jti-1", "exp": NOW + 3600})
    response = response_of(drive(machine, TimerFired(at=NOW + 20), store))
    assert response.status == 202
    location = response.headers.get("location") or ""
    stranger = server_signed(
        location, {}, iss=RS, dwk="aauth-resource.json", signer=RS_KEY, method="GET", at=NOW + 21
    )
    assert (
        response_of(drive(machine, PendingRequest(request=stranger, at=NOW + 21), store)).status
        == 404
    )
    drive(machine, ResponseReceived(response=HttpResponse(status=503), at=NOW + 22), store)
    drive(machine, ResponseReceived(response=HttpResponse(status=200), at=NOW + 23), store)
    assert machine.state is R.COMPLETED
    mine = server_signed(location, {}, method="GET", at=NOW + 24)
    assert (
        response_of(drive(machine, PendingRequest(request=mine, at=NOW + 24), store)).status == 200
    )
    assert (
        response_of(drive(machine, PendingRequest(request=mine, at=NOW + 24), store)).status == 410
    )


# -- every (state, event) pair --------------------------------------------------------------


def _pending_machine(cls: type[Any]) -> Any:
    store = bound_store(reachable={"alice"}, revocation_issuers={AP})
    if cls is PersonTokenMachine:
        machine = cls(config=new_config(store))
        arrive(machine, signed_post(PS + "/person-token", {"resource": RS}), store)
    else:
        pt, claims = person_token()
        machine = cls(config=new_config(store))
        arrive(
            machine,
            signed_post(AT_URL, {"resource_token": resource_token(claims), "presented_token": pt}),
            store,
        )
    return machine, store


_EVENTS: list[Event] = [
    RequestArrived(request=HttpRequest(method="POST", url=AT_URL), at=NOW, random=random_bytes(5)),
    PendingRequest(request=HttpRequest(method="GET", url=PS + "/pending/x"), at=NOW + 1),
    InteractionArrived(code="0000-0000", at=NOW + 1),
    PersonDecided(decision=Decision.APPROVE, person="alice", at=NOW + 1),
    PersonDecided(decision=Decision.DENY, person="alice", at=NOW + 1),
    PersonAsked(question="why?", at=NOW + 1),
    ResourceCallback(error=None, at=NOW + 1),
    ResourceCallback(error="access_denied", at=NOW + 1),
    TimerFired(at=NOW + 1),
    SignatureProduced(signature=bytes(64)),
    FederationProgress(requirement=None, at=NOW + 1),
    FederationSettled(error=AAuthError("no", code="denied", status=403), at=NOW + 1),
    ResponseReceived(response=HttpResponse(status=200), at=NOW + 1),
    DownstreamUnavailable(at=NOW + 1),
]


def _check_pair(machine: Any, state: Any, event: Event) -> None:
    allowed = type(machine).TRANSITIONS.get((state, type(event)))
    try:
        machine.handle(event)
    except IllegalTransition:
        assert machine.state.name == "ERROR"
    except AAuthError:
        # a handler that detects a broken protocol (a bad signature from the driver)
        assert allowed is not None and machine.state.name == "ERROR"
    else:
        assert allowed is not None and machine.state in allowed


@settings(max_examples=150, deadline=None)
@given(
    cls=st.sampled_from([PersonTokenMachine, AuthTokenMachine]),
    state=st.sampled_from(list(TokenRequestState)),
    event=st.sampled_from(_EVENTS),
)
def test_token_machines_every_state_event_pair(
    cls: type[Any], state: TokenRequestState, event: Event
) -> None:
    template, _store = _pending_machine(cls)
    data = evolve(template.data, access_server=AS)
    _check_pair(cls(config=template.config, data=data, state=state), state, event)


@settings(max_examples=100, deadline=None)
@given(state=st.sampled_from(list(RevocationState)), event=st.sampled_from(_EVENTS))
def test_revocation_machine_every_state_event_pair(state: RevocationState, event: Event) -> None:
    store, _, _ = cascade_store()
    template, _ = revoke(store, {"jti": "agent-jti-1", "exp": NOW + 3600})
    machine = RevocationMachine(config=new_config(store), data=template.data, state=state)
    _check_pair(machine, state, event)


def test_the_hypothesis_events_cover_every_table_event_type() -> None:
    covered = {type(e) for e in _EVENTS}
    for cls in (PersonTokenMachine, AuthTokenMachine, RevocationMachine):
        assert {et for _, et in cls.TRANSITIONS} <= covered
    assert DWK_PERSON  # the PS's own document name signs cascades
