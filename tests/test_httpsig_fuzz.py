"""Hypothesis: the httpsig parsers and verifier answer any input with a value or an
AAuthError, and the fast paths agree with the full RFC 9651 parser."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import nacl.signing
from conftest import load_vector
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aauth_core.errors import AAuthError, MalformedInput, SignatureFailure
from aauth_core.http import HttpRequest
from aauth_core.httpsig import (
    AAUTH_COMPONENTS,
    Component,
    ComponentError,
    VerifiedSignature,
    parse_signature,
    parse_signature_input,
    sign_request,
    verify_content_digest,
    verify_request_signature,
)
from aauth_core.httpsig.fields import (
    SignatureInput,
    parse_signature_fast,
    parse_signature_full,
    parse_signature_input_fast,
    parse_signature_input_full,
)
from aauth_core.jwk import PublicJwk

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_SEED = nacl.signing.SigningKey(b"\x05" * 32)
KEY = PublicJwk.from_raw_ed25519(bytes(_SEED.verify_key))
NOW = 1_700_000_000

any_text = st.one_of(st.text(), st.text(alphabet=st.characters(max_codepoint=127)))
any_field = st.one_of(any_text, st.binary())


def _outcome(function: Any, *args: Any, **kwargs: Any) -> Any:
    """The function's result, or the AAuthError it raised (anything else propagates)."""
    try:
        return function(*args, **kwargs)
    except AAuthError as exc:
        return exc


def _full_or_none(parser: Any, value: Any) -> Any:
    try:
        return parser(value)
    except SignatureFailure:
        return None


def _agree_input(value: str) -> dict[str, SignatureInput] | None:
    full = _full_or_none(parse_signature_input_full, value)
    fast = parse_signature_input_fast(value)
    assert fast is None or fast == full, (value, fast, full)
    return fast


def _agree_signature(value: str) -> dict[str, bytes] | None:
    full = _full_or_none(parse_signature_full, value)
    fast = parse_signature_fast(value)
    assert fast is None or fast == full, (value, fast, full)
    return fast


# --- arbitrary input -----------------------------------------------------------------


@SETTINGS
@given(any_field)
@example("sig=" + "(" * 5000)
@example('sig=("@method");created=9999999999999999')
def test_signature_input_any(value: str | bytes) -> None:
    result = _outcome(parse_signature_input, value)
    if isinstance(result, AAuthError):
        assert result.code == "invalid_signature"
    else:
        assert all(isinstance(v, SignatureInput) for v in result.values())


@SETTINGS
@given(any_field)
@example("sig=:" + "A" * 20000 + ":")
def test_signature_any(value: str | bytes) -> None:
    result = _outcome(parse_signature, value)
    if isinstance(result, AAuthError):
        assert result.code == "invalid_signature"
    else:
        assert all(isinstance(v, bytes) for v in result.values())


@SETTINGS
@given(any_text, st.binary(max_size=64))
def test_content_digest_any(value: str, body: bytes) -> None:
    result = _outcome(verify_content_digest, value, body)
    assert result is None or result.code == "invalid_signature"


@SETTINGS
@given(any_text)
def test_component_parse_any(value: str) -> None:
    try:
        component = Component.of(value)
    except ComponentError:
        return
    assert Component.parse(component.identifier) == component


# --- fast path == full parser ----------------------------------------------------------

labels = st.one_of(
    st.sampled_from(["sig", "sig-1", "a_b.c*", "*x", "Sig", "1a", "sig1"]),
    st.from_regex(r"[a-z*][a-z0-9_.*-]{0,6}", fullmatch=True),
)
names = st.one_of(
    st.sampled_from(
        [
            "@method",
            "@authority",
            "@path",
            "@query",
            "signature-key",
            "content-digest",
            "@nope",
            "Upper",
            "",
            'x"y',
            "x\\y",
            "a b",
        ]
    ),
    st.from_regex(r"[a-z0-9@!#$%&'*+.^_`|~-]{1,8}", fullmatch=True),
)
ints = st.one_of(
    st.integers(min_value=-10, max_value=10**16).map(str),
    st.sampled_from(["01", "00", "-0", "1.5", "?1", '"5"', "9" * 16]),
)
strings = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=8).map(
        lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
    ),
    st.sampled_from(['"a\\"b"', '"é"', "tok", ":AA==:", '"']),
)
param = st.one_of(
    st.tuples(st.sampled_from(["created", "expires"]), ints),
    st.tuples(st.sampled_from(["keyid", "alg", "nonce", "tag"]), strings),
    st.tuples(st.sampled_from(["x", "created", "keyid"]), st.one_of(ints, strings)),
    st.tuples(st.sampled_from(["flag", "created"]), st.none()),
)
spaces = st.sampled_from(["", "", "", " ", "  ", "\t"])


@st.composite
def signature_inputs(draw: st.DrawFn) -> str:
    members = []
    for _ in range(draw(st.integers(1, 2))):
        comps = draw(st.lists(names, max_size=5))
        sep = draw(st.sampled_from([" ", " ", "  "]))
        comp_params = draw(st.sampled_from(["", "", ";sf", ';name="a"', ";req", ';key="k"']))
        items = [f'"{c}"' for c in comps]
        if items and comp_params:
            items[-1] += comp_params
        inner = draw(spaces) + sep.join(items) + draw(spaces)
        params = "".join(
            f";{k}" if v is None else f";{k}={v}" for k, v in draw(st.lists(param, max_size=4))
        )
        members.append(f"{draw(labels)}=({inner}){params}")
    return draw(spaces) + ("," + draw(spaces)).join(members) + draw(spaces)


@st.composite
def canonical_aauth_inputs(draw: st.DrawFn) -> str:
    comps = draw(st.lists(st.sampled_from((*AAUTH_COMPONENTS, "content-type")), unique=True))
    names_ = draw(
        st.lists(
            st.sampled_from(["created", "expires", "keyid", "alg", "nonce", "tag"]), unique=True
        )
    )
    params = []
    for name in names_:
        if name in ("created", "expires"):
            params.append(f";{name}={draw(st.integers(0, 10**15 - 1))}")
        else:
            text = draw(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=6))
            params.append(f';{name}="{text.replace(chr(92), "").replace(chr(34), "")}"')
    label = draw(st.from_regex(r"[a-z][a-z0-9_.*-]{0,5}", fullmatch=True))
    inner = " ".join(f'"{c}"' for c in comps)
    return f"{label}=({inner}){''.join(params)}"


@SETTINGS
@given(signature_inputs())
def test_signature_input_fast_agrees_with_full(value: str) -> None:
    _agree_input(value)


@SETTINGS
@given(canonical_aauth_inputs())
def test_canonical_aauth_inputs_take_the_fast_path(value: str) -> None:
    fast = _agree_input(value)
    assert fast is not None
    (member,) = fast.values()
    assert member.serialize_member() == value


@SETTINGS
@given(
    labels,
    st.binary(max_size=80),
    st.sampled_from(["std", "url", "nopad", "extra"]),
    spaces,
    st.sampled_from(["", ";p=1", ", b=:AA==:", ", b=1"]),
)
def test_signature_fast_agrees_with_full(
    label: str, raw: bytes, form: str, space: str, tail: str
) -> None:
    encoded = {
        "std": base64.b64encode(raw).decode(),
        "url": base64.urlsafe_b64encode(raw).decode(),
        "nopad": base64.b64encode(raw).decode().rstrip("="),
        "extra": base64.b64encode(raw).decode() + "=",
    }[form]
    value = f"{space}{label}=:{encoded}:{tail}"
    fast = _agree_signature(value)
    if not space and not tail and form != "extra" and re.fullmatch(r"[a-z*][a-z0-9_.*-]*", label):
        assert fast == {label: raw}


@SETTINGS
@given(st.text(alphabet='sig=:AaZz09+/-_=, ;()"', max_size=30))
def test_signature_fast_agrees_on_noise(value: str) -> None:
    _agree_signature(value)
    _agree_input(value)


def _sfv_raw_inputs() -> list[str]:
    out = []
    folder = Path(__file__).resolve().parent / "vectors" / "sfv"
    for path in sorted(folder.glob("*.json")):
        for case in load_vector(f"sfv/{path.name}"):
            raw = case.get("raw")
            if isinstance(raw, list):
                out.append(", ".join(raw))
    return out


def test_fast_paths_agree_on_the_structured_field_suite() -> None:
    inputs = _sfv_raw_inputs()
    assert len(inputs) > 500
    for value in inputs:
        _agree_input(value)
        _agree_signature(value)


# --- the verifier on hostile headers ---------------------------------------------------

field_values = st.one_of(
    any_text,
    st.sampled_from(
        [
            'sig=("@method" "@authority" "@path" "signature-key");created=1700000000',
            'sig=("@method" "@authority" "@path" "signature-key" "content-digest");created=1700000000',
            "sig=:AAAA:",
            'sig=jwt;jwt="a.b.c"',
            "sha-256=:AA==:",
        ]
    ),
)


def _signed_base_request() -> HttpRequest:
    class Signer:
        key_id = "k"
        algorithm = KEY.alg

        def public_jwk(self) -> PublicJwk:
            return KEY

        def sign(self, data: bytes) -> bytes:
            return bytes(_SEED.sign(data).signature)

    request = HttpRequest(
        method="GET", url="https://h.example/p", headers={"Signature-Key": 'sig=jwt;jwt="a.b.c"'}
    )
    headers = sign_request(request, Signer(), covered=AAUTH_COMPONENTS, created=NOW)
    return HttpRequest(method="GET", url=request.url, headers=request.headers.with_fields(headers))


SIGNED = _signed_base_request()


@SETTINGS
@given(
    st.dictionaries(
        st.sampled_from(
            ["Signature-Input", "Signature", "Signature-Key", "Content-Digest", "Content-Type"]
        ),
        field_values,
    ),
    st.one_of(st.just(SIGNED.url), any_text),
    st.one_of(st.just("GET"), any_text),
    st.binary(max_size=16),
    st.one_of(st.none(), labels),
    st.booleans(),
)
def test_verify_request_signature_any_headers(
    headers: dict[str, str], url: str, method: str, body: bytes, label: str | None, bodies: bool
) -> None:
    try:
        request = HttpRequest(
            method=method, url=url, headers=SIGNED.headers.with_fields(headers), body=body
        )
    except MalformedInput:
        return  # a hostile method or header never makes it into a message
    result = _outcome(
        verify_request_signature,
        request,
        label=label,
        key=KEY,
        now=NOW,
        require_body_coverage=bodies,
    )
    if isinstance(result, AAuthError):
        assert result.status == 401
    else:
        assert isinstance(result, VerifiedSignature)


def test_the_fuzzed_request_verifies_untouched() -> None:
    """The hostile-header test starts from a request that does verify."""
    assert verify_request_signature(SIGNED, label=None, key=KEY, now=NOW).label == "sig"
