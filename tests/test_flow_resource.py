"""The resource side of every access mode, end to end in memory (protocol -11 §5.1, §5.2,
§5.8, §5.9, §6.1-§6.5): the agent is played by this test code with core's signer, the
resource by its machines driven against the in-memory store."""

from __future__ import annotations

import json

from test_flow_resource_kit import (
    AGENT,
    AGENT_ID,
    AP,
    AS,
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
from aauth_flows.machines.resource import (
    AgentPrincipal,
    AuthorizedPrincipal,
    Decision,
    DeferredState,
    PendingState,
    PersonPrincipal,
    Principal,
    Route,
    Serve,
    session_digest,
)


class Rules:
    """A policy: deny one agent path, ask for interaction (account binding) on another,
    require authorization on a sensitive person path, a consent flow at the authorization
    endpoint for ``notes``, and one account per person."""

    def decide(self, principal: Principal, route: Route, request: HttpRequest) -> Decision:
        if request.url.endswith("/forbidden"):
            return Decision.deny("not for you")
        if request.url.endswith("/bind"):
            return Decision.require_interaction()
        if request.url.endswith("/sensitive") and isinstance(principal, PersonPrincipal):
            return Decision.require_auth("data.write")
        return Decision.allow()

    def authorize(self, principal: PersonPrincipal, scope: str, account: str | None) -> Decision:
        if account is not None and account != "acct-1":
            return Decision.invalid_account()
        if "notes" in scope.split():
            return Decision.require_interaction()
        return Decision.allow()


def resource(**kwargs: object) -> Resource:
    return Resource(policy=Rules(), **kwargs)  # type: ignore[arg-type]


# -- §6.1 agent identity ------------------------------------------------------------------


def test_agent_identity_serves_the_verified_agent() -> None:
    r = resource()
    response = r.call(signed(agent_token(), url=RS + "/agent/profile"))
    assert response.status == 200 and body_of(response) == {"ok": True}
    [serve] = r.served
    principal = serve.principal
    assert isinstance(principal, AgentPrincipal)
    assert principal.issuer == AP and str(principal.agent) == AGENT_ID
    assert principal.key_thumbprint == AGENT.public_jwk().thumbprint()
    assert principal.session is None
    assert serve.request.url == RS + "/agent/profile"


def test_agent_identity_unsigned_request_is_challenged_for_an_agent_token() -> None:
    r = resource()
    response = r.call(HttpRequest(method="GET", url=RS + "/agent"))
    assert response.status == 401
    assert requirement_of(response).type is RequirementType.AGENT_TOKEN
    assert "signature-error" not in response.headers and not r.served


def test_agent_identity_other_credential_is_challenged_for_an_agent_token() -> None:
    r = resource()
    response = r.call(signed(person_token(), url=RS + "/agent"))
    assert response.status == 401
    assert requirement_of(response).type is RequirementType.AGENT_TOKEN
    assert not r.served


def test_agent_identity_policy_denial_is_403() -> None:
    r = resource()
    response = r.call(signed(agent_token(), url=RS + "/agent/forbidden"))
    assert response.status == 403 and body_of(response)["error"] == "denied"
    assert not r.served


def test_agent_identity_escalates_to_account_binding() -> None:
    r = resource()
    response = r.call(signed(agent_token(), url=RS + "/agent/bind"))
    assert response.status == 202
    assert requirement_of(response).type is RequirementType.INTERACTION


def test_unknown_route_is_404() -> None:
    r = resource()
    response = r.call(signed(agent_token(), url=RS + "/nowhere"))
    assert response.status == 404 and not r.served


# -- §6.2 resource-managed access ------------------------------------------------------------


def _session_flow(r: Resource) -> tuple[str, str]:
    """Run §6.2 to the session token; return (session token, pending id)."""
    first = r.call(signed(agent_token(), url=RS + "/managed/list"))
    assert first.status == 202
    assert first.headers.get("cache-control") == "no-store"
    assert first.headers.get("retry-after") == "5"
    assert body_of(first) == {"status": "pending"}
    requirement = requirement_of(first)
    assert requirement.type is RequirementType.INTERACTION
    assert requirement.url == RS + "/interact" and requirement.code is not None
    location = first.headers.get("location")
    assert location is not None and location.startswith(RS + "/pending/")
    # the agent polls while the person has not come yet
    again = r.poll(location, signed(agent_token(), url=location))
    assert again.status == 202 and requirement_of(again).code == requirement.code
    # the person arrives with the code (typed in lower case, without the hyphen)
    pending_id, shown = r.present_code(requirement.code.replace("-", "").lower())
    assert pending_id is not None and shown is None
    [consent] = r.consents
    assert consent.pending_id == pending_id and consent.agent == AGENT_ID
    assert consent.scope == "notes"
    interacting = r.poll(location, signed(agent_token(), url=location))
    assert interacting.status == 202 and body_of(interacting) == {"status": "interacting"}
    assert "aauth-requirement" not in interacting.headers
    r.decide(pending_id, approved=True)
    done = r.poll(location, signed(agent_token(), url=location))
    # §6.2 step 5: the answer is the held call's result, served once with the new session
    assert done.status == 200 and body_of(done) == {"ok": True}
    [held] = r.served
    assert held.request.url == RS + "/managed/list"
    assert isinstance(held.principal, AgentPrincipal) and held.principal.session is not None
    session = done.headers.get("aauth-access")
    assert session is not None
    assert r.state_of(pending_id) is PendingState.GONE
    gone = r.poll(location, signed(agent_token(), url=location))
    assert gone.status == 410
    return session, pending_id


def test_resource_managed_access_end_to_end_with_rotation() -> None:
    r = resource()
    session, _ = _session_flow(r)
    call = signed(
        agent_token(), url=RS + "/managed/list", headers={"Authorization": f"AAuth {session}"}
    )
    response = r.call(call)
    assert response.status == 200 and "aauth-access" not in response.headers
    principal = r.served[-1].principal
    assert isinstance(principal, AgentPrincipal) and principal.session is not None
    assert principal.session.scope == "notes"
    record = r.store.session(session_digest(session))
    assert record is not None and record.expires_at == NOW + 3600
    # near expiry: the answer carries a new session token (rolling refresh)
    late = NOW + 3600 - 200
    call = signed(
        agent_token(exp=NOW + 7200),
        url=RS + "/managed/list",
        headers={"Authorization": f"AAuth {session}"},
        created=late,
    )
    rotated = r.call(call, at=late)
    assert rotated.status == 200
    new = rotated.headers.get("aauth-access")
    assert new is not None and new != session
    renewed = r.store.session(session_digest(new))
    assert renewed is not None and renewed.expires_at == late + 3600
    # the new token works after the old one expired
    later = NOW + 3600 + 10
    call = signed(
        agent_token(exp=NOW + 7200),
        url=RS + "/managed/list",
        headers={"Authorization": f"AAuth {new}"},
        created=later,
    )
    assert r.call(call, at=later).status == 200
    stale = signed(
        agent_token(exp=NOW + 7200),
        url=RS + "/managed/list",
        headers={"Authorization": f"AAuth {session}"},
        created=later,
    )
    assert r.call(stale, at=later).status == 202  # expired session → re-challenge


def test_resource_managed_unknown_session_is_rechallenged() -> None:
    r = resource()
    call = signed(
        agent_token(), url=RS + "/managed/list", headers={"Authorization": "AAuth bm90LWlzc3VlZA"}
    )
    response = r.call(call)
    assert response.status == 202 and not r.served
    assert requirement_of(response).type is RequirementType.INTERACTION


def test_resource_managed_denied_abandoned_and_cancelled() -> None:
    r = resource()
    first = r.call(signed(agent_token(), url=RS + "/managed"))
    location = first.headers.get("location")
    assert location is not None
    pending_id, _ = r.present_code(requirement_of(first).code or "")
    assert pending_id is not None
    r.decide(pending_id, approved=False)
    denied = r.poll(location, signed(agent_token(), url=location))
    assert denied.status == 403 and body_of(denied)["error"] == "denied"
    assert r.poll(location, signed(agent_token(), url=location)).status == 410

    second = r.call(signed(agent_token(), url=RS + "/managed"))
    location2 = second.headers.get("location")
    assert location2 is not None
    cancel = r.poll(location2, signed(agent_token(), method="DELETE", url=location2))
    assert cancel.status == 204
    assert r.poll(location2, signed(agent_token(), url=location2)).status == 410
    # a cancelled record's code cannot start an interaction any more
    _, late = r.present_code(requirement_of(second).code or "")
    assert late is not None and late.status == 410 and len(r.consents) == 1


def test_resource_managed_expiry() -> None:
    r = resource()
    first = r.call(signed(agent_token(), url=RS + "/managed"))
    location = first.headers.get("location")
    assert location is not None
    pending_id = location.rsplit("/", 1)[1]
    r.tick(pending_id, at=NOW + 100)
    assert r.state_of(pending_id) is PendingState.CREATED
    r.tick(pending_id, at=NOW + 600)
    assert r.state_of(pending_id) is PendingState.EXPIRED
    later = NOW + 610
    expired = r.poll(location, signed(agent_token(), url=location, created=later), at=later)
    assert expired.status == 408 and body_of(expired)["error"] == "expired"


# -- §6.3 person identity ----------------------------------------------------------------------


def test_person_identity() -> None:
    r = resource()
    challenge = r.call(signed(agent_token(), url=RS + "/person"))
    assert challenge.status == 401
    assert requirement_of(challenge).type is RequirementType.PERSON_TOKEN
    response = r.call(signed(person_token(), url=RS + "/person"))
    assert response.status == 200
    principal = r.served[-1].principal
    assert isinstance(principal, PersonPrincipal)
    assert principal.person == (PS, "person-7") and principal.jti == "pt-1"
    assert principal.mission_s256 == MISSION and principal.tenant == "acme"


def test_person_identity_sensitive_operation_escalates_to_auth_token() -> None:
    r = resource()
    response = r.call(signed(person_token(), url=RS + "/person/sensitive"))
    assert response.status == 401 and not r.served
    requirement = requirement_of(response)
    assert requirement.type is RequirementType.AUTH_TOKEN
    assert requirement.resource_token is not None
    claims = verified_resource_token(requirement.resource_token)
    assert claims.scope == "data.write" and claims.presented_jti == "pt-1"


# -- §6.4 PS authorization ---------------------------------------------------------------------


def test_ps_authorization_reactive() -> None:
    r = resource()
    assert requirement_of(r.call(signed(agent_token()))).type is RequirementType.PERSON_TOKEN
    challenge = r.call(signed(person_token()))
    assert challenge.status == 401 and not r.served
    assert "signature-error" not in challenge.headers
    requirement = requirement_of(challenge)
    assert requirement.type is RequirementType.AUTH_TOKEN and requirement.resource_token
    claims = verified_resource_token(requirement.resource_token)
    assert claims.iss == RS and claims.aud == PS and claims.ps == PS
    assert claims.sub == "person-7" and claims.presented_jti == "pt-1"
    assert claims.agent_jkt == AGENT.public_jwk().thumbprint()
    assert claims.scope == "data.read"
    assert claims.mission_s256 == MISSION and claims.tenant == "acme"
    assert claims.exp - claims.iat <= 300 and claims.iat == NOW
    response = r.call(signed(auth_token()))
    assert response.status == 200
    principal = r.served[-1].principal
    assert isinstance(principal, AuthorizedPrincipal)
    assert principal.scopes == {"data.read"} and principal.person == (PS, "person-7")


def test_ps_authorization_proactive_authorization_endpoint() -> None:
    r = resource()
    body = json.dumps({"scope": "data.read  data.write", "account": "acct-1"}).encode()
    request = signed(
        person_token(),
        method="POST",
        url=RS + "/authorize",
        headers={"Content-Type": "application/json"},
        body=body,
        cover_body=True,
    )
    response = r.authorize(request)
    assert response.status == 200 and r.signed_count == 1
    token = body_of(response)["resource_token"]
    claims = verified_resource_token(token)
    assert claims.scope == "data.read data.write" and claims.account == "acct-1"
    assert claims.aud == PS and claims.presented_jti == "pt-1"
    assert claims.mission_s256 == MISSION


def _authorize(
    r: Resource, body: object, token: str | None = None, **kwargs: object
) -> HttpResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = signed(
        token or person_token(),
        method="POST",
        url=RS + "/authorize",
        headers={"Content-Type": "application/json"},
        body=raw,
        cover_body=True,
        **kwargs,  # type: ignore[arg-type]
    )
    return r.authorize(request)


def test_authorization_endpoint_errors() -> None:
    r = resource()
    cases = [
        ({"account": "acct-1"}, 400, "invalid_request"),
        ({"scope": ""}, 400, "invalid_request"),
        ({"scope": 5}, 400, "invalid_request"),
        (b"{not json", 400, "invalid_request"),
        ({"scope": "data.read", "account": 7}, 400, "invalid_request"),
        ({"scope": "data.delete"}, 400, "invalid_scope"),
        ({"scope": "data.read", "account": "acct-2"}, 400, "invalid_account"),
    ]
    for body, status, code in cases:
        response = _authorize(r, body)
        assert (response.status, body_of(response)["error"]) == (status, code), body
    assert r.signed_count == 0
    for token in (agent_token(), auth_token()):
        response = _authorize(r, {"scope": "data.read"}, token)
        assert response.status == 401
        assert requirement_of(response).type is RequirementType.PERSON_TOKEN
    unsigned = r.authorize(HttpRequest(method="POST", url=RS + "/authorize", body=b"{}"))
    assert requirement_of(unsigned).type is RequirementType.PERSON_TOKEN
    bad = _authorize(r, {"scope": "data.read"}, person_token(aud="https://other.example"))
    assert bad.status == 401 and bad.headers.get("signature-error") == "error=invalid_jwt"
    assert r.signed_count == 0


def test_authorization_endpoint_consent_at_the_resource() -> None:
    r = resource()
    response = _authorize(r, {"scope": "notes"})
    assert response.status == 202 and r.signed_count == 0
    requirement = requirement_of(response)
    location = response.headers.get("location")
    assert location is not None and requirement.code is not None
    pending_id, _ = r.present_code(requirement.code)
    assert pending_id is not None and r.consents[0].agent is None
    r.decide(pending_id, approved=True)
    done = r.poll(location, signed(person_token(), url=location))
    assert done.status == 200 and body_of(done) == {"status": "authorized", "scope": "notes"}
    session = done.headers.get("aauth-access")
    assert session is not None
    record = r.store.session(session_digest(session))
    assert record is not None and record.agent_jkt == AGENT.public_jwk().thumbprint()


# -- §6.5 federated ----------------------------------------------------------------------------


def test_federated_resource_token_names_the_access_server() -> None:
    r = resource(access_server=AS)
    challenge = r.call(signed(person_token()))
    requirement = requirement_of(challenge)
    assert requirement.resource_token is not None
    claims = verified_resource_token(requirement.resource_token, audience=AS)
    assert claims.aud == AS and claims.ps == PS and claims.presented_jti == "pt-1"
    response = r.call(signed(auth_token(iss=AS)))
    assert response.status == 200
    principal = r.served[-1].principal
    assert isinstance(principal, AuthorizedPrincipal)
    assert principal.issuer == AS and principal.ps == PS


# -- §6.4 step 6: deferred delivery ------------------------------------------------------------


def test_deferred_delivery_executes_once_and_retains_the_result() -> None:
    calls: list[Serve] = []

    def handler(serve: Serve) -> HttpResponse:
        calls.append(serve)
        return HttpResponse(status=200, body=f"result-{len(calls)}".encode())

    r = resource(handler=handler)
    held = signed(person_token(), url=RS + "/held/report?year=2030")
    first = r.call(held)
    assert first.status == 202 and not calls
    assert first.headers.get("cache-control") == "no-store"
    requirement = requirement_of(first)
    assert requirement.type is RequirementType.AUTH_TOKEN and requirement.resource_token
    claims = verified_resource_token(requirement.resource_token)
    assert claims.presented_jti == "pt-1" and claims.scope == "data.read"
    location = first.headers.get("location")
    assert location is not None
    pending_id = location.rsplit("/", 1)[1]
    # still waiting: the person-token poll repeats the requirement
    waiting = r.poll(location, signed(person_token(), url=location))
    assert waiting.status == 202
    assert requirement_of(waiting).resource_token == requirement.resource_token
    # another agent key gets 404, even with a valid auth token of its own
    other = r.poll(location, signed(auth_token(key=OTHER), url=location, signer=OTHER))
    assert other.status == 404 and not calls
    # the auth token: executed once
    token = auth_token(jti="at-9", exp=NOW + 1200)
    done = r.poll(location, signed(token, url=location))
    assert (done.status, done.body) == (200, b"result-1")
    [serve] = calls
    assert serve.request == held
    assert isinstance(serve.principal, AuthorizedPrincipal) and serve.principal.jti == "at-9"
    # a repeat presentation of the same auth token is answered from the retained result
    repeat = r.poll(location, signed(token, url=location, created=NOW + 30), at=NOW + 30)
    assert (repeat.status, repeat.body) == (200, b"result-1") and len(calls) == 1
    # another auth token (same key) is another poller
    another = r.poll(location, signed(auth_token(jti="at-10"), url=location))
    assert another.status == 404 and len(calls) == 1
    assert r.state_of(pending_id) is DeferredState.COMPLETED
    # retention ends with the auth token
    r.tick(pending_id, at=NOW + 1200)
    assert r.state_of(pending_id) is DeferredState.GONE
    gone = r.poll(
        location,
        signed(agent_token(exp=NOW + 7200), url=location, created=NOW + 1300),
        at=NOW + 1300,
    )
    assert gone.status == 410 and len(calls) == 1


def test_deferred_delivery_insufficient_scope_is_403_then_gone() -> None:
    r = resource()
    first = r.call(signed(person_token(), url=RS + "/held"))
    location = first.headers.get("location")
    assert location is not None
    refused = r.poll(location, signed(auth_token(scope="notes"), url=location))
    assert refused.status == 403 and "signature-error" not in refused.headers
    assert r.poll(location, signed(auth_token(), url=location)).status == 410
    assert not r.served


# -- step-up --------------------------------------------------------------------------------


def test_step_up_names_the_presented_auth_token() -> None:
    r = resource()
    response = r.call(signed(auth_token(jti="at-5"), url=RS + "/write"))
    assert response.status == 401 and not r.served
    requirement = requirement_of(response)
    assert requirement.type is RequirementType.AUTH_TOKEN and requirement.resource_token
    claims = verified_resource_token(requirement.resource_token)
    assert claims.presented_jti == "at-5" and claims.ps == PS and claims.sub == "person-7"
    assert claims.scope == "data.write" and claims.mission_s256 == MISSION
    assert r.call(signed(auth_token(scope="data.write"), url=RS + "/write")).status == 200


# -- §5.8 revocation -----------------------------------------------------------------------


def test_revocation_of_a_person_token() -> None:
    r = resource()
    assert r.call(signed(person_token(), url=RS + "/person")).status == 200
    response = r.revoke(server_signed({"jti": "pt-1", "exp": NOW + 1800}))
    assert response.status == 200 and response.body == b""
    assert r.store.is_revoked(PS, "pt-1")
    again = r.call(signed(person_token(), url=RS + "/person"))
    assert again.status == 401 and again.headers.get("signature-error") == "error=revoked_jwt"
    # never a resource token naming it
    refused = r.call(signed(person_token()))
    assert refused.status == 401
    assert requirement_of(refused).type is RequirementType.PERSON_TOKEN
    assert r.signed_count == 0
    assert _authorize(r, {"scope": "data.read"}).status == 401 and r.signed_count == 0
    # idempotent
    assert r.revoke(server_signed({"jti": "pt-1", "exp": NOW + 1800})).status == 200


def test_revocation_of_an_auth_token() -> None:
    r = resource()
    assert r.revoke(server_signed({"jti": "at-1", "exp": NOW + 1800})).status == 200
    response = r.call(signed(auth_token()))
    assert response.status == 401
    assert response.headers.get("signature-error") == "error=revoked_jwt"
    assert requirement_of(response).type is RequirementType.PERSON_TOKEN
    assert r.signed_count == 0 and not r.served


def test_revocation_endpoint_errors() -> None:
    r = resource(revocation_issuers=frozenset({PS}))
    for body in ({"jti": "x"}, {"jti": "", "exp": 1}, {"jti": "x", "exp": "1"}, b"[]"):
        response = r.revoke(server_signed(body))  # type: ignore[arg-type]
        assert response.status == 400 and body_of(response)["error"] == "invalid_request"
    from test_flow_resource_kit import AS_KEY

    foreign = r.revoke(
        server_signed({"jti": "x", "exp": NOW}, issuer=AS, dwk="aauth-access.json", signer=AS_KEY)
    )
    assert foreign.status == 403 and body_of(foreign)["error"] == "unsupported_iss"
    assert not r.store.is_revoked(AS, "x")
