"""The four token types: the peer's jwt.json vectors, PyJWT cross-checks, and every
negative the -11 token rules name."""

from __future__ import annotations

import contextlib
from typing import Any

import jwt as pyjwt
import pytest
from conftest import load_vector
from hypothesis import given, settings
from hypothesis import strategies as st
from jwt.algorithms import OKPAlgorithm
from signing_helpers import JwkSigner, generated_ed25519

from aauth_core.errors import AAuthError, TokenError
from aauth_core.identifiers import AgentId
from aauth_core.jwk import PublicJwk
from aauth_core.jws import decode_compact, encode_compact
from aauth_core.tokens import (
    DWK_ACCESS,
    DWK_AGENT,
    DWK_PERSON,
    DWK_RESOURCE,
    AgentTokenClaims,
    AuthTokenClaims,
    Confirmation,
    PersonTokenClaims,
    ResourceTokenClaims,
    StaticKeyResolver,
    TokenPolicy,
    TokenType,
    check_agent_jkt,
    mint_token,
    verify_agent_token,
    verify_auth_token,
    verify_person_token,
    verify_resource_token,
    verify_token,
)

JWT_VECTORS = load_vector("aauth-go/jwt.json")["cases"]
MINTED = [c for c in JWT_VECTORS if "claims" in c]
REJECTED = [c for c in JWT_VECTORS if "reject" in c]

PS = "https://ps.example"
RESOURCE = "https://resource.example"
AP = "https://agent.example"
NOW = 1_800_000_000


def _public(case: dict[str, Any]) -> PublicJwk:
    public = {k: v for k, v in case["signing_key"].items() if k != "d"}
    return PublicJwk.from_dict(public)


def _resolver_for(case: dict[str, Any]) -> StaticKeyResolver:
    key = _public(case)
    issuers = {
        "https://agent.example",
        "https://ps.example",
        "https://as.example",
        "https://resource.example",
        "https://Agent.example",
    }
    dwks = {DWK_AGENT, DWK_PERSON, DWK_ACCESS, DWK_RESOURCE}
    return StaticKeyResolver({(i, d): (key,) for i in issuers for d in dwks})


def _audience_of(case: dict[str, Any]) -> str | None:
    if "audience" in case:
        return str(case["audience"])
    aud = case.get("claims", {}).get("aud")
    return aud[0] if isinstance(aud, list) else aud


@pytest.mark.parametrize(
    "case", [c for c in MINTED if not c.get("randomized")], ids=lambda c: c["name"]
)
def test_vector_tokens_re_mint_byte_for_byte(case: dict[str, Any]) -> None:
    signer = JwkSigner(case["signing_key"], kid=case["kid"])
    token = encode_compact({"typ": case["typ"], "kid": case["kid"]}, case["claims"], signer)
    assert token == case["token"]


@pytest.mark.parametrize("case", MINTED, ids=lambda c: c["name"])
def test_vector_tokens_verify_with_the_typed_verifier(case: dict[str, Any]) -> None:
    # The vectors state no clock (PROVENANCE.md): verify one second after iat.
    now = case["claims"]["iat"] + 1
    verified = verify_token(
        case["token"],
        expected=TokenType(case["typ"]),
        keys=_resolver_for(case),
        now=now,
        audience=_audience_of(case),
    )
    assert verified.type.value == case["typ"]
    assert verified.claims.jti == case["claims"]["jti"]
    assert verified.kid == case["kid"]
    # The typed claims carry every member of the vector's claim set.
    payload = verified.claims.to_payload()
    expected = dict(case["claims"])
    if isinstance(expected.get("aud"), list):
        expected["aud"] = expected["aud"][0]  # AAuth aud is one identifier (§2.4-§2.6)
    assert payload == expected


@pytest.mark.parametrize("case", MINTED, ids=lambda c: c["name"])
def test_vector_tokens_verify_with_pyjwt_independently(case: dict[str, Any]) -> None:
    jws = pyjwt.PyJWS()
    jws.register_algorithm("Ed25519", OKPAlgorithm())
    key = pyjwt.PyJWK.from_dict(
        {k: v for k, v in case["signing_key"].items() if k != "d"}
        | {"alg": "EdDSA" if case["signing_key"]["crv"] == "Ed25519" else "ES256"}
    )
    decoded = jws.decode_complete(case["token"], key.key, algorithms=["Ed25519", "ES256"])
    assert decoded["header"]["typ"] == case["typ"]


EXPECTED_REJECT_CODES = {
    "JWS alg EdDSA is rejected": "invalid_jwt",
    "JWS alg none is rejected": "invalid_jwt",
    "cnf.jwk without alg is rejected": "unsupported_algorithm",
    "cnf.jwk crv disagreeing with alg is rejected": "invalid_key",
    "iat absent is rejected": "invalid_jwt",
    "iss not a server identifier is rejected": "invalid_jwt",
    "person token carrying scope is rejected": "invalid_jwt",
}


@pytest.mark.parametrize("case", REJECTED, ids=lambda c: c["name"])
def test_vector_reject_cases(case: dict[str, Any]) -> None:
    with pytest.raises(AAuthError) as info:
        verify_token(
            case["token"],
            expected=TokenType(case["typ"]),
            keys=_resolver_for(case),
            now=decode_compact(case["token"]).payload.get("iat", 1_767_225_600) + 1,
            audience=case.get("audience"),
        )
    assert info.value.code == EXPECTED_REJECT_CODES[case["name"]], info.value
    assert info.value.status == 401


def test_every_reject_case_has_an_expected_code() -> None:
    assert {c["name"] for c in REJECTED} == set(EXPECTED_REJECT_CODES)


# --- our own minting ---------------------------------------------------------------

AGENT_SIGNER = generated_ed25519()  # the agent's request key
AP_SIGNER = generated_ed25519()
PS_SIGNER = generated_ed25519()
RS_SIGNER = generated_ed25519()
KEYS = StaticKeyResolver(
    {
        (AP, DWK_AGENT): (AP_SIGNER.public_jwk(),),
        (PS, DWK_PERSON): (PS_SIGNER.public_jwk(),),
        (RESOURCE, DWK_RESOURCE): (RS_SIGNER.public_jwk(),),
    }
)
CNF = Confirmation(jwk=AGENT_SIGNER.public_jwk())


def agent_claims(**over: Any) -> AgentTokenClaims:
    values: dict[str, Any] = dict(
        iss=AP,
        dwk=DWK_AGENT,
        jti="a-1",
        iat=NOW,
        exp=NOW + 3600,
        sub=AgentId.parse("aauth:assistant@agent.example"),
        cnf=CNF,
        ps=PS,
    )
    values.update(over)
    return AgentTokenClaims(**values)


def person_claims(**over: Any) -> PersonTokenClaims:
    values: dict[str, Any] = dict(
        iss=PS,
        dwk=DWK_PERSON,
        jti="p-1",
        iat=NOW,
        exp=NOW + 3600,
        aud=RESOURCE,
        sub="person-7",
        cnf=CNF,
    )
    values.update(over)
    return PersonTokenClaims(**values)


def auth_claims(**over: Any) -> AuthTokenClaims:
    values: dict[str, Any] = dict(
        iss=PS,
        dwk=DWK_PERSON,
        jti="t-1",
        iat=NOW,
        exp=NOW + 3600,
        aud=RESOURCE,
        ps=PS,
        sub="person-7",
        cnf=CNF,
        scope="calendar.read",
    )
    values.update(over)
    return AuthTokenClaims(**values)


def resource_claims(**over: Any) -> ResourceTokenClaims:
    values: dict[str, Any] = dict(
        iss=RESOURCE,
        dwk=DWK_RESOURCE,
        jti="r-1",
        iat=NOW,
        exp=NOW + 300,
        aud=PS,
        ps=PS,
        sub="person-7",
        presented_jti="p-1",
        agent_jkt=AGENT_SIGNER.public_jwk().thumbprint(),
        scope="calendar.read",
    )
    values.update(over)
    return ResourceTokenClaims(**values)


def test_round_trip_all_four_types() -> None:
    agent = verify_agent_token(mint_token(agent_claims(), AP_SIGNER), keys=KEYS, now=NOW + 5)
    assert agent.claims.sub == AgentId.parse("aauth:assistant@agent.example")
    assert agent.key is not None and agent.key.same_key(AGENT_SIGNER.public_jwk())
    person = verify_person_token(
        mint_token(person_claims(), PS_SIGNER), keys=KEYS, now=NOW + 5, audience=RESOURCE
    )
    assert person.claims.sub == "person-7"
    auth = verify_auth_token(
        mint_token(auth_claims(), PS_SIGNER), keys=KEYS, now=NOW + 5, audience=RESOURCE
    )
    assert auth.claims.scopes == {"calendar.read"}
    resource = verify_resource_token(
        mint_token(resource_claims(), RS_SIGNER), keys=KEYS, now=NOW + 5, audience=PS
    )
    check_agent_jkt(resource.claims, AGENT_SIGNER.public_jwk())
    with pytest.raises(TokenError):
        check_agent_jkt(resource.claims, PS_SIGNER.public_jwk())


def test_minted_tokens_verify_with_pyjwt() -> None:
    token = mint_token(auth_claims(), PS_SIGNER)
    jws = pyjwt.PyJWS()
    jws.register_algorithm("Ed25519", OKPAlgorithm())
    key = pyjwt.PyJWK.from_dict(PS_SIGNER.public_jwk().to_dict() | {"alg": "EdDSA"})
    decoded = jws.decode_complete(token, key.key, algorithms=["Ed25519"])
    assert decoded["header"] == {"alg": "Ed25519", "kid": PS_SIGNER.key_id, "typ": "aa-auth+jwt"}


def code_of(fn: Any) -> str:
    with pytest.raises(AAuthError) as info:
        fn()
    return info.value.code


def test_typ_is_checked_first_person_token_where_auth_token_required() -> None:
    person = mint_token(person_claims(), PS_SIGNER)
    assert (
        code_of(lambda: verify_auth_token(person, keys=KEYS, now=NOW, audience=RESOURCE))
        == "invalid_jwt"
    )
    # Even an unknown issuer key does not matter: typ fails before any key lookup.
    empty = StaticKeyResolver({})
    with pytest.raises(TokenError, match="typ"):
        verify_auth_token(person, keys=empty, now=NOW, audience=RESOURCE)


def test_exp_has_zero_leeway() -> None:
    token = mint_token(agent_claims(), AP_SIGNER)
    verify_agent_token(token, keys=KEYS, now=NOW + 3599)
    assert code_of(lambda: verify_agent_token(token, keys=KEYS, now=NOW + 3600)) == "expired_jwt"


def test_iat_ahead_beyond_window_is_clock_skew() -> None:
    token = mint_token(agent_claims(), AP_SIGNER)
    verify_agent_token(token, keys=KEYS, now=NOW - 60)
    assert code_of(lambda: verify_agent_token(token, keys=KEYS, now=NOW - 61)) == "clock_skew"
    err = pytest.raises(TokenError, verify_agent_token, token, keys=KEYS, now=NOW - 61).value
    assert err.as_parameter("presented").code == "clock_skew"


def test_lifetime_caps() -> None:
    with pytest.raises(ValueError, match="MUST cap"):
        mint_token(person_claims(exp=NOW + 3601), PS_SIGNER)
    with pytest.raises(ValueError, match="exceeds"):
        mint_token(agent_claims(exp=NOW + 24 * 3600 + 1), AP_SIGNER)
    long_agent = mint_token(agent_claims(exp=NOW + 48 * 3600), AP_SIGNER, allow_long_lifetime=True)
    verify_agent_token(long_agent, keys=KEYS, now=NOW)
    capped = TokenPolicy(max_lifetime=24 * 3600)
    assert (
        code_of(lambda: verify_agent_token(long_agent, keys=KEYS, now=NOW, policy=capped))
        == "invalid_jwt"
    )
    # A person token over one hour, signed by a misbehaving PS, is refused on verification.
    over = person_claims(exp=NOW + 7200)
    token = encode_compact({"typ": "aa-person+jwt"}, over.to_payload(), PS_SIGNER)
    assert (
        code_of(lambda: verify_person_token(token, keys=KEYS, now=NOW, audience=RESOURCE))
        == "invalid_jwt"
    )


def test_audience_mismatch() -> None:
    token = mint_token(auth_claims(), PS_SIGNER)
    assert (
        code_of(
            lambda: verify_auth_token(token, keys=KEYS, now=NOW, audience="https://other.example")
        )
        == "invalid_jwt"
    )


def test_dwk_must_match_the_type() -> None:
    payload = agent_claims().to_payload() | {"dwk": DWK_PERSON}
    token = encode_compact({"typ": "aa-agent+jwt"}, payload, AP_SIGNER)
    assert code_of(lambda: verify_agent_token(token, keys=KEYS, now=NOW)) == "invalid_jwt"


def test_unknown_kid_and_wrong_key() -> None:
    token = mint_token(agent_claims(), PS_SIGNER)  # kid of the PS key, not in AP's set
    assert code_of(lambda: verify_agent_token(token, keys=KEYS, now=NOW)) == "unknown_key"
    forged = encode_compact(
        {"typ": "aa-agent+jwt", "kid": AP_SIGNER.key_id}, agent_claims().to_payload(), PS_SIGNER
    )
    assert code_of(lambda: verify_agent_token(forged, keys=KEYS, now=NOW)) == "invalid_jwt"


def test_tampered_payload_fails() -> None:
    token = mint_token(agent_claims(), AP_SIGNER)
    head, _body, sig = token.split(".")
    other = mint_token(agent_claims(jti="a-2"), AP_SIGNER).split(".")[1]
    assert (
        code_of(lambda: verify_agent_token(f"{head}.{other}.{sig}", keys=KEYS, now=NOW))
        == "invalid_jwt"
    )


def test_cnf_structural_checks() -> None:
    payload = agent_claims().to_payload()
    for bad, code in (
        ({"jwk": {"kty": "OKP", "alg": "Ed25519"}}, "invalid_key"),
        ({"jwk": {"kty": "oct", "k": "AAAA", "alg": "HS256"}}, "unsupported_algorithm"),
        (
            {"jwk": {"kty": "OKP", "crv": "Ed25519", "x": "A" * 43, "alg": "EdDSA"}},
            "unsupported_algorithm",
        ),
        (
            {
                "jwk": {
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
                    "alg": "Ed25519",
                    "d": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
                }
            },
            "invalid_key",
        ),
        ("not-an-object", "invalid_jwt"),
        ({}, "invalid_jwt"),
    ):
        token = encode_compact({"typ": "aa-agent+jwt"}, payload | {"cnf": bad}, AP_SIGNER)
        assert code_of(lambda t=token: verify_agent_token(t, keys=KEYS, now=NOW)) == code, bad


def test_cnf_jkt_form_binds_by_thumbprint() -> None:
    jkt = AGENT_SIGNER.public_jwk().thumbprint()
    claims = auth_claims(cnf=Confirmation(jkt=jkt))
    verified = verify_auth_token(
        mint_token(claims, PS_SIGNER), keys=KEYS, now=NOW, audience=RESOURCE
    )
    cnf = verified.claims.confirmation
    assert cnf.binds(AGENT_SIGNER.public_jwk())
    assert not cnf.binds(PS_SIGNER.public_jwk())
    assert verified.key is None  # no key to verify a request with: jkt only binds


def test_sub_agent_rules() -> None:
    sub = AgentId.parse("aauth:assistant+w1@agent.example")
    parent = AgentId.parse("aauth:assistant@agent.example")
    token = mint_token(agent_claims(sub=sub, parent_agent=parent), AP_SIGNER)
    assert verify_agent_token(token, keys=KEYS, now=NOW).claims.parent_agent == parent
    with pytest.raises(ValueError, match="parent_agent"):
        agent_claims(sub=sub)
    payload = agent_claims().to_payload() | {"parent_agent": "aauth:other@agent.example"}
    bad = encode_compact({"typ": "aa-agent+jwt"}, payload, AP_SIGNER)
    assert code_of(lambda: verify_agent_token(bad, keys=KEYS, now=NOW)) == "invalid_jwt"


def test_parameter_mapping_of_token_errors() -> None:
    token = mint_token(resource_claims(), RS_SIGNER)
    err = pytest.raises(
        TokenError, verify_resource_token, token, keys=KEYS, now=NOW + 300, audience=PS
    ).value
    mapped = err.as_parameter("resource")
    assert (mapped.code, mapped.status) == ("expired_resource_token", 400)
    err = pytest.raises(
        TokenError, verify_resource_token, token, keys=KEYS, now=NOW, audience=RESOURCE
    ).value
    assert err.as_parameter("resource").code == "invalid_resource_token"


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=400), st.binary(max_size=400).map(lambda b: b.decode("latin-1"))))
def test_arbitrary_text_is_an_aauth_error(text: str) -> None:
    with pytest.raises(AAuthError):
        verify_token(text, expected=TokenType.AGENT, keys=KEYS, now=NOW)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "iss",
                "dwk",
                "jti",
                "iat",
                "exp",
                "sub",
                "cnf",
                "ps",
                "aud",
                "parent_agent",
                "scope",
                "agent_jkt",
                "presented_jti",
                "interaction",
            ]
        ),
        json_values,
        max_size=14,
    ),
    st.sampled_from(list(TokenType)),
)
def test_validly_signed_hostile_claims_never_crash(payload: dict[str, Any], typ: TokenType) -> None:
    token = encode_compact({"typ": typ.value}, payload, AP_SIGNER)
    keys = StaticKeyResolver({})
    with contextlib.suppress(AAuthError):
        verify_token(token, expected=typ, keys=keys, now=NOW, audience=RESOURCE)


def test_decode_limits() -> None:
    with pytest.raises(TokenError, match="longer"):
        decode_compact("a" * 20000)
    with pytest.raises(TokenError):
        decode_compact("e30.e30")
    with pytest.raises(TokenError, match="crit"):
        decode_compact(encode_compact({"crit": ["x"]}, {}, AP_SIGNER))


def test_presented_mismatches_names_every_copied_claim_that_disagrees() -> None:
    from aauth_core.tokens import presented_mismatches

    person = person_claims()
    assert presented_mismatches(resource_claims(), person) == []
    assert presented_mismatches(resource_claims(presented_jti="other"), person) == ["presented_jti"]
    assert presented_mismatches(resource_claims(sub="someone-else"), person) == ["sub"]
    # stripped or added mission, and tenant: absence counts as a value
    mission = "A" * 43
    assert presented_mismatches(resource_claims(), person_claims(mission_s256=mission)) == [
        "mission_s256"
    ]
    assert presented_mismatches(resource_claims(tenant="org-1"), person) == ["tenant"]
    step_up = auth_claims(jti="p-1")
    assert presented_mismatches(resource_claims(), step_up) == []
