"""``AAuth-Capabilities`` (protocol -11): what the agent (with its PS) can do if asked.

An RFC 9651 List of Tokens. Unknown values, non-Token members and parameters are ignored
(kept in ``unknown`` for diagnostics, never in the known set); an absent field means
nothing can be assumed. A field that is not a valid SF List is :class:`MalformedInput`;
a resource may choose to treat that as absent.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from attrs import field, frozen

from aauth_core import sfv

__all__ = ["HEADER", "Capability", "Capabilities"]

HEADER = "AAuth-Capabilities"


class Capability(enum.StrEnum):
    """The registered capability values, in serialisation order."""

    INTERACTION = "interaction"
    CLARIFICATION = "clarification"
    PAYMENT = "payment"


_BY_VALUE = {c.value: c for c in Capability}


def _to_known(values: Iterable[Capability | str]) -> frozenset[Capability]:
    return frozenset(Capability(v) for v in values)


def _to_tuple(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


@frozen(kw_only=True)
class Capabilities:
    known: frozenset[Capability] = field(factory=frozenset, converter=_to_known)
    #: tokens this library does not know, in arrival order (data only)
    unknown: tuple[str, ...] = field(default=(), converter=_to_tuple)

    def __contains__(self, item: object) -> bool:
        return item in self.known

    @classmethod
    def of(cls, *values: Capability | str) -> Capabilities:
        return cls(known=frozenset(Capability(v) for v in values))

    @classmethod
    def parse(cls, value: str | bytes) -> Capabilities:
        known: set[Capability] = set()
        unknown: list[str] = []
        for bare, _params in sfv.parse_list(value, what=HEADER):
            if not isinstance(bare, sfv.Token):
                continue  # not a value this registry can hold: ignored
            capability = _BY_VALUE.get(str(bare))
            if capability is None:
                unknown.append(str(bare))
            else:
                known.add(capability)
        return cls(known=frozenset(known), unknown=tuple(unknown))

    def serialize(self) -> str:
        """The known capabilities in registry order. Raises ``ValueError`` when there are
        none: omit the field instead."""
        if not self.known:
            raise ValueError(f"no capabilities; omit {HEADER}")
        return ", ".join(c.value for c in Capability if c in self.known)
