"""A minimal test-only Ed25519/ES256 signer built straight on ``cryptography``.

Core tests use it so that they do not depend on ``aauth_backends``; the backends have
their own conformance suite.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from aauth_core.algorithms import Alg
from aauth_core.b64 import b64url_decode
from aauth_core.jwk import PublicJwk


class JwkSigner:
    def __init__(self, private_jwk: dict[str, Any], *, kid: str | None = None) -> None:
        public = {k: v for k, v in private_jwk.items() if k not in ("d", "kid", "use")}
        self._jwk = PublicJwk.from_dict(public)
        self._kid = kid or self._jwk.thumbprint()
        d = b64url_decode(private_jwk["d"])
        if self._jwk.alg is Alg.ED25519:
            key = ed25519.Ed25519PrivateKey.from_private_bytes(d)
            self._sign = key.sign
        elif self._jwk.alg is Alg.ES256:
            ec_key = ec.derive_private_key(int.from_bytes(d, "big"), ec.SECP256R1())

            def sign(data: bytes) -> bytes:
                r, s = decode_dss_signature(ec_key.sign(data, ec.ECDSA(hashes.SHA256())))
                return r.to_bytes(32, "big") + s.to_bytes(32, "big")

            self._sign = sign
        else:  # pragma: no cover - tests only use these two
            raise ValueError(self._jwk.alg)

    @property
    def key_id(self) -> str:
        return self._kid

    @property
    def algorithm(self) -> Alg:
        return self._jwk.alg

    def public_jwk(self) -> PublicJwk:
        return self._jwk.with_kid(self._kid)

    def sign(self, data: bytes) -> bytes:
        return self._sign(data)


def generated_ed25519() -> JwkSigner:
    from cryptography.hazmat.primitives import serialization

    from aauth_core.b64 import b64url_encode

    key = ed25519.Ed25519PrivateKey.generate()
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return JwkSigner(
        {
            "kty": "OKP",
            "crv": "Ed25519",
            "alg": "Ed25519",
            "x": b64url_encode(pub),
            "d": b64url_encode(raw),
        }
    )
