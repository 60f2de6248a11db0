"""Putting keys on a token and listing them (``generate``, ``import_private_key``, ``list_keys``).

Every key this backend makes is a token object, sensitive, never extractable, may only
sign, and only with its algorithm's mechanism (CKA_ALLOWED_MECHANISMS). A label or
CKA_ID that is already taken is refused with :class:`KeyExists`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import structlog

from aauth_backends.errors import BackendError, KeyExists
from aauth_backends.interfaces import KeyInfo, KeyRef
from aauth_backends.pkcs11 import _lib
from aauth_backends.pkcs11.keys import ALG_PROFILES, import_material
from aauth_backends.pkcs11.refs import make_ref
from aauth_backends.pkcs11.signer import Pkcs11KeyDetails
from aauth_backends.software import as_alg, resolve_alg
from aauth_backends.uris import check_key_name
from aauth_core.algorithms import Alg

if TYPE_CHECKING:
    from aauth_backends.pkcs11.store import Pkcs11KeyStore

__all__ = ["list_keys", "generate", "import_private_key"]

# The store's events keep the store's logger name.
log = structlog.get_logger("aauth_backends.pkcs11.store")


def list_keys(store: Pkcs11KeyStore) -> Sequence[KeyInfo]:
    """Every private key on ``store``'s token that it can sign with (others are logged)."""
    infos: list[KeyInfo] = []
    with store._pool.admin_session() as session:

        def scan() -> list[tuple[bytes, str | None]]:
            with store._module.lock:
                found = _lib.find_private_keys(session)
                return [
                    (bytes(a.get("id") or b""), a.get("label") or None)
                    for a in (_lib.key_attributes(k, ("id", "label")) for k in found)
                ]

        entries = store._guard("list keys", None, scan)
    for cka_id, label in sorted(entries, key=lambda e: (e[1] or "", e[0])):
        ref = make_ref(store._label, cka_id or None, None if cka_id else label, None)
        try:
            signer = store.get_signer(ref)
        except BackendError as exc:
            log.info("aauth.pkcs11.list_skip", token=store._label, key=label, reason=exc.detail)
            continue
        infos.append(
            KeyInfo(
                ref=signer.details.ref,
                name=label or cka_id.hex(),
                alg=signer.algorithm,
                key_id=signer.key_id,
                engine=store.engine,
            )
        )
    return infos


def generate(store: Pkcs11KeyStore, alg: Alg | str, name: str, extra: dict[str, bool]) -> KeyRef:
    """A new key pair on ``store``'s token (CKA_ID: 16 random bytes); its reference."""
    alg = as_alg(alg)
    name = check_key_name(name)
    profile = ALG_PROFILES[alg]
    unknown = set(extra) - {"always_authenticate"}
    if unknown:
        raise ValueError(f"unknown private key attributes {sorted(unknown)}")
    cka_id = os.urandom(16)
    ref = make_ref(store._label, cka_id, name, alg)
    details = _admin_details(store, ref, name, cka_id, alg)

    def create(session: Any) -> None:
        _check_free(store, session, name, None)
        with store._module.lock:
            _lib.generate_keypair(
                session,
                key_type=profile.key_type,
                ec_params=profile.ec_params,
                rsa_bits=store._config.rsa_bits,
                key_id=cka_id,
                label=name,
                allowed=[profile.mechanism],
                private_extra=extra,
            )

    with store._pool.admin_session() as session:
        store._guard("generate key", details, lambda: create(session))
    log.info("aauth.pkcs11.generate", token=store._label, key=name, id=cka_id.hex(), alg=alg.value)
    return ref


def import_private_key(
    store: Pkcs11KeyStore, private_key: Any, name: str, alg: Alg | str | None
) -> KeyRef:
    """``private_key`` created on ``store``'s token (CKA_ID from its thumbprint); its reference."""
    name = check_key_name(name)
    chosen = resolve_alg(private_key, alg)
    profile = ALG_PROFILES[chosen]
    private, public, digest = import_material(private_key, chosen)
    cka_id = digest[:16]
    ref = make_ref(store._label, cka_id, name, chosen)
    details = _admin_details(store, ref, name, cka_id, chosen)

    def create(session: Any) -> None:
        _check_free(store, session, name, cka_id)
        with store._module.lock:
            _lib.create_private_key(
                session,
                key_type=profile.key_type,
                material=private,
                key_id=cka_id,
                label=name,
                allowed=[profile.mechanism],
            )
            _lib.create_public_key(
                session, key_type=profile.key_type, material=public, key_id=cka_id, label=name
            )

    with store._pool.admin_session() as session:
        store._guard("import key", details, lambda: create(session))
    log.info("aauth.pkcs11.import", token=store._label, key=name, id=cka_id.hex(), alg=chosen.value)
    return ref


def _check_free(store: Pkcs11KeyStore, session: Any, name: str, cka_id: bytes | None) -> None:
    """Refuse a label (or CKA_ID) that a private key on the token already has."""
    with store._module.lock:
        taken = _lib.find_private_keys(session, label=name)
        if not taken and cka_id is not None:
            try:
                _lib.find_private_key(session, key_id=cka_id, label=None, key_type=None)
            except _lib.P11Failure as failure:
                if failure.fault is not _lib.Fault.NO_SUCH_KEY:
                    raise
            else:
                taken = [True]
    if taken:
        raise KeyExists(
            f"token {store._token_name} already holds a private key with this label or id",
            ref=make_ref(store._label, cka_id, name, None),
        )


def _admin_details(
    store: Pkcs11KeyStore, ref: str, name: str, cka_id: bytes, alg: Alg
) -> Pkcs11KeyDetails:
    """The details error messages name while a key is being generated or imported."""
    profile = ALG_PROFILES[alg]
    return Pkcs11KeyDetails(
        ref=ref,
        token_label=store._label,
        token_serial=store._serial,
        label=name,
        cka_id=cka_id,
        key_type=profile.key_type,
        alg=alg,
        mechanism=profile.mechanism,
        always_authenticate=False,
        loading=store._module.loading,
        module_path=store._module_path,
    )
