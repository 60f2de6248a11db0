"""Server-signed requests (``jwks_uri`` scheme): the one verifier PS, AS, resources and
revocation endpoints share."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from signing_helpers import generated_ed25519

from aauth_core.errors import AAuthError, SignatureFailure
from aauth_core.http import HttpRequest
from aauth_core.httpsig.sign import sign_request
from aauth_core.server_requests import verify_server_request
from aauth_core.signature_key import serialize_jwks_uri_scheme, serialize_jwt_scheme
from aauth_core.tokens import DWK_PERSON, StaticKeyResolver

NOW = 1_800_000_000
PS = "https://ps.example"
SIGNER = generated_ed25519()
KEYS = StaticKeyResolver({(PS, DWK_PERSON): (SIGNER.public_jwk(),)})
BODY = b'{"jti":"abc","exp":1800000600}'
COVERED = ("@method", "@authority", "@path", "signature-key", "content-digest", "content-type")


def signed(
    *,
    signature_key: str | None = None,
    covered: tuple[str, ...] = COVERED,
    body: bytes = BODY,
    created: int = NOW,
) -> HttpRequest:
    key = signature_key or serialize_jwks_uri_scheme(
        "sig", id=PS, dwk=DWK_PERSON, kid=SIGNER.key_id
    )
    request = HttpRequest(
        method="POST",
        url="https://as.example/revoke",
        headers={"Content-Type": "application/json"},
        body=body,
    )
    added = sign_request(
        request, SIGNER, covered=covered, created=created, extra_headers={"Signature-Key": key}
    )
    return HttpRequest(
        method="POST",
        url=request.url,
        headers=request.headers.with_fields({"Signature-Key": key, **added}),
        body=body,
    )


def test_a_server_signature_verifies_and_names_its_issuer() -> None:
    verified = verify_server_request(signed(), keys=KEYS, dwks=(DWK_PERSON,), now=NOW)
    assert verified.issuer == PS and verified.dwk == DWK_PERSON
    assert verified.key == SIGNER.public_jwk()


def test_an_agent_jwt_scheme_is_unsupported_scheme() -> None:
    with pytest.raises(SignatureFailure) as info:
        verify_server_request(
            signed(signature_key=serialize_jwt_scheme("sig", "a.b.c")),
            keys=KEYS,
            dwks=(DWK_PERSON,),
            now=NOW,
        )
    assert info.value.code == "unsupported_scheme" and info.value.status == 401


def test_a_dwk_not_accepted_here_is_refused() -> None:
    with pytest.raises(SignatureFailure, match="dwk"):
        verify_server_request(signed(), keys=KEYS, dwks=("aauth-access.json",), now=NOW)


def test_a_non_canonical_or_non_server_id_is_refused() -> None:
    for id_ in ("https://PS.example", "http://ps.example", "https://ps.example/path/"):
        key = serialize_jwks_uri_scheme("sig", id=id_, dwk=DWK_PERSON, kid=SIGNER.key_id)
        with pytest.raises(SignatureFailure):
            verify_server_request(signed(signature_key=key), keys=KEYS, dwks=(DWK_PERSON,), now=NOW)


def test_the_body_must_be_covered() -> None:
    with pytest.raises(SignatureFailure) as info:
        verify_server_request(signed(covered=COVERED[:4]), keys=KEYS, dwks=(DWK_PERSON,), now=NOW)
    assert info.value.code == "invalid_input"


def test_an_unknown_key_and_a_stale_signature_are_refused() -> None:
    other = StaticKeyResolver({(PS, DWK_PERSON): (generated_ed25519().public_jwk(),)})
    with pytest.raises(SignatureFailure):
        verify_server_request(signed(), keys=other, dwks=(DWK_PERSON,), now=NOW)
    with pytest.raises(SignatureFailure):
        verify_server_request(signed(created=NOW - 3600), keys=KEYS, dwks=(DWK_PERSON,), now=NOW)


@given(name=st.sampled_from(["Signature-Key", "Signature-Input", "Signature"]), value=st.text())
def test_any_header_value_gives_a_value_or_an_aauth_error(name: str, value: str) -> None:
    request = signed()
    try:
        mutated = HttpRequest(
            method="POST",
            url=request.url,
            headers=request.headers.with_fields({name: value}),
            body=request.body,
        )
    except AAuthError:
        return
    with contextlib.suppress(AAuthError):  # any other exception fails the test
        verify_server_request(mutated, keys=KEYS, dwks=(DWK_PERSON,), now=NOW)


def test_sign_server_request_round_trips_and_covers_the_body() -> None:
    from aauth_core.server_requests import sign_server_request

    request = HttpRequest(
        method="POST",
        url="https://as.example/token",
        headers={"Content-Type": "application/json"},
        body=BODY,
    )
    fields = sign_server_request(request, SIGNER, issuer=PS, dwk=DWK_PERSON, created=NOW)
    assert fields["Signature-Key"] == (
        f'sig=jwks_uri;id="{PS}";dwk="{DWK_PERSON}";kid="{SIGNER.key_id}"'
    )
    assert '"content-digest" "content-type"' in fields["Signature-Input"]
    signed_request = HttpRequest(
        method="POST", url=request.url, headers=request.headers.with_fields(fields), body=BODY
    )
    verified = verify_server_request(signed_request, keys=KEYS, dwks=(DWK_PERSON,), now=NOW)
    assert verified.issuer == PS
    get = HttpRequest(method="GET", url="https://as.example/pending/1")
    fields = sign_server_request(get, SIGNER, issuer=PS, dwk=DWK_PERSON, created=NOW)
    assert "content-digest" not in fields["Signature-Input"]
