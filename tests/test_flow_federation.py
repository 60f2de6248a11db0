"""Four-party end to end: the PS's federation client against the AS's machines, with
real signatures, real tokens and the delivery checks of -11 §2.6 (each one failing)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from attrs import evolve
from hypothesis import given, settings
from hypothesis import strategies as st
from test_flow_federation_world import (
    AS,
    ENDPOINT,
    KEYS,
    NOW,
    PS,
    RESOLVER,
    RS,
    SUB,
    ScriptedPolicy,
    World,
    auth_claims,
    client_config,
    federation_request,
    mint,
    person_claims,
    resource_claims,
    sign,
    subagent_claims,
)

from aauth_core.errors import IllegalTransition, LocalProtocolError
from aauth_core.headers.requirement import Requirement
from aauth_core.http import HttpResponse
from aauth_core.signature_key import parse_full
from aauth_core.tokens import AuthTokenClaims, Confirmation, TokenType, inspect_token
from aauth_flows.machines.actions import ResponseReceived, SignatureProduced, TimerFired, Wait
from aauth_flows.machines.as_policy import (
    Deny,
    Grant,
    RequireApproval,
    RequireClaims,
    RequireClarification,
    RequireInteraction,
    RequirePayment,
)
from aauth_flows.machines.engine import Event, Snapshot
from aauth_flows.machines.federation import (
    AccessServerEndpoint,
    AnswerPending,
    DeliveryExpectation,
    FederationClient,
    FederationData,
    FederationState,
    PaymentSettled,
    StartFederation,
    Unreachable,
    check_delivery,
)
from aauth_flows.machines.federation_api import FederationProgress, FederationSettled


def settled(world: World) -> FederationSettled:
    final = [e for e in world.to_ps if isinstance(e, FederationSettled)]
    assert len(final) == 1
    return final[0]


def progress(world: World) -> list[FederationProgress]:
    return [e for e in world.to_ps if isinstance(e, FederationProgress)]


# -- the happy paths ------------------------------------------------------------------------


def test_immediate_grant_delivers_a_checked_as_token() -> None:
    world = World(ScriptedPolicy(Grant(scope="data.read")))
    world.start(federation_request())
    result = settled(world)
    assert world.client.state is FederationState.DONE
    assert result.auth_token is not None and result.error is None
    payload = inspect_token(result.auth_token).payload
    assert inspect_token(result.auth_token).typ == "aa-auth+jwt"
    assert payload["iss"] == AS and payload["dwk"] == "aauth-access.json"
    assert payload["ps"] == PS and payload["sub"] == SUB and payload["aud"] == RS
    assert payload["scope"] == "data.read"
    assert payload["cnf"]["jwk"]["x"] == KEYS["agent"].public_jwk.x
    assert result.expires_in == payload["exp"] - NOW
    # the AS recorded exactly this token, naming the presented token
    [record] = world.store.issued.values()
    assert record.jti == payload["jti"] and record.resource == RS and record.ps == PS
    # the PS signed as a server: jwks_uri scheme, its issuer, its document, body covered
    request = world.sent[0]
    scheme = parse_full(request.headers.get("signature-key") or "", "sig")
    assert scheme.params() == {"id": PS, "dwk": "aauth-person.json", "kid": KEYS["ps"].key_id}
    covered = request.headers.get("signature-input") or ""
    for component in (
        "@method",
        "@authority",
        "@path",
        "signature-key",
        "content-digest",
        "content-type",
    ):
        assert f'"{component}"' in covered
    assert set(json.loads(request.body)) == {"resource_token", "agent_token", "presented_token"}


def test_auth_token_exp_is_capped_by_the_presented_token() -> None:
    person = person_claims(exp=NOW + 120)
    world = World(ScriptedPolicy(Grant()))
    world.start(federation_request(person=person))
    token = settled(world).auth_token
    assert token is not None
    assert inspect_token(token).payload["exp"] == NOW + 120


def test_claims_step_posts_the_requested_claims_but_never_sub() -> None:
    policy = ScriptedPolicy(RequireClaims(names=("email", "tenant")), Grant())
    world = World(policy)
    world.start(federation_request())
    assert settled(world).auth_token is not None
    claims_post = world.sent[1]
    assert claims_post.method == "POST" and claims_post.url.startswith(f"{AS}/pending/")
    assert json.loads(claims_post.body) == {"email": "p@example.com"}  # no sub, no tenant
    assert policy.asked[-1].claims == {"email": "p@example.com"}
    assert progress(world) == []  # the PS handles claims itself


def test_interaction_is_relayed_then_granted() -> None:
    policy = ScriptedPolicy(
        RequireInteraction(url=f"{AS}/bind", code="ABCD-2345"),
        RequireInteraction(url=f"{AS}/bind", code="ABCD-2345"),
        Grant(),
    )
    world = World(policy)
    world.start(federation_request())
    [relayed] = progress(world)  # relayed once, not on every poll
    assert relayed.requirement == Requirement.interaction(f"{AS}/bind", "ABCD-2345")
    assert settled(world).auth_token is not None
    assert [r.method for r in world.sent] == ["POST", "GET", "GET"]
    assert world.clock == NOW + 10  # two waits of the AS's Retry-After (5 s)


def test_approval_and_clarification_are_relayed_and_the_answer_is_posted() -> None:
    policy = ScriptedPolicy(RequireApproval(), RequireClarification(question="Which account?"))

    def hold(event: Any) -> None:
        if (
            isinstance(event, FederationProgress)
            and event.requirement == Requirement.clarification()
        ):
            world.hold_waits = True

    world = World(policy, on_progress=hold)
    world.start(federation_request())
    kinds = [p.requirement.requirement for p in progress(world) if p.requirement]
    assert kinds == ["approval", "clarification"]
    assert progress(world)[-1].body["clarification"] == "Which account?"
    assert world.client.state is FederationState.WAITING
    policy.decisions = [Grant()]
    world.hold_waits = False
    answer = {"action": "clarification_response", "clarification_response": "The work one"}
    world.run(world.client.handle(AnswerPending(body=answer, at=world.clock)))
    assert settled(world).auth_token is not None
    assert policy.asked[-1].clarification_answer == "The work one"


def test_payment_then_poll_then_grant() -> None:
    policy = ScriptedPolicy(
        RequirePayment(headers={"WWW-Authenticate": 'Payment realm="as"'}, body={"amount": "1"}),
    )
    paid: list[Any] = []

    def pay(action: Any) -> None:
        paid.append(action)
        policy.decisions = [Grant()]

    world = World(policy, on_pay=pay)
    world.start(federation_request())
    [action] = paid
    assert action.response.status == 402
    assert action.response.headers.get("www-authenticate") == 'Payment realm="as"'
    assert action.location.startswith(f"{AS}/pending/")
    assert settled(world).auth_token is not None
    assert world.sent[-1].method == "GET" and world.sent[-1].url == action.location


def test_403_is_relayed_with_the_as_code_and_status() -> None:
    world = World(ScriptedPolicy(Deny(detail="insufficient trust")))
    world.start(federation_request())
    error = settled(world).error
    assert error is not None and (error.code, error.status) == ("denied", 403)
    assert world.client.state is FederationState.FAILED
    assert world.store.issued == {}


def test_as_token_parameter_errors_are_relayed() -> None:
    world = World()
    world.start(federation_request(resource=lambda j: resource_claims("other")))
    error = settled(world).error
    assert error is not None and (error.code, error.status) == ("invalid_resource_token", 400)


def test_429_slows_down_by_five_seconds() -> None:
    responses = iter([HttpResponse(status=429), HttpResponse(status=429)])

    def tamper(response: HttpResponse) -> HttpResponse:
        return next(responses, response)

    world = World(ScriptedPolicy(Grant()), tamper=tamper)
    world.start(federation_request())
    assert settled(world).auth_token is not None
    assert world.clock == NOW + 10 + 15  # 5+5, then 5+5+5
    assert [r.method for r in world.sent] == ["POST", "POST", "POST"]


# -- the AS unreachable, malformed or unverifiable: as_unreachable 502 ---------------------------


def _as_unreachable(world: World) -> None:
    error = settled(world).error
    assert error is not None and (error.code, error.status) == ("as_unreachable", 502)
    assert world.client.state is FederationState.FAILED


@pytest.mark.parametrize(
    "response",
    [
        HttpResponse(status=200, body=b"<html>"),
        HttpResponse(status=200, body=b'{"auth_token": 7}'),
        HttpResponse(status=200, body=b'{"auth_token": "not.a.jwt"}'),
        HttpResponse(status=500, body=b"oops"),
        HttpResponse(status=401, body=b'{"error":"invalid_signature"}'),
        HttpResponse(status=202),  # no Location
        HttpResponse(status=202, headers={"Location": "https://evil.example/p"}),
        HttpResponse(status=202, headers={"Location": "/p", "AAuth-Requirement": "nonsense=("}),
        HttpResponse(status=302, headers={"Location": "https://evil.example/"}),
    ],
    ids=[
        "html",
        "token-not-string",
        "token-garbage",
        "500-no-problem",
        "401",
        "no-location",
        "cross-origin-location",
        "bad-requirement",
        "redirect",
    ],
)
def test_garbage_from_the_as_is_as_unreachable(response: HttpResponse) -> None:
    world = World(tamper=lambda _r: response)
    world.start(federation_request())
    _as_unreachable(world)


def test_transport_failure_is_as_unreachable() -> None:
    client = FederationClient(config=client_config())
    world = World(client=client)
    actions = client.handle(
        StartFederation(
            request=federation_request(),
            access_server=AccessServerEndpoint(issuer=AS, auth_token_endpoint=ENDPOINT),
            at=NOW,
        )
    )
    [sign_action] = actions
    client.handle(sign(sign_action))  # type: ignore[arg-type]
    world.run(client.handle(Unreachable(detail="connection refused", at=NOW)))
    _as_unreachable(world)


def test_metadata_issuer_must_be_the_resource_tokens_aud() -> None:
    world = World()
    world.start(federation_request(), issuer="https://elsewhere.example")
    _as_unreachable(world)
    assert world.sent == []


def test_s8_expired_presented_token_is_never_forwarded() -> None:
    world = World()
    world.start(federation_request(person=person_claims(iat=NOW - 600, exp=NOW)))
    error = settled(world).error
    assert error is not None and (error.code, error.status) == ("expired_presented_token", 400)
    assert world.sent == []


# -- delivery checks, each failing (named) -----------------------------------------------------


def _deliver(claims: AuthTokenClaims, signer: str = "as") -> World:
    token = mint(claims, signer)
    body = json.dumps({"auth_token": token, "expires_in": 60}).encode()
    world = World(tamper=lambda _r: HttpResponse(status=200, body=body))
    world.start(federation_request())
    return world


def test_delivery_check_passes_for_a_good_token() -> None:
    world = _deliver(auth_claims())
    assert settled(world).auth_token is not None


def test_s8_delivery_typ_person_token_is_refused() -> None:
    person = person_claims(iss=PS, aud=RS)
    token = mint(person, "ps")
    body = json.dumps({"auth_token": token}).encode()
    world = World(tamper=lambda _r: HttpResponse(status=200, body=body))
    world.start(federation_request())
    _as_unreachable(world)


def test_s8_delivery_signed_by_another_key_is_refused() -> None:
    _as_unreachable(_deliver(auth_claims(), signer="other"))


def test_s8_delivery_iss_not_the_as_called() -> None:
    _as_unreachable(_deliver(auth_claims(iss=PS, dwk="aauth-person.json"), signer="ps"))


def test_s8_delivery_dwk_not_access_document() -> None:
    # An AS key published under aauth-person.json would not make it a PS-issued token.
    claims = auth_claims(iss=AS, ps=AS, dwk="aauth-person.json")
    _as_unreachable(_deliver(claims))


def test_s8_delivery_ps_not_this_ps() -> None:
    _as_unreachable(_deliver(auth_claims(ps="https://other-ps.example")))


def test_s8_delivery_sub_not_the_resource_tokens() -> None:
    _as_unreachable(_deliver(auth_claims(sub="someone-else")))


def test_s8_delivery_aud_not_the_resource() -> None:
    _as_unreachable(_deliver(auth_claims(aud="https://other-resource.example")))


def test_s8_delivery_cnf_not_the_agent_key() -> None:
    _as_unreachable(_deliver(auth_claims(cnf=Confirmation(jwk=KEYS["other"].public_jwk))))


def test_s8_delivery_exp_beyond_the_presented_token() -> None:
    _as_unreachable(_deliver(auth_claims(exp=NOW + 1800 + 1)))


def test_s8_delivery_scope_broader_than_the_resource_token() -> None:
    _as_unreachable(_deliver(auth_claims(scope="data.read admin")))


def test_s8_delivery_expired_token() -> None:
    _as_unreachable(_deliver(auth_claims(iat=NOW - 60, exp=NOW)))


def test_check_delivery_refuses_a_missing_token() -> None:
    expect = DeliveryExpectation(
        as_issuer=AS, ps=PS, resource=RS, sub=SUB, key=KEYS["agent"].public_jwk, max_exp=NOW + 60
    )
    with pytest.raises(Exception, match="without an auth_token"):
        check_delivery(None, expect, keys=RESOLVER, now=NOW)


# -- sub-agents and chaining ---------------------------------------------------------------------


def test_subagent_federation_binds_the_token_to_the_subagent_key() -> None:
    sub = subagent_claims()
    person = person_claims(cnf=Confirmation(jwk=KEYS["sub"].public_jwk))
    rt = lambda j: resource_claims(j, agent_jkt=KEYS["sub"].public_jwk.thumbprint())  # noqa: E731
    world = World(ScriptedPolicy(Grant()))
    world.start(federation_request(person=person, resource=rt, subagent=sub))
    token = settled(world).auth_token
    assert token is not None
    assert inspect_token(token).payload["cnf"]["jwk"]["x"] == KEYS["sub"].public_jwk.x
    assert "subagent_token" in json.loads(world.sent[0].body)


# -- snapshot mid-way ------------------------------------------------------------------------------


def test_snapshot_while_polling_the_as_restores_and_completes() -> None:
    policy = ScriptedPolicy(RequireApproval())
    world = World(policy)
    client = world.client
    first = client.handle(
        StartFederation(
            request=federation_request(),
            access_server=AccessServerEndpoint(issuer=AS, auth_token_endpoint=ENDPOINT),
            at=NOW,
        )
    )
    [sign_action] = first
    [send] = client.handle(sign(sign_action))  # type: ignore[arg-type]
    response = world.serve(send.request)  # type: ignore[attr-defined]
    actions = client.handle(ResponseReceived(response=response, at=NOW))
    assert client.state is FederationState.WAITING
    assert any(isinstance(a, Wait) for a in actions)
    text = client.snapshot().to_json()

    resumed = FederationClient.restore(Snapshot.from_json(text), config=client_config())
    assert resumed is not client and resumed.data == client.data
    assert resumed.state is FederationState.WAITING
    policy.decisions = [Grant()]
    world.client = resumed
    world.clock = NOW + 5
    world.run(resumed.handle(TimerFired(at=world.clock)))
    assert resumed.state is FederationState.DONE
    assert settled(world).auth_token is not None


# -- every (state, event) pair -------------------------------------------------------------------

_REQUEST = federation_request()
EVENTS: list[Event] = [
    StartFederation(
        request=_REQUEST,
        access_server=AccessServerEndpoint(issuer=AS, auth_token_endpoint=ENDPOINT),
        at=NOW,
    ),
    SignatureProduced(signature=bytes(64)),
    ResponseReceived(response=HttpResponse(status=500), at=NOW),
    ResponseReceived(response=HttpResponse(status=202, headers={"Location": "/p/1"}), at=NOW),
    TimerFired(at=NOW),
    PaymentSettled(at=NOW),
    AnswerPending(body={"action": "clarification_response", "clarification_response": "x"}, at=NOW),
    Unreachable(detail="down", at=NOW),
]


def _data_for(state: FederationState) -> FederationData:
    client = FederationClient(config=client_config())
    client.handle(EVENTS[0])
    data: FederationData = client.data
    return evolve(data, location=f"{AS}/pending/abc")


@settings(max_examples=200)
@given(state=st.sampled_from(list(FederationState)), event=st.sampled_from(EVENTS))
def test_every_state_event_pair_is_a_transition_or_illegal(
    state: FederationState, event: Event
) -> None:
    machine = FederationClient(config=client_config(), data=_data_for(state), state=state)
    allowed = FederationClient.TRANSITIONS.get((state, type(event)))
    try:
        machine.handle(event)
    except IllegalTransition:
        assert allowed is None or machine.state is FederationState.ERROR
        assert machine.state is FederationState.ERROR
    except LocalProtocolError:  # a zero signature is caught before anything is sent
        assert allowed is not None and machine.state is FederationState.ERROR
    else:
        assert allowed is not None and machine.state in allowed


def test_presented_token_type_is_checked_first_at_the_as() -> None:
    # An auth token as presented token (step-up) goes through as its own type.
    first = auth_claims(jti="at-prev")
    rt = lambda j: resource_claims("at-prev")  # noqa: E731
    request = federation_request(resource=rt)
    request = evolve(request, presented_token=mint(first, "as"))
    world = World(ScriptedPolicy(Grant()))
    world.start(request)
    token = settled(world).auth_token
    assert token is not None
    assert world.policy.asked[0].presented_type is TokenType.AUTH
    assert inspect_token(token).payload["exp"] <= first.exp
