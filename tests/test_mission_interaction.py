"""Mission blob and ``s256`` (-11 §2.8); interaction codes (-11 §3.4)."""

from __future__ import annotations

import base64
import json
import secrets
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from aauth_core.errors import InvalidIdentifier, MalformedInput
from aauth_core.identifiers import AgentId
from aauth_core.interaction import (
    ALPHABET,
    bytes_needed,
    codes_match,
    generate_code,
    normalize_code,
)
from aauth_core.mission import ApprovalResponse, ApprovedTool, MissionBlob, mission_s256

# --- s256 ------------------------------------------------------------------------------


def test_mission_s256_of_fips_180_abc() -> None:
    # FIPS 180-2 B.1: SHA-256("abc"), re-encoded as unpadded base64url.
    digest = bytes.fromhex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    expected = base64.urlsafe_b64encode(digest).decode().rstrip("=")
    assert mission_s256(b"abc") == expected
    assert len(expected) == 43
    assert "=" not in mission_s256(b"")


# --- approval response -----------------------------------------------------------------

BLOB: dict[str, Any] = {
    "agent": "aauth:assistant-v2@agent.example",
    "approved_at": "2026-09-25T10:00:00Z",
    "description": "Plan a **trip** to Lisbon.",
    "expires_at": "2026-10-01T00:00:00+02:00",
    "approved_tools": [{"name": "search", "description": "Web search"}, {"name": "book"}],
    "approved_resources": ["https://flights.example", "https://hotels.example"],
    "future_member": {"ignored": True},
}


def encode(blob: dict[str, Any]) -> bytes:
    return json.dumps(blob, separators=(",", ":")).encode()


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def response_for(blob_bytes: bytes, **extra: object) -> dict[str, Any]:
    return {"s256": mission_s256(blob_bytes), "mission": b64u(blob_bytes), **extra}


def test_approval_response_parses_and_verifies() -> None:
    raw = encode(BLOB)
    tokens = {"https://flights.example": "eyJ.a.b"}
    approval = ApprovalResponse.from_dict(
        response_for(raw, capabilities=["interaction"], person_tokens=tokens)
    )
    assert approval.mission_bytes == raw
    assert approval.s256 == mission_s256(raw)
    assert approval.capabilities == ("interaction",)
    assert dict(approval.person_tokens or {}) == tokens
    blob = approval.mission
    assert blob.agent == AgentId.parse("aauth:assistant-v2@agent.example")
    assert blob.approved_at == datetime(2026, 9, 25, 10, 0, tzinfo=UTC)
    assert blob.expires_at == datetime(2026, 9, 30, 22, 0, tzinfo=UTC)
    assert blob.expires_at is not None
    assert blob.expires_at.utcoffset() == timedelta(hours=2)
    assert blob.description == "Plan a **trip** to Lisbon."
    assert blob.approved_tools == (
        ApprovedTool(name="search", description="Web search"),
        ApprovedTool(name="book", description=None),
    )
    assert blob.approved_resources == ("https://flights.example", "https://hotels.example")


def test_approval_response_round_trip() -> None:
    raw = encode(BLOB)
    data = response_for(raw, capabilities=["interaction", "payment"])
    assert ApprovalResponse.from_dict(data).to_dict() == data
    built = ApprovalResponse.for_blob(raw, capabilities=("interaction", "payment"))
    assert built.to_dict() == data
    assert built == ApprovalResponse.from_dict(data)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-09-25T10:00Z", datetime(2026, 9, 25, 10, 0, tzinfo=UTC)),
        ("2026-09-25T10:00:00.5Z", datetime(2026, 9, 25, 10, 0, 0, 500_000, tzinfo=UTC)),
        ("2026-09-25T10:00:00-01:30", datetime(2026, 9, 25, 11, 30, tzinfo=UTC)),
    ],
)
def test_blob_timestamp_forms(text: str, expected: datetime) -> None:
    blob = MissionBlob.from_dict({**BLOB, "approved_at": text})
    assert blob.approved_at == expected


def test_minimal_blob() -> None:
    raw = encode(
        {"agent": "aauth:a@b.example", "approved_at": "2026-01-01T00:00:00", "description": ""}
    )
    blob = ApprovalResponse.from_dict(response_for(raw)).mission
    assert blob.approved_at.tzinfo is UTC  # no offset: read as UTC
    assert blob.expires_at is None
    assert blob.approved_tools is None
    assert blob.approved_resources is None


def test_s256_is_over_the_exact_bytes() -> None:
    # Same JSON value, different bytes: the digest of the other spelling does not match.
    raw = encode(BLOB)
    respaced = json.dumps(BLOB, indent=2).encode()
    data = {"s256": mission_s256(respaced), "mission": b64u(raw)}
    with pytest.raises(MalformedInput) as info:
        ApprovalResponse.from_dict(data)
    assert "does not match" in info.value.detail
    assert (info.value.code, info.value.status) == ("invalid_request", 400)


def test_digest_mismatch_on_direct_construction() -> None:
    raw = encode(BLOB)
    with pytest.raises(MalformedInput):
        ApprovalResponse(
            s256=mission_s256(b"other"),
            mission_bytes=raw,
            mission=MissionBlob.from_json(raw),
        )


GOOD = encode(BLOB)


@pytest.mark.parametrize(
    "data",
    [
        {"mission": b64u(GOOD)},
        {"s256": mission_s256(GOOD)},
        {"s256": mission_s256(GOOD) + "=", "mission": b64u(GOOD)},
        {"s256": 5, "mission": b64u(GOOD)},
        {"s256": "!" * 43, "mission": b64u(GOOD)},
        {"s256": mission_s256(GOOD), "mission": base64.b64encode(GOOD).decode()},
        {"s256": mission_s256(GOOD), "mission": b64u(GOOD) + "="},
        {"s256": mission_s256(GOOD), "mission": None},
        {**response_for(GOOD), "capabilities": "interaction"},
        {**response_for(GOOD), "capabilities": [1]},
        {**response_for(GOOD), "person_tokens": ["x"]},
        {**response_for(GOOD), "person_tokens": {"https://r.example": 1}},
        [],
        "x",
    ],
)
def test_malformed_approval_responses(data: object) -> None:
    with pytest.raises(MalformedInput):
        ApprovalResponse.from_dict(data)


@pytest.mark.parametrize(
    "changes",
    [
        {"agent": None},
        {"approved_at": None},
        {"description": None},
        {"description": 5},
        {"approved_at": "yesterday"},
        {"approved_at": 1700000000},
        {"approved_at": "2026-01-01"},  # a date, not a date-time
        {"approved_at": "20260101T000000Z"},  # basic format
        {"approved_at": "2026-01-01T00:00:00z"},
        {"approved_at": "2026-01-01T24:00:00Z"},
        {"expires_at": "2026-13-01T00:00:00Z"},
        {"approved_tools": {"name": "x"}},
        {"approved_tools": [{"description": "no name"}]},
        {"approved_tools": ["search"]},
        {"approved_resources": "https://r.example"},
        {"approved_resources": [1]},
    ],
)
def test_malformed_blobs(changes: dict[str, object]) -> None:
    blob = dict(BLOB)
    for key, value in changes.items():
        if value is None:
            del blob[key]
        else:
            blob[key] = value
    with pytest.raises(MalformedInput):
        ApprovalResponse.from_dict(response_for(encode(blob)))


def test_blob_agent_must_be_an_agent_identifier() -> None:
    blob = {**BLOB, "agent": "https://agent.example"}
    with pytest.raises(InvalidIdentifier):
        ApprovalResponse.from_dict(response_for(encode(blob)))


@pytest.mark.parametrize("raw", [b"[]", b"not json", b"\xff", b'{"a":1,"a":2}'])
def test_blob_must_be_a_json_object(raw: bytes) -> None:
    with pytest.raises(MalformedInput):
        ApprovalResponse.from_dict(response_for(raw))


def test_blob_size_limit() -> None:
    raw = encode({**BLOB, "description": "x" * 70_000})
    with pytest.raises(MalformedInput):
        ApprovalResponse.from_dict(response_for(raw))
    parsed = ApprovalResponse.from_dict(response_for(raw), max_size=len(raw))
    assert len(parsed.mission.description) == 70_000


# --- interaction codes -----------------------------------------------------------------


def test_alphabet_is_crockford() -> None:
    assert len(ALPHABET) == 32
    assert len(set(ALPHABET)) == 32
    assert not set("ILOU") & set(ALPHABET)


def test_generated_code_shape() -> None:
    code = generate_code(secrets.token_bytes(bytes_needed()))
    assert len(code) == 9
    assert code[4] == "-"
    assert all(c in ALPHABET for c in code.replace("-", ""))
    longer = generate_code(secrets.token_bytes(16), groups=3, group_size=4)
    assert [len(g) for g in longer.split("-")] == [4, 4, 4]


def _code_value(code: str) -> int:
    """Reassemble the bits: symbol i carries bits 5i..5i+4 of the big-endian input."""
    return sum(ALPHABET.index(c) << (5 * i) for i, c in enumerate(code.replace("-", "")))


@pytest.mark.parametrize(
    "raw", [b"\x00" * 5, b"\xff" * 5, b"\x00\x00\x00\x00\x01", b"\x80\x00\x00\x00\x00"]
)
def test_generated_code_keeps_all_40_bits(raw: bytes) -> None:
    code = generate_code(raw)
    assert _code_value(code) == int.from_bytes(raw, "big")


def test_generated_code_uses_every_symbol_in_every_position() -> None:
    seen: list[set[str]] = [set() for _ in range(8)]
    for value in range(32):
        # the same 5-bit value in every symbol position
        pool = sum(value << (5 * i) for i in range(8))
        code = generate_code(pool.to_bytes(5, "big")).replace("-", "")
        for position, char in enumerate(code):
            seen[position].add(char)
    assert all(s == set(ALPHABET) for s in seen)


def test_generated_code_ignores_extra_bytes() -> None:
    assert generate_code(b"\x01\x02\x03\x04\x05\xff") == generate_code(b"\x01\x02\x03\x04\x05")


def test_generate_code_rejects_weak_shapes() -> None:
    with pytest.raises(ValueError, match="at least 8"):
        generate_code(b"\x00" * 16, groups=1, group_size=7)
    with pytest.raises(ValueError, match="random bytes"):
        generate_code(b"\x00" * 4)
    with pytest.raises(ValueError, match="random bytes"):
        generate_code(b"\x00" * 7, groups=3, group_size=4)  # needs 8 bytes
    with pytest.raises(ValueError, match="positive"):
        generate_code(b"\x00" * 5, groups=0)
    with pytest.raises(TypeError):
        generate_code("00000")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("A1B2-C3D4", "A1B2C3D4"),
        ("a1b2c3d4", "A1B2C3D4"),
        ("  a1b2-c3d4\n", "A1B2C3D4"),
        ("OIL0-ilo1", "01101101"),
        ("--AB--", "AB"),
    ],
)
def test_normalize_code(text: str, normal: str) -> None:
    assert normalize_code(text) == normal


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "----",
        "A1B2-C3DU",  # U is not in the alphabet
        "A1B2 C3D4",
        "A1B2_C3D4",
        "A1B2-C3D\u0131",  # dotless i upper-cases to I: must not fold to 1
        "stra\u00dfe00",  # sharp s upper-cases to SS
        "\uff21\uff11",  # full-width letters
        "A" * 65,
        None,
        12345678,
    ],
)
def test_normalize_code_rejects(text: object) -> None:
    with pytest.raises(MalformedInput) as info:
        normalize_code(text)
    assert (info.value.code, info.value.status) == ("invalid_request", 400)


def test_codes_match() -> None:
    code = generate_code(b"\x12\x34\x56\x78\x9a")
    assert codes_match(code, code.lower())
    assert codes_match(code, code.replace("-", ""))
    assert codes_match("A1B0-C3D1", "a1bo-c3dl")
    assert not codes_match("A1B2-C3D4", "A1B2-C3D5")
    assert not codes_match("A1B2-C3D4", "A1B2-C3D")
    assert not codes_match("A1B2-C3D4", "A1B2-C3DU")
    assert not codes_match("A1B2-C3D4", None)


def test_blob_timestamps_keep_their_offset() -> None:
    # The parser keeps the offset it was given; equality is by instant.
    blob = MissionBlob.from_dict(
        {
            "agent": "aauth:a@b.example",
            "approved_at": "2026-01-01T02:00:00+02:00",
            "description": "",
        }
    )
    assert blob.approved_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert blob.approved_at.tzinfo == timezone(timedelta(hours=2))
