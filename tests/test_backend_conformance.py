"""Every backend and algorithm passes ``aauth_backends.testing.check_signer``, and the checker
itself rejects signers that break the protocol."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import load_vector
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from aauth_backends.interfaces import AsyncSignerAdapter, Signer
from aauth_backends.sodium import SodiumSigner
from aauth_backends.software import CryptographySigner, public_jwk_of
from aauth_backends.stores import FileKeyStore, MemoryKeyStore
from aauth_backends.testing import check_signer, expected_signature_size, independent_verifier
from aauth_backends.uris import open_signer
from aauth_core.algorithms import Alg
from aauth_core.jwk import PublicJwk

RFC9421 = load_vector("rfc/rfc9421_appendix_b.json")
RFC8037 = load_vector("rfc/rfc8037_ed25519.json")
ALGS = list(Alg)

Factory = Callable[[Path], tuple[Signer, "str | None"]]


def _crypto(alg: Alg, kid: str | None = None) -> Factory:
    return lambda _tmp: (CryptographySigner.generate(alg, kid=kid), kid)


def _sodium(kid: str | None = None) -> Factory:
    return lambda _tmp: (SodiumSigner.generate(kid=kid), kid)


def _vector(engine: type[CryptographySigner], name: str, alg: str | None = None) -> Factory:
    jwk = RFC9421["keys"][name]["jwk"]
    return lambda _tmp: (engine.from_jwk(jwk, alg=alg), jwk["kid"])


def _memory(alg: Alg, engine: str = "cryptography") -> Factory:
    def build(_tmp: Path) -> tuple[Signer, str | None]:
        store = MemoryKeyStore(engine=engine)  # type: ignore[arg-type]
        return open_signer(store.generate(alg, "k"), stores={"software": store}), None

    return build


def _file(alg: Alg, engine: str = "cryptography", passphrase: str | None = None) -> Factory:
    def build(tmp: Path) -> tuple[Signer, str | None]:
        writer = FileKeyStore(tmp / "keys", engine=engine, passphrase=passphrase)  # type: ignore[arg-type]
        ref = writer.generate(alg, "k")
        # Load through a fresh store, as another process would, and directly by reference.
        reader = FileKeyStore(tmp / "keys", engine=engine, passphrase=passphrase)  # type: ignore[arg-type]
        assert reader.get_signer("k").key_id == open_signer(ref, passphrase=passphrase).key_id
        return reader.get_signer(ref), None

    return build


BACKENDS: dict[str, Factory] = {
    **{f"cryptography-{a.value}": _crypto(a) for a in ALGS},
    **{f"cryptography-{a.value}-kid": _crypto(a, kid=f"cfg-{a.value}") for a in ALGS},
    "sodium-Ed25519": _sodium(),
    "sodium-Ed25519-kid": _sodium(kid="cfg-sodium"),
    "rfc8037-sodium": lambda _tmp: (SodiumSigner.from_jwk(RFC8037["A.1_private_jwk"]), None),
    "rfc8037-cryptography": lambda _tmp: (
        CryptographySigner.from_jwk(RFC8037["A.1_private_jwk"]),
        None,
    ),
    "rfc9421-ed25519-cryptography": _vector(CryptographySigner, "test-key-ed25519"),
    "rfc9421-ed25519-sodium": _vector(SodiumSigner, "test-key-ed25519"),  # type: ignore[arg-type]
    "rfc9421-ecc-p256": _vector(CryptographySigner, "test-key-ecc-p256"),
    "rfc9421-rsa-pss-PS256": _vector(CryptographySigner, "test-key-rsa-pss", "PS256"),
    "rfc9421-rsa-RS256": _vector(CryptographySigner, "test-key-rsa", "RS256"),
    **{f"memory-{a.value}": _memory(a) for a in ALGS},
    "memory-sodium-Ed25519": _memory(Alg.ED25519, "sodium"),
    **{f"file-{a.value}": _file(a) for a in ALGS},
    **{f"file-encrypted-{a.value}": _file(a, passphrase="conformance") for a in ALGS},
    "file-sodium-Ed25519": _file(Alg.ED25519, "sodium"),
    "file-sodium-encrypted-Ed25519": _file(Alg.ED25519, "sodium", "conformance"),
}


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_backend_conforms(backend: str, tmp_path: Path) -> None:
    signer, kid = BACKENDS[backend](tmp_path)
    check_signer(signer, configured_kid=kid)


# --------------------------------------------------------------------------- the checker fails


class Broken:
    """A signer wrapper whose behaviour a test bends one rule at a time."""

    def __init__(self, inner: CryptographySigner) -> None:
        self.inner = inner
        self._key_id = inner.key_id
        self._jwk = inner.public_jwk()
        self.sign_impl: Callable[[bytes], bytes] = inner.sign

    @property
    def key_id(self) -> str:
        return self._key_id

    @property
    def algorithm(self) -> Alg:
        return self.inner.algorithm

    def public_jwk(self) -> PublicJwk:
        return self._jwk

    def sign(self, data: bytes) -> bytes:
        return self.sign_impl(data)


def _broken(alg: Alg = Alg.ES256) -> Broken:
    return Broken(CryptographySigner.generate(alg))


def test_checker_accepts_the_unbroken_wrapper() -> None:
    check_signer(_broken())


def test_checker_rejects_der_ecdsa() -> None:
    signer = _broken()
    key = signer.inner.private_key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    signer.sign_impl = lambda data: key.sign(data, ec.ECDSA(hashes.SHA256()))
    with pytest.raises(AssertionError, match="DER"):
        check_signer(signer)


def test_checker_rejects_a_kid_that_is_not_the_thumbprint() -> None:
    signer = _broken()
    signer._key_id = "made-up"
    signer._jwk = signer._jwk.with_kid("made-up")
    with pytest.raises(AssertionError, match="thumbprint"):
        check_signer(signer)
    check_signer(signer, configured_kid="made-up")
    with pytest.raises(AssertionError, match="configured kid"):
        check_signer(signer, configured_kid="other")


def test_checker_rejects_jwk_kid_mismatch() -> None:
    signer = _broken()
    signer._jwk = signer._jwk.with_kid("different")
    with pytest.raises(AssertionError, match="kid"):
        check_signer(signer)


def test_checker_rejects_wrong_jwk_alg() -> None:
    signer = _broken(Alg.PS256)
    signer._jwk = PublicJwk.from_dict(signer._jwk.to_dict() | {"alg": "RS256"})
    with pytest.raises(AssertionError, match="alg"):
        check_signer(signer)


def test_checker_rejects_a_signature_from_another_key() -> None:
    signer = _broken()
    other = CryptographySigner.generate(Alg.ES256)
    signer.sign_impl = other.sign
    with pytest.raises(AssertionError, match="does not verify"):
        check_signer(signer)


def test_checker_rejects_wrong_hash() -> None:
    signer = _broken(Alg.ES384)
    key = signer.inner.private_key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    def sha256_on_p384(data: bytes) -> bytes:
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(48, "big") + s.to_bytes(48, "big")

    signer.sign_impl = sha256_on_p384
    with pytest.raises(AssertionError, match="does not verify"):
        check_signer(signer)


def test_checker_rejects_text_accepting_signer() -> None:
    signer = _broken(Alg.ED25519)
    inner = signer.inner.sign
    signer.sign_impl = lambda data: inner(data.encode() if isinstance(data, str) else data)
    with pytest.raises(AssertionError, match="TypeError"):
        check_signer(signer)


def test_checker_rejects_wrong_misuse_error() -> None:
    signer = _broken(Alg.ED25519)
    inner = signer.inner.sign

    def picky(data: bytes) -> bytes:
        if not isinstance(data, bytes):
            raise ValueError("not bytes")
        return inner(data)

    signer.sign_impl = picky
    with pytest.raises(AssertionError, match="ValueError, not TypeError"):
        check_signer(signer)


def test_checker_rejects_failure_on_empty_data() -> None:
    signer = _broken(Alg.ED25519)
    inner = signer.inner.sign

    def no_empty(data: bytes) -> bytes:
        if data == b"":
            raise RuntimeError("empty")
        return inner(data)

    signer.sign_impl = no_empty
    with pytest.raises(AssertionError, match=r"sign\(b''\) raised"):
        check_signer(signer)


def test_checker_rejects_unstable_public_key() -> None:
    signer = _broken(Alg.ED25519)
    calls = []
    first = signer._jwk
    second_key = CryptographySigner.generate(Alg.ED25519)

    class Flaky(Broken):
        def public_jwk(self) -> PublicJwk:
            calls.append(1)
            return first if len(calls) == 1 else second_key.public_jwk()

    flaky = Flaky(signer.inner)
    with pytest.raises(AssertionError, match="not stable"):
        check_signer(flaky)


def test_checker_rejects_non_signers_and_non_bytes_results() -> None:
    with pytest.raises(AssertionError, match="not a Signer"):
        check_signer(object())  # type: ignore[arg-type]
    signer = _broken(Alg.ED25519)
    inner = signer.inner.sign
    signer.sign_impl = lambda data: bytearray(inner(data))  # type: ignore[assignment,return-value]
    with pytest.raises(AssertionError, match="bytearray"):
        check_signer(signer)
    async_signer = AsyncSignerAdapter(CryptographySigner.generate(Alg.ED25519))
    with pytest.raises(AssertionError, match="AsyncSigner is not a Signer"):
        check_signer(async_signer)  # type: ignore[arg-type]


def test_independent_verifier_and_sizes() -> None:
    for alg in ALGS:
        signer = CryptographySigner.generate(alg)
        jwk = public_jwk_of(signer.private_key, alg)
        verify = independent_verifier(jwk)
        signature = signer.sign(b"abc")
        assert len(signature) == expected_signature_size(jwk)
        assert verify(b"abc", signature)
        assert not verify(b"abd", signature)
        assert not verify(b"abc", signature[:-1])


def test_checker_rejects_non_jose_pss_salt() -> None:
    # RFC 7518 §3.5: PS256 uses a salt as long as the hash (32 bytes); 64 is not PS256.
    signer = _broken(Alg.PS256)
    key = signer.inner.private_key
    assert isinstance(key, rsa.RSAPrivateKey)
    pad = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=64)
    signer.sign_impl = lambda data: key.sign(data, pad, hashes.SHA256())
    with pytest.raises(AssertionError, match="PS256 signature of b'message' does not verify"):
        check_signer(signer)
