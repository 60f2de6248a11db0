"""From a PKCS#11 failure (:class:`_lib.P11Failure`) to the :class:`BackendError` callers see.

Which faults the store recovers from (a new session, login or key lookup, then one
retry), which mean the token is gone (the pool starts again on the next use), and the
error each fault becomes. Messages name the token and the key, never the PIN.
"""

from __future__ import annotations

from aauth_backends.errors import (
    BackendError,
    KeyAmbiguous,
    KeyNotFound,
    MechanismUnsupported,
    UnsupportedKeyType,
)
from aauth_backends.pkcs11 import _lib
from aauth_backends.pkcs11.errors import (
    PinLocked,
    Pkcs11Failure,
    TokenNotFound,
    TokenRemoved,
    UserPresenceTimeout,
    WrongPin,
)
from aauth_backends.pkcs11.signer import Pkcs11KeyDetails

__all__ = ["RECOVERABLE", "TOKEN_GONE", "backend_error"]

#: Stale session, lost login, stale key handle: recovered once, then retried.
RECOVERABLE = frozenset({_lib.Fault.SESSION, _lib.Fault.NOT_LOGGED_IN, _lib.Fault.OBJECT})
#: Removed / failing token or finalised module: the pool restarts on the next use.
TOKEN_GONE = frozenset({_lib.Fault.DEVICE, _lib.Fault.NOT_INITIALIZED})


def backend_error(
    failure: _lib.P11Failure,
    what: str,
    details: Pkcs11KeyDetails | None,
    *,
    token_name: str,
    module_path: str,
    touch_policy: bool,
) -> BackendError:
    """The error for ``failure`` while doing ``what`` (on the key ``details``, if any)."""
    key = f", key {details.describe()}" if details is not None else ""
    where = f"token {token_name}{key}"
    ref = details.ref if details is not None else None
    fault = failure.fault
    text = f"{what} failed on {where}: {failure.name}"
    if fault is _lib.Fault.PIN_INCORRECT:
        return WrongPin(f"token {token_name} refused the PIN ({failure.name})")
    if fault is _lib.Fault.PIN_LOCKED:
        return PinLocked(f"the user PIN of token {token_name} is locked or expired")
    if fault in TOKEN_GONE:
        return TokenRemoved(
            f"{what}: token {token_name} is removed or failing ({failure.name}){key}",
            ref=ref,
        )
    if fault in (_lib.Fault.NO_SUCH_TOKEN, _lib.Fault.MANY_TOKENS):
        many = fault is _lib.Fault.MANY_TOKENS
        return TokenNotFound(
            f"{'several tokens match' if many else 'no token matches'} "
            f"{token_name} in module {module_path}"
        )
    if fault is _lib.Fault.NO_SUCH_KEY:
        return KeyNotFound(f"no private key matches on {where}", ref=ref)
    if fault is _lib.Fault.MANY_KEYS:
        return KeyAmbiguous(f"several private keys match on {where}", ref=ref)
    if fault is _lib.Fault.MECHANISM:
        return MechanismUnsupported(text, ref=ref)
    if fault is _lib.Fault.KEY_TYPE:
        return UnsupportedKeyType(text, ref=ref)
    if touch_policy and fault in (_lib.Fault.FUNCTION_FAILED, _lib.Fault.NOT_LOGGED_IN):
        return UserPresenceTimeout(
            f"{what} on {where} was not confirmed on the device (touch or PIN)", ref=ref
        )
    return Pkcs11Failure(text, ref=ref)
