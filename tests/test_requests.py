"""Signed AAuth requests end to end in memory: agent signs, resource verifies (§3.2, §8)."""

from __future__ import annotations

from typing import Any

import pytest
from signing_helpers import generated_ed25519

from aauth_core.algorithms import Alg
from aauth_core.errors import AAuthError, SignatureFailure
from aauth_core.headers.signature_error import signature_error_headers
from aauth_core.http import HttpRequest
from aauth_core.identifiers import AgentId
from aauth_core.requests import RequestVerifier, sign_aauth_request
from aauth_core.signature_key import serialize_jwks_uri_scheme
from aauth_core.token_cache import VerifiedTokenCache
from aauth_core.tokens import (
    DWK_AGENT,
    DWK_PERSON,
    DWK_RESOURCE,
    AgentTokenClaims,
    AuthTokenClaims,
    Confirmation,
    PersonTokenClaims,
    ResourceTokenClaims,
    StaticKeyResolver,
    mint_token,
)

AP = "https://agent.example"
PS = "https://ps.example"
RS = "https://resource.example"
NOW = 1_800_000_000

AGENT = generated_ed25519()
OTHER = generated_ed25519()
AP_KEY = generated_ed25519()
PS_KEY = generated_ed25519()
RS_KEY = generated_ed25519()
KEYS = StaticKeyResolver(
    {
        (AP, DWK_AGENT): (AP_KEY.public_jwk(),),
        (PS, DWK_PERSON): (PS_KEY.public_jwk(),),
        (RS, DWK_RESOURCE): (RS_KEY.public_jwk(),),
    }
)


def agent_token(*, key: Any = AGENT, exp: int = NOW + 3600, jti: str = "a-1") -> str:
    return mint_token(
        AgentTokenClaims(
            iss=AP,
            dwk=DWK_AGENT,
            jti=jti,
            iat=NOW - 10,
            exp=exp,
            sub=AgentId.parse("aauth:assistant@agent.example"),
            cnf=Confirmation(jwk=key.public_jwk()),
            ps=PS,
        ),
        AP_KEY,
    )


def person_token(aud: str = RS) -> str:
    return mint_token(
        PersonTokenClaims(
            iss=PS,
            dwk=DWK_PERSON,
            jti="p-1",
            iat=NOW - 10,
            exp=NOW + 1800,
            aud=aud,
            sub="person-7",
            cnf=Confirmation(jwk=AGENT.public_jwk()),
        ),
        PS_KEY,
    )


def auth_token() -> str:
    return mint_token(
        AuthTokenClaims(
            iss=PS,
            dwk=DWK_PERSON,
            jti="t-1",
            iat=NOW - 10,
            exp=NOW + 1800,
            aud=RS,
            ps=PS,
            sub="person-7",
            cnf=Confirmation(jwk=AGENT.public_jwk()),
            scope="calendar.read",
        ),
        PS_KEY,
    )


def signed(
    token: str,
    *,
    method: str = "GET",
    url: str = "https://resource.example/calendar?x=1",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    created: int = NOW,
    signer: Any = AGENT,
    **kwargs: Any,
) -> HttpRequest:
    request = HttpRequest(method=method, url=url, headers=headers or {}, body=body)
    added = sign_aauth_request(request, signer, token=token, created=created, **kwargs)
    return HttpRequest(
        method=method, url=url, headers=request.headers.with_fields(added), body=body
    )


def verifier(**kwargs: Any) -> RequestVerifier:
    return RequestVerifier(keys=KEYS, audience=RS, **kwargs)


def fails(
    request: HttpRequest, code: str, *, now: int = NOW, v: RequestVerifier | None = None
) -> AAuthError:
    with pytest.raises(AAuthError) as info:
        (v or verifier()).verify(request, now=now)
    assert info.value.code == code, info.value
    return info.value


def test_agent_token_request_verifies_and_tells_the_handler_who() -> None:
    result = verifier().verify(signed(agent_token()), now=NOW)
    assert str(result.agent) == "aauth:assistant@agent.example"
    assert result.person is None
    assert result.key.same_key(AGENT.public_jwk())
    assert (
        result.signature.covered.serialize() == '("@method" "@authority" "@path" "signature-key")'
    )


def test_person_and_auth_tokens_carry_the_person() -> None:
    person = verifier().verify(signed(person_token()), now=NOW)
    assert person.person == (PS, "person-7")
    auth = verifier().verify(signed(auth_token()), now=NOW)
    assert auth.person == (PS, "person-7")
    assert auth.scopes == {"calendar.read"}


def test_warm_cache_serves_the_same_token_and_expires_with_it() -> None:
    cache = VerifiedTokenCache(max_entries=2)
    v = verifier(cache=cache)
    token = agent_token(exp=NOW + 100)
    v.verify(signed(token), now=NOW)
    assert len(cache) == 1
    hit = cache.get(token, NOW)
    assert hit is not None
    v.verify(signed(token, created=NOW + 50), now=NOW + 50)
    # At exp the entry is gone and the token is refused with zero leeway.
    fails(signed(token, created=NOW + 100), "expired_jwt", now=NOW + 100, v=v)
    assert cache.get(token, NOW + 100) is None


def test_cache_is_bounded() -> None:
    cache = VerifiedTokenCache(max_entries=2)
    v = verifier(cache=cache)
    for i in range(5):
        v.verify(signed(agent_token(jti=f"a-{i}")), now=NOW)
    assert len(cache) == 2


def test_tampering_is_invalid_signature() -> None:
    request = signed(agent_token())
    moved = HttpRequest(
        method="GET", url="https://resource.example/admin?x=1", headers=request.headers
    )
    fails(moved, "invalid_signature")
    post = HttpRequest(method="POST", url=request.url, headers=request.headers)
    fails(post, "invalid_signature")
    other_host = HttpRequest(
        method="GET", url="https://evil.example/calendar?x=1", headers=request.headers
    )
    fails(other_host, "invalid_signature")


def test_signature_key_swap_is_invalid_signature() -> None:
    request = signed(agent_token())
    other = signed(agent_token(jti="a-2"))
    swapped = HttpRequest(
        method="GET",
        url=request.url,
        headers=request.headers.with_fields(
            {"Signature-Key": other.headers.get("signature-key") or ""}
        ),
    )
    fails(swapped, "invalid_signature")


def test_token_bound_to_another_key_is_invalid_signature() -> None:
    fails(signed(agent_token(key=OTHER)), "invalid_signature")


def test_missing_fields_are_invalid_signature() -> None:
    request = signed(agent_token())
    for name in ("Signature", "Signature-Input", "Signature-Key"):
        kept = [(k, v) for k, v in request.headers.pairs if k.lower() != name.lower()]
        fails(HttpRequest(method="GET", url=request.url, headers=kept), "invalid_signature")


def test_created_window() -> None:
    token = agent_token()
    verifier().verify(signed(token, created=NOW - 60), now=NOW)
    fails(signed(token, created=NOW - 61), "invalid_signature")
    fails(signed(token, created=NOW + 61), "clock_skew")
    verifier(window=300).verify(signed(token, created=NOW - 200), now=NOW)


def test_expired_revoked_and_wrong_typ_tokens() -> None:
    fails(signed(agent_token(exp=NOW)), "expired_jwt")
    revoked = verifier(is_revoked=lambda iss, jti: (iss, jti) == (AP, "a-1"))
    fails(signed(agent_token()), "revoked_jwt", v=revoked)
    resource_token = mint_token(
        ResourceTokenClaims(
            iss=RS,
            dwk=DWK_RESOURCE,
            jti="r-1",
            iat=NOW,
            exp=NOW + 300,
            aud=PS,
            ps=PS,
            sub="person-7",
            presented_jti="p-1",
            agent_jkt=AGENT.public_jwk().thumbprint(),
        ),
        RS_KEY,
    )
    fails(signed(resource_token), "invalid_jwt")
    fails(signed(person_token(aud="https://other.example")), "invalid_jwt")


def test_auth_token_required_rejects_a_person_token() -> None:
    from aauth_core.tokens import TokenType

    only_auth = verifier(accepted_types=frozenset({TokenType.AUTH}))
    only_auth.verify(signed(auth_token()), now=NOW)
    fails(signed(person_token()), "invalid_jwt", v=only_auth)


def test_other_schemes_are_unsupported_with_accept_header() -> None:
    request = signed(agent_token())
    server_scheme = serialize_jwks_uri_scheme("sig", id=PS, dwk=DWK_PERSON, kid="k1")
    headers = request.headers.with_fields({"Signature-Key": server_scheme})
    err = fails(HttpRequest(method="GET", url=request.url, headers=headers), "unsupported_scheme")
    assert isinstance(err, SignatureFailure)
    assert signature_error_headers(err)["Accept-Signature-Scheme"] == "jwt"


def test_algorithm_allow_list_comes_from_the_key() -> None:
    err = fails(
        signed(agent_token()),
        "unsupported_algorithm",
        v=verifier(allowed_algs=frozenset({Alg.ES256})),
    )
    assert isinstance(err, SignatureFailure)
    assert err.accept_algs == ("ES256",)


def test_body_coverage_and_content_digest() -> None:
    body = b'{"resource_token":"x"}'
    json_headers = {"Content-Type": "application/json"}
    strict = verifier(require_body_coverage=True)
    ok = signed(
        agent_token(),
        method="POST",
        url="https://resource.example/token",
        headers=json_headers,
        body=body,
        cover_body=True,
    )
    strict.verify(ok, now=NOW)
    bare = signed(
        agent_token(),
        method="POST",
        url="https://resource.example/token",
        headers=json_headers,
        body=body,
    )
    err = fails(bare, "invalid_input", v=strict)
    assert isinstance(err, SignatureFailure)
    assert "content-digest" in err.required_input
    changed = HttpRequest(
        method="POST", url=ok.url, headers=ok.headers, body=b'{"resource_token":"y"}'
    )
    fails(changed, "invalid_signature", v=strict)


def test_session_token_requires_authorization_coverage() -> None:
    headers = {"Authorization": "AAuth c2Vzc2lvbi10b2tlbg"}
    covered = signed(agent_token(), headers=headers)
    assert "authorization" in (covered.headers.get("signature-input") or "")
    verifier().verify(covered, now=NOW)
    uncovered = signed(
        agent_token(), headers=headers, covered=("@method", "@authority", "@path", "signature-key")
    )
    fails(uncovered, "invalid_input")


def test_additional_required_components() -> None:
    v = verifier(required_components=("@method", "@authority", "@path", "signature-key", "@query"))
    fails(signed(agent_token()), "invalid_input", v=v)
    ok = signed(
        agent_token(), covered=("@method", "@authority", "@path", "signature-key", "@query")
    )
    v.verify(ok, now=NOW)


# --- the verifier's fast path agrees with the generic path ---------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def _outcome(fn: Any) -> Any:
    try:
        return fn()
    except AAuthError as exc:
        return (type(exc), exc.code)


def test_the_fast_path_is_taken_for_the_common_request() -> None:
    v = verifier()
    request = signed(agent_token())
    fast = v._verify_fast(request, NOW)
    assert fast is not None
    assert fast == v._verify_generic(request, NOW, None)
    # Shapes outside the fast path go to the generic path.
    assert (
        v._verify_fast(
            signed(
                agent_token(), covered=("@method", "@authority", "@path", "signature-key", "@query")
            ),
            NOW,
        )
        is None
    )
    assert (
        v._verify_fast(signed(agent_token(), headers={"Authorization": "AAuth abc"}), NOW) is None
    )


_BASE_REQUESTS = [
    signed(agent_token()),
    signed(person_token(), label="agent-sig"),
    signed(auth_token(), method="POST", body=b"{}", headers={"Content-Type": "application/json"}),
    signed(agent_token(key=OTHER)),
    signed(agent_token(exp=NOW)),
]
_FIELDS = ["Signature-Input", "Signature", "Signature-Key", "Authorization", "X-Other"]


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(_BASE_REQUESTS),
    st.dictionaries(
        st.sampled_from(_FIELDS),
        st.one_of(
            st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=120),
            st.sampled_from(
                [
                    'sig=("@method" "@authority" "@path" "signature-key");created=1800000000',
                    'sig=("@method" "@authority" "@path" "signature-key");created=1799999000',
                    'sig=("@method" "@authority" "@path" "signature-key");created=01800000000',
                    "sig=:" + "A" * 86 + "==:",
                    'sig=jwt;jwt="a.b.c"',
                ]
            ),
        ),
        max_size=2,
    ),
    st.sampled_from(["https://resource.example/calendar?x=1", "https://resource.example/other"]),
    st.sampled_from([NOW, NOW + 30, NOW + 61, NOW - 61]),
    st.booleans(),
)
def test_fast_and_generic_paths_agree(
    base: HttpRequest, changes: dict[str, str], url: str, now: int, body_rule: bool
) -> None:
    request = HttpRequest(
        method=base.method, url=url, headers=base.headers.with_fields(changes), body=base.body
    )
    v = verifier(require_body_coverage=body_rule)
    fast = _outcome(lambda: v._verify_fast(request, now))
    if fast is None:
        return  # the generic path decides alone
    generic = _outcome(lambda: v._verify_generic(request, now, None))
    assert fast == generic


def test_the_token_cache_is_safe_under_threads() -> None:
    import threading

    cache = VerifiedTokenCache(max_entries=8)
    v = verifier(cache=cache)
    requests = [signed(agent_token(jti=f"t-{i}")) for i in range(24)]
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(20):
                for request in requests:
                    assert v.verify(request, now=NOW).agent is not None
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(cache) <= 8


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(_BASE_REQUESTS),
    st.dictionaries(
        st.sampled_from([*_FIELDS, "Content-Digest", "Content-Type"]),
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=200),
        max_size=3,
    ),
    st.binary(max_size=8),
    st.sampled_from([NOW, NOW + 61, NOW - 61]),
)
def test_any_request_is_verified_or_refused_with_an_aauth_error(
    base: HttpRequest, changes: dict[str, str], body: bytes, now: int
) -> None:
    request = HttpRequest(
        method=base.method, url=base.url, headers=base.headers.with_fields(changes), body=body
    )
    for v in (verifier(), verifier(require_body_coverage=True, cache=VerifiedTokenCache())):
        try:
            v.verify(request, now=now)
        except AAuthError as exc:
            status = exc.status
            assert 400 <= status < 600, exc  # noqa: PT017 - every refusal has an HTTP status


class _BadDocument:
    """A resolver keeping the KeyResolver contract: the issuer's document is bad."""

    def __init__(self, code: str) -> None:
        self.code = code

    def resolve(self, issuer: str, dwk: str, kid: str | None) -> Any:
        from aauth_core.errors import MetadataError

        raise MetadataError(f"{issuer} sent a bad document", code=self.code)


@pytest.mark.parametrize(
    ("raised", "answered"),
    [
        ("issuer_mismatch", "issuer_mismatch"),
        ("issuer_missing", "issuer_missing"),
        ("invalid_metadata", "invalid_jwt"),
    ],
)
def test_a_resolvers_metadata_error_is_a_401_signature_error(raised: str, answered: str) -> None:
    error = fails(
        signed(agent_token()), answered, v=RequestVerifier(keys=_BadDocument(raised), audience=RS)
    )
    assert isinstance(error, SignatureFailure)
    assert error.status == 401
    assert signature_error_headers(error)["Signature-Error"] == f"error={answered}"
