"""Backend errors: a key that cannot be found, opened, decrypted or used.

Every backend failure is a :class:`BackendError` (an :class:`~aauth_core.errors.AAuthError`
with code ``server_error`` and status 500): a server whose own key fails answers 500, and
nothing about the key leaks to the peer. Messages name the key reference (with any PIN in a
``pkcs11:`` URI redacted) and never a passphrase, a PIN or key material.
"""

from __future__ import annotations

import re
from typing import ClassVar

from aauth_core.errors import AAuthError

__all__ = [
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
    "safe_ref",
]

_MAX_REF_CHARS = 200
# Query attributes whose value is a secret: RFC 7512 ``pin-value`` and anything that looks
# like a passphrase, a password, a PIN or a secret.
_SECRET_PARAM = re.compile(r"(?i)([?&;](?:[a-z0-9_-]*(?:pin|pass|secret)[a-z0-9_-]*)=)[^&;#]*")


def safe_ref(ref: object) -> str:
    """A key reference fit for a message or a log line.

    Secret-looking parameters are redacted, non-printable and non-ASCII characters are
    escaped, and long references are shortened.
    """
    if not isinstance(ref, str):
        return f"<{type(ref).__name__}>"
    text = _SECRET_PARAM.sub(r"\1***", ref)
    text = ascii(text)[1:-1]
    if len(text) > _MAX_REF_CHARS:
        text = text[:_MAX_REF_CHARS] + "..."
    return text


class BackendError(AAuthError):
    """A key could not be found, opened or used. Answered as 500 ``server_error``."""

    default_code: ClassVar[str] = "server_error"
    default_status: ClassVar[int] = 500

    def __init__(
        self,
        detail: str,
        *,
        ref: object = None,
        code: str | None = None,
        status: int | None = None,
    ):
        self.ref: str | None = None if ref is None else safe_ref(ref)
        if self.ref is not None:
            detail = f"{detail} (key {self.ref})"
        super().__init__(detail, code=code, status=status)


class KeyNotFound(BackendError):
    """No key answers to the reference."""


class KeyAmbiguous(BackendError):
    """More than one key answers to the reference (a ``pkcs11:`` URI matching several objects)."""


class KeyExists(BackendError):
    """A key with that name already exists; stores never overwrite a key."""


class InvalidKeyReference(BackendError):
    """A key reference (URI or name) that does not parse or is refused (path escape, bad scheme)."""


class InvalidKeyMaterial(BackendError):
    """Key material that does not decode, is damaged, or is inconsistent (a JWK whose ``x``
    does not belong to its ``d``, a corrupted key file)."""


class WrongPassphrase(BackendError):
    """An encrypted key could not be decrypted: a wrong or missing passphrase (or PIN)."""


class UnsupportedKeyType(BackendError):
    """A key that this backend or engine cannot sign with (an unsupported curve, RSA below
    2048 bits, a non-Ed25519 key for the PyNaCl engine, an algorithm that does not fit)."""


class MechanismUnsupported(BackendError):
    """A token that does not offer the mechanism an algorithm needs."""


class HardwareError(BackendError):
    """A device or token failed; raised ``from`` the underlying library error."""
