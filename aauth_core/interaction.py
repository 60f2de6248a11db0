"""Interaction codes (-11 §3.4 ``requirement=interaction``; security checks §8).

A code is Crockford base32 with at least 40 bits of entropy (8 symbols), shown with
presentational hyphens (``A1B2-C3D4``). Comparison strips hyphens, upper-cases and folds
``I``/``L`` → ``1`` and ``O`` → ``0``. A code only correlates a browser visit with a pending
request; it never authorizes anything. Randomness is an argument (this package is pure):
callers pass ``secrets.token_bytes(bytes_needed(...))``.
"""

from __future__ import annotations

import hmac
import re

from aauth_core.errors import MalformedInput

__all__ = [
    "ALPHABET",
    "MIN_SYMBOLS",
    "bytes_needed",
    "generate_code",
    "normalize_code",
    "codes_match",
]

#: Crockford base32: digits and upper-case letters without I, L, O, U.
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
#: 8 symbols of 5 bits = the 40-bit floor.
MIN_SYMBOLS = 8
_BITS_PER_SYMBOL = 5
_MAX_INPUT_CHARS = 64
_ACCEPTED = re.compile(r"[0-9A-Za-z-]+")
_FOLD = str.maketrans({"I": "1", "L": "1", "O": "0"})


def bytes_needed(*, groups: int = 2, group_size: int = 4) -> int:
    """How many random bytes :func:`generate_code` consumes for this shape."""
    return (groups * group_size * _BITS_PER_SYMBOL + 7) // 8


def generate_code(random_bytes: bytes, *, groups: int = 2, group_size: int = 4) -> str:
    """Format CSPRNG bytes as ``groups`` hyphen-joined groups of ``group_size`` symbols.

    Each symbol takes 5 fresh bits, so the code is uniform over the alphabet. Extra bytes
    are ignored. Raises ``ValueError`` for fewer than 8 symbols or too few bytes.
    """
    if not isinstance(random_bytes, bytes | bytearray):
        raise TypeError("random_bytes must be bytes")
    if groups < 1 or group_size < 1:
        raise ValueError("groups and group_size must be positive")
    symbols = groups * group_size
    if symbols < MIN_SYMBOLS:
        raise ValueError(f"an interaction code needs at least {MIN_SYMBOLS} symbols (40 bits)")
    needed = bytes_needed(groups=groups, group_size=group_size)
    if len(random_bytes) < needed:
        raise ValueError(f"{needed} random bytes are needed, got {len(random_bytes)}")
    pool = int.from_bytes(random_bytes[:needed], "big")
    chars = []
    for _ in range(symbols):
        chars.append(ALPHABET[pool & 0x1F])
        pool >>= _BITS_PER_SYMBOL
    return "-".join(
        "".join(chars[start : start + group_size]) for start in range(0, symbols, group_size)
    )


def normalize_code(text: object) -> str:
    """The comparison form: surrounding whitespace and hyphens removed, upper-cased,
    ``I``/``L`` → ``1``, ``O`` → ``0``. Raises :class:`MalformedInput` (400) for
    anything else (``U``, non-ASCII, punctuation, empty, over 64 characters)."""
    if not isinstance(text, str):
        raise MalformedInput("interaction code must be a string")
    if len(text) > _MAX_INPUT_CHARS:
        raise MalformedInput("interaction code is too long")
    stripped = text.strip()
    # ASCII check before upper(): str.upper() maps some non-ASCII letters onto ASCII ones.
    if _ACCEPTED.fullmatch(stripped) is None:
        raise MalformedInput("interaction code contains characters outside Crockford base32")
    code = stripped.replace("-", "").upper().translate(_FOLD)
    if not code or any(char not in ALPHABET for char in code):
        raise MalformedInput("interaction code contains characters outside Crockford base32")
    return code


def codes_match(expected: object, presented: object) -> bool:
    """Constant-time comparison of the normalised forms; malformed input never matches."""
    try:
        left = normalize_code(expected)
        right = normalize_code(presented)
    except MalformedInput:
        return False
    return hmac.compare_digest(left, right)
