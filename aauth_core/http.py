"""Minimal HTTP message values for signing and verification (no I/O).

Header names are matched case-insensitively; several fields with one name are combined
with ``", "`` as RFC 9110 §5.3 and RFC 9421 §2.1 say.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from attrs import field, frozen

from aauth_core.errors import MalformedInput

__all__ = ["Headers", "HttpRequest", "HttpResponse"]

HeaderInput = Mapping[str, str] | Iterable[tuple[str, str]]


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: RFC 9110 §5.5: no CR, LF or NUL in a field value (the header-injection characters).
_BAD_VALUE = re.compile(r"[\r\n\x00]")


def _to_pairs(value: HeaderInput | Headers) -> tuple[tuple[str, str], ...]:
    if isinstance(value, Headers):
        return value.pairs
    items = value.items() if isinstance(value, Mapping) else value
    pairs = []
    for name, val in items:
        if not isinstance(name, str) or not isinstance(val, str):
            raise TypeError("header names and values must be str")
        if _TOKEN.fullmatch(name) is None:
            raise MalformedInput(f"header name {name[:40]!r} is not an RFC 9110 token")
        if _BAD_VALUE.search(val) is not None:
            raise MalformedInput(f"header {name!r} contains CR, LF or NUL")
        pairs.append((name, val))
    return tuple(pairs)


def _check_method(_instance: object, _attribute: object, value: str) -> None:
    if not isinstance(value, str) or _TOKEN.fullmatch(value) is None:
        raise MalformedInput(f"method {str(value)[:20]!r} is not an RFC 9110 token")


@frozen
class Headers:
    """An ordered, immutable header list with case-insensitive lookup."""

    pairs: tuple[tuple[str, str], ...] = field(converter=_to_pairs, default=())
    _index: dict[str, str] = field(init=False, repr=False, eq=False, hash=False)

    def __attrs_post_init__(self) -> None:
        index: dict[str, str] = {}
        for name, value in self.pairs:
            key = name.lower()
            index[key] = f"{index[key]}, {value}" if key in index else value
        object.__setattr__(self, "_index", index)

    def get(self, name: str, default: str | None = None) -> str | None:
        """The combined field value for ``name`` (lower-case lookup), or ``default``."""
        return self._index.get(name.lower(), default)

    def get_lower(self, name: str) -> str | None:
        """:meth:`get` for a name already in lower case (the hot path's lookups)."""
        return self._index.get(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def names(self) -> frozenset[str]:
        return frozenset(self._index)

    def with_fields(self, extra: HeaderInput) -> Headers:
        """A copy with ``extra`` appended (existing fields of the same names are replaced)."""
        added = _to_pairs(extra)
        drop = {name.lower() for name, _ in added}
        kept = tuple(p for p in self.pairs if p[0].lower() not in drop)
        return Headers(kept + added)

    def as_dict(self) -> dict[str, str]:
        return dict(self._index)


@frozen(kw_only=True)
class HttpRequest:
    method: str = field(validator=_check_method)
    url: str
    headers: Headers = field(factory=Headers, converter=Headers)
    body: bytes = b""


@frozen(kw_only=True)
class HttpResponse:
    status: int
    headers: Headers = field(factory=Headers, converter=Headers)
    body: bytes = b""
