"""The pending (deferred) poller on its own (protocol -11 §5.9, §6.0 pending table):
Retry-After, 429 / 503, terminal codes, interaction prompting, owner input, server
credentials, snapshot/restore, every (state, event) pair."""

from __future__ import annotations

import email.utils
import json
from typing import Any

import pytest
from attrs import evolve
from hypothesis import given
from hypothesis import strategies as st
from signing_helpers import generated_ed25519

from aauth_core.errors import (
    AAuthError,
    IllegalTransition,
    MalformedInput,
    RemoteProtocolError,
)
from aauth_core.headers.prefer import parse_prefer_wait
from aauth_core.headers.requirement import Requirement
from aauth_core.http import HttpRequest, HttpResponse
from aauth_core.httpsig import read_signature, verify_selected
from aauth_core.identifiers import AgentId
from aauth_core.requests import RequestVerifier, VerifiedRequest
from aauth_core.signature_key import JwksUriScheme, parse
from aauth_core.tokens import (
    DWK_AGENT,
    DWK_PERSON,
    AgentTokenClaims,
    Confirmation,
    StaticKeyResolver,
    TokenType,
    mint_token,
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
from aauth_flows.machines.pending import (
    Accepted,
    PendingData,
    PendingInputNeeded,
    PendingOutcome,
    PendingPoller,
    PendingState,
    PendingUpdate,
    PollCredential,
    PostAnswer,
    UseCredential,
    retry_after,
    updated_request,
)

AP = "https://ap.example"
RES = "https://resource.example"
PS = "https://ps.example"
T0 = 1_800_000_000
AGENT = generated_ed25519()
AP_KEY = generated_ed25519()
KEY = SigningKey(ref="software:agent", public_jwk=AGENT.public_jwk())
RESOLVER = StaticKeyResolver({(AP, DWK_AGENT): (AP_KEY.public_jwk(),)})


def agent_token(jti: str = "at-1") -> str:
    claims = AgentTokenClaims(
        iss=AP,
        dwk=DWK_AGENT,
        jti=jti,
        iat=T0 - 10,
        exp=T0 + 3600,
        sub=AgentId.parse("aauth:bot@ap.example"),
        cnf=Confirmation(jwk=AGENT.public_jwk()),
        ps=PS,
    )
    return mint_token(claims, AP_KEY)


TOKEN = agent_token()


def poller(
    prefer_wait: int | None = None, credential: PollCredential | None = None
) -> PendingPoller:
    data = PendingData.create(
        key=KEY,
        credential=credential or PollCredential.jwt(TOKEN),
        url=f"{RES}/api/call",
        prefer_wait=prefer_wait,
    )
    return PendingPoller(data=data)


def accepted(
    location: str | None = "/pending/1",
    req: Requirement | None = None,
    status: str = "pending",
    **headers: str,
) -> HttpResponse:
    fields = dict(headers)
    if location is not None:
        fields["Location"] = location
    if req is not None:
        fields["AAuth-Requirement"] = req.serialize()
    return HttpResponse(status=202, headers=fields, body=json.dumps({"status": status}).encode())


def problem(status: int, code: str | None) -> HttpResponse:
    body = b"" if code is None else json.dumps({"error": code, "detail": "no"}).encode()
    return HttpResponse(status=status, body=body)


def poll_once(p: PendingPoller, response: HttpResponse, at: int) -> tuple[HttpRequest, list[Any]]:
    """TimerFired → sign → send → answer with ``response``."""
    [sign] = p.handle(TimerFired(at=at))
    assert isinstance(sign, SignBytes)
    [send] = p.handle(SignatureProduced(signature=AGENT.sign(sign.data)))
    assert isinstance(send, SendRequest)
    return send.request, p.handle(ResponseReceived(response=response, at=at))


def verify(request: HttpRequest, at: int, *, body: bool = False) -> VerifiedRequest:
    return RequestVerifier(
        keys=RESOLVER,
        audience=RES,
        accepted_types=frozenset({TokenType.AGENT}),
        require_body_coverage=body,
    ).verify(request, now=at)


def waits(actions: list[Any]) -> list[int]:
    return [a.seconds for a in actions if isinstance(a, Wait)]


def test_default_retry_after_and_a_signed_get_with_prefer_wait() -> None:
    p = poller(prefer_wait=20)
    actions = p.handle(Accepted(response=accepted(), at=T0))
    assert waits(actions) == [5] and p.state is PendingState.WAITING
    request, actions = poll_once(p, HttpResponse(status=200, body=b'{"x":1}'), T0 + 5)
    assert request.method == "GET" and request.url == f"{RES}/pending/1" and not request.body
    assert parse_prefer_wait(request.headers.get("prefer") or "") == 20
    verified = verify(request, T0 + 5)
    assert verified.token.token == TOKEN
    [deliver] = [a for a in actions if isinstance(a, Deliver)]
    assert deliver.result == PendingOutcome(response=HttpResponse(status=200, body=b'{"x":1}'))
    assert p.state is PendingState.DONE


def test_retry_after_seconds_and_http_date() -> None:
    p = poller()
    actions = p.handle(Accepted(response=accepted(**{"Retry-After": "12"}), at=T0))
    assert waits(actions) == [12]
    date = email.utils.formatdate(T0 + 40, usegmt=True)
    assert retry_after(HttpResponse(status=202, headers={"Retry-After": date}), at=T0) == 40
    assert retry_after(HttpResponse(status=202, headers={"Retry-After": "soon"}), at=T0) == 5
    assert retry_after(HttpResponse(status=202, headers={"Retry-After": "0"}), at=T0) == 0


def test_429_slows_down_linearly_and_503_backs_off_per_retry_after() -> None:
    p = poller()
    p.handle(Accepted(response=accepted(), at=T0))
    _, a1 = poll_once(p, problem(429, "slow_down"), T0 + 5)
    _, a2 = poll_once(p, problem(429, "slow_down"), T0 + 15)
    assert waits(a1) == [10] and waits(a2) == [15]  # 5 + 5, then 5 + 10
    _, a3 = poll_once(p, HttpResponse(status=503, headers={"Retry-After": "30"}), T0 + 30)
    assert waits(a3) == [40]  # Retry-After plus the slow-down already earned
    _, a4 = poll_once(p, accepted(location=None), T0 + 70)
    assert waits(a4) == [15] and p.state is PendingState.WAITING
    assert p.data.location == f"{RES}/pending/1"  # a 202 without Location keeps the URL


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (403, "denied", "denied"),
        (403, "abandoned", "abandoned"),
        (403, "revoked", "revoked"),
        (408, "expired", "expired"),
        (410, None, "invalid_code"),
        (500, None, "server_error"),
        (502, "as_unreachable", "as_unreachable"),
        (404, None, "server_error"),
    ],
)
def test_terminal_answers_fail_with_their_code(
    status: int, code: str | None, expected: str
) -> None:
    p = poller()
    p.handle(Accepted(response=accepted(), at=T0))
    _, actions = poll_once(p, problem(status, code), T0 + 5)
    [fail] = actions
    assert isinstance(fail, Fail)
    assert (fail.error.code, fail.error.status) == (expected, status)
    assert p.state is PendingState.FAILED


def test_401_signature_error_on_a_poll_fails_with_that_code() -> None:
    p = poller()
    p.handle(Accepted(response=accepted(), at=T0))
    response = HttpResponse(status=401, headers={"Signature-Error": "error=expired_jwt"})
    _, [fail] = poll_once(p, response, T0 + 5)
    assert isinstance(fail, Fail) and fail.error.code == "expired_jwt"


def test_interaction_is_shown_once_per_code_and_not_while_interacting() -> None:
    first = Requirement.interaction("https://resource.example/i", "AAAA-BBBB")
    second = Requirement.interaction("https://resource.example/i", "CCCC-DDDD")
    p = poller()
    actions = p.handle(Accepted(response=accepted(req=first), at=T0))
    shown = [a for a in actions if isinstance(a, ShowInteraction)]
    assert shown == [
        ShowInteraction(url="https://resource.example/i?code=AAAA-BBBB", code="AAAA-BBBB")
    ]
    _, again = poll_once(p, accepted(req=first), T0 + 5)
    assert not [a for a in again if isinstance(a, ShowInteraction)]
    _, busy = poll_once(p, accepted(req=second, status="interacting"), T0 + 10)
    assert not [a for a in busy if isinstance(a, ShowInteraction)]
    [update] = [a for a in busy if isinstance(a, PendingUpdate)]
    assert update.status == "interacting" and p.data.status == "interacting"
    third = Requirement.interaction("https://resource.example/i", "EEEE-FFFF")
    _, fresh = poll_once(p, accepted(req=third), T0 + 15)
    assert [a.code for a in fresh if isinstance(a, ShowInteraction)] == ["EEEE-FFFF"]


def test_claims_are_posted_to_the_pending_url_with_the_body_covered() -> None:
    p = poller()
    actions = p.handle(Accepted(response=accepted(req=Requirement.claims()), at=T0))
    assert p.state is PendingState.NEEDS_INPUT
    [needed] = [a for a in actions if isinstance(a, PendingInputNeeded)]
    assert needed.requirement == Requirement.claims()
    [sign] = p.handle(PostAnswer(body={"email": "a@example.com"}, at=T0 + 1))
    [send] = p.handle(SignatureProduced(signature=AGENT.sign(sign.data)))
    request = send.request
    assert request.method == "POST" and json.loads(request.body) == {"email": "a@example.com"}
    verified = verify(request, T0 + 1, body=True)
    assert "content-digest" in verified.signature.covered
    [_, wait] = p.handle(ResponseReceived(response=accepted(), at=T0 + 1))
    assert isinstance(wait, Wait)


def test_updated_request_body_shape() -> None:
    assert updated_request("rt", "pt", "because") == {
        "action": "updated_request",
        "resource_token": "rt",
        "presented_token": "pt",
        "justification": "because",
    }
    assert "justification" not in updated_request("rt", "pt")


def test_use_credential_polls_on_with_the_new_token() -> None:
    other = agent_token("at-2")
    p = poller()
    p.handle(Accepted(response=accepted(req=Requirement.auth_token("eyJ.x.y")), at=T0))
    [sign] = p.handle(UseCredential(credential=PollCredential.jwt(other), at=T0 + 2))
    [send] = p.handle(SignatureProduced(signature=AGENT.sign(sign.data)))
    assert verify(send.request, T0 + 2).token.token == other


def test_a_server_polls_with_its_own_jwks_uri_identity() -> None:
    ps_key = generated_ed25519()
    key = SigningKey(ref="software:ps", public_jwk=ps_key.public_jwk())
    data = PendingData.create(
        key=key, credential=PollCredential.server(PS, DWK_PERSON), url="https://as.example/token"
    )
    p = PendingPoller(data=data)
    p.handle(Accepted(response=accepted("https://as.example/pending/7"), at=T0))
    [sign] = p.handle(TimerFired(at=T0 + 5))
    [send] = p.handle(SignatureProduced(signature=ps_key.sign(sign.data)))
    headers = send.request.headers
    scheme = parse(headers.get("signature-key") or "", "sig")
    assert scheme == JwksUriScheme(id=PS, dwk=DWK_PERSON, kid=key.key_id)
    selected = read_signature(headers)
    verify_selected(send.request, selected, key=ps_key.public_jwk(), now=T0 + 5)


def test_poll_credential_is_a_token_or_a_server() -> None:
    with pytest.raises(ValueError, match="poll credential"):
        PollCredential()
    with pytest.raises(ValueError, match="poll credential"):
        PollCredential(token="t", server_id=PS, dwk=DWK_PERSON)
    with pytest.raises(ValueError, match="poll credential"):
        PollCredential(server_id=PS)


def test_cancel_deletes_and_ends_cancelled() -> None:
    p = poller()
    p.handle(Accepted(response=accepted(req=Requirement.approval()), at=T0))
    [sign] = p.handle(Cancel(at=T0 + 1))
    [send] = p.handle(SignatureProduced(signature=AGENT.sign(sign.data)))
    assert send.request.method == "DELETE"
    verify(send.request, T0 + 1)
    [fail] = p.handle(ResponseReceived(response=HttpResponse(status=204), at=T0 + 1))
    assert isinstance(fail, Fail) and fail.error.code == "cancelled"
    assert p.state is PendingState.CANCELLED


def test_s8_pending_location_must_be_same_origin() -> None:
    for location in (
        "https://evil.example/p",
        "http://resource.example/p",
        "https://resource.example:8443/p",
    ):
        p = poller()
        with pytest.raises(RemoteProtocolError, match=r"origin|https"):
            p.handle(Accepted(response=accepted(location), at=T0))
        assert p.state is PendingState.ERROR


def test_a_202_without_location_or_a_non_202_start_is_an_error() -> None:
    p = poller()
    with pytest.raises(RemoteProtocolError, match="Location"):
        p.handle(Accepted(response=accepted(None), at=T0))
    assert p.state is PendingState.ERROR
    p = poller()
    with pytest.raises(MalformedInput):
        p.handle(Accepted(response=HttpResponse(status=200), at=T0))
    assert p.state is PendingState.ERROR


def test_snapshot_while_waiting_restores_from_json_and_completes() -> None:
    p = poller()
    p.handle(Accepted(response=accepted(req=Requirement.approval(), **{"Retry-After": "3"}), at=T0))
    text = p.snapshot().to_json()
    restored = PendingPoller.restore(Snapshot.from_json(text))
    assert restored is not p and restored.data == p.data and restored.state is PendingState.WAITING
    request, actions = poll_once(restored, HttpResponse(status=200, body=b"done"), T0 + 3)
    verify(request, T0 + 3)
    assert restored.state is PendingState.DONE and isinstance(actions[0], Deliver)


def test_snapshot_mid_signing_restores_and_completes() -> None:
    p = poller()
    p.handle(Accepted(response=accepted(), at=T0))
    [sign] = p.handle(TimerFired(at=T0 + 5))
    restored = PendingPoller.restore(Snapshot.from_json(p.snapshot().to_json()))
    [send] = restored.handle(SignatureProduced(signature=AGENT.sign(sign.data)))
    verify(send.request, T0 + 5)


_EVENTS = [
    Accepted(response=accepted(), at=T0),
    TimerFired(at=T0),
    SignatureProduced(signature=bytes(64)),
    ResponseReceived(response=HttpResponse(status=200), at=T0),
    PostAnswer(body={"action": "clarification_response", "clarification_response": "x"}, at=T0),
    UseCredential(credential=PollCredential.jwt(TOKEN), at=T0),
    Cancel(at=T0),
]


@given(state=st.sampled_from(list(PendingState)), event=st.sampled_from(_EVENTS))
def test_every_state_event_pair_is_a_transition_or_illegal(state: PendingState, event: Any) -> None:
    data = evolve(
        PendingData.create(key=KEY, credential=PollCredential.jwt(TOKEN), url=f"{RES}/x"),
        location=f"{RES}/pending/1",
    )
    p = PendingPoller(data=data, state=state)
    allowed = PendingPoller.TRANSITIONS.get((state, type(event)))
    try:
        p.handle(event)
    except IllegalTransition:
        assert p.state is PendingState.ERROR
    except AAuthError:
        # an allowed row whose data is not there (nothing to sign): refused, ERROR
        assert allowed is not None and p.state is PendingState.ERROR
    else:
        assert allowed is not None and p.state in allowed


def test_s8_pending_location_relative_is_resolved_and_garbage_is_refused() -> None:
    p = poller()
    p.handle(Accepted(response=accepted("/pending/abc"), at=T0))
    assert p.data.location is not None
    assert p.data.location.endswith("://resource.example/pending/abc")
    for location in ("\x80", "//evil.example/p", "https://resource.example/é", " ", "p a t h"):
        q = poller()
        with pytest.raises(RemoteProtocolError) as info:
            q.handle(Accepted(response=accepted(location), at=T0))
        assert (info.value.code, info.value.status) == ("invalid_response", 502)
        assert q.state is PendingState.ERROR
