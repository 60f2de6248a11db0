"""Unit tests for aauth_core.httpsig: components, fields, base, digest, sign and verify."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import nacl.signing
import pytest

from aauth_core.algorithms import Alg
from aauth_core.errors import AAuthError, MalformedInput, SignatureFailure
from aauth_core.http import HttpRequest, HttpResponse
from aauth_core.httpsig import (
    AAUTH_COMPONENTS,
    Component,
    ComponentError,
    CoveredComponents,
    SignatureParams,
    content_digest,
    parse_signature,
    parse_signature_input,
    read_signature,
    serialize_signature,
    serialize_signature_input,
    sign_request,
    sign_response,
    signature_base_for,
    verify_content_digest,
    verify_request_signature,
    verify_response_signature,
    verify_selected,
)
from aauth_core.httpsig.components import MessageParts, component_values, split_target
from aauth_core.httpsig.fields import (
    SignatureInput,
    parse_signature_fast,
    parse_signature_input_fast,
    parse_signature_input_full,
)
from aauth_core.jwk import PublicJwk

NOW = 1_791_275_958
SIG_KEY = 'sig=jwt;jwt="eyJhbGciOiJFZDI1NTE5In0.e30.c2ln"'


class NaclSigner:
    """Test-only Ed25519 signer on PyNaCl (deterministic signatures)."""

    algorithm = Alg.ED25519

    def __init__(self, seed: bytes = b"\x07" * 32, kid: str | None = None) -> None:
        self._key = nacl.signing.SigningKey(seed)
        self._jwk = PublicJwk.from_raw_ed25519(bytes(self._key.verify_key), kid=kid)
        self.key_id = kid or self._jwk.thumbprint()

    def public_jwk(self) -> PublicJwk:
        return self._jwk

    def sign(self, data: bytes) -> bytes:
        return bytes(self._key.sign(data).signature)


SIGNER = NaclSigner()
KEY = SIGNER.public_jwk()


def get(url: str = "https://api.example/docs/1", **headers: str) -> HttpRequest:
    return HttpRequest(method="GET", url=url, headers={"Signature-Key": SIG_KEY, **headers})


def with_headers(message: Any, extra: dict[str, str]) -> Any:
    if isinstance(message, HttpResponse):
        return HttpResponse(
            status=message.status, headers=message.headers.with_fields(extra), body=message.body
        )
    return HttpRequest(
        method=message.method,
        url=message.url,
        headers=message.headers.with_fields(extra),
        body=message.body,
    )


def signed_get(**kwargs: Any) -> HttpRequest:
    request = get()
    kwargs.setdefault("covered", AAUTH_COMPONENTS)
    kwargs.setdefault("created", NOW)
    return with_headers(request, sign_request(request, SIGNER, **kwargs))


def verify(request: HttpRequest, **kwargs: Any) -> Any:
    kwargs.setdefault("label", None)
    kwargs.setdefault("key", KEY)
    kwargs.setdefault("now", NOW)
    return verify_request_signature(request, **kwargs)


def failure(request: HttpRequest, **kwargs: Any) -> SignatureFailure:
    with pytest.raises(SignatureFailure) as info:
        verify(request, **kwargs)
    assert info.value.status == 401
    return info.value


# --- components --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "authority", "path", "query", "target"),
    [
        ("https://API.Example:443/a/b?x=1", "api.example", "/a/b", "?x=1", "/a/b?x=1"),
        ("http://api.example:80", "api.example", "/", "?", "/"),
        ("https://api.example:8443/", "api.example:8443", "/", "?", "/"),
        ("http://api.example:443/p", "api.example:443", "/p", "?", "/p"),
        ("https://user:pw@[::1]:443/p?", "[::1]", "/p", "?", "/p?"),
        ("HTTPS://h.example/%7Efoo#frag", "h.example", "/%7Efoo", "?", "/%7Efoo"),
    ],
)
def test_derived_components(url: str, authority: str, path: str, query: str, target: str) -> None:
    parts = MessageParts(HttpRequest(method="GET", url=url))

    def value(name: str) -> str:
        return component_values(Component.of(name), parts)[0]

    assert value("@authority") == authority
    assert value("@path") == path
    assert value("@query") == query
    assert value("@request-target") == target
    assert value("@scheme") == url.split(":")[0].lower()
    assert value("@method") == "GET"
    assert value("@target-uri").startswith(f"{url.split(':')[0].lower()}://{authority}{path}")


@pytest.mark.parametrize(
    "url", ["/relative", "https://", "https://h.example:port/", "https://[::1/", "ftp:/x", "x"]
)
def test_bad_target_uri(url: str) -> None:
    with pytest.raises(ComponentError):
        split_target(url)


def test_query_param_rfc_2_2_8_example() -> None:
    """RFC 9421 §2.2.8: values decoded by form parsing, re-encoded (space as '+')."""
    url = (
        "https://example.com/parameters?var=this%20is%20a%20big%0Avalue"
        "&bar=with+plus+whitespace&fa%C3%A7ade%22%3A%20=something"
    )
    parts = MessageParts(HttpRequest(method="GET", url=url))

    def qp(name: str) -> tuple[str, ...]:
        return component_values(Component(name="@query-param", params={"name": name}), parts)

    assert qp("var") == ("this+is+a+big%0Avalue",)
    assert qp("bar") == ("with+plus+whitespace",)
    assert qp("fa%C3%A7ade%22%3A%20") == ("something",)
    assert qp("fa%C3%A7ade%22%3A+") == ("something",)


def test_query_param_repeated_and_missing() -> None:
    request = HttpRequest(method="GET", url="https://h.example/?a=1&b=~x&a=&a=2")
    component = Component.parse('"@query-param";name="a"')
    covered = CoveredComponents(components=[component])
    base = signature_base_for(request, covered, SignatureParams(created=1))
    assert base.split("\n")[:3] == [
        '"@query-param";name="a": 1',
        '"@query-param";name="a": ',
        '"@query-param";name="a": 2',
    ]
    b = component_values(Component.parse('"@query-param";name="b"'), MessageParts(request))
    assert b == ("%7Ex",)
    with pytest.raises(ComponentError):
        component_values(Component.parse('"@query-param";name="c"'), MessageParts(request))


def test_field_lines_trimmed_and_combined() -> None:
    request = HttpRequest(
        method="GET",
        url="https://h.example/",
        headers=[("X-Multi", "  a  "), ("x-multi", "b\t"), ("Cache-Control", " max-age=60 ")],
    )
    parts = MessageParts(request)
    assert component_values(Component.of("x-multi"), parts) == ("a, b",)
    assert component_values(Component.of("cache-control"), parts) == ("max-age=60",)


def test_bs_rfc_2_1_3_example() -> None:
    request = HttpRequest(
        method="GET",
        url="https://h.example/",
        headers=[("Example-Header", "value, with, lots"), ("Example-Header", "of, commas")],
    )
    parts = MessageParts(request)
    assert component_values(Component.of("example-header"), parts) == (
        "value, with, lots, of, commas",
    )
    assert component_values(Component.parse('"example-header";bs'), parts) == (
        ":dmFsdWUsIHdpdGgsIGxvdHM=:, :b2YsIGNvbW1hcw==:",
    )


def test_sf_and_key_parameters() -> None:
    request = HttpRequest(
        method="GET",
        url="https://h.example/",
        headers={
            "Signature-Key": 'sig=jwt;  jwt="a.b.c" ,  other=hwk;kty="OKP"',
            "Accept-Signature-Alg": "Ed25519,   ES256",
        },
    )
    parts = MessageParts(request)

    def value(identifier: str) -> str:
        return component_values(Component.parse(identifier), parts)[0]

    assert value('"signature-key";sf') == 'sig=jwt;jwt="a.b.c", other=hwk;kty="OKP"'
    assert value('"signature-key";key="sig"') == 'jwt;jwt="a.b.c"'
    assert value('"accept-signature-alg";sf') == "Ed25519, ES256"
    with pytest.raises(ComponentError):
        value('"signature-key";key="missing"')
    with pytest.raises(ComponentError):
        value('"accept-signature-alg";key="x"')  # a list, not a dictionary


def test_key_inner_list_member() -> None:
    request = HttpRequest(
        method="GET", url="https://h.example/", headers={"X-Dict": "a=1, c=(x   y);p"}
    )
    value = component_values(Component.parse('"x-dict";key="c"'), MessageParts(request))
    assert value == ("(x y);p",)


def test_sf_on_unknown_field_type_is_an_error() -> None:
    request = HttpRequest(method="GET", url="https://h.example/", headers={"X-Thing": "a"})
    with pytest.raises(ComponentError):
        component_values(Component.parse('"x-thing";sf'), MessageParts(request))


@pytest.mark.parametrize(
    "spec",
    [
        "@unknown",
        "@signature-params",
        "Content-Type",
        "",
        "bad name",
        '"@method";sf',
        '"@query-param"',
        '"x";name="a"',
        '"x";bs;sf',
        '"x";foo',
        '"x";sf=?0',
        '"x";key=1',
        '"@path";key="a"',
        "x\n",
    ],
)
def test_invalid_component_identifiers(spec: str) -> None:
    with pytest.raises(ComponentError):
        Component.of(spec)


def test_component_identifier_serialisation() -> None:
    component = Component.parse('"@query-param";name="Pet"')
    assert component.identifier == '"@query-param";name="Pet"'
    assert component.short == '"@query-param";name="Pet"'
    assert Component.of("@path").short == "@path"
    assert Component.of('"x-a";req;key="k"').params == (("req", True), ("key", "k"))


def test_repeated_component_rejected() -> None:
    with pytest.raises(ComponentError):
        CoveredComponents(components=["@path", "@path"])
    with pytest.raises(ComponentError):
        CoveredComponents(components=['"x";sf;req', '"x";req;sf'])


def test_status_and_req_on_response() -> None:
    request = HttpRequest(
        method="POST", url="https://ps.example/token", headers={"Signature-Key": SIG_KEY}
    )
    response = HttpResponse(status=202, headers={"Content-Type": "application/json"})
    covered = ["@status", '"@method";req', '"@authority";req', '"signature-key";req']
    headers = sign_response(response, SIGNER, covered=covered, created=NOW, request=request)
    base = signature_base_for(
        response, covered, SignatureParams(created=NOW), request=request
    ).split("\n")
    assert base[:4] == [
        '"@status": 202',
        '"@method";req: POST',
        '"@authority";req: ps.example',
        f'"signature-key";req: {SIG_KEY}',
    ]
    signed = with_headers(response, headers)
    verified = verify_response_signature(
        signed, label="sig", key=KEY, now=NOW, request=request, required_components=covered
    )
    assert verified.covered.components[0] == Component.of("@status")
    # the same signature does not verify for another request
    other = HttpRequest(method="GET", url=request.url, headers=request.headers)
    with pytest.raises(SignatureFailure) as info:
        verify_response_signature(signed, label="sig", key=KEY, now=NOW, request=other)
    assert info.value.code == "invalid_signature"
    # ;req without the request, and @status on a request, are errors
    with pytest.raises(SignatureFailure):
        verify_response_signature(signed, label="sig", key=KEY, now=NOW)
    with pytest.raises(ValueError, match="status"):
        sign_request(request, SIGNER, covered=["@status"], created=NOW)


# --- fields ------------------------------------------------------------------------


def test_signature_input_round_trip_several_labels() -> None:
    value = (
        'sig-a=("@method" "@path");created=1;keyid="k", '
        'proxy_1=("@query-param";name="x" "content-type";sf);created=2;expires=3;tag="t"'
    )
    parsed = parse_signature_input(value)
    assert list(parsed) == ["sig-a", "proxy_1"]
    assert parse_signature_input_fast(value) is None
    assert parsed["sig-a"].params == SignatureParams(
        created=1, keyid="k", order=("created", "keyid")
    )
    assert parsed["proxy_1"].params.expires == 3
    assert serialize_signature_input(list(parsed.values())) == value


def test_signature_input_canonical_params_for_base() -> None:
    """Whitespace the SF grammar allows does not reach the base (RFC 9421 §3.2 step 7)."""
    parsed = parse_signature_input('sig=(  "@method"   "@path" );keyid="k";created=01')
    assert parsed["sig"].signature_params == '("@method" "@path");keyid="k";created=1'


def test_signature_input_unknown_params_kept() -> None:
    parsed = parse_signature_input('sig=("@path");created=1;x-y=?1;z=1.5;w=tok')
    sig_input = parsed["sig"]
    assert sig_input.signature_params == '("@path");created=1;x-y;z=1.5;w=tok'
    assert [name for name, _ in sig_input.params.extra] == ["x-y", "z", "w"]


@pytest.mark.parametrize(
    "value",
    [
        "",
        "sig",
        "sig=:AAAA:",
        'sig=("@method");created="1"',
        'sig=("@method");created=1.5',
        'sig=("@method");keyid=1',
        "sig=(@method);created=1",
        'sig=("@nope");created=1',
        'sig=("Upper");created=1',
        'sig=("@path" "@path");created=1',
        "sig=(1);created=1",
        'sig=("@method");created=1, x',
        'sig=("é");created=1',
        b"\xff",
    ],
)
def test_signature_input_malformed(value: str | bytes) -> None:
    with pytest.raises(SignatureFailure) as info:
        parse_signature_input(value)
    assert info.value.code == "invalid_signature"


def test_signature_parse_base64url_and_several() -> None:
    raw = bytes(range(250, 256)) + b"\xfb\xff"
    std = base64.b64encode(raw).decode()
    url = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    assert "-" in url or "_" in url
    assert parse_signature(f"sig=:{std}:") == {"sig": raw}
    assert parse_signature(f"sig=:{url}:") == {"sig": raw}
    assert parse_signature_fast(f"sig=:{url}:") == {"sig": raw}
    both = parse_signature(f"a-1=:{url}:, b=:{std}:;p=1")
    assert both == {"a-1": raw, "b": raw}
    assert serialize_signature(both) == f"a-1=:{std}:, b=:{std}:"
    with pytest.raises(ValueError, match="label"):
        serialize_signature({"Bad": raw})


@pytest.mark.parametrize("value", ["", "sig=AAAA", "sig=:A:", 'sig="x"', "sig=:=:", "sig=(:AA==:)"])
def test_signature_malformed(value: str) -> None:
    with pytest.raises(SignatureFailure):
        parse_signature(value)


def test_signature_params_validation() -> None:
    with pytest.raises(ValueError, match="integer"):
        SignatureParams(created=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="printable"):
        SignatureParams(created=1, nonce="é")
    with pytest.raises(ValueError, match="order"):
        SignatureParams(created=1, order=("created", "expires"))
    with pytest.raises(ValueError, match="not allowed"):
        SignatureParams(extra=(("created", 1),))
    assert (
        SignatureParams(created=1, tag="t", keyid="k").serialize() == ';created=1;keyid="k";tag="t"'
    )


# --- digest ------------------------------------------------------------------------


def test_content_digest_values() -> None:
    body = b'{"hello": "world"}'
    assert content_digest(body) == (
        "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"
    )
    assert content_digest(body, "sha-512") == (
        "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:"
    )
    with pytest.raises(ValueError, match="unsupported"):
        content_digest(body, "md5")


def test_verify_content_digest() -> None:
    body = b"payload"
    verify_content_digest(content_digest(body, "sha-512"), body)
    verify_content_digest(f"unixsum=:AA==:, {content_digest(body)}", body)
    verify_content_digest(f"{content_digest(body)}, {content_digest(body, 'sha-512')}", body)
    cases = {
        content_digest(b"other"): "invalid_signature",
        f"{content_digest(body)}, {content_digest(b'x', 'sha-512')}": "invalid_signature",
        "unixsum=:AA==:": "invalid_signature",
        "sha-256=:AA==:": "invalid_signature",
        "sha-256=1": "invalid_signature",
        "not a dict((": "invalid_signature",
    }
    for value, code in cases.items():
        with pytest.raises(SignatureFailure, match="Content-Digest") as info:
            verify_content_digest(value, body)
        assert info.value.code == code
    with pytest.raises(SignatureFailure) as absent:
        verify_content_digest(None, body)
    assert absent.value.code == "invalid_input"
    assert absent.value.required_input == ("content-digest",)


# --- sign --------------------------------------------------------------------------


def test_sign_request_aauth_default() -> None:
    request = get()
    headers = sign_request(request, SIGNER, covered=AAUTH_COMPONENTS, created=NOW)
    assert headers["Signature-Input"] == (
        f'sig=("@method" "@authority" "@path" "signature-key");created={NOW}'
    )
    assert set(headers) == {"Signature-Input", "Signature"}
    assert "alg" not in headers["Signature-Input"]
    assert "keyid" not in headers["Signature-Input"]
    verified = verify(with_headers(request, headers))
    assert verified.created == NOW
    assert verified.expires is None


def test_fast_signing_path_equals_generic_path() -> None:
    """Component objects bypass the fast path: same headers (Ed25519 is deterministic)."""
    for request in (get(), get("https://API.example:443"), get("http://h.example:8080/a?b")):
        fast = sign_request(request, SIGNER, covered=AAUTH_COMPONENTS, created=NOW)
        generic = sign_request(
            request, SIGNER, covered=[Component.of(c) for c in AAUTH_COMPONENTS], created=NOW
        )
        assert fast == generic


def test_sign_with_extra_headers() -> None:
    request = HttpRequest(method="GET", url="https://api.example/x")
    extra = {"signature-KEY": SIG_KEY}
    for covered in (AAUTH_COMPONENTS, [*AAUTH_COMPONENTS, "@query"]):
        headers = sign_request(request, SIGNER, covered=covered, created=NOW, extra_headers=extra)
        assert "signature-KEY" not in headers
        signed = with_headers(request, {"Signature-Key": SIG_KEY, **headers})
        assert verify(signed).label == "sig"


def test_sign_adds_content_digest_when_covered() -> None:
    body = b'{"resource_token":"x"}'
    request = HttpRequest(
        method="POST",
        url="https://ps.example/token",
        headers={"Content-Type": "application/json", "Signature-Key": SIG_KEY},
        body=body,
    )
    covered = [*AAUTH_COMPONENTS, "content-digest", "content-type"]
    headers = sign_request(request, SIGNER, covered=covered, created=NOW)
    assert headers["Content-Digest"] == content_digest(body)
    signed = with_headers(request, headers)
    assert verify(signed, require_body_coverage=True).covered == CoveredComponents(
        components=covered
    )
    # a sha-512 digest already present is used as is
    with512 = with_headers(request, {"Content-Digest": content_digest(body, "sha-512")})
    headers512 = sign_request(with512, SIGNER, covered=covered, created=NOW)
    assert "Content-Digest" not in headers512
    assert verify(with_headers(with512, headers512), require_body_coverage=True)
    # a wrong one is refused on the signing side
    wrong = with_headers(request, {"Content-Digest": content_digest(b"x")})
    with pytest.raises(ValueError, match="Content-Digest"):
        sign_request(wrong, SIGNER, covered=covered, created=NOW)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"covered": ["@nope"]}, "derived"),
        ({"covered": [*AAUTH_COMPONENTS, "x-absent"]}, "absent"),
        ({"covered": AAUTH_COMPONENTS, "label": "Sig"}, "label"),
        ({"covered": AAUTH_COMPONENTS, "created": -1}, "created"),
        ({"covered": AAUTH_COMPONENTS, "expires": NOW}, "expires"),
        ({"covered": "@method"}, "sequence"),
        ({"covered": ["x-bad"], "extra_headers": {"X-Bad": "a\r\nb"}}, "line break"),
    ],
)
def test_sign_misuse_is_value_error(kwargs: dict[str, Any], match: str) -> None:
    request = get()
    kwargs.setdefault("created", NOW)
    with pytest.raises(ValueError, match=match):
        sign_request(request, SIGNER, **kwargs)


def test_header_injection_is_refused_when_the_message_is_built() -> None:
    with pytest.raises(MalformedInput, match="CR, LF or NUL"):
        get(**{"X-Bad": "a\r\nb"})
    with pytest.raises(MalformedInput, match="token"):
        get(**{"X Bad": "a"})
    with pytest.raises(MalformedInput, match="method"):
        HttpRequest(method="GE T", url="https://api.example/")


def test_sign_missing_signature_key_is_value_error() -> None:
    request = HttpRequest(method="GET", url="https://api.example/")
    with pytest.raises(ValueError, match="signature-key"):
        sign_request(request, SIGNER, covered=AAUTH_COMPONENTS, created=NOW)


def test_sign_non_ascii_value_is_value_error() -> None:
    request = get(**{"X-Name": "café"})
    with pytest.raises(ValueError, match="ASCII"):
        sign_request(request, SIGNER, covered=[*AAUTH_COMPONENTS, "x-name"], created=NOW)
    # ;bs carries it
    headers = sign_request(request, SIGNER, covered=[*AAUTH_COMPONENTS, '"x-name";bs'], created=NOW)
    assert verify(with_headers(request, headers)).label == "sig"


# --- verify ------------------------------------------------------------------------


def test_multiple_labels() -> None:
    request = get()
    first = sign_request(request, SIGNER, covered=AAUTH_COMPONENTS, created=NOW, label="sig-1")
    other = NaclSigner(b"\x09" * 32)
    second = sign_request(
        request, other, covered=[*AAUTH_COMPONENTS, "@query"], created=NOW, label="proxy"
    )
    signed = with_headers(
        request,
        {
            "Signature-Input": f"{first['Signature-Input']}, {second['Signature-Input']}",
            "Signature": f"{second['Signature']}, {first['Signature']}",
        },
    )
    assert verify(signed, label="sig-1").label == "sig-1"
    assert verify(signed, label="proxy", key=other.public_jwk()).covered.components[-1] == (
        Component.of("@query")
    )
    assert failure(signed, label="proxy").code == "invalid_signature"  # wrong key
    assert failure(signed).code == "invalid_signature"  # label None but two signatures
    assert failure(signed, label="absent").code == "invalid_signature"


def test_label_in_one_header_only() -> None:
    signed = signed_get()
    only_input = with_headers(
        signed, {"Signature": signed.headers.get("signature").replace("sig=", "x=")}
    )
    assert failure(only_input).code == "invalid_signature"
    assert failure(only_input, label="sig").code == "invalid_signature"


def test_base64url_signature_accepted() -> None:
    signed = signed_get()
    std = signed.headers.get("signature")
    raw = parse_signature(std)["sig"]
    url = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    assert verify(with_headers(signed, {"Signature": f"sig=:{url}:"})).label == "sig"


@pytest.mark.parametrize(
    ("offset", "window", "code"),
    [
        (0, 60, None),
        (60, 60, None),
        (61, 60, "invalid_signature"),
        (-60, 60, None),
        (-61, 60, "clock_skew"),
        (200, 300, None),
        (301, 300, "invalid_signature"),
    ],
)
def test_created_window(offset: int, window: int, code: str | None) -> None:
    signed = signed_get()
    if code is None:
        assert verify(signed, now=NOW + offset, window=window).created == NOW
    else:
        assert failure(signed, now=NOW + offset, window=window).code == code


def test_created_required() -> None:
    request = get()
    covered = CoveredComponents(components=AAUTH_COMPONENTS)
    params = SignatureParams(nonce="n")
    base = signature_base_for(request, covered, params)
    signature = SIGNER.sign(base.encode())
    signed = with_headers(
        request,
        {
            "Signature-Input": f"sig={covered.serialize()}{params.serialize()}",
            "Signature": serialize_signature({"sig": signature}),
        },
    )
    assert "created" in failure(signed).detail


def test_expires_honoured() -> None:
    signed = signed_get(expires=NOW + 10)
    assert verify(signed, now=NOW + 9).expires == NOW + 10
    assert failure(signed, now=NOW + 10).code == "invalid_signature"


def _manually_signed(params: SignatureParams, covered: Any = AAUTH_COMPONENTS) -> HttpRequest:
    request = get()
    cov = CoveredComponents(components=covered)
    base = signature_base_for(request, cov, params)
    return with_headers(
        request,
        {
            "Signature-Input": SignatureInput(
                label="sig", covered=cov, params=params
            ).serialize_member(),
            "Signature": serialize_signature({"sig": SIGNER.sign(base.encode())}),
        },
    )


def test_alg_parameter_ignored() -> None:
    signed = _manually_signed(SignatureParams(created=NOW, alg="rsa-pss-sha512"))
    assert 'alg="rsa-pss-sha512"' in signed.headers.get("signature-input")
    assert verify(signed).params.alg == "rsa-pss-sha512"


def test_keyid_must_name_the_key() -> None:
    kid_key = KEY.with_kid("key-1")
    assert verify(_manually_signed(SignatureParams(created=NOW, keyid="key-1")), key=kid_key)
    thumb = KEY.thumbprint()
    assert verify(_manually_signed(SignatureParams(created=NOW, keyid=thumb)), key=kid_key)
    mismatch = _manually_signed(SignatureParams(created=NOW, keyid="key-2"))
    assert failure(mismatch, key=kid_key).code == "invalid_signature"


def test_required_components_invalid_input() -> None:
    signed = _manually_signed(SignatureParams(created=NOW), covered=["@method", "@path"])
    error = failure(signed)
    assert error.code == "invalid_input"
    assert error.required_input == AAUTH_COMPONENTS
    extra = failure(signed, required_components=["@method", '"@query-param";name="a"'])
    assert extra.required_input == ("@method", '"@query-param";name="a"')


def test_body_coverage_only_with_a_body() -> None:
    signed = signed_get()
    assert verify(signed, require_body_coverage=True).label == "sig"  # no body
    post = HttpRequest(method="POST", url=signed.url, headers=signed.headers, body=b"{}")
    error = failure(post, require_body_coverage=True)
    assert error.code == "invalid_input"
    assert error.required_input == (*AAUTH_COMPONENTS, "content-digest", "content-type")


def test_missing_headers() -> None:
    signed = signed_get()
    pairs = signed.headers.pairs
    for name in ("Signature", "Signature-Input", "Signature-Key"):
        stripped = HttpRequest(
            method="GET", url=signed.url, headers=[p for p in pairs if p[0] != name]
        )
        assert failure(stripped).code == "invalid_signature"
    no_key = HttpRequest(
        method="GET", url=signed.url, headers=[p for p in pairs if p[0] != "Signature-Key"]
    )
    # without the Signature-Key presence check, the covered field is still missing
    assert "absent" in failure(no_key, require_signature_key=False).detail


def test_covered_header_missing_and_tampered() -> None:
    request = get(**{"X-Extra": "1"})
    headers = sign_request(request, SIGNER, covered=[*AAUTH_COMPONENTS, "x-extra"], created=NOW)
    signed = with_headers(request, headers)
    assert verify(signed).label == "sig"
    without = HttpRequest(
        method="GET", url=signed.url, headers=[p for p in signed.headers.pairs if p[0] != "X-Extra"]
    )
    assert failure(without).code == "invalid_signature"
    assert failure(with_headers(signed, {"X-Extra": "2"})).code == "invalid_signature"
    with pytest.raises(MalformedInput):  # a line break never gets into a message
        with_headers(signed, {"X-Extra": "1\nx"})
    # field values are trimmed: extra whitespace does not break the signature
    assert verify(with_headers(signed, {"X-Extra": "  1 "})).label == "sig"


def test_authority_normalisation_on_verify() -> None:
    request = get("https://API.Example:443/docs/1")
    headers = sign_request(request, SIGNER, covered=AAUTH_COMPONENTS, created=NOW)
    moved = HttpRequest(method="GET", url="https://api.example/docs/1", headers=request.headers)
    assert verify(with_headers(moved, headers)).label == "sig"
    other_port = HttpRequest(
        method="GET", url="https://api.example:8443/docs/1", headers=request.headers
    )
    assert failure(with_headers(other_port, headers)).code == "invalid_signature"


def test_content_digest_sha512_on_verify() -> None:
    body = b'{"a": 1}'
    request = HttpRequest(
        method="POST",
        url="https://ps.example/token",
        headers={
            "Signature-Key": SIG_KEY,
            "Content-Type": "application/json",
            "Content-Digest": content_digest(body, "sha-512"),
        },
        body=body,
    )
    covered = [*AAUTH_COMPONENTS, "content-digest", "content-type"]
    signed = with_headers(request, sign_request(request, SIGNER, covered=covered, created=NOW))
    assert verify(signed, require_body_coverage=True).label == "sig"
    tampered = HttpRequest(method="POST", url=signed.url, headers=signed.headers, body=b"{}")
    error = failure(tampered, require_body_coverage=True)
    assert error.code == "invalid_signature"
    assert error.detail == "Content-Digest does not match the body"


def test_read_then_verify_selected() -> None:
    """The resource pipeline: parse once, read Signature-Key, then verify."""
    signed = signed_get()
    selected = read_signature(signed.headers)
    assert selected.label == "sig"
    verified = verify_selected(signed, selected, key=KEY, now=NOW)
    assert verified.base.startswith('"@method": GET\n"@authority": api.example\n"@path": /docs/1\n')
    assert verified.base.endswith(f";created={NOW}")


def test_invalid_key_errors_are_aauth_errors() -> None:
    signed = signed_get()
    other = NaclSigner(b"\x01" * 32).public_jwk()
    assert failure(signed, key=other).code == "invalid_signature"
    garbage = with_headers(signed, {"Signature": "sig=:AAAA:"})
    assert failure(garbage).code == "invalid_signature"
    with pytest.raises(AAuthError):
        verify(
            with_headers(
                signed,
                {
                    "Signature-Input": 'sig=("@method" "@authority" "@path" "signature-key");created="x"'
                },
            )
        )


def test_parse_full_equals_fast_for_signed_output() -> None:
    value = signed_get().headers.get("signature-input")
    assert parse_signature_input_fast(value) == parse_signature_input_full(value)
