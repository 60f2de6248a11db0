"""The key-level signing protocol.

It is defined here, in the pure core, because core's JWS code signs *through* it; the
backends (``aauth_backends``: software, PyNaCl, PKCS#11) implement it and re-export it as
``aauth_backends.Signer``. One narrow protocol at the key level, no dispatcher
(``../shared/design/ARCHITECTURE.md``).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from aauth_core.algorithms import Alg
from aauth_core.jwk import PublicJwk

__all__ = ["Signer"]


@runtime_checkable
class Signer(Protocol):
    """Produces JOSE-format signatures (raw ``r||s`` for ECDSA) with one private key."""

    @property
    def key_id(self) -> str:
        """RFC 7638 thumbprint of the public key unless configured otherwise."""
        ...

    @property
    def algorithm(self) -> Alg:
        """The fully specified JOSE algorithm this key signs with."""
        ...

    def public_jwk(self) -> PublicJwk:
        """The public key, with ``alg`` (and ``kid`` = :attr:`key_id`)."""
        ...

    def sign(self, data: bytes) -> bytes:
        """Sign ``data``; the result is in JOSE wire format."""
        ...
