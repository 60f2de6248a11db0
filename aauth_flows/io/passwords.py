"""Password hashes for the reference servers' sign-in pages (PS, AS bind page, calendar).

Only a scrypt hash is ever kept (:func:`hash_password`); :func:`verify_password` does the
same work for an unknown person as for a wrong password and compares in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

__all__ = ["hash_password", "verify_password"]

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$salt$hash`` for ``password`` (a fresh 16-byte salt by default)."""
    salt = os.urandom(16) if salt is None else salt
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32
    )
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def _parse_hash(encoded: str) -> tuple[int, int, int, bytes, bytes]:
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise ValueError("a password hash is scrypt$N$r$p$salt$hash (see hash_password)")
    n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
    if not (2 <= n <= 2**20 and 1 <= r <= 32 and 1 <= p <= 16):
        raise ValueError("scrypt parameters out of range")
    return n, r, p, _unb64(parts[4]), _unb64(parts[5])


#: Compared against when the id is unknown, so a wrong id costs what a wrong password does.
_DUMMY = hash_password("not a password", salt=b"\0" * 16)


def verify_password(encoded: str | None, password: str) -> bool:
    """Whether ``password`` matches ``encoded`` (``None``: unknown person, always False
    after the same work)."""
    n, r, p, salt, expected = _parse_hash(encoded if encoded is not None else _DUMMY)
    try:
        digest = hashlib.scrypt(
            password.encode(), salt=salt, n=n, r=r, p=p, dklen=len(expected), maxmem=2**26
        )
    except (ValueError, UnicodeEncodeError):
        return False
    return hmac.compare_digest(digest, expected) and encoded is not None
