"""Key stores (memory, files), key references (``software:``, ``file:``, ``pkcs11:``) and
the ``open_signer`` resolver."""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

import pytest
import structlog
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aauth_backends.errors import (
    BackendError,
    InvalidKeyMaterial,
    InvalidKeyReference,
    KeyExists,
    KeyNotFound,
    UnsupportedKeyType,
    WrongPassphrase,
)
from aauth_backends.interfaces import KeyInfo, KeyStore, Signer
from aauth_backends.sodium import SodiumSigner
from aauth_backends.software import CryptographySigner
from aauth_backends.stores import FileKeyStore, MemoryKeyStore, load_key_file
from aauth_backends.uris import (
    FileUri,
    Pkcs11Uri,
    SoftwareUri,
    open_signer,
    parse_key_ref,
)
from aauth_core.algorithms import Alg
from aauth_core.verify import verifier_for

ALGS = list(Alg)


def _works(signer: Signer) -> None:
    assert verifier_for(signer.public_jwk())(b"probe", signer.sign(b"probe"))


# --------------------------------------------------------------------------- memory store


def test_stores_satisfy_the_keystore_protocol(tmp_path: Path) -> None:
    # The annotation makes mypy check the structure; isinstance checks it at run time.
    stores: list[KeyStore] = [MemoryKeyStore(), FileKeyStore(tmp_path)]
    for store in stores:
        assert isinstance(store, KeyStore)
        ref = store.generate(Alg.ED25519, "k")
        assert store.get_signer(ref).public_jwk().thumbprint() == store.list_keys()[0].key_id


def test_memory_store_generate_get_list_delete() -> None:
    store = MemoryKeyStore()
    assert isinstance(store, KeyStore)
    refs = {alg: store.generate(alg, f"key-{alg.value.lower()}") for alg in ALGS}
    assert refs[Alg.ES256] == "software:key-es256"
    for alg, ref in refs.items():
        signer = store.get_signer(ref)
        assert signer.algorithm is alg
        assert store.get_signer(ref.removeprefix("software:")) is signer
        _works(signer)
    listed = store.list_keys()
    assert [info.name for info in listed] == sorted(info.name for info in listed)
    by_ref = {info.ref: info for info in listed}
    for alg, ref in refs.items():
        assert by_ref[ref].alg is alg
        assert by_ref[ref].key_id == store.get_signer(ref).key_id
        assert by_ref[ref].engine == "cryptography"
    store.delete("software:key-ps256")
    with pytest.raises(KeyNotFound, match="software:key-ps256"):
        store.get_signer("software:key-ps256")
    with pytest.raises(KeyNotFound):
        store.delete("key-ps256")
    assert len(store.list_keys()) == len(ALGS) - 1


def test_memory_store_refuses_duplicates_and_bad_refs() -> None:
    store = MemoryKeyStore()
    ref = store.generate("Ed25519", "agent")
    first = store.get_signer(ref)
    with pytest.raises(KeyExists):
        store.generate("Ed25519", "agent")
    assert store.get_signer(ref) is first
    with pytest.raises(KeyNotFound):
        store.get_signer("software:nobody")
    for bad in (
        "",
        "../agent",
        "a/b",
        ".hidden",
        "x" * 129,
        "file:/tmp/a.pem",
        "pkcs11:object=a",
        "software:a?engine=sodium",
        "nämé",
    ):
        with pytest.raises(InvalidKeyReference):
            store.get_signer(bad)
    with pytest.raises(InvalidKeyReference):
        store.get_signer(42)  # type: ignore[arg-type]


def test_memory_store_engine_is_explicit() -> None:
    store = MemoryKeyStore(engine="sodium")
    ref = store.generate("Ed25519", "fast")
    assert isinstance(store.get_signer(ref), SodiumSigner)
    with pytest.raises(UnsupportedKeyType, match="Ed25519 only"):
        store.generate("ES256", "no-fallback")
    with pytest.raises(KeyNotFound):
        store.get_signer("software:no-fallback")
    explicit = store.generate("ES256", "explicit", engine="cryptography")
    assert isinstance(store.get_signer(explicit), CryptographySigner)
    assert {i.engine for i in store.list_keys()} == {"sodium", "cryptography"}
    with pytest.raises(ValueError, match="engine"):
        MemoryKeyStore(engine="openssl")  # type: ignore[arg-type]


def test_memory_store_import() -> None:
    store = MemoryKeyStore()
    key = ec.generate_private_key(ec.SECP384R1())
    ref = store.import_private_key(key, "imported")
    assert store.get_signer(ref).algorithm is Alg.ES384
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(UnsupportedKeyType, match="explicit algorithm"):
        store.import_private_key(rsa_key, "rsa")
    ref = store.import_private_key(rsa_key, "rsa", alg="RS256", kid="rsa-1")
    assert store.get_signer(ref).key_id == "rsa-1"
    signer = CryptographySigner.generate("Ed25519")
    ref = store.import_private_key(signer, "copied", engine="sodium")
    copied = store.get_signer(ref)
    assert isinstance(copied, SodiumSigner)
    assert copied.sign(b"a") == signer.sign(b"a")


# --------------------------------------------------------------------------- file store


def _pem_files(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


@pytest.mark.parametrize("alg", ALGS)
@pytest.mark.parametrize("passphrase", [None, "store-passphrase"])
def test_file_store_round_trip(tmp_path: Path, alg: Alg, passphrase: str | None) -> None:
    store = FileKeyStore(tmp_path / "keys", passphrase=passphrase)
    ref = store.generate(alg, "agent")
    path = tmp_path / "keys" / "agent.pem"
    assert ref == f"file:{path}"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    content = path.read_bytes()
    assert content.startswith(f"aauth-alg: {alg.value}\naauth-thumbprint: ".encode())
    assert (b"ENCRYPTED PRIVATE KEY" in content) is (passphrase is not None)
    assert _pem_files(tmp_path / "keys") == ["agent.pem"]  # no temporary file left
    signer = store.get_signer(ref)
    assert signer.algorithm is alg
    assert store.get_signer("agent").key_id == signer.key_id
    _works(signer)
    # A second store over the same directory (another process) sees the same key.
    again = FileKeyStore(tmp_path / "keys", passphrase=passphrase).get_signer("agent")
    assert again.public_jwk() == signer.public_jwk()
    [info] = store.list_keys()
    assert info == KeyInfo(
        ref=ref,
        name="agent",
        alg=alg,
        key_id=signer.key_id,
        engine="cryptography",
        encrypted=passphrase is not None,
    )


def test_file_store_passphrase_errors(tmp_path: Path) -> None:
    FileKeyStore(tmp_path, passphrase=b"right-pass-7").generate("ES256", "k")
    with pytest.raises(WrongPassphrase, match="no passphrase") as missing:
        FileKeyStore(tmp_path).get_signer("k")
    with pytest.raises(WrongPassphrase, match="wrong passphrase") as wrong:
        FileKeyStore(tmp_path, passphrase=b"guess-pass-9").get_signer("k")
    for error in (missing.value, wrong.value):
        assert str(tmp_path / "k.pem") in str(error)
        text = str(error) + repr(error)
        assert "right-pass-7" not in text
        assert "guess-pass-9" not in text
    # The per-call passphrase overrides the store's.
    assert FileKeyStore(tmp_path).get_signer("k", passphrase="right-pass-7").algorithm is Alg.ES256
    # Listing needs no passphrase: it reads the header lines.
    assert FileKeyStore(tmp_path).list_keys()[0].encrypted


def test_file_store_never_overwrites(tmp_path: Path) -> None:
    store = FileKeyStore(tmp_path)
    store.generate("Ed25519", "k")
    before = (tmp_path / "k.pem").read_bytes()
    with pytest.raises(KeyExists, match="already exists"):
        store.generate("Ed25519", "k")
    with pytest.raises(KeyExists):
        store.import_private_key(ed25519.Ed25519PrivateKey.generate(), "k")
    assert (tmp_path / "k.pem").read_bytes() == before
    assert _pem_files(tmp_path) == ["k.pem"]


def test_file_store_crash_leaves_no_half_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileKeyStore(tmp_path)

    def crash(fd: int) -> None:
        raise OSError(5, "simulated I/O error")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="simulated"):
        store.generate("ES256", "k")
    assert _pem_files(tmp_path) == []
    with pytest.raises(KeyNotFound):
        store.get_signer("k")


def test_file_store_without_hard_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_link(src: str, dst: str) -> None:
        raise PermissionError(1, "links not supported")

    monkeypatch.setattr(os, "link", no_link)
    store = FileKeyStore(tmp_path)
    ref = store.generate("ES256", "k")
    assert stat.S_IMODE((tmp_path / "k.pem").stat().st_mode) == 0o600
    _works(store.get_signer(ref))
    with pytest.raises(KeyExists):
        store.generate("ES256", "k")
    assert _pem_files(tmp_path) == ["k.pem"]


def test_file_store_damaged_files(tmp_path: Path) -> None:
    store = FileKeyStore(tmp_path)
    store.generate("ES256", "k")
    path = tmp_path / "k.pem"
    good = path.read_bytes()

    def broken(data: bytes) -> type[BackendError]:
        path.write_bytes(data)
        with pytest.raises(BackendError) as info:
            store.get_signer("k")
        return type(info.value)

    assert broken(good[: len(good) // 2]) is InvalidKeyMaterial  # truncated
    assert broken(b"") is InvalidKeyMaterial
    assert broken(b"garbage\n") is InvalidKeyMaterial
    body = good.index(b"-----BEGIN") + 40
    assert broken(good[:body] + b"!!!!" + good[body + 4 :]) is InvalidKeyMaterial
    other = CryptographySigner.generate("ES256").public_jwk().thumbprint()
    header_end = good.index(b"-----BEGIN")
    lines = good[:header_end].decode().splitlines()
    forged = f"{lines[0]}\naauth-thumbprint: {other}\n".encode() + good[header_end:]
    path.write_bytes(forged)
    with pytest.raises(InvalidKeyMaterial, match="thumbprint"):
        store.get_signer("k")
    path.write_bytes(b"aauth-alg: EdDSA\n" + good[header_end:])
    with pytest.raises(InvalidKeyMaterial, match="unknown algorithm"):
        store.get_signer("k")
    path.write_bytes(b"aauth-alg: ES384\n" + good[header_end:])
    with pytest.raises(UnsupportedKeyType, match="cannot sign ES384"):
        store.get_signer("k")
    path.write_bytes(b"A" * (65 * 1024))
    with pytest.raises(InvalidKeyMaterial, match="too large"):
        store.get_signer("k")
    path.write_bytes(good)
    with pytest.raises(InvalidKeyMaterial, match="says ES256"):
        store.get_signer(f"file:{path}?alg=ES384")
    _works(store.get_signer("k"))


def test_file_store_missing_key(tmp_path: Path) -> None:
    store = FileKeyStore(tmp_path)
    with pytest.raises(KeyNotFound, match="absent"):
        store.get_signer("absent")
    with pytest.raises(KeyNotFound):
        store.delete("absent")
    with pytest.raises(BackendError, match="does not exist"):
        FileKeyStore(tmp_path / "nope", create=False)


def test_file_store_confines_references(tmp_path: Path) -> None:
    outside = tmp_path / "outside.pem"
    outside.write_bytes(CryptographySigner.generate("Ed25519").private_pem())
    store = FileKeyStore(tmp_path / "keys")
    (tmp_path / "keys" / "link.pem").symlink_to(outside)
    (tmp_path / "keys" / "dir.pem").mkdir()
    os.mkfifo(tmp_path / "keys" / "fifo.pem")
    for ref in (
        f"file:{outside}",
        "file:../outside.pem",
        "file:%2E%2E/outside.pem",
        "file:link.pem",
        "link",
        "file:.",
        "file:/etc/passwd",
        "software:x",
        "pkcs11:object=x",
        "../outside",
    ):
        with pytest.raises(InvalidKeyReference):
            store.get_signer(ref)
    with pytest.raises(InvalidKeyReference, match="regular file"):
        store.get_signer("dir")
    with pytest.raises(InvalidKeyReference, match="regular file"):
        store.get_signer("fifo")


def test_file_store_reads_foreign_pem_files(tmp_path: Path) -> None:
    """A PEM file dropped in by hand (no header lines) still loads; RSA needs ?alg=."""
    ec_signer = CryptographySigner.generate("ES384")
    (tmp_path / "ec.pem").write_bytes(ec_signer.private_pem())
    rsa_signer = CryptographySigner.generate("RS256")
    (tmp_path / "rsa.pem").write_bytes(rsa_signer.private_pem())
    store = FileKeyStore(tmp_path)
    assert store.get_signer("ec").key_id == ec_signer.key_id
    with pytest.raises(UnsupportedKeyType, match="explicit algorithm"):
        store.get_signer("rsa")
    with pytest.raises(UnsupportedKeyType):
        store.list_keys()
    signer = store.get_signer(f"file:{tmp_path / 'rsa.pem'}?alg=RS256")
    assert signer.key_id == rsa_signer.key_id
    assert store.get_signer("file:rsa.pem?alg=RS256").algorithm is Alg.RS256
    (tmp_path / "rsa.pem").unlink()
    [info] = store.list_keys()
    assert (info.name, info.alg, info.key_id, info.encrypted) == (
        "ec",
        Alg.ES384,
        ec_signer.key_id,
        False,
    )


def test_file_store_engines(tmp_path: Path) -> None:
    store = FileKeyStore(tmp_path, engine="sodium", passphrase="pp")
    ref = store.generate("Ed25519", "ed")
    assert ref.endswith("?engine=sodium")
    signer = store.get_signer(ref)
    assert isinstance(signer, SodiumSigner)
    with pytest.raises(UnsupportedKeyType, match="Ed25519 only"):
        store.generate("ES256", "ec")
    assert not (tmp_path / "ec.pem").exists()
    ec_ref = store.generate("ES256", "ec", engine="cryptography")
    assert isinstance(store.get_signer(ec_ref), CryptographySigner)
    with pytest.raises(UnsupportedKeyType, match="Ed25519 only"):
        store.get_signer(FileUri(path=str(tmp_path / "ec.pem"), engine="sodium").to_uri())
    crypto = store.get_signer(f"file:{tmp_path / 'ed.pem'}?engine=cryptography")
    assert isinstance(crypto, CryptographySigner)
    assert crypto.sign(b"same") == signer.sign(b"same")
    with pytest.raises(ValueError, match="engine"):
        FileKeyStore(tmp_path, engine="nacl")  # type: ignore[arg-type]


def test_file_store_import_and_delete(tmp_path: Path) -> None:
    store = FileKeyStore(tmp_path)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ref = store.import_private_key(key, "rsa", alg=Alg.PS256)
    signer = store.get_signer(ref)
    assert signer.algorithm is Alg.PS256  # recorded in the file, no ?alg= needed
    assert store.list_keys()[0].alg is Alg.PS256
    store.delete(ref)
    assert _pem_files(tmp_path) == []


def test_store_logs_never_carry_secrets(tmp_path: Path) -> None:
    with structlog.testing.capture_logs() as logs:
        store = FileKeyStore(tmp_path, passphrase="file-store-secret")
        ref = store.generate("Ed25519", "k")
        signer = store.get_signer(ref)
        signer.sign(b"x")
        MemoryKeyStore().generate("ES256", "m")
    events = [entry["event"] for entry in logs]
    assert events == [
        "aauth.key.generate",
        "aauth.key.store",
        "aauth.key.load",
        "aauth.key.generate",
        "aauth.key.store",
    ]
    assert logs[1]["encrypted"] is True
    assert logs[1]["key_id"] == signer.key_id
    body = (tmp_path / "k.pem").read_text().split("-----")[2]
    dumped = repr(logs)
    assert "file-store-secret" not in dumped
    assert body.strip().splitlines()[0] not in dumped
    assert "file-store-secret" not in repr(store)


def test_load_key_file_directly(tmp_path: Path) -> None:
    signer = CryptographySigner.generate("ES256")
    path = tmp_path / "direct.pem"
    path.write_bytes(signer.private_pem("pw"))
    assert load_key_file(path, passphrase="pw").key_id == signer.key_id
    assert load_key_file(path, passphrase="pw", kid="cfg").key_id == "cfg"
    with pytest.raises(WrongPassphrase):
        load_key_file(path)
    with pytest.raises(KeyNotFound):
        load_key_file(tmp_path / "missing.pem")
    with pytest.raises(KeyNotFound):
        load_key_file(tmp_path / "direct.pem" / "sub")


# --------------------------------------------------------------------------- references


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("software:agent-1", SoftwareUri(name="agent-1")),
        ("SOFTWARE:a.b_c", SoftwareUri(name="a.b_c")),
        ("file:/etc/aauth/agent.pem", FileUri(path="/etc/aauth/agent.pem")),
        ("file:///etc/aauth/agent.pem", FileUri(path="/etc/aauth/agent.pem")),
        ("file://localhost/k.pem", FileUri(path="/k.pem")),
        ("file:keys/a.pem", FileUri(path="keys/a.pem")),
        ("file:/a%20b/%3Fq.pem", FileUri(path="/a b/?q.pem")),
        ("file:/k.pem?engine=sodium", FileUri(path="/k.pem", engine="sodium")),
        (
            "file:/k.pem?alg=PS256&engine=cryptography",
            FileUri(path="/k.pem", engine="cryptography", alg=Alg.PS256),
        ),
    ],
)
def test_parse_valid_references(text: str, expected: object) -> None:
    parsed = parse_key_ref(text)
    assert parsed == expected
    assert parse_key_ref(parsed.to_uri()) == parsed


def test_parse_pkcs11_rfc7512_examples() -> None:
    uri = parse_key_ref(
        "pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;"
        "manufacturer=Snake%20Oil,%20Inc.;model=1.0;object=my-certificate;"
        "type=cert;id=%69%95%3E%5C%F4%BD%EC%91;serial="
        "?pin-source=file:/etc/token_pin"
    )
    assert isinstance(uri, Pkcs11Uri)
    assert uri.token == "The Software PKCS#11 Softtoken"
    assert uri.get("manufacturer") == b"Snake Oil, Inc."
    assert uri.object == "my-certificate"
    assert uri.type == "cert"
    assert uri.id == bytes([0x69, 0x95, 0x3E, 0x5C, 0xF4, 0xBD, 0xEC, 0x91])
    assert uri.get("serial") == b""
    assert uri.pin_source == "file:/etc/token_pin"
    assert parse_key_ref(uri.to_uri()) == uri

    with_pin = parse_key_ref(
        "pkcs11:token=aauth;object=agent;type=private;slot-id=3"
        "?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=987654"
    )
    assert isinstance(with_pin, Pkcs11Uri)
    assert with_pin.slot_id == 3
    assert with_pin.module_path == "/usr/lib/softhsm/libsofthsm2.so"
    assert with_pin.module_name is None
    assert with_pin.pin_value == "987654"
    assert "987654" not in repr(with_pin)
    assert "987654" not in with_pin.to_uri()
    assert parse_key_ref(with_pin.to_uri(include_pin=True)) == with_pin
    assert parse_key_ref("pkcs11:").attributes == ()  # type: ignore[union-attr]
    assert parse_key_ref("pkcs11:x-vendor=1").get("x-vendor") == b"1"  # type: ignore[union-attr]


HOSTILE = [
    "",
    "agent",
    "http://example.com/key",
    "software:",
    "software:../etc",
    "software:a/b",
    "software:a?x=1",
    "software:a#frag",
    "software:a\x00b",
    "software:\u202eevil",
    "file:",
    "file:?engine=sodium",
    "file:/k.pem?engine=nacl",
    "file:/k.pem?engine=sodium&engine=sodium",
    "file:/k.pem?alg=EdDSA",
    "file:/k.pem?passphrase=hunter2",
    "file:/k.pem?engine",
    "file://evil.example/k.pem",
    "file://localhost",
    "file:/a%00b.pem",
    "file:/a%0Ab.pem",
    "file:/a%ZZ.pem",
    "file:/a%ff.pem",
    "file:/a\nb.pem",
    "file:/k.pem#x",
    "file:" + "a" * 5000,
    "pkcs11:token=a;token=b",
    "pkcs11:tokn=a",
    "pkcs11:token",
    "pkcs11:token=a b",
    "pkcs11:token=%ff",
    "pkcs11:type=secret",
    "pkcs11:slot-id=abc",
    "pkcs11:?pin-value=1&pin-source=file:/p",
    "pkcs11:?pin-value=1&pin-value=2",
    "pkcs11:?module-path=/a&module-path=/b",
    "pkcs11:?unknown=1",
    "pkcs11:object=a#b",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_references_are_refused(text: str) -> None:
    with pytest.raises(InvalidKeyReference) as info:
        parse_key_ref(text)
    assert info.value.status == 500
    assert "hunter2" not in str(info.value)
    assert "\x00" not in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("value", [None, 1, b"software:a", ["software:a"]])
def test_non_string_references_are_refused(value: object) -> None:
    with pytest.raises(InvalidKeyReference):
        parse_key_ref(value)


_REF_TEXT = st.one_of(
    st.text(max_size=200),
    st.builds(
        lambda scheme, rest: scheme + rest,
        st.sampled_from(["software:", "file:", "pkcs11:", "FILE://", "pkcs11:token="]),
        st.text(max_size=120),
    ),
)


@settings(max_examples=400)
@given(text=st.one_of(_REF_TEXT, st.binary(max_size=50), st.integers()))
def test_parse_key_ref_only_raises_invalid_key_reference(text: object) -> None:
    try:
        parsed = parse_key_ref(text)
    except InvalidKeyReference:
        return
    assert isinstance(parsed, SoftwareUri | FileUri | Pkcs11Uri)
    assert (
        parse_key_ref(
            parsed.to_uri(include_pin=True) if isinstance(parsed, Pkcs11Uri) else parsed.to_uri()
        )
        == parsed
    )


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_REF_TEXT)
def test_store_lookups_only_raise_backend_errors(tmp_path: Path, text: str) -> None:
    file_store = FileKeyStore(tmp_path)
    memory = MemoryKeyStore()
    for lookup in (
        file_store.get_signer,
        memory.get_signer,
        lambda ref: open_signer(ref, stores={"file": file_store, "software": memory}),
    ):
        with pytest.raises(BackendError):
            lookup(text)


# --------------------------------------------------------------------------- open_signer


def test_open_signer_resolves_each_scheme(tmp_path: Path) -> None:
    memory = MemoryKeyStore()
    soft_ref = memory.generate("ES256", "agent")
    assert open_signer(soft_ref, stores={"software": memory}) is memory.get_signer(soft_ref)
    with pytest.raises(KeyNotFound, match="no software key store"):
        open_signer(soft_ref)

    signer = CryptographySigner.generate("Ed25519")
    path = tmp_path / "direct key.pem"
    path.write_bytes(signer.private_pem("pp"))
    direct = FileUri(path=str(path)).to_uri()
    assert "%20" in direct
    assert open_signer(direct, passphrase="pp").key_id == signer.key_id
    sodium = open_signer(direct + "?engine=sodium", passphrase=b"pp")
    assert isinstance(sodium, SodiumSigner)
    with pytest.raises(WrongPassphrase):
        open_signer(direct)

    file_store = FileKeyStore(tmp_path / "store")
    stored = file_store.generate("ES384", "k")
    assert open_signer(stored, stores={"file": file_store}).algorithm is Alg.ES384
    # Through a store, file: references are confined to its directory.
    with pytest.raises(InvalidKeyReference, match="outside"):
        open_signer(direct, passphrase="pp", stores={"file": file_store})


def test_open_signer_pkcs11_without_a_module_says_how_to_configure_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AAUTH_PKCS11_MODULE", raising=False)
    ref = "pkcs11:token=aauth;object=agent?pin-value=424242"
    with pytest.raises(BackendError, match="no PKCS#11 module configured") as info:
        open_signer(ref)
    assert "424242" not in str(info.value) + repr(info.value)
    assert info.value.ref is not None and "pkcs11:token=aauth" in info.value.ref


def test_open_signer_delegates_pkcs11_to_a_store() -> None:
    held = CryptographySigner.generate("ES256")

    class FakeToken:
        def __init__(self) -> None:
            self.asked: list[str] = []

        def get_signer(self, ref: str) -> Signer:
            self.asked.append(ref)
            return held

        def list_keys(self) -> Sequence[KeyInfo]:
            return []

        def generate(self, alg: Alg, name: str) -> str:
            raise NotImplementedError

        def import_private_key(
            self, private_key: object, name: str, *, alg: Alg | None = None
        ) -> str:
            raise NotImplementedError

    token = FakeToken()
    ref = "pkcs11:token=t;object=agent"
    assert open_signer(ref, stores={"pkcs11": token}) is held
    assert token.asked == [ref]


def test_open_signer_misuse() -> None:
    with pytest.raises(ValueError, match="file: keys only"):
        open_signer("software:a", passphrase="x", stores={"software": MemoryKeyStore()})
    with pytest.raises(ValueError, match="scheme"):
        open_signer("software:a", stores={"memory": MemoryKeyStore()})
    with pytest.raises(InvalidKeyReference):
        open_signer("agent")
