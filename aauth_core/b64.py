"""Base64 helpers that never raise anything but :class:`MalformedInput`."""

from __future__ import annotations

import base64
import binascii
import re

from aauth_core.errors import MalformedInput

__all__ = ["b64url_encode", "b64url_decode", "b64_encode", "b64_decode_lenient"]

_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_B64_ANY = re.compile(r"[A-Za-z0-9+/_-]*={0,2}")


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str, *, what: str = "value") -> bytes:
    """Strict unpadded base64url: rejects padding, other alphabets and non-canonical tails."""
    if not isinstance(text, str) or _B64URL.fullmatch(text) is None or len(text) % 4 == 1:
        raise MalformedInput(f"{what} is not unpadded base64url")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:  # pragma: no cover - guarded by the regex
        raise MalformedInput(f"{what} is not unpadded base64url") from exc
    if b64url_encode(raw) != text:
        raise MalformedInput(f"{what} has non-canonical base64url trailing bits")
    return raw


def b64_encode(data: bytes) -> str:
    """Standard padded base64 (what RFC 9651 byte sequences carry)."""
    return base64.b64encode(data).decode("ascii")


def b64_decode_lenient(text: str, *, what: str = "value") -> bytes:
    """Standard or URL-safe alphabet, padded or not: for byte sequences sent by lax peers."""
    if _B64_ANY.fullmatch(text) is None:
        raise MalformedInput(f"{what} is not base64")
    body = text.rstrip("=").replace("-", "+").replace("_", "/")
    if len(body) % 4 == 1:
        raise MalformedInput(f"{what} is not base64")
    try:
        return base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedInput(f"{what} is not base64") from exc
