"""PKCS#11 faults on real SoftHSM2 tokens: PIN errors are never retried, stale sessions,
logins and handles are recovered once, removed tokens, missing and ambiguous keys,
algorithm / mechanism mismatches, the borrow timeout, and no PIN anywhere."""

from __future__ import annotations

import pickle
import time
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
from softhsm import SOFTHSM_MODULE, SoftHsm, Token, fresh_label
from structlog.testing import capture_logs

from aauth_backends.errors import (
    BackendError,
    KeyAmbiguous,
    KeyNotFound,
    MechanismUnsupported,
    UnsupportedKeyType,
)
from aauth_backends.testing import independent_verifier
from aauth_core.algorithms import Alg

PIN = "735911"
WRONG_PIN = "864209"
PIN_LOCKED = 0x00040000
PIN_COUNT_LOW = 0x00010000


@pytest.fixture(scope="module")
def hsm() -> SoftHsm:
    return SoftHsm.shared()


@pytest.fixture
def token(hsm: SoftHsm) -> Token:
    return hsm.token("fault", pin=PIN)


def _open(token: Token, **settings: Any) -> Any:
    from aauth_backends.pkcs11 import Pkcs11Config, Pkcs11KeyStore

    settings.setdefault("pin", token.pin)
    settings.setdefault("loading", "direct-locked")
    return Pkcs11KeyStore(
        Pkcs11Config(module_path=SOFTHSM_MODULE, token_label=token.label, **settings)
    )


@pytest.fixture
def store(token: Token) -> Iterator[Any]:
    with _open(token, pool_size=1) as opened:
        yield opened


def _no_pin(*texts: object) -> None:
    for text in texts:
        assert PIN not in str(text) and WRONG_PIN not in str(text), text


def test_wrong_pin_fails_once_and_is_never_retried(hsm: SoftHsm, token: Token) -> None:
    from aauth_backends.pkcs11 import WrongPin

    assert not hsm.token_flags(token) & PIN_COUNT_LOW
    with capture_logs() as events, pytest.raises(WrongPin) as info:
        _open(token, pin=WRONG_PIN)
    assert token.label in str(info.value)
    attempts = [e for e in events if e["event"] == "aauth.pkcs11.login"]
    assert [e["ok"] for e in attempts] == [False]  # exactly one C_Login, no retry
    assert hsm.token_flags(token) & PIN_COUNT_LOW  # the token counted one failure
    _no_pin(info.value, repr(info.value), info.value.__cause__, events)
    # The right PIN still works: the failed attempt left nothing half-open behind.
    with _open(token) as opened:
        opened.generate(Alg.ES256, fresh_label())


def test_a_locked_pin_is_reported_without_trying_to_log_in(hsm: SoftHsm, token: Token) -> None:
    from aauth_backends.pkcs11 import PinLocked

    hsm.set_token_flags(token, hsm.token_flags(token) | PIN_LOCKED)
    with capture_logs() as events, pytest.raises(PinLocked, match=token.label) as info:
        _open(token)
    assert not [e for e in events if e["event"] == "aauth.pkcs11.login"]
    _no_pin(info.value, repr(info.value), events)


def test_missing_pin_is_reported(token: Token, monkeypatch: pytest.MonkeyPatch) -> None:
    from aauth_backends.pkcs11 import PinUnavailable

    monkeypatch.delenv("AAUTH_PKCS11_PIN", raising=False)
    with pytest.raises(PinUnavailable):
        _open(token, pin=None)
    with pytest.raises(PinUnavailable):
        _open(token, pin=None, pin_source="file:/nonexistent/pin")


def test_finalised_module_is_token_removed(token: Token) -> None:
    from aauth_backends.pkcs11 import TokenRemoved

    with _open(token) as store:
        signer = store.get_signer(store.generate(Alg.ES256, fresh_label()))
        signer.sign(b"before")
        store.pool.module.lib.finalize()  # C_Finalize under the backend
        with capture_logs() as events, pytest.raises(TokenRemoved) as info:
            signer.sign(b"after")
    message = str(info.value)
    assert token.label in message and signer.details.label in message
    failed = [e for e in events if e["event"] == "aauth.pkcs11.sign_failed"]
    assert failed and failed[0]["token"] == token.label and failed[0]["alg"] == "ES256"


def test_an_invalidated_session_is_replaced_once(store: Any) -> None:
    from aauth_backends.pkcs11 import _lib

    signer = store.get_signer(store.generate(Alg.ES256, fresh_label()))
    signer.sign(b"warm the key cache")
    with store.pool.session() as pooled:
        _lib.close_session(pooled.session)  # C_CloseSession behind the backend's back
    with capture_logs() as events:
        signature = signer.sign(b"after")
    assert independent_verifier(signer.public_jwk())(b"after", signature)
    recovered = [e for e in events if e["event"] == "aauth.pkcs11.recovered"]
    assert [e["fault"] for e in recovered] == ["SessionHandleInvalid"]


def test_a_logout_behind_the_backend_is_followed_by_one_login(store: Any) -> None:
    from aauth_backends.pkcs11 import _lib

    signer = store.get_signer(store.generate(Alg.ED25519, fresh_label()))
    signer.sign(b"warm")
    _lib.logout(store.pool.module.lib, store.pool.holder)  # C_Logout via the holder
    with capture_logs() as events:
        signature = signer.sign(b"after logout")
    assert independent_verifier(signer.public_jwk())(b"after logout", signature)
    assert [e["event"] for e in events if e["event"].startswith("aauth.pkcs11.")] == [
        "aauth.pkcs11.login",
        "aauth.pkcs11.recovered",
    ]


def test_missing_and_ambiguous_keys(store: Any, token: Token) -> None:
    from aauth_backends.pkcs11 import _lib

    with pytest.raises(KeyNotFound, match=token.label):
        store.get_signer("no-such-key")
    label = fresh_label()
    with store.pool.admin_session() as session:
        for key_id in (b"\x01", b"\x02"):  # two keys, one label
            _lib.generate_keypair(
                session,
                key_type=_lib.CKK_EC,
                ec_params=bytes.fromhex("06082a8648ce3d030107"),
                rsa_bits=2048,
                key_id=key_id,
                label=label,
                allowed=[_lib.MECH["ECDSA"]],
            )
    with pytest.raises(KeyAmbiguous, match=label):
        store.get_signer(label)
    # The id tells them apart.
    assert store.get_signer(f"pkcs11:object={label};id=%02").details.cka_id == b"\x02"


def test_key_type_and_algorithm_must_agree(store: Any) -> None:
    ec_ref = store.generate(Alg.ES256, fresh_label())
    with pytest.raises(UnsupportedKeyType, match="cannot sign Ed25519"):
        store.get_signer(ec_ref, alg=Alg.ED25519)
    with pytest.raises(UnsupportedKeyType):
        store.get_signer(ec_ref, alg=Alg.ES384)
    rsa_ref = store.generate(Alg.PS256, fresh_label())
    # The token records PS256 (CKA_ALLOWED_MECHANISMS): RS256 is refused.
    with pytest.raises(UnsupportedKeyType, match="cannot sign RS256"):
        store.get_signer(rsa_ref.replace("x-alg=PS256", "x-alg=RS256"))


def test_a_mechanism_the_token_refuses_names_token_and_key(store: Any, token: Token) -> None:
    from aauth_backends.pkcs11 import _lib

    signer = store.get_signer(store.generate(Alg.ES256, fresh_label()))
    # The key's CKA_ALLOWED_MECHANISMS is CKM_ECDSA only; ask the token for RSA-PSS.
    wrong = attrs.evolve(signer.details, mechanism=_lib.MECH["SHA256_RSA_PKCS_PSS"])
    with pytest.raises(MechanismUnsupported, match="MechanismInvalid") as info:
        store._sign(wrong, b"\x00" * 32)
    assert token.label in str(info.value) and signer.details.label in str(info.value)
    assert independent_verifier(signer.public_jwk())(b"still fine", signer.sign(b"still fine"))


def test_borrow_timeout(token: Token) -> None:
    from aauth_backends.pkcs11 import BorrowTimeout

    with _open(token, pool_size=1, borrow_timeout=0.2) as store:
        signer = store.get_signer(store.generate(Alg.ES256, fresh_label()))
        with store.pool.session():  # the only session is busy
            started = time.monotonic()
            with pytest.raises(BorrowTimeout, match=token.label):
                signer.sign(b"x")
            assert time.monotonic() - started >= 0.19
        signer.sign(b"free again")


def test_no_pin_in_any_message_repr_or_event(hsm: SoftHsm, token: Token) -> None:
    from aauth_backends.pkcs11 import Pkcs11Config, WrongPin

    with capture_logs() as events:
        config = Pkcs11Config(module_path=SOFTHSM_MODULE, token_label=token.label, pin=PIN)
        with _open(token) as store:
            signer = store.get_signer(store.generate(Alg.ES256, fresh_label()))
            signer.sign(b"x")
            texts: list[object] = [config, store, signer, signer.details, store.pool]
            for bad in ("missing", f"pkcs11:token={token.label};object=x?pin-value={PIN}"):
                with pytest.raises(BackendError) as info:
                    store.get_signer(bad)
                texts += [str(info.value), repr(info.value)]
        with pytest.raises(WrongPin) as wrong:
            _open(token, pin=WRONG_PIN)
        texts += [str(wrong.value), repr(wrong.value), repr(wrong.value.__cause__)]
    texts += [repr(config), str(config)]
    _no_pin(*texts, *events)
    with pytest.raises(TypeError):
        pickle.dumps(signer)
