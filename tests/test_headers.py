"""AAuth-Requirement, Signature-Error, Accept-Signature-*, AAuth-Access / Authorization,
AAuth-Capabilities and Prefer: wait."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import load_vector

from aauth_core.errors import (
    MalformedInput,
    SignatureErrorCode,
    SignatureFailure,
    UnsupportedAlgorithm,
    UnsupportedScheme,
)
from aauth_core.headers import (
    AccessToken,
    Capabilities,
    Capability,
    Requirement,
    RequirementType,
    SignatureErrorHeader,
    parse_accept_signature_alg,
    parse_accept_signature_scheme,
    parse_prefer_wait,
    parse_preferences,
    serialize_accept_signature_alg,
    serialize_accept_signature_scheme,
    serialize_prefer_wait,
    signature_error_headers,
)

REQUIREMENT = load_vector("aauth-go/requirement.json")["cases"]
SIGNATURE_ERROR = load_vector("aauth-go/signature-error.json")["cases"]
GO_FIELDS = {"Requirement": "requirement", "ResourceToken": "resource_token", "URL": "url"}

# -- AAuth-Requirement ----------------------------------------------------------------------


def test_requirement_vectors_are_all_here() -> None:
    assert len(REQUIREMENT) == 8
    assert sum(c["canonical"] for c in REQUIREMENT) == 5


@pytest.mark.parametrize("case", REQUIREMENT, ids=lambda c: c["header"][:50])
def test_requirement_vectors(case: dict[str, Any]) -> None:
    parsed = Requirement.parse(case["header"])
    want = {GO_FIELDS.get(k, k.lower()): v for k, v in case["parsed"].items()}
    got = {
        name: getattr(parsed, name)
        for name in ("requirement", "resource_token", "url", "code")
        if getattr(parsed, name) is not None
    }
    assert got == want
    assert parsed.is_known
    if case["canonical"]:
        assert parsed.serialize() == case["header"]
    else:
        assert parsed.serialize() != case["header"]
    assert Requirement.parse(parsed.serialize()) == parsed
    assert Requirement.parse(case["header"].encode()) == parsed


def test_requirement_builders_serialise_like_the_draft() -> None:
    assert Requirement.agent_token().serialize() == "requirement=agent-token"
    assert Requirement.person_token().serialize() == "requirement=person-token"
    assert Requirement.approval().serialize() == "requirement=approval"
    assert Requirement.clarification().serialize() == "requirement=clarification"
    assert Requirement.claims().serialize() == "requirement=claims"
    assert (
        Requirement.auth_token("eyJ.x.y").serialize()
        == 'requirement=auth-token; resource-token="eyJ.x.y"'
    )
    interaction = Requirement.interaction("https://example.com/interact", "A1B2-C3D4")
    assert (
        interaction.serialize()
        == 'requirement=interaction; url="https://example.com/interact"; code="A1B2-C3D4"'
    )
    assert interaction.interaction_target() == "https://example.com/interact?code=A1B2-C3D4"
    assert interaction.type is RequirementType.INTERACTION


def test_unknown_requirement_is_kept_as_data() -> None:
    parsed = Requirement.parse('requirement=pay-me; url="https://x.example/p"; extra=1')
    assert parsed.requirement == "pay-me"
    assert not parsed.is_known and parsed.type is None
    assert parsed.url == "https://x.example/p"
    assert parsed.serialize() == 'requirement=pay-me; url="https://x.example/p"'


def test_parameters_a_known_requirement_does_not_define_are_ignored() -> None:
    parsed = Requirement.parse('requirement=approval; url="https://x.example/"; code="AB"')
    assert parsed == Requirement.approval()


@pytest.mark.parametrize(
    "header",
    [
        "",
        "requirement",  # Boolean true, not a token
        'requirement="agent-token"',
        "requirement=(agent-token)",
        "requirement=1",
        "other=agent-token",
        "requirement=auth-token",
        "requirement=auth-token; resource-token=eyJ",  # a token, not a string
        'requirement=auth-token; resource-token=""',
        'requirement=interaction; url="https://ps.example/i"',
        'requirement=interaction; code="A1B2"',
        'requirement=interaction; url="http://ps.example/i"; code="A1B2"',
        'requirement=interaction; url="https://ps.example/i?x=1"; code="A1B2"',
        'requirement=interaction; url="https://ps.example/i#f"; code="A1B2"',
        'requirement=interaction; url="https://u@ps.example/i"; code="A1B2"',
        'requirement=interaction; url="https:///i"; code="A1B2"',
        'requirement=interaction; url="https://ps.example:x/"; code="A1B2"',
        'requirement=interaction; url="https://[::1/"; code="A1B2"',
        'requirement=interaction; url="https://ps.example/a b"; code="A1B2"',
        'requirement=interaction; url="https://ps.example/i"; code="A1&B2"',
        'requirement=interaction; url="https://ps.example/i"; code="-AB"',
        'requirement=interaction; url="https://ps.example/i"; code=A1B2',
        'requirement=interaction; url="https://ps.example/i"; code="' + "A" * 65 + '"',
        "requirement=agent-token,",
        "requirement=agent-token; ",
    ],
)
def test_malformed_requirements(header: str) -> None:
    with pytest.raises(MalformedInput) as info:
        Requirement.parse(header)
    assert info.value.code == "invalid_request"
    assert info.value.status == 400


def test_requirement_construction_is_validated() -> None:
    with pytest.raises(MalformedInput):
        Requirement(requirement="agent-token", resource_token="x")
    with pytest.raises(MalformedInput):
        Requirement(requirement="not a token")
    with pytest.raises(ValueError, match="interaction"):
        Requirement.agent_token().interaction_target()


# -- Signature-Error --------------------------------------------------------------------------


def test_signature_error_vectors_are_all_here() -> None:
    assert len(SIGNATURE_ERROR) == 10
    assert sum(c["canonical"] for c in SIGNATURE_ERROR) == 9


@pytest.mark.parametrize("case", SIGNATURE_ERROR, ids=lambda c: c["header"][:50])
def test_signature_error_vectors(case: dict[str, Any]) -> None:
    parsed = SignatureErrorHeader.parse(case["header"])
    assert parsed.code == case["code"]
    assert isinstance(parsed.code, SignatureErrorCode)
    assert parsed.required_input == tuple(case.get("required_input", ()))
    assert dict(parsed.extra) == case.get("params", {})
    if case["canonical"]:
        assert parsed.serialize() == case["header"]
    else:
        assert parsed.serialize() != case["header"]
    assert SignatureErrorHeader.parse(parsed.serialize()) == parsed


def test_unknown_codes_and_members_are_kept() -> None:
    parsed = SignatureErrorHeader.parse(
        'error=brand_new, hint=("a" "b");x=1, flag, n=2.5, error_uri="https://e.example"'
    )
    assert parsed.code == "brand_new" and not parsed.is_known
    assert dict(parsed.extra) == {
        "hint": '("a" "b");x=1',
        "flag": "?1",
        "n": "2.5",
        "error_uri": '"https://e.example"',
    }
    again = SignatureErrorHeader.parse(parsed.serialize())
    assert again == parsed


@pytest.mark.parametrize(
    "header",
    [
        "",
        'required_input=("@method")',
        'error="invalid_signature"',
        "error=(invalid_signature)",
        "error",
        'error=invalid_input, required_input="@method"',
        "error=invalid_input, required_input=(@method)",
        'error=invalid_input, required_input=("@query-param";name="id")',
        "error=invalid_input,",
    ],
)
def test_malformed_signature_errors(header: str) -> None:
    with pytest.raises(MalformedInput):
        SignatureErrorHeader.parse(header)


def test_signature_error_extra_is_validated() -> None:
    for extra in ({"error": "x"}, {"Bad": "1"}, {"a": "1, b=2"}, {"a": ""}):
        with pytest.raises(MalformedInput):
            SignatureErrorHeader(code="invalid_signature", extra=extra)


def test_signature_error_headers_from_failures() -> None:
    assert signature_error_headers(SignatureFailure("bad")) == {
        "Signature-Error": "error=invalid_signature"
    }
    assert signature_error_headers(
        SignatureFailure(
            "missing",
            code=SignatureErrorCode.INVALID_INPUT,
            required_input=("@method", "content-digest"),
        )
    ) == {"Signature-Error": 'error=invalid_input, required_input=("@method" "content-digest")'}
    assert signature_error_headers(UnsupportedScheme("no", accept_schemes=("jwt",))) == {
        "Signature-Error": "error=unsupported_scheme",
        "Accept-Signature-Scheme": "jwt",
    }
    assert signature_error_headers(
        UnsupportedAlgorithm("no", accept_algs=("Ed25519", "ES256"))
    ) == {
        "Signature-Error": "error=unsupported_algorithm",
        "Accept-Signature-Alg": "Ed25519, ES256",
    }


# -- Accept-Signature-Scheme / -Alg ------------------------------------------------------------


def test_accept_lists() -> None:
    assert parse_accept_signature_scheme("jwt") == ("jwt",)
    assert parse_accept_signature_scheme("jwt, jwks_uri;q=1,hwk") == ("jwt", "jwks_uri", "hwk")
    assert parse_accept_signature_alg("Ed25519, ES256") == ("Ed25519", "ES256")
    assert parse_accept_signature_alg("") == ()
    assert serialize_accept_signature_scheme(["jwt", "jwks_uri"]) == "jwt, jwks_uri"
    assert serialize_accept_signature_alg(("Ed25519", "ML-DSA-44")) == "Ed25519, ML-DSA-44"


@pytest.mark.parametrize("header", ['"jwt"', "(jwt)", "jwt,", "1", "jwt hwk", "jwt;;"])
def test_accept_lists_reject_non_tokens(header: str) -> None:
    with pytest.raises(MalformedInput):
        parse_accept_signature_scheme(header)


@pytest.mark.parametrize("value", [[], ["a b"], ["1x"], [""]])
def test_accept_list_serialiser_rejects_misuse(value: list[str]) -> None:
    with pytest.raises(ValueError, match="token"):
        serialize_accept_signature_alg(value)


# -- AAuth-Access / Authorization: AAuth -------------------------------------------------------


def test_access_token_round_trip() -> None:
    token = AccessToken.parse("abc.DEF-_~+/==")
    assert token.value == "abc.DEF-_~+/=="
    assert token.serialize() == "abc.DEF-_~+/=="
    assert token.authorization() == "AAuth abc.DEF-_~+/=="
    assert AccessToken.from_authorization(token.authorization()) == token
    assert AccessToken.from_authorization("aauth   abc") == AccessToken(value="abc")
    assert AccessToken.from_authorization(b" AAUTH abc\t").value == "abc"
    assert AccessToken.parse(" abc ") == AccessToken(value="abc")
    assert "abc" not in repr(token)


@pytest.mark.parametrize(
    "value", ["", " ", "a b", "a,b", "a=b", "=abc", "a\x00b", "a\nb", "caf\u00e9", "x" * 8193]
)
def test_access_token_rejects(value: str) -> None:
    with pytest.raises(MalformedInput):
        AccessToken.parse(value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "AAuth",
        "AAuth ",
        "Bearer abc",
        "AAuthabc",
        "AAuth abc def",
        "AAuth abc, AAuth def",
        "AAuth a=b",
        'AAuth realm="x"',
        "AAuth\tabc",
        "AAuth abc\r\n",
        "AAuth " + "x" * 8193,
    ],
)
def test_authorization_rejects(value: str) -> None:
    with pytest.raises(MalformedInput):
        AccessToken.from_authorization(value)


# -- AAuth-Capabilities -------------------------------------------------------------------------


def test_capabilities() -> None:
    caps = Capabilities.parse('payment;x=1, teleport, "interaction", (clarification), interaction')
    assert caps.known == {Capability.PAYMENT, Capability.INTERACTION}
    assert caps.unknown == ("teleport",)
    assert Capability.INTERACTION in caps and "interaction" in caps
    assert Capability.CLARIFICATION not in caps
    assert caps.serialize() == "interaction, payment"
    assert Capabilities.parse("") == Capabilities()
    assert Capabilities.of("clarification", Capability.PAYMENT).serialize() == (
        "clarification, payment"
    )
    with pytest.raises(ValueError, match="omit"):
        Capabilities().serialize()
    with pytest.raises(MalformedInput):
        Capabilities.parse("interaction,,payment")


# -- Prefer: wait ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "wait"),
    [
        ("wait=10", 10),
        ("respond-async, wait=5", 5),
        ('return=minimal; foo="b,ar", WAIT = 7', 7),
        ("wait=3, wait=9", 3),  # RFC 7240 §2: only the first counts
        (" , wait=0 ,", 0),
        ("handling=lenient", None),
        ("", None),
        ("wait=99999999999999999999", 2**31),
        ('wait="12"', 12),
    ],
)
def test_prefer_wait(header: str, wait: int | None) -> None:
    assert parse_prefer_wait(header) == wait


@pytest.mark.parametrize(
    "header",
    ["wait", "wait=", "wait=-1", "wait=1.5", 'wait="x"', "wait=5 6", "=5", 'a="b', "a;=b=c"],
)
def test_prefer_wait_rejects(header: str) -> None:
    with pytest.raises(MalformedInput):
        parse_prefer_wait(header)


def test_preferences_keep_parameters() -> None:
    (pref,) = parse_preferences('Return=representation; A="x\\"y"; b')
    assert pref.name == "return" and pref.value == "representation"
    assert pref.params == (("a", 'x"y'), ("b", None))


def test_serialize_prefer_wait() -> None:
    assert serialize_prefer_wait(30) == "wait=30"
    assert parse_prefer_wait(serialize_prefer_wait(0)) == 0
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="wait"):
            serialize_prefer_wait(bad)  # type: ignore[arg-type]
