"""Key material between PKCS#11 attributes, JOSE algorithms and ``cryptography`` keys.

Pure functions (no PKCS#11 calls): which key type, curve and mechanism an algorithm
needs, the public JWK from ``CKA_EC_POINT`` / modulus and exponent, and the attributes
that import a software key.
"""

from __future__ import annotations

import hashlib

from attrs import frozen
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from aauth_backends.errors import UnsupportedKeyType
from aauth_backends.pkcs11 import _lib
from aauth_core.algorithms import Alg
from aauth_core.b64 import b64url_encode
from aauth_core.errors import AAuthError
from aauth_core.jwk import PublicJwk

__all__ = [
    "AlgProfile",
    "ALG_PROFILES",
    "OID_P256",
    "OID_P384",
    "OID_ED25519",
    "curve_alg",
    "alg_for_key",
    "public_jwk_from_attributes",
    "unwrap_ec_point",
    "import_material",
]

OID_P256 = bytes.fromhex("06082a8648ce3d030107")
OID_P384 = bytes.fromhex("06052b81040022")
OID_ED25519 = bytes.fromhex("06032b6570")
_PRINTABLE_ED25519 = b"\x13\x0cedwards25519"


@frozen(kw_only=True)
class AlgProfile:
    """What signing with ``alg`` takes on a token."""

    alg: Alg
    key_type: int
    mechanism: int
    ec_params: bytes | None
    coordinate_size: int
    prehash: str | None  # hash computed in software before CKM_ECDSA


ALG_PROFILES: dict[Alg, AlgProfile] = {
    Alg.ED25519: AlgProfile(
        alg=Alg.ED25519,
        key_type=_lib.CKK_EC_EDWARDS,
        mechanism=_lib.MECH["EDDSA"],
        ec_params=OID_ED25519,
        coordinate_size=32,
        prehash=None,
    ),
    Alg.ES256: AlgProfile(
        alg=Alg.ES256,
        key_type=_lib.CKK_EC,
        mechanism=_lib.MECH["ECDSA"],
        ec_params=OID_P256,
        coordinate_size=32,
        prehash="sha256",
    ),
    Alg.ES384: AlgProfile(
        alg=Alg.ES384,
        key_type=_lib.CKK_EC,
        mechanism=_lib.MECH["ECDSA"],
        ec_params=OID_P384,
        coordinate_size=48,
        prehash="sha384",
    ),
    Alg.PS256: AlgProfile(
        alg=Alg.PS256,
        key_type=_lib.CKK_RSA,
        mechanism=_lib.MECH["SHA256_RSA_PKCS_PSS"],
        ec_params=None,
        coordinate_size=0,
        prehash=None,
    ),
    Alg.RS256: AlgProfile(
        alg=Alg.RS256,
        key_type=_lib.CKK_RSA,
        mechanism=_lib.MECH["SHA256_RSA_PKCS"],
        ec_params=None,
        coordinate_size=0,
        prehash=None,
    ),
}


def curve_alg(key_type: int, ec_params: bytes | None) -> Alg | None:
    """The algorithm an EC / EdDSA key's curve implies (None: not supported)."""
    if key_type == _lib.CKK_EC_EDWARDS and ec_params in (OID_ED25519, _PRINTABLE_ED25519):
        return Alg.ED25519
    if key_type == _lib.CKK_EC:
        return {OID_P256: Alg.ES256, OID_P384: Alg.ES384}.get(ec_params or b"")
    return None


def alg_for_key(
    *,
    key_type: int,
    ec_params: bytes | None,
    allowed_mechanisms: list[int] | None,
    wanted: Alg | None,
    what: str,
) -> Alg:
    """The one algorithm this key signs with; ``UnsupportedKeyType`` on any mismatch.

    EC and Ed25519 keys name their curve; an RSA key names its algorithm through
    ``CKA_ALLOWED_MECHANISMS`` (set when this backend creates it) or the caller's
    ``wanted``. A ``wanted`` algorithm that the key does not fit is refused.
    """
    if key_type == _lib.CKK_RSA:
        candidates = [Alg.PS256, Alg.RS256]
    else:
        implied = curve_alg(key_type, ec_params)
        if implied is None:
            raise UnsupportedKeyType(f"{what}: key type or curve is not supported")
        candidates = [implied]
    if allowed_mechanisms:
        candidates = [a for a in candidates if ALG_PROFILES[a].mechanism in allowed_mechanisms]
        if not candidates:
            raise UnsupportedKeyType(f"{what}: the key's allowed mechanisms fit no algorithm")
    if wanted is not None:
        if wanted not in candidates:
            raise UnsupportedKeyType(f"{what}: this key cannot sign {wanted.value}")
        return wanted
    if len(candidates) != 1:
        raise UnsupportedKeyType(
            f"{what}: an RSA key needs an algorithm (x-alg=PS256 or x-alg=RS256 in the reference)"
        )
    return candidates[0]


def unwrap_ec_point(point: bytes, size: int, *, edwards: bool) -> bytes:
    """``CKA_EC_POINT`` without its DER OCTET STRING wrapper (tokens differ: accept both)."""
    raw_len = size if edwards else 2 * size + 1
    if len(point) == raw_len and (edwards or point[0] == 0x04):
        return point
    if len(point) == raw_len + 2 and point[0] == 0x04 and point[1] == raw_len:
        return point[2:]
    if len(point) == raw_len + 3 and point[:2] == b"\x04\x81" and point[2] == raw_len:
        return point[3:]
    raise UnsupportedKeyType("CKA_EC_POINT has an unexpected encoding")


def _int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")


def public_jwk_from_attributes(
    alg: Alg,
    *,
    ec_point: bytes | None = None,
    modulus: bytes | None = None,
    public_exponent: bytes | None = None,
) -> PublicJwk:
    """The public JWK (with ``alg``) from the token's public attributes."""
    profile = ALG_PROFILES[alg]
    members: dict[str, str] = {"kty": alg.kty, "alg": alg.value}
    if alg.kty == "RSA":
        if not modulus or not public_exponent:
            raise UnsupportedKeyType("the RSA key has no readable modulus / exponent")
        n = int.from_bytes(modulus, "big")
        e = int.from_bytes(public_exponent, "big")
        members |= {"n": b64url_encode(_int_bytes(n)), "e": b64url_encode(_int_bytes(e))}
    else:
        if ec_point is None:
            raise UnsupportedKeyType("the token holds no public key (CKA_EC_POINT) for it")
        size = profile.coordinate_size
        raw = unwrap_ec_point(ec_point, size, edwards=alg is Alg.ED25519)
        if alg is Alg.ED25519:
            members |= {"crv": "Ed25519", "x": b64url_encode(raw)}
        else:
            members |= {
                "crv": alg.crv or "",
                "x": b64url_encode(raw[1 : 1 + size]),
                "y": b64url_encode(raw[1 + size :]),
            }
    try:
        return PublicJwk.from_dict(members)
    except AAuthError as exc:
        raise UnsupportedKeyType(f"the token's public key is not acceptable: {exc.detail}") from exc


def _octet_string(raw: bytes) -> bytes:
    if len(raw) < 0x80:
        return b"\x04" + bytes([len(raw)]) + raw
    return b"\x04\x81" + bytes([len(raw)]) + raw


def import_material(
    key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, alg: Alg
) -> tuple[dict[str, bytes], dict[str, bytes], bytes]:
    """(private attributes, public attributes, thumbprint digest) to import ``key``."""
    profile = ALG_PROFILES[alg]
    private: dict[str, bytes]
    public: dict[str, bytes]
    if isinstance(key, ed25519.Ed25519PrivateKey):
        seed = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        private = {"ec_params": OID_ED25519, "value": seed}
        public = {"ec_params": OID_ED25519, "ec_point": _octet_string(raw)}
        jwk = public_jwk_from_attributes(alg, ec_point=raw)
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        size = profile.coordinate_size
        numbers = key.private_numbers()
        point = (
            b"\x04"
            + numbers.public_numbers.x.to_bytes(size, "big")
            + numbers.public_numbers.y.to_bytes(size, "big")
        )
        params = profile.ec_params or b""
        private = {"ec_params": params, "value": numbers.private_value.to_bytes(size, "big")}
        public = {"ec_params": params, "ec_point": _octet_string(point)}
        jwk = public_jwk_from_attributes(alg, ec_point=point)
    else:
        rsa_numbers = key.private_numbers()
        pub = rsa_numbers.public_numbers
        private = {
            "modulus": _int_bytes(pub.n),
            "public_exponent": _int_bytes(pub.e),
            "private_exponent": _int_bytes(rsa_numbers.d),
            "prime_1": _int_bytes(rsa_numbers.p),
            "prime_2": _int_bytes(rsa_numbers.q),
            "exponent_1": _int_bytes(rsa_numbers.dmp1),
            "exponent_2": _int_bytes(rsa_numbers.dmq1),
            "coefficient": _int_bytes(rsa_numbers.iqmp),
        }
        public = {"modulus": _int_bytes(pub.n), "public_exponent": _int_bytes(pub.e)}
        jwk = public_jwk_from_attributes(
            alg, modulus=private["modulus"], public_exponent=private["public_exponent"]
        )
    digest = hashlib.sha256(jwk.thumbprint().encode("ascii")).digest()
    return private, public, digest
