""":class:`Pkcs11Config`: how to reach one token (module, token, PIN, pool).

The PIN is read when logging in, not when the config is made: from ``pin``, else a
pin-source file (which may be rotated), else ``$AAUTH_PKCS11_PIN``. It is kept out of
``repr`` and every message.
"""

from __future__ import annotations

import os
from typing import Any

from attrs import field, frozen, validators

from aauth_backends.pkcs11.errors import ModuleLoadError, PinUnavailable
from aauth_backends.pkcs11.module import LOADINGS, Loading

__all__ = ["Pkcs11Config", "MODULE_ENV", "PIN_ENV"]

MODULE_ENV = "AAUTH_PKCS11_MODULE"
PIN_ENV = "AAUTH_PKCS11_PIN"
_MAX_PIN_FILE = 4096


def _positive_or_none(_inst: object, attribute: Any, value: int | None) -> None:
    if value is not None and (not isinstance(value, int) or value < 1):
        raise ValueError(f"{attribute.name} must be a positive integer")


def _check_loading(_inst: object, _attribute: object, value: object) -> None:
    if value not in LOADINGS:
        raise ValueError(f"loading must be one of {LOADINGS}, not {value!r}")


@frozen(kw_only=True)
class Pkcs11Config:
    """How to reach one token. The PIN is kept out of ``repr`` and every message.

    ``module_path`` defaults to ``$AAUTH_PKCS11_MODULE``; the PIN comes from ``pin``,
    else ``pin_source`` (``file:/path`` or a path; the first line is the PIN), else
    ``$AAUTH_PKCS11_PIN``. ``pool_size`` defaults to the CPU count. ``touch_policy``:
    the token's keys need a touch (YubiKey), so a missing confirmation is reported as
    :class:`UserPresenceTimeout` and not mistaken for a logout.
    """

    module_path: str | None = None
    token_label: str | None = None
    token_serial: str | None = None
    pin: str | None = field(default=None, repr=False)
    pin_source: str | None = None
    pool_size: int | None = field(default=None, validator=_positive_or_none)
    borrow_timeout: float = 5.0
    loading: Loading = field(default="auto", validator=_check_loading)
    rsa_bits: int = field(default=2048, validator=validators.in_((2048, 3072, 4096)))
    touch_policy: bool = False

    def __attrs_post_init__(self) -> None:
        if self.token_label is None and self.token_serial is None:
            raise ValueError("a PKCS#11 token is selected by token_label and/or token_serial")
        if self.pin is not None and self.pin_source is not None:
            raise ValueError("pin and pin_source exclude each other")
        if not self.borrow_timeout > 0:
            raise ValueError("borrow_timeout must be positive")

    def resolved_module_path(self) -> str:
        path = self.module_path or os.environ.get(MODULE_ENV)
        if not path:
            raise ModuleLoadError(f"no PKCS#11 module configured (module_path or ${MODULE_ENV})")
        return path

    def read_pin(self) -> str | None:
        """The PIN, read when logging in (a pin-source file may be rotated)."""
        if self.pin is not None:
            return self.pin
        if self.pin_source is not None:
            return _read_pin_source(self.pin_source)
        return os.environ.get(PIN_ENV)


def _read_pin_source(source: str) -> str:
    if source.startswith("|"):
        raise PinUnavailable("pin-source commands ('|…') are not run; use file: or a path")
    path = source[len("file:") :] if source.startswith("file:") else source
    if path.startswith("//"):
        path = path[2:] if path.startswith("///") else "/" + path.partition("/")[2]
    try:
        with open(path, "rb") as handle:
            data = handle.read(_MAX_PIN_FILE + 1)
    except OSError as exc:
        raise PinUnavailable(f"cannot read the pin-source file ({type(exc).__name__})") from None
    if len(data) > _MAX_PIN_FILE:
        raise PinUnavailable("the pin-source file is too large")
    try:
        return data.decode("utf-8").splitlines()[0] if data.strip() else ""
    except UnicodeDecodeError:
        raise PinUnavailable("the pin-source file is not UTF-8") from None
