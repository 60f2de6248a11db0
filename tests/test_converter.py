"""The cattrs converter (``aauth_core.converter``): every domain value survives a JSON
round trip exactly, in its wire form where it has one; bad data is MalformedInput."""

from __future__ import annotations

import enum
import importlib
import json
import pkgutil
import types
from typing import Any, NamedTuple, get_origin

import attrs
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from signing_helpers import JwkSigner, generated_ed25519

import aauth_core
from aauth_core.algorithms import Alg
from aauth_core.b64 import b64url_encode
from aauth_core.converter import converter, from_json, structure, to_json, unstructure
from aauth_core.errors import AAuthError, MalformedInput, SignatureErrorCode
from aauth_core.headers import (
    AccessToken,
    Capabilities,
    Capability,
    Preference,
    Requirement,
    RequirementType,
    SignatureErrorHeader,
    parse_preferences,
)
from aauth_core.http import Headers, HttpRequest, HttpResponse
from aauth_core.httpsig import (
    Component,
    CoveredComponents,
    SelectedSignature,
    SignatureInput,
    SignatureParams,
    VerifiedSignature,
    parse_signature_input,
    read_signature,
)
from aauth_core.httpsig.components import Target, split_target
from aauth_core.identifiers import AgentId, ServerId
from aauth_core.jwk import PublicJwk
from aauth_core.jws import UnverifiedJws, decode_compact
from aauth_core.metadata import (
    AccessMode,
    AccessServerMetadata,
    AgentProviderMetadata,
    PersonServerMetadata,
    ResourceMetadata,
    ServerMetadata,
    WellKnown,
)
from aauth_core.mission import ApprovalResponse, ApprovedTool, MissionBlob, mission_s256
from aauth_core.requests import RequestVerifier, VerifiedRequest, sign_aauth_request
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
from aauth_core.tokens import (
    DWK_ACCESS,
    DWK_AGENT,
    DWK_PERSON,
    DWK_RESOURCE,
    AgentTokenClaims,
    AuthTokenClaims,
    Confirmation,
    PersonTokenClaims,
    ResourceInteraction,
    ResourceTokenClaims,
    StaticKeyResolver,
    TokenClaims,
    TokenPolicy,
    TokenType,
    UnverifiedToken,
    VerifiedToken,
    inspect_token,
    mint_token,
    verify_agent_token,
    verify_auth_token,
    verify_person_token,
    verify_resource_token,
)

NOW = 1_800_000_000
AP = "https://agent.example"
PS = "https://ps.example"
AS = "https://as.example"
RS = "https://resource.example"


def _es256_signer() -> JwkSigner:
    key = ec.generate_private_key(ec.SECP256R1())
    numbers = key.private_numbers()
    public = numbers.public_numbers
    return JwkSigner(
        {
            "kty": "EC",
            "crv": "P-256",
            "alg": "ES256",
            "x": b64url_encode(public.x.to_bytes(32, "big")),
            "y": b64url_encode(public.y.to_bytes(32, "big")),
            "d": b64url_encode(numbers.private_value.to_bytes(32, "big")),
        }
    )


def _rsa_jwk() -> PublicJwk:
    public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    numbers = public.public_numbers()
    return PublicJwk.from_dict(
        {
            "kty": "RSA",
            "alg": "PS256",
            "n": b64url_encode(numbers.n.to_bytes(256, "big")),
            "e": b64url_encode(numbers.e.to_bytes(3, "big")),
            "kid": "rsa-1",
            "use": "sig",
        }
    )


AGENT = generated_ed25519()
AP_KEY = generated_ed25519()
PS_KEY = _es256_signer()
AS_KEY = generated_ed25519()
RS_KEY = generated_ed25519()
KEYS = StaticKeyResolver(
    {
        (AP, DWK_AGENT): (AP_KEY.public_jwk(),),
        (PS, DWK_PERSON): (PS_KEY.public_jwk(),),
        (AS, DWK_ACCESS): (AS_KEY.public_jwk(), _rsa_jwk()),
        (RS, DWK_RESOURCE): (RS_KEY.public_jwk(),),
    }
)
AGENT_JWK = AGENT.public_jwk()

MISSION_BYTES = json.dumps(
    {
        "agent": "aauth:assistant@agent.example",
        "approved_at": "2026-09-25T10:00:00Z",
        "expires_at": "2026-09-26T10:00:00.250+02:00",
        "description": "Plan the offsite: book rooms and send invitations.",
        "approved_tools": [
            {"name": "calendar.write", "description": "Create events"},
            {"name": "mail"},
        ],
        "approved_resources": ["https://resource.example"],
        "note": "members the PS adds are ignored",
    }
).encode()

# --- claims and tokens -----------------------------------------------------------------------

AGENT_CLAIMS = AgentTokenClaims(
    iss=AP,
    dwk=DWK_AGENT,
    jti="agent-1",
    iat=NOW - 10,
    exp=NOW + 3600,
    sub=AgentId.parse("aauth:assistant+research@agent.example"),
    parent_agent=AgentId.parse("aauth:assistant@agent.example"),
    cnf=Confirmation(jwk=AGENT_JWK),
    ps=PS,
    extra={"attestation": {"level": 2, "evidence": ["tpm", "sbom"], "ratio": 0.25}},
)
PERSON_CLAIMS = PersonTokenClaims(
    iss=PS,
    dwk=DWK_PERSON,
    jti="person-1",
    iat=NOW - 10,
    exp=NOW + 1800,
    aud=RS,
    sub="person-7",
    cnf=Confirmation(jwk=AGENT_JWK),
    mission_s256=mission_s256(MISSION_BYTES),
    tenant="acme",
)
RESOURCE_CLAIMS = ResourceTokenClaims(
    iss=RS,
    dwk=DWK_RESOURCE,
    jti="resource-1",
    iat=NOW - 10,
    exp=NOW + 200,
    aud=PS,
    ps=PS,
    sub="person-7",
    presented_jti="agent-1",
    agent_jkt=AGENT_JWK.thumbprint(),
    scope="calendar.read calendar.write",
    account="acct-9",
    login_hint="alice@example.com",
    interaction=ResourceInteraction(url="https://resource.example/consent", code="ABCD-1234"),
)
AUTH_CLAIMS = AuthTokenClaims(
    iss=AS,
    dwk=DWK_ACCESS,
    jti="auth-1",
    iat=NOW - 10,
    exp=NOW + 1800,
    aud=RS,
    ps=PS,
    sub="person-7",
    cnf=Confirmation(jwk=AGENT_JWK, jkt=AGENT_JWK.thumbprint()),
    scope="calendar.read",
    tenant="acme",
    extra={"email": "alice@example.com"},
)

AGENT_TOKEN = mint_token(AGENT_CLAIMS, AP_KEY)
PERSON_TOKEN = mint_token(PERSON_CLAIMS, PS_KEY)
RESOURCE_TOKEN = mint_token(RESOURCE_CLAIMS, RS_KEY)
AUTH_TOKEN = mint_token(AUTH_CLAIMS, AS_KEY)

VERIFIED_AGENT = verify_agent_token(AGENT_TOKEN, keys=KEYS, now=NOW)
VERIFIED_PERSON = verify_person_token(PERSON_TOKEN, keys=KEYS, now=NOW, audience=RS)
VERIFIED_RESOURCE = verify_resource_token(RESOURCE_TOKEN, keys=KEYS, now=NOW, audience=PS)
VERIFIED_AUTH = verify_auth_token(AUTH_TOKEN, keys=KEYS, now=NOW, audience=RS)

# --- metadata and missions ---------------------------------------------------------------------

AGENT_METADATA = AgentProviderMetadata.from_dict(
    {
        "issuer": AP,
        "jwks_uri": f"{AP}/jwks.json",
        "name": "Agent Provider",
        "accept_signature_algs": ["Ed25519", "ES256"],
        "callback_endpoint": f"{AP}/callback",
        "localhost_callback_allowed": True,
        "logo_uri": f"{AP}/logo.png",
    }
)
PERSON_METADATA = PersonServerMetadata.from_dict(
    {
        "issuer": PS,
        "jwks_uri": f"{PS}/jwks.json",
        "auth_token_endpoint": f"{PS}/token",
        "person_token_endpoint": f"{PS}/person-token",
        "mission_endpoint": f"{PS}/mission",
        "scopes_supported": ["openid", "email"],
        "claims_supported": [],
        "description": "Person Server",
    }
)
ACCESS_METADATA = AccessServerMetadata.from_dict(
    {
        "issuer": AS,
        "jwks_uri": f"{AS}/jwks.json",
        "auth_token_endpoint": f"{AS}/token",
        "revocation_endpoint": f"{AS}/revoke",
    }
)
RESOURCE_METADATA = ResourceMetadata.from_dict(
    {
        "issuer": RS,
        "jwks_uri": f"{RS}/jwks.json",
        "access_mode": "auth-token",
        "authorization_endpoint": f"{RS}/authorize",
        "scope_descriptions": {"calendar.read": "Read your calendar"},
        "signature_window": 30,
        "additional_signature_components": ["content-type"],
    }
)

MISSION = MissionBlob.from_json(MISSION_BYTES)
APPROVAL = ApprovalResponse.for_blob(
    MISSION_BYTES,
    capabilities=("interaction", "payment"),
    person_tokens={RS: PERSON_TOKEN},
)

# --- HTTP and signatures -------------------------------------------------------------------------


def _signed_request() -> HttpRequest:
    body = b'{"q":"\xc3\xa9t\xc3\xa9"}\x00\xff'
    request = HttpRequest(
        method="POST",
        url="https://resource.example/calendar?week=12&tz=UTC",
        headers=[("Content-Type", "application/json"), ("X-Trace", "a"), ("x-trace", "b")],
        body=body,
    )
    added = sign_aauth_request(request, AGENT, token=AGENT_TOKEN, created=NOW, cover_body=True)
    return HttpRequest(
        method=request.method,
        url=request.url,
        headers=request.headers.with_fields(added),
        body=body,
    )


SIGNED_REQUEST = _signed_request()
SELECTED = read_signature(SIGNED_REQUEST.headers)
VERIFIED_REQUEST = RequestVerifier(keys=KEYS, audience=RS).verify(SIGNED_REQUEST, now=NOW + 5)
PARSED_INPUT = parse_signature_input(
    'sig=("@method" "@query-param";name="id" "signature-key";key="sig" "content-type";sf);'
    'keyid="k-1";created=1700000000;future=?1;blob=:AQID:;weight=1.5;t=tok/1;alg="ed25519"'
)["sig"]
RESPONSE = HttpResponse(
    status=202,
    headers={"AAuth-Requirement": Requirement.interaction(f"{RS}/i", "WXYZ-2345").serialize()},
    body=b'{"status":"pending"}',
)


class Sample(NamedTuple):
    """A value and the type it is stored as (its class, or a declared base or union)."""

    tp: Any
    value: Any
    id: str


def _samples() -> list[Sample]:
    out: list[Sample] = []

    def add(value: Any, tp: Any = None, name: str | None = None) -> None:
        tp = type(value) if tp is None else tp
        label = name or getattr(tp, "__name__", None) or str(tp)
        out.append(Sample(tp, value, f"{label}-{len(out)}"))

    for enum_cls in (
        Alg,
        TokenType,
        SignatureErrorCode,
        RequirementType,
        Capability,
        WellKnown,
        AccessMode,
    ):
        for member in enum_cls:
            add(member)
    add(AgentId.parse("aauth:assistant@agent.example"))
    add(AgentId.parse("aauth:assistant+research@xn--bcher-kva.example"))
    add(ServerId.parse(PS))
    add(AGENT_JWK)
    add(PS_KEY.public_jwk())
    add(KEYS.keys[(AS, DWK_ACCESS)][1])
    add(Confirmation(jwk=AGENT_JWK))
    add(Confirmation(jkt=AGENT_JWK.thumbprint()))
    add(AUTH_CLAIMS.cnf)
    for claims in (AGENT_CLAIMS, PERSON_CLAIMS, RESOURCE_CLAIMS, AUTH_CLAIMS):
        add(claims)
        add(claims, TokenClaims, "TokenClaims")
    add(RESOURCE_CLAIMS.interaction)
    for verified in (VERIFIED_AGENT, VERIFIED_PERSON, VERIFIED_RESOURCE, VERIFIED_AUTH):
        add(verified)
    add(VERIFIED_AGENT, VerifiedToken[AgentTokenClaims], "VerifiedToken[AgentTokenClaims]")
    add(VERIFIED_AUTH, VerifiedToken[TokenClaims], "VerifiedToken[TokenClaims]")
    add(inspect_token(AUTH_TOKEN))
    add(decode_compact(PERSON_TOKEN))
    add(TokenPolicy())
    add(TokenPolicy(max_iat_skew=5, max_lifetime=600, allowed_algs=frozenset({Alg.ES256})))
    add(KEYS)
    for document in (AGENT_METADATA, PERSON_METADATA, ACCESS_METADATA, RESOURCE_METADATA):
        add(document)
        add(document, ServerMetadata, "ServerMetadata")
    add(MISSION)
    add(ApprovedTool(name="mail"))
    add(ApprovedTool(name="calendar.write", description="Create events"))
    add(APPROVAL)
    add(ApprovalResponse.for_blob(MISSION_BYTES))
    for requirement in (
        Requirement.agent_token(),
        Requirement.person_token(),
        Requirement.auth_token(RESOURCE_TOKEN),
        Requirement.interaction(f"{RS}/interact", "ABCD-1234"),
        Requirement.approval(),
        Requirement.clarification(),
        Requirement.claims(),
        Requirement(requirement="future-thing", url=f"{RS}/x", code="Q1"),
    ):
        add(requirement)
    add(SignatureErrorHeader.parse('error=invalid_input, required_input=("@method" "x-a")'))
    add(SignatureErrorHeader.parse('error=brand_new, hint="retry", n=5, flag, l=(1 2)'))
    add(AccessToken(value="c2Vzc2lvbi10b2tlbg=="))
    add(Capabilities.parse("payment, interaction, teleport"))
    add(Capabilities())
    for preference in parse_preferences('wait=10, respond-async; a="b \\"c\\""; flag'):
        add(preference)
    schemes: list[Any] = [
        JwtScheme(jwt=AGENT_TOKEN, cache=True),
        JktJwtScheme(jwt=AGENT_TOKEN),
        JwksUriScheme(id=PS, dwk=DWK_PERSON, kid="key-1"),
        JwksScheme(url=f"{PS}/jwks.json", kid="key-1"),
        HwkScheme(jwk={"kty": "OKP", "crv": "Ed25519", "x": AGENT_JWK.x or "", "alg": "Ed25519"}),
        X509Scheme(x5u=f"{PS}/chain.pem", x5t=bytes(range(32))),
        SelfJwtScheme(jwt=PERSON_TOKEN),
        UnknownScheme(name="cached"),
    ]
    for scheme in schemes:
        add(scheme)
        add(scheme, SignatureKeyScheme, "SignatureKeyScheme")
    add(Component.of("@method"))
    add(Component.of('"@query-param";name="id"'))
    add(Component(name="signature-key", params={"key": "sig"}))
    add(Component(name="x-raw", params=(("bs", True), ("req", True))))
    add(SELECTED.input.covered)
    add(PARSED_INPUT.covered)
    add(SELECTED.input.params)
    add(PARSED_INPUT.params)
    add(SignatureParams(created=NOW, keyid="k", extra=(("z", 3),)))
    add(SELECTED.input)
    add(PARSED_INPUT)
    add(SELECTED)
    add(VERIFIED_REQUEST.signature)
    add(split_target("https://Resource.Example:443/calendar?week=12"))
    add(split_target("http://[::1]:8080"))
    add(SIGNED_REQUEST.headers)
    add(Headers())
    add(SIGNED_REQUEST)
    add(HttpRequest(method="GET", url=RS))
    add(RESPONSE)
    add(VERIFIED_REQUEST)
    add(_verified_server_request())
    return out


def _verified_server_request() -> Any:
    from test_server_requests import KEYS, signed
    from test_server_requests import NOW as SERVER_NOW

    from aauth_core.server_requests import verify_server_request
    from aauth_core.tokens import DWK_PERSON

    return verify_server_request(signed(), keys=KEYS, dwks=(DWK_PERSON,), now=SERVER_NOW)


SAMPLES = _samples()

#: Exported attrs classes that are not data, and why.
NOT_VALUES = {
    RequestVerifier: "a verifier service: holds a key resolver, a token cache and a callback",
}


def _exported_value_types() -> list[type]:
    found: dict[type, None] = {}
    for info in pkgutil.walk_packages(aauth_core.__path__, "aauth_core."):
        module = importlib.import_module(info.name)
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name, None)
            if isinstance(obj, type) and (attrs.has(obj) or issubclass(obj, enum.Enum)):
                found[obj] = None
    return sorted(found, key=lambda cls: f"{cls.__module__}.{cls.__qualname__}")


EXPORTED = _exported_value_types()


def _origin(tp: Any) -> Any:
    return get_origin(tp) or tp


def test_the_walk_finds_the_value_types() -> None:
    # guards the coverage test below against a walk that silently finds nothing
    for cls in (
        AgentId,
        PublicJwk,
        VerifiedToken,
        UnverifiedToken,
        UnverifiedJws,
        ResourceMetadata,
        Preference,
        Component,
        CoveredComponents,
        SelectedSignature,
        VerifiedSignature,
        Target,
        Headers,
        Alg,
    ):
        assert cls in EXPORTED


@pytest.mark.parametrize("cls", EXPORTED, ids=lambda cls: cls.__qualname__)
def test_every_exported_value_type_has_a_sample(cls: type) -> None:
    if cls in NOT_VALUES:
        return
    sampled = {_origin(sample.tp) for sample in SAMPLES}
    assert cls in sampled, f"{cls.__module__}.{cls.__qualname__} has no sample in SAMPLES"
    if issubclass(cls, enum.Enum):
        members = {sample.value for sample in SAMPLES if sample.tp is cls}
        assert members == set(cls)


def _is_plain_json(data: Any) -> bool:
    if data is None or type(data) in (str, int, float, bool):
        return True
    if type(data) is list:
        return all(_is_plain_json(item) for item in data)
    if type(data) is dict:
        return all(type(k) is str and _is_plain_json(v) for k, v in data.items())
    return False


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.id)
def test_round_trip_through_json(sample: Sample) -> None:
    data = unstructure(sample.value, sample.tp)
    assert _is_plain_json(data), data
    restored = converter.structure(json.loads(json.dumps(data)), sample.tp)
    assert restored == sample.value
    assert type(restored) is type(sample.value)
    assert from_json(to_json(sample.value, sample.tp), sample.tp) == sample.value
    # a second trip is byte-identical: the stored form is stable
    assert to_json(restored, sample.tp) == to_json(sample.value, sample.tp)


def test_type_of_value_is_enough_for_concrete_values() -> None:
    for value in (VERIFIED_PERSON, APPROVAL, SIGNED_REQUEST, RESOURCE_CLAIMS):
        assert structure(json.loads(json.dumps(converter.unstructure(value))), type(value)) == value


# --- the wire forms ----------------------------------------------------------------------------


def test_identifiers_keys_and_enums_use_their_wire_strings() -> None:
    agent = AgentId.parse("aauth:assistant+research@agent.example")
    assert unstructure(agent) == str(agent)
    assert unstructure(ServerId.parse(PS)) == PS
    assert unstructure(AGENT_JWK) == AGENT_JWK.to_dict()
    assert unstructure(TokenType.AUTH) == TokenType.AUTH.value
    assert type(unstructure(Alg.ES256)) is str
    assert unstructure(Component.of('"@query-param";name="id"')) == '"@query-param";name="id"'
    assert unstructure(Component.of("@method")) == "@method"


def test_claims_are_their_jwt_payload() -> None:
    for claims in (AGENT_CLAIMS, PERSON_CLAIMS, RESOURCE_CLAIMS, AUTH_CLAIMS):
        assert unstructure(claims) == claims.to_payload()
        tagged = unstructure(claims, TokenClaims)
        assert tagged == {"type": claims.TYPE.value, "payload": claims.to_payload()}
    assert unstructure(AUTH_CLAIMS.cnf) == AUTH_CLAIMS.cnf.to_claim()
    # the payload a token carries is what the stored claims come back from
    assert structure(decode_compact(AGENT_TOKEN).payload, AgentTokenClaims) == AGENT_CLAIMS


def test_documents_are_their_json() -> None:
    for document in (AGENT_METADATA, PERSON_METADATA, ACCESS_METADATA, RESOURCE_METADATA):
        assert unstructure(document) == document.to_dict()
        assert unstructure(document, ServerMetadata) == {
            "dwk": type(document).dwk.value,
            "document": document.to_dict(),
        }
    assert unstructure(APPROVAL) == APPROVAL.to_dict()
    assert MissionBlob.from_dict(unstructure(MISSION)) == MISSION


def test_bytes_are_unpadded_base64url_and_headers_are_pairs() -> None:
    data = unstructure(SIGNED_REQUEST)
    assert data["body"] == b64url_encode(SIGNED_REQUEST.body)
    assert "=" not in data["body"]
    assert data["headers"] == [list(pair) for pair in SIGNED_REQUEST.headers.pairs]
    assert unstructure(X509Scheme(x5u=f"{PS}/c.pem", x5t=b"\xfb\xff"))["x5t"] == "-_8"
    assert unstructure(SELECTED)["signature"] == b64url_encode(SELECTED.signature)


def test_sets_are_sorted_arrays() -> None:
    policy = TokenPolicy(allowed_algs=frozenset({Alg.RS256, Alg.ED25519, Alg.ES384}))
    assert unstructure(policy)["allowed_algs"] == sorted(["RS256", "Ed25519", "ES384"])


def test_a_decoded_jws_is_its_compact_form() -> None:
    assert unstructure(decode_compact(PERSON_TOKEN)) == PERSON_TOKEN


def test_signature_key_union_is_tagged_by_scheme() -> None:
    stored = unstructure(JwksUriScheme(id=PS, dwk=DWK_PERSON, kid="k"), SignatureKeyScheme)
    assert stored == {"scheme": "jwks_uri", "id": PS, "dwk": DWK_PERSON, "kid": "k"}
    assert structure({"scheme": "future"}, SignatureKeyScheme) == UnknownScheme(name="future")


def test_verified_token_is_stored_with_its_claims_payload() -> None:
    data = unstructure(VERIFIED_RESOURCE)
    assert data["type"] == TokenType.RESOURCE.value
    assert data["claims"] == RESOURCE_CLAIMS.to_payload()
    assert data["token"] == RESOURCE_TOKEN
    assert data["issuer_key"] == RS_KEY.public_jwk().to_dict()
    restored = structure(data, VerifiedToken)
    assert isinstance(restored.claims, ResourceTokenClaims)
    assert restored.claims.interaction == RESOURCE_CLAIMS.interaction


# --- restoring cannot forge a verified token ----------------------------------------------------


def _tampered(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = unstructure(VERIFIED_AGENT)
    data.update(changes)
    return data


def test_verified_token_with_edited_claims_is_refused() -> None:
    claims = {**AGENT_CLAIMS.to_payload(), "jti": "agent-2"}
    with pytest.raises(MalformedInput, match="claims differ"):
        structure(_tampered(claims=claims), VerifiedToken)


def test_verified_token_with_another_issuer_key_is_refused() -> None:
    with pytest.raises(MalformedInput, match="signature"):
        structure(_tampered(issuer_key=RS_KEY.public_jwk().to_dict()), VerifiedToken)


def test_verified_token_with_a_forged_signature_is_refused() -> None:
    head, body, _sig = AGENT_TOKEN.split(".")
    forged = f"{head}.{body}.{b64url_encode(bytes(64))}"
    with pytest.raises(MalformedInput, match="signature"):
        structure(_tampered(token=forged), VerifiedToken)


def test_verified_token_with_another_type_alg_or_kid_is_refused() -> None:
    for changes in ({"kid": "other"}, {"alg": "ES256"}, {"type": TokenType.PERSON.value}):
        with pytest.raises(MalformedInput):
            structure(_tampered(**changes), VerifiedToken)


def test_verified_token_of_the_wrong_claims_class_is_refused() -> None:
    data = unstructure(VERIFIED_PERSON)
    with pytest.raises(MalformedInput, match="not a VerifiedToken"):
        structure(data, VerifiedToken[AgentTokenClaims])
    assert structure(data, VerifiedToken[PersonTokenClaims]) == VERIFIED_PERSON


# --- bad data ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "tp"),
    [
        ("5", int),
        (True, int),
        (5, str),
        (1, bool),
        ("abc", tuple[str, ...]),
        ("a", frozenset[Alg]),
        (["EdDSA"], frozenset[Alg]),
        ("AQID=", bytes),
        ({"a": 1}, list[int]),
        (["x", "y"], Headers),
        ([["x"]], Headers),
        ("aauth:@agent.example", AgentId),
        ("http://ps.example", ServerId),
        ({"kty": "oct", "k": "x", "alg": "HS256"}, PublicJwk),
        ({}, AgentTokenClaims),
        ([], PersonTokenClaims),
        ({"type": "aa-nope+jwt", "payload": {}}, TokenClaims),
        ({"requirement": "auth-token"}, Requirement),
        ({"requirement": 5}, Requirement),
        (["sig"], SignatureInput),
        ({"label": "sig", "covered": ["@nope"], "params": {}}, SignatureInput),
        ({"method": "GET", "url": RS, "body": "%%"}, HttpRequest),
        ({"status": "200"}, HttpResponse),
        ({"dwk": "aauth-agent.json", "document": {"issuer": AP}}, ServerMetadata),
        ({"created": 1, "extra": [["alg", "1"]]}, SignatureParams),
        ({"scheme": "x509", "x5u": PS, "x5t": ""}, SignatureKeyScheme),
        ({"s256": "x", "mission": "e30"}, ApprovalResponse),
        ({"token": AGENT_TOKEN}, VerifiedToken),
    ],
)
def test_bad_data_is_malformed_input(data: Any, tp: Any) -> None:
    with pytest.raises(MalformedInput) as info:
        structure(data, tp)
    assert info.value.status == 400
    assert info.value.code == "invalid_request"
    assert 0 < len(info.value.detail) <= 300
    assert "While structuring" not in info.value.detail


def test_the_detail_names_the_path() -> None:
    data = unstructure(VERIFIED_REQUEST)
    data["signature"]["covered"][1] = 7
    with pytest.raises(MalformedInput, match=r"\$\.signature\.covered"):
        structure(data, VerifiedRequest)
    request = unstructure(SIGNED_REQUEST)
    request["headers"] = "Content-Type: text/plain"
    with pytest.raises(MalformedInput, match=r"headers must be a JSON array @ \$\.headers"):
        structure(request, HttpRequest)


def test_from_json_refuses_what_is_not_strict_json() -> None:
    for text in ("", "{", '{"a":1,"a":2}', "NaN", b"\xff", '"aauth:a@b.example"x'):
        with pytest.raises(MalformedInput):
            from_json(text, AgentId)
    with pytest.raises(MalformedInput, match="longer than"):
        from_json(json.dumps(PS), ServerId, max_size=10)
    assert from_json(b'"https://ps.example"', ServerId) == ServerId.parse(PS)


def test_an_unsupported_type_is_a_programming_error() -> None:
    class NotAValue:
        pass

    with pytest.raises(TypeError):
        structure({}, NotAValue)


# --- arbitrary data: a value that round-trips, or MalformedInput -------------------------------

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def _leaves(exc: BaseException | None) -> list[BaseException]:
    if exc is None:
        return []
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _check_structure(data: Any, tp: Any) -> None:
    error: MalformedInput | None = None
    try:
        value = structure(data, tp)
    except MalformedInput as exc:
        error = exc
    if error is not None:
        assert 0 < len(error.detail) <= 300
        for leaf in _leaves(error.__cause__):
            # a hook that trips over the data (AttributeError, IndexError, ...) is a bug
            assert isinstance(leaf, AAuthError | ValueError | KeyError), repr(leaf)
        return
    origin = get_origin(tp)
    runtime = tp if origin in (None, types.UnionType) else origin
    assert isinstance(value, runtime)
    assert structure(json.loads(to_json(value, tp)), tp) == value


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(sample=st.sampled_from(SAMPLES), data=JSON)
def test_arbitrary_json_is_a_value_or_malformed_input(sample: Sample, data: Any) -> None:
    _check_structure(data, sample.tp)


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(data, dict):
        for key, item in data.items():
            out.extend(_paths(item, (*prefix, key)))
    elif isinstance(data, list):
        for index, item in enumerate(data):
            out.extend(_paths(item, (*prefix, index)))
    return out


def _mutate(data: Any, path: tuple[Any, ...], replacement: Any, delete: bool) -> Any:
    if not path:
        return replacement
    head, rest = path[0], path[1:]
    if isinstance(data, dict):
        copy = dict(data)
        if delete and not rest:
            del copy[head]
        else:
            copy[head] = _mutate(data[head], rest, replacement, delete)
        return copy
    copy_list = list(data)
    if delete and not rest:
        del copy_list[head]
    else:
        copy_list[head] = _mutate(data[head], rest, replacement, delete)
    return copy_list


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(sample=st.sampled_from(SAMPLES), choice=st.data())
def test_mutated_samples_are_a_value_or_malformed_input(sample: Sample, choice: Any) -> None:
    data = json.loads(to_json(sample.value, sample.tp))
    path = choice.draw(st.sampled_from(_paths(data)))
    replacement = choice.draw(JSON)
    delete = choice.draw(st.booleans())
    _check_structure(_mutate(data, path, replacement, delete), sample.tp)


@settings(max_examples=200)
@given(sample=st.sampled_from(SAMPLES), text=st.text(max_size=60) | st.binary(max_size=60))
def test_from_json_of_any_text_is_a_value_or_malformed_input(sample: Sample, text: Any) -> None:
    try:
        value = from_json(text, sample.tp)
    except MalformedInput:
        return
    assert from_json(to_json(value, sample.tp), sample.tp) == value
