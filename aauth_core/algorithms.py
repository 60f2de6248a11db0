"""JOSE algorithm policy: the fully specified algorithms AAuth accepts, and nothing else.

The algorithm that verifies a signature is always taken from the key's JWK ``alg``; an
``alg`` elsewhere (a JWS header, a ``Signature-Input`` parameter) must agree or is ignored.
"""

from __future__ import annotations

import enum

from aauth_core.errors import UnsupportedAlgorithm

__all__ = ["Alg", "DEFAULT_ALGS", "parse_alg", "REJECTED_ALGS"]


class Alg(enum.StrEnum):
    """Fully specified JOSE algorithm identifiers (RFC 9864 for ``Ed25519``)."""

    ED25519 = "Ed25519"
    ES256 = "ES256"
    ES384 = "ES384"
    PS256 = "PS256"
    RS256 = "RS256"

    @property
    def kty(self) -> str:
        return _KTY[self]

    @property
    def crv(self) -> str | None:
        return _CRV.get(self)


_KTY = {
    Alg.ED25519: "OKP",
    Alg.ES256: "EC",
    Alg.ES384: "EC",
    Alg.PS256: "RSA",
    Alg.RS256: "RSA",
}
_CRV = {Alg.ED25519: "Ed25519", Alg.ES256: "P-256", Alg.ES384: "P-384"}

#: The default allow-list: every algorithm implemented here, Ed25519 first (MUST for AAuth).
DEFAULT_ALGS: frozenset[Alg] = frozenset(Alg)

#: Names that are refused outright, with the reason given to the caller.
REJECTED_ALGS: dict[str, str] = {
    "none": "unsigned JWS ('none') is never accepted",
    "EdDSA": "polymorphic 'EdDSA' is rejected; use the fully specified 'Ed25519'",
    "HS256": "symmetric algorithms are rejected",
    "HS384": "symmetric algorithms are rejected",
    "HS512": "symmetric algorithms are rejected",
}

_BY_NAME = {a.value: a for a in Alg}


def parse_alg(name: object, *, allowed: frozenset[Alg] = DEFAULT_ALGS) -> Alg:
    """Return the :class:`Alg` for ``name`` or raise ``UnsupportedAlgorithm``."""
    if not isinstance(name, str) or not name:
        raise UnsupportedAlgorithm("alg is missing or not a string", accept_algs=_names(allowed))
    alg = _BY_NAME.get(name)
    if alg is None:
        reason = REJECTED_ALGS.get(name)
        if reason is None and name.startswith("HS"):
            reason = "symmetric algorithms are rejected"
        raise UnsupportedAlgorithm(
            reason or f"alg {name[:40]!r} is not supported", accept_algs=_names(allowed)
        )
    if alg not in allowed:
        raise UnsupportedAlgorithm(f"alg {name!r} is not allowed here", accept_algs=_names(allowed))
    return alg


def _names(allowed: frozenset[Alg]) -> tuple[str, ...]:
    return tuple(a.value for a in Alg if a in allowed)
