"""The YubiKey profile (PIV through Yubico's ykcs11). Not testable without a device.

- PIV slots are fixed CKA_IDs: 9a=1 (authentication, PIN once per session: the slot for
  a service that signs many requests), 9c=2 (digital signature, PIN *always*: the key
  has CKA_ALWAYS_AUTHENTICATE, so the backend passes the PIN with every signature),
  9d=3 (key management), 9e=4 (card authentication, no PIN).
- The device does one operation at a time: pool size 1, direct loading with the module
  lock (ykcs11 installs no-op mutexes under ``C_Initialize(NULL)``).
- ES256 works on every YubiKey 4/5; Ed25519 needs firmware 5.7+ *and* ykcs11 2.6.0+
  (Debian 12 ships 2.2.0); P-521 is not supported.
- A touch policy makes ``C_Sign`` wait for the button (about 15 s); ykcs11 reports a
  missing touch as CKR_USER_NOT_LOGGED_IN / CKR_FUNCTION_FAILED. With ``touch_policy``
  that is reported as :class:`UserPresenceTimeout` (not mistaken for a logout, no
  re-login), and signing from a running event loop is refused (use
  ``AsyncSignerAdapter``, which signs in a worker thread).
"""

from __future__ import annotations

import os

from aauth_backends.errors import InvalidKeyReference, UnsupportedKeyType
from aauth_backends.pkcs11.config import Pkcs11Config
from aauth_backends.uris import Pkcs11Uri
from aauth_core.algorithms import Alg

__all__ = [
    "PIV_SLOTS",
    "YKCS11_PATHS",
    "YUBIKEY_BORROW_TIMEOUT",
    "piv_key_ref",
    "yubikey_token_label",
    "yubikey_config",
    "yubikey_algorithms",
    "check_yubikey_alg",
]

#: PIV slot name -> ykcs11 CKA_ID.
PIV_SLOTS: dict[str, int] = {"9a": 1, "9c": 2, "9d": 3, "9e": 4}
YKCS11_PATHS = ("/usr/lib/x86_64-linux-gnu/libykcs11.so", "/usr/local/lib/libykcs11.so")
#: Longer than ykcs11's ~15 s touch wait, so a waiting touch is not cut short by the pool.
YUBIKEY_BORROW_TIMEOUT = 30.0


def yubikey_token_label(serial: int | str) -> str:
    """ykcs11's token label: ``YubiKey PIV #<serial>``."""
    return f"YubiKey PIV #{serial}"


def piv_key_ref(slot: str, *, serial: int | str | None = None, alg: Alg | None = None) -> str:
    """The ``pkcs11:`` reference of the private key in PIV ``slot`` (``"9a"`` … ``"9e"``)."""
    slot = slot.lower().removeprefix("0x")
    if slot not in PIV_SLOTS:
        raise InvalidKeyReference(f"PIV slot must be one of {sorted(PIV_SLOTS)}", ref=slot)
    attributes: list[tuple[str, bytes]] = []
    if serial is not None:
        attributes.append(("token", yubikey_token_label(serial).encode("utf-8")))
    attributes += [("id", bytes([PIV_SLOTS[slot]])), ("type", b"private")]
    if alg is not None and alg.kty == "RSA":
        attributes.append(("x-alg", alg.value.encode("ascii")))
    return Pkcs11Uri(attributes=tuple(attributes)).to_uri()


def yubikey_algorithms(
    firmware: tuple[int, int, int], ykcs11_version: tuple[int, int, int]
) -> frozenset[Alg]:
    """What a YubiKey with ``firmware`` signs through ``ykcs11_version``."""
    algs = {Alg.ES256, Alg.ES384, Alg.PS256, Alg.RS256}
    if firmware >= (5, 7, 0) and ykcs11_version >= (2, 6, 0):
        algs.add(Alg.ED25519)
    return frozenset(algs)


def check_yubikey_alg(
    alg: Alg, firmware: tuple[int, int, int], ykcs11_version: tuple[int, int, int]
) -> Alg:
    if alg not in yubikey_algorithms(firmware, ykcs11_version):
        raise UnsupportedKeyType(
            f"{alg.value} on a YubiKey needs firmware 5.7+ and ykcs11 2.6.0+ "
            f"(have firmware {'.'.join(map(str, firmware))}, "
            f"ykcs11 {'.'.join(map(str, ykcs11_version))}); ES256 works everywhere"
        )
    return alg


def yubikey_config(
    *,
    serial: int | str | None = None,
    token_label: str | None = None,
    module_path: str | None = None,
    pin: str | None = None,
    pin_source: str | None = None,
    touch_policy: bool = False,
    borrow_timeout: float = YUBIKEY_BORROW_TIMEOUT,
) -> Pkcs11Config:
    """A :class:`Pkcs11Config` for one YubiKey: pool size 1, direct-locked loading."""
    if module_path is None:
        module_path = next((p for p in YKCS11_PATHS if os.path.exists(p)), YKCS11_PATHS[0])
    if token_label is None and serial is not None:
        token_label = yubikey_token_label(serial)
    return Pkcs11Config(
        module_path=module_path,
        token_label=token_label,
        pin=pin,
        pin_source=pin_source,
        pool_size=1,
        borrow_timeout=borrow_timeout,
        loading="direct-locked",
        touch_policy=touch_policy,
    )
