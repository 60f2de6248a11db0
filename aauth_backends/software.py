"""Software keys signed through ``cryptography`` (OpenSSL): Ed25519, ES256, ES384, PS256, RS256.

:class:`CryptographySigner` chooses its signing function once, at construction, so that
:meth:`CryptographySigner.sign` is one call to the private key's bound method (plus the
DER to ``r||s`` conversion for ECDSA, which JOSE needs). Nothing is logged per signature.

The helpers here (:func:`load_private_key_pem`, :func:`private_key_from_jwk`,
:func:`pkcs8_pem`) are shared with the PyNaCl engine (:mod:`aauth_backends.sodium`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import ClassVar, NoReturn, TypeAlias

import structlog
from cryptography.exceptions import UnsupportedAlgorithm as _CryptoUnsupported
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from aauth_backends.errors import (
    InvalidKeyMaterial,
    UnsupportedKeyType,
    WrongPassphrase,
    safe_ref,
)
from aauth_core.algorithms import Alg
from aauth_core.b64 import b64url_decode, b64url_encode
from aauth_core.errors import AAuthError, MalformedInput
from aauth_core.jwk import PublicJwk

__all__ = [
    "CryptographySigner",
    "PrivateKey",
    "Passphrase",
    "load_private_key_pem",
    "private_key_from_jwk",
    "public_jwk_of",
    "pkcs8_pem",
    "passphrase_bytes",
    "check_kid",
    "as_alg",
    "is_encrypted_pem",
    "resolve_alg",
]

log = structlog.get_logger(__name__)

PrivateKey: TypeAlias = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
Passphrase: TypeAlias = str | bytes

_CURVES: dict[str, tuple[Alg, int]] = {"secp256r1": (Alg.ES256, 32), "secp384r1": (Alg.ES384, 48)}
_EC_HASH: dict[Alg, Callable[[], hashes.HashAlgorithm]] = {
    Alg.ES256: hashes.SHA256,
    Alg.ES384: hashes.SHA384,
}
_JWK_CURVES: dict[str, tuple[ec.EllipticCurve, Alg, int]] = {
    "P-256": (ec.SECP256R1(), Alg.ES256, 32),
    "P-384": (ec.SECP384R1(), Alg.ES384, 48),
}
_RSA_ALGS = (Alg.PS256, Alg.RS256)
_MIN_RSA_BITS = 2048
_MAX_RSA_BITS = 8192
_MAX_PEM_BYTES = 64 * 1024
_MAX_JWK_MEMBER_CHARS = 4096
_MAX_KID_CHARS = 256


# --------------------------------------------------------------------------- helpers


def passphrase_bytes(passphrase: Passphrase | None) -> bytes | None:
    """Normalise a passphrase (``str`` is UTF-8 encoded); empty passphrases are refused."""
    if passphrase is None:
        return None
    if isinstance(passphrase, str):
        passphrase = passphrase.encode("utf-8")
    if not isinstance(passphrase, bytes):
        raise TypeError("passphrase must be str or bytes")
    if not passphrase:
        raise ValueError("passphrase must not be empty (pass None for an unencrypted key)")
    return passphrase


def check_kid(kid: str | None) -> str | None:
    """Validate a configured key id (a short printable string)."""
    if kid is None:
        return None
    if not isinstance(kid, str):
        raise TypeError("kid must be a string")
    if not kid or len(kid) > _MAX_KID_CHARS or not kid.isprintable():
        raise ValueError("kid must be 1 to 256 printable characters")
    return kid


def _unsupported(what: str, ref: object) -> NoReturn:
    raise UnsupportedKeyType(what, ref=ref)


def as_alg(alg: object, *, ref: object = None) -> Alg:
    """``alg`` as an :class:`Alg`; ``UnsupportedKeyType`` for anything else."""
    if isinstance(alg, Alg):
        return alg
    if isinstance(alg, str):
        try:
            return Alg(alg)
        except ValueError:
            pass
    _unsupported(f"algorithm {str(alg)[:40]!r} is not supported", ref)


def resolve_alg(key: object, alg: Alg | str | None, *, ref: object = None) -> Alg:
    """The algorithm ``key`` signs with: inferred for Ed25519 and EC, required for RSA."""
    if alg is not None:
        alg = as_alg(alg, ref=ref)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        inferred = Alg.ED25519
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        found = _CURVES.get(key.curve.name)
        if found is None:
            _unsupported(f"EC curve {key.curve.name} is not supported (P-256, P-384)", ref)
        inferred = found[0]
    elif isinstance(key, rsa.RSAPrivateKey):
        if not _MIN_RSA_BITS <= key.key_size <= _MAX_RSA_BITS:
            _unsupported(f"RSA keys of {key.key_size} bits are not supported (2048..8192)", ref)
        if alg is None:
            _unsupported("an RSA key needs an explicit algorithm: PS256 or RS256", ref)
        if alg not in _RSA_ALGS:
            _unsupported(f"an RSA key cannot sign {alg.value}", ref)
        return alg
    else:
        _unsupported(f"{type(key).__name__} keys are not supported", ref)
    if alg is not None and alg is not inferred:
        _unsupported(f"a {inferred.value} key cannot sign {alg.value}", ref)
    return inferred


def public_jwk_of(key: PrivateKey, alg: Alg, kid: str | None = None) -> PublicJwk:
    """The public JWK (with ``alg`` and ``kid``) of a private key."""
    members: dict[str, str] = {"kty": alg.kty, "alg": alg.value}
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        members |= {"crv": "Ed25519", "x": b64url_encode(raw)}
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        size = _CURVES[key.curve.name][1]
        numbers = key.public_key().public_numbers()
        members |= {
            "crv": alg.crv or "",
            "x": b64url_encode(numbers.x.to_bytes(size, "big")),
            "y": b64url_encode(numbers.y.to_bytes(size, "big")),
        }
    else:
        pub = key.public_key().public_numbers()
        members |= {"n": b64url_encode(_int_bytes(pub.n)), "e": b64url_encode(_int_bytes(pub.e))}
    if kid is not None:
        members["kid"] = kid
    try:
        return PublicJwk.from_dict(members)
    except AAuthError as exc:  # pragma: no cover - resolve_alg has checked the key already
        raise UnsupportedKeyType(f"public key is not acceptable: {exc.detail}") from exc


def _int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")


def is_encrypted_pem(data: bytes) -> bool:
    """True for encrypted PKCS#8 or a traditional PEM with ``Proc-Type: 4,ENCRYPTED``."""
    return b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in data or b"Proc-Type: 4,ENCRYPTED" in data


def load_private_key_pem(
    data: bytes | str, passphrase: Passphrase | None = None, *, ref: object = None
) -> PrivateKey:
    """Load a PEM private key (PKCS#8, encrypted PKCS#8, or traditional SEC1/PKCS#1).

    Raises ``WrongPassphrase`` (missing or wrong passphrase), ``InvalidKeyMaterial`` (not a
    PEM private key, damaged) or ``UnsupportedKeyType``. A passphrase given for an
    unencrypted key is ignored.
    """
    if isinstance(data, str):
        data = data.encode("utf-8", "replace")
    if not isinstance(data, bytes):
        raise TypeError("PEM data must be bytes or str")
    if len(data) > _MAX_PEM_BYTES:
        raise InvalidKeyMaterial("PEM data is too large to be a private key", ref=ref)
    secret = passphrase_bytes(passphrase)
    encrypted = is_encrypted_pem(data)
    if encrypted and secret is None:
        raise WrongPassphrase("the key is encrypted and no passphrase was given", ref=ref)
    try:
        key = serialization.load_pem_private_key(data, password=secret if encrypted else None)
    except _CryptoUnsupported as exc:
        raise UnsupportedKeyType("the key's type or encryption is not supported", ref=ref) from exc
    except (ValueError, TypeError) as exc:
        if encrypted:
            # Never chain: keep the decryption failure free of anything passphrase-related.
            raise WrongPassphrase(
                "could not decrypt the key: wrong passphrase (or a damaged file)", ref=ref
            ) from None
        raise InvalidKeyMaterial("not a PEM private key, or the key is damaged", ref=ref) from exc
    if not isinstance(
        key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    ):
        _unsupported(f"{type(key).__name__} keys are not supported", ref)
    return key


def pkcs8_pem(key: PrivateKey, passphrase: Passphrase | None = None) -> bytes:
    """PKCS#8 PEM; encrypted with ``BestAvailableEncryption`` when a passphrase is given."""
    secret = passphrase_bytes(passphrase)
    encryption: serialization.KeySerializationEncryption = (
        serialization.NoEncryption()
        if secret is None
        else serialization.BestAvailableEncryption(secret)
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def _member(jwk: Mapping[object, object], name: str, size: int | None = None) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidKeyMaterial(f"private JWK is missing {name!r}")
    if len(value) > _MAX_JWK_MEMBER_CHARS:
        raise InvalidKeyMaterial(f"private JWK member {name!r} is too long")
    try:
        raw = b64url_decode(value, what=f"JWK {name}")
    except MalformedInput as exc:
        raise InvalidKeyMaterial(f"private JWK member {name!r} is not base64url") from exc
    if size is not None and len(raw) != size:
        raise InvalidKeyMaterial(f"private JWK member {name!r} must be {size} bytes")
    return raw


def _int_member(jwk: Mapping[object, object], name: str) -> int:
    return int.from_bytes(_member(jwk, name), "big")


def private_key_from_jwk(jwk: object) -> tuple[PrivateKey, Alg | None, str | None]:
    """Decode a private JWK (OKP Ed25519, EC P-256/P-384, RSA) into a private key.

    Returns ``(key, alg, kid)``, where ``alg`` and ``kid`` are the JWK's own members (or
    None). The public members must belong to the private ones. Raises
    ``InvalidKeyMaterial`` or ``UnsupportedKeyType``, never anything else, for bad input.
    """
    if not isinstance(jwk, Mapping):
        raise InvalidKeyMaterial("private JWK is not a JSON object")
    kty = jwk.get("kty")
    alg: Alg | None = None
    raw_alg = jwk.get("alg")
    if raw_alg is not None:
        alg = as_alg(raw_alg)
    kid = jwk.get("kid")
    if kid is not None and (not isinstance(kid, str) or not 0 < len(kid) <= _MAX_KID_CHARS):
        raise InvalidKeyMaterial("JWK kid is not a short string")
    key: PrivateKey
    try:
        if kty == "OKP":
            if jwk.get("crv") != "Ed25519":
                raise UnsupportedKeyType(f"OKP curve {str(jwk.get('crv'))[:20]!r} is not supported")
            key = ed25519.Ed25519PrivateKey.from_private_bytes(_member(jwk, "d", 32))
            x = _member(jwk, "x", 32)
            public = key.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            if public != x:
                raise InvalidKeyMaterial("JWK x does not belong to d")
        elif kty == "EC":
            crv = jwk.get("crv")
            found = _JWK_CURVES.get(crv) if isinstance(crv, str) else None
            if found is None:
                raise UnsupportedKeyType(f"EC curve {str(jwk.get('crv'))[:20]!r} is not supported")
            curve, _, size = found
            pub = ec.EllipticCurvePublicNumbers(
                int.from_bytes(_member(jwk, "x", size), "big"),
                int.from_bytes(_member(jwk, "y", size), "big"),
                curve,
            )
            d = int.from_bytes(_member(jwk, "d", size), "big")
            key = ec.EllipticCurvePrivateNumbers(d, pub).private_key()
        elif kty == "RSA":
            key = _rsa_from_jwk(jwk)
        elif kty == "oct":
            raise UnsupportedKeyType("symmetric keys (kty 'oct') are not signing keys here")
        else:
            raise UnsupportedKeyType(f"JWK kty {str(kty)[:20]!r} is not supported")
    except ValueError as exc:
        raise InvalidKeyMaterial(f"private {kty} JWK is inconsistent or invalid") from exc
    return key, alg, kid


def _rsa_from_jwk(jwk: Mapping[object, object]) -> rsa.RSAPrivateKey:
    n = _int_member(jwk, "n")
    if not _MIN_RSA_BITS <= n.bit_length() <= _MAX_RSA_BITS:
        raise UnsupportedKeyType(
            f"RSA keys of {n.bit_length()} bits are not supported (2048..8192)"
        )
    e = _int_member(jwk, "e")
    d = _int_member(jwk, "d")
    # RFC 7518 §6.3.2 lets a producer omit the CRT members; we require them, because
    # recovering p and q from (n, e, d) costs many modular exponentiations on hostile input.
    p, q = _int_member(jwk, "p"), _int_member(jwk, "q")
    dmp1, dmq1, iqmp = _int_member(jwk, "dp"), _int_member(jwk, "dq"), _int_member(jwk, "qi")
    numbers = rsa.RSAPrivateNumbers(p, q, d, dmp1, dmq1, iqmp, rsa.RSAPublicNumbers(e, n))
    return numbers.private_key()


def _sign_function(key: PrivateKey, alg: Alg) -> Callable[[bytes], bytes]:
    """The per-key signing function, built once; the hot path of every request."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign
    if isinstance(key, ec.EllipticCurvePrivateKey):
        ec_sign = key.sign
        ecdsa = ec.ECDSA(_EC_HASH[alg]())
        size = _CURVES[key.curve.name][1]
        decode = decode_dss_signature

        def sign_ecdsa(data: bytes) -> bytes:
            r, s = decode(ec_sign(data, ecdsa))
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")

        return sign_ecdsa
    rsa_sign = key.sign
    pad: padding.AsymmetricPadding = (
        # JOSE PS256 (RFC 7518 §3.5): MGF1 with SHA-256 and a salt as long as the hash.
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        if alg is Alg.PS256
        else padding.PKCS1v15()
    )
    digest = hashes.SHA256()

    def sign_rsa(data: bytes) -> bytes:
        return rsa_sign(data, pad, digest)

    return sign_rsa


# --------------------------------------------------------------------------- the signer


class SoftwareSignerBase:
    """What both software signers share: the key identity (``key_id`` = the RFC 7638
    thumbprint unless a ``kid`` is configured), the public JWK, export, and a ``repr``
    and pickling rule that keep the private key in. Subclasses set the identity with
    :meth:`_set_identity` and provide ``sign`` and ``private_key``."""

    engine: ClassVar[str]
    __slots__ = ("_jwk", "_key_id", "_kid_configured")
    _jwk: PublicJwk
    _key_id: str
    _kid_configured: bool

    def _set_identity(self, public: PublicJwk, kid: str | None) -> None:
        kid = check_kid(kid)
        self._kid_configured = kid is not None
        self._key_id = kid if kid is not None else public.thumbprint()
        self._jwk = public.with_kid(self._key_id)

    @property
    def key_id(self) -> str:
        return self._key_id

    @property
    def algorithm(self) -> Alg:
        return self._jwk.alg

    @property
    def kid_configured(self) -> bool:
        """True when ``key_id`` was configured rather than computed (RFC 7638)."""
        return self._kid_configured

    def public_jwk(self) -> PublicJwk:
        return self._jwk

    @property
    def private_key(self) -> PrivateKey:
        raise NotImplementedError

    def private_pem(self, passphrase: Passphrase | None = None) -> bytes:
        """The private key as PKCS#8 PEM, encrypted when a passphrase is given."""
        return pkcs8_pem(self.private_key, passphrase)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(alg={self._jwk.alg.value!r}, key_id={self._key_id!r})"

    def __reduce__(self) -> NoReturn:
        raise TypeError(f"{type(self).__name__} holds a private key and cannot be pickled")


class CryptographySigner(SoftwareSignerBase):
    """A software private key signing through ``cryptography``.

    ``key_id`` is the RFC 7638 thumbprint of the public key unless a ``kid`` is
    configured. ``repr`` shows the algorithm and key id only.
    """

    engine: ClassVar[str] = "cryptography"
    __slots__ = ("_alg", "_key", "_sign")

    def __init__(
        self, private_key: PrivateKey, *, alg: Alg | str | None = None, kid: str | None = None
    ) -> None:
        self._alg = resolve_alg(private_key, alg)
        self._key = private_key
        self._set_identity(public_jwk_of(private_key, self._alg), kid)
        self._sign = _sign_function(private_key, self._alg)

    # -- named constructors

    @classmethod
    def generate(
        cls, alg: Alg | str, *, kid: str | None = None, rsa_bits: int = 2048
    ) -> CryptographySigner:
        """A fresh key for ``alg`` (RSA: ``rsa_bits``, 2048 by default)."""
        alg = as_alg(alg)
        key: PrivateKey
        if alg is Alg.ED25519:
            key = ed25519.Ed25519PrivateKey.generate()
        elif alg in _EC_HASH:
            key = ec.generate_private_key(_JWK_CURVES[alg.crv or ""][0])
        else:
            if not _MIN_RSA_BITS <= rsa_bits <= _MAX_RSA_BITS:
                raise ValueError("rsa_bits must be between 2048 and 8192")
            key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
        signer = cls(key, alg=alg, kid=kid)
        log.info("aauth.key.generate", key_id=signer.key_id, alg=alg.value, engine=cls.engine)
        return signer

    @classmethod
    def from_private_key(
        cls, private_key: PrivateKey, alg: Alg | str | None = None, *, kid: str | None = None
    ) -> CryptographySigner:
        """Wrap a ``cryptography`` private key; ``alg`` is required for RSA only."""
        return cls(private_key, alg=alg, kid=kid)

    @classmethod
    def from_pem(
        cls,
        data: bytes | str,
        passphrase: Passphrase | None = None,
        alg: Alg | str | None = None,
        *,
        kid: str | None = None,
        ref: str | None = None,
    ) -> CryptographySigner:
        """Load a PEM private key; ``ref`` names the key in errors and logs."""
        key = load_private_key_pem(data, passphrase, ref=ref)
        resolve_alg(key, alg, ref=ref)
        signer = cls(key, alg=alg, kid=kid)
        log.info(
            "aauth.key.load",
            key_id=signer.key_id,
            alg=signer.algorithm.value,
            engine=cls.engine,
            ref=None if ref is None else safe_ref(ref),
        )
        return signer

    @classmethod
    def from_jwk(
        cls, private_jwk: object, *, alg: Alg | str | None = None, kid: str | None = None
    ) -> CryptographySigner:
        """Load a private JWK (test vectors); its ``alg``/``kid`` are used unless overridden."""
        key, jwk_alg, jwk_kid = private_key_from_jwk(private_jwk)
        wanted = None if alg is None else as_alg(alg)
        if wanted is not None and jwk_alg is not None and wanted is not jwk_alg:
            raise UnsupportedKeyType(f"JWK alg {jwk_alg.value} disagrees with {wanted.value}")
        chosen = wanted if wanted is not None else jwk_alg
        resolve_alg(key, chosen)
        return cls(key, alg=chosen, kid=kid if kid is not None else jwk_kid)

    # -- the Signer protocol (identity and export: SoftwareSignerBase)

    def sign(self, data: bytes) -> bytes:
        """Sign ``data`` (bytes); JOSE wire format (raw ``r||s`` for ECDSA)."""
        return self._sign(data)

    @property
    def private_key(self) -> PrivateKey:
        """The underlying ``cryptography`` key object (for export and key stores)."""
        return self._key
