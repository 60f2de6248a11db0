"""Hostile input at every server endpoint of the in-memory world (resource API, resource
authorization and revocation endpoints, PS person-token, auth-token and revocation
endpoints, AS token endpoint, unknown pending URLs): garbage headers, broken signatures,
validly signed requests with broken bodies, oversized fields. Each is answered with a
4xx response carrying a code, never an exception; nothing is recorded and no pending
record is opened; and the servers go on serving a real flow afterwards."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flow_world import AS, PS, RS, World
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aauth_core import strict_json
from aauth_core.http import HttpRequest
from aauth_core.identifiers import AgentId
from aauth_core.requests import sign_aauth_request
from aauth_core.server_requests import sign_server_request
from aauth_core.tokens import DWK_AGENT, AgentTokenClaims, Confirmation, mint_token

ENDPOINTS = [
    f"{RS}/data",
    f"{RS}/authorize",
    f"{RS}/revoke",
    f"{PS}/person-token",
    f"{PS}/auth-token",
    f"{PS}/revoke",
    f"{AS}/token",
    f"{PS}/pending/does-not-exist",
    f"{AS}/pending/does-not-exist",
    f"{RS}/pending/does-not-exist",
]
BODY_ENDPOINTS = ENDPOINTS[1:7]
HEADER_NAMES = [
    "Signature-Key",
    "Signature-Input",
    "Signature",
    "Authorization",
    "Content-Type",
    "Content-Digest",
    "Prefer",
    "AAuth-Capabilities",
]

WORLD = World()  # one world for every example: servers must keep serving after each

header_values = st.one_of(
    st.text(max_size=200),
    st.sampled_from(
        [
            'sig=jwt;jwt="a.b.c"',
            'sig=jwks_uri;id="https://ps.example";dwk="aauth-person.json";kid="x"',
            'sig=("@method" "@authority" "@path" "signature-key");created=1',
            "sig=:AAAA:",
            "AAuth " + "A" * 300,
            "application/json",
            "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:",
            "wait=5",
        ]
    ),
)
bodies = st.one_of(
    st.binary(max_size=300),
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=40)),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
        ),
        max_leaves=12,
    ).map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {},
        optional={
            "resource": st.text(max_size=40),
            "resource_token": st.text(max_size=40),
            "presented_token": st.text(max_size=40),
            "jti": st.text(max_size=20),
            "exp": st.integers(),
            "scope": st.text(max_size=20),
        },
    ).map(lambda v: json.dumps(v).encode()),
)


def _state(world: World) -> tuple[int, int]:
    return len(world.records), len(world.pending)


def _assert_refused(response: Any) -> None:
    assert 400 <= response.status < 500, response
    if response.status != 401:
        # a problem body with a code, or an empty 4xx from a pending URL
        if response.body:
            assert "error" in json.loads(response.body)
    else:
        assert (
            response.headers.get("signature-error") is not None
            or response.headers.get("aauth-requirement") is not None
        )


def _send(request_or_none: Any) -> None:
    if request_or_none is None:
        return
    before = _state(WORLD)
    response = WORLD.send(request_or_none)
    _assert_refused(response)
    assert _state(WORLD) == before  # nothing recorded, no pending record opened


def _request(method: str, url: str, headers: list[tuple[str, str]], body: bytes) -> Any:
    try:
        return HttpRequest(method=method, url=url, headers=headers, body=body)
    except Exception:  # the HTTP layer refuses it before any server sees it
        return None


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    url=st.sampled_from(ENDPOINTS),
    method=st.sampled_from(["GET", "POST", "DELETE", "PUT"]),
    headers=st.lists(st.tuples(st.sampled_from(HEADER_NAMES), header_values), max_size=5),
    body=bodies,
)
def test_unsigned_or_badly_signed_requests_are_refused(
    url: str, method: str, headers: list[tuple[str, str]], body: bytes
) -> None:
    _send(_request(method, url, headers, body))


def _intruder_token() -> tuple[Any, str]:
    key = WORLD.signers["software:intruder"]
    claims = AgentTokenClaims(
        iss="https://ap.example",
        dwk=DWK_AGENT,
        jti="hostile-agent",
        iat=WORLD.now,
        exp=WORLD.now + 3600,
        sub=AgentId.parse("aauth:intruder@ap.example"),
        cnf=Confirmation(jwk=key.public_jwk()),
        ps=PS,
    )
    return key, mint_token(claims, WORLD.signers["software:ap"])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(url=st.sampled_from(BODY_ENDPOINTS), body=bodies, content_type=header_values)
def test_validly_signed_requests_with_broken_bodies_are_refused(
    url: str, body: bytes, content_type: str
) -> None:
    key, token = _intruder_token()
    bare = _request("POST", url, [("Content-Type", content_type)], body)
    if bare is None:
        return
    try:
        fields = sign_aauth_request(bare, key, token=token, created=WORLD.now, cover_body=True)
    except ValueError:  # our own signer refuses to sign it (a non-ASCII field value)
        return
    _send(HttpRequest(method="POST", url=url, headers=bare.headers.with_fields(fields), body=body))


#: server-signed endpoints, and who may sign there (issuer, its document, its key)
SERVER_SIGNED = [
    (f"{RS}/revoke", PS, "aauth-person.json", "software:ps"),
    (f"{AS}/token", PS, "aauth-person.json", "software:ps"),
    (f"{PS}/revoke", "https://ap.example", "aauth-agent.json", "software:ap"),
]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(target=st.sampled_from(SERVER_SIGNED), body=bodies, content_type=header_values)
def test_validly_server_signed_requests_with_broken_bodies_are_refused(
    target: tuple[str, str, str, str], body: bytes, content_type: str
) -> None:
    url, issuer, dwk, key = target
    bare = _request("POST", url, [("Content-Type", content_type)], body)
    if bare is None:
        return
    try:
        fields = sign_server_request(
            bare, WORLD.signers[key], issuer=issuer, dwk=dwk, created=WORLD.now
        )
    except ValueError:  # our own signer refuses to sign it (a non-ASCII field value)
        return
    request = HttpRequest(
        method="POST", url=url, headers=bare.headers.with_fields(fields), body=body
    )
    if url.endswith("/revoke") and _is_revocation(content_type, body):
        # random bytes that happen to be a well-formed revocation are a valid request
        assert WORLD.send(request).status in (200, 202)
        return
    _send(request)


def _is_revocation(content_type: str, body: bytes) -> bool:
    if content_type.split(";")[0].strip().lower() != "application/json":
        return False
    try:
        document = strict_json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):
        return False
    return (
        isinstance(document, dict)
        and isinstance(document.get("jti"), str)
        and bool(document["jti"])
        and type(document.get("exp")) is int
        and document["exp"] >= 0
    )


@pytest.mark.parametrize("url", BODY_ENDPOINTS)
def test_oversized_bodies_and_headers_are_refused(url: str) -> None:
    key, token = _intruder_token()
    for headers, body in (
        ([("Content-Type", "application/json")], b'{"x":"' + b"A" * (2 * 1024 * 1024) + b'"}'),
        ([("Content-Type", "application/json"), ("Prefer", "wait=" + "9" * 5000)], b"{}"),
    ):
        bare = HttpRequest(method="POST", url=url, headers=headers, body=body)
        fields = sign_aauth_request(bare, key, token=token, created=WORLD.now, cover_body=True)
        _send(HttpRequest(method="POST", url=url, headers=[*headers, *fields.items()], body=body))


def test_the_servers_keep_serving_after_the_hostile_input() -> None:
    # runs after the fuzz above, on the same world: a full PS-authorization flow works
    outcome = WORLD.call("GET", f"{RS}/data")
    assert outcome.response.status == 200
