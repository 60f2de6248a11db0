"""PyJWT against our compact JWS code on the token path (the measurement behind
``docs/jose.md``): decode + verify of one Ed25519 agent token, and minting one."""

from __future__ import annotations

import json
from typing import Any

import jwt as pyjwt
from cryptography.hazmat.primitives.asymmetric import ed25519
from jwt.algorithms import Algorithm, OKPAlgorithm

from aauth_core.algorithms import Alg
from aauth_core.jwk import PublicJwk
from aauth_core.jws import decode_compact, encode_compact, verify_jws
from benchmarks.harness import Operation, run_rounds, summarise, table


class _SignerAlgorithm(Algorithm):
    """What signing through PyJWT with an external Signer takes: a custom algorithm."""

    def prepare_key(self, key: Any) -> Any:
        return key

    def sign(self, msg: bytes, key: Any) -> bytes:
        return key.sign(msg)  # type: ignore[no-any-return]

    def verify(self, msg: bytes, key: Any, sig: bytes) -> bool:  # pragma: no cover
        raise NotImplementedError

    @staticmethod
    def to_jwk(key_obj: Any, as_dict: bool = False) -> Any:  # pragma: no cover
        raise NotImplementedError

    @staticmethod
    def from_jwk(jwk: Any) -> Any:  # pragma: no cover
        raise NotImplementedError


class _Signer:
    def __init__(self, key: ed25519.Ed25519PrivateKey, jwk: PublicJwk) -> None:
        self._sign = key.sign
        self.key_id = jwk.thumbprint()
        self.algorithm = Alg.ED25519
        self._jwk = jwk

    def public_jwk(self) -> PublicJwk:
        return self._jwk

    def sign(self, data: bytes) -> bytes:
        return self._sign(data)


def operations() -> list[Operation]:
    key = ed25519.Ed25519PrivateKey.generate()
    from aauth_core.b64 import b64url_encode
    from cryptography.hazmat.primitives import serialization

    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    jwk = PublicJwk.from_raw_ed25519(raw)
    signer = _Signer(key, jwk)
    claims = {
        "iss": "https://agent.example", "dwk": "aauth-agent.json", "sub": "aauth:a@agent.example",
        "cnf": {"jwk": jwk.to_dict()}, "jti": "x" * 22, "iat": 1_800_000_000, "exp": 1_800_003_600,
    }
    token = encode_compact({"typ": "aa-agent+jwt"}, claims, signer)
    jws_api = pyjwt.PyJWS()
    jws_api.register_algorithm("Ed25519", OKPAlgorithm())
    signing_api = pyjwt.PyJWS()
    signing_api.register_algorithm("Ed25519", _SignerAlgorithm())
    pub = key.public_key()
    message = token.rsplit(".", 1)[0].encode()
    sig = key.sign(message)
    payload = json.dumps(claims, separators=(",", ":")).encode()

    def ours_decode() -> None:
        verify_jws(decode_compact(token), jwk)

    def pyjwt_decode() -> None:
        jws_api.decode_complete(token, pub, algorithms=["Ed25519"])

    return [
        Operation("raw Ed25519 verify (cryptography)", lambda: pub.verify(sig, message), group="jose"),
        Operation("ours: decode + verify", ours_decode, baseline="raw Ed25519 verify (cryptography)"),
        Operation("PyJWT: decode_complete", pyjwt_decode, baseline="raw Ed25519 verify (cryptography)"),
        Operation("raw Ed25519 sign (cryptography)", lambda: key.sign(message), group="jose"),
        Operation(
            "ours: encode_compact", lambda: encode_compact({"typ": "aa-agent+jwt"}, claims, signer),
            baseline="raw Ed25519 sign (cryptography)",
        ),
        Operation(
            "PyJWT: encode (Signer algorithm)",
            lambda: signing_api.encode(payload, signer, algorithm="Ed25519", headers={"typ": "aa-agent+jwt", "kid": signer.key_id}),
            baseline="raw Ed25519 sign (cryptography)",
        ),
    ]


if __name__ == "__main__":
    ops = operations()
    run_rounds(ops, rounds=5, seconds_per_op=0.3)
    print(table(summarise(ops)))
