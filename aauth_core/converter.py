"""The one cattrs converter: every domain value to and from JSON-compatible data.

Flow machines snapshot and restore their state through this module, so every value
survives a JSON round trip exactly::

    structure(json.loads(json.dumps(unstructure(v))), type(v)) == v

Wire forms are used where one exists: identifiers are their strings, a JWK its JSON
object, token claims their JWT payload, metadata its document, a mission approval its
response body, a covered component its identifier (``"@method"``,
``'"@query-param";name="id"'``), a decoded JWS its compact serialisation. Other values
are their attrs fields. ``bytes`` are unpadded base64url, enums their values, tuples
JSON arrays, sets sorted arrays (stable output), :class:`~aauth_core.http.Headers` a
list of ``[name, value]`` pairs, datetimes ISO 8601 strings. Fields are always written
out, defaults included: a later change of a default must not change what stored state
means.

Fields typed with an abstract base are tagged: :class:`TokenClaims` as
``{"type": <typ>, "payload": {...}}``, :class:`ServerMetadata` as
``{"dwk": <name>, "document": {...}}``, a :data:`SignatureKeyScheme` as its fields plus
``"scheme"``.

Structuring is strict (no ``"5"`` → 5, no string taken as an array) and runs each
value's own validation. A restored :class:`VerifiedToken` is checked against its compact
token (type, header, claims) and its signature is verified again with the stored issuer
key (the clock is not: expiry is the holder's business), so edited state cannot produce
a verified token that no issuer signed.

:func:`structure` / :func:`from_json` raise only :class:`MalformedInput`
(``invalid_request``, 400) with a short detail naming the path; the parser's own error
is the ``__cause__``.
"""

from __future__ import annotations

import collections.abc
import datetime as dt
import enum
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, get_args, get_origin, overload

import attrs
import cattrs
from cattrs.errors import (
    ClassValidationError,
    IterableValidationError,
    IterableValidationNote,
    StructureHandlerNotFoundError,
)
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from aauth_core import sfv, strict_json
from aauth_core.algorithms import Alg
from aauth_core.b64 import b64url_decode, b64url_encode
from aauth_core.errors import AAuthError, MalformedInput, SignatureErrorCode
from aauth_core.http import Headers
from aauth_core.httpsig.components import Component
from aauth_core.httpsig.fields import CoveredComponents, SignatureParams
from aauth_core.identifiers import AgentId, ServerId
from aauth_core.jwk import PublicJwk
from aauth_core.jws import UnverifiedJws, decode_compact, header_alg, verify_jws
from aauth_core.metadata import METADATA_TYPES, ServerMetadata
from aauth_core.mission import ApprovalResponse, MissionBlob
from aauth_core.signature_key import (
    HwkScheme,
    JktJwtScheme,
    JwksScheme,
    JwksUriScheme,
    JwtScheme,
    SelfJwtScheme,
    SignatureKeyScheme,
    UnknownScheme,
    X509Scheme,
)
from aauth_core.tokens.claims import CLAIMS_FOR, Confirmation, TokenClaims, TokenType
from aauth_core.tokens.verify import StaticKeyResolver, VerifiedToken

__all__ = [
    "converter",
    "structure",
    "unstructure",
    "to_json",
    "from_json",
    "MAX_JSON_BYTES",
]

T = TypeVar("T")
E = TypeVar("E", bound=enum.Enum)

#: Largest JSON text :func:`from_json` accepts by default (flow state with bodies).
MAX_JSON_BYTES = 8 * 1024 * 1024
_MAX_DETAIL = 300

converter = cattrs.Converter(detailed_validation=True)


# --- helpers ---------------------------------------------------------------------------


def _mapping(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise MalformedInput(f"{what} must be a JSON object")
    return value


def _array(value: object, what: str) -> list[Any] | tuple[Any, ...]:
    if not isinstance(value, list | tuple):
        raise MalformedInput(f"{what} must be a JSON array")
    return value


def _member(data: Mapping[str, Any], name: str, what: str) -> Any:
    if name not in data:
        raise MalformedInput(f"{what} is missing {name!r}")
    return data[name]


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise MalformedInput(f"{what} must be a string")
    return value


def _is_exactly(cls: type) -> Callable[[Any], bool]:
    return lambda t: t is cls


def _origin(t: Any) -> Any:
    return get_origin(t) or t


def _wire(
    cls: type[T],
    dump: Callable[[T], Any],
    load: Callable[[Any], T],
) -> None:
    """Register a value whose JSON form is its wire form (exact class only)."""
    converter.register_unstructure_hook_func(_is_exactly(cls), lambda value: dump(value))
    converter.register_structure_hook_func(_is_exactly(cls), lambda value, _t: load(value))


# --- primitives: strict, no coercion -----------------------------------------------------


def _structure_str(value: object, _t: Any) -> str:
    return _text(value, "value")


def _structure_int(value: object, _t: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedInput("value must be an integer")
    return int(value)


def _structure_float(value: object, _t: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedInput("value must be a number")
    return float(value)


def _structure_bool(value: object, _t: Any) -> bool:
    if not isinstance(value, bool):
        raise MalformedInput("value must be a boolean")
    return value


def _structure_bytes(value: object, _t: Any) -> bytes:
    return b64url_decode(_text(value, "bytes"), what="bytes")


def _unstructure_enum(value: enum.Enum) -> Any:
    return value.value


def _structure_enum(value: object, cls: type[E]) -> E:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise MalformedInput(f"{cls.__name__} must be a string")
    try:
        return cls(value)
    except ValueError:
        raise MalformedInput(f"not a known {cls.__name__} value") from None


def _structure_datetime(value: object, _t: Any) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(_text(value, "date-time"))
    except ValueError:
        raise MalformedInput("value is not an ISO 8601 date-time") from None


converter.register_structure_hook(str, _structure_str)
converter.register_structure_hook(int, _structure_int)
converter.register_structure_hook(float, _structure_float)
converter.register_structure_hook(bool, _structure_bool)
converter.register_structure_hook(bytes, _structure_bytes)
converter.register_unstructure_hook(bytes, b64url_encode)
# StrEnum is a str subclass: register it too, or the str hook would win.
for _enum_base in (enum.Enum, enum.StrEnum, enum.IntEnum):
    converter.register_structure_hook(_enum_base, _structure_enum)
    converter.register_unstructure_hook(_enum_base, _unstructure_enum)
converter.register_structure_hook(dt.datetime, _structure_datetime)
converter.register_unstructure_hook(dt.datetime, dt.datetime.isoformat)


# --- collections: arrays must be arrays, objects objects ---------------------------------


def _structure_items(items: Iterable[tuple[Any, Any]], what: Any) -> list[Any]:
    """Structure each ``(value, type)`` pair, collecting errors with their index the way
    cattrs does (so that :func:`cattrs.transform_error` can name the path)."""
    out: list[Any] = []
    errors: list[Exception] = []
    for index, (item, item_type) in enumerate(items):
        try:
            out.append(converter.structure(item, item_type))
        except Exception as exc:
            exc.__notes__ = [
                *getattr(exc, "__notes__", []),
                IterableValidationNote(f"Structuring item @ index {index}", index, item_type),
            ]
            errors.append(exc)
    if errors:
        raise IterableValidationError(f"While structuring {what!r}", errors, what)
    return out


def _is_tuple(t: Any) -> bool:
    return _origin(t) is tuple


def _tuple_types(t: Any, length: int) -> list[Any]:
    args = get_args(t)
    if not args:
        return [Any] * length
    if len(args) == 2 and args[1] is Ellipsis:
        return [args[0]] * length
    if len(args) != length:
        raise MalformedInput(f"expected an array of {len(args)} items")
    return list(args)


def _structure_tuple(value: object, t: Any) -> tuple[Any, ...]:
    items = _array(value, "value")
    return tuple(_structure_items(zip(items, _tuple_types(t, len(items)), strict=True), t))


def _unstructure_tuple(t: Any) -> Callable[[Any], list[Any]]:
    def dump(value: Any) -> list[Any]:
        types = _tuple_types(t, len(value))
        return [_dump(item, item_type) for item, item_type in zip(value, types, strict=True)]

    return dump


def _item_type(t: Any) -> Any:
    args = get_args(t)
    return args[0] if args else Any


def _is_set(t: Any) -> bool:
    return _origin(t) in (frozenset, set, collections.abc.Set)


def _structure_set(value: object, t: Any) -> frozenset[Any] | set[Any]:
    items = _array(value, "value")
    item_type = _item_type(t)
    structured = _structure_items(((item, item_type) for item in items), t)
    return set(structured) if _origin(t) is set else frozenset(structured)


def _unstructure_set(t: Any) -> Callable[[Any], list[Any]]:
    item_type = _item_type(t)

    def dump(value: Any) -> list[Any]:
        items = [_dump(item, item_type) for item in value]
        return sorted(items, key=lambda item: json.dumps(item, sort_keys=True))

    return dump


def _is_list(t: Any) -> bool:
    return _origin(t) in (list, collections.abc.Sequence)


def _structure_list(value: object, t: Any) -> list[Any]:
    items = _array(value, "value")
    item_type = _item_type(t)
    return _structure_items(((item, item_type) for item in items), t)


def _unstructure_list(t: Any) -> Callable[[Any], list[Any]]:
    item_type = _item_type(t)
    return lambda value: [_dump(item, item_type) for item in value]


def _is_mapping(t: Any) -> bool:
    return _origin(t) in (dict, collections.abc.Mapping)


def _mapping_types(t: Any) -> tuple[Any, Any]:
    args = get_args(t)
    return (args[0], args[1]) if len(args) == 2 else (Any, Any)


def _structure_mapping(value: object, t: Any) -> dict[Any, Any]:
    data = _mapping(value, "value")
    key_type, value_type = _mapping_types(t)
    out: dict[Any, Any] = {}
    errors: list[Exception] = []
    for key, item in data.items():
        try:
            if not isinstance(key, str):
                raise MalformedInput("object keys must be strings")
            out[converter.structure(key, key_type)] = converter.structure(item, value_type)
        except Exception as exc:
            exc.__notes__ = [
                *getattr(exc, "__notes__", []),
                IterableValidationNote(f"Structuring member {key!r}", str(key), value_type),
            ]
            errors.append(exc)
    if errors:
        raise IterableValidationError(f"While structuring {t!r}", errors, t)
    return out


def _unstructure_mapping(t: Any) -> Callable[[Any], dict[Any, Any]]:
    key_type, value_type = _mapping_types(t)
    return lambda value: {_dump(k, key_type): _dump(v, value_type) for k, v in value.items()}


def _dump(value: Any, declared: Any) -> Any:
    if declared is Any:
        return converter.unstructure(value)
    return converter.unstructure(value, unstructure_as=declared)


for _check, _load, _dump_factory in (
    (_is_tuple, _structure_tuple, _unstructure_tuple),
    (_is_set, _structure_set, _unstructure_set),
    (_is_list, _structure_list, _unstructure_list),
    (_is_mapping, _structure_mapping, _unstructure_mapping),
):
    converter.register_structure_hook_func(_check, _load)
    converter.register_unstructure_hook_factory(_check, _dump_factory)


# --- attrs classes without a wire form: their fields, from a JSON object ----------------


def _fields_structure_fn(cls: Any, **overrides: Any) -> Callable[[Any, Any], Any]:
    fields_fn = make_dict_structure_fn(cls, converter, **overrides)
    name = getattr(cls, "__name__", "value")

    def load(value: object, t: Any) -> Any:
        return fields_fn(_mapping(value, name), t)

    return load


converter.register_structure_hook_factory(attrs.has, lambda cls: _fields_structure_fn(cls))


# --- identifiers, keys, algorithms ---------------------------------------------------------

_wire(AgentId, str, AgentId.parse)
_wire(ServerId, str, ServerId.parse)
_wire(PublicJwk, PublicJwk.to_dict, PublicJwk.from_dict)


# --- token claims --------------------------------------------------------------------------

_wire(Confirmation, Confirmation.to_claim, Confirmation.from_claim)


def _claims_wire(cls: type[TokenClaims]) -> None:
    _wire(
        cls,
        lambda claims: claims.to_payload(),
        lambda value: cls.from_payload(_mapping(value, f"{cls.TYPE.value} payload")),
    )


for _claims_cls in CLAIMS_FOR.values():
    _claims_wire(_claims_cls)


def _dump_any_claims(claims: TokenClaims) -> dict[str, Any]:
    return {"type": claims.TYPE.value, "payload": claims.to_payload()}


def _load_any_claims(value: object) -> TokenClaims:
    data = _mapping(value, "token claims")
    token_type = _structure_enum(_member(data, "type", "token claims"), TokenType)
    cls = CLAIMS_FOR[token_type]
    return cls.from_payload(_mapping(_member(data, "payload", "token claims"), "payload"))


_wire(TokenClaims, _dump_any_claims, _load_any_claims)


# --- verified tokens -----------------------------------------------------------------------


def _is_verified_token(t: Any) -> bool:
    return _origin(t) is VerifiedToken


def _dump_verified_token(token: VerifiedToken[Any]) -> dict[str, Any]:
    return {
        "type": token.type.value,
        "alg": token.alg.value,
        "kid": token.kid,
        "issuer_key": token.issuer_key.to_dict(),
        "token": token.token,
        "claims": token.claims.to_payload(),
    }


def _load_verified_token(value: object, t: Any) -> VerifiedToken[Any]:
    what = "verified token"
    data = _mapping(value, what)
    token_type = _structure_enum(_member(data, "type", what), TokenType)
    cls = CLAIMS_FOR[token_type]
    wanted = get_args(t)
    if wanted and isinstance(wanted[0], type) and not issubclass(cls, wanted[0]):
        raise MalformedInput(f"a {token_type.value} is not a VerifiedToken[{wanted[0].__name__}]")
    alg = _structure_enum(_member(data, "alg", what), Alg)
    kid = _member(data, "kid", what)
    if kid is not None:
        kid = _text(kid, "verified token kid")
    issuer_key = PublicJwk.from_dict(_member(data, "issuer_key", what))
    token = _text(_member(data, "token", what), "verified token")
    claims = cls.from_payload(_mapping(_member(data, "claims", what), "verified token claims"))
    jws = decode_compact(token)
    if jws.typ != token_type.value or header_alg(jws) is not alg or jws.kid != kid:
        raise MalformedInput("stored verified token: type, alg or kid differ from the token")
    if cls.from_payload(jws.payload) != claims:
        raise MalformedInput("stored verified token: claims differ from the token")
    verify_jws(jws, issuer_key)
    return VerifiedToken(
        type=token_type, claims=claims, alg=alg, kid=kid, issuer_key=issuer_key, token=token
    )


converter.register_unstructure_hook_func(_is_verified_token, _dump_verified_token)
converter.register_structure_hook_func(_is_verified_token, _load_verified_token)


def _dump_jws(jws: UnverifiedJws) -> str:
    return f"{jws.signing_input.decode('ascii')}.{b64url_encode(jws.signature)}"


_wire(UnverifiedJws, _dump_jws, decode_compact)


def _dump_resolver(resolver: StaticKeyResolver) -> list[dict[str, Any]]:
    return [
        {"issuer": issuer, "dwk": dwk, "keys": [key.to_dict() for key in keys]}
        for (issuer, dwk), keys in resolver.keys.items()
    ]


def _load_resolver(value: object) -> StaticKeyResolver:
    keys: dict[tuple[str, str], tuple[PublicJwk, ...]] = {}
    for entry in _array(value, "key resolver"):
        data = _mapping(entry, "key resolver entry")
        issuer = _text(_member(data, "issuer", "key resolver entry"), "issuer")
        dwk = _text(_member(data, "dwk", "key resolver entry"), "dwk")
        jwks = _array(_member(data, "keys", "key resolver entry"), "keys")
        if (issuer, dwk) in keys:
            raise MalformedInput("key resolver lists an issuer and dwk twice")
        keys[(issuer, dwk)] = tuple(PublicJwk.from_dict(jwk) for jwk in jwks)
    return StaticKeyResolver(keys)


_wire(StaticKeyResolver, _dump_resolver, _load_resolver)


# --- metadata and missions -----------------------------------------------------------------


def _metadata_wire(cls: type[ServerMetadata]) -> None:
    _wire(cls, lambda document: document.to_dict(), cls.from_dict)


for _metadata_cls in METADATA_TYPES.values():
    _metadata_wire(_metadata_cls)


def _dump_any_metadata(document: ServerMetadata) -> dict[str, Any]:
    return {"dwk": type(document).dwk.value, "document": document.to_dict()}


def _load_any_metadata(value: object) -> ServerMetadata:
    data = _mapping(value, "metadata")
    dwk = _member(data, "dwk", "metadata")
    cls = METADATA_TYPES.get(dwk) if isinstance(dwk, str) else None
    if cls is None:
        raise MalformedInput("metadata 'dwk' names no known document")
    return cls.from_dict(_member(data, "document", "metadata"))


_wire(ServerMetadata, _dump_any_metadata, _load_any_metadata)


def _dump_mission(blob: MissionBlob) -> dict[str, Any]:
    """The blob's members as :meth:`MissionBlob.from_dict` reads them (absent, not null)."""
    out: dict[str, Any] = {
        "agent": str(blob.agent),
        "approved_at": blob.approved_at.isoformat(),
        "description": blob.description,
    }
    if blob.expires_at is not None:
        out["expires_at"] = blob.expires_at.isoformat()
    if blob.approved_tools is not None:
        out["approved_tools"] = [
            {"name": tool.name}
            | ({} if tool.description is None else {"description": tool.description})
            for tool in blob.approved_tools
        ]
    if blob.approved_resources is not None:
        out["approved_resources"] = list(blob.approved_resources)
    return out


_wire(MissionBlob, _dump_mission, MissionBlob.from_dict)
_wire(ApprovalResponse, ApprovalResponse.to_dict, ApprovalResponse.from_dict)


# --- HTTP messages and signatures ----------------------------------------------------------


def _load_headers(value: object) -> Headers:
    pairs = []
    for pair in _array(value, "headers"):
        items = _array(pair, "header")
        if len(items) != 2 or not all(isinstance(item, str) for item in items):
            raise MalformedInput("each header is a [name, value] pair of strings")
        pairs.append((items[0], items[1]))
    return Headers(tuple(pairs))


_wire(Headers, lambda headers: [list(pair) for pair in headers.pairs], _load_headers)


def _load_component(value: object) -> Component:
    return Component.of(_text(value, "component identifier"))


def _load_covered(value: object) -> CoveredComponents:
    items = _array(value, "covered components")
    return CoveredComponents(components=[_load_component(item) for item in items])


_wire(Component, lambda component: component.short, _load_component)
_wire(
    CoveredComponents,
    lambda covered: [component.short for component in covered.components],
    _load_covered,
)


def _dump_sf_params(extra: tuple[tuple[str, Any], ...]) -> list[list[str]]:
    """Unknown signature parameters as ``[name, <serialised sf bare item>]``."""
    return [[name, sfv.serialize_item((value, {}))] for name, value in extra]


def _load_sf_params(value: object, _t: Any) -> tuple[tuple[str, Any], ...]:
    out = []
    for entry in _array(value, "extra signature parameters"):
        items = _array(entry, "extra signature parameter")
        if len(items) != 2 or not all(isinstance(item, str) for item in items):
            raise MalformedInput("an extra signature parameter is a [name, value] pair")
        bare, params = sfv.parse_item(items[1], what="extra signature parameter")
        if params:
            raise MalformedInput("an extra signature parameter value has no parameters")
        out.append((items[0], bare))
    return tuple(out)


converter.register_structure_hook_factory(
    _is_exactly(SignatureParams),
    lambda cls: _fields_structure_fn(cls, extra=override(struct_hook=_load_sf_params)),
)
converter.register_unstructure_hook_factory(
    _is_exactly(SignatureParams),
    lambda cls: make_dict_unstructure_fn(
        cls, converter, extra=override(unstruct_hook=_dump_sf_params)
    ),
)


def _load_error_code(value: object, _t: Any) -> SignatureErrorCode | str:
    text = _text(value, "Signature-Error code")
    known = {code.value: code for code in SignatureErrorCode}
    return known.get(text, text)


converter.register_structure_hook(SignatureErrorCode | str, _load_error_code)


# --- Signature-Key schemes: tagged by scheme name when the field type is the union ---------

_SCHEMES: dict[str, type[Any]] = {
    cls.scheme: cls
    for cls in (
        JwtScheme,
        JktJwtScheme,
        JwksUriScheme,
        JwksScheme,
        HwkScheme,
        X509Scheme,
        SelfJwtScheme,
    )
}


def _is_scheme_union(t: Any) -> bool:
    return bool(t == SignatureKeyScheme)


def _dump_scheme(scheme: SignatureKeyScheme) -> dict[str, Any]:
    if isinstance(scheme, UnknownScheme):
        return {"scheme": scheme.name}
    fields: dict[str, Any] = converter.unstructure(scheme)
    return {"scheme": scheme.scheme, **fields}


def _load_scheme(value: object, _t: Any) -> SignatureKeyScheme:
    data = _mapping(value, "Signature-Key scheme")
    name = _text(_member(data, "scheme", "Signature-Key scheme"), "scheme")
    cls = _SCHEMES.get(name)
    if cls is None:
        return UnknownScheme(name=name)
    fields = {key: item for key, item in data.items() if key != "scheme"}
    scheme: SignatureKeyScheme = converter.structure(fields, cls)
    return scheme


converter.register_unstructure_hook_func(_is_scheme_union, _dump_scheme)
converter.register_structure_hook_func(_is_scheme_union, _load_scheme)


# --- the boundary ----------------------------------------------------------------------------


def _describe(exc: BaseException, _t: type | None) -> str:
    if isinstance(exc, AAuthError):
        text = exc.detail
    elif isinstance(exc, KeyError):
        text = "required member is missing"
    elif isinstance(exc, ValueError | TypeError):
        text = str(exc) or type(exc).__name__
    elif isinstance(exc, RecursionError):
        text = "value is nested too deeply"
    else:
        text = type(exc).__name__
    return text[:120]


def _type_name(cls: Any) -> str:
    return getattr(cls, "__name__", None) or str(cls)


@overload
def structure(data: object, cls: type[T]) -> T: ...


@overload
def structure(data: object, cls: Any) -> Any: ...


def structure(data: object, cls: Any) -> Any:
    """Build a ``cls`` from JSON-compatible ``data``; raise :class:`MalformedInput` only.

    A :class:`MalformedInput` from a parser passes unchanged; any other failure (another
    :class:`AAuthError` such as ``InvalidKey``, or a cattrs validation error) becomes a
    :class:`MalformedInput` whose detail names the path, chained to the original.
    """
    try:
        return converter.structure(data, cls)
    except MalformedInput:
        raise
    except StructureHandlerNotFoundError as exc:
        raise TypeError(f"no converter hook for {_type_name(cls)}") from exc
    except Exception as exc:
        if isinstance(exc, ClassValidationError | IterableValidationError):
            messages = cattrs.transform_error(exc, format_exception=_describe)
        else:
            messages = [f"{_describe(exc, None)} @ $"]
        detail = f"cannot restore {_type_name(cls)}: " + "; ".join(messages[:3])
        raise MalformedInput(detail[:_MAX_DETAIL]) from exc


def unstructure(value: object, as_type: Any = None) -> Any:
    """``value`` as JSON-compatible data (dicts, lists, str, int, float, bool, None).

    ``as_type`` is the declared type when it is not ``type(value)``: an abstract base
    (:class:`TokenClaims`, :class:`ServerMetadata`) or :data:`SignatureKeyScheme`, whose
    forms are tagged.
    """
    return converter.unstructure(value, unstructure_as=as_type)


def to_json(value: object, as_type: Any = None) -> str:
    """:func:`unstructure` as compact ASCII JSON text."""
    return json.dumps(
        unstructure(value, as_type), separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


@overload
def from_json(text: str | bytes, cls: type[T], *, max_size: int = ...) -> T: ...


@overload
def from_json(text: str | bytes, cls: Any, *, max_size: int = ...) -> Any: ...


def from_json(text: str | bytes, cls: Any, *, max_size: int = MAX_JSON_BYTES) -> Any:
    """Parse JSON text (strict: UTF-8, no duplicate members, no NaN, at most ``max_size``
    bytes) and :func:`structure` it as ``cls``."""
    if isinstance(text, bytes | bytearray):
        if len(text) > max_size:
            raise MalformedInput(f"JSON text is longer than {max_size}")
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedInput("JSON text is not UTF-8") from None
    if not isinstance(text, str):
        raise MalformedInput("JSON text must be str or bytes")
    if len(text) > max_size:
        raise MalformedInput(f"JSON text is longer than {max_size}")
    try:
        data = strict_json.loads(text)
    except (ValueError, RecursionError):
        raise MalformedInput("text is not valid JSON") from None
    return structure(data, cls)
