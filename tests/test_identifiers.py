"""Agent and server identifiers (-11 §1.2, §1.3) and the other URLs (§1.4)."""

from __future__ import annotations

import pytest
from conftest import load_vector

from aauth_core.errors import AAuthError, InvalidIdentifier, MalformedInput, MetadataError
from aauth_core.identifiers import AgentId, ServerId, is_server_host
from aauth_core.urls import callback_url, endpoint_url, https_url

AGENT_CASES = load_vector("aauth-go/agent-identifier.json")["cases"]
SERVER_CASES = load_vector("aauth-go/server-identifier.json")["cases"]


def _case_id(case: dict[str, object]) -> str:
    text = str(case["input"])
    return text if len(text) < 60 else f"{text[:20]}...({len(text)} chars)"


# --- agent identifiers -----------------------------------------------------------------


def test_agent_vector_file_has_the_expected_cases() -> None:
    assert len(AGENT_CASES) == 20
    assert sum(1 for c in AGENT_CASES if c["valid"]) == 6


@pytest.mark.parametrize("case", AGENT_CASES, ids=_case_id)
def test_agent_identifier_vectors(case: dict[str, object]) -> None:
    if case["valid"]:
        agent = AgentId.parse(case["input"])
        assert agent.name == case["name"]
        assert agent.discriminator == case.get("discriminator")
        assert agent.domain == case["domain"]
        assert str(agent) == case["input"]
        assert agent.is_subagent == ("discriminator" in case)
    else:
        with pytest.raises(InvalidIdentifier) as info:
            AgentId.parse(case["input"])
        assert info.value.code == "invalid_request"
        assert info.value.status == 400


def test_agent_identifiers_are_case_sensitive() -> None:
    upper = AgentId.parse("aauth:Agent@agent.example")
    lower = AgentId.parse("aauth:agent@agent.example")
    assert upper != lower
    assert upper.local == "Agent"


def test_subagent_parent_relationship() -> None:
    parent = AgentId.parse("aauth:planner.7f3c@vendor.example")
    child = AgentId.parse("aauth:planner.7f3c+search1@vendor.example")
    assert child.parent == parent
    assert child.is_subagent_of(parent)
    assert not parent.is_subagent_of(child)
    assert not parent.is_subagent_of(parent)
    assert parent.parent is None
    assert parent.discriminator is None
    assert parent.subagent("search1") == child


@pytest.mark.parametrize(
    "other",
    [
        "aauth:planner@vendor.example",  # different parent local
        "aauth:planner.7f3c@other.example",  # different domain
        "aauth:Planner.7f3c@vendor.example",  # case differs
    ],
)
def test_subagent_of_a_different_parent(other: str) -> None:
    child = AgentId.parse("aauth:planner.7f3c+search1@vendor.example")
    assert not child.is_subagent_of(AgentId.parse(other))


@pytest.mark.parametrize(
    "text",
    [
        "aauth:a+b+c@agent.example",  # two delimiters: sub-agents are single level
        "aauth:a@b@agent.example",
        "aauth:a@agent.example.",  # trailing dot
        "aauth:a@127.0.0.1",  # IP literal, not a host name
        "aauth:a@agent.example\n",
        "aauth:a\x00@agent.example",
        "AAUTH:a@agent.example",
        "aauth:a@xn--zz.example",  # not a valid A-label
        "aauth:a@" + "a" * 64 + ".example",  # label over 63
        "aauth:a@" + ".".join(["abcdefg"] * 32) + ".example",  # host over 253
        "aauth:a@agent-.example",
        "aauth:a@agent_x.example",
    ],
)
def test_more_invalid_agent_identifiers(text: str) -> None:
    with pytest.raises(InvalidIdentifier):
        AgentId.parse(text)


@pytest.mark.parametrize("value", [None, 42, b"aauth:a@agent.example", ["aauth:a@b.example"]])
def test_agent_identifier_rejects_non_strings(value: object) -> None:
    with pytest.raises(InvalidIdentifier):
        AgentId.parse(value)


def test_agent_identifier_is_validated_at_construction() -> None:
    with pytest.raises(InvalidIdentifier):
        AgentId(local="has space", domain="agent.example")
    with pytest.raises(InvalidIdentifier):
        AgentId(local="a", domain="Agent.Example")


def test_subagent_of_subagent_is_refused() -> None:
    child = AgentId.parse("aauth:p+c@agent.example")
    with pytest.raises(InvalidIdentifier):
        child.subagent("d")
    with pytest.raises(InvalidIdentifier):
        AgentId.parse("aauth:p@agent.example").subagent("")


# --- server identifiers ----------------------------------------------------------------


def test_server_vector_file_has_the_expected_cases() -> None:
    assert len(SERVER_CASES) == 13


@pytest.mark.parametrize("case", SERVER_CASES, ids=_case_id)
def test_server_identifier_vectors(case: dict[str, object]) -> None:
    if case["valid"]:
        server = ServerId.parse(case["input"])
        assert str(server) == case["input"]
        assert server.host == str(case["input"]).removeprefix("https://")
    else:
        with pytest.raises(InvalidIdentifier) as info:
            ServerId.parse(case["input"])
        assert (info.value.code, info.value.status) == ("invalid_request", 400)


@pytest.mark.parametrize(
    "text",
    [
        "https://agent.example.",
        "https://[::1]",
        "https://127.0.0.1",
        "https://agént.example",
        "https://agent.example\t",
        "HTTPS://agent.example",
        "https://agent.example:443",
        "https:///agent.example",
        "https://xn--.example",
    ],
)
def test_more_invalid_server_identifiers(text: str) -> None:
    with pytest.raises(InvalidIdentifier):
        ServerId.parse(text)


def test_well_known_url() -> None:
    server = ServerId.parse("https://ps.example")
    assert server.well_known_url("aauth-person.json") == (
        "https://ps.example/.well-known/aauth-person.json"
    )
    for bad in ["", "..", "a/b", "a?b", "x" * 65]:
        with pytest.raises(MalformedInput):
            server.well_known_url(bad)


def test_server_ids_compare_by_value() -> None:
    assert ServerId.parse("https://a.example") == ServerId(host="a.example")
    assert ServerId.parse("https://a.example") != ServerId.parse("https://b.example")
    assert len({ServerId.parse("https://a.example"), ServerId(host="a.example")}) == 1


def test_is_server_host() -> None:
    assert is_server_host("localhost")
    assert is_server_host("xn--nxasmq6b.example")
    assert is_server_host("a-b.c0.example")
    assert not is_server_host("")
    assert not is_server_host("a..b")
    assert not is_server_host("Agent.example")
    assert not is_server_host("10.0.0.1")


# --- other URLs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://agent.example/.well-known/jwks.json",
        "https://Agent.Example/x",  # URL hosts are case-insensitive
        "https://agent.example:8443/jwks?x=1#frag",
        "https://127.0.0.1/jwks",
        "https://[::1]:8443/jwks",
        "https://agent.example",
        "https://agent.example/a%20b",
    ],
)
def test_https_url_accepts(url: str) -> None:
    assert https_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "http://agent.example/jwks",
        "ftp://agent.example/",
        "https://",
        "https:///path",
        "https://user@agent.example/",
        "https://agent.example:0/",
        "https://agent.example:65536/",
        "https://agent.example:/",
        "https://agent.example:8a/",
        "https://[::1/",
        "https://[zz::1]/",
        "https://agent.example/a b",
        "https://agent.example/\u00e9",
        "https://agent.example\\@evil.example/",
        "https://agent.example/%zz",
        "https://-bad.example/",
        "https://999.1.1.1/",
        "https://agent.example/" + "a" * 5000,
    ],
)
def test_https_url_rejects(url: str) -> None:
    with pytest.raises(MalformedInput):
        https_url(url)


@pytest.mark.parametrize(
    "url",
    ["https://ps.example/token?x=1", "https://ps.example/token#f", "https://ps.example/token#"],
)
def test_endpoint_url_rejects_query_and_fragment(url: str) -> None:
    assert https_url(url) == url
    with pytest.raises(MalformedInput):
        endpoint_url(url)


def test_endpoint_url_accepts_a_plain_https_url() -> None:
    assert endpoint_url("https://ps.example/token") == "https://ps.example/token"


def test_url_error_class_is_the_callers() -> None:
    with pytest.raises(MetadataError) as info:
        endpoint_url("http://ps.example/token", what="auth_token_endpoint", error=MetadataError)
    assert info.value.code == "invalid_metadata"
    assert "auth_token_endpoint" in info.value.detail


@pytest.mark.parametrize(
    "url", ["http://localhost:8765/cb", "http://127.0.0.1/cb", "http://localhost"]
)
def test_localhost_callback_only_when_allowed(url: str) -> None:
    assert callback_url(url, localhost_allowed=True) == url
    with pytest.raises(MalformedInput):
        callback_url(url, localhost_allowed=False)


@pytest.mark.parametrize(
    "url",
    [
        "http://agent.example/cb",
        "http://localhost.evil.example/cb",
        "http://127.0.0.2/cb",
        "http://localhost@evil.example/cb",
        "http://localhost/cb?x=1",
    ],
)
def test_localhost_exception_is_narrow(url: str) -> None:
    with pytest.raises(AAuthError):
        callback_url(url, localhost_allowed=True)
