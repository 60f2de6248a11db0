"""PKCS#11 backend against real SoftHSM2 tokens: conformance for generated and imported
keys, RFC 9421 B.2.6 byte for byte through the token, AAuth tokens and requests signed on
the token and verified in software, references, listing and key hygiene."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import load_vector
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from softhsm import SOFTHSM_MODULE, SoftHsm, Token, fresh_label

from aauth_backends.errors import KeyExists, KeyNotFound, UnsupportedKeyType
from aauth_backends.interfaces import KeyStore, Signer
from aauth_backends.software import CryptographySigner
from aauth_backends.testing import check_signer, independent_verifier
from aauth_backends.uris import open_signer
from aauth_core.algorithms import Alg
from aauth_core.http import HttpRequest
from aauth_core.httpsig import sign_request
from aauth_core.identifiers import AgentId
from aauth_core.requests import RequestVerifier, sign_aauth_request
from aauth_core.tokens import (
    DWK_AGENT,
    AgentTokenClaims,
    Confirmation,
    StaticKeyResolver,
    TokenType,
    mint_token,
    verify_token,
)

RFC = load_vector("rfc/rfc9421_appendix_b.json")
NOW = 1_800_000_000


@pytest.fixture(scope="module")
def hsm() -> SoftHsm:
    return SoftHsm.shared()


@pytest.fixture(scope="module")
def token(hsm: SoftHsm) -> Token:
    return hsm.token("backend")


@pytest.fixture(scope="module")
def store(token: Token) -> Iterator[Any]:
    from aauth_backends.pkcs11 import Pkcs11Config, Pkcs11KeyStore

    config = Pkcs11Config(module_path=SOFTHSM_MODULE, token_label=token.label, pin=token.pin)
    with Pkcs11KeyStore(config) as opened:
        yield opened


def _software_key(alg: Alg) -> Any:
    if alg is Alg.ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    if alg is Alg.ES256:
        return ec.generate_private_key(ec.SECP256R1())
    if alg is Alg.ES384:
        return ec.generate_private_key(ec.SECP384R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_store_is_a_keystore_and_loads_through_the_proxy_by_default(store: Any) -> None:
    assert isinstance(store, KeyStore)
    # p11-kit-proxy is installed and SoftHSM2 is registered with p11-kit here.
    assert store.loading == "proxy"
    assert store.token_serial


@pytest.mark.parametrize("alg", list(Alg), ids=str)
def test_generated_keys_pass_the_conformance_suite(store: Any, alg: Alg) -> None:
    ref = store.generate(alg, fresh_label())
    signer = store.get_signer(ref)
    assert isinstance(signer, Signer)
    check_signer(signer)
    assert signer.details.alg is alg
    # A second open of the same reference is the same key.
    assert store.get_signer(ref).key_id == signer.key_id


@pytest.mark.parametrize("alg", list(Alg), ids=str)
def test_imported_keys_pass_and_match_the_software_key(store: Any, alg: Alg) -> None:
    key = _software_key(alg)
    software = CryptographySigner(key, alg=alg)
    ref = store.import_private_key(key, fresh_label(), alg=alg)
    signer = store.get_signer(ref)
    check_signer(signer)
    assert signer.public_jwk() == software.public_jwk()
    assert signer.key_id == software.key_id
    # The software key verifies what the token signed.
    assert independent_verifier(software.public_jwk())(b"m", signer.sign(b"m"))
    if alg is Alg.ED25519:
        assert signer.sign(b"deterministic") == software.sign(b"deterministic")


def test_importing_the_same_key_twice_or_reusing_a_label_is_refused(store: Any) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = fresh_label()
    store.import_private_key(key, name)
    with pytest.raises(KeyExists):
        store.import_private_key(key, fresh_label())
    with pytest.raises(KeyExists):
        store.generate(Alg.ES256, name)


def test_generated_private_keys_are_sensitive_non_extractable_token_objects(store: Any) -> None:
    from aauth_backends.pkcs11 import _lib

    ref = store.generate(Alg.ES256, fresh_label())
    details = store.get_signer(ref).details
    assert len(details.cka_id) == 16
    with store.pool.admin_session() as session:
        key = _lib.find_private_key(
            session, key_id=details.cka_id, label=None, key_type=details.key_type
        )
        attributes = _lib.key_attributes(
            key, ("sensitive", "extractable", "sign", "allowed_mechanisms")
        )
        private_value_readable = bool(_lib.key_attributes(key, ("modulus",)))
    assert attributes["sensitive"] is True
    assert attributes["extractable"] is False
    assert attributes["sign"] is True
    assert attributes["allowed_mechanisms"] == [details.mechanism]
    assert not private_value_readable


def test_rfc9421_b26_reproduced_byte_for_byte_on_the_token(store: Any) -> None:
    case = next(c for c in RFC["cases"] if c["id"] == "B.2.6")
    pem = RFC["keys"]["test-key-ed25519"]["private_pem"].encode()
    key = serialization.load_pem_private_key(pem, None)
    signer = store.get_signer(store.import_private_key(key, fresh_label()))
    assert signer.public_jwk().x == RFC["keys"]["test-key-ed25519"]["jwk"]["x"]
    head, _, body = RFC["messages"][case["message"]].partition("\n\n")
    start, *lines = head.split("\n")
    headers = [tuple(line.split(": ", 1)) for line in lines]
    method, target = start.split(" ")[:2]
    host = {k.lower(): v for k, v in headers}["host"]
    request = HttpRequest(
        method=method, url=f"https://{host}{target}", headers=headers, body=body.encode()
    )
    from aauth_core.httpsig import parse_signature_input

    covered = [c.name for c in parse_signature_input(case["signature_input"])["sig-b26"].covered]
    fields = sign_request(
        request,
        signer,
        covered=covered,
        created=1618884473,
        label="sig-b26",
        keyid="test-key-ed25519",
    )
    assert fields == {"Signature-Input": case["signature_input"], "Signature": case["signature"]}


@pytest.mark.parametrize("alg", [Alg.ED25519, Alg.ES256, Alg.PS256], ids=str)
def test_aauth_token_and_request_signed_on_the_token_verify_in_software(
    store: Any, alg: Alg
) -> None:
    issuer = store.get_signer(store.generate(alg, fresh_label()))
    agent = store.get_signer(store.generate(Alg.ES256, fresh_label()))
    ap, rs = "https://agent.example", "https://resource.example"
    claims = AgentTokenClaims(
        iss=ap,
        dwk=DWK_AGENT,
        jti="hsm-1",
        iat=NOW - 10,
        exp=NOW + 3600,
        sub=AgentId.parse("aauth:assistant@agent.example"),
        cnf=Confirmation(jwk=agent.public_jwk()),
        ps="https://ps.example",
    )
    token = mint_token(claims, issuer)
    keys = StaticKeyResolver({(ap, DWK_AGENT): (issuer.public_jwk(),)})
    verified = verify_token(token, expected=TokenType.AGENT, keys=keys, now=NOW)
    assert verified.kid == issuer.key_id

    url = f"{rs}/calendar?x=1"
    request = HttpRequest(method="GET", url=url, headers={}, body=b"")
    added = sign_aauth_request(request, agent, token=token, created=NOW)
    signed = HttpRequest(
        method="GET", url=url, headers=request.headers.with_fields(added), body=b""
    )
    result = RequestVerifier(keys=keys, audience=rs).verify(signed, now=NOW)
    assert result.key.same_key(agent.public_jwk())
    assert str(result.agent) == "aauth:assistant@agent.example"


def test_list_keys_describes_every_key(store: Any) -> None:
    name = fresh_label()
    ref = store.generate(Alg.RS256, name)
    listed = {info.name: info for info in store.list_keys()}
    info = listed[name]
    assert info.engine == "pkcs11"
    assert info.alg is Alg.RS256  # recorded on the token as CKA_ALLOWED_MECHANISMS
    assert info.key_id == store.get_signer(ref).key_id
    assert store.get_signer(info.ref).key_id == info.key_id


def test_keys_open_by_label_and_by_uri_with_serial(store: Any, token: Token) -> None:
    name = fresh_label()
    key_id = store.get_signer(store.generate(Alg.ES256, name)).key_id
    assert store.get_signer(name).key_id == key_id
    by_uri = f"pkcs11:token={token.label};serial={token.serial};object={name};type=private"
    assert store.get_signer(by_uri).key_id == key_id


def test_always_authenticate_keys_sign_with_a_context_login(store: Any) -> None:
    """SoftHSM2 accepts CKA_ALWAYS_AUTHENTICATE=True (like YubiKey slot 9c): each
    signature passes the PIN (C_Login(CKU_CONTEXT_SPECIFIC) inside the operation)."""
    ref = store.generate(Alg.ES256, fresh_label(), always_authenticate=True)
    signer = store.get_signer(ref)
    assert signer.details.always_authenticate is True
    check_signer(signer)


def test_open_signer_builds_a_store_from_the_uri(
    store: Any, token: Token, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = store.generate(Alg.ED25519, fresh_label())
    expected = store.get_signer(ref).key_id
    pin_file = tmp_path / "pin"
    pin_file.write_text(token.pin + "\n")
    monkeypatch.setenv("AAUTH_PKCS11_MODULE", SOFTHSM_MODULE)
    signer = open_signer(f"{ref}?pin-source=file:{pin_file}")
    try:
        assert signer.key_id == expected
        check_signer(signer)
    finally:
        signer.store.close()  # type: ignore[attr-defined]
    # ... and through a configured store, with no module or PIN in the reference.
    assert open_signer(ref, stores={"pkcs11": store}).key_id == expected


def test_a_missing_key_is_key_not_found(store: Any, token: Token) -> None:
    with pytest.raises(KeyNotFound, match=token.label):
        store.get_signer(f"pkcs11:token={token.label};id=%00%01%02;type=private")


def test_yubikey_profile_slots_pool_and_algorithms() -> None:
    from aauth_backends.pkcs11.profiles import (
        PIV_SLOTS,
        check_yubikey_alg,
        piv_key_ref,
        yubikey_algorithms,
        yubikey_config,
    )
    from aauth_backends.uris import parse_key_ref

    assert PIV_SLOTS == {"9a": 1, "9c": 2, "9d": 3, "9e": 4}
    ref = parse_key_ref(piv_key_ref("9c", serial=20007777))
    assert ref.token == "YubiKey PIV #20007777"  # type: ignore[union-attr]
    assert ref.id == b"\x02"  # type: ignore[union-attr]
    config = yubikey_config(serial=20007777, pin="123456")
    assert (config.pool_size, config.loading) == (1, "direct-locked")
    assert "123456" not in repr(config)
    assert Alg.ED25519 not in yubikey_algorithms((5, 4, 3), (2, 7, 2))
    assert Alg.ED25519 not in yubikey_algorithms((5, 7, 1), (2, 2, 0))
    assert Alg.ED25519 in yubikey_algorithms((5, 7, 1), (2, 6, 0))
    with pytest.raises(UnsupportedKeyType, match=r"firmware 5\.7\+"):
        check_yubikey_alg(Alg.ED25519, (5, 4, 3), (2, 2, 0))


def test_touch_policy_keys_refuse_the_event_loop_but_sign_in_a_thread(
    store: Any, token: Token
) -> None:
    import asyncio

    from aauth_backends.errors import BackendError
    from aauth_backends.interfaces import AsyncSignerAdapter
    from aauth_backends.pkcs11 import Pkcs11Config, Pkcs11KeyStore

    ref = store.generate(Alg.ES256, fresh_label())
    config = Pkcs11Config(
        module_path=SOFTHSM_MODULE, token_label=token.label, pin=token.pin, touch_policy=True
    )
    with Pkcs11KeyStore(config) as touchy:
        signer = touchy.get_signer(ref)

        async def main() -> bytes:
            with pytest.raises(BackendError, match="event loop"):
                signer.sign(b"x")
            return await AsyncSignerAdapter(signer).sign(b"x")

        signature = asyncio.run(main())
    assert independent_verifier(signer.public_jwk())(b"x", signature)


def test_a_key_without_cka_sign_is_refused(store: Any, token: Token) -> None:
    # A key made outside this backend, for decryption only (CKA_SIGN false).
    import pkcs11
    from pkcs11 import Attribute, KeyType
    from pkcs11.util.ec import encode_named_curve_parameters

    from aauth_backends.pkcs11 import P11KIT_PROXY

    assert store.loading == "proxy"
    session = pkcs11.lib(P11KIT_PROXY).get_token(token_label=token.label).open(rw=True)
    try:
        params = session.create_domain_parameters(
            KeyType.EC,
            {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
            local=True,
        )
        params.generate_keypair(
            store=True,
            label="no-sign",
            id=b"\x0b\x0b",
            private_template={Attribute.SIGN: False, Attribute.DERIVE: True},
        )
    finally:
        session.close()
    with pytest.raises(UnsupportedKeyType, match="CKA_SIGN"):
        store.get_signer(f"pkcs11:token={token.label};id=%0B%0B;type=private")
