"""Key references: ``software:<name>``, ``file:<path>[?engine=…&alg=…]``, ``pkcs11:…`` (RFC 7512).

Configuration names a key with one of these strings and :func:`open_signer` returns the
signer for it. There is no dispatcher between backends and no fallback: the scheme picks
the backend, and the key it names signs or the call fails.

Every parser here answers bad input (any type, any text) with
:class:`~aauth_backends.errors.InvalidKeyReference` and nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal, TypeAlias
from urllib.parse import quote, unquote_to_bytes

from attrs import field, frozen

from aauth_backends.errors import BackendError, InvalidKeyReference, KeyNotFound
from aauth_backends.interfaces import KeyStore, Signer
from aauth_backends.software import Passphrase
from aauth_core.algorithms import Alg

__all__ = [
    "Engine",
    "ENGINES",
    "check_engine",
    "check_key_name",
    "SoftwareUri",
    "FileUri",
    "Pkcs11Uri",
    "KeyUri",
    "parse_key_ref",
    "open_signer",
    "SCHEMES",
]

Engine: TypeAlias = Literal["cryptography", "sodium"]
ENGINES: tuple[Engine, ...] = ("cryptography", "sodium")
SCHEMES = ("software", "file", "pkcs11")

_MAX_REF_CHARS = 4096
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
# RFC 7512 value characters (unreserved, pct-encoded and the allowed sub-delimiters).
_P11_PATH_VALUE = re.compile(r"[A-Za-z0-9\-._~%:\[\]@!$'()*+,=&]*")
_P11_QUERY_VALUE = re.compile(r"[A-Za-z0-9\-._~%:\[\]@!$'()*+,=/?|;]*")
_P11_VENDOR = re.compile(r"x-[A-Za-z0-9\-._~]{1,64}")

_P11_PATH_ATTRS = frozenset(
    {
        "token",
        "manufacturer",
        "serial",
        "model",
        "library-manufacturer",
        "library-description",
        "library-version",
        "object",
        "type",
        "id",
        "slot-description",
        "slot-manufacturer",
        "slot-id",
    }
)
_P11_QUERY_ATTRS = frozenset({"pin-source", "pin-value", "module-name", "module-path"})
_P11_TYPES = frozenset({"public", "private", "cert", "secret-key", "data"})


def check_engine(engine: object) -> Engine:
    """Validate an engine name (``cryptography`` or ``sodium``); ``ValueError`` otherwise."""
    if engine == "cryptography":
        return "cryptography"
    if engine == "sodium":
        return "sodium"
    raise ValueError(f"engine must be 'cryptography' or 'sodium', not {engine!r}")


def check_key_name(name: object) -> str:
    """A key name in a store: 1-128 of ``A-Z a-z 0-9 . _ -``, starting alphanumeric."""
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise InvalidKeyReference(
            "a key name is 1-128 characters of A-Z, a-z, 0-9, '.', '_', '-' "
            "and starts with a letter or digit",
            ref=name,
        )
    return name


@frozen(kw_only=True)
class SoftwareUri:
    """``software:<name>``: a key held in a :class:`~aauth_backends.stores.MemoryKeyStore`."""

    name: str = field(validator=lambda _i, _a, v: check_key_name(v))

    def to_uri(self) -> str:
        return f"software:{self.name}"


@frozen(kw_only=True)
class FileUri:
    """``file:<path>``: a PEM private key file, optionally naming the engine and algorithm."""

    path: str
    engine: Engine | None = None
    alg: Alg | None = None

    def to_uri(self) -> str:
        query = []
        if self.engine is not None:
            query.append(f"engine={self.engine}")
        if self.alg is not None:
            query.append(f"alg={self.alg.value}")
        text = "file:" + quote(self.path, safe="/._-~+@,=:")
        return text + ("?" + "&".join(query) if query else "")


@frozen(kw_only=True)
class Pkcs11Uri:
    """``pkcs11:…`` (RFC 7512). Path attribute values are percent-decoded bytes (``id`` is
    binary); the PIN (``pin-value``) is kept out of ``repr``."""

    attributes: tuple[tuple[str, bytes], ...] = ()
    query: tuple[tuple[str, str], ...] = ()
    pin_value: str | None = field(default=None, repr=False)

    def get(self, name: str) -> bytes | None:
        for key, value in self.attributes:
            if key == name:
                return value
        return None

    def _text(self, name: str) -> str | None:
        value = self.get(name)
        return None if value is None else value.decode("utf-8")

    @property
    def token(self) -> str | None:
        return self._text("token")

    @property
    def object(self) -> str | None:
        return self._text("object")

    @property
    def id(self) -> bytes | None:
        return self.get("id")

    @property
    def type(self) -> str | None:
        return self._text("type")

    @property
    def slot_id(self) -> int | None:
        value = self.get("slot-id")
        return None if value is None else int(value)

    @property
    def module_path(self) -> str | None:
        return dict(self.query).get("module-path")

    @property
    def module_name(self) -> str | None:
        return dict(self.query).get("module-name")

    @property
    def pin_source(self) -> str | None:
        return dict(self.query).get("pin-source")

    def to_uri(self, *, include_pin: bool = False) -> str:
        """Serialise; the PIN is left out unless ``include_pin``."""
        path = ";".join(f"{k}={quote(v, safe='')}" for k, v in self.attributes)
        query = [f"{k}={quote(v, safe='/')}" for k, v in self.query]
        if include_pin and self.pin_value is not None:
            query.append(f"pin-value={quote(self.pin_value, safe='')}")
        return "pkcs11:" + path + ("?" + "&".join(query) if query else "")


KeyUri: TypeAlias = SoftwareUri | FileUri | Pkcs11Uri


def parse_key_ref(ref: object) -> KeyUri:
    """Parse a key reference; raise ``InvalidKeyReference`` for anything else."""
    if not isinstance(ref, str):
        raise InvalidKeyReference("a key reference must be a string", ref=ref)
    if not ref or len(ref) > _MAX_REF_CHARS:
        raise InvalidKeyReference("a key reference must be 1-4096 characters", ref=ref)
    if _CONTROL.search(ref):
        raise InvalidKeyReference("a key reference must not contain control characters", ref=ref)
    scheme, colon, rest = ref.partition(":")
    scheme = scheme.lower()
    if not colon or scheme not in SCHEMES:
        raise InvalidKeyReference(
            "a key reference starts with software:, file: or pkcs11:", ref=ref
        )
    if "#" in rest:
        raise InvalidKeyReference("a key reference has no fragment ('#')", ref=ref)
    if _BAD_PERCENT.search(rest):
        raise InvalidKeyReference("a key reference has a bad percent-escape", ref=ref)
    if scheme == "software":
        return SoftwareUri(name=check_key_name(rest) if "?" not in rest else _bad_name(ref))
    if scheme == "file":
        return _parse_file(rest, ref)
    return _parse_pkcs11(rest, ref)


def _bad_name(ref: str) -> str:
    raise InvalidKeyReference("software: references take no parameters", ref=ref)


def _decode_text(raw: str, ref: str, what: str) -> str:
    try:
        text = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidKeyReference(f"{what} is not UTF-8 after percent-decoding", ref=ref) from None
    if _CONTROL.search(text):
        raise InvalidKeyReference(f"{what} contains control characters", ref=ref)
    return text


def _parse_file(rest: str, ref: str) -> FileUri:
    raw_path, _, raw_query = rest.partition("?")
    if raw_path.startswith("//"):
        host, slash, tail = raw_path[2:].partition("/")
        if host.lower() not in ("", "localhost") or not slash:
            raise InvalidKeyReference("file: references name a local path", ref=ref)
        raw_path = "/" + tail
    path = _decode_text(raw_path, ref, "the file path")
    if not path:
        raise InvalidKeyReference("a file: reference needs a path", ref=ref)
    engine: Engine | None = None
    alg: Alg | None = None
    seen: set[str] = set()
    for item in raw_query.split("&") if raw_query else ():
        name, eq, value = item.partition("=")
        if not eq or name in seen:
            raise InvalidKeyReference(f"bad or repeated parameter {name[:20]!r}", ref=ref)
        seen.add(name)
        if name == "engine":
            if value not in ENGINES:
                raise InvalidKeyReference("engine must be cryptography or sodium", ref=ref)
            engine = check_engine(value)
        elif name == "alg":
            if value not in Alg._value2member_map_:
                raise InvalidKeyReference(f"alg {value[:20]!r} is not supported", ref=ref)
            alg = Alg(value)
        else:
            raise InvalidKeyReference(f"unknown file: parameter {name[:20]!r}", ref=ref)
    return FileUri(path=path, engine=engine, alg=alg)


def _parse_pkcs11(rest: str, ref: str) -> Pkcs11Uri:
    raw_path, _, raw_query = rest.partition("?")
    attributes: list[tuple[str, bytes]] = []
    for item in raw_path.split(";") if raw_path else ():
        name, eq, value = item.partition("=")
        if not eq or not (name in _P11_PATH_ATTRS or _P11_VENDOR.fullmatch(name)):
            raise InvalidKeyReference(f"unknown PKCS#11 path attribute {name[:20]!r}", ref=ref)
        if any(name == seen for seen, _ in attributes):
            raise InvalidKeyReference(f"PKCS#11 attribute {name!r} appears twice", ref=ref)
        if _P11_PATH_VALUE.fullmatch(value) is None:
            raise InvalidKeyReference(f"bad characters in PKCS#11 attribute {name!r}", ref=ref)
        decoded = unquote_to_bytes(value)
        if name != "id":
            _decode_text(value, ref, f"PKCS#11 attribute {name!r}")
        attributes.append((name, decoded))
    query: list[tuple[str, str]] = []
    pin_value: str | None = None
    for item in raw_query.split("&") if raw_query else ():
        name, eq, value = item.partition("=")
        if not eq or not (name in _P11_QUERY_ATTRS or _P11_VENDOR.fullmatch(name)):
            raise InvalidKeyReference(f"unknown PKCS#11 query attribute {name[:20]!r}", ref=ref)
        if (name == "pin-value" and pin_value is not None) or any(name == k for k, _ in query):
            raise InvalidKeyReference(f"PKCS#11 attribute {name!r} appears twice", ref=ref)
        if _P11_QUERY_VALUE.fullmatch(value) is None:
            raise InvalidKeyReference(f"bad characters in PKCS#11 attribute {name!r}", ref=ref)
        text = _decode_text(value, ref, f"PKCS#11 attribute {name!r}")
        if name == "pin-value":
            pin_value = text
        else:
            query.append((name, text))
    uri = Pkcs11Uri(attributes=tuple(attributes), query=tuple(query), pin_value=pin_value)
    if pin_value is not None and uri.pin_source is not None:
        raise InvalidKeyReference("pin-value and pin-source exclude each other", ref=ref)
    kind = uri.type
    if kind is not None and kind not in _P11_TYPES:
        raise InvalidKeyReference(f"PKCS#11 type {kind[:20]!r} is not an object class", ref=ref)
    slot = uri.get("slot-id")
    if slot is not None and (not slot.isdigit() or len(slot) > 20):
        raise InvalidKeyReference("PKCS#11 slot-id is a decimal number", ref=ref)
    return uri


def open_signer(
    ref: str,
    *,
    passphrase: Passphrase | None = None,
    stores: Mapping[str, KeyStore] | None = None,
) -> Signer:
    """The signer for the key that ``ref`` names.

    ``stores`` maps a scheme (``software``, ``file``, ``pkcs11``) to the store that
    serves it. ``software:`` keys need a store. ``file:`` keys go through the ``file``
    store when one is given (which confines them to its directory) and are otherwise read
    from the path as configured. ``pkcs11:`` keys go through the ``pkcs11`` store when
    one is given; otherwise a :class:`~aauth_backends.pkcs11.Pkcs11KeyStore` is opened
    from the URI itself (``module-path`` or ``$AAUTH_PKCS11_MODULE``; the PIN from
    ``pin-source``, ``pin-value`` or ``$AAUTH_PKCS11_PIN``) and lives as long as the
    signer. ``passphrase`` decrypts ``file:`` keys only (a PKCS#11 PIN belongs to its
    store).
    """
    # Imported here: stores parse references with this module, so a top-level import
    # would be circular.
    from aauth_backends.stores import FileKeyStore, load_key_file

    uri = parse_key_ref(ref)
    stores = {} if stores is None else stores
    unknown = set(stores) - set(SCHEMES)
    if unknown:
        raise ValueError(f"stores are keyed by scheme {SCHEMES}, not {sorted(unknown)}")
    if passphrase is not None and not isinstance(uri, FileUri):
        raise ValueError("a passphrase applies to file: keys only")
    if isinstance(uri, SoftwareUri):
        store = stores.get("software")
        if store is None:
            raise KeyNotFound("no software key store is configured", ref=ref)
        return store.get_signer(uri.to_uri())
    if isinstance(uri, FileUri):
        store = stores.get("file")
        if isinstance(store, FileKeyStore):
            return store.get_signer(ref, passphrase=passphrase)
        if store is not None:
            return store.get_signer(ref)
        return load_key_file(
            uri.path,
            passphrase=passphrase,
            engine=uri.engine or "cryptography",
            alg=uri.alg,
            ref=ref,
        )
    store = stores.get("pkcs11")
    if store is None:
        try:
            from aauth_backends.pkcs11 import Pkcs11KeyStore
        except ImportError:
            raise BackendError(
                "PKCS#11 keys need python-pkcs11 (pip install aauth[pkcs11])", ref=ref
            ) from None
        store = Pkcs11KeyStore.from_uri(ref)
    return store.get_signer(ref)
