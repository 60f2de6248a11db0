"""``Signature-Key`` (HTTP Signature Keys -08/-09 §3; protocol digest §3.1).

An RFC 9651 Dictionary keyed by signature label; each member is a Token naming the key
scheme, with the scheme's data as parameters::

    Signature-Key: sig=jwt;jwt="eyJ..."
    Signature-Key: sig=jwks_uri;id="https://ps.example";dwk="aauth-person.json";kid="key-1"

Rules: the member for the verified label MUST exist and be a Token item; members for other
labels are ignored; a scheme the verifier does not accept is ``unsupported_scheme`` (with
``Accept-Signature-Scheme``), checked before the scheme's parameters; a missing or
mistyped required parameter, a malformed field and a missing member are
``invalid_signature`` (AAuth answers every signature failure with 401 + ``Signature-Error``).

This header is parsed on every verified request, so :func:`parse_fast` matches the one
shape agents send (``<label>=jwt;jwt="<JWT>"``, optionally ``; `` spacing and a bare
``;cache``) with a compiled regular expression and declines anything else, which then
goes through the full RFC 9651 parser (:func:`parse_full`). The tests prove the two agree.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, ClassVar, NoReturn, TypeAlias

from attrs import field, frozen

from aauth_core import sfv
from aauth_core.errors import (
    MalformedInput,
    SignatureErrorCode,
    SignatureFailure,
    UnsupportedScheme,
)

__all__ = [
    "HEADER",
    "JwtScheme",
    "JktJwtScheme",
    "JwksUriScheme",
    "JwksScheme",
    "HwkScheme",
    "X509Scheme",
    "SelfJwtScheme",
    "UnknownScheme",
    "SignatureKeyScheme",
    "parse",
    "parse_fast",
    "parse_full",
    "select",
    "serialize_scheme",
    "serialize_jwt_scheme",
    "serialize_jwks_uri_scheme",
]

HEADER = "Signature-Key"

# The shape agents send. Key: RFC 9651 §3.1.2; the JWT: compact JWS characters (no
# escapes possible inside the sf-string). Group 1 label, 2 jwt, 3 cache flag.
_FAST_JWT = re.compile(r'([a-z*][a-z0-9_\-.*]*)=jwt; ?jwt="([A-Za-z0-9_\-.]+)"(; ?cache)?')
_JWT_CHARS = re.compile(r"[A-Za-z0-9_\-.]+")
_LABEL_RE = re.compile(r"[a-z*][a-z0-9_.*-]*")  # an RFC 9651 key
_NEW = object.__new__
_SET = object.__setattr__


def _short(value: str) -> str:
    return repr(value if len(value) <= 24 else value[:20] + "...")


def _fail(detail: str, code: SignatureErrorCode = SignatureErrorCode.INVALID_SIGNATURE) -> NoReturn:
    raise SignatureFailure(f"{HEADER}: {detail}", code=code)


def _nonempty_string(_inst: object, attr: Any, value: Any) -> None:
    # printable ASCII is exactly what an sf-string can carry (str methods: this runs on
    # every verified request)
    if not isinstance(value, str) or not value:
        _fail(f"{attr.name} must be a non-empty string")
    if not (value.isascii() and value.isprintable()):
        _fail(f"{attr.name} is not printable ASCII")


def _bool(_inst: object, attr: Any, value: Any) -> None:
    if not isinstance(value, bool):
        _fail(f"{attr.name} must be a boolean")


@frozen(kw_only=True)
class JwtScheme:
    """``jwt``: a JWT whose ``cnf.jwk`` is the signing key (agent, person or auth token)."""

    scheme: ClassVar[str] = "jwt"
    jwt: str = field(validator=_nonempty_string, repr=_short)
    cache: bool = field(default=False, validator=_bool)

    def params(self) -> dict[str, Any]:
        return {"jwt": self.jwt, "cache": True} if self.cache else {"jwt": self.jwt}


@frozen(kw_only=True)
class JktJwtScheme:
    """``jkt-jwt``: a self-issued JWT signed by its header ``jwk`` (AP refresh ceremony)."""

    scheme: ClassVar[str] = "jkt-jwt"
    jwt: str = field(validator=_nonempty_string, repr=_short)
    cache: bool = field(default=False, validator=_bool)

    def params(self) -> dict[str, Any]:
        return {"jwt": self.jwt, "cache": True} if self.cache else {"jwt": self.jwt}


@frozen(kw_only=True)
class JwksUriScheme:
    """``jwks_uri``: a server signing in its own right; key ``kid`` of the JWKS named by
    ``{id}/.well-known/{dwk}`` (whose ``issuer`` must equal ``id``)."""

    scheme: ClassVar[str] = "jwks_uri"
    id: str = field(validator=_nonempty_string)
    dwk: str = field(validator=_nonempty_string)
    kid: str = field(validator=_nonempty_string)

    def params(self) -> dict[str, Any]:
        return {"id": self.id, "dwk": self.dwk, "kid": self.kid}


@frozen(kw_only=True)
class JwksScheme:
    """``jwks``: key ``kid`` of the JWKS at ``url`` (not used by AAuth)."""

    scheme: ClassVar[str] = "jwks"
    url: str = field(validator=_nonempty_string)
    kid: str = field(validator=_nonempty_string)

    def params(self) -> dict[str, Any]:
        return {"url": self.url, "kid": self.kid}


_HWK_MEMBERS = ("kty", "crv", "x", "y", "n", "e", "alg")


def _to_jwk(value: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(value))


def _check_jwk(_inst: object, _attr: object, value: Mapping[str, str]) -> None:
    if "kid" in value:
        _fail("hwk must not carry kid", SignatureErrorCode.INVALID_KEY)
    for name, member in value.items():
        if name not in _HWK_MEMBERS:
            _fail(
                f"hwk parameter {name[:20]!r} is not a JWK member", SignatureErrorCode.INVALID_KEY
            )
        if not isinstance(member, str) or not member:
            _fail(f"hwk parameter {name} must be a non-empty string")
    if "kty" not in value:
        _fail("hwk scheme has no kty")


@frozen(kw_only=True)
class HwkScheme:
    """``hwk``: the public key inline (pseudonymous; AAuth forbids it for agents). ``jwk``
    holds the String parameters ``kty``, ``crv``, ``x``, ``y``, ``n``, ``e``, ``alg``;
    validate it with :meth:`aauth_core.jwk.PublicJwk.from_dict`."""

    scheme: ClassVar[str] = "hwk"
    jwk: Mapping[str, str] = field(converter=_to_jwk, validator=_check_jwk, hash=False)

    def params(self) -> dict[str, Any]:
        return dict(self.jwk)


def _check_x5t(_inst: object, _attr: object, value: Any) -> None:
    if not isinstance(value, bytes) or not value:
        _fail("x5t must be a non-empty byte sequence")


@frozen(kw_only=True)
class X509Scheme:
    """``x509``: ``x5u`` (URL of a PEM chain) and ``x5t`` (SHA-256 of the end-entity DER)."""

    scheme: ClassVar[str] = "x509"
    x5u: str = field(validator=_nonempty_string)
    x5t: bytes = field(validator=_check_x5t)

    def params(self) -> dict[str, Any]:
        return {"x5u": self.x5u, "x5t": self.x5t}


@frozen(kw_only=True)
class SelfJwtScheme:
    """``self-jwt``: a JWT signed by the signer's JWKS key, which also signs the request."""

    scheme: ClassVar[str] = "self-jwt"
    jwt: str = field(validator=_nonempty_string, repr=_short)

    def params(self) -> dict[str, Any]:
        return {"jwt": self.jwt}


def _check_name(_inst: object, _attr: object, value: Any) -> None:
    if not sfv.is_token(value):
        _fail("scheme is not a token")


@frozen(kw_only=True)
class UnknownScheme:
    """A scheme this library does not implement (``cached``, future schemes), kept by name."""

    name: str = field(validator=_check_name)

    @property
    def scheme(self) -> str:
        return self.name

    def params(self) -> dict[str, Any]:
        return {}


SignatureKeyScheme: TypeAlias = (
    JwtScheme
    | JktJwtScheme
    | JwksUriScheme
    | JwksScheme
    | HwkScheme
    | X509Scheme
    | SelfJwtScheme
    | UnknownScheme
)


# -- parsing ----------------------------------------------------------------------------


def parse_fast(value: str | bytes, label: str) -> JwtScheme | None:
    """The ``jwt`` scheme for ``label`` if ``value`` has exactly the agent shape, else None
    (the caller falls back to :func:`parse_full`). Never raises for any str/bytes."""
    if type(value) is not str or len(value) > sfv.MAX_FIELD_LENGTH:
        return None
    match = _FAST_JWT.fullmatch(value)
    if match is None or match.group(1) != label:
        return None
    # The expression has already established what JwtScheme's validators check (a
    # non-empty printable-ASCII jwt, a bool cache), so skip them: the validated
    # constructor costs more than the match. The tests compare with parse_full.
    scheme = _NEW(JwtScheme)
    _SET(scheme, "jwt", match.group(2))
    _SET(scheme, "cache", match.group(3) is not None)
    return scheme


def _member(value: str | bytes, label: str) -> tuple[str, dict[str, Any]]:
    try:
        members = sfv.parse_dictionary(value, what=HEADER)
    except MalformedInput as exc:
        raise SignatureFailure(exc.detail) from exc
    member = members.get(label)
    if member is None:
        raise SignatureFailure(f"{HEADER} has no member for label {label[:40]!r}")
    bare, params = member
    if not isinstance(bare, sfv.Token):
        raise SignatureFailure(f"{HEADER} member {label[:40]!r} is not a scheme token")
    return str(bare), params


def _string(params: Mapping[str, Any], name: str, scheme: str) -> str:
    value = params.get(name)
    if value is None:
        raise SignatureFailure(f"{HEADER} {scheme} scheme has no {name} parameter")
    if not isinstance(value, str):
        raise SignatureFailure(f"{HEADER} {scheme} parameter {name} is not a string")
    return value


def _flag(params: Mapping[str, Any], name: str, scheme: str) -> bool:
    value = params.get(name, False)
    if not isinstance(value, bool):
        raise SignatureFailure(f"{HEADER} {scheme} parameter {name} is not a boolean")
    return value


def _build(name: str, params: Mapping[str, Any]) -> SignatureKeyScheme:
    if name == "jwt":
        return JwtScheme(jwt=_string(params, "jwt", name), cache=_flag(params, "cache", name))
    if name == "jkt-jwt":
        return JktJwtScheme(jwt=_string(params, "jwt", name), cache=_flag(params, "cache", name))
    if name == "jwks_uri":
        return JwksUriScheme(
            id=_string(params, "id", name),
            dwk=_string(params, "dwk", name),
            kid=_string(params, "kid", name),
        )
    if name == "jwks":
        return JwksScheme(url=_string(params, "url", name), kid=_string(params, "kid", name))
    if name == "hwk":
        if "kid" in params:
            raise SignatureFailure(
                f"{HEADER} hwk must not carry kid", code=SignatureErrorCode.INVALID_KEY
            )
        jwk = {m: _string(params, m, name) for m in _HWK_MEMBERS if m in params}
        return HwkScheme(jwk=jwk)
    if name == "x509":
        x5t = params.get("x5t")
        if not isinstance(x5t, bytes):
            raise SignatureFailure(f"{HEADER} x509 scheme has no byte sequence x5t")
        return X509Scheme(x5u=_string(params, "x5u", name), x5t=x5t)
    if name == "self-jwt":
        return SelfJwtScheme(jwt=_string(params, "jwt", name))
    return UnknownScheme(name=name)


def parse_full(value: str | bytes, label: str) -> SignatureKeyScheme:
    """The scheme for ``label`` through the full RFC 9651 parser; any scheme (unknown ones
    as :class:`UnknownScheme`). Raises :class:`SignatureFailure` (``invalid_signature``,
    or ``invalid_key`` for an ``hwk`` with ``kid``)."""
    name, params = _member(value, label)
    return _build(name, params)


def parse(value: str | bytes, label: str) -> SignatureKeyScheme:
    """:func:`parse_full` with the fast path in front."""
    fast = parse_fast(value, label)
    return fast if fast is not None else parse_full(value, label)


def select(
    value: str | bytes, label: str, accepted_schemes: Iterable[str] = ("jwt",)
) -> SignatureKeyScheme:
    """The key scheme for the verified ``label``, if the verifier accepts it.

    A scheme outside ``accepted_schemes`` raises :class:`UnsupportedScheme` with
    ``accept_schemes`` set (for ``Accept-Signature-Scheme``); that check comes before the
    scheme's parameters are looked at. AAuth resources accept only ``jwt`` from agents.
    """
    accepted = tuple(accepted_schemes)
    if "jwt" in accepted:
        fast = parse_fast(value, label)
        if fast is not None:
            return fast
    name, params = _member(value, label)
    if name not in accepted:
        raise UnsupportedScheme(
            f"{HEADER} scheme {name[:40]!r} is not accepted", accept_schemes=accepted
        )
    return _build(name, params)


# -- serialising ------------------------------------------------------------------------


def _check_label(label: str) -> None:
    if not sfv.is_key(label):
        raise ValueError(f"{str(label)[:40]!r} is not a structured field key")


def serialize_scheme(label: str, scheme: SignatureKeyScheme) -> str:
    """``<label>=<scheme>;<param>=<value>...`` for one member."""
    _check_label(label)
    if isinstance(scheme, JwtScheme) and _JWT_CHARS.fullmatch(scheme.jwt):
        cache = ";cache" if scheme.cache else ""
        return f'{label}=jwt;jwt="{scheme.jwt}"{cache}'
    return sfv.serialize_dictionary(
        {label: (sfv.Token(scheme.scheme), scheme.params())}, what=HEADER
    )


# The agent presents the same token on many requests: the checked ``sig`` member of the
# last tokens is kept (bounded; cleared when full; dict operations are atomic).
_SIG_MEMO: dict[str, str] = {}
_SIG_MEMO_MAX = 256


def serialize_jwt_scheme(label: str, jwt: str, *, cache: bool = False) -> str:
    """``sig=jwt;jwt="..."``: what an agent sends (on every request, so the plain case
    is formatted directly once the label and the token's characters are checked)."""
    if label == "sig" and cache is False:
        member = _SIG_MEMO.get(jwt) if type(jwt) is str else None
        if member is not None:
            return member
        if type(jwt) is str and jwt and _JWT_CHARS.fullmatch(jwt):
            member = f'sig=jwt;jwt="{jwt}"'
            if len(_SIG_MEMO) >= _SIG_MEMO_MAX:
                _SIG_MEMO.clear()
            _SIG_MEMO[jwt] = member
            return member
    if (
        type(label) is str
        and _LABEL_RE.fullmatch(label)
        and type(jwt) is str
        and jwt
        and _JWT_CHARS.fullmatch(jwt)
    ):
        return f'{label}=jwt;jwt="{jwt}"{";cache" if cache is True else ""}'
    return serialize_scheme(label, JwtScheme(jwt=jwt, cache=cache))


def serialize_jwks_uri_scheme(label: str, *, id: str, dwk: str, kid: str) -> str:
    """``sig=jwks_uri;id="https://ps.example";dwk="aauth-person.json";kid="key-1"``: what a
    server signing in its own right sends."""
    return serialize_scheme(label, JwksUriScheme(id=id, dwk=dwk, kid=kid))
