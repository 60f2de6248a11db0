"""Private SoftHSM2 tokens for the PKCS#11 tests (nothing global is touched).

One directory per test process holds a ``softhsm2.conf`` (``library.reset_on_fork =
true``, so a forked child cannot use its parent's handles) and every token the tests
create; ``SOFTHSM2_CONF`` points at it before any module is loaded (SoftHSM reads it at
``C_Initialize``). Tokens are selected by label or serial, never by slot id.

Without ``softhsm2-util`` or ``libsofthsm2.so`` the PKCS#11 tests skip with one reason,
unless ``AAUTH_REQUIRE_SOFTHSM=1``: then they fail.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
from attrs import frozen

from aauth_backends.softhsm import SOFTHSM_MODULE, PrivateSoftHsm, softhsm_missing

__all__ = [
    "SOFTHSM_MODULE",
    "P11KIT_PROXY",
    "SoftHsm",
    "Token",
    "require_softhsm",
    "missing_reason",
]

P11KIT_PROXY = "/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so"
USER_PIN = "1234"
SO_PIN = "5678"
# SoftHSM's file store keeps the token flags in token.object as attribute
# CKA_OS_TOKENFLAGS (0x8000534B): type u64, kind u64 (2 = unsigned long), value u64.
_CKA_OS_TOKENFLAGS = 0x8000534B


def missing_reason() -> str | None:
    """Why SoftHSM2 tests cannot run here, or None."""
    missing = softhsm_missing()
    if missing is not None:
        return missing
    try:
        import pkcs11  # noqa: F401
    except ImportError:
        return "python-pkcs11 is not installed (pip install aauth[pkcs11])"
    return None


def require_softhsm() -> None:
    """Skip (or fail, with ``AAUTH_REQUIRE_SOFTHSM=1``) when SoftHSM2 is unavailable."""
    reason = missing_reason()
    if reason is None:
        return
    if os.environ.get("AAUTH_REQUIRE_SOFTHSM") == "1":
        pytest.fail(f"AAUTH_REQUIRE_SOFTHSM=1 but {reason}")
    pytest.skip(reason)


@frozen(kw_only=True)
class Token:
    label: str
    serial: str
    pin: str
    directory: Path


class SoftHsm:
    """The process-wide private SoftHSM2 directory; create tokens with :meth:`token`."""

    _shared: SoftHsm | None = None

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="aauth-softhsm-"))
        self.hsm = PrivateSoftHsm(self.root, reset_on_fork=True)
        self.conf = self.hsm.conf
        atexit.register(shutil.rmtree, self.root, True)

    @classmethod
    def shared(cls) -> SoftHsm:
        require_softhsm()
        if cls._shared is None:
            cls._shared = cls()
        return cls._shared

    def token(self, prefix: str = "t", *, pin: str = USER_PIN) -> Token:
        """A new, empty token with a unique label (about 10 ms)."""
        label = f"{prefix}-{uuid.uuid4().hex[:12]}"
        directory = self.hsm.init_token(label, pin=pin, so_pin=SO_PIN)
        return Token(label=label, serial=self.hsm.serial(label), pin=pin, directory=directory)

    @staticmethod
    def token_flags(token: Token) -> int:
        """The flags SoftHSM stored for the token (PIN counters, lock)."""
        data = (token.directory / "token.object").read_bytes()
        return int.from_bytes(data[_flags_offset(data) : _flags_offset(data) + 8], "big")

    @staticmethod
    def set_token_flags(token: Token, flags: int) -> None:
        """Overwrite the stored token flags (e.g. CKF_USER_PIN_LOCKED, which SoftHSM
        itself never sets) while no module has the token loaded."""
        path = token.directory / "token.object"
        data = bytearray(path.read_bytes())
        offset = _flags_offset(bytes(data))
        data[offset : offset + 8] = flags.to_bytes(8, "big")
        path.write_bytes(bytes(data))


def _flags_offset(data: bytes) -> int:
    position = 8  # the generation counter
    while position + 16 <= len(data):
        kind_of = int.from_bytes(data[position : position + 8], "big")
        kind = int.from_bytes(data[position + 8 : position + 16], "big")
        position += 16
        if kind == 1:  # bool
            position += 1
        elif kind == 2:  # unsigned long
            if kind_of == _CKA_OS_TOKENFLAGS:
                return position
            position += 8
        elif kind == 3:  # byte string
            size = int.from_bytes(data[position : position + 8], "big")
            position += 8 + size
        else:
            break
    raise RuntimeError("token flags not found in token.object")


def fresh_label() -> str:
    return f"k{uuid.uuid4().hex[:10]}"
