"""Signature-Key: the aauth-go vectors, every scheme, select(), the serialisers, and proof that
the fast path agrees with the full RFC 9651 parser."""

from __future__ import annotations

import json
import operator
from decimal import Decimal
from typing import Any

import pytest
from conftest import LOCAL_VECTORS, load_vector
from hypothesis import example, given, settings
from hypothesis import strategies as st

from aauth_core import sfv
from aauth_core import signature_key as sk
from aauth_core.errors import AAuthError, SignatureFailure, UnsupportedScheme

VECTORS = load_vector("aauth-go/signature-key.json")["cases"]
LABEL = "sig"  # the label the vectors select
JWT = "eyJhbGciOiJFZDI1NTE5In0.e30.c2ln"


def _vector_id(case: dict[str, Any]) -> str:
    return str(case["header"])[:60]


# -- the vectors --------------------------------------------------------------------------


def test_vector_file_has_the_nine_cases() -> None:
    assert len(VECTORS) == 9
    assert sum("error" not in c for c in VECTORS) == 3


@pytest.mark.parametrize("case", VECTORS, ids=_vector_id)
def test_vector_select_jwt_only(case: dict[str, Any]) -> None:
    """What a jwt-only AAuth verifier answers (the vector's ``error``), or the token."""
    if "error" in case:
        with pytest.raises(SignatureFailure) as info:
            sk.select(case["header"], LABEL)
        assert info.value.code == case["error"]
        assert info.value.status == 401
        if case["error"] == "unsupported_scheme":
            assert isinstance(info.value, UnsupportedScheme)
            assert info.value.accept_schemes == ("jwt",)
    else:
        scheme = sk.select(case["header"], LABEL)
        assert isinstance(scheme, sk.JwtScheme)
        assert scheme.jwt == case["params"]["jwt"]
        assert scheme.params() == {**case["params"], **({"cache": True} if scheme.cache else {})}


@pytest.mark.parametrize("case", VECTORS, ids=_vector_id)
def test_vector_parse_any_scheme(case: dict[str, Any]) -> None:
    """Without an acceptance filter: the scheme and its parameters, or invalid_signature when
    the member is missing, not a token, or lacks a required parameter."""
    if case.get("error", "unsupported_scheme") != "unsupported_scheme":
        with pytest.raises(SignatureFailure) as info:
            sk.parse(case["header"], LABEL)
        assert info.value.code == "invalid_signature"
        return
    scheme = sk.parse(case["header"], LABEL)
    assert scheme.scheme == case["scheme"]
    params = {k: v for k, v in scheme.params().items() if k != "cache"}
    assert params == case["params"]


def test_vector_cache_flag() -> None:
    third = VECTORS[2]
    assert third["header"].endswith(";cache")
    assert sk.select(third["header"], LABEL) == sk.JwtScheme(jwt=JWT, cache=True)
    assert sk.select(VECTORS[0]["header"], LABEL) == sk.JwtScheme(jwt=JWT, cache=False)


def test_other_labels_are_ignored_and_selectable() -> None:
    header = VECTORS[2]["header"]  # sig1=hwk;kty="OKP", sig=jwt;...
    assert sk.parse(header, "sig1") == sk.HwkScheme(jwk={"kty": "OKP"})
    with pytest.raises(UnsupportedScheme):
        sk.select(header, "sig1")
    with pytest.raises(SignatureFailure) as info:
        sk.select(header, "sig2")
    assert info.value.code == "invalid_signature"


# -- every scheme -------------------------------------------------------------------------

HWK = (
    'sig=hwk;kty="OKP";crv="Ed25519";x="11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";alg="Ed25519"'
)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f'sig=jwt;jwt="{JWT}"', sk.JwtScheme(jwt=JWT)),
        (f'sig=jwt;jwt="{JWT}";cache=?0', sk.JwtScheme(jwt=JWT, cache=False)),
        (f'sig=jkt-jwt;jwt="{JWT}";cache', sk.JktJwtScheme(jwt=JWT, cache=True)),
        (
            'sig=jwks_uri;id="https://ps.example";dwk="aauth-person.json";kid="key-1"',
            sk.JwksUriScheme(id="https://ps.example", dwk="aauth-person.json", kid="key-1"),
        ),
        (
            'sig=jwks;url="https://ex.example/jwks";kid="k"',
            sk.JwksScheme(url="https://ex.example/jwks", kid="k"),
        ),
        (
            HWK,
            sk.HwkScheme(
                jwk={
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
                    "alg": "Ed25519",
                }
            ),
        ),
        (
            'sig=x509;x5u="https://ex.example/chain.pem";x5t=:AAEC:',
            sk.X509Scheme(x5u="https://ex.example/chain.pem", x5t=b"\x00\x01\x02"),
        ),
        (f'sig=self-jwt;jwt="{JWT}"', sk.SelfJwtScheme(jwt=JWT)),
        ('sig=cached;cid="abc"', sk.UnknownScheme(name="cached")),
        ("sig=x-unregistered", sk.UnknownScheme(name="x-unregistered")),
        # unknown parameters are ignored
        (f'sig=jwt;jwt="{JWT}";future=1', sk.JwtScheme(jwt=JWT)),
    ],
)
def test_parse_each_scheme(header: str, expected: sk.SignatureKeyScheme) -> None:
    assert sk.parse(header, LABEL) == expected
    assert sk.parse_full(header, LABEL) == expected
    assert sk.select(header, LABEL, accepted_schemes=(expected.scheme,)) == expected
    # serialise and parse back
    assert sk.parse_full(sk.serialize_scheme(LABEL, expected), LABEL) == expected


@pytest.mark.parametrize(
    ("header", "code"),
    [
        ("sig=jwt", "invalid_signature"),
        ('sig=jwt;jwt=""', "invalid_signature"),
        ("sig=jwt;jwt=abc", "invalid_signature"),  # a token, not a string
        ("sig=jwt;jwt=:AAEC:", "invalid_signature"),
        (f'sig=jwt;jwt="{JWT}";cache=1', "invalid_signature"),
        ('sig=jwks_uri;id="https://ps.example";dwk="aauth-person.json"', "invalid_signature"),
        ('sig=jwks;url="https://ex.example/jwks"', "invalid_signature"),
        ('sig=hwk;crv="Ed25519"', "invalid_signature"),
        ("sig=hwk;kty=OKP", "invalid_signature"),
        ('sig=hwk;kty="OKP";kid="k"', "invalid_key"),
        ('sig=x509;x5u="https://ex.example/c.pem";x5t="AAEC"', "invalid_signature"),
        ("sig=x509;x5t=:AAEC:", "invalid_signature"),
        ("sig=self-jwt", "invalid_signature"),
        ('sig=("jwt")', "invalid_signature"),  # inner list
        ("sig=1", "invalid_signature"),
        ("sig", "invalid_signature"),  # bare key: Boolean true
        ("", "invalid_signature"),  # no members
        ('sig=jwt;jwt="a" x', "invalid_signature"),  # not a dictionary
        ("sig=jwt, ", "invalid_signature"),
        ("Sig=jwt", "invalid_signature"),
    ],
)
def test_parse_failures(header: str, code: str) -> None:
    with pytest.raises(SignatureFailure) as info:
        sk.parse(header, LABEL)
    assert info.value.code == code
    assert info.value.status == 401


def test_oversized_and_non_ascii_headers_are_invalid_signature() -> None:
    big = f'sig=jwt;jwt="{"a" * (sfv.MAX_FIELD_LENGTH + 1)}"'
    assert sk.parse_fast(big, LABEL) is None
    for header in (big, 'sig=jwt;jwt="caf\u00e9"', b'sig=jwt;jwt="\xff"'):
        with pytest.raises(SignatureFailure) as info:
            sk.parse(header, LABEL)
        assert info.value.code == "invalid_signature"


def test_bytes_input_takes_the_full_parser() -> None:
    header = f'sig=jwt;jwt="{JWT}"'
    assert sk.parse_fast(header.encode(), LABEL) is None
    assert sk.parse(header.encode(), LABEL) == sk.JwtScheme(jwt=JWT)


def test_select_checks_the_scheme_before_its_parameters() -> None:
    with pytest.raises(UnsupportedScheme) as info:
        sk.select("sig=hwk", LABEL)  # hwk without kty: still unsupported_scheme
    assert info.value.code == "unsupported_scheme"
    with pytest.raises(SignatureFailure) as other:
        sk.select("sig=hwk", LABEL, accepted_schemes=("hwk",))
    assert other.value.code == "invalid_signature"


def test_select_for_servers_accepts_jwks_uri() -> None:
    header = sk.serialize_jwks_uri_scheme(
        "sig", id="https://ps.example", dwk="aauth-person.json", kid="key-1"
    )
    accepted = ("jwt", "jwks_uri")
    assert sk.select(header, LABEL, accepted) == sk.JwksUriScheme(
        id="https://ps.example", dwk="aauth-person.json", kid="key-1"
    )
    with pytest.raises(UnsupportedScheme) as info:
        sk.select(HWK, LABEL, accepted)
    assert info.value.accept_schemes == accepted


def test_select_with_a_list_of_schemes() -> None:
    assert sk.select(f'sig=jwt;jwt="{JWT}"', LABEL, ["jwt"]) == sk.JwtScheme(jwt=JWT)
    with pytest.raises(UnsupportedScheme):
        sk.select(f'sig=jwt;jwt="{JWT}"', LABEL, ["jwks_uri"])


# -- serialisers --------------------------------------------------------------------------


def test_serialize_jwt_scheme() -> None:
    assert sk.serialize_jwt_scheme("sig", JWT) == f'sig=jwt;jwt="{JWT}"'
    assert sk.serialize_jwt_scheme("sig", JWT) == VECTORS[0]["header"]
    assert sk.serialize_jwt_scheme("sig", JWT, cache=True) == f'sig=jwt;jwt="{JWT}";cache'
    # a string that needs escaping goes through the full serialiser and back
    odd = 'a"b\\c d'
    assert sk.serialize_jwt_scheme("s", odd) == 's=jwt;jwt="a\\"b\\\\c d"'
    assert sk.parse('s=jwt;jwt="a\\"b\\\\c d"', "s") == sk.JwtScheme(jwt=odd)


def test_serialize_jwks_uri_scheme_matches_the_spec_example() -> None:
    assert (
        sk.serialize_jwks_uri_scheme(
            "sig", id="https://ps.example", dwk="aauth-person.json", kid="key-1"
        )
        == 'sig=jwks_uri;id="https://ps.example";dwk="aauth-person.json";kid="key-1"'
    )


@pytest.mark.parametrize("label", ["Sig", "1", "", "a b", "sig\n"])
def test_serializers_reject_bad_labels(label: str) -> None:
    with pytest.raises(ValueError, match="key"):
        sk.serialize_jwt_scheme(label, JWT)


@pytest.mark.parametrize("jwt", ["", "caf\u00e9", "a\nb"])
def test_scheme_values_reject_what_a_header_cannot_carry(jwt: str) -> None:
    with pytest.raises(SignatureFailure):
        sk.JwtScheme(jwt=jwt)


def test_repr_shortens_the_jwt() -> None:
    assert "a" * 30 not in repr(sk.JwtScheme(jwt="a" * 500))


# -- the fast path agrees with the full parser --------------------------------------------


def assert_agree(header: str | bytes, label: str) -> sk.JwtScheme | None:
    """The fast path declines, or returns exactly what the full parser returns."""
    fast = sk.parse_fast(header, label)
    if fast is None:
        return None
    full = sk.parse_full(header, label)  # must not raise when the fast path accepted
    assert type(full) is type(fast)
    assert full == fast
    assert (full.jwt, full.cache) == (fast.jwt, fast.cache)
    return fast


@pytest.mark.parametrize("case", VECTORS, ids=_vector_id)
@pytest.mark.parametrize("label", ["sig", "sig1", "x"])
def test_fast_path_agrees_on_the_vectors(case: dict[str, Any], label: str) -> None:
    assert_agree(case["header"], label)


def test_fast_path_fires_on_the_agent_shapes() -> None:
    """Not vacuous: the shapes agents send are taken by the fast path."""
    for header in (VECTORS[0]["header"], VECTORS[1]["header"]):
        assert assert_agree(header, LABEL) == sk.JwtScheme(jwt=JWT)
    assert assert_agree(f'sig=jwt;jwt="{JWT}"; cache', LABEL) == sk.JwtScheme(jwt=JWT, cache=True)
    assert assert_agree(f'*a.b-c_1=jwt;jwt="{JWT}"', "*a.b-c_1") is not None
    # and declines other shapes that the full parser still handles
    for header in (
        VECTORS[2]["header"],
        f' sig=jwt;jwt="{JWT}"',
        f'sig=jwt;  jwt="{JWT}"',
        f'sig=jwt;jwt="{JWT}";cache=?1',
        f'sig=jwt;jwt="{JWT}"\t',
    ):
        assert sk.parse_fast(header, LABEL) is None
        assert sk.parse(header, LABEL).scheme == "jwt"


def _suite_fields() -> list[tuple[str, str]]:
    fields = []
    for path in sorted((LOCAL_VECTORS / "sfv").glob("**/*.json")):
        for case in json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal):
            if "raw" in case:
                fields.append((path.stem, ", ".join(case["raw"])))
    return fields


def test_fast_path_agrees_on_the_httpwg_suite() -> None:
    fields = _suite_fields()
    assert len(fields) == 1591
    for _name, raw in fields:
        for label in ("a", "b", "sig", "foo"):
            assert_agree(raw, label)
        # the same fields dressed as Signature-Key candidates
        for label in ("a", "sig"):
            assert_agree(f'{label}=jwt;jwt="{raw}"', label)
            assert_agree(f"{label}=jwt;jwt={raw}", label)


def _single_edits(base: str) -> set[str]:
    """Every header one edit away from ``base``: a deletion, or any ASCII character
    inserted or substituted at any position."""
    edits = {base[:i] + base[i + 1 :] for i in range(len(base))}
    for code in range(128):
        char = chr(code)
        for i in range(len(base) + 1):
            edits.add(base[:i] + char + base[i:])
            if i < len(base):
                edits.add(base[:i] + char + base[i + 1 :])
    return edits


@pytest.mark.parametrize(
    "base", ['s=jwt;jwt="a.b"', 's=jwt; jwt="a-_b";cache', 'ab=jwt;jwt="x"; cache']
)
def test_fast_path_agrees_on_every_single_character_edit(base: str) -> None:
    """Exhaustive around the agent shape: the fast path never accepts a neighbour the full
    parser reads differently or rejects."""
    taken = 0
    for header in _single_edits(base):
        label = header.split("=", 1)[0]
        for candidate in {label, base.split("=", 1)[0]}:
            if assert_agree(header, candidate) is not None:
                taken += 1
    assert taken > 100  # the neighbourhood includes many agent-shaped headers


_KEY_START = "abcdefghijklmnopqrstuvwxyz*"
_KEY_CHARS = _KEY_START + "0123456789_-."
_JWT_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-."
valid_labels = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(_KEY_START),
    st.text(alphabet=_KEY_CHARS, max_size=8),
)
jwts = st.text(alphabet=_JWT_ALPHABET, min_size=1, max_size=60)
# characters with a meaning somewhere in RFC 9651, then any ASCII character
odd_chars = st.sampled_from(list(":;,=\"' \t()?*-._/\\~!#@%&+^`|A0")) | st.characters(codec="ascii")

# The header is built from pieces; each piece is canonical unless a mutation replaces it.
# Index: 0 prefix, 1 label, 2 "=", 3 scheme, 4 ";", 5 space, 6 "jwt", 7 "=", 8 open quote,
# 9 token, 10 close quote, 11 cache suffix, 12 suffix.
MUTATIONS: dict[int, st.SearchStrategy[str]] = {
    0: st.sampled_from([" ", "  ", "\t", "x=1, ", "sig=jwt, ", "sig=hwk,", ","]),
    1: st.sampled_from(["Sig", "1a", "", "s g", "sig\n"])
    | st.text(max_size=4)
    | st.builds(operator.add, valid_labels, odd_chars),
    2: st.sampled_from([" =", "= ", "==", ":", ""]),
    3: st.sampled_from(["JWT", "jwks", "jkt-jwt", '"jwt"', "jwt ", "", "jwt_", "?1", "(jwt)"]),
    4: st.sampled_from([";;", ",", " ;", ""]),
    5: st.sampled_from(["  ", "\t", " \t"]),
    6: st.sampled_from(["JWT", "jwt ", "jw", "jwt2", "cache"]),
    7: st.sampled_from([" =", "= ", ""]),
    8: st.sampled_from(["", "'", ":", '""']),
    9: st.builds(lambda a, c, b: a + c + b, jwts, odd_chars, jwts)
    | st.text(alphabet=st.characters(codec="ascii"), max_size=20)
    | st.text(max_size=8)
    | st.sampled_from(['a\\"b', "a\\\\b", "a\\b", 'a"b', "a b", ""]),
    10: st.sampled_from(["", "'", '""', '"x']),
    11: st.sampled_from(
        [";cache=?1", ";cache=?0", ";cache=1", ";Cache", ";cache;cache", ";  cache", "; cache "]
    ),
    12: st.sampled_from(
        [
            ", other=1",
            ",other=1",
            ", sig=hwk",
            ', sig=jwt;jwt="X"',
            ",",
            " ",
            "\t",
            ";x",
            ';jwt="y"',
        ]
    ),
}


@st.composite
def signature_key_headers(draw: st.DrawFn) -> tuple[str, str]:
    label = draw(valid_labels)
    pieces = [
        "",
        label,
        "=",
        "jwt",
        ";",
        draw(st.sampled_from(["", " "])),
        "jwt",
        "=",
        '"',
        draw(jwts),
        '"',
        draw(st.sampled_from(["", ";cache", "; cache"])),
        "",
    ]
    for _ in range(draw(st.integers(0, 2))):
        index = draw(st.integers(0, len(pieces) - 1))
        pieces[index] = draw(MUTATIONS[index])
    # usually the label actually written (even a mutated one), sometimes another
    chosen = pieces[1] if draw(st.integers(0, 9)) else draw(valid_labels)
    return "".join(pieces), chosen


def _parse_outcome(header: str, label: str) -> object:
    try:
        return sk.parse(header, label)
    except AAuthError as exc:
        return exc


@settings(max_examples=600)
@given(signature_key_headers())
@example(('sig=jwt;jwt="a.b.c"', "sig"))
@example(('sig=jwt; jwt="a.b.c"; cache', "sig"))
@example(('sig=jwt;jwt="a.b.c", sig=hwk', "sig"))
@example(('sig=jwt;jwt="a.b.c";cache;cache', "sig"))
def test_fast_path_agrees_with_the_full_parser(pair: tuple[str, str]) -> None:
    header, label = pair
    assert_agree(header, label)
    # and parse() answers with a scheme or a SignatureFailure, nothing else
    outcome = _parse_outcome(header, label)
    if isinstance(outcome, AAuthError):
        assert isinstance(outcome, SignatureFailure)
    else:
        assert sfv.is_token(getattr(outcome, "scheme", None))


@given(
    label=valid_labels,
    jwt=st.text(
        alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.", min_size=1
    ),
    space1=st.sampled_from(["", " "]),
    cache=st.sampled_from(["", ";cache", "; cache"]),
)
def test_fast_path_takes_every_agent_shape(label: str, jwt: str, space1: str, cache: str) -> None:
    header = f'{label}=jwt;{space1}jwt="{jwt}"{cache}'
    fast = assert_agree(header, label)
    assert fast == sk.JwtScheme(jwt=jwt, cache=bool(cache))
    assert sk.serialize_jwt_scheme(label, jwt, cache=bool(cache)) == (
        f'{label}=jwt;jwt="{jwt}"{";cache" if cache else ""}'
    )
