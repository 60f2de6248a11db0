"""Minimal HTTP message values for signing and verification (no I/O).

Header names are matched case-insensitively; several fields with one name are combined
with ``", "`` as RFC 9110 §5.3 and RFC 9421 §2.1 say.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from attrs import field, frozen

__all__ = ["Headers", "HttpRequest", "HttpResponse"]

HeaderInput = Mapping[str, str] | Iterable[tuple[str, str]]


def _to_pairs(value: HeaderInput | Headers) -> tuple[tuple[str, str], ...]:
    if isinstance(value, Headers):
        return value.pairs
    items = value.items() if isinstance(value, Mapping) else value
    pairs = []
    for name, val in items:
        if not isinstance(name, str) or not isinstance(val, str):
            raise TypeError("header names and values must be str")
        pairs.append((name, val))
    return tuple(pairs)


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
    method: str
    url: str
    headers: Headers = field(factory=Headers, converter=Headers)
    body: bytes = b""


@frozen(kw_only=True)
class HttpResponse:
    status: int
    headers: Headers = field(factory=Headers, converter=Headers)
    body: bytes = b""
