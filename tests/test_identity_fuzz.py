"""Hostile input for every parser in identifiers, urls, metadata, mission and interaction:
each answers with a value or an :class:`AAuthError`, never another exception."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Callable
from typing import Any, TypeVar

from conftest import load_vector
from hypothesis import example, given, settings
from hypothesis import strategies as st

from aauth_core.errors import AAuthError
from aauth_core.identifiers import AgentId, ServerId, is_server_host
from aauth_core.interaction import ALPHABET, codes_match, normalize_code
from aauth_core.metadata import (
    METADATA_TYPES,
    WellKnown,
    parse_metadata,
    parse_metadata_json,
)
from aauth_core.mission import ApprovalResponse, MissionBlob
from aauth_core.urls import callback_url, endpoint_url, https_url

T = TypeVar("T")

METADATA = {c["document"]: c["json"] for c in load_vector("aauth-go/metadata.json")["cases"]}

# Any code point, surrogates included (they arrive from JSON "\ud800" escapes).
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=300)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | any_text
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(any_text, inner, max_size=5),
    max_leaves=20,
)
label = st.from_regex(r"[a-zA-Z0-9\-_.]{0,12}", fullmatch=True)
near_host = st.lists(
    label | st.sampled_from(["xn--nxasmq6b", "xn--", "xn--zz", "localhost", "127", ""]),
    min_size=1,
    max_size=4,
).map(".".join)
near_agent = st.builds(
    lambda local, sep, host: f"aauth:{local}{sep}{host}",
    st.from_regex(r"[A-Za-z0-9._+\-@ ]{0,20}", fullmatch=True),
    st.sampled_from(["@", "@@", "", "@https://"]),
    near_host,
)
near_url = st.builds(
    lambda scheme, user, host, port, tail: f"{scheme}{user}{host}{port}{tail}",
    st.sampled_from(["https://", "http://", "HTTPS://", "", "https:/"]),
    st.sampled_from(["", "user@", "a:b@"]),
    near_host | st.sampled_from(["[::1]", "[::1", "[zz]", "127.0.0.1", "localhost"]),
    st.sampled_from(["", ":", ":0", ":443", ":65536", ":99999999", ":x"]),
    st.from_regex(r"[/?#%a-z0-9\\ ]{0,12}", fullmatch=True),
)


def outcome(parse: Callable[[], T]) -> T | None:
    """The parsed value, or None for an AAuthError; any other exception fails the test."""
    error: AAuthError | None = None
    try:
        return parse()
    except AAuthError as exc:
        error = exc
    assert error.code
    assert 400 <= error.status <= 599
    return None


# --- identifiers -----------------------------------------------------------------------


@given(st.one_of(any_text, near_agent, json_values, st.binary(max_size=50)))
@example("aauth:a@xn--" + "a" * 59)
@example("aauth:" + "a" * 255 + "@" + "b" * 63)
def test_agent_id_parse_fuzz(text: object) -> None:
    agent = outcome(lambda: AgentId.parse(text))
    if agent is not None:
        assert str(agent) == text
        assert AgentId.parse(str(agent)) == agent
        if agent.parent is not None:
            assert agent.is_subagent_of(agent.parent)


@given(st.one_of(any_text, near_url, json_values))
@example("https://xn--" + "9" * 50)
def test_server_id_parse_fuzz(text: object) -> None:
    server = outcome(lambda: ServerId.parse(text))
    if server is not None:
        assert str(server) == text
        assert is_server_host(server.host)


@given(st.one_of(any_text, near_host))
def test_is_server_host_fuzz(text: str) -> None:
    assert is_server_host(text) in {True, False}


@given(st.one_of(any_text, near_url, json_values), st.booleans())
def test_url_validators_fuzz(text: object, localhost: bool) -> None:
    for check in (
        lambda: https_url(text),
        lambda: endpoint_url(text),
        lambda: callback_url(text, localhost_allowed=localhost),
    ):
        value = outcome(check)
        if value is not None:
            assert value == text


# --- metadata --------------------------------------------------------------------------

dwks = st.sampled_from([w.value for w in WellKnown])


@given(dwks, json_values, st.one_of(st.none(), any_text))
def test_metadata_from_arbitrary_json_values(dwk: str, data: Any, issuer: str | None) -> None:
    outcome(lambda: parse_metadata(dwk, data, expected_issuer=issuer))


@given(
    dwks,
    st.lists(
        st.tuples(
            st.sampled_from(sorted({k for doc in METADATA.values() for k in doc} | {"x"})),
            st.one_of(json_values, near_url),
        ),
        max_size=4,
    ),
    st.booleans(),
)
def test_metadata_with_mutated_members(
    dwk: str, changes: list[tuple[str, Any]], check_issuer: bool
) -> None:
    data = copy.deepcopy(METADATA[dwk])
    for member, value in changes:
        data[member] = value
    expected = METADATA[dwk]["issuer"] if check_issuer else None
    meta = outcome(lambda: parse_metadata(dwk, data, expected_issuer=expected))
    if meta is not None:
        again = METADATA_TYPES[dwk].from_dict(meta.to_dict())
        assert again == meta


@given(dwks, st.one_of(st.binary(max_size=400), any_text))
def test_metadata_from_arbitrary_bytes(dwk: str, raw: bytes | str) -> None:
    outcome(lambda: parse_metadata_json(dwk, raw))


@given(dwks, st.dictionaries(any_text, json_values, max_size=6))
def test_metadata_from_json_encoded_objects(dwk: str, data: dict[str, Any]) -> None:
    merged = {**METADATA[dwk], **data}
    raw = json.dumps(merged).encode("utf-8", "surrogatepass")
    outcome(lambda: parse_metadata_json(dwk, raw, max_size=1 << 20))


# --- missions --------------------------------------------------------------------------


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


blob_members = st.fixed_dictionaries(
    {},
    optional={
        "agent": st.one_of(
            st.sampled_from(["aauth:a@b.example", "aauth:Planner+x1@vendor.example"]),
            near_agent,
            json_values,
        ),
        "approved_at": st.one_of(
            st.sampled_from(["2026-01-01T00:00:00Z", "2026-02-30", "9999-12-31T23:59:59+14:00"]),
            json_values,
        ),
        "description": any_text | json_values,
        "expires_at": json_values | st.datetimes().map(lambda d: d.isoformat()),
        "approved_tools": json_values
        | st.lists(st.dictionaries(st.sampled_from(["name", "description"]), json_values)),
        "approved_resources": json_values | st.lists(any_text, max_size=3),
    },
)


@given(blob_members, st.dictionaries(any_text, json_values, max_size=3))
def test_approval_response_with_valid_digest(blob: dict[str, Any], extra: dict[str, Any]) -> None:
    raw = json.dumps(blob).encode("utf-8", "surrogatepass")
    s256 = _b64u(hashlib.sha256(raw).digest())
    data = {**extra, "s256": s256, "mission": _b64u(raw)}
    approval = outcome(lambda: ApprovalResponse.from_dict(data))
    if approval is not None:
        assert approval.mission_bytes == raw
        assert approval.to_dict()["s256"] == s256


@given(st.one_of(json_values, st.dictionaries(st.sampled_from(["s256", "mission"]), any_text)))
def test_approval_response_from_arbitrary_values(data: Any) -> None:
    outcome(lambda: ApprovalResponse.from_dict(data))


@given(st.binary(max_size=300))
def test_approval_response_from_arbitrary_blob_bytes(raw: bytes) -> None:
    data = {"s256": _b64u(hashlib.sha256(raw).digest()), "mission": _b64u(raw)}
    outcome(lambda: ApprovalResponse.from_dict(data))
    outcome(lambda: MissionBlob.from_json(raw))


# --- interaction codes -----------------------------------------------------------------


@given(
    st.one_of(
        any_text,
        st.text(ALPHABET + ALPHABET.lower() + "-ILOUilou \t\n\u0131\u00df", max_size=80),
        json_values,
    )
)
def test_normalize_code_fuzz(text: object) -> None:
    code = outcome(lambda: normalize_code(text))
    if code is not None:
        assert code
        assert set(code) <= set(ALPHABET)
        assert normalize_code(code) == code
        assert codes_match(text, code)


@settings(max_examples=50)
@given(json_values, json_values)
def test_codes_match_never_raises(a: object, b: object) -> None:
    assert codes_match(a, b) in {True, False}
