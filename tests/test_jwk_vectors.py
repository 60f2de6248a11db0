"""JWKs and JWS against RFC 7638 §3.1, RFC 8037 A.1-A.5 and the peer's jwk-thumbprint.json."""

from __future__ import annotations

import contextlib
import hashlib
import json
from typing import Any

import pytest
from conftest import load_vector
from hypothesis import given, settings
from hypothesis import strategies as st

from aauth_core.b64 import b64url_decode
from aauth_core.errors import AAuthError, InvalidKey, TokenError, UnsupportedAlgorithm
from aauth_core.jwk import PublicJwk, thumbprint_of
from aauth_core.jws import decode_compact
from aauth_core.verify import verifier_for

RFC7638 = load_vector("rfc/rfc7638_thumbprint.json")
RFC8037 = load_vector("rfc/rfc8037_ed25519.json")
PEER = load_vector("aauth-go/jwk-thumbprint.json")["cases"]


def test_rfc7638_section_3_1() -> None:
    jwk = PublicJwk.from_dict(RFC7638["jwk"])
    members = jwk.required_members()
    assert sorted(members) == RFC7638["required_members"]
    canonical = json.dumps(dict(sorted(members.items())), separators=(",", ":"))
    assert canonical == RFC7638["canonical_json"]
    assert list(hashlib.sha256(canonical.encode()).digest()) == json.loads(
        str(RFC7638["thumbprint_octets"])
    )
    assert jwk.thumbprint() == RFC7638["thumbprint_b64url"]
    assert thumbprint_of(RFC7638["jwk"] | {"extra": "ignored"} and members) == jwk.thumbprint()


def test_rfc8037_a2_a3_thumbprint() -> None:
    jwk = PublicJwk.from_dict(RFC8037["A.2_public_jwk"] | {"alg": "Ed25519"})
    a3 = RFC8037["A.3_thumbprint"]
    assert (
        json.dumps(jwk.required_members(), sort_keys=True, separators=(",", ":"))
        == a3["canonical_json"]
    )
    assert hashlib.sha256(a3["canonical_json"].encode()).hexdigest() == a3["sha256_hex"]
    assert jwk.thumbprint() == a3["b64url"]
    assert len(jwk.thumbprint("sha512")) == 86  # jkt-s512: 64 bytes, unpadded base64url


def test_rfc8037_a4_a5_primitive_verifies_but_aauth_refuses_eddsa() -> None:
    a4 = RFC8037["A.4_signing"]
    jwk = PublicJwk.from_dict(RFC8037["A.2_public_jwk"] | {"alg": "Ed25519"})
    signature = b64url_decode(a4["signature_b64url"])
    # A.5: the Ed25519 primitive validates the RFC's signature...
    assert verifier_for(jwk)(a4["signing_input"].encode(), signature)
    assert not verifier_for(jwk)(a4["signing_input"].encode() + b"x", signature)
    # ...but the JWS is no AAuth token: its payload is text, not a JWT claim set, and its
    # header names the polymorphic 'EdDSA' that AAuth (-10 and later) rejects (the peer's
    # jwt.json case "JWS alg EdDSA is rejected" checks that on a real token).
    with pytest.raises(TokenError, match="JSON"):
        decode_compact(a4["jws_compact"])


def test_a_jwk_with_eddsa_alg_is_refused() -> None:
    with pytest.raises(UnsupportedAlgorithm, match="Ed25519"):
        PublicJwk.from_dict(RFC8037["A.2_public_jwk"] | {"alg": "EdDSA"})
    with pytest.raises(UnsupportedAlgorithm):
        PublicJwk.from_dict(RFC8037["A.2_public_jwk"])  # alg is REQUIRED


def test_a_private_jwk_is_refused() -> None:
    with pytest.raises(InvalidKey, match="private"):
        PublicJwk.from_dict(RFC8037["A.1_private_jwk"] | {"alg": "Ed25519"})


@pytest.mark.parametrize("case", PEER, ids=lambda c: c["name"])
def test_peer_thumbprints(case: dict[str, Any]) -> None:
    jwk = case["jwk"]
    # The first peer case omits alg (RFC 8037 A.3 is a bare key); a thumbprint does not
    # depend on alg, and AAuth requires alg on every key, so it is supplied here.
    alg = jwk.get("alg", "Ed25519" if jwk["kty"] == "OKP" else "ES256")
    assert PublicJwk.from_dict(jwk | {"alg": alg}).thumbprint() == case["thumbprint"]
    assert (
        thumbprint_of({k: jwk[k] for k in jwk if k in ("kty", "crv", "x", "y")})
        == case["thumbprint"]
    )


@pytest.mark.parametrize(
    ("jwk", "error"),
    [
        (
            {
                "kty": "EC",
                "crv": "P-256",
                "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
                "alg": "ES384",
            },
            InvalidKey,
        ),
        (
            {
                "kty": "EC",
                "crv": "P-256",
                "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                "alg": "ES256",
            },
            InvalidKey,
        ),
        ({"kty": "OKP", "crv": "Ed25519", "x": "AAAA", "alg": "Ed25519"}, InvalidKey),
        (
            {
                "kty": "OKP",
                "crv": "X25519",
                "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
                "alg": "Ed25519",
            },
            InvalidKey,
        ),
        ({"kty": "RSA", "n": "AQAB", "e": "AQAB", "alg": "RS256"}, InvalidKey),
        (
            {"kty": "RSA", "n": RFC7638["jwk"]["n"], "e": "AQAB", "alg": "HS256"},
            UnsupportedAlgorithm,
        ),
        ({"kty": "oct", "k": "c2VjcmV0", "alg": "HS256"}, UnsupportedAlgorithm),
        ({"kty": "AKP", "alg": "ML-DSA-44", "pub": "x"}, UnsupportedAlgorithm),
        (
            {
                "kty": "OKP",
                "crv": "Ed25519",
                "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
                "alg": "none",
            },
            UnsupportedAlgorithm,
        ),
        (
            {
                "kty": "OKP",
                "crv": "Ed25519",
                "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
                "alg": "Ed25519",
                "use": "enc",
            },
            InvalidKey,
        ),
        ("not a dict", InvalidKey),
    ],
)
def test_structural_rules(jwk: Any, error: type[AAuthError]) -> None:
    with pytest.raises(error):
        PublicJwk.from_dict(jwk)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=60),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=10,
)
jwk_like = st.dictionaries(
    st.sampled_from(["kty", "crv", "x", "y", "n", "e", "alg", "kid", "use", "d", "k"]),
    st.one_of(
        json_values,
        st.sampled_from(["OKP", "EC", "RSA", "oct", "Ed25519", "P-256", "ES256", "RS256", "PS256"]),
        st.text(
            alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
            max_size=400,
        ),
    ),
    max_size=8,
)


@settings(max_examples=500, deadline=None)
@given(st.one_of(jwk_like, json_values))
def test_hostile_jwks_are_aauth_errors(data: Any) -> None:
    try:
        jwk = PublicJwk.from_dict(data)
    except AAuthError as exc:
        status = exc.status
        assert status == 401, exc  # noqa: PT017 - the fuzz checks every error's status
        return
    # Anything accepted is a usable public key with a fully specified alg.
    assert jwk.alg.value in ("Ed25519", "ES256", "ES384", "PS256", "RS256")
    assert len(jwk.thumbprint()) == 43
    with contextlib.suppress(InvalidKey):  # a point off the curve: invalid_key, no crash
        verifier_for(jwk)(b"data", b"\0" * 64)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300).map(lambda b: b.decode("latin-1"))))
def test_hostile_compact_jws_is_a_token_error(text: str) -> None:
    with pytest.raises(TokenError):
        decode_compact(text + ".")  # at least one dot too many or a broken part
