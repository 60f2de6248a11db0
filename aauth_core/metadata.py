"""The four metadata documents (``/.well-known/aauth-*.json``, -11 §4.1-§4.3).

Each document is a frozen value whose fields are the members it understands; absent
OPTIONAL members are ``None`` so that :meth:`ServerMetadata.to_dict` emits exactly what was
present (defaults such as ``signature_window`` = 60 are properties, not stored values).
Unknown members are ignored. Every structural failure is a :class:`MetadataError`
(``invalid_metadata``, 502); the issuer check against the fetch URL gives
``issuer_missing`` / ``issuer_mismatch`` (401), the Signature Keys codes.

Field metadata drives both directions: ``member`` is the JSON name, ``kind`` the rule.
"""

from __future__ import annotations

import enum
import types
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Self

import attrs
from attrs import field, frozen

from aauth_core import strict_json
from aauth_core.algorithms import Alg
from aauth_core.errors import AAuthError, InvalidIdentifier, MetadataError
from aauth_core.identifiers import ServerId
from aauth_core.urls import endpoint_url, https_url

__all__ = [
    "WellKnown",
    "AccessMode",
    "ServerMetadata",
    "AgentProviderMetadata",
    "PersonServerMetadata",
    "AccessServerMetadata",
    "ResourceMetadata",
    "METADATA_TYPES",
    "parse_metadata",
    "parse_metadata_json",
    "load_json_object",
    "MAX_METADATA_BYTES",
    "DEFAULT_SIGNATURE_WINDOW",
]

#: Upper bound on a metadata document's size before parsing.
MAX_METADATA_BYTES = 64 * 1024
#: -11 §4.3: ``signature_window`` when the resource does not declare one.
DEFAULT_SIGNATURE_WINDOW = 60
_MAX_SIGNATURE_WINDOW = 2**31 - 1


class WellKnown(enum.StrEnum):
    """The ``dwk`` values: the well-known document names of the four server roles."""

    AGENT = "aauth-agent.json"
    PERSON = "aauth-person.json"
    ACCESS = "aauth-access.json"
    RESOURCE = "aauth-resource.json"


class AccessMode(enum.StrEnum):
    """Registered ``access_mode`` values (-11; ``session-token`` was ``aauth-access-token``)."""

    AGENT_TOKEN = "agent-token"  # noqa: S105 - a mode name, not a secret
    PERSON_TOKEN = "person-token"  # noqa: S105 - a mode name, not a secret
    SESSION_TOKEN = "session-token"  # noqa: S105 - a mode name, not a secret
    AUTH_TOKEN = "auth-token"  # noqa: S105 - a mode name, not a secret


def load_json_object(
    raw: bytes | str,
    *,
    max_size: int,
    what: str,
    error: type[AAuthError] = MetadataError,
) -> dict[str, Any]:
    """Strict JSON object parsing (:mod:`aauth_core.strict_json`); metadata errors by default."""
    return strict_json.load_json_object(raw, max_size=max_size, what=what, error=error)


# --- member kinds: JSON value -> typed value (each raises MetadataError) ----------------


def _bad(member: str, problem: str) -> MetadataError:
    return MetadataError(f"metadata member {member!r} {problem}")


def _issuer(member: str, value: object) -> ServerId:
    if isinstance(value, ServerId):
        return value
    try:
        return ServerId.parse(value)
    except InvalidIdentifier as exc:
        raise _bad(member, f"is not a server identifier: {exc.detail}") from exc


def _https(member: str, value: object) -> str:
    return https_url(value, what=f"metadata member {member!r}", error=MetadataError)


def _endpoint(member: str, value: object) -> str:
    return endpoint_url(value, what=f"metadata member {member!r}", error=MetadataError)


def _text(member: str, value: object) -> str:
    if not isinstance(value, str):
        raise _bad(member, "must be a string")
    return value


def _strings(member: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        raise _bad(member, "must be an array of strings")
    for item in value:
        if not isinstance(item, str) or not item:
            raise _bad(member, "must contain only non-empty strings")
    return tuple(value)


def _bool(member: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise _bad(member, "must be a boolean")
    return value


def _window(member: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(member, "must be an integer number of seconds")
    if not 0 < value <= _MAX_SIGNATURE_WINDOW:
        raise _bad(member, "must be a positive number of seconds")
    return value


def _str_map(member: str, value: object) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        raise _bad(member, "must be an object of strings")
    for key, item in value.items():
        if not isinstance(key, str) or not key or not isinstance(item, str):
            raise _bad(member, "must map non-empty names to strings")
    return types.MappingProxyType(dict(value))


_KINDS: dict[str, Callable[[str, object], object]] = {
    "issuer": _issuer,
    "https": _https,
    "endpoint": _endpoint,
    "text": _text,
    "strings": _strings,
    "bool": _bool,
    "window": _window,
    "str_map": _str_map,
}


def _to_json(value: object) -> object:
    if isinstance(value, ServerId):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    return value


def _kind(kind: str, member: str | None = None) -> dict[str, str | None]:
    return {"kind": kind, "member": member}


def _member_name(attribute: attrs.Attribute[Any]) -> str:
    member = attribute.metadata.get("member")
    return member if isinstance(member, str) else attribute.name


@frozen(kw_only=True)
class ServerMetadata:
    """Common fields of all four documents (-11 §4.2). Build with :meth:`from_dict`."""

    dwk: ClassVar[WellKnown]

    issuer: ServerId = field(metadata=_kind("issuer"))
    accept_signature_algs: tuple[str, ...] | None = field(
        default=None, metadata=_kind("strings"), hash=False
    )
    name: str | None = field(default=None, metadata=_kind("text"), hash=False)
    description: str | None = field(default=None, metadata=_kind("text"), hash=False)
    logo_uri: str | None = field(default=None, metadata=_kind("https"), hash=False)
    logo_dark_uri: str | None = field(default=None, metadata=_kind("https"), hash=False)
    documentation_uri: str | None = field(default=None, metadata=_kind("https"), hash=False)
    tos_uri: str | None = field(default=None, metadata=_kind("https"), hash=False)
    policy_uri: str | None = field(default=None, metadata=_kind("https"), hash=False)

    def __attrs_post_init__(self) -> None:
        # Validated at construction too: re-run each member's rule on its JSON form, and
        # keep the typed result (a str issuer becomes a ServerId, a list a tuple).
        for attribute in attrs.fields(type(self)):
            value = getattr(self, attribute.name)
            if value is not None:
                rule = _KINDS[attribute.metadata["kind"]]
                typed = rule(_member_name(attribute), _to_json(value))
                object.__setattr__(self, attribute.name, typed)

    @classmethod
    def from_dict(cls, data: object, *, expected_issuer: str | ServerId | None = None) -> Self:
        """Validate a decoded document (see the module docstring for the error codes).

        ``expected_issuer`` is the fetch URL minus ``/.well-known/{dwk}``; ``issuer``
        must equal it byte for byte.
        """
        if cls is ServerMetadata:
            raise TypeError("parse with a concrete document class or parse_metadata()")
        if not isinstance(data, Mapping):
            raise MetadataError(f"{cls.dwk} is not a JSON object")
        if expected_issuer is not None:
            issuer = data.get("issuer")
            if issuer is None:
                raise MetadataError(f"{cls.dwk} has no issuer", code="issuer_missing", status=401)
            if not isinstance(issuer, str) or issuer != str(expected_issuer):
                raise MetadataError(
                    f"{cls.dwk} issuer does not equal the URL it was fetched from",
                    code="issuer_mismatch",
                    status=401,
                )
        values: dict[str, Any] = {}
        for attribute in attrs.fields(cls):
            member = _member_name(attribute)
            if member not in data:
                if attribute.default is attrs.NOTHING:
                    raise MetadataError(f"{cls.dwk} is missing the REQUIRED member {member!r}")
                continue
            raw = data[member]
            if raw is None:
                raise _bad(member, "must not be null")
            values[attribute.name] = _KINDS[attribute.metadata["kind"]](member, raw)
        return cls(**values)

    @classmethod
    def from_json(
        cls,
        raw: bytes | str,
        *,
        expected_issuer: str | ServerId | None = None,
        max_size: int = MAX_METADATA_BYTES,
    ) -> Self:
        """Parse the fetched bytes: oversize, invalid JSON or a non-object → ``MetadataError``."""
        data = load_json_object(raw, max_size=max_size, what=cls.dwk.value)
        return cls.from_dict(data, expected_issuer=expected_issuer)

    def to_dict(self) -> dict[str, object]:
        """The JSON document: exactly the members that are set."""
        result: dict[str, object] = {}
        for attribute in attrs.fields(type(self)):
            value = getattr(self, attribute.name)
            if value is not None:
                result[_member_name(attribute)] = _to_json(value)
        return result

    @property
    def accepted_algs(self) -> frozenset[Alg] | None:
        """The declared algorithms this library implements (``None``: nothing declared)."""
        if self.accept_signature_algs is None:
            return None
        known = {a.value: a for a in Alg}
        return frozenset(known[n] for n in self.accept_signature_algs if n in known)


@frozen(kw_only=True)
class AgentProviderMetadata(ServerMetadata):
    """``aauth-agent.json``: the Agent Provider (its ``issuer`` host is its agents' domain)."""

    dwk: ClassVar[WellKnown] = WellKnown.AGENT

    jwks_uri: str = field(metadata=_kind("https"))
    callback_endpoint: str | None = field(default=None, metadata=_kind("endpoint"), hash=False)
    event_endpoint: str | None = field(default=None, metadata=_kind("endpoint"), hash=False)
    localhost_callback_allowed: bool | None = field(
        default=None, metadata=_kind("bool"), hash=False
    )

    @property
    def allows_localhost_callback(self) -> bool:
        """``localhost_callback_allowed`` with its default (``false``)."""
        return bool(self.localhost_callback_allowed)


@frozen(kw_only=True)
class PersonServerMetadata(ServerMetadata):
    """``aauth-person.json``: the Person Server."""

    dwk: ClassVar[WellKnown] = WellKnown.PERSON

    jwks_uri: str = field(metadata=_kind("https"))
    auth_token_endpoint: str = field(metadata=_kind("endpoint"))
    person_token_endpoint: str = field(metadata=_kind("endpoint"))
    mission_endpoint: str | None = field(default=None, metadata=_kind("endpoint"), hash=False)
    permission_endpoint: str | None = field(default=None, metadata=_kind("endpoint"), hash=False)
    audit_endpoint: str | None = field(default=None, metadata=_kind("endpoint"), hash=False)
    interaction_endpoint: str | None = field(default=None, metadata=_kind("endpoint"), hash=False)
    mission_control_endpoint: str | None = field(
        default=None, metadata=_kind("endpoint"), hash=False
    )
    revocation_endpoint: str | None = field(default=None, metadata=_kind("endpoint"), hash=False)
    scopes_supported: tuple[str, ...] | None = field(
        default=None, metadata=_kind("strings"), hash=False
    )
    claims_supported: tuple[str, ...] | None = field(
        default=None, metadata=_kind("strings"), hash=False
    )


@frozen(kw_only=True)
class AccessServerMetadata(ServerMetadata):
    """``aauth-access.json``: the Access Server."""

    dwk: ClassVar[WellKnown] = WellKnown.ACCESS

    jwks_uri: str = field(metadata=_kind("https"))
    auth_token_endpoint: str = field(metadata=_kind("endpoint"))
    revocation_endpoint: str | None = field(default=None, metadata=_kind("endpoint"), hash=False)


@frozen(kw_only=True)
class ResourceMetadata(ServerMetadata):
    """``aauth-resource.json``: a resource. ``jwks_uri`` is conditional (-11 §4.3)."""

    dwk: ClassVar[WellKnown] = WellKnown.RESOURCE

    jwks_uri: str | None = field(default=None, metadata=_kind("https"), hash=False)
    access_mode_raw: str | None = field(
        default=None, metadata=_kind("text", "access_mode"), hash=False
    )
    authorization_endpoint: str | None = field(default=None, metadata=_kind("endpoint"), hash=False)
    scope_descriptions: Mapping[str, str] | None = field(
        default=None, metadata=_kind("str_map"), hash=False
    )
    signature_window: int | None = field(default=None, metadata=_kind("window"), hash=False)
    additional_signature_components: tuple[str, ...] | None = field(
        default=None, metadata=_kind("strings"), hash=False
    )
    revocation_endpoint: str | None = field(default=None, metadata=_kind("endpoint"), hash=False)

    @property
    def access_mode(self) -> AccessMode | None:
        """The declared mode; an unknown value is no declaration (see ``access_mode_raw``)."""
        if self.access_mode_raw is None:
            return None
        try:
            return AccessMode(self.access_mode_raw)
        except ValueError:
            return None

    @property
    def effective_signature_window(self) -> int:
        """``signature_window`` in seconds, default 60."""
        return self.signature_window or DEFAULT_SIGNATURE_WINDOW


#: ``dwk`` → the class of that document.
METADATA_TYPES: Mapping[str, type[ServerMetadata]] = types.MappingProxyType(
    {
        WellKnown.AGENT.value: AgentProviderMetadata,
        WellKnown.PERSON.value: PersonServerMetadata,
        WellKnown.ACCESS.value: AccessServerMetadata,
        WellKnown.RESOURCE.value: ResourceMetadata,
    }
)


def _type_for(dwk: object) -> type[ServerMetadata]:
    cls = METADATA_TYPES.get(dwk) if isinstance(dwk, str) else None
    if cls is None:
        raise MetadataError("unknown metadata document (dwk)", code="invalid_request", status=400)
    return cls


def parse_metadata(
    dwk: str, data: object, *, expected_issuer: str | ServerId | None = None
) -> ServerMetadata:
    """Validate a decoded document of role ``dwk`` (e.g. ``"aauth-person.json"``)."""
    result: ServerMetadata = _type_for(dwk).from_dict(data, expected_issuer=expected_issuer)
    return result


def parse_metadata_json(
    dwk: str,
    raw: bytes | str,
    *,
    expected_issuer: str | ServerId | None = None,
    max_size: int = MAX_METADATA_BYTES,
) -> ServerMetadata:
    """Parse the fetched bytes of a document of role ``dwk``."""
    result: ServerMetadata = _type_for(dwk).from_json(
        raw, expected_issuer=expected_issuer, max_size=max_size
    )
    return result
