"""RFC 9421 component identifiers (§2) and their values in a message.

A :class:`Component` is a component identifier: a name (``"@method"``, ``"content-type"``)
plus its parameters (``sf``, ``key``, ``bs``, ``req``, ``tr``, ``name``), in wire order.
It is validated at construction: a derived name must be one RFC 9421 defines, a field
name must be lower case, and each parameter must be one that applies to the name. A bad
identifier raises :class:`ComponentError`, a ``ValueError``: on the signing side that is
caller misuse, and the verifying side turns it into ``invalid_signature``.

:func:`component_values` computes the value(s) a component contributes to the signature
base. The target URI is split once per message (:class:`MessageParts`).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from urllib.parse import parse_qsl, unquote_plus

from attrs import field, frozen

from aauth_core import sfv
from aauth_core.errors import MalformedInput
from aauth_core.http import Headers, HttpRequest, HttpResponse

__all__ = [
    "ComponentError",
    "Component",
    "DERIVED_COMPONENTS",
    "DERIVED_VALUES",
    "STRUCTURED_FIELD_TYPES",
    "Target",
    "split_target",
    "MessageParts",
    "component_values",
    "field_value",
]

Message = HttpRequest | HttpResponse
ParamValue = str | bool


class ComponentError(ValueError):
    """A component identifier that is invalid, or that has no value in the message."""


#: RFC 9421 §2.2 derived components (``@signature-params`` is never a covered component).
DERIVED_COMPONENTS = frozenset(
    {
        "@method",
        "@target-uri",
        "@authority",
        "@scheme",
        "@request-target",
        "@path",
        "@query",
        "@query-param",
        "@status",
    }
)

#: Structured field types for ``;sf`` (RFC 9421 §2.1.1 needs the field's type to
#: re-serialise it). Fields not listed here cannot be covered with ``;sf``.
STRUCTURED_FIELD_TYPES: Mapping[str, str] = {
    "signature-key": "dictionary",
    "signature-key-cache": "dictionary",
    "signature-error": "dictionary",
    "signature-input": "dictionary",
    "signature": "dictionary",
    "accept-signature": "dictionary",
    "accept-signature-scheme": "list",
    "accept-signature-alg": "list",
    "aauth-requirement": "dictionary",
    "aauth-capabilities": "list",
    "content-digest": "dictionary",
    "repr-digest": "dictionary",
    "want-content-digest": "dictionary",
    "want-repr-digest": "dictionary",
    "priority": "dictionary",
    "cache-status": "list",
    "proxy-status": "list",
}

# RFC 9110 §5.1 field-name (a token), lower case as RFC 9421 §2.1 requires.
_FIELD_NAME = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+")
_PRINTABLE = re.compile(r"[\x20-\x7e]*")
_FLAG_PARAMS = frozenset({"sf", "bs", "req", "tr"})
_STRING_PARAMS = frozenset({"key", "name"})


def _check_params(name: str, params: tuple[tuple[str, ParamValue], ...]) -> None:
    seen: set[str] = set()
    derived = name.startswith("@")
    for key, value in params:
        if key in seen:
            raise ComponentError(f"component parameter {key!r} is repeated")
        seen.add(key)
        if key in _FLAG_PARAMS:
            if value is not True:
                raise ComponentError(f"component parameter {key!r} must be a bare flag")
            if derived and key != "req":
                raise ComponentError(f"parameter {key!r} does not apply to {name}")
        elif key in _STRING_PARAMS:
            if not isinstance(value, str) or _PRINTABLE.fullmatch(value) is None:
                raise ComponentError(f"component parameter {key!r} must be a string")
            applies = name == "@query-param" if key == "name" else not derived
            if not applies:
                raise ComponentError(f"parameter {key!r} does not apply to {name}")
        else:
            raise ComponentError(f"unknown component parameter {key[:20]!r}")
    if name == "@query-param" and "name" not in seen:
        raise ComponentError('"@query-param" needs a name parameter')
    if "bs" in seen and ("sf" in seen or "key" in seen):
        raise ComponentError("bs cannot be combined with sf or key")


def _check_name(name: str) -> None:
    if not isinstance(name, str):
        raise ComponentError("a component name is a str")
    if name.startswith("@"):
        if name not in DERIVED_COMPONENTS:
            raise ComponentError(f"unknown derived component {name[:40]!r}")
    elif _FIELD_NAME.fullmatch(name) is None:
        raise ComponentError(f"component name {name[:40]!r} is not a lower-case field name")


def _serialise_identifier(name: str, params: tuple[tuple[str, ParamValue], ...]) -> str:
    out = [f'"{name}"']  # names are validated: no '"' or '\' can occur
    for key, value in params:
        out.append(f";{key}" if value is True else f";{key}={sfv.serialize_string(str(value))}")
    return "".join(out)


def _to_params(value: object) -> tuple[tuple[str, ParamValue], ...]:
    if isinstance(value, Mapping):
        return tuple(value.items())
    if isinstance(value, tuple | list):
        return tuple(value)
    raise ComponentError("component parameters are a mapping or a tuple of pairs")


@frozen(kw_only=True, cache_hash=True)
class Component:
    """One component identifier. Build with ``Component(name=..., params=...)``,
    :meth:`of` (a name or a serialised identifier) or :meth:`parse`."""

    name: str
    params: tuple[tuple[str, ParamValue], ...] = field(default=(), converter=_to_params)
    #: The serialised identifier as it appears in the signature base (``"@path"``).
    identifier: str = field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        _check_name(self.name)
        _check_params(self.name, self.params)
        object.__setattr__(self, "identifier", _serialise_identifier(self.name, self.params))

    @staticmethod
    def of(spec: str | Component) -> Component:
        """A component from a plain name (``"@method"``) or a serialised identifier
        (``'"@query-param";name="id"'``); components pass through."""
        if isinstance(spec, Component):
            return spec
        if not isinstance(spec, str):
            raise ComponentError("a component is named by a str")
        if spec.startswith('"'):
            return Component.parse(spec)
        return _plain(spec)

    @staticmethod
    def parse(text: str) -> Component:
        """Parse a serialised identifier (an sf-string with parameters)."""
        try:
            bare, params = sfv.parse_item(text, what="component identifier")
        except MalformedInput as exc:
            raise ComponentError(str(exc)) from exc
        return Component.from_sf(bare, params)

    @staticmethod
    def from_sf(bare: object, params: Mapping[str, object]) -> Component:
        """A component from a parsed structured-field item (an sf-string and parameters)."""
        if type(bare) is not str:
            raise ComponentError("a component identifier is a structured field string")
        pairs: list[tuple[str, ParamValue]] = []
        for key, value in params.items():
            if not isinstance(value, str | bool):
                raise ComponentError(f"component parameter {key[:20]!r} has a wrong type")
            pairs.append((key, value))
        return _cached(bare, tuple(pairs))

    def param(self, key: str) -> ParamValue | None:
        for name, value in self.params:
            if name == key:
                return value
        return None

    @property
    def is_derived(self) -> bool:
        return self.name.startswith("@")

    @property
    def short(self) -> str:
        """The plain name when there are no parameters, else the serialised identifier
        (the form ``required_input`` lists)."""
        return self.name if not self.params else self.identifier


@lru_cache(maxsize=512)
def _plain(name: str) -> Component:
    return Component(name=name)


@lru_cache(maxsize=1024)
def _cached(name: str, params: tuple[tuple[str, ParamValue], ...]) -> Component:
    return Component(name=name, params=params)


# --- the target URI ------------------------------------------------------------------

# An absolute http(s)-style URI: scheme "://" authority path-abempty [ "?" query ]
# [ "#" fragment ]. Stricter than urlsplit (which silently drops tabs and newlines).
_URI = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/?#\s]*)([^?#\s]*)(?:\?([^#\s]*))?(?:#\S*)?")
_DEFAULT_PORTS = {"https": "443", "http": "80"}


@frozen(kw_only=True)
class Target:
    """The parts of a request's target URI that derived components use."""

    scheme: str
    authority: str
    path: str
    query: str | None


@lru_cache(maxsize=1024)
def split_target(url: str) -> Target:
    """Split an absolute target URI once, normalising ``@authority`` (RFC 9421 §2.2.3):
    lower-case host, default port dropped, userinfo removed; empty path becomes ``/``."""
    match = _URI.fullmatch(url) if isinstance(url, str) else None
    if match is None:
        raise ComponentError("the target URI is not an absolute URI")
    scheme_raw, netloc, path, query = match.groups()
    scheme = scheme_raw.lower()
    host = netloc.rpartition("@")[2]
    port = ""
    if host.startswith("["):
        end = host.find("]")
        if end < 0 or (end + 1 < len(host) and host[end + 1] != ":"):
            raise ComponentError("the target URI has a malformed IPv6 authority")
        if end + 1 < len(host):
            host, port = host[: end + 1], host[end + 2 :]
    elif ":" in host:
        host, _, port = host.partition(":")
    if not host or (port and not port.isdigit()) or not host.isascii():
        raise ComponentError("the target URI has an invalid authority")
    host = host.lower()
    authority = f"{host}:{port}" if port and port != _DEFAULT_PORTS.get(scheme) else host
    return Target(scheme=scheme, authority=authority, path=path or "/", query=query)


class MessageParts:
    """A message prepared for component lookups: the target URI is split at most once."""

    __slots__ = ("_target", "extra", "message")

    def __init__(self, message: Message, extra: Mapping[str, str] | None = None) -> None:
        self.message = message
        #: Fields not (yet) in ``message.headers`` that count as present (signing side).
        self.extra = {k.lower(): v for k, v in extra.items()} if extra else None
        self._target: Target | None = None

    @property
    def request(self) -> HttpRequest:
        message = self.message
        if not isinstance(message, HttpRequest):
            raise ComponentError("a request-derived component needs a request")
        return message

    @property
    def target(self) -> Target:
        target = self._target
        if target is None:
            target = self._target = split_target(self.request.url)
        return target

    def field_lines(self, name: str) -> list[str] | None:
        """The trimmed field lines of ``name`` (lower case), or None when absent."""
        if self.extra is not None and name in self.extra:
            return [self.extra[name].strip(" \t")]
        lines = [v.strip(" \t") for n, v in self.message.headers.pairs if n.lower() == name]
        return lines or None

    def field(self, name: str) -> str | None:
        """The combined field value (RFC 9421 §2.1), or None when absent."""
        if self.extra is not None and name in self.extra:
            return self.extra[name].strip(" \t")
        return field_value(self.message.headers, name)


def field_value(headers: Headers, name: str) -> str | None:
    """RFC 9421 §2.1: each field line trimmed, joined with ``", "``; ``name`` lower case."""
    combined = headers.get(name)
    if combined is None:
        return None
    if "," not in combined:  # one field line (several always join with ", "); memchr-fast
        return combined.strip(" \t")
    return ", ".join(v.strip(" \t") for n, v in headers.pairs if n.lower() == name)


# --- values --------------------------------------------------------------------------


def _method(parts: MessageParts) -> str:
    return parts.request.method


def _target_uri(parts: MessageParts) -> str:
    t = parts.target
    query = "" if t.query is None else f"?{t.query}"
    return f"{t.scheme}://{t.authority}{t.path}{query}"


def _authority(parts: MessageParts) -> str:
    return parts.target.authority


def _scheme(parts: MessageParts) -> str:
    return parts.target.scheme


def _request_target(parts: MessageParts) -> str:
    t = parts.target
    return t.path if t.query is None else f"{t.path}?{t.query}"


def _path(parts: MessageParts) -> str:
    return parts.target.path


def _query(parts: MessageParts) -> str:
    query = parts.target.query
    return "?" if query is None else f"?{query}"


def _status(parts: MessageParts) -> str:
    message = parts.message
    if not isinstance(message, HttpResponse):
        raise ComponentError('"@status" applies to responses only')
    status = message.status
    if type(status) is not int or not 100 <= status <= 999:
        raise ComponentError("the response status is not a three-digit integer")
    return str(status)


#: The single-valued derived components (``@query-param`` is handled apart).
DERIVED_VALUES: dict[str, Callable[[MessageParts], str]] = {
    "@method": _method,
    "@target-uri": _target_uri,
    "@authority": _authority,
    "@scheme": _scheme,
    "@request-target": _request_target,
    "@path": _path,
    "@query": _query,
    "@status": _status,
}

# WHATWG URL "application/x-www-form-urlencoded percent-encode set" complement.
_FORM_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789*-._")


def _form_encode(text: str) -> str:
    """WHATWG URL §5.2 "percent-encode after encoding" (UTF-8, space as ``+``)."""
    out = []
    for byte in text.encode("utf-8"):
        if byte in _FORM_SAFE:
            out.append(chr(byte))
        elif byte == 0x20:
            out.append("+")
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def _query_params(parts: MessageParts, component: Component) -> tuple[str, ...]:
    """RFC 9421 §2.2.8: every occurrence of the named parameter, re-encoded."""
    wanted = unquote_plus(str(component.param("name")), errors="replace")
    query = parts.target.query or ""
    values = tuple(
        _form_encode(value)
        for name, value in parse_qsl(query, keep_blank_values=True, errors="replace")
        if name == wanted
    )
    if not values:
        raise ComponentError(f"query parameter {wanted[:40]!r} is not in the target URI")
    return values


def _bytes_of(line: str) -> bytes:
    try:
        return line.encode("latin-1")  # what ASGI/WSGI decode raw header bytes with
    except UnicodeEncodeError:
        return line.encode("utf-8")


def _structured(name: str, value: str, component: Component) -> str:
    key = component.param("key")
    kind = STRUCTURED_FIELD_TYPES.get(name)
    try:
        if key is not None:
            if kind not in (None, "dictionary"):
                raise ComponentError(f"{name} is not a dictionary field")
            members = sfv.parse_dictionary(value, what=name)
            if key not in members:
                raise ComponentError(f"{name} has no member {str(key)[:40]!r}")
            member = members[str(key)]
            if isinstance(member[0], list):
                return sfv.serialize_list([member], what=name)
            return sfv.serialize_item(member, what=name)
        if kind == "dictionary":
            return sfv.serialize_dictionary(sfv.parse_dictionary(value, what=name), what=name)
        if kind == "list":
            return sfv.serialize_list(sfv.parse_list(value, what=name), what=name)
        if kind == "item":
            return sfv.serialize_item(sfv.parse_item(value, what=name), what=name)
    except MalformedInput as exc:
        raise ComponentError(exc.detail) from exc
    raise ComponentError(f"the structured type of {name} is not known")


def component_values(
    component: Component, parts: MessageParts, request: MessageParts | None = None
) -> tuple[str, ...]:
    """The value(s) of ``component`` in ``parts`` (several only for a repeated
    ``@query-param``). ``request`` is the related request, for ``;req``."""
    params = component.params
    source = parts
    if params and component.param("req") is True:
        if request is None or not isinstance(parts.message, HttpResponse):
            raise ComponentError("the req parameter needs a response and its request")
        source = request
    name = component.name
    derived = DERIVED_VALUES.get(name)
    if derived is not None:
        return (derived(source),)
    if name == "@query-param":
        return _query_params(source, component)
    if params and component.param("tr") is True:
        raise ComponentError("trailer fields are not supported")
    if params and component.param("bs") is True:
        lines = source.field_lines(name)
        if lines is None:
            raise ComponentError(f"covered field {name!r} is absent")
        return (", ".join(f":{base64.b64encode(_bytes_of(v)).decode()}:" for v in lines),)
    value = source.field(name)
    if value is None:
        raise ComponentError(f"covered field {name!r} is absent")
    if params and (component.param("sf") is True or component.param("key") is not None):
        return (_structured(name, value, component),)
    return (value,)
