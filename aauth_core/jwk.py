"""Public JWKs (RFC 7517) with the AAuth structural rules, and RFC 7638 thumbprints.

A :class:`PublicJwk` is only ever a *public* key: private members are refused. Its
``alg`` is REQUIRED and fully specified, and must agree with ``kty``/``crv``
(Signature Keys §Algorithm Determination, AAuth -10+).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from attrs import field, frozen

from aauth_core.algorithms import DEFAULT_ALGS, Alg, parse_alg
from aauth_core.b64 import b64url_decode, b64url_encode
from aauth_core.errors import InvalidKey, MalformedInput, UnsupportedAlgorithm

__all__ = ["PublicJwk", "thumbprint_of", "PRIVATE_MEMBERS"]

#: Members that would make a JWK private (RFC 7518 §6.2.2, §6.3.2, RFC 8037 §2).
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})

_REQUIRED = {"OKP": ("crv", "x"), "EC": ("crv", "x", "y"), "RSA": ("n", "e")}
_COORD_BYTES = {"Ed25519": 32, "P-256": 32, "P-384": 48}
_MIN_RSA_BITS = 2048
_MAX_RSA_BITS = 8192
_MAX_MEMBER_CHARS = 2048


@frozen(kw_only=True, cache_hash=True)
class PublicJwk:
    """A validated public JWK. Build it with :meth:`from_dict`; compare with :meth:`thumbprint`."""

    kty: str
    alg: Alg
    crv: str | None = None
    x: str | None = None
    y: str | None = None
    n: str | None = None
    e: str | None = None
    kid: str | None = None
    use: str | None = None
    _thumbprint: str = field(eq=False, repr=False, alias="_thumbprint", default="")

    @classmethod
    def from_dict(cls, data: object, *, allowed_algs: frozenset[Alg] = DEFAULT_ALGS) -> PublicJwk:
        """Validate a JWK object; raise ``InvalidKey`` or ``UnsupportedAlgorithm``.

        Order of checks (-11 §9.4.3): structure first (``kty`` and the members of its
        type), then ``alg`` (present, fully specified, allowed), then consistency.
        """
        if type(data) is not dict and not isinstance(data, Mapping):
            raise InvalidKey("JWK is not a JSON object")
        memo_key = _memo_key(data, allowed_algs)
        if memo_key is not None:
            known = _MEMO.get(memo_key)
            if known is not None:
                return known
        key = cls._validate(data, allowed_algs)
        if memo_key is not None:
            if len(_MEMO) >= _MEMO_MAX:
                _MEMO.clear()
            _MEMO[memo_key] = key
        return key

    @classmethod
    def _validate(cls, data: Mapping[str, Any], allowed_algs: frozenset[Alg]) -> PublicJwk:
        kty = data.get("kty")
        if not isinstance(kty, str):
            raise InvalidKey("JWK has no kty")
        if kty == "oct":
            raise UnsupportedAlgorithm("symmetric keys (kty 'oct') are rejected")
        required = _REQUIRED.get(kty)
        if required is None:
            raise UnsupportedAlgorithm(f"kty {kty[:20]!r} is not implemented")
        for name in required:
            value = data.get(name)
            if not isinstance(value, str) or not value:
                raise InvalidKey(f"{kty} JWK is missing {name!r}")
            if len(value) > _MAX_MEMBER_CHARS:
                raise InvalidKey(f"JWK member {name!r} is too long")
        present_private = PRIVATE_MEMBERS.intersection(data.keys())
        if present_private:
            raise InvalidKey("JWK carries private key material")
        alg = parse_alg(data.get("alg"), allowed=allowed_algs)
        if alg.kty != kty:
            raise InvalidKey(f"alg {alg.value} does not match kty {kty}")
        crv = data.get("crv") if kty != "RSA" else None
        if alg.crv is not None and crv != alg.crv:
            raise InvalidKey(f"alg {alg.value} does not match crv {str(crv)[:20]}")
        kid = data.get("kid")
        if kid is not None and (not isinstance(kid, str) or len(kid) > 256):
            raise InvalidKey("JWK kid is not a short string")
        use = data.get("use")
        if use is not None and use != "sig":
            raise InvalidKey("JWK use is not 'sig'")
        key = cls(
            kty=kty,
            alg=alg,
            crv=crv if isinstance(crv, str) else None,
            x=_opt(data, "x") if kty != "RSA" else None,
            y=_opt(data, "y") if kty == "EC" else None,
            n=_opt(data, "n") if kty == "RSA" else None,
            e=_opt(data, "e") if kty == "RSA" else None,
            kid=kid,
            use=use,
        )
        key._check_material()
        return key

    def _check_material(self) -> None:
        if self.kty in ("OKP", "EC"):
            size = _COORD_BYTES[self.crv or ""]
            for coord in ("x", "y") if self.kty == "EC" else ("x",):
                raw = _decode(getattr(self, coord), coord)
                if len(raw) != size:
                    raise InvalidKey(f"{self.crv} {coord} must be {size} bytes")
        else:
            n = _decode(self.n, "n")
            e = _decode(self.e, "e")
            bits = int.from_bytes(n, "big").bit_length()
            if not _MIN_RSA_BITS <= bits <= _MAX_RSA_BITS:
                raise InvalidKey(f"RSA modulus of {bits} bits is outside 2048..8192")
            if not e or len(e) > 8 or int.from_bytes(e, "big") < 3:
                raise InvalidKey("RSA exponent is invalid")

    def required_members(self) -> dict[str, str]:
        """The RFC 7638 required members, which define the key's identity."""
        names = _REQUIRED[self.kty]
        out = {"kty": self.kty}
        for name in names:
            out[name] = getattr(self, name)
        return out

    def thumbprint(self, hash_name: str = "sha256") -> str:
        """RFC 7638 thumbprint, unpadded base64url (``sha256`` or ``sha512``)."""
        if hash_name == "sha256":
            if not self._thumbprint:
                object.__setattr__(self, "_thumbprint", thumbprint_of(self.required_members()))
            return self._thumbprint
        return thumbprint_of(self.required_members(), hash_name)

    def to_dict(self) -> dict[str, str]:
        """The JWK as a JSON object; ``alg`` always present."""
        out: dict[str, str] = {"kty": self.kty}
        for name in ("crv", "x", "y", "n", "e"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        out["alg"] = self.alg.value
        if self.kid is not None:
            out["kid"] = self.kid
        if self.use is not None:
            out["use"] = self.use
        return out

    def same_key(self, other: PublicJwk) -> bool:
        """Key identity: the same required members (``kid``/``use`` do not matter)."""
        return self.alg == other.alg and self.required_members() == other.required_members()

    def with_kid(self, kid: str | None) -> PublicJwk:
        return PublicJwk(
            kty=self.kty,
            alg=self.alg,
            crv=self.crv,
            x=self.x,
            y=self.y,
            n=self.n,
            e=self.e,
            kid=kid,
            use=self.use,
        )

    @classmethod
    def from_raw_ed25519(cls, public_bytes: bytes, *, kid: str | None = None) -> PublicJwk:
        return cls.from_dict(
            {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(public_bytes), "alg": "Ed25519"}
            | ({"kid": kid} if kid else {})
        )


# Public keys recur (an agent key in every token it holds, issuer keys in every JWKS), so
# validated keys are remembered by their exact members: bounded, and only for JWKs made
# of the members named here (anything else is validated every time).
_MEMO: dict[tuple[Any, ...], PublicJwk] = {}
_MEMO_MAX = 2048


def _memo_key(data: Mapping[str, Any], allowed_algs: frozenset[Alg]) -> tuple[Any, ...] | None:
    get = data.get
    key = (
        get("kty"), get("crv"), get("x"), get("y"), get("n"), get("e"), get("alg"),
        get("kid"), get("use"), allowed_algs,
    )  # fmt: skip
    present = 0
    for value in key[:9]:
        if value is not None:
            if type(value) is not str:
                return None
            present += 1
    if present != len(data):  # a member outside the list (a private one, say)
        return None
    return key


def thumbprint_of(members: Mapping[str, Any], hash_name: str = "sha256") -> str:
    """RFC 7638: SHA-2 over the required members in lexicographic order, no whitespace."""
    canonical = json.dumps(dict(sorted(members.items())), separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.new(hash_name, canonical.encode("utf-8")).digest()
    return b64url_encode(digest)


def _opt(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    return value if isinstance(value, str) else None


def _decode(value: str | None, name: str) -> bytes:
    try:
        return b64url_decode(value or "", what=f"JWK {name}")
    except MalformedInput as exc:
        raise InvalidKey(f"JWK {name} is not unpadded base64url") from exc
