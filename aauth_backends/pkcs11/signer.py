""":class:`Pkcs11Signer`: a private key that stays on a PKCS#11 token.

The public JWK was read from the token when the signer was opened, and ``key_id`` is its
RFC 7638 thumbprint. ``sign`` borrows a pooled session, looks the key up by CKA_ID in that
session (once per session) and signs: Ed25519 with CKM_EDDSA, ES256/ES384 by hashing in
software and CKM_ECDSA (raw ``r||s`` comes out, as JOSE wants), PS256 with
CKM_SHA256_RSA_PKCS_PSS (SHA-256, MGF1-SHA-256, salt 32), RS256 with CKM_SHA256_RSA_PKCS.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, NoReturn

from attrs import frozen

from aauth_core.algorithms import Alg
from aauth_core.jwk import PublicJwk

if TYPE_CHECKING:
    from aauth_backends.pkcs11.store import Pkcs11KeyStore

__all__ = ["Pkcs11KeyDetails", "Pkcs11Signer", "SignPlan"]


@frozen(kw_only=True)
class Pkcs11KeyDetails:
    """Where a key lives and how it is used (for logs, diagnostics and the CLI)."""

    ref: str
    token_label: str
    token_serial: str
    label: str | None
    cka_id: bytes
    key_type: int
    alg: Alg
    mechanism: int
    always_authenticate: bool
    loading: str
    module_path: str

    def describe(self) -> str:
        """``label 'x', id 0a0b…`` for messages."""
        parts = []
        if self.label:
            parts.append(f"label {self.label!r}")
        if self.cka_id:
            parts.append(f"id {self.cka_id.hex()}")
        return ", ".join(parts) or "unnamed key"


@frozen(kw_only=True)
class SignPlan:
    """What every signature with one key needs, worked out once when the signer opens:
    the key-handle cache key and python-pkcs11's mechanism and parameters."""

    details: Pkcs11KeyDetails
    cache_key: tuple[bytes, str | None, int]
    mechanism: Any
    param: Any


class Pkcs11Signer:
    """Signs with one token key through its :class:`Pkcs11KeyStore`'s session pool."""

    engine = "pkcs11"
    __slots__ = ("_details", "_hash", "_jwk", "_key_id", "_plan", "_size", "_store")

    def __init__(
        self, *, store: Pkcs11KeyStore, details: Pkcs11KeyDetails, public: PublicJwk
    ) -> None:
        self._store = store
        self._details = details
        self._key_id = public.thumbprint()
        self._jwk = public.with_kid(self._key_id)
        self._hash = {Alg.ES256: hashlib.sha256, Alg.ES384: hashlib.sha384}.get(details.alg)
        self._size = {Alg.ES256: 64, Alg.ES384: 96, Alg.ED25519: 64}.get(details.alg, 0)
        self._plan = store._plan(details)

    @property
    def key_id(self) -> str:
        return self._key_id

    @property
    def algorithm(self) -> Alg:
        return self._details.alg

    @property
    def details(self) -> Pkcs11KeyDetails:
        return self._details

    @property
    def store(self) -> Pkcs11KeyStore:
        return self._store

    def public_jwk(self) -> PublicJwk:
        return self._jwk

    def sign(self, data: bytes) -> bytes:
        """Sign ``data``; JOSE wire format. Raises a ``BackendError`` on token failure."""
        if type(data) is not bytes:
            if not isinstance(data, bytes | bytearray | memoryview):
                raise TypeError(f"data to sign must be bytes, not {type(data).__name__}")
            data = bytes(data)
        payload = data if self._hash is None else self._hash(data).digest()
        signature = self._store._sign_planned(self._plan, payload)
        if self._size and len(signature) != self._size:
            self._store._bad_signature(self._details, len(signature))
        return signature

    def __repr__(self) -> str:
        d = self._details
        return (
            f"Pkcs11Signer(alg={d.alg.value!r}, key_id={self._key_id!r}, "
            f"token={d.token_label!r}, {d.describe()}, loading={d.loading!r})"
        )

    def __reduce__(self) -> NoReturn:
        raise TypeError("Pkcs11Signer is bound to a token session pool and cannot be pickled")
