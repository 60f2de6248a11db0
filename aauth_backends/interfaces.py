"""The backend protocols: :class:`Signer` (from core), :class:`KeyStore`, :class:`AsyncSigner`.

``Signer`` is defined in :mod:`aauth_core.signer` because core's JWS code signs through
it; it is re-exported here. A :class:`KeyStore` turns a key reference into a ``Signer``.
:class:`AsyncSigner` exists for drivers only (flows never see a signer at all: signing is
an action the driver performs).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol, TypeAlias, runtime_checkable

from attrs import frozen

from aauth_core.algorithms import Alg
from aauth_core.jwk import PublicJwk
from aauth_core.signer import Signer

__all__ = [
    "Signer",
    "KeyRef",
    "KeyInfo",
    "KeyStore",
    "AsyncSigner",
    "AsyncSignerAdapter",
]

KeyRef: TypeAlias = str
"""A key reference as configuration names it: ``software:<name>``, ``file:<path>``,
``pkcs11:token=…;object=…`` (see :mod:`aauth_backends.uris`)."""


@frozen(kw_only=True)
class KeyInfo:
    """What a store knows about one key, without opening it for signing."""

    ref: KeyRef
    name: str
    alg: Alg
    key_id: str
    engine: str
    encrypted: bool = False


@runtime_checkable
class KeyStore(Protocol):
    """Holds private keys and hands out :class:`Signer` objects for them."""

    def get_signer(self, ref: KeyRef) -> Signer:
        """The signer for ``ref``; raises ``KeyNotFound`` or ``InvalidKeyReference``."""
        ...

    def list_keys(self) -> Sequence[KeyInfo]:
        """Every key in the store, in a stable order."""
        ...

    def generate(self, alg: Alg, name: str) -> KeyRef:
        """Create a new key called ``name``; raises ``KeyExists`` if the name is taken."""
        ...

    def import_private_key(self, private_key: Any, name: str, *, alg: Alg | None = None) -> KeyRef:
        """Store an existing private key (a ``cryptography`` private key object)."""
        ...


@runtime_checkable
class AsyncSigner(Protocol):
    """A signer for async drivers: ``await signer.sign(data)``."""

    @property
    def key_id(self) -> str: ...

    @property
    def algorithm(self) -> Alg: ...

    def public_jwk(self) -> PublicJwk: ...

    async def sign(self, data: bytes) -> bytes: ...


class AsyncSignerAdapter:
    """Run a blocking :class:`Signer` from async code.

    By default each signature runs in a worker thread (``asyncio.to_thread``) so that a
    slow device (an HSM, a YubiKey waiting for a touch) never blocks the event loop. For
    software keys, where a signature takes microseconds and the thread hop costs more than
    the signature, pass ``in_thread=False`` to sign inline.
    """

    __slots__ = ("_in_thread", "_signer")

    def __init__(self, signer: Signer, *, in_thread: bool = True) -> None:
        if not isinstance(signer, Signer):
            raise TypeError(f"expected a Signer, got {type(signer).__name__}")
        self._signer = signer
        self._in_thread = in_thread

    @property
    def signer(self) -> Signer:
        return self._signer

    @property
    def key_id(self) -> str:
        return self._signer.key_id

    @property
    def algorithm(self) -> Alg:
        return self._signer.algorithm

    def public_jwk(self) -> PublicJwk:
        return self._signer.public_jwk()

    async def sign(self, data: bytes) -> bytes:
        if self._in_thread:
            return await asyncio.to_thread(self._signer.sign, data)
        return self._signer.sign(data)

    def __repr__(self) -> str:
        return f"AsyncSignerAdapter({self._signer!r}, in_thread={self._in_thread})"
