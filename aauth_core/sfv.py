"""RFC 9651 structured fields: the full parser and serialiser (``http-sf``) behind one
small typed API that raises only :class:`MalformedInput`.

The hot AAuth headers (``Signature-Input``, ``Signature``, ``Signature-Key``) have strict
fast paths in their own modules that fall back to this full parser for any other shape.

Values: a bare item is ``int | Decimal | str | bytes | bool | Token | DisplayString |
datetime`` as ``http-sf`` returns them; an item is ``(bare, params)``; an inner list is
``([item, ...], params)``. A Dictionary member that is a bare key (``flag``) is
``(True, params)``.

Duplicate keys follow RFC 9651: the later value wins and the position of the first
occurrence is kept. The whole ``httpwg/structured-field-tests`` suite runs through these
functions in ``tests/test_sfv_suite.py``.
"""

from __future__ import annotations

import re
from typing import Any, TypeAlias

import http_sf
from http_sf import DisplayString, Token

from aauth_core.errors import MalformedInput

__all__ = [
    "Token",
    "DisplayString",
    "MAX_FIELD_LENGTH",
    "Params",
    "Item",
    "Member",
    "parse_dictionary",
    "parse_list",
    "parse_item",
    "serialize_dictionary",
    "serialize_list",
    "serialize_item",
    "serialize_string",
    "is_token",
    "is_key",
]

#: Longest field value accepted (bytes). Real AAuth fields carry a JWT of a few kB.
MAX_FIELD_LENGTH = 16 * 1024

Params: TypeAlias = dict[str, Any]
Item: TypeAlias = tuple[Any, Params]
Member: TypeAlias = tuple[Any, Params]  # an Item, or (list[Item], Params) for an inner list

# RFC 9651 §3.3.4 sf-token and §3.1.2 key.
_TOKEN = re.compile(r"[A-Za-z*][!#$%&'*+\-.^_`|~:/0-9A-Za-z]*")
_KEY = re.compile(r"[a-z*][a-z0-9_\-.*]*")
# RFC 9651 §3.3.3: printable ASCII; '"' and '\' need a backslash.
_STRING_CHARS = re.compile(r"[\x20-\x7e]*")
_STRING_PLAIN = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")


def is_token(value: object) -> bool:
    """True if ``value`` is a str that is a valid sf-token."""
    return isinstance(value, str) and _TOKEN.fullmatch(value) is not None


def is_key(value: object) -> bool:
    """True if ``value`` is a str that is a valid Dictionary or Parameter key."""
    return isinstance(value, str) and _KEY.fullmatch(value) is not None


def _raw(value: str | bytes, what: str, max_length: int) -> bytes:
    if isinstance(value, str):
        try:
            raw = value.encode("ascii")
        except UnicodeEncodeError:
            raise MalformedInput(f"{what} contains non-ASCII characters") from None
    elif isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
    else:
        raise TypeError("a field value is str or bytes")
    if len(raw) > max_length:
        raise MalformedInput(f"{what} is longer than {max_length} bytes")
    return raw


def _parse(value: str | bytes, tltype: str, what: str, max_length: int) -> Any:
    raw = _raw(value, what, max_length)
    try:
        return http_sf.parse(raw, tltype=tltype, on_duplicate_key=_ignore_duplicate)
    except (ValueError, TypeError, IndexError, OverflowError, RecursionError) as exc:
        position = getattr(exc, "position", None)
        where = "" if position is None else f" (at byte {position})"
        raise MalformedInput(f"{what} is not a valid structured field {tltype}{where}") from exc


def _ignore_duplicate(_key: str, _context: str) -> None:
    """RFC 9651: a later duplicate key overwrites the earlier one; not an error."""


def parse_dictionary(
    value: str | bytes, *, what: str = "field", max_length: int = MAX_FIELD_LENGTH
) -> dict[str, Member]:
    result: dict[str, Member] = _parse(value, "dictionary", what, max_length)
    return result


def parse_list(
    value: str | bytes, *, what: str = "field", max_length: int = MAX_FIELD_LENGTH
) -> list[Member]:
    result: list[Member] = _parse(value, "list", what, max_length)
    return result


def parse_item(
    value: str | bytes, *, what: str = "field", max_length: int = MAX_FIELD_LENGTH
) -> Item:
    result: Item = _parse(value, "item", what, max_length)
    return result


def _ser(value: Any, what: str) -> str:
    try:
        return str(http_sf.ser(value))
    except (ValueError, TypeError, OverflowError) as exc:
        raise MalformedInput(f"{what} cannot be serialised as a structured field") from exc


def serialize_dictionary(value: dict[str, Member], *, what: str = "field") -> str:
    """Serialise a Dictionary. An empty one raises: the field is to be omitted."""
    return _ser(value, what)


def serialize_list(value: list[Member], *, what: str = "field") -> str:
    """Serialise a List. An empty one raises: the field is to be omitted."""
    return _ser(value, what)


def serialize_item(value: Item, *, what: str = "field") -> str:
    return _ser(value, what)


def serialize_string(value: str, *, what: str = "string") -> str:
    """An sf-string (``"..."`` with ``\\`` escapes); only printable ASCII can be carried."""
    if not isinstance(value, str) or _STRING_CHARS.fullmatch(value) is None:
        raise MalformedInput(f"{what} cannot be carried in a structured field string")
    if _STRING_PLAIN.fullmatch(value) is not None:
        return f'"{value}"'
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
