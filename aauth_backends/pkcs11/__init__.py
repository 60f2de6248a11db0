"""PKCS#11 signing backend: keys that stay on a token (SoftHSM2, HSMs, YubiKey PIV).

- :class:`Pkcs11Config` and :class:`Pkcs11KeyStore` (a ``KeyStore``): module, token,
  PIN, session pool, thread-safe loading (``"proxy"`` / ``"direct-locked"`` / ``"auto"``).
- :class:`Pkcs11Signer`: a ``Signer`` whose private key never leaves the token.
- :mod:`aauth_backends.pkcs11.profiles`: the YubiKey (ykcs11) profile.
- :mod:`aauth_backends.pkcs11.errors`: the PKCS#11 failures (all ``BackendError``).

Inside: :mod:`.config` (:class:`Pkcs11Config`, PIN sources), :mod:`.store` (the store,
login, signing with recovery), :mod:`.faults` (PKCS#11 faults to errors), :mod:`.refs`
(``pkcs11:`` key references), :mod:`.lookup` (opening a key), :mod:`.provisioning`
(generating, importing, listing keys), :mod:`.pool`, :mod:`.module`, :mod:`.keys`.

Needs ``python-pkcs11`` (``pip install aauth[pkcs11]``).
"""

from __future__ import annotations

from aauth_backends.pkcs11.config import MODULE_ENV, PIN_ENV, Pkcs11Config
from aauth_backends.pkcs11.errors import (
    BorrowTimeout,
    ModuleLoadError,
    PinLocked,
    PinUnavailable,
    Pkcs11Failure,
    StoreClosed,
    TokenNotFound,
    TokenRemoved,
    UserPresenceTimeout,
    WrongPin,
)
from aauth_backends.pkcs11.module import LOADINGS, P11KIT_PROXY, Loading, resolve_loading
from aauth_backends.pkcs11.signer import Pkcs11KeyDetails, Pkcs11Signer
from aauth_backends.pkcs11.store import Pkcs11KeyStore

__all__ = [
    "Pkcs11Config",
    "Pkcs11KeyStore",
    "Pkcs11Signer",
    "Pkcs11KeyDetails",
    "Loading",
    "LOADINGS",
    "P11KIT_PROXY",
    "resolve_loading",
    "MODULE_ENV",
    "PIN_ENV",
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
