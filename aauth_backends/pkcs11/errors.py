"""PKCS#11 failures, each a :class:`~aauth_backends.errors.BackendError`.

Messages name the token (label) and the key (label or CKA_ID) and never a PIN. The PIN
errors are never retried by the backend: every attempt with a wrong PIN burns a try.
"""

from __future__ import annotations

from aauth_backends.errors import BackendError, HardwareError, WrongPassphrase

__all__ = [
    "WrongPin",
    "PinLocked",
    "PinUnavailable",
    "TokenNotFound",
    "TokenRemoved",
    "BorrowTimeout",
    "UserPresenceTimeout",
    "Pkcs11Failure",
    "ModuleLoadError",
    "StoreClosed",
]


class WrongPin(WrongPassphrase):
    """The token refused the PIN (incorrect, invalid or wrong length). Never retried."""


class PinLocked(BackendError):
    """The user PIN is locked (or expired): unlock it with the SO PIN / PUK. Never retried."""


class PinUnavailable(WrongPassphrase):
    """No PIN is configured, or its ``pin-source`` cannot be read."""


class TokenNotFound(BackendError):
    """No token (or more than one) matches the configured label / serial."""


class TokenRemoved(HardwareError):
    """The token is gone or failing: removed, not present, device error, module finalised."""


class BorrowTimeout(BackendError):
    """Every session of the pool stayed busy for longer than the borrow timeout."""


class UserPresenceTimeout(BackendError):
    """A key with a touch (or PIN-always) policy was not confirmed on the device in time."""


class Pkcs11Failure(HardwareError):
    """Any other PKCS#11 error; the message names the PKCS#11 error."""


class ModuleLoadError(BackendError):
    """The PKCS#11 module cannot be loaded (missing file, wrong loading option)."""


class StoreClosed(BackendError):
    """The key store was closed; its signers cannot sign any more."""
