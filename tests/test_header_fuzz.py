"""Every header parser answers any input (text, bytes, huge, structured-looking) with a value
or an AAuthError subclass carrying a code and an HTTP status; never another exception.
Values that parse also survive serialise -> parse unchanged."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aauth_core import sfv
from aauth_core import signature_key as sk
from aauth_core.errors import AAuthError, MalformedInput, SignatureFailure
from aauth_core.headers import (
    AccessToken,
    Capabilities,
    Requirement,
    SignatureErrorHeader,
    parse_accept_signature_alg,
    parse_accept_signature_scheme,
    parse_prefer_wait,
    parse_preferences,
)

# Characters that mean something to RFC 9651, RFC 7240 and RFC 9110, plus the rest.
SF_ALPHABET = 'abcjwtrequiment-_.*:/=;,"\\?()@%: \t01239AZ~!#+'
WORDS = [
    "requirement=",
    "interaction",
    "auth-token",
    "resource-token=",
    'url="https://ps.example/i"',
    'code="A1B2-C3D4"',
    "error=",
    "invalid_input",
    "required_input=(",
    '"@method"',
    "sig=",
    "jwt;jwt=",
    '"a.b.c"',
    ";cache",
    "jwks_uri;id=",
    "hwk;kty=",
    "x509;x5t=:AAEC:",
    "AAuth ",
    "wait=",
    "?1",
    "@1659578233",
    '%"f%c3%bc"',
    "1.5",
    ", ",
    "; ",
]

texts = st.one_of(
    st.text(),
    st.text(alphabet=SF_ALPHABET),
    st.lists(st.sampled_from(WORDS) | st.text(alphabet=SF_ALPHABET, max_size=4)).map("".join),
)
binaries = st.binary() | texts.map(lambda t: t.encode("utf-8"))
huge = st.builds(
    lambda piece, n: piece * n,
    st.sampled_from([*WORDS, "a", " ", '"', "\\", "(", "\u00e9"]),
    st.integers(1000, 40000),
)

ParserCase = tuple[str, Callable[[Any], Any], Callable[[Any], Any] | None]


def _roundtrip_requirement(value: Requirement) -> None:
    assert Requirement.parse(value.serialize()) == value


def _roundtrip_signature_error(value: SignatureErrorHeader) -> None:
    assert SignatureErrorHeader.parse(value.serialize()) == value


def _roundtrip_token_list(value: tuple[str, ...]) -> None:
    if value:
        assert parse_accept_signature_scheme(", ".join(value)) == value


def _roundtrip_access(value: AccessToken) -> None:
    assert AccessToken.parse(value.serialize()) == value
    assert AccessToken.from_authorization(value.authorization()) == value


def _roundtrip_capabilities(value: Capabilities) -> None:
    if value.known:
        assert Capabilities.parse(value.serialize()).known == value.known


def _roundtrip_wait(value: int | None) -> None:
    if value is not None:
        assert parse_prefer_wait(f"wait={value}") == value


def _roundtrip_scheme(value: sk.SignatureKeyScheme) -> None:
    assert sk.parse_full(sk.serialize_scheme("sig", value), "sig") == value


PARSERS: list[ParserCase] = [
    ("sfv.parse_dictionary", sfv.parse_dictionary, None),
    ("sfv.parse_list", sfv.parse_list, None),
    ("sfv.parse_item", sfv.parse_item, None),
    ("Requirement.parse", Requirement.parse, _roundtrip_requirement),
    ("SignatureErrorHeader.parse", SignatureErrorHeader.parse, _roundtrip_signature_error),
    ("parse_accept_signature_scheme", parse_accept_signature_scheme, _roundtrip_token_list),
    ("parse_accept_signature_alg", parse_accept_signature_alg, _roundtrip_token_list),
    ("AccessToken.parse", AccessToken.parse, _roundtrip_access),
    ("AccessToken.from_authorization", AccessToken.from_authorization, _roundtrip_access),
    ("Capabilities.parse", Capabilities.parse, _roundtrip_capabilities),
    ("parse_preferences", parse_preferences, None),
    ("parse_prefer_wait", parse_prefer_wait, _roundtrip_wait),
    ("signature_key.parse", lambda v: sk.parse(v, "sig"), _roundtrip_scheme),
    ("signature_key.select", lambda v: sk.select(v, "sig"), _roundtrip_scheme),
    (
        "signature_key.select(servers)",
        lambda v: sk.select(v, "sig", ("jwt", "jwks_uri", "hwk", "x509", "jwks")),
        _roundtrip_scheme,
    ),
]
IDS = [name for name, _, _ in PARSERS]


def _check(parse: Callable[[Any], Any], roundtrip: Callable[[Any], Any] | None, value: Any) -> None:
    error: AAuthError | None = None
    try:
        result = parse(value)
    except AAuthError as exc:
        error = exc
    if error is not None:
        assert isinstance(error.code, str) and error.code
        assert 400 <= error.status < 600
        assert isinstance(error, MalformedInput | SignatureFailure)
    elif roundtrip is not None:
        roundtrip(result)


FUZZ = settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize(("name", "parse", "roundtrip"), PARSERS, ids=IDS)
@FUZZ
@given(value=texts)
def test_text(name: str, parse: Callable[[Any], Any], roundtrip: Any, value: str) -> None:
    _check(parse, roundtrip, value)


@pytest.mark.parametrize(("name", "parse", "roundtrip"), PARSERS, ids=IDS)
@FUZZ
@given(value=binaries)
def test_bytes(name: str, parse: Callable[[Any], Any], roundtrip: Any, value: bytes) -> None:
    _check(parse, roundtrip, value)


@pytest.mark.parametrize(("name", "parse", "roundtrip"), PARSERS, ids=IDS)
@settings(max_examples=30, deadline=None)
@given(value=huge)
def test_huge(name: str, parse: Callable[[Any], Any], roundtrip: Any, value: str) -> None:
    _check(parse, roundtrip, value)
    _check(parse, roundtrip, value.encode("utf-8"))


@FUZZ
@given(value=texts | binaries)
def test_fast_path_never_raises(value: str | bytes) -> None:
    result = sk.parse_fast(value, "sig")
    assert result is None or isinstance(result, sk.JwtScheme)
