"""aauth_backends: everything that holds a private key, behind one narrow ``Signer`` protocol.

- :class:`Signer` (defined in core), :class:`KeyStore`, :class:`AsyncSigner` and
  :class:`AsyncSignerAdapter`: the protocols (:mod:`aauth_backends.interfaces`).
- :class:`CryptographySigner` (Ed25519, ES256, ES384, PS256, RS256) and
  :class:`SodiumSigner` (Ed25519 through libsodium): software keys.
- :class:`MemoryKeyStore` (``software:<name>``) and :class:`FileKeyStore` (``file:<path>``).
- :func:`open_signer`: resolve a key reference from configuration (``software:``,
  ``file:``, ``pkcs11:``) to a signer, with no fallback between backends.
- :mod:`aauth_backends.testing`: the conformance check every signer passes.
"""

from __future__ import annotations

from aauth_backends.errors import (
    BackendError,
    HardwareError,
    InvalidKeyMaterial,
    InvalidKeyReference,
    KeyAmbiguous,
    KeyExists,
    KeyNotFound,
    MechanismUnsupported,
    UnsupportedKeyType,
    WrongPassphrase,
)
from aauth_backends.interfaces import (
    AsyncSigner,
    AsyncSignerAdapter,
    KeyInfo,
    KeyRef,
    KeyStore,
    Signer,
)
from aauth_backends.sodium import SodiumSigner
from aauth_backends.software import CryptographySigner
from aauth_backends.stores import FileKeyStore, MemoryKeyStore, load_key_file
from aauth_backends.uris import (
    Engine,
    FileUri,
    KeyUri,
    Pkcs11Uri,
    SoftwareUri,
    open_signer,
    parse_key_ref,
)

__all__ = [
    # protocols
    "Signer",
    "KeyStore",
    "KeyRef",
    "KeyInfo",
    "AsyncSigner",
    "AsyncSignerAdapter",
    # software signers
    "CryptographySigner",
    "SodiumSigner",
    "Engine",
    # stores and references
    "MemoryKeyStore",
    "FileKeyStore",
    "load_key_file",
    "open_signer",
    "parse_key_ref",
    "KeyUri",
    "SoftwareUri",
    "FileUri",
    "Pkcs11Uri",
    # errors
    "BackendError",
    "KeyNotFound",
    "KeyAmbiguous",
    "KeyExists",
    "InvalidKeyReference",
    "InvalidKeyMaterial",
    "WrongPassphrase",
    "UnsupportedKeyType",
    "MechanismUnsupported",
    "HardwareError",
]
