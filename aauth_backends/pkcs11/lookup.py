"""Opening a key: from a reference to a :class:`Pkcs11Signer` (for ``get_signer``).

The private key is found by CKA_ID (or label) in an admin session of the store's pool,
its attributes say whether and how it may sign, the public key (or the RSA modulus)
gives the public JWK, and the token must offer the algorithm's mechanism.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog

from aauth_backends.errors import MechanismUnsupported, UnsupportedKeyType
from aauth_backends.interfaces import KeyRef
from aauth_backends.pkcs11 import _lib
from aauth_backends.pkcs11.keys import ALG_PROFILES, alg_for_key, public_jwk_from_attributes
from aauth_backends.pkcs11.refs import make_ref, parse_ref
from aauth_backends.pkcs11.signer import Pkcs11KeyDetails, Pkcs11Signer
from aauth_backends.software import as_alg
from aauth_core.algorithms import Alg
from aauth_core.jwk import PublicJwk

if TYPE_CHECKING:
    from aauth_backends.pkcs11.store import Pkcs11KeyStore

__all__ = ["open_signer"]

# The store's events keep the store's logger name.
log = structlog.get_logger("aauth_backends.pkcs11.store")

_PRIVATE_KEY_ATTRIBUTES = (
    "id",
    "label",
    "key_type",
    "sign",
    "ec_params",
    "modulus",
    "public_exponent",
    "always_authenticate",
    "allowed_mechanisms",
)


def open_signer(store: Pkcs11KeyStore, ref: KeyRef, alg: Alg | str | None) -> Pkcs11Signer:
    """The signer for the private key ``ref`` names on ``store``'s token."""
    key_id, label, ref_alg = parse_ref(
        ref,
        token_label=store._label,
        token_serial=store._serial,
        token_name=store._token_name,
        module_path=store._module_path,
    )
    wanted = None if alg is None else as_alg(alg, ref=ref)
    if wanted is not None and ref_alg is not None and wanted is not ref_alg:
        raise UnsupportedKeyType(
            f"the reference says {ref_alg.value}, the caller {wanted.value}", ref=ref
        )
    wanted = wanted or ref_alg
    display = make_ref(store._label, key_id, label, None) if key_id or label else str(ref)
    probe = Pkcs11KeyDetails(
        ref=display,
        token_label=store._label,
        token_serial=store._serial,
        label=label,
        cka_id=key_id or b"",
        key_type=0,
        alg=wanted or Alg.ES256,
        mechanism=0,
        always_authenticate=False,
        loading=store._module.loading,
        module_path=store._module_path,
    )

    def describe(session: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        with store._module.lock:
            private = _lib.find_private_key(session, key_id=key_id, label=label, key_type=None)
            attrs = _lib.key_attributes(private, _PRIVATE_KEY_ATTRIBUTES)
            public: dict[str, Any] = {}
            if attrs.get("key_type") != _lib.CKK_RSA:
                pub = _lib.find_public_key(
                    session, key_id=attrs.get("id", b""), key_type=attrs["key_type"]
                )
                if pub is not None:
                    public = _lib.key_attributes(pub, ("ec_point",))
        return attrs, public

    with store._pool.admin_session() as session:
        attrs, public = store._guard("open key", probe, lambda: describe(session))
    return _signer_from(store, attrs, public, wanted, display)


def _signer_from(
    store: Pkcs11KeyStore,
    attrs: dict[str, Any],
    public: dict[str, Any],
    wanted: Alg | None,
    ref: str,
) -> Pkcs11Signer:
    label = attrs.get("label") or None
    cka_id = bytes(attrs.get("id") or b"")
    where = f"key {label or cka_id.hex()!r} on token {store._token_name}"
    if not attrs.get("sign", False):
        raise UnsupportedKeyType(f"{where} may not sign (CKA_SIGN is false)", ref=ref)
    key_type = int(attrs["key_type"])
    alg = alg_for_key(
        key_type=key_type,
        ec_params=attrs.get("ec_params"),
        allowed_mechanisms=attrs.get("allowed_mechanisms"),
        wanted=wanted,
        what=where,
    )
    profile = ALG_PROFILES[alg]
    mechanisms = store._token_mechanisms()
    if profile.mechanism not in mechanisms:
        raise MechanismUnsupported(
            f"token {store._token_name} does not offer the mechanism {alg.value} needs",
            ref=ref,
        )
    jwk: PublicJwk = public_jwk_from_attributes(
        alg,
        ec_point=public.get("ec_point"),
        modulus=attrs.get("modulus"),
        public_exponent=attrs.get("public_exponent"),
    )
    details = Pkcs11KeyDetails(
        ref=make_ref(store._label, cka_id, label, alg) if cka_id or label else ref,
        token_label=store._label,
        token_serial=store._serial,
        label=label,
        cka_id=cka_id,
        key_type=key_type,
        alg=alg,
        mechanism=profile.mechanism,
        always_authenticate=bool(attrs.get("always_authenticate", False)),
        loading=store._module.loading,
        module_path=store._module_path,
    )
    signer = Pkcs11Signer(store=store, details=details, public=jwk)
    log.info(
        "aauth.pkcs11.open",
        token=store._label,
        key=details.describe(),
        key_id=signer.key_id,
        alg=alg.value,
        loading=store._module.loading,
        always_authenticate=details.always_authenticate,
    )
    return signer
