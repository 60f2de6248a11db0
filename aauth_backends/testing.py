"""The conformance check every :class:`~aauth_backends.interfaces.Signer` must pass.

:func:`check_signer` verifies signatures *independently* of :mod:`aauth_core.verify`:
Ed25519 with PyNaCl, ECDSA and RSA with ``cryptography`` built straight from the public
JWK's members. It returns nothing and raises ``AssertionError`` naming the failed rule.
Run it over every backend and algorithm (and, once it exists, every PKCS#11 token).
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import json
from collections.abc import Callable

import nacl.exceptions
import nacl.signing
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from aauth_core.algorithms import Alg
from aauth_core.jwk import PublicJwk
from aauth_core.signer import Signer

__all__ = ["check_signer", "independent_verifier", "expected_signature_size"]

_LARGE = bytes(range(256)) * 4096  # 1 MiB
_EC = {
    Alg.ES256: (ec.SECP256R1(), hashes.SHA256, 32),
    Alg.ES384: (ec.SECP384R1(), hashes.SHA384, 48),
}
_ORDERS = {
    Alg.ES256: 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    Alg.ES384: int(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF"
        "581A0DB248B0A77AECEC196ACCC52973",
        16,
    ),
}


def _fail(message: str) -> None:
    raise AssertionError(f"signer conformance: {message}")


def _require(condition: bool, message: str) -> None:
    if not condition:
        _fail(message)


def _b64(text: str | None) -> bytes:
    if text is None:
        raise AssertionError("signer conformance: public JWK lacks a required member")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _thumbprint(members: dict[str, str]) -> str:
    canonical = json.dumps(dict(sorted(members.items())), separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _required_members(jwk: dict[str, str]) -> dict[str, str]:
    names = {"OKP": ("crv", "kty", "x"), "EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n")}
    return {name: jwk[name] for name in names[jwk["kty"]]}


def expected_signature_size(jwk: PublicJwk) -> int:
    """JOSE signature size: 64 (Ed25519, ES256), 96 (ES384), the modulus size (RSA)."""
    if jwk.alg is Alg.ED25519:
        return 64
    if jwk.alg in _EC:
        return 2 * _EC[jwk.alg][2]
    return (int.from_bytes(_b64(jwk.n), "big").bit_length() + 7) // 8


def independent_verifier(jwk: PublicJwk) -> Callable[[bytes, bytes], bool]:
    """A verifier that shares no code with :mod:`aauth_core.verify`."""
    alg = jwk.alg
    if alg is Alg.ED25519:
        key = nacl.signing.VerifyKey(_b64(jwk.x))

        def ed25519(data: bytes, signature: bytes) -> bool:
            try:
                key.verify(data, signature)
            except (nacl.exceptions.BadSignatureError, ValueError):
                return False
            return True

        return ed25519
    if alg in _EC:
        curve, hash_type, size = _EC[alg]
        public = ec.EllipticCurvePublicNumbers(
            int.from_bytes(_b64(jwk.x), "big"), int.from_bytes(_b64(jwk.y), "big"), curve
        ).public_key()

        def ecdsa(data: bytes, signature: bytes) -> bool:
            if len(signature) != 2 * size:
                return False
            der = encode_dss_signature(
                int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
            )
            try:
                public.verify(der, data, ec.ECDSA(hash_type()))
            except InvalidSignature:
                return False
            return True

        return ecdsa
    rsa_public = rsa.RSAPublicNumbers(
        int.from_bytes(_b64(jwk.e), "big"), int.from_bytes(_b64(jwk.n), "big")
    ).public_key()
    pad: padding.AsymmetricPadding = (
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        if alg is Alg.PS256
        else padding.PKCS1v15()
    )

    def rsa_verify(data: bytes, signature: bytes) -> bool:
        try:
            rsa_public.verify(signature, data, pad, hashes.SHA256())
        except InvalidSignature:
            return False
        return True

    return rsa_verify


def _sign(signer: Signer, data: bytes, what: str) -> bytes:
    try:
        signature = signer.sign(data)
    except Exception as exc:
        raise AssertionError(f"signer conformance: sign({what}) raised {exc!r}") from exc
    _require(isinstance(signature, bytes), f"sign({what}) returned {type(signature).__name__}")
    return signature


def check_signer(signer: Signer, *, configured_kid: str | None = None) -> None:
    """Raise ``AssertionError`` unless ``signer`` behaves as the ``Signer`` protocol says.

    ``configured_kid``: the key id the signer was configured with; without it the key id
    must be the RFC 7638 thumbprint of the public key.
    """
    _require(isinstance(signer, Signer), f"{type(signer).__name__} is not a Signer")
    _require(
        not inspect.iscoroutinefunction(signer.sign),
        f"{type(signer).__name__}.sign is async: an AsyncSigner is not a Signer",
    )
    alg = signer.algorithm
    _require(isinstance(alg, Alg), f"algorithm is {alg!r}, not an Alg")
    jwk = signer.public_jwk()
    _require(isinstance(jwk, PublicJwk), f"public_jwk() returned {type(jwk).__name__}")
    members = jwk.to_dict()
    _require(members.get("alg") == alg.value, f"public JWK alg {members.get('alg')} != {alg}")
    _require(members.get("kty") == alg.kty, f"public JWK kty {members.get('kty')} != {alg.kty}")
    if alg.crv is not None:
        _require(members.get("crv") == alg.crv, f"public JWK crv {members.get('crv')} != {alg.crv}")
    _require(
        not {"d", "p", "q", "dp", "dq", "qi", "k"} & members.keys(),
        "public JWK carries private members",
    )
    _require(
        members.get("kid") == signer.key_id,
        f"public JWK kid {members.get('kid')!r} != key_id {signer.key_id!r}",
    )
    thumbprint = _thumbprint(_required_members(members))
    _require(jwk.thumbprint() == thumbprint, "PublicJwk.thumbprint() disagrees with RFC 7638")
    expected_kid = configured_kid if configured_kid is not None else thumbprint
    _require(
        signer.key_id == expected_kid,
        f"key_id {signer.key_id!r} is not the "
        + ("configured kid" if configured_kid is not None else "RFC 7638 thumbprint")
        + f" {expected_kid!r}",
    )
    again = signer.public_jwk()
    _require(again == jwk and again.thumbprint() == thumbprint, "public JWK is not stable")
    _require(signer.key_id == expected_kid, "key_id is not stable")

    verify = independent_verifier(jwk)
    size = expected_signature_size(jwk)
    messages = {
        "b'message'": b"message",
        "b''": b"",
        "1 MiB": _LARGE,
        "binary": bytes(range(256)),
    }
    signatures: dict[str, bytes] = {}
    for what, data in messages.items():
        signature = _sign(signer, data, what)
        _require(
            len(signature) == size,
            f"{alg.value} signature of {what} is {len(signature)} bytes, JOSE says {size}"
            + (" (DER, not raw r||s?)" if signature[:1] == b"\x30" and alg in _EC else ""),
        )
        _require(verify(data, signature), f"{alg.value} signature of {what} does not verify")
        signatures[what] = signature
    if alg in _EC:
        half = size // 2
        for what, signature in signatures.items():
            r = int.from_bytes(signature[:half], "big")
            s = int.from_bytes(signature[half:], "big")
            _require(
                0 < r < _ORDERS[alg] and 0 < s < _ORDERS[alg],
                f"ECDSA signature of {what} is not raw r||s",
            )

    _require(
        signatures["b'message'"] != signatures["b''"],
        "signatures of different data are equal",
    )
    tampered = b"messagf"
    _require(
        not verify(tampered, signatures["b'message'"]),
        "a signature verifies for tampered data",
    )
    bad = bytearray(signatures["b'message'"])
    bad[len(bad) // 2] ^= 0x01
    _require(not verify(b"message", bytes(bad)), "a tampered signature verifies")

    for misuse in ("text", None, 42):
        try:
            signer.sign(misuse)  # type: ignore[arg-type]
        except TypeError:
            continue
        except Exception as exc:
            _fail(f"sign({type(misuse).__name__}) raised {type(exc).__name__}, not TypeError")
        _fail(f"sign({type(misuse).__name__}) did not raise TypeError")
