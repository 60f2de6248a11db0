"""Base64 helpers that never raise anything but :class:`MalformedInput`."""

from __future__ import annotations

import base64
import binascii
import re

from aauth_core.errors import MalformedInput

__all__ = [
    "b64url_encode",
    "b64url_decode",
    "b64url_decode_alphabet_checked",
]

_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
#: Characters allowed last when the final group has 2 or 3 characters: the unused low
#: bits must be zero, or two different strings would decode to the same bytes.
_CANONICAL_LAST = {
    2: frozenset(c for i, c in enumerate(_ALPHABET) if i % 16 == 0),
    3: frozenset(c for i, c in enumerate(_ALPHABET) if i % 4 == 0),
}


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str, *, what: str = "value") -> bytes:
    """Strict unpadded base64url: rejects padding, other alphabets and non-canonical tails."""
    if not isinstance(text, str) or _B64URL.fullmatch(text) is None:
        raise MalformedInput(f"{what} is not unpadded base64url")
    return b64url_decode_alphabet_checked(text, what=what)


def b64url_decode_alphabet_checked(text: str, *, what: str = "value") -> bytes:
    """:func:`b64url_decode` for text the caller already checked for ``+``, ``/`` and
    ``=`` (a compact JWS is checked once as a whole); strict decoding refuses every
    other character outside the alphabet."""
    tail = len(text) % 4
    if tail == 1:
        raise MalformedInput(f"{what} is not unpadded base64url")
    if tail and text[-1] not in _CANONICAL_LAST[tail]:
        raise MalformedInput(f"{what} has non-canonical base64url trailing bits")
    try:
        return binascii.a2b_base64(
            text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), strict_mode=True
        )
    except (binascii.Error, ValueError) as exc:
        raise MalformedInput(f"{what} is not unpadded base64url") from exc
