"""Metadata documents (-11 §4.1-§4.3) and the aauth-go metadata vectors."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from conftest import load_vector

from aauth_core.algorithms import Alg
from aauth_core.errors import MalformedInput, MetadataError
from aauth_core.identifiers import ServerId
from aauth_core.metadata import (
    METADATA_TYPES,
    AccessMode,
    AccessServerMetadata,
    AgentProviderMetadata,
    PersonServerMetadata,
    ResourceMetadata,
    ServerMetadata,
    WellKnown,
    load_json_object,
    parse_metadata,
    parse_metadata_json,
)

CASES = load_vector("aauth-go/metadata.json")["cases"]
BY_DWK: dict[str, dict[str, Any]] = {case["document"]: case["json"] for case in CASES}


def doc(dwk: str, **changes: object) -> dict[str, Any]:
    """A vector document with members replaced (``None`` deletes the member)."""
    data = copy.deepcopy(BY_DWK[dwk])
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def test_one_case_per_document() -> None:
    assert sorted(BY_DWK) == sorted(w.value for w in WellKnown)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["document"])
def test_vector_round_trip(case: dict[str, Any]) -> None:
    meta = parse_metadata(case["document"], case["json"], expected_issuer=case["json"]["issuer"])
    assert isinstance(meta, METADATA_TYPES[case["document"]])
    assert meta.to_dict() == case["json"]
    assert str(meta.issuer) == case["json"]["issuer"]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["document"])
def test_vector_from_json_bytes(case: dict[str, Any]) -> None:
    raw = json.dumps(case["json"]).encode()
    meta = parse_metadata_json(case["document"], raw, expected_issuer=case["json"]["issuer"])
    assert meta.to_dict() == case["json"]


def test_typed_values_of_the_vectors() -> None:
    agent = AgentProviderMetadata.from_dict(BY_DWK["aauth-agent.json"])
    assert agent.issuer == ServerId.parse("https://agent.example")
    assert agent.localhost_callback_allowed is True
    assert agent.allows_localhost_callback
    person = PersonServerMetadata.from_dict(BY_DWK["aauth-person.json"])
    assert person.person_token_endpoint == "https://ps.example/person"
    assert person.scopes_supported == ("openid", "profile", "email", "tenant")
    assert person.accepted_algs == frozenset({Alg.ED25519, Alg.ES256})
    resource = ResourceMetadata.from_dict(BY_DWK["aauth-resource.json"])
    assert resource.access_mode is AccessMode.AUTH_TOKEN
    assert resource.signature_window == 120
    assert resource.effective_signature_window == 120
    assert resource.additional_signature_components == ("content-type", "content-digest")
    assert resource.scope_descriptions is not None
    assert resource.scope_descriptions["data.read"].startswith("Read access")


def test_defaults_are_not_emitted() -> None:
    minimal = {"issuer": "https://resource.example"}
    resource = ResourceMetadata.from_dict(minimal)
    assert resource.effective_signature_window == 60
    assert resource.signature_window is None
    assert resource.access_mode is None
    assert resource.jwks_uri is None
    assert resource.to_dict() == minimal
    agent = AgentProviderMetadata.from_dict(
        {"issuer": "https://a.example", "jwks_uri": "https://a.example/jwks"}
    )
    assert agent.allows_localhost_callback is False
    assert agent.accepted_algs is None


def test_unknown_access_mode_is_no_declaration_but_kept() -> None:
    resource = ResourceMetadata.from_dict(doc("aauth-resource.json", access_mode="per-call"))
    assert resource.access_mode is None
    assert resource.access_mode_raw == "per-call"
    assert resource.to_dict()["access_mode"] == "per-call"


@pytest.mark.parametrize("mode", ["agent-token", "person-token", "session-token", "auth-token"])
def test_known_access_modes(mode: str) -> None:
    resource = ResourceMetadata.from_dict(doc("aauth-resource.json", access_mode=mode))
    assert resource.access_mode == AccessMode(mode)


def test_unknown_members_are_ignored() -> None:
    data = doc("aauth-access.json", r3_vocabularies={"x": 1}, future_member=[1, 2])
    meta = AccessServerMetadata.from_dict(data)
    assert "future_member" not in meta.to_dict()
    assert meta.to_dict() == BY_DWK["aauth-access.json"]


# --- issuer check ----------------------------------------------------------------------


def test_issuer_missing() -> None:
    with pytest.raises(MetadataError) as info:
        PersonServerMetadata.from_dict(
            doc("aauth-person.json", issuer=None), expected_issuer="https://ps.example"
        )
    assert (info.value.code, info.value.status) == ("issuer_missing", 401)


@pytest.mark.parametrize(
    "issuer", ["https://other.example", "https://ps.example/", "https://PS.example", 7]
)
def test_issuer_mismatch(issuer: object) -> None:
    with pytest.raises(MetadataError) as info:
        PersonServerMetadata.from_dict(
            doc("aauth-person.json", issuer=issuer), expected_issuer="https://ps.example"
        )
    assert (info.value.code, info.value.status) == ("issuer_mismatch", 401)


def test_expected_issuer_may_be_a_server_id() -> None:
    meta = PersonServerMetadata.from_dict(
        BY_DWK["aauth-person.json"], expected_issuer=ServerId.parse("https://ps.example")
    )
    assert meta.issuer.host == "ps.example"


def test_missing_issuer_without_expectation_is_structural() -> None:
    with pytest.raises(MetadataError) as info:
        AccessServerMetadata.from_dict(doc("aauth-access.json", issuer=None))
    assert (info.value.code, info.value.status) == ("invalid_metadata", 502)


def test_issuer_must_be_a_server_identifier_even_if_expected() -> None:
    with pytest.raises(MetadataError) as info:
        AccessServerMetadata.from_dict(
            doc("aauth-access.json", issuer="https://as.example/v1"),
            expected_issuer="https://as.example/v1",
        )
    assert info.value.code == "invalid_metadata"


# --- structural failures ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("dwk", "member"),
    [
        ("aauth-agent.json", "jwks_uri"),
        ("aauth-person.json", "jwks_uri"),
        ("aauth-person.json", "auth_token_endpoint"),
        ("aauth-person.json", "person_token_endpoint"),
        ("aauth-access.json", "jwks_uri"),
        ("aauth-access.json", "auth_token_endpoint"),
        ("aauth-resource.json", "issuer"),
    ],
)
def test_required_members(dwk: str, member: str) -> None:
    with pytest.raises(MetadataError) as info:
        parse_metadata(dwk, doc(dwk, **{member: None}))
    assert (info.value.code, info.value.status) == ("invalid_metadata", 502)
    assert member in info.value.detail


def test_resource_jwks_uri_is_optional() -> None:
    meta = ResourceMetadata.from_dict(doc("aauth-resource.json", jwks_uri=None))
    assert meta.jwks_uri is None


BAD_MEMBERS: list[tuple[str, str, object]] = [
    ("aauth-agent.json", "jwks_uri", "http://agent.example/jwks"),
    ("aauth-agent.json", "jwks_uri", 5),
    ("aauth-agent.json", "callback_endpoint", "https://agent.example/cb?x=1"),
    ("aauth-agent.json", "localhost_callback_allowed", "true"),
    ("aauth-agent.json", "localhost_callback_allowed", 1),
    ("aauth-agent.json", "logo_uri", "http://agent.example/logo.png"),
    ("aauth-agent.json", "name", ["x"]),
    ("aauth-agent.json", "description", 3),
    ("aauth-person.json", "auth_token_endpoint", "https://ps.example/token#x"),
    ("aauth-person.json", "mission_endpoint", "https://ps.example/m?q"),
    ("aauth-person.json", "accept_signature_algs", ["Ed25519", 7]),
    ("aauth-person.json", "accept_signature_algs", "Ed25519"),
    ("aauth-person.json", "scopes_supported", [""]),
    ("aauth-access.json", "revocation_endpoint", "ftp://as.example/revoke"),
    ("aauth-access.json", "issuer", "https://As.resource.example"),
    ("aauth-resource.json", "signature_window", 0),
    ("aauth-resource.json", "signature_window", -5),
    ("aauth-resource.json", "signature_window", 60.0),
    ("aauth-resource.json", "signature_window", True),
    ("aauth-resource.json", "signature_window", "60"),
    ("aauth-resource.json", "signature_window", 2**40),
    ("aauth-resource.json", "access_mode", 1),
    ("aauth-resource.json", "scope_descriptions", {"data.read": 1}),
    ("aauth-resource.json", "scope_descriptions", ["data.read"]),
    ("aauth-resource.json", "additional_signature_components", [1]),
    ("aauth-resource.json", "authorization_endpoint", "https://resource.example/a?b=c"),
]


@pytest.mark.parametrize(("dwk", "member", "value"), BAD_MEMBERS)
def test_bad_member_values(dwk: str, member: str, value: object) -> None:
    with pytest.raises(MetadataError) as info:
        parse_metadata(dwk, doc(dwk, **{member: value}))
    assert (info.value.code, info.value.status) == ("invalid_metadata", 502)


@pytest.mark.parametrize("dwk", [w.value for w in WellKnown])
def test_null_member_is_rejected(dwk: str) -> None:
    data = doc(dwk)
    data["name"] = None
    with pytest.raises(MetadataError):
        parse_metadata(dwk, data)


@pytest.mark.parametrize("data", [[], "x", None, 3, [("issuer", "https://a.example")]])
def test_non_object_document(data: object) -> None:
    with pytest.raises(MetadataError):
        ResourceMetadata.from_dict(data)


def test_unknown_dwk() -> None:
    with pytest.raises(MetadataError) as info:
        parse_metadata("aauth-issuer.json", BY_DWK["aauth-person.json"])
    assert info.value.status == 400


def test_base_class_is_not_parseable() -> None:
    with pytest.raises(TypeError):
        ServerMetadata.from_dict(BY_DWK["aauth-person.json"])


def test_direct_construction_is_validated() -> None:
    issuer = ServerId.parse("https://ps.example")
    with pytest.raises(MetadataError):
        AccessServerMetadata(
            issuer=issuer,
            jwks_uri="http://ps.example/jwks",
            auth_token_endpoint="https://ps.example/token",
        )
    meta = AccessServerMetadata(
        issuer=issuer,
        jwks_uri="https://ps.example/jwks",
        auth_token_endpoint="https://ps.example/token",
    )
    assert meta.to_dict() == {
        "issuer": "https://ps.example",
        "jwks_uri": "https://ps.example/jwks",
        "auth_token_endpoint": "https://ps.example/token",
    }


def test_direct_construction_keeps_typed_values() -> None:
    meta = ResourceMetadata(
        issuer="https://r.example",  # type: ignore[arg-type]
        scope_descriptions={"a": "A"},
        additional_signature_components=["content-type"],  # type: ignore[arg-type]
    )
    assert meta.issuer == ServerId(host="r.example")
    assert meta.additional_signature_components == ("content-type",)
    assert meta.scope_descriptions is not None
    with pytest.raises(TypeError):
        meta.scope_descriptions["b"] = "B"  # type: ignore[index]
    assert meta == ResourceMetadata.from_dict(meta.to_dict())


def test_values_are_frozen_and_comparable() -> None:
    a = ResourceMetadata.from_dict(BY_DWK["aauth-resource.json"])
    b = ResourceMetadata.from_dict(copy.deepcopy(BY_DWK["aauth-resource.json"]))
    assert a == b
    assert hash(a) == hash(b)
    with pytest.raises(AttributeError):
        a.signature_window = 5  # type: ignore[misc]
    assert a.scope_descriptions is not None
    with pytest.raises(TypeError):
        a.scope_descriptions["x"] = "y"  # type: ignore[index]


# --- from_json -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"[]",
        b'"string"',
        b"\xff\xfe{}",
        b'{"issuer": "https://r.example", "issuer": "https://r.example"}',
        b'{"issuer": "https://r.example", "signature_window": NaN}',
        b"[" * 5000 + b"]" * 5000,
        b'{"issuer": "https://r.example", "x": ' + b"1" * 5000 + b"}",
    ],
)
def test_from_json_rejects(raw: bytes) -> None:
    with pytest.raises(MetadataError) as info:
        ResourceMetadata.from_json(raw)
    assert info.value.code == "invalid_metadata"


def test_from_json_size_limit() -> None:
    data = {"issuer": "https://r.example", "description": "x" * 70_000}
    raw = json.dumps(data).encode()
    with pytest.raises(MetadataError):
        ResourceMetadata.from_json(raw)
    assert ResourceMetadata.from_json(raw, max_size=len(raw)).description == "x" * 70_000


def test_from_json_issuer_check() -> None:
    raw = json.dumps(BY_DWK["aauth-agent.json"]).encode()
    with pytest.raises(MetadataError) as info:
        AgentProviderMetadata.from_json(raw, expected_issuer="https://evil.example")
    assert info.value.code == "issuer_mismatch"


def test_load_json_object_error_class() -> None:
    with pytest.raises(MalformedInput):
        load_json_object(b"[1]", max_size=100, what="body", error=MalformedInput)
    assert load_json_object('{"a": 1}', max_size=100, what="body") == {"a": 1}
