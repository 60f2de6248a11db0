"""Key stores for software keys: in memory (``software:<name>``) and on disk (``file:<path>``).

On disk a key is one PKCS#8 PEM file (encrypted when the store has a passphrase), mode
0600, written to a temporary file in the same directory and then linked into place, so a
crash never leaves half a key and an existing key is never overwritten. Before the PEM
block the file carries two lines of RFC 7468 "explanatory text" that PEM parsers skip::

    aauth-alg: PS256
    aauth-thumbprint: <RFC 7638 thumbprint>

They record the algorithm (an RSA key does not say whether it signs PS256 or RS256) and
let :meth:`FileKeyStore.list_keys` describe keys without decrypting them; when a key is
loaded both are checked against the key itself.

The engine (``cryptography`` or ``sodium``) is chosen explicitly; the ``sodium`` engine
signs Ed25519 only and refuses anything else (no silent fallback).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import threading
from collections.abc import Sequence
from typing import TypeAlias

import structlog

from aauth_backends.errors import (
    BackendError,
    InvalidKeyMaterial,
    InvalidKeyReference,
    KeyExists,
    KeyNotFound,
    safe_ref,
)
from aauth_backends.interfaces import KeyInfo, KeyRef
from aauth_backends.sodium import SodiumSigner
from aauth_backends.software import (
    CryptographySigner,
    Passphrase,
    PrivateKey,
    as_alg,
    is_encrypted_pem,
    passphrase_bytes,
    pkcs8_pem,
)
from aauth_backends.uris import (
    Engine,
    FileUri,
    SoftwareUri,
    check_engine,
    check_key_name,
    parse_key_ref,
)
from aauth_core.algorithms import Alg

__all__ = [
    "SoftwareSigner",
    "MemoryKeyStore",
    "FileKeyStore",
    "load_key_file",
    "make_signer",
]

log = structlog.get_logger(__name__)

SoftwareSigner: TypeAlias = CryptographySigner | SodiumSigner

_MAX_FILE_BYTES = 64 * 1024
_BEGIN = b"-----BEGIN "
_ALG_LINE = "aauth-alg:"
_THUMBPRINT_LINE = "aauth-thumbprint:"
_SUFFIX = ".pem"


def make_signer(
    private_key: object,
    *,
    alg: Alg | str | None = None,
    engine: Engine = "cryptography",
    kid: str | None = None,
) -> SoftwareSigner:
    """A signer for ``private_key`` (a ``cryptography`` key, or a software signer) on
    ``engine``; ``UnsupportedKeyType`` if the engine cannot sign with it."""
    engine = check_engine(engine)
    if isinstance(private_key, CryptographySigner | SodiumSigner):
        if alg is None:
            alg = private_key.algorithm
        private_key = private_key.private_key
    if engine == "sodium":
        return SodiumSigner.from_private_key(private_key, alg, kid=kid)
    return CryptographySigner.from_private_key(private_key, alg, kid=kid)  # type: ignore[arg-type]


def _generate(alg: Alg | str, engine: Engine) -> SoftwareSigner:
    if check_engine(engine) == "sodium":
        return SodiumSigner.generate(alg)
    return CryptographySigner.generate(alg)


# --------------------------------------------------------------------------- memory


class MemoryKeyStore:
    """Keys held in this process only, named ``software:<name>``. Thread-safe."""

    def __init__(self, *, engine: Engine = "cryptography") -> None:
        self._engine = check_engine(engine)
        self._keys: dict[str, SoftwareSigner] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _name(ref: KeyRef) -> str:
        if isinstance(ref, str) and ":" in ref:
            uri = parse_key_ref(ref)
            if not isinstance(uri, SoftwareUri):
                raise InvalidKeyReference("a memory key store serves software: keys", ref=ref)
            return uri.name
        return check_key_name(ref)

    def _add(self, name: str, signer: SoftwareSigner) -> KeyRef:
        ref = SoftwareUri(name=name).to_uri()
        with self._lock:
            if name in self._keys:
                raise KeyExists("a key with this name already exists", ref=ref)
            self._keys[name] = signer
        log.info(
            "aauth.key.store",
            key_id=signer.key_id,
            alg=signer.algorithm.value,
            engine=signer.engine,
            ref=safe_ref(ref),
        )
        return ref

    def generate(self, alg: Alg | str, name: str, *, engine: Engine | None = None) -> KeyRef:
        """Create a key; returns ``software:<name>``."""
        name = check_key_name(name)
        return self._add(name, _generate(alg, engine or self._engine))

    def import_private_key(
        self,
        private_key: object,
        name: str,
        *,
        alg: Alg | str | None = None,
        engine: Engine | None = None,
        kid: str | None = None,
    ) -> KeyRef:
        """Hold an existing key (a ``cryptography`` key object or a software signer)."""
        name = check_key_name(name)
        signer = make_signer(private_key, alg=alg, engine=engine or self._engine, kid=kid)
        return self._add(name, signer)

    def get_signer(self, ref: KeyRef) -> SoftwareSigner:
        name = self._name(ref)
        with self._lock:
            signer = self._keys.get(name)
        if signer is None:
            raise KeyNotFound("no such key", ref=ref)
        return signer

    def list_keys(self) -> Sequence[KeyInfo]:
        with self._lock:
            items = sorted(self._keys.items())
        return [
            KeyInfo(
                ref=SoftwareUri(name=name).to_uri(),
                name=name,
                alg=signer.algorithm,
                key_id=signer.key_id,
                engine=signer.engine,
            )
            for name, signer in items
        ]

    def delete(self, ref: KeyRef) -> None:
        name = self._name(ref)
        with self._lock:
            if self._keys.pop(name, None) is None:
                raise KeyNotFound("no such key", ref=ref)

    def __repr__(self) -> str:
        return f"MemoryKeyStore(engine={self._engine!r}, keys={len(self._keys)})"


# --------------------------------------------------------------------------- files


def _read_file(path: str, ref: object) -> bytes:
    """Read a key file: a regular file of bounded size (never blocks on a FIFO or device)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except (FileNotFoundError, NotADirectoryError):
        raise KeyNotFound("no such key file", ref=ref) from None
    except IsADirectoryError:
        raise InvalidKeyReference("the key reference names a directory", ref=ref) from None
    except PermissionError:
        raise BackendError("permission denied reading the key file", ref=ref) from None
    except (OSError, ValueError) as exc:
        raise BackendError(f"cannot open the key file ({type(exc).__name__})", ref=ref) from None
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:  # pragma: no cover - fstat on an open descriptor
        regular = False
    if not regular:
        os.close(fd)
        raise InvalidKeyReference("the key reference is not a regular file", ref=ref)
    with os.fdopen(fd, "rb") as handle:
        try:
            data = handle.read(_MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise BackendError(
                f"cannot read the key file ({type(exc).__name__})", ref=ref
            ) from None
    if len(data) > _MAX_FILE_BYTES:
        raise InvalidKeyMaterial("the key file is too large to be a private key", ref=ref)
    return data


def _header(data: bytes, ref: object) -> tuple[Alg | None, str | None]:
    """The ``aauth-alg`` / ``aauth-thumbprint`` explanatory lines before the PEM block."""
    start = data.find(_BEGIN)
    if start < 0:
        raise InvalidKeyMaterial("the key file holds no PEM block", ref=ref)
    alg: Alg | None = None
    thumbprint: str | None = None
    for line in data[:start].decode("ascii", "replace").splitlines():
        if line.startswith(_ALG_LINE):
            value = line[len(_ALG_LINE) :].strip()
            if value not in Alg._value2member_map_:
                raise InvalidKeyMaterial("the key file names an unknown algorithm", ref=ref)
            alg = Alg(value)
        elif line.startswith(_THUMBPRINT_LINE):
            thumbprint = line[len(_THUMBPRINT_LINE) :].strip()
    return alg, thumbprint


def load_key_file(
    path: str | os.PathLike[str],
    *,
    passphrase: Passphrase | None = None,
    engine: Engine = "cryptography",
    alg: Alg | str | None = None,
    kid: str | None = None,
    ref: str | None = None,
) -> SoftwareSigner:
    """Load a PEM private key file as a signer.

    ``alg`` is needed for an RSA key unless the file records it. Raises ``KeyNotFound``,
    ``WrongPassphrase``, ``InvalidKeyMaterial`` (damaged file, metadata that does not
    match the key) or ``UnsupportedKeyType``.
    """
    engine = check_engine(engine)
    path = os.fspath(path)
    ref = ref if ref is not None else FileUri(path=path).to_uri()
    data = _read_file(path, ref)
    file_alg, thumbprint = _header(data, ref)
    wanted = None if alg is None else as_alg(alg, ref=ref)
    if wanted is not None and file_alg is not None and wanted is not file_alg:
        raise InvalidKeyMaterial(
            f"the key file says {file_alg.value}, the reference says {wanted.value}", ref=ref
        )
    chosen = wanted or file_alg
    signer: SoftwareSigner
    if engine == "sodium":
        signer = SodiumSigner.from_pem(data, passphrase, chosen, kid=kid, ref=ref)
    else:
        signer = CryptographySigner.from_pem(data, passphrase, chosen, kid=kid, ref=ref)
    if thumbprint is not None and signer.public_jwk().thumbprint() != thumbprint:
        raise InvalidKeyMaterial("the key file's thumbprint line does not match its key", ref=ref)
    return signer


def _fsync_directory(directory: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_new_file(path: str, content: bytes, ref: str) -> None:
    """Create ``path`` with ``content`` atomically, mode 0600, never replacing a file."""
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)  # atomic and fails if the name exists
        except FileExistsError:
            raise KeyExists("a key file with this name already exists", ref=ref) from None
        except OSError:
            # A filesystem without hard links: check, then rename over nothing.
            if os.path.lexists(path):
                raise KeyExists("a key file with this name already exists", ref=ref) from None
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    _fsync_directory(directory)


class FileKeyStore:
    """PEM key files in one directory, named ``<name>.pem``.

    References are key names (``"agent"``) or ``file:`` URIs whose path, after resolving
    symbolic links, lies inside the directory (relative paths are relative to it). With a
    ``passphrase`` new keys are encrypted (PKCS#8, ``BestAvailableEncryption``) and
    existing ones decrypted with it.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        passphrase: Passphrase | None = None,
        engine: Engine = "cryptography",
        create: bool = True,
    ) -> None:
        self._engine = check_engine(engine)
        self._passphrase = passphrase_bytes(passphrase)
        path = os.path.realpath(os.fspath(directory))
        if create:
            try:
                os.makedirs(path, mode=0o700, exist_ok=True)
            except OSError as exc:
                raise BackendError(
                    f"cannot create the key store directory ({type(exc).__name__})", ref=path
                ) from exc
        if not os.path.isdir(path):
            raise BackendError("the key store directory does not exist", ref=path)
        self._dir = path

    @property
    def directory(self) -> str:
        return self._dir

    def _ref_for(self, path: str, engine: Engine) -> KeyRef:
        # Name the engine unless both this store and a direct open would pick it anyway.
        implicit = engine == "cryptography" and self._engine == "cryptography"
        return FileUri(path=path, engine=None if implicit else engine).to_uri()

    def resolve(self, ref: KeyRef) -> tuple[str, FileUri]:
        """The file a reference names inside this store; ``InvalidKeyReference`` otherwise."""
        if isinstance(ref, str) and ":" in ref:
            uri = parse_key_ref(ref)
            if not isinstance(uri, FileUri):
                raise InvalidKeyReference("a file key store serves file: keys and names", ref=ref)
            relative = uri.path
        else:
            relative = check_key_name(ref) + _SUFFIX
            uri = FileUri(path=relative)
        full = os.path.realpath(os.path.join(self._dir, relative))
        if os.path.commonpath([full, self._dir]) != self._dir or full == self._dir:
            raise InvalidKeyReference("the key lies outside the key store directory", ref=ref)
        return full, uri

    def get_signer(self, ref: KeyRef, *, passphrase: Passphrase | None = None) -> SoftwareSigner:
        """Load the key ``ref`` names; ``passphrase`` overrides the store's."""
        path, uri = self.resolve(ref)
        secret = passphrase_bytes(passphrase) if passphrase is not None else self._passphrase
        return load_key_file(
            path,
            passphrase=secret,
            engine=uri.engine or self._engine,
            alg=uri.alg,
            ref=ref if isinstance(ref, str) and ":" in ref else self._ref_for(path, self._engine),
        )

    def _write(self, name: str, key: PrivateKey, alg: Alg, engine: Engine) -> KeyRef:
        signer = make_signer(key, alg=alg, engine=engine)  # validates the key for the engine
        path, _ = self.resolve(check_key_name(name))
        ref = self._ref_for(path, engine)
        header = f"{_ALG_LINE} {alg.value}\n{_THUMBPRINT_LINE} {signer.key_id}\n".encode("ascii")
        _write_new_file(path, header + pkcs8_pem(key, self._passphrase), ref)
        log.info(
            "aauth.key.store",
            key_id=signer.key_id,
            alg=alg.value,
            engine=engine,
            ref=safe_ref(ref),
            encrypted=self._passphrase is not None,
        )
        return ref

    def generate(self, alg: Alg | str, name: str, *, engine: Engine | None = None) -> KeyRef:
        """Create a key file ``<name>.pem``; returns its ``file:`` reference."""
        engine = check_engine(engine or self._engine)
        check_key_name(name)
        signer = _generate(alg, engine)
        return self._write(name, signer.private_key, signer.algorithm, engine)

    def import_private_key(
        self,
        private_key: object,
        name: str,
        *,
        alg: Alg | str | None = None,
        engine: Engine | None = None,
    ) -> KeyRef:
        """Write an existing key (a ``cryptography`` key object or a software signer)."""
        engine = check_engine(engine or self._engine)
        check_key_name(name)
        signer = make_signer(private_key, alg=alg, engine=engine)
        return self._write(name, signer.private_key, signer.algorithm, engine)

    def list_keys(self) -> Sequence[KeyInfo]:
        """Every ``*.pem`` key in the directory. Keys written by this store are described
        from their header lines without decrypting; other files are loaded."""
        out: list[KeyInfo] = []
        for entry in sorted(os.listdir(self._dir)):
            if entry.startswith(".") or not entry.endswith(_SUFFIX):
                continue
            path = os.path.join(self._dir, entry)
            if not os.path.isfile(path):
                continue
            ref = self._ref_for(path, self._engine)
            data = _read_file(path, ref)
            alg, thumbprint = _header(data, ref)
            if alg is None or thumbprint is None:
                signer = load_key_file(
                    path, passphrase=self._passphrase, engine=self._engine, alg=alg, ref=ref
                )
                alg, thumbprint = signer.algorithm, signer.public_jwk().thumbprint()
            out.append(
                KeyInfo(
                    ref=ref,
                    name=entry[: -len(_SUFFIX)],
                    alg=alg,
                    key_id=thumbprint,
                    engine=self._engine,
                    encrypted=is_encrypted_pem(data),
                )
            )
        return out

    def delete(self, ref: KeyRef) -> None:
        """Remove a key file."""
        path, _ = self.resolve(ref)
        try:
            os.unlink(path)
        except FileNotFoundError:
            raise KeyNotFound("no such key file", ref=ref) from None
        _fsync_directory(self._dir)

    def __repr__(self) -> str:
        return (
            f"FileKeyStore({self._dir!r}, engine={self._engine!r}, "
            f"encrypted={self._passphrase is not None})"
        )
