"""Public-key signature verification for JOSE algorithms (pure: no keys are held here).

Ed25519 goes through PyNaCl (libsodium), which verifies about twice as fast as OpenSSL
here (``docs/benchmarks.md``); ECDSA and RSA go through ``cryptography``. Signatures are
in JOSE wire format: raw ``r||s`` for ECDSA.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import nacl.bindings
import nacl.exceptions
import nacl.signing
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from aauth_core.algorithms import Alg
from aauth_core.b64 import b64url_decode
from aauth_core.errors import InvalidKey, SignatureFailure
from aauth_core.jwk import PublicJwk

__all__ = ["Verifier", "verifier_for", "verify_signature", "SIGNATURE_SIZES"]

#: Expected signature sizes in bytes (RSA: the modulus size).
SIGNATURE_SIZES = {Alg.ED25519: 64, Alg.ES256: 64, Alg.ES384: 96}

Verifier = Callable[[bytes, bytes], bool]
"""``verifier(data, signature) -> bool``: True only for a valid signature."""


@functools.lru_cache(maxsize=4096)
def verifier_for(jwk: PublicJwk) -> Verifier:
    """A verification function for ``jwk`` (cached: key parsing is not free)."""
    alg = jwk.alg
    try:
        if alg is Alg.ED25519:
            return _ed25519(b64url_decode(jwk.x or ""))
        if alg in (Alg.ES256, Alg.ES384):
            return _ecdsa(jwk, alg)
        return _rsa(jwk, alg)
    except (ValueError, nacl.exceptions.CryptoError) as exc:
        raise InvalidKey(f"{jwk.kty} key does not decode: {type(exc).__name__}") from exc


def verify_signature(jwk: PublicJwk, data: bytes, signature: bytes) -> None:
    """Raise ``SignatureFailure(invalid_signature)`` unless ``signature`` is valid."""
    if not verifier_for(jwk)(data, signature):
        raise SignatureFailure("signature does not verify")


def _ed25519(public: bytes) -> Verifier:
    nacl.signing.VerifyKey(public)  # validates the point encoding once
    open_signed = nacl.bindings.crypto_sign_open
    bad = nacl.exceptions.BadSignatureError

    def check(data: bytes, signature: bytes) -> bool:
        if len(signature) != 64:
            return False
        try:
            open_signed(signature + data, public)
        except bad:
            return False
        return True

    return check


def _ecdsa(jwk: PublicJwk, alg: Alg) -> Verifier:
    curve: ec.EllipticCurve
    digest: hashes.HashAlgorithm
    if alg is Alg.ES256:
        curve, digest, size = ec.SECP256R1(), hashes.SHA256(), 32
    else:
        curve, digest, size = ec.SECP384R1(), hashes.SHA384(), 48
    x = int.from_bytes(b64url_decode(jwk.x or ""), "big")
    y = int.from_bytes(b64url_decode(jwk.y or ""), "big")
    key = ec.EllipticCurvePublicNumbers(x, y, curve).public_key()
    algorithm = ec.ECDSA(digest)

    def check(data: bytes, signature: bytes) -> bool:
        if len(signature) != 2 * size:
            return False
        r = int.from_bytes(signature[:size], "big")
        s = int.from_bytes(signature[size:], "big")
        try:
            key.verify(encode_dss_signature(r, s), data, algorithm)
        except InvalidSignature:
            return False
        return True

    return check


def _rsa(jwk: PublicJwk, alg: Alg) -> Verifier:
    n = int.from_bytes(b64url_decode(jwk.n or ""), "big")
    e = int.from_bytes(b64url_decode(jwk.e or ""), "big")
    key = rsa.RSAPublicNumbers(e, n).public_key()
    size = (key.key_size + 7) // 8
    pad: padding.AsymmetricPadding
    if alg is Alg.PS256:
        # JOSE PS256 (RFC 7518 §3.5): MGF1 with SHA-256, salt length = hash length.
        pad = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    else:
        pad = padding.PKCS1v15()

    def check(data: bytes, signature: bytes) -> bool:
        if len(signature) != size:
            return False
        try:
            key.verify(signature, data, pad, hashes.SHA256())
        except InvalidSignature:
            return False
        return True

    return check
