"""Software signers (cryptography, PyNaCl): RFC vectors, PEM/JWK forms, errors, logs, repr."""

from __future__ import annotations

import asyncio
import base64
import pickle
from typing import Any

import pytest
import structlog
from conftest import load_vector
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa, x25519
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aauth_backends.errors import (
    BackendError,
    HardwareError,
    InvalidKeyMaterial,
    InvalidKeyReference,
    KeyNotFound,
    UnsupportedKeyType,
    WrongPassphrase,
    safe_ref,
)
from aauth_backends.interfaces import AsyncSigner, AsyncSignerAdapter, Signer
from aauth_backends.sodium import SodiumSigner
from aauth_backends.software import CryptographySigner
from aauth_core.algorithms import Alg
from aauth_core.b64 import b64url_decode
from aauth_core.errors import AAuthError
from aauth_core.jwk import PublicJwk
from aauth_core.verify import verifier_for

RFC8037 = load_vector("rfc/rfc8037_ed25519.json")
RFC9421 = load_vector("rfc/rfc9421_appendix_b.json")
ENGINES: list[Any] = [CryptographySigner, SodiumSigner]
ALL_ALGS = list(Alg)


def _case(case_id: str) -> dict[str, str]:
    return next(c for c in RFC9421["cases"] if c["id"] == case_id)


def _key(name: str) -> dict[str, object]:
    return RFC9421["keys"][name]  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- RFC vectors


@pytest.mark.parametrize("engine", ENGINES)
def test_rfc8037_a4_signature_reproduced(engine: type[CryptographySigner]) -> None:
    signer = engine.from_jwk(RFC8037["A.1_private_jwk"])
    a4 = RFC8037["A.4_signing"]
    signature = signer.sign(a4["signing_input"].encode("ascii"))
    assert signature == b64url_decode(a4["signature_b64url"])
    # No kid in the A.1 JWK: key_id is the A.3 thumbprint.
    assert signer.key_id == RFC8037["A.3_thumbprint"]["b64url"]
    assert signer.public_jwk().x == RFC8037["A.2_public_jwk"]["x"]
    assert not signer.kid_configured


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("form", ["jwk", "pem"])
def test_rfc9421_b26_signature_reproduced(engine: type[CryptographySigner], form: str) -> None:
    key = _key("test-key-ed25519")
    if form == "jwk":
        signer = engine.from_jwk(key["jwk"])
        assert signer.key_id == "test-key-ed25519"  # the JWK's kid is configuration
    else:
        signer = engine.from_pem(key["private_pem"])  # type: ignore[arg-type]
    case = _case("B.2.6")
    signature = signer.sign(case["signature_base"].encode("utf-8"))
    assert signature == base64.b64decode(case["signature_b64"])
    assert signer.public_jwk().x == key["jwk"]["x"]  # type: ignore[index]


def test_rfc9421_ecc_key_pem_and_jwk_agree_and_sign() -> None:
    key = _key("test-key-ecc-p256")
    from_jwk = CryptographySigner.from_jwk(key["jwk"], kid=None)
    from_pem = CryptographySigner.from_pem(key["private_pem"])  # type: ignore[arg-type]
    assert from_pem.algorithm is Alg.ES256
    assert from_jwk.public_jwk().same_key(from_pem.public_jwk())
    base = _case("B.2.4")["signature_base"].encode()
    signature = from_pem.sign(base)
    assert len(signature) == 64
    assert verifier_for(from_jwk.public_jwk())(base, signature)
    # The published B.2.4 signature verifies against the key we derived.
    published = base64.b64decode(_case("B.2.4")["signature_b64"])
    assert verifier_for(from_pem.public_jwk())(base, published)


@pytest.mark.parametrize(
    ("name", "alg"), [("test-key-rsa-pss", "PS256"), ("test-key-rsa", "RS256")]
)
def test_rfc9421_rsa_keys_load_with_explicit_alg(name: str, alg: str) -> None:
    key = _key(name)
    with pytest.raises(UnsupportedKeyType, match="explicit algorithm"):
        CryptographySigner.from_pem(key["private_pem"])  # type: ignore[arg-type]
    signer = CryptographySigner.from_pem(key["private_pem"], alg=alg)  # type: ignore[arg-type]
    same = CryptographySigner.from_jwk(key["jwk"], alg=alg)
    assert signer.public_jwk().same_key(same.public_jwk())
    assert signer.algorithm is Alg(alg)
    signature = signer.sign(b"payload")
    assert len(signature) == 256
    assert verifier_for(signer.public_jwk())(b"payload", signature)
    other = Alg.RS256 if alg == "PS256" else Alg.PS256
    wrong_alg = PublicJwk.from_dict(signer.public_jwk().to_dict() | {"alg": other.value})
    assert not verifier_for(wrong_alg)(b"payload", signature)


def test_rsa_private_jwk_needs_crt_members() -> None:
    jwk = dict(_key("test-key-rsa")["jwk"])  # type: ignore[call-overload]
    del jwk["qi"]
    with pytest.raises(InvalidKeyMaterial, match="'qi'"):
        CryptographySigner.from_jwk(jwk, alg="RS256")


# --------------------------------------------------------------------------- algorithms


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_generate_signs_in_jose_format(alg: Alg) -> None:
    signer = CryptographySigner.generate(alg)
    assert signer.algorithm is alg
    data = b"GET /resource"
    signature = signer.sign(data)
    size = {Alg.ED25519: 64, Alg.ES256: 64, Alg.ES384: 96}.get(alg, 256)
    assert len(signature) == size
    assert verifier_for(signer.public_jwk())(data, signature)
    assert not verifier_for(signer.public_jwk())(data + b"!", signature)


def test_ecdsa_signature_is_raw_not_der() -> None:
    signer = CryptographySigner.generate("ES256")
    # DER would start with SEQUENCE (0x30) and be 70-72 bytes; over many signatures a raw
    # r||s is always exactly 64 bytes.
    for i in range(50):
        assert len(signer.sign(i.to_bytes(2, "big"))) == 64


def test_rsa_generate_bits() -> None:
    signer = CryptographySigner.generate("PS256", rsa_bits=3072)
    assert len(signer.sign(b"x")) == 384
    with pytest.raises(ValueError, match="rsa_bits"):
        CryptographySigner.generate("PS256", rsa_bits=1024)


@pytest.mark.parametrize(
    ("key", "alg", "message"),
    [
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), None, "explicit"),
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), "ES256", "cannot"),
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024), "PS256", "1024"),
        (lambda: ec.generate_private_key(ec.SECP521R1()), None, "secp521r1"),
        (lambda: ec.generate_private_key(ec.SECP256K1()), None, "secp256k1"),
        (lambda: ec.generate_private_key(ec.SECP256R1()), "ES384", "cannot sign ES384"),
        (lambda: ed25519.Ed25519PrivateKey.generate(), "ES256", "cannot sign ES256"),
        (lambda: ed25519.Ed25519PrivateKey.generate(), "EdDSA", "not supported"),
        (lambda: ed448.Ed448PrivateKey.generate(), None, "not supported"),
        (lambda: x25519.X25519PrivateKey.generate(), None, "not supported"),
    ],
)
def test_unsupported_keys_are_refused(key: object, alg: str | None, message: str) -> None:
    with pytest.raises(UnsupportedKeyType, match=message) as info:
        CryptographySigner.from_private_key(key(), alg)  # type: ignore[operator]
    assert info.value.code == "server_error"
    assert info.value.status == 500


def test_sodium_refuses_other_key_types() -> None:
    with pytest.raises(UnsupportedKeyType, match="Ed25519 only"):
        SodiumSigner.generate("ES256")
    with pytest.raises(UnsupportedKeyType, match="Ed25519 only"):
        SodiumSigner.from_private_key(ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(UnsupportedKeyType, match="Ed25519 only"):
        SodiumSigner.from_jwk(_key("test-key-ecc-p256")["jwk"])
    with pytest.raises(UnsupportedKeyType, match="Ed25519 only"):
        SodiumSigner.from_pem(_key("test-key-ecc-p256")["private_pem"])  # type: ignore[arg-type]
    with pytest.raises(InvalidKeyMaterial):
        SodiumSigner.from_seed(b"short")
    with pytest.raises(TypeError):
        SodiumSigner.from_seed("x" * 32)  # type: ignore[arg-type]


def test_both_ed25519_engines_agree_for_one_seed() -> None:
    seed = bytes(range(32))
    a = SodiumSigner.from_seed(seed)
    b = CryptographySigner.from_private_key(ed25519.Ed25519PrivateKey.from_private_bytes(seed))
    assert a.key_id == b.key_id
    assert a.public_jwk() == b.public_jwk()
    assert a.sign(b"data") == b.sign(b"data")
    assert SodiumSigner.from_private_key(b.private_key).sign(b"z") == b.sign(b"z")


def test_configured_kid() -> None:
    signer = CryptographySigner.generate("ES256", kid="agent-key-1")
    assert signer.key_id == "agent-key-1"
    assert signer.public_jwk().kid == "agent-key-1"
    assert signer.kid_configured
    assert signer.public_jwk().thumbprint() != "agent-key-1"
    for bad in ("", "x" * 257, "tab\there"):
        with pytest.raises(ValueError, match="kid"):
            CryptographySigner.generate("Ed25519", kid=bad)
    with pytest.raises(TypeError):
        SodiumSigner.generate(kid=5)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- PEM


@pytest.mark.parametrize("alg", ALL_ALGS)
@pytest.mark.parametrize("passphrase", [None, b"correct horse", "pässphrase"])
def test_pem_round_trip(alg: Alg, passphrase: bytes | str | None) -> None:
    signer = CryptographySigner.generate(alg)
    pem = signer.private_pem(passphrase)
    assert pem.startswith(
        b"-----BEGIN ENCRYPTED PRIVATE KEY-----" if passphrase else b"-----BEGIN PRIVATE KEY-----"
    )
    loaded = CryptographySigner.from_pem(pem, passphrase, alg)
    assert loaded.key_id == signer.key_id
    assert loaded.public_jwk() == signer.public_jwk()
    data = b"round trip"
    assert verifier_for(signer.public_jwk())(data, loaded.sign(data))


@pytest.mark.parametrize("passphrase", [None, b"pw-1"])
def test_sodium_pem_round_trip(passphrase: bytes | None) -> None:
    signer = SodiumSigner.generate()
    pem = signer.private_pem(passphrase)
    for engine in ENGINES:
        loaded = engine.from_pem(pem, passphrase)
        assert loaded.key_id == signer.key_id
        assert loaded.sign(b"m") == signer.sign(b"m")


@pytest.mark.parametrize("engine", ENGINES)
def test_wrong_or_missing_passphrase(engine: type[CryptographySigner]) -> None:
    pem = CryptographySigner.generate("Ed25519").private_pem(b"secret-pass")
    with pytest.raises(WrongPassphrase, match="no passphrase") as missing:
        engine.from_pem(pem, ref="file:/keys/a.pem")
    with pytest.raises(WrongPassphrase, match="wrong passphrase") as wrong:
        engine.from_pem(pem, b"guess-pass", ref="file:/keys/a.pem")
    for error in (missing.value, wrong.value):
        assert "file:/keys/a.pem" in str(error)
        assert "secret-pass" not in repr(error) + str(error)
        assert "guess-pass" not in repr(error) + str(error)
        assert error.__cause__ is None
        assert error.status == 500


def test_passphrase_for_unencrypted_key_is_ignored_and_empty_is_refused() -> None:
    signer = CryptographySigner.generate("ES256")
    assert CryptographySigner.from_pem(signer.private_pem(), b"unused").key_id == signer.key_id
    with pytest.raises(ValueError, match="empty"):
        signer.private_pem(b"")
    with pytest.raises(TypeError):
        signer.private_pem(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not a pem",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        b"-----BEGIN PUBLIC KEY-----\n"
        b"MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=\n"
        b"-----END PUBLIC KEY-----\n",
        b"A" * 100_000,
    ],
)
@pytest.mark.parametrize("engine", ENGINES)
def test_bad_pem_is_invalid_key_material(engine: type[CryptographySigner], data: bytes) -> None:
    with pytest.raises(InvalidKeyMaterial):
        engine.from_pem(data)


@pytest.mark.parametrize("engine", ENGINES)
@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=2000), st.text(max_size=2000)))
def test_from_pem_hostile_input_only_backend_errors(
    engine: type[CryptographySigner], data: bytes | str
) -> None:
    with pytest.raises(BackendError):
        engine.from_pem(data)


@settings(max_examples=100)
@given(
    prefix=st.binary(max_size=40),
    cut=st.integers(min_value=0, max_value=200),
    flip=st.integers(min_value=0, max_value=199),
)
def test_damaged_pem_only_backend_errors(prefix: bytes, cut: int, flip: int) -> None:
    pem = bytearray(_key("test-key-ecc-p256")["private_pem"].encode())  # type: ignore[attr-defined]
    pem[40 + flip % (len(pem) - 80)] ^= 0x01
    damaged = prefix + bytes(pem[: len(pem) - cut])
    try:
        signer = CryptographySigner.from_pem(damaged)
    except BackendError:
        return
    # A flip that still decodes must still give a working EC key.
    assert verifier_for(signer.public_jwk())(b"x", signer.sign(b"x"))


# --------------------------------------------------------------------------- JWK


def _ed_jwk() -> dict[str, object]:
    return dict(RFC8037["A.1_private_jwk"])


@pytest.mark.parametrize(
    ("jwk", "error", "message"),
    [
        ("not a dict", InvalidKeyMaterial, "JSON object"),
        ({"kty": "OKP", "crv": "Ed25519"}, InvalidKeyMaterial, "'d'"),
        (
            _ed_jwk() | {"x": RFC9421["keys"]["test-key-ed25519"]["jwk"]["x"]},
            InvalidKeyMaterial,
            "does not belong",
        ),
        (_ed_jwk() | {"d": "AAAA"}, InvalidKeyMaterial, "32 bytes"),
        (_ed_jwk() | {"d": "!!"}, InvalidKeyMaterial, "base64url"),
        (_ed_jwk() | {"d": 12}, InvalidKeyMaterial, "'d'"),
        (_ed_jwk() | {"crv": "Ed448"}, UnsupportedKeyType, "Ed448"),
        (_ed_jwk() | {"crv": ["Ed25519"]}, UnsupportedKeyType, "curve"),
        (_ed_jwk() | {"alg": "EdDSA"}, UnsupportedKeyType, "EdDSA"),
        (_ed_jwk() | {"alg": "ES256"}, UnsupportedKeyType, "cannot sign ES256"),
        (_ed_jwk() | {"kid": 7}, InvalidKeyMaterial, "kid"),
        ({"kty": "oct", "k": "AAAA"}, UnsupportedKeyType, "symmetric"),
        ({"kty": "RSA", "n": "AQAB", "e": "AQAB", "d": "AQAB"}, UnsupportedKeyType, "bits"),
        ({"kty": ["EC"]}, UnsupportedKeyType, "kty"),
    ],
)
def test_bad_private_jwk(jwk: object, error: type[BackendError], message: str) -> None:
    with pytest.raises(error, match=message):
        CryptographySigner.from_jwk(jwk)


def test_ec_jwk_point_not_on_curve() -> None:
    jwk = dict(_key("test-key-ecc-p256")["jwk"])  # type: ignore[call-overload]
    jwk["y"] = jwk["x"]
    with pytest.raises(InvalidKeyMaterial, match="EC JWK"):
        CryptographySigner.from_jwk(jwk)


_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=60),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=200)
@given(data=_JSONISH)
def test_from_jwk_hostile_input_only_backend_errors(data: object) -> None:
    for engine in ENGINES:
        with pytest.raises(BackendError):
            engine.from_jwk(data)


@settings(max_examples=200)
@given(
    source=st.sampled_from(["test-key-ed25519", "test-key-ecc-p256", "test-key-rsa"]),
    member=st.sampled_from(["kty", "crv", "d", "x", "y", "n", "e", "p", "q", "dp", "dq", "qi"]),
    value=_JSONISH,
)
def test_mutated_vector_jwk_gives_signer_or_backend_error(
    source: str, member: str, value: object
) -> None:
    jwk = dict(_key(source)["jwk"])  # type: ignore[call-overload]
    jwk[member] = value
    try:
        signer = CryptographySigner.from_jwk(jwk, alg="RS256" if source == "test-key-rsa" else None)
    except BackendError:
        return
    assert verifier_for(signer.public_jwk())(b"m", signer.sign(b"m"))


# --------------------------------------------------------------------------- secrets


@pytest.mark.parametrize("engine", ENGINES)
def test_repr_and_pickle_never_show_the_key(engine: type[CryptographySigner]) -> None:
    jwk = RFC8037["A.1_private_jwk"]
    signer = engine.from_jwk(jwk)
    text = repr(signer)
    assert text == f"{engine.__name__}(alg='Ed25519', key_id={signer.key_id!r})"
    assert jwk["d"] not in text
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(signer)


def test_logs_name_keys_but_never_secrets_and_nothing_per_signature() -> None:
    passphrase = "log-test-passphrase"
    with structlog.testing.capture_logs() as logs:
        signer = CryptographySigner.generate("ES256")
        pem = signer.private_pem(passphrase)
        loaded = CryptographySigner.from_pem(pem, passphrase, ref="file:/k/agent.pem")
        sodium = SodiumSigner.from_jwk(RFC8037["A.1_private_jwk"])
        SodiumSigner.from_pem(
            sodium.private_pem(passphrase), passphrase, ref="file:/k.pem?pin-value=998877"
        )
        events_before_signing = len(logs)
        for _ in range(10):
            loaded.sign(b"data")
            sodium.sign(b"data")
    assert len(logs) == events_before_signing  # sign() never logs
    events = [entry["event"] for entry in logs]
    assert events == ["aauth.key.generate", "aauth.key.load", "aauth.key.load"]
    assert logs[1]["key_id"] == signer.key_id
    assert logs[1]["alg"] == "ES256"
    assert logs[1]["ref"] == "file:/k/agent.pem"
    assert logs[2]["ref"] == "file:/k.pem?pin-value=***"
    secrets = [
        "998877",
        passphrase,
        RFC8037["A.1_private_jwk"]["d"],
        pem.decode().splitlines()[1],
        signer.private_pem().decode().splitlines()[1],
    ]
    dumped = repr(logs)
    for secret in secrets:
        assert secret not in dumped


def test_backend_errors_are_server_errors_and_redact_pins() -> None:
    for cls in (BackendError, KeyNotFound, WrongPassphrase, HardwareError, InvalidKeyReference):
        error = cls("boom", ref="pkcs11:token=t;object=k?pin-value=123456")
        assert isinstance(error, AAuthError)
        assert (error.code, error.status) == ("server_error", 500)
        assert "123456" not in str(error) + repr(error)
        assert "pin-value=***" in str(error)
    assert safe_ref("file:/a\x00b") == "file:/a\\x00b"
    assert safe_ref(b"bytes") == "<bytes>"
    assert safe_ref("x" * 500).endswith("...")
    assert "hunter2" not in safe_ref("file:/k.pem?passphrase=hunter2")


# --------------------------------------------------------------------------- protocol, async


def test_signers_satisfy_the_protocols() -> None:
    for signer in (CryptographySigner.generate("Ed25519"), SodiumSigner.generate()):
        assert isinstance(signer, Signer)
        adapter = AsyncSignerAdapter(signer)
        assert isinstance(adapter, AsyncSigner)
        assert adapter.key_id == signer.key_id
        assert adapter.algorithm is signer.algorithm
        assert adapter.public_jwk() == signer.public_jwk()
        assert adapter.signer is signer


@pytest.mark.parametrize("in_thread", [True, False])
def test_async_adapter_signs(in_thread: bool) -> None:
    signer = CryptographySigner.generate("ES384")
    adapter = AsyncSignerAdapter(signer, in_thread=in_thread)

    async def run() -> list[bytes]:
        return list(await asyncio.gather(*(adapter.sign(bytes([i])) for i in range(8))))

    signatures = asyncio.run(run())
    verify = verifier_for(signer.public_jwk())
    assert all(verify(bytes([i]), sig) for i, sig in enumerate(signatures))
    assert repr(signer) in repr(adapter)

    async def misuse() -> bytes:
        return await adapter.sign("text")  # type: ignore[arg-type]

    with pytest.raises(TypeError):
        asyncio.run(misuse())


def test_async_adapter_refuses_non_signers() -> None:
    with pytest.raises(TypeError, match="Signer"):
        AsyncSignerAdapter(object())  # type: ignore[arg-type]


def test_private_key_export_matches() -> None:
    signer = CryptographySigner.generate("ES256")
    raw = signer.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert raw == signer.private_pem()


def test_package_exports_resolve() -> None:
    # Run in a fresh interpreter from the repository root so that the real package
    # (not the editable-install namespace fallback) is imported.
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import aauth_backends as b\n"
        "missing = [n for n in b.__all__ if not hasattr(b, n)]\n"
        "assert not missing, missing\n"
        "assert b.Signer is __import__('aauth_core.signer').signer.Signer\n"
        "print(len(b.__all__))\n"
    )
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) >= 25
