"""``Prefer`` (RFC 7240) and the ``wait`` preference AAuth sends on initial requests and
polls: ``Prefer: wait=N`` asks the server to hold a pending response up to N seconds.

RFC 7240 §2 grammar::

    Prefer     = 1#preference
    preference = token [ BWS "=" BWS word ] *( OWS ";" [ OWS parameter ] )
    parameter  = token [ BWS "=" BWS word ]
    word       = token / quoted-string

Names are case-insensitive; when a preference appears more than once only the first
counts (§2). Empty list elements are allowed (RFC 9110 §5.6.1).
"""

from __future__ import annotations

import re

from attrs import field, frozen

from aauth_core.errors import MalformedInput

__all__ = [
    "HEADER",
    "MAX_PREFER_LENGTH",
    "MAX_WAIT",
    "Preference",
    "parse_preferences",
    "parse_prefer_wait",
    "serialize_prefer_wait",
]

HEADER = "Prefer"
MAX_PREFER_LENGTH = 8 * 1024
#: RFC 9110 §1.2.2: a delta-seconds too large to represent is taken as 2^31.
MAX_WAIT = 2**31

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"  # noqa: S105 - RFC 9110 token
_QUOTED = r'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_WORD = rf"(?:{_TOKEN}|{_QUOTED})"
_OWS = r"[ \t]*"
_PAIR = rf"({_TOKEN})(?:{_OWS}={_OWS}({_WORD}))?"
_PARAM = re.compile(rf"{_OWS};(?:{_OWS}{_PAIR})?")
_PAIR_RE = re.compile(_PAIR)
_SEP = re.compile(rf"{_OWS}(?:,{_OWS})*")
_COMMA = re.compile(rf"{_OWS},")
_DIGITS = re.compile(r"[0-9]+")
_QUOTED_PAIR = re.compile(r"\\(.)")


def _unquote(word: str | None) -> str | None:
    if word is None or not word.startswith('"'):
        return word
    return _QUOTED_PAIR.sub(r"\1", word[1:-1])


@frozen(kw_only=True)
class Preference:
    """One preference: lower-cased name, value (unquoted, or None) and parameters."""

    name: str
    value: str | None = None
    params: tuple[tuple[str, str | None], ...] = field(default=())


def parse_preferences(value: str | bytes) -> tuple[Preference, ...]:
    """All preferences in order (duplicates kept). :class:`MalformedInput` if the field does
    not follow the RFC 7240 grammar."""
    if isinstance(value, bytes | bytearray):
        text = bytes(value).decode("latin-1")
    elif isinstance(value, str):
        text = value
    else:
        raise TypeError("a field value is str or bytes")
    if len(text) > MAX_PREFER_LENGTH:
        raise MalformedInput(f"{HEADER} is longer than {MAX_PREFER_LENGTH} characters")
    if any(ord(c) > 0xFF for c in text):
        raise MalformedInput(f"{HEADER} has characters outside ISO-8859-1")
    found: list[Preference] = []
    pos = _SEP.match(text, 0).end()  # type: ignore[union-attr]  # matches empty
    end = len(text)
    while pos < end:
        pair = _PAIR_RE.match(text, pos)
        if pair is None:
            raise MalformedInput(f"{HEADER} is not a list of preferences (at {pos})")
        pos = pair.end()
        params: list[tuple[str, str | None]] = []
        while (param := _PARAM.match(text, pos)) is not None:
            pos = param.end()
            if param.group(1) is not None:
                params.append((param.group(1).lower(), _unquote(param.group(2))))
        found.append(
            Preference(
                name=pair.group(1).lower(), value=_unquote(pair.group(2)), params=tuple(params)
            )
        )
        if pos == end:
            break
        comma = _COMMA.match(text, pos)
        if comma is None:
            raise MalformedInput(f"{HEADER} has trailing characters after a preference")
        pos = _SEP.match(text, comma.end()).end()  # type: ignore[union-attr]
    return tuple(found)


def parse_prefer_wait(value: str | bytes) -> int | None:
    """The ``wait`` preference in seconds, or None when absent. A ``wait`` whose value is
    not delta-seconds is :class:`MalformedInput`; values past 2^31 are taken as 2^31."""
    for pref in parse_preferences(value):
        if pref.name != "wait":
            continue
        if pref.value is None or _DIGITS.fullmatch(pref.value) is None:
            raise MalformedInput(f"{HEADER} wait is not a number of seconds")
        digits = pref.value.lstrip("0") or "0"
        return MAX_WAIT if len(digits) > 10 else min(int(digits), MAX_WAIT)
    return None


def serialize_prefer_wait(seconds: int) -> str:
    """``wait=N``. Raises ``ValueError`` for a negative or non-integer wait."""
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
        raise ValueError("wait is a non-negative integer number of seconds")
    return f"wait={min(seconds, MAX_WAIT)}"
