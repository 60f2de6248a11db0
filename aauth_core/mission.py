"""Missions (-11 §2.8): the approved blob, its ``s256`` and the PS's approval response.

A mission is identified by the approving PS plus ``s256``, the unpadded base64url SHA-256
of the exact blob bytes the PS persisted. The bytes are kept as received: they are what
was hashed, and re-serialising the parsed blob would not reproduce them.
"""

from __future__ import annotations

import hashlib
import re
import types
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from attrs import field, frozen

from aauth_core.b64 import b64url_decode, b64url_encode
from aauth_core.errors import MalformedInput
from aauth_core.identifiers import AgentId
from aauth_core.metadata import load_json_object

__all__ = [
    "mission_s256",
    "ApprovedTool",
    "MissionBlob",
    "ApprovalResponse",
    "MAX_MISSION_BYTES",
]

#: Upper bound on a decoded mission blob.
MAX_MISSION_BYTES = 64 * 1024
_S256_CHARS = 43  # 32 bytes, unpadded base64url
_DATE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,9})?)?"
    r"(?:Z|[+-][0-9]{2}:[0-9]{2})?"
)


def mission_s256(blob: bytes) -> str:
    """Unpadded base64url SHA-256 of the blob bytes."""
    return b64url_encode(hashlib.sha256(blob).digest())


def _required_string(data: Mapping[str, Any], name: str, what: str) -> str:
    if name not in data:
        raise MalformedInput(f"{what} is missing the REQUIRED member {name!r}")
    value = data[name]
    if not isinstance(value, str):
        raise MalformedInput(f"{what} member {name!r} must be a string")
    return value


def _optional_string(data: Mapping[str, Any], name: str, what: str) -> str | None:
    return _required_string(data, name, what) if name in data else None


def _timestamp(text: str, name: str) -> datetime:
    """Extended-format ISO 8601 date-time (``2026-09-25T10:00:00Z``, optional fraction and
    offset); a value without an offset is read as UTC."""
    if _DATE_TIME.fullmatch(text) is None:
        raise MalformedInput(f"mission member {name!r} is not an ISO 8601 date-time")
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise MalformedInput(f"mission member {name!r} is not an ISO 8601 date-time") from exc
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@frozen(kw_only=True)
class ApprovedTool:
    """An entry of ``approved_tools`` (informational: the protocol does not enforce it)."""

    name: str
    description: str | None = None


@frozen(kw_only=True)
class MissionBlob:
    """The parsed mission blob. REQUIRED ``agent``, ``approved_at``, ``description``."""

    agent: AgentId
    approved_at: datetime
    description: str
    expires_at: datetime | None = None
    approved_tools: tuple[ApprovedTool, ...] | None = None
    approved_resources: tuple[str, ...] | None = None

    @classmethod
    def from_dict(cls, data: object) -> MissionBlob:
        """Validate a decoded blob; unknown members are ignored (the list is a floor)."""
        if not isinstance(data, Mapping):
            raise MalformedInput("mission is not a JSON object")
        agent = AgentId.parse(_required_string(data, "agent", "mission"))
        approved_at = _required_string(data, "approved_at", "mission")
        expires_at = _optional_string(data, "expires_at", "mission")
        return cls(
            agent=agent,
            approved_at=_timestamp(approved_at, "approved_at"),
            description=_required_string(data, "description", "mission"),
            expires_at=None if expires_at is None else _timestamp(expires_at, "expires_at"),
            approved_tools=_tools(data),
            approved_resources=_resources(data),
        )

    @classmethod
    def from_json(cls, raw: bytes, *, max_size: int = MAX_MISSION_BYTES) -> MissionBlob:
        """Parse blob bytes (UTF-8 JSON object, size-bounded)."""
        data = load_json_object(raw, max_size=max_size, what="mission", error=MalformedInput)
        return cls.from_dict(data)


def _tools(data: Mapping[str, Any]) -> tuple[ApprovedTool, ...] | None:
    if "approved_tools" not in data:
        return None
    value = data["approved_tools"]
    if not isinstance(value, list):
        raise MalformedInput("mission member 'approved_tools' must be an array")
    tools = []
    for item in value:
        if not isinstance(item, Mapping):
            raise MalformedInput("each of the mission's 'approved_tools' must be an object")
        tools.append(
            ApprovedTool(
                name=_required_string(item, "name", "approved tool"),
                description=_optional_string(item, "description", "approved tool"),
            )
        )
    return tuple(tools)


def _resources(data: Mapping[str, Any]) -> tuple[str, ...] | None:
    if "approved_resources" not in data:
        return None
    value = data["approved_resources"]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise MalformedInput("mission member 'approved_resources' must be an array of strings")
    return tuple(value)


def _tuple_or_none(value: tuple[str, ...] | list[str] | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(value)


def _frozen_map(value: Mapping[str, str] | None) -> Mapping[str, str] | None:
    return None if value is None else types.MappingProxyType(dict(value))


@frozen(kw_only=True)
class ApprovalResponse:
    """The PS's ``200`` mission approval: ``s256``, ``mission`` and optional extras.

    Only :meth:`from_dict` and :meth:`for_blob` build it, so ``s256`` always matches
    ``mission_bytes``.
    """

    s256: str
    mission_bytes: bytes = field(repr=False)
    mission: MissionBlob
    capabilities: tuple[str, ...] | None = field(default=None, converter=_tuple_or_none)
    person_tokens: Mapping[str, str] | None = field(
        default=None, converter=_frozen_map, hash=False, repr=False
    )

    def __attrs_post_init__(self) -> None:
        if mission_s256(self.mission_bytes) != self.s256:
            raise MalformedInput("s256 does not match the SHA-256 of the mission bytes")

    @classmethod
    def from_dict(cls, data: object, *, max_size: int = MAX_MISSION_BYTES) -> ApprovalResponse:
        """Decode ``mission``, check that ``s256`` is its digest, and parse the blob.

        Raises :class:`MalformedInput` (``invalid_request``, 400) for any failure,
        including a digest mismatch.
        """
        if not isinstance(data, Mapping):
            raise MalformedInput("approval response is not a JSON object")
        s256 = data.get("s256")
        if not isinstance(s256, str) or len(s256) != _S256_CHARS:
            raise MalformedInput("approval response 's256' must be a base64url SHA-256 digest")
        b64url_decode(s256, what="approval response 's256'")
        encoded = data.get("mission")
        if not isinstance(encoded, str):
            raise MalformedInput("approval response 'mission' must be a base64url string")
        if len(encoded) > (max_size * 4 + 2) // 3:
            raise MalformedInput(f"mission is larger than {max_size} bytes")
        blob = b64url_decode(encoded, what="approval response 'mission'")
        if mission_s256(blob) != s256:
            raise MalformedInput(
                "approval response 's256' does not match the SHA-256 of the decoded mission"
            )
        return cls(
            s256=s256,
            mission_bytes=blob,
            mission=MissionBlob.from_json(blob, max_size=max_size),
            capabilities=_capabilities(data),
            person_tokens=_person_tokens(data),
        )

    @classmethod
    def for_blob(
        cls,
        blob: bytes,
        *,
        capabilities: tuple[str, ...] | None = None,
        person_tokens: Mapping[str, str] | None = None,
    ) -> ApprovalResponse:
        """The approval a PS sends for the blob bytes it persisted."""
        return cls(
            s256=mission_s256(blob),
            mission_bytes=blob,
            mission=MissionBlob.from_json(blob),
            capabilities=capabilities,
            person_tokens=person_tokens,
        )

    def to_dict(self) -> dict[str, object]:
        result: dict[str, object] = {
            "s256": self.s256,
            "mission": b64url_encode(self.mission_bytes),
        }
        if self.capabilities is not None:
            result["capabilities"] = list(self.capabilities)
        if self.person_tokens is not None:
            result["person_tokens"] = dict(self.person_tokens)
        return result


def _capabilities(data: Mapping[str, Any]) -> tuple[str, ...] | None:
    if "capabilities" not in data:
        return None
    value = data["capabilities"]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise MalformedInput("approval response 'capabilities' must be an array of strings")
    return tuple(value)


def _person_tokens(data: Mapping[str, Any]) -> Mapping[str, str] | None:
    if "person_tokens" not in data:
        return None
    value = data["person_tokens"]
    if not isinstance(value, Mapping) or not all(
        isinstance(key, str) and isinstance(token, str) for key, token in value.items()
    ):
        raise MalformedInput(
            "approval response 'person_tokens' must map resource URLs to token strings"
        )
    return dict(value)
