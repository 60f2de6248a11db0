"""``Accept-Signature-Scheme`` and ``Accept-Signature-Alg`` (Signature Keys -08 §5):
RFC 9651 Lists of Tokens, in the server's order of preference.

Schemes are Signature-Key scheme names (``jwt``, ``jwks_uri``); algorithms are JOSE
identifiers verbatim (``Ed25519``, ``ES256``). Parameters on members are ignored; a member
that is not a Token makes the field malformed.
"""

from __future__ import annotations

from collections.abc import Iterable

from aauth_core import sfv
from aauth_core.errors import MalformedInput

__all__ = [
    "ACCEPT_SIGNATURE_SCHEME",
    "ACCEPT_SIGNATURE_ALG",
    "parse_token_list",
    "serialize_token_list",
    "parse_accept_signature_scheme",
    "serialize_accept_signature_scheme",
    "parse_accept_signature_alg",
    "serialize_accept_signature_alg",
]

ACCEPT_SIGNATURE_SCHEME = "Accept-Signature-Scheme"
ACCEPT_SIGNATURE_ALG = "Accept-Signature-Alg"


def parse_token_list(value: str | bytes, *, what: str = "field") -> tuple[str, ...]:
    """The Tokens of an SF List, in order (duplicates kept); :class:`MalformedInput` if the
    List is invalid or has a member that is not a Token."""
    tokens = []
    for bare, _params in sfv.parse_list(value, what=what):
        if not isinstance(bare, sfv.Token):
            raise MalformedInput(f"{what} members must be tokens")
        tokens.append(str(bare))
    return tuple(tokens)


def serialize_token_list(tokens: Iterable[str], *, what: str = "field") -> str:
    """``a, b, c``. Raises ``ValueError`` for an empty list (omit the field instead) or a
    value that is not an sf-token."""
    items = tuple(tokens)
    if not items:
        raise ValueError(f"{what} needs at least one token; omit the field instead")
    for token in items:
        if not sfv.is_token(token):
            raise ValueError(f"{what}: {str(token)[:40]!r} is not a structured field token")
    return ", ".join(str(token) for token in items)


def parse_accept_signature_scheme(value: str | bytes) -> tuple[str, ...]:
    return parse_token_list(value, what=ACCEPT_SIGNATURE_SCHEME)


def serialize_accept_signature_scheme(schemes: Iterable[str]) -> str:
    return serialize_token_list(schemes, what=ACCEPT_SIGNATURE_SCHEME)


def parse_accept_signature_alg(value: str | bytes) -> tuple[str, ...]:
    return parse_token_list(value, what=ACCEPT_SIGNATURE_ALG)


def serialize_accept_signature_alg(algs: Iterable[str]) -> str:
    return serialize_token_list(algs, what=ACCEPT_SIGNATURE_ALG)
