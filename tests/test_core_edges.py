"""Edges of the token path that the vectors do not reach: algorithm mismatches, empty
signatures, wrong-size signatures per algorithm, policy allow-lists, resolvers, caches."""

from __future__ import annotations

import base64
import json

import pytest
from signing_helpers import generated_ed25519

from aauth_backends import CryptographySigner
from aauth_core.algorithms import Alg
from aauth_core.b64 import b64url_decode, b64url_encode
from aauth_core.errors import MalformedInput, TokenError
from aauth_core.identifiers import AgentId
from aauth_core.jws import decode_compact, encode_compact, verify_jws
from aauth_core.token_cache import VerifiedTokenCache
from aauth_core.tokens import (
    DWK_AGENT,
    AgentTokenClaims,
    Confirmation,
    StaticKeyResolver,
    TokenPolicy,
    mint_token,
    verify_agent_token,
)
from aauth_core.verify import verifier_for

AP = "https://agent.example"
NOW = 1_800_000_000
AGENT = generated_ed25519()


def claims(**over: object) -> AgentTokenClaims:
    values: dict[str, object] = {
        "iss": AP, "dwk": DWK_AGENT, "jti": "a-1", "iat": NOW, "exp": NOW + 600,
        "sub": AgentId.parse("aauth:assistant@agent.example"),
        "cnf": Confirmation(jwk=AGENT.public_jwk()),
    }  # fmt: skip
    values.update(over)
    return AgentTokenClaims(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("alg", ["ES256", "ES384", "PS256", "RS256"])
def test_every_algorithm_mints_and_verifies(alg: str) -> None:
    issuer = CryptographySigner.generate(alg)
    keys = StaticKeyResolver({(AP, DWK_AGENT): (issuer.public_jwk(),)})
    token = mint_token(claims(), issuer)
    assert verify_agent_token(token, keys=keys, now=NOW).alg.value == alg
    # A signature of the wrong size for the algorithm is refused, not passed to OpenSSL.
    head, body, _ = token.split(".")
    short = f"{head}.{body}.{b64url_encode(b'x' * 10)}"
    with pytest.raises(TokenError, match="does not verify"):
        verify_agent_token(short, keys=keys, now=NOW)


def test_header_alg_must_equal_the_keys_alg() -> None:
    ed = CryptographySigner.generate("Ed25519")
    es = CryptographySigner.generate("ES256")
    # Signed with the ES256 key, but the kid names the Ed25519 key.
    token = encode_compact({"typ": "aa-agent+jwt", "kid": ed.key_id}, claims().to_payload(), es)
    keys = StaticKeyResolver({(AP, DWK_AGENT): (ed.public_jwk(),)})
    with pytest.raises(TokenError, match="does not match the key's alg Ed25519"):
        verify_agent_token(token, keys=keys, now=NOW)


def test_policy_allow_list_and_resolver_without_kid() -> None:
    issuer = CryptographySigner.generate("Ed25519")
    token = encode_compact({"typ": "aa-agent+jwt", "kid": None}, claims().to_payload(), issuer)
    assert json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "==")) == {
        "alg": "Ed25519", "typ": "aa-agent+jwt",
    }  # fmt: skip
    one = StaticKeyResolver({(AP, DWK_AGENT): (issuer.public_jwk(),)})
    assert verify_agent_token(token, keys=one, now=NOW).kid is None
    two = StaticKeyResolver({(AP, DWK_AGENT): (issuer.public_jwk(), AGENT.public_jwk())})
    with pytest.raises(TokenError) as info:
        verify_agent_token(token, keys=two, now=NOW)
    assert info.value.code == "unknown_key"
    only_es = TokenPolicy(allowed_algs=frozenset({Alg.ES256}))
    with pytest.raises(TokenError, match="not allowed"):
        verify_agent_token(mint_token(claims(), issuer), keys=one, now=NOW, policy=only_es)


def test_policy_lifetime_cap_below_the_types_cap() -> None:
    issuer = CryptographySigner.generate("Ed25519")
    keys = StaticKeyResolver({(AP, DWK_AGENT): (issuer.public_jwk(),)})
    token = mint_token(claims(), issuer)
    with pytest.raises(TokenError, match="exceeds the 300 s cap"):
        verify_agent_token(token, keys=keys, now=NOW, policy=TokenPolicy(max_lifetime=300))


def test_empty_signature_and_whitespace_json() -> None:
    issuer = CryptographySigner.generate("Ed25519")
    head, body, _ = mint_token(claims(), issuer).split(".")
    jws = decode_compact(f"{head}.{body}.")
    with pytest.raises(TokenError, match="no signature"):
        verify_jws(jws, issuer.public_jwk())
    spaced = b64url_encode(b' {"iss": "x"} ')
    assert decode_compact(f"{head}.{spaced}.").payload == {"iss": "x"}
    with pytest.raises(TokenError, match="not JSON"):
        decode_compact(f"{head}.{b64url_encode(b'{} trailing')}.")


def test_base64url_is_strict() -> None:
    assert b64url_decode("AQ") == b"\x01"
    for bad in ("AR", "A", "AQ==", "A+Q", "A/Q", "AQ\n"):
        with pytest.raises(MalformedInput):
            b64url_decode(bad)


def test_token_cache_misuse_and_housekeeping() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        VerifiedTokenCache(max_entries=0)
    issuer = CryptographySigner.generate("Ed25519")
    keys = StaticKeyResolver({(AP, DWK_AGENT): (issuer.public_jwk(),)})
    token = mint_token(claims(), issuer)
    cache = VerifiedTokenCache(max_entries=4)
    cache.put(verify_agent_token(token, keys=keys, now=NOW))
    assert "entries=1" in repr(cache)
    assert token not in repr(cache)
    cache.discard(token)
    assert cache.get(token, NOW) is None
    cache.put(verify_agent_token(token, keys=keys, now=NOW))
    cache.clear()
    assert len(cache) == 0


def test_verifiers_refuse_keys_that_do_not_decode() -> None:
    from aauth_core.errors import InvalidKey
    from aauth_core.jwk import PublicJwk

    # A P-256 point that is not on the curve passes the structural checks (sizes) and is
    # refused when the verifier is built.
    off_curve = PublicJwk.from_dict(
        {"kty": "EC", "crv": "P-256", "alg": "ES256",
         "x": b64url_encode(b"\x01" * 32), "y": b64url_encode(b"\x02" * 32)}
    )  # fmt: skip
    with pytest.raises(InvalidKey):
        verifier_for(off_curve)


def test_json_request_body_wants_application_json_and_a_strict_object() -> None:
    from aauth_core.http import Headers
    from aauth_core.strict_json import json_request_body

    ok = Headers({"Content-Type": "application/json; charset=utf-8"})
    assert json_request_body(ok, b'{"a":1}', max_size=100) == {"a": 1}
    for headers, body in (
        (Headers({"Content-Type": "text/plain"}), b'{"a":1}'),
        (Headers(), b'{"a":1}'),
        (ok, b'{"a":1,"a":2}'),
        (ok, b"[1]"),
        (ok, b"{" + b" " * 200 + b"}"),
        (ok, b"\xff"),
    ):
        with pytest.raises(MalformedInput) as info:
            json_request_body(headers, body, max_size=100)
        assert (info.value.code, info.value.status) == ("invalid_request", 400)
