"""RFC 9421 Appendix B: signature bases rebuilt byte for byte, B.2.1-B.2.4 verified with
the RFC keys and algorithms, B.2.5 (HMAC) and B.2.6 (Ed25519) reproduced exactly.

``tests/vectors/rfc/PROVENANCE.md``: the messages have their RFC 8792 wrapping removed;
``test-response`` carries the corrected ``Content-Digest`` (the erratum).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import pytest
from conftest import load_vector
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from aauth_core.algorithms import Alg
from aauth_core.errors import SignatureFailure
from aauth_core.http import Headers, HttpRequest, HttpResponse
from aauth_core.httpsig import (
    parse_signature,
    parse_signature_input,
    sign_request,
    sign_response,
    signature_base_for,
    verify_content_digest,
    verify_request_signature,
    verify_response_signature,
)
from aauth_core.httpsig.fields import (
    parse_signature_fast,
    parse_signature_full,
    parse_signature_input_fast,
    parse_signature_input_full,
)
from aauth_core.jwk import PublicJwk

RFC = load_vector("rfc/rfc9421_appendix_b.json")
CASES = {c["id"]: c for c in RFC["cases"]}
KEYS = RFC["keys"]


def parse_message(text: str) -> HttpRequest | HttpResponse:
    """An RFC 9421 example message (LF-separated) as an HttpRequest/HttpResponse."""
    head, _, body = text.partition("\n\n")
    start, *lines = head.split("\n")
    headers = [tuple(line.split(": ", 1)) for line in lines]
    first = start.split(" ")
    if first[0].startswith("HTTP/"):
        return HttpResponse(status=int(first[1]), headers=headers, body=body.encode())
    host = Headers(headers).get("host")
    return HttpRequest(
        method=first[0], url=f"https://{host}{first[1]}", headers=headers, body=body.encode()
    )


def message_of(case: dict[str, Any]) -> HttpRequest | HttpResponse:
    return parse_message(RFC["messages"][case["message"]])


def signed_message(case: dict[str, Any]) -> HttpRequest | HttpResponse:
    message = message_of(case)
    extra = {"Signature-Input": case["signature_input"], "Signature": case["signature"]}
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


def rebuilt_base(case: dict[str, Any]) -> str:
    inputs = parse_signature_input(case["signature_input"])
    return signature_base_for(message_of(case), (), inputs[case["label"]])


def test_all_six_cases_present() -> None:
    assert sorted(CASES) == ["B.2.1", "B.2.2", "B.2.3", "B.2.4", "B.2.5", "B.2.6"]


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_signature_base_byte_for_byte(case_id: str) -> None:
    case = CASES[case_id]
    assert rebuilt_base(case) == case["signature_base"]


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_fields_parse_fast_and_full_alike(case_id: str) -> None:
    case = CASES[case_id]
    full = parse_signature_input_full(case["signature_input"])
    fast = parse_signature_input_fast(case["signature_input"])
    assert fast is None or fast == full
    assert parse_signature_input(case["signature_input"]) == full
    # @signature-params is the member value after the label
    assert full[case["label"]].signature_params == case["signature_input"].split("=", 1)[1]
    sig_full = parse_signature_full(case["signature"])
    sig_fast = parse_signature_fast(case["signature"])
    assert sig_fast == sig_full
    assert sig_full == {case["label"]: base64.b64decode(case["signature_b64"])}


def test_fast_path_handles_the_plain_vectors() -> None:
    """B.2.2 has a parameterised component (full parser); the others take the fast path."""
    for case_id, case in CASES.items():
        fast = parse_signature_input_fast(case["signature_input"])
        assert (fast is None) == (case_id == "B.2.2"), case_id


def test_message_digests_match_bodies() -> None:
    for name in ("test-request", "test-response"):
        message = parse_message(RFC["messages"][name])
        verify_content_digest(message.headers.get("content-digest"), message.body)
    wrong = parse_message(RFC["messages"]["test-response_wg_source"])
    with pytest.raises(SignatureFailure) as info:
        verify_content_digest(wrong.headers.get("content-digest"), wrong.body)
    assert info.value.code == "invalid_signature"


def _pem_public(name: str) -> Any:
    return serialization.load_pem_public_key(KEYS[name]["public_pem"].encode())


def _pem_private(name: str) -> Any:
    return serialization.load_pem_private_key(KEYS[name]["private_pem"].encode(), None)


def _rsa_pss_verify(base: bytes, signature: bytes) -> None:
    key = _pem_public("test-key-rsa-pss")
    assert isinstance(key, rsa.RSAPublicKey)
    key.verify(
        signature,
        base,
        padding.PSS(mgf=padding.MGF1(hashes.SHA512()), salt_length=64),
        hashes.SHA512(),
    )


@pytest.mark.parametrize("case_id", ["B.2.1", "B.2.2", "B.2.3"])
def test_rsa_pss_sha512_signatures_verify(case_id: str) -> None:
    case = CASES[case_id]
    base = rebuilt_base(case).encode("ascii")
    signature = parse_signature(case["signature"])[case["label"]]
    _rsa_pss_verify(base, signature)
    with pytest.raises(InvalidSignature):
        _rsa_pss_verify(base + b" ", signature)


def test_ecdsa_p256_response_signature_verifies() -> None:
    case = CASES["B.2.4"]
    base = rebuilt_base(case).encode("ascii")
    raw = parse_signature(case["signature"])[case["label"]]
    assert len(raw) == 64
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    key = _pem_public("test-key-ecc-p256")
    assert isinstance(key, ec.EllipticCurvePublicKey)
    key.verify(der, base, ec.ECDSA(hashes.SHA256()))
    with pytest.raises(InvalidSignature):
        key.verify(der, base.replace(b"200", b"201"), ec.ECDSA(hashes.SHA256()))


def test_ecdsa_response_through_verify_response_signature() -> None:
    """ecdsa-p256-sha256 is JOSE ES256 (raw r||s): the library's verifier accepts B.2.4."""
    case = CASES["B.2.4"]
    jwk = {k: v for k, v in KEYS["test-key-ecc-p256"]["jwk"].items() if k != "d"}
    key = PublicJwk.from_dict({**jwk, "alg": "ES256"})
    response = signed_message(case)
    assert isinstance(response, HttpResponse)
    verified = verify_response_signature(
        response,
        label="sig-b24",
        key=key,
        now=1618884473,
        required_components=("@status", "content-digest"),
    )
    assert verified.base == case["signature_base"]
    assert verified.created == 1618884473


class _HmacSigner:
    """Test-only: RFC 9421 hmac-sha256 (not a JOSE algorithm AAuth allows)."""

    key_id = "test-shared-secret"
    algorithm = Alg.ED25519  # unused by the signing code; the protocol needs a value

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def public_jwk(self) -> PublicJwk:  # pragma: no cover - not needed for HMAC
        raise NotImplementedError

    def sign(self, data: bytes) -> bytes:
        return hmac.new(self._secret, data, hashlib.sha256).digest()


class _Ed25519Signer:
    """Test-only Ed25519 signer on ``cryptography``, compatible with aauth_core.Signer."""

    algorithm = Alg.ED25519

    def __init__(self, private_pem: str, kid: str) -> None:
        key = serialization.load_pem_private_key(private_pem.encode(), None)
        assert isinstance(key, ed25519.Ed25519PrivateKey)
        self._key = key
        self.key_id = kid
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self._jwk = PublicJwk.from_raw_ed25519(raw, kid=kid)

    def public_jwk(self) -> PublicJwk:
        return self._jwk

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)


def _covered(case: dict[str, Any]) -> list[str]:
    inputs = parse_signature_input(case["signature_input"])
    return [c.name for c in inputs[case["label"]].covered]


def test_b25_hmac_reproduced_exactly() -> None:
    case = CASES["B.2.5"]
    secret = base64.b64decode(KEYS["test-shared-secret"]["base64"])
    message = message_of(case)
    assert isinstance(message, HttpRequest)
    headers = sign_request(
        message,
        _HmacSigner(secret),
        covered=_covered(case),
        created=1618884473,
        label="sig-b25",
        keyid="test-shared-secret",
    )
    assert headers == {"Signature-Input": case["signature_input"], "Signature": case["signature"]}
    expected = hmac.new(secret, case["signature_base"].encode(), hashlib.sha256).digest()
    assert base64.b64encode(expected).decode() == case["signature_b64"]


def test_b26_ed25519_reproduced_exactly() -> None:
    case = CASES["B.2.6"]
    signer = _Ed25519Signer(KEYS["test-key-ed25519"]["private_pem"], "test-key-ed25519")
    message = message_of(case)
    assert isinstance(message, HttpRequest)
    headers = sign_request(
        message,
        signer,
        covered=_covered(case),
        created=1618884473,
        label="sig-b26",
        keyid="test-key-ed25519",
    )
    assert headers == {"Signature-Input": case["signature_input"], "Signature": case["signature"]}
    # ... and the library's verifier accepts it (keyid = the key's kid).
    signed = signed_message(case)
    assert isinstance(signed, HttpRequest)
    verified = verify_request_signature(
        signed,
        label="sig-b26",
        key=signer.public_jwk(),
        now=1618884473 + 30,
        required_components=("@method", "@authority", "@path"),
        require_signature_key=False,
    )
    assert verified.base == case["signature_base"]
    # The RFC key's x is the JWK in the vector file.
    assert signer.public_jwk().x == KEYS["test-key-ed25519"]["jwk"]["x"]


def test_b21_signature_input_reproduced_with_nonce() -> None:
    """RSA-PSS is randomised: the headers match except the signature, which verifies."""
    case = CASES["B.2.1"]
    key = _pem_private("test-key-rsa-pss")

    class PssSigner(_HmacSigner):
        def sign(self, data: bytes) -> bytes:
            return bytes(
                key.sign(
                    data,
                    padding.PSS(mgf=padding.MGF1(hashes.SHA512()), salt_length=64),
                    hashes.SHA512(),
                )
            )

    message = message_of(case)
    assert isinstance(message, HttpRequest)
    headers = sign_request(
        message,
        PssSigner(b""),
        covered=[],
        created=1618884473,
        label="sig-b21",
        keyid="test-key-rsa-pss",
        nonce="b3k2pp5k7z-50gnwp.yemd",
    )
    assert headers["Signature-Input"] == case["signature_input"]
    _rsa_pss_verify(
        case["signature_base"].encode(), parse_signature(headers["Signature"])["sig-b21"]
    )


def test_b24_response_signed_with_same_input() -> None:
    case = CASES["B.2.4"]
    key = _pem_private("test-key-ecc-p256")

    class EcSigner(_HmacSigner):
        def sign(self, data: bytes) -> bytes:
            r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    response = message_of(case)
    assert isinstance(response, HttpResponse)
    headers = sign_response(
        response,
        EcSigner(b""),
        covered=_covered(case),
        created=1618884473,
        label="sig-b24",
        keyid="test-key-ecc-p256",
    )
    assert headers["Signature-Input"] == case["signature_input"]
    assert "Content-Digest" not in headers  # present (and correct) in the message
