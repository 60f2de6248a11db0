"""The protocol's §8 security checks that apply to a resource, one named negative test each."""

from __future__ import annotations

import pytest
from test_flow_resource_kit import (
    AGENT,
    AP_KEY,
    AS,
    AS_KEY,
    MISSION,
    NOW,
    OTHER,
    PS,
    RS,
    Resource,
    agent_token,
    auth_token,
    body_of,
    person_token,
    requirement_of,
    server_signed,
    signed,
    verified_resource_token,
)

from aauth_core.headers.requirement import RequirementType
from aauth_core.http import HttpRequest, HttpResponse
from aauth_core.signature_key import serialize_jwks_uri_scheme
from aauth_core.tokens import DWK_RESOURCE, ResourceTokenClaims, mint_token
from aauth_flows.machines.resource import Decision, PendingState, PersonPrincipal, Principal, Route


def signature_error(response: HttpResponse) -> str | None:
    return response.headers.get("signature-error")


def refused(r: Resource, response: HttpResponse, code: str) -> None:
    assert response.status == 401, response
    assert signature_error(response) == f"error={code}"
    assert not r.served and r.signed_count == 0


class DenyAll:
    def decide(self, principal: Principal, route: Route, request: HttpRequest) -> Decision:
        return Decision.deny()

    def authorize(self, principal: PersonPrincipal, scope: str, account: str | None) -> Decision:
        return Decision.deny()


# -- signatures and keys ---------------------------------------------------------------------


def test_s8_missing_signature_field_is_a_signature_error() -> None:
    r = Resource()
    request = signed(agent_token(), url=RS + "/agent")
    for dropped in ("signature", "signature-input", "signature-key"):
        pairs = [(n, v) for n, v in request.headers.pairs if n.lower() != dropped]
        response = r.call(HttpRequest(method="GET", url=request.url, headers=pairs))
        refused(r, response, "invalid_signature")


def test_s8_403_carries_no_signature_headers() -> None:
    r = Resource(policy=DenyAll())
    response = r.call(signed(agent_token(), url=RS + "/agent"))
    assert response.status == 403
    names = response.headers.names()
    assert not names & {"signature-error", "accept-signature-scheme", "accept-signature-alg"}


def test_s8_required_components_enforced() -> None:
    r = Resource()
    request = signed(
        agent_token(), url=RS + "/agent", covered=("@method", "@authority", "signature-key")
    )
    response = r.call(request)
    assert response.status == 401
    assert (signature_error(response) or "").startswith("error=invalid_input")


def test_s8_stale_created_is_invalid_signature() -> None:
    r = Resource()
    refused(
        r, r.call(signed(agent_token(), url=RS + "/agent", created=NOW - 61)), "invalid_signature"
    )


def test_s8_future_created_is_clock_skew() -> None:
    r = Resource()
    refused(r, r.call(signed(agent_token(), url=RS + "/agent", created=NOW + 61)), "clock_skew")


def test_s8_agent_must_use_the_jwt_scheme() -> None:
    r = Resource()
    request = signed(agent_token(), url=RS + "/agent")
    scheme = serialize_jwks_uri_scheme("sig", id=PS, dwk="aauth-person.json", kid="k")
    swapped = HttpRequest(
        method="GET",
        url=request.url,
        headers=request.headers.with_fields({"Signature-Key": scheme}),
    )
    response = r.call(swapped)
    refused(r, response, "unsupported_scheme")
    assert response.headers.get("accept-signature-scheme") == "jwt"


def test_s8_cnf_mismatch_with_the_request_key() -> None:
    r = Resource()
    # a person token bound to AGENT, the request signed by OTHER
    refused(r, r.call(signed(person_token(), signer=OTHER)), "invalid_signature")
    refused(r, r.call(signed(auth_token(), signer=OTHER)), "invalid_signature")


def test_s8_agent_jkt_is_the_request_signing_key_thumbprint() -> None:
    r = Resource()
    response = r.call(signed(person_token(key=OTHER), signer=OTHER))
    token = requirement_of(response).resource_token
    assert token is not None
    claims = verified_resource_token(token)
    assert claims.agent_jkt == OTHER.public_jwk().thumbprint()
    assert claims.agent_jkt != AGENT.public_jwk().thumbprint()


# -- tokens -------------------------------------------------------------------------------


def test_s8_resource_token_in_signature_key_is_refused() -> None:
    r = Resource()
    resource_token = mint_token(
        ResourceTokenClaims(
            iss=RS,
            dwk=DWK_RESOURCE,
            jti="rt-1",
            iat=NOW,
            exp=NOW + 300,
            aud=PS,
            ps=PS,
            sub="person-7",
            presented_jti="pt-1",
            agent_jkt=AGENT.public_jwk().thumbprint(),
            scope="data.read",
        ),
        AP_KEY,
    )
    refused(r, r.call(signed(resource_token)), "invalid_jwt")


def test_s8_person_token_where_an_auth_token_is_required() -> None:
    r = Resource()
    response = r.call(signed(person_token()))
    # answered with a challenge for an auth token, never served as an authorization
    assert response.status == 401 and not r.served
    assert requirement_of(response).type is RequirementType.AUTH_TOKEN


def test_s8_agent_token_only_never_gets_a_resource_token() -> None:
    r = Resource()
    response = r.call(signed(agent_token()))
    assert requirement_of(response).type is RequirementType.PERSON_TOKEN
    assert r.signed_count == 0


def test_s8_expired_token_zero_leeway() -> None:
    r = Resource()
    refused(r, r.call(signed(person_token(exp=NOW), url=RS + "/person")), "expired_jwt")
    refused(r, r.call(signed(auth_token(exp=NOW))), "expired_jwt")
    # one second before exp it is still good
    assert r.call(signed(person_token(exp=NOW + 1), url=RS + "/person")).status == 200


def test_s8_future_iat_is_clock_skew() -> None:
    r = Resource()
    response = r.call(signed(person_token(iat=NOW + 120, exp=NOW + 1800), url=RS + "/person"))
    refused(r, response, "clock_skew")


def test_s8_person_token_audience_mismatch() -> None:
    r = Resource()
    refused(r, r.call(signed(person_token(aud="https://other.example"))), "invalid_jwt")


def test_s8_auth_token_audience_mismatch() -> None:
    r = Resource()
    refused(r, r.call(signed(auth_token(aud="https://other.example"))), "invalid_jwt")


def test_s8_four_party_refuses_auth_tokens_not_from_its_access_server() -> None:
    r = Resource(access_server=AS)
    refused(r, r.call(signed(auth_token(iss=PS))), "invalid_jwt")


def test_s8_three_party_refuses_access_server_auth_tokens() -> None:
    r = Resource()
    refused(r, r.call(signed(auth_token(iss=AS))), "invalid_jwt")


def test_s8_mission_s256_and_tenant_are_never_stripped() -> None:
    r = Resource()
    for presented, expected_mission, expected_tenant in (
        (person_token(), MISSION, "acme"),
        (person_token(mission_s256=None, tenant=None), None, None),
    ):
        token = requirement_of(r.call(signed(presented))).resource_token
        assert token is not None
        claims = verified_resource_token(token)
        assert (claims.mission_s256, claims.tenant) == (expected_mission, expected_tenant)


def test_s8_person_keyed_by_issuer_and_sub() -> None:
    r = Resource()
    r.call(signed(person_token(), url=RS + "/person"))
    r.call(signed(auth_token(iss=PS), url=RS + "/person"))
    people = {s.principal.person for s in r.served}
    assert people == {(PS, "person-7")}


def test_s8_resource_token_scopes_within_scope_descriptions() -> None:
    r = Resource()
    response = _authorize(r, {"scope": "data.read admin"})
    assert response.status == 400 and body_of(response)["error"] == "invalid_scope"
    assert r.signed_count == 0


def test_s8_account_enforced_per_person() -> None:
    class OneAccount:
        def decide(self, principal: Principal, route: Route, request: HttpRequest) -> Decision:
            return Decision.allow()

        def authorize(
            self, principal: PersonPrincipal, scope: str, account: str | None
        ) -> Decision:
            ok = account is None or (principal.person, account) == ((PS, "person-7"), "acct-1")
            return Decision.allow() if ok else Decision.invalid_account()

    r = Resource(policy=OneAccount())
    assert _authorize(r, {"scope": "data.read", "account": "acct-1"}).status == 200
    stranger = _authorize(r, {"scope": "data.read", "account": "acct-1"}, person_token(sub="p-9"))
    assert stranger.status == 400 and body_of(stranger)["error"] == "invalid_account"


def _authorize(r: Resource, body: dict[str, object], token: str | None = None) -> HttpResponse:
    import json

    request = signed(
        token or person_token(),
        method="POST",
        url=RS + "/authorize",
        headers={"Content-Type": "application/json"},
        body=json.dumps(body).encode(),
        cover_body=True,
    )
    return r.authorize(request)


# -- revocation -----------------------------------------------------------------------------


def test_s8_revoked_auth_token_gets_person_token_and_no_resource_token() -> None:
    r = Resource()
    r.revoke(server_signed({"jti": "at-1", "exp": NOW + 1800}))
    response = r.call(signed(auth_token(), url=RS + "/write"))  # would be a step-up otherwise
    refused(r, response, "revoked_jwt")
    requirement = requirement_of(response)
    assert requirement.type is RequirementType.PERSON_TOKEN and requirement.resource_token is None


def test_s8_revocation_keyed_by_the_verified_caller() -> None:
    r = Resource()
    # the AS revokes "pt-1": that is (AS, pt-1), not the PS's person token
    response = r.revoke(
        server_signed(
            {"jti": "pt-1", "exp": NOW + 1800}, issuer=AS, dwk="aauth-access.json", signer=AS_KEY
        )
    )
    assert response.status == 200 and r.store.is_revoked(AS, "pt-1")
    assert not r.store.is_revoked(PS, "pt-1")
    assert r.call(signed(person_token(), url=RS + "/person")).status == 200


def test_s8_revocation_needs_a_server_signature_over_the_body() -> None:
    r = Resource()
    uncovered = server_signed(
        {"jti": "pt-1", "exp": NOW + 1800},
        covered=("@method", "@authority", "@path", "signature-key"),
    )
    response = r.revoke(uncovered)
    assert response.status == 401 and (signature_error(response) or "").startswith(
        "error=invalid_input"
    )
    forged = server_signed({"jti": "pt-1", "exp": NOW + 1800}, signer=AS_KEY)  # claims to be the PS
    assert r.revoke(forged).status == 401
    agent_signed = signed(
        agent_token(),
        method="POST",
        url=RS + "/revoke",
        headers={"Content-Type": "application/json"},
        body=b'{"jti":"pt-1","exp":1}',
        cover_body=True,
    )
    response = r.revoke(agent_signed)
    assert response.status == 401 and signature_error(response) == "error=unsupported_scheme"
    assert not r.store.is_revoked(PS, "pt-1")


# -- sessions, interaction codes and pending URLs --------------------------------------------


def _session(r: Resource) -> str:
    first = r.call(signed(agent_token(), url=RS + "/managed"))
    code = requirement_of(first).code
    location = first.headers.get("location")
    assert code is not None and location is not None
    pending_id, _ = r.present_code(code)
    assert pending_id is not None
    r.decide(pending_id, approved=True)
    session = r.poll(location, signed(agent_token(), url=location)).headers.get("aauth-access")
    assert session is not None
    assert len(r.served) == 1  # the held call, served once with the new session (§6.2)
    r.served.clear()
    return session


def test_s8_authorization_must_be_covered_with_a_session_token() -> None:
    r = Resource()
    session = _session(r)
    request = signed(
        agent_token(),
        url=RS + "/managed",
        headers={"Authorization": f"AAuth {session}"},
        covered=("@method", "@authority", "@path", "signature-key"),
    )
    response = r.call(request)
    assert response.status == 401 and not r.served
    assert (signature_error(response) or "").startswith("error=invalid_input")


def test_s8_session_token_is_useless_with_another_key() -> None:
    r = Resource()
    session = _session(r)
    request = signed(
        agent_token(key=OTHER),
        url=RS + "/managed",
        headers={"Authorization": f"AAuth {session}"},
        signer=OTHER,
    )
    response = r.call(request)
    assert response.status == 202 and not r.served  # re-challenged, not served


def test_s8_replayed_interaction_code() -> None:
    r = Resource()
    first = r.call(signed(agent_token(), url=RS + "/managed"))
    code = requirement_of(first).code
    assert code is not None
    pending_id, shown = r.present_code(code)
    assert pending_id is not None and shown is None and len(r.consents) == 1
    _, replay = r.present_code(code)
    assert replay is not None and replay.status == 410
    assert body_of(replay)["error"] == "invalid_code" and len(r.consents) == 1


def test_s8_wrong_codes_are_rate_limited() -> None:
    r = Resource(max_code_attempts=3)
    first = r.call(signed(agent_token(), url=RS + "/managed"))
    code = requirement_of(first).code
    location = first.headers.get("location")
    assert code is not None and location is not None
    pending_id = location.rsplit("/", 1)[1]
    wrong = "ZZZZ-ZZZZ" if code != "ZZZZ-ZZZZ" else "YYYY-YYYY"
    for _ in range(3):
        response = r.pending_event(pending_id, _code_event(wrong))
        assert response is not None and response.status == 410
    assert r.state_of(pending_id) is PendingState.FAILED
    # even the right code no longer works
    late = r.pending_event(pending_id, _code_event(code))
    assert late is not None and late.status == 410 and not r.consents
    answer = r.poll(location, signed(agent_token(), url=location))
    assert answer.status == 410 and body_of(answer)["error"] == "invalid_code"


def _code_event(code: str):  # type: ignore[no-untyped-def]
    from aauth_flows.machines.resource import CodePresented

    return CodePresented(code=code, at=NOW)


def test_s8_code_folding_and_malformed_codes() -> None:
    r = Resource()
    first = r.call(signed(agent_token(), url=RS + "/managed"))
    code = requirement_of(first).code
    assert code is not None
    assert r.present_code("not a code!") == (None, None)
    folded = code.lower().replace("0", "o").replace("1", "l")
    pending_id, shown = r.present_code(folded)
    assert pending_id is not None and shown is None and len(r.consents) == 1


@pytest.mark.parametrize("kind", ["interaction", "deferred"])
def test_s8_poll_by_another_agent_key_is_404(kind: str) -> None:
    r = Resource()
    if kind == "interaction":
        first = r.call(signed(agent_token(), url=RS + "/managed"))
    else:
        first = r.call(signed(person_token(), url=RS + "/held"))
    location = first.headers.get("location")
    assert location is not None
    pending_id = location.rsplit("/", 1)[1]
    before = r.state_of(pending_id)
    for method in ("GET", "DELETE"):
        other = signed(agent_token(key=OTHER), url=location, signer=OTHER, method=method)
        response = r.poll(location, other)
        assert response.status == 404
    assert r.state_of(pending_id) is before
    # an unsigned poll is a signature problem, not a state change
    unsigned = r.poll(location, HttpRequest(method="GET", url=location, headers={"Signature": "x"}))
    assert unsigned.status == 401 and r.state_of(pending_id) is before


def test_s8_pending_url_is_410_after_the_terminal_answer() -> None:
    r = Resource()
    first = r.call(signed(agent_token(), url=RS + "/managed"))
    location = first.headers.get("location")
    code = requirement_of(first).code
    assert location is not None and code is not None
    pending_id, _ = r.present_code(code)
    assert pending_id is not None
    r.decide(pending_id, approved=True)
    assert r.poll(location, signed(agent_token(), url=location)).status == 200
    for _ in range(2):
        assert r.poll(location, signed(agent_token(), url=location)).status == 410


def test_s8_pending_urls_are_unguessable_and_same_origin() -> None:
    r = Resource()
    locations = {
        r.call(signed(agent_token(), url=RS + "/managed")).headers.get("location")
        for _ in range(20)
    }
    assert len(locations) == 20
    for location in locations:
        assert location is not None and location.startswith(RS + "/pending/")
        assert len(location.rsplit("/", 1)[1]) >= 22  # 128 random bits
