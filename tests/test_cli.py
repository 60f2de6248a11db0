"""The ``aauth`` command, driven in-process through ``main([...])``: every subcommand,
its outputs cross-checked against ``aauth_core`` and ``aauth_backends``, and bad input
answered with one ``aauth: error:`` line and a non-zero exit (never a traceback)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aauth_backends.stores import load_key_file
from aauth_backends.uris import open_signer
from aauth_core.http import HttpRequest
from aauth_core.jwk import PublicJwk
from aauth_core.requests import RequestVerifier
from aauth_core.tokens import (
    DWK_ACCESS,
    DWK_AGENT,
    DWK_PERSON,
    DWK_RESOURCE,
    StaticKeyResolver,
    verify_agent_token,
    verify_auth_token,
    verify_person_token,
    verify_resource_token,
)
from aauth_core.verify import verifier_for
from aauth_flows.cli import main

NOW = 1_800_000_000
AP = "https://agent.example"
PS = "https://ps.example"
AS = "https://as.example"
RESOURCE = "https://resource.example"
AGENT = "aauth:assistant@agent.example"
GET_URL = f"{RESOURCE}/calendar/events?day=today"
PASS_VAR = "AAUTH_TEST_PASSPHRASE"


# --------------------------------------------------------------------------- harness


class Result:
    def __init__(self, rc: int, out: str, err: str) -> None:
        self.rc, self.out, self.err = rc, out, err

    def json(self) -> Any:
        return json.loads(self.out)

    def __repr__(self) -> str:
        return f"Result(rc={self.rc}, out={self.out[:300]!r}, err={self.err[:300]!r})"


Run = Callable[..., Result]


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    """``main`` configures structlog for the process (stderr at that moment, which is
    pytest's capture); put back whatever the rest of the suite had."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    def _run(*argv: str | Path) -> Result:
        capsys.readouterr()
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return Result(rc, captured.out, captured.err)

    return _run


def assert_clean_error(result: Result) -> None:
    """Bad input: exit 2, nothing on stdout, exactly one ``aauth: error:`` line on stderr."""
    assert result.rc == 2, result
    assert result.out == "", result
    lines = result.err.splitlines()
    assert len(lines) == 1, result
    assert lines[0].startswith("aauth: error: "), result
    assert len(lines[0]) > len("aauth: error: "), result
    assert "Traceback" not in result.err


def resolver(jwks_path: Path, *issuers: str) -> StaticKeyResolver:
    keys = tuple(PublicJwk.from_dict(k) for k in json.loads(jwks_path.read_text())["keys"])
    dwks = (DWK_AGENT, DWK_PERSON, DWK_ACCESS, DWK_RESOURCE)
    return StaticKeyResolver({(iss, dwk): keys for iss in issuers for dwk in dwks})


def b64url_json(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


class World:
    """An AP key (cryptography), an agent key (PyNaCl), the AP's JWKS and an agent token."""

    def __init__(self, run: Run, root: Path) -> None:
        self.run, self.root = run, root
        self.ap = root / "ap.pem"
        self.agent = root / "agent.pem"
        self.jwks = root / "ap.jwks"
        ap = run("keygen", "--out", self.ap, "--json")
        agent = run("keygen", "--out", self.agent, "--engine", "sodium", "--json")
        assert ap.rc == 0 and agent.rc == 0, (ap, agent)
        self.ap_kid: str = ap.json()["kid"]
        self.agent_ref: str = agent.json()["key"]
        self.agent_kid: str = agent.json()["kid"]
        jwks = run("jwk", "--key", self.ap, "--jwks")
        assert jwks.rc == 0, jwks
        self.jwks.write_text(jwks.out)
        self.token = self.mint("agent", "--iss", AP, "--sub", AGENT, "--ps", PS)
        self.token_file = root / "agent.jwt"
        self.token_file.write_text(self.token + "\n")

    def path(self, name: str) -> Path:
        return self.root / name

    def mint(self, kind: str, *args: str | Path) -> str:
        result = self.run(
            "token", "mint", "--type", kind, "--key", self.ap, "--cnf-key", self.agent,
            "--now", str(NOW), *args,
        )  # fmt: skip
        assert result.rc == 0, result
        assert result.err == ""
        return result.out.strip()

    def sign(self, name: str, *args: str | Path, token: str | None = None) -> Path:
        """Sign a request (GET to GET_URL unless args say otherwise) into ``name``."""
        out = self.path(name)
        if "--method" not in args:
            args = ("--method", "GET", "--url", GET_URL, *args)
        result = self.run(
            "sign", "--key", self.agent_ref, "--token", token or f"@{self.token_file}",
            "--now", str(NOW), "--out", out, *args,
        )  # fmt: skip
        assert result.rc == 0, result
        return out

    def verify(self, request: Path, *args: str | Path, jwks: str | None = None) -> Result:
        return self.run(
            "verify", "--request", request, "--jwks", jwks or f"{AP}={self.jwks}", *args
        )


@pytest.fixture
def world(run: Run, tmp_path: Path) -> World:
    return World(run, tmp_path)


# --------------------------------------------------------------------------- keygen


@pytest.mark.parametrize("engine", ["cryptography", "sodium"])
def test_keygen_writes_a_private_0600_key_that_loads_with_its_thumbprint(
    run: Run, tmp_path: Path, engine: str
) -> None:
    out = tmp_path / "keys" / "k.pem"  # the directory is created
    result = run("keygen", "--engine", engine, "--out", out, "--json")
    assert result.rc == 0, result
    report = result.json()
    assert report["alg"] == "Ed25519"
    assert report["key"].startswith(f"file:{out}")
    assert ("engine=sodium" in report["key"]) is (engine == "sodium")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    signer = load_key_file(out, engine=engine)  # type: ignore[arg-type]
    assert signer.key_id == report["kid"] == signer.public_jwk().thumbprint()
    assert report["jwk"] == signer.public_jwk().to_dict()
    assert "d" not in report["jwk"]  # public only


def test_keygen_text_output_names_key_alg_and_thumbprint(run: Run, tmp_path: Path) -> None:
    result = run("keygen", "--out", tmp_path / "k.pem")
    assert result.rc == 0, result
    thumbprint = load_key_file(tmp_path / "k.pem").public_jwk().thumbprint()
    assert f"key      file:{tmp_path / 'k.pem'}" in result.out
    assert "alg      Ed25519" in result.out
    assert f"kid      {thumbprint}" in result.out


@pytest.mark.parametrize(("alg", "kty", "crv"), [("ES256", "EC", "P-256"), ("PS256", "RSA", None)])
def test_keygen_other_algorithms_sign_verifiably(
    run: Run, tmp_path: Path, alg: str, kty: str, crv: str | None
) -> None:
    result = run("keygen", "--alg", alg, "--out", tmp_path / "k.pem", "--json")
    assert result.rc == 0, result
    jwk = PublicJwk.from_dict(result.json()["jwk"])
    assert (jwk.kty, jwk.crv, jwk.alg.value) == (kty, crv, alg)
    signer = open_signer(result.json()["key"])
    data = b"signature base"
    signature = signer.sign(data)
    assert verifier_for(jwk)(data, signature)
    assert not verifier_for(jwk)(data + b"!", signature)


def test_keygen_refuses_to_overwrite(run: Run, tmp_path: Path) -> None:
    out = tmp_path / "k.pem"
    assert run("keygen", "--out", out).rc == 0
    before = out.read_bytes()
    result = run("keygen", "--out", out)
    assert_clean_error(result)
    assert "exists" in result.err
    assert out.read_bytes() == before


def test_keygen_with_passphrase_encrypts_and_needs_it(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASS_VAR, "correct horse battery staple")
    out = tmp_path / "enc.pem"
    result = run("keygen", "--out", out, "--passphrase-env", PASS_VAR, "--json")
    assert result.rc == 0, result
    kid = result.json()["kid"]
    assert b"BEGIN ENCRYPTED PRIVATE KEY" in out.read_bytes()
    assert b"correct horse" not in out.read_bytes()

    opened = run("jwk", "--key", out, "--passphrase-env", PASS_VAR)
    assert opened.rc == 0, opened
    assert opened.json()["thumbprint"] == kid

    assert_clean_error(run("jwk", "--key", out))  # no passphrase
    monkeypatch.setenv(PASS_VAR, "not-the-passphrase")
    wrong = run("jwk", "--key", out, "--passphrase-env", PASS_VAR)
    assert_clean_error(wrong)
    assert "passphrase" in wrong.err
    assert "not-the-passphrase" not in wrong.err
    monkeypatch.delenv(PASS_VAR)
    unset = run("jwk", "--key", out, "--passphrase-env", PASS_VAR)
    assert_clean_error(unset)
    assert PASS_VAR in unset.err


def test_keygen_sodium_refuses_non_ed25519(run: Run, tmp_path: Path) -> None:
    result = run("keygen", "--engine", "sodium", "--alg", "ES256", "--out", tmp_path / "k.pem")
    assert_clean_error(result)
    assert not (tmp_path / "k.pem").exists()


# --------------------------------------------------------------------------- jwk


def test_jwk_prints_public_jwk_and_core_thumbprints(world: World, run: Run) -> None:
    result = run("jwk", "--key", world.agent_ref)
    assert result.rc == 0, result
    report = result.json()
    jwk = PublicJwk.from_dict(report["jwk"])
    assert report["thumbprint"] == jwk.thumbprint("sha256") == world.agent_kid
    assert report["thumbprint_sha512"] == jwk.thumbprint("sha512")
    assert report["thumbprint"] != report["thumbprint_sha512"]
    assert "d" not in report["jwk"]
    # the same key through the cryptography engine (a plain path) has the same JWK
    assert run("jwk", "--key", world.agent).json() == report


def test_jwk_jwks_is_a_one_key_jwks(world: World, run: Run) -> None:
    jwks = json.loads(world.jwks.read_text())
    assert list(jwks) == ["keys"] and len(jwks["keys"]) == 1
    jwk = PublicJwk.from_dict(jwks["keys"][0])
    assert jwk.thumbprint() == world.ap_kid == load_key_file(world.ap).key_id
    assert run("jwk", "--key", world.ap).json()["jwk"] == jwks["keys"][0]


# --------------------------------------------------------------------------- token mint


def test_mint_agent_token_verifies_with_core(world: World) -> None:
    verified = verify_agent_token(world.token, keys=resolver(world.jwks, AP), now=NOW)
    claims = verified.claims
    assert (claims.iss, str(claims.sub), claims.ps) == (AP, AGENT, PS)
    assert (claims.iat, claims.exp) == (NOW, NOW + 3600)
    assert claims.cnf.jwk is not None and claims.cnf.jwk.thumbprint() == world.agent_kid
    assert verified.kid == world.ap_kid


def test_mint_agent_token_options(world: World) -> None:
    token = world.mint(
        "agent", "--iss", AP, "--sub", "aauth:assistant+task1@agent.example",
        "--parent-agent", AGENT,
        "--jti", "jti-1", "--lifetime", "600", "--claim", 'attestation={"level": 2}',
        "--claim", "note=plain text",
    )  # fmt: skip
    claims = verify_agent_token(token, keys=resolver(world.jwks, AP), now=NOW).claims
    assert (str(claims.sub), str(claims.parent_agent)) == (
        "aauth:assistant+task1@agent.example",
        AGENT,
    )
    assert (claims.jti, claims.exp - claims.iat, claims.ps) == ("jti-1", 600, None)
    assert claims.extra == {"attestation": {"level": 2}, "note": "plain text"}


def test_mint_person_token_verifies_with_core(world: World) -> None:
    token = world.mint(
        "person", "--iss", PS, "--sub", "user-123", "--aud", RESOURCE, "--tenant", "t1"
    )
    claims = verify_person_token(
        token, keys=resolver(world.jwks, PS), now=NOW, audience=RESOURCE
    ).claims
    assert (claims.iss, claims.sub, claims.aud, claims.tenant) == (PS, "user-123", RESOURCE, "t1")
    assert claims.cnf.jwk is not None and claims.cnf.jwk.thumbprint() == world.agent_kid
    assert b64url_json(token.split(".")[0])["typ"] == "aa-person+jwt"


def test_mint_auth_token_from_ps_and_from_as(world: World) -> None:
    from_ps = world.mint(
        "auth", "--iss", PS, "--sub", "user-123", "--aud", RESOURCE, "--scope", "calendar.read"
    )
    claims = verify_auth_token(
        from_ps, keys=resolver(world.jwks, PS), now=NOW, audience=RESOURCE
    ).claims
    assert (claims.dwk, claims.ps, claims.scope) == (DWK_PERSON, PS, "calendar.read")
    from_as = world.mint(
        "auth", "--iss", AS, "--dwk", DWK_ACCESS, "--ps", PS, "--sub", "user-123", "--aud", RESOURCE
    )
    claims = verify_auth_token(
        from_as, keys=resolver(world.jwks, AS), now=NOW, audience=RESOURCE
    ).claims
    assert (claims.iss, claims.dwk, claims.ps) == (AS, DWK_ACCESS, PS)


def test_mint_resource_token_verifies_with_core(world: World) -> None:
    token = world.mint(
        "resource", "--iss", RESOURCE, "--aud", PS, "--ps", PS, "--sub", "user-123",
        "--presented-jti", "agent-jti", "--lifetime", "300",
    )  # fmt: skip
    claims = verify_resource_token(
        token, keys=resolver(world.jwks, RESOURCE), now=NOW, audience=PS
    ).claims
    assert (claims.presented_jti, claims.agent_jkt) == ("agent-jti", world.agent_kid)
    assert claims.exp - claims.iat == 300


def test_mint_with_cnf_jwk_file(world: World, run: Run) -> None:
    jwk_file = world.path("agent.jwk")
    jwk_file.write_text(json.dumps(run("jwk", "--key", world.agent).json()["jwk"]))
    result = run(
        "token", "mint", "--type", "agent", "--key", world.ap, "--iss", AP, "--sub", AGENT,
        "--cnf-jwk", jwk_file, "--now", str(NOW),
    )  # fmt: skip
    assert result.rc == 0, result
    claims = verify_agent_token(result.out.strip(), keys=resolver(world.jwks, AP), now=NOW).claims
    assert claims.cnf.jwk is not None and claims.cnf.jwk.thumbprint() == world.agent_kid


@pytest.mark.parametrize(
    ("kind", "args", "cap"),
    [
        ("agent", ("--iss", AP, "--sub", AGENT), 86400),
        ("resource", ("--iss", RESOURCE, "--aud", PS, "--ps", PS, "--sub", "u",
                      "--presented-jti", "j"), 300),
    ],
)  # fmt: skip
def test_mint_should_caps_are_lifted_only_on_request(
    world: World, run: Run, kind: str, args: tuple[str, ...], cap: int
) -> None:
    base = ("token", "mint", "--type", kind, "--key", world.ap, "--cnf-key", world.agent, *args)
    assert run(*base, "--lifetime", str(cap)).rc == 0
    over = run(*base, "--lifetime", str(cap + 1))
    assert_clean_error(over)
    assert str(cap) in over.err
    lifted = run(*base, "--lifetime", str(cap + 1), "--allow-long-lifetime", "--now", str(NOW))
    assert lifted.rc == 0, lifted
    assert b64url_json(lifted.out.split(".")[1])["exp"] == NOW + cap + 1


@pytest.mark.parametrize("kind", ["person", "auth"])
def test_mint_one_hour_must_cap_is_never_lifted(world: World, run: Run, kind: str) -> None:
    base = (
        "token", "mint", "--type", kind, "--key", world.ap, "--cnf-key", world.agent,
        "--iss", PS, "--sub", "u", "--aud", RESOURCE,
    )  # fmt: skip
    assert run(*base, "--lifetime", "3600").rc == 0
    for extra in ((), ("--allow-long-lifetime",)):
        result = run(*base, "--lifetime", "3601", *extra)
        assert_clean_error(result)
        assert "3600" in result.err


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (("--type", "agent", "--iss", AP, "--cnf-key", "{agent}"), "--sub"),
        (("--type", "agent", "--iss", AP, "--sub", AGENT), "--cnf-key"),
        (("--type", "person", "--iss", PS, "--sub", "u", "--cnf-key", "{agent}"), "--aud"),
        (("--type", "resource", "--iss", RESOURCE, "--aud", PS, "--ps", PS, "--sub", "u",
          "--cnf-key", "{agent}", "--lifetime", "60"), "--presented-jti"),
        (("--type", "agent", "--iss", "http://agent.example", "--sub", AGENT,
          "--cnf-key", "{agent}"), "https"),
        (("--type", "agent", "--iss", AP, "--sub", "assistant@agent.example",
          "--cnf-key", "{agent}"), "aauth:"),
        (("--type", "agent", "--iss", AP, "--sub", AGENT, "--ps", "not a url",
          "--cnf-key", "{agent}"), "ps"),
        (("--type", "auth", "--iss", AS, "--dwk", "nonsense.json", "--sub", "u", "--aud",
          RESOURCE, "--cnf-key", "{agent}"), "dwk"),
        (("--type", "agent", "--iss", AP, "--sub", AGENT, "--cnf-key", "{agent}",
          "--claim", "iss=https://evil.example"), "--claim iss"),
        (("--type", "agent", "--iss", AP, "--sub", AGENT, "--cnf-key", "{agent}",
          "--claim", "no-equals-sign"), "--claim"),
        (("--type", "agent", "--iss", AP, "--sub", AGENT, "--cnf-key", "{agent}",
          "--lifetime", "0"), "exp"),
        (("--type", "agent", "--iss", AP, "--sub", AGENT, "--cnf-jwk", "{jwks}"), "kty"),
    ],
)  # fmt: skip
def test_mint_errors(world: World, run: Run, args: tuple[str, ...], expect: str) -> None:
    argv = [a.format(agent=world.agent, jwks=world.jwks) for a in args]
    result = run("token", "mint", "--key", world.ap, *argv)
    assert_clean_error(result)
    assert expect in result.err


# --------------------------------------------------------------------------- token inspect


def test_inspect_text_says_unverified(world: World, run: Run) -> None:
    result = run("token", "inspect", world.token)
    assert result.rc == 0, result
    assert result.out.splitlines()[0].startswith("UNVERIFIED")
    assert '"typ": "aa-agent+jwt"' in result.out
    assert f'"sub": "{AGENT}"' in result.out


def test_inspect_json_is_the_decoded_token(world: World, run: Run) -> None:
    header, payload, _ = world.token.split(".")
    for source in (world.token, f"@{world.token_file}"):
        result = run("token", "inspect", "--json", source)
        assert result.rc == 0, result
        report = result.json()
        assert report["verified"] is False
        assert report["header"] == b64url_json(header)
        assert report["payload"] == b64url_json(payload)


def test_inspect_reads_stdin(world: World, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(world.token + "\n"))
    result = run("token", "inspect", "--json", "-")
    assert result.rc == 0, result
    assert result.json()["payload"]["sub"] == AGENT


def test_inspect_decodes_without_verifying(world: World, run: Run) -> None:
    header, payload, _ = world.token.split(".")
    zeros = base64.urlsafe_b64encode(bytes(64)).rstrip(b"=").decode()
    forged = f"{header}.{payload}.{zeros}"
    result = run("token", "inspect", "--json", forged)
    assert result.rc == 0, result
    assert result.json()["verified"] is False
    assert result.json()["payload"] == b64url_json(payload)


# --------------------------------------------------------------------------- sign


def test_sign_prints_the_signature_headers(world: World, run: Run) -> None:
    result = run(
        "sign", "--key", world.agent_ref, "--token", world.token, "--method", "get",
        "--url", GET_URL, "--now", str(NOW),
    )  # fmt: skip
    assert result.rc == 0, result
    lines = result.out.splitlines()
    assert [line.split(":", 1)[0] for line in lines] == [
        "Signature-Key",
        "Signature-Input",
        "Signature",
    ]
    assert lines[0] == f'Signature-Key: sig=jwt;jwt="{world.token}"'
    assert lines[1] == (
        f'Signature-Input: sig=("@method" "@authority" "@path" "signature-key");created={NOW}'
    )
    assert lines[2].startswith("Signature: sig=:") and lines[2].endswith(":")


def test_sign_json_and_out_file_agree_and_verify_with_core(world: World, run: Run) -> None:
    out = world.path("get.json")
    result = run(
        "sign", "--key", world.agent_ref, "--token", f"@{world.token_file}", "--method", "GET",
        "--url", GET_URL, "-H", "Accept: application/json", "--now", str(NOW), "--out", out,
        "--json",
    )  # fmt: skip
    assert result.rc == 0, result
    report = result.json()
    assert set(report["added_headers"]) == {"Signature-Key", "Signature-Input", "Signature"}
    assert json.loads(out.read_text()) == report["request"]
    request = report["request"]
    assert (request["method"], request["url"], request["body"]) == ("GET", GET_URL, "")
    assert ["Accept", "application/json"] in request["headers"]
    verifier = RequestVerifier(keys=resolver(world.jwks, AP), audience=RESOURCE)
    signed = HttpRequest(
        method="GET", url=GET_URL, headers=[tuple(h) for h in request["headers"]], body=b""
    )
    verified = verifier.verify(signed, now=NOW)
    assert verified.key_thumbprint == world.agent_kid
    assert str(verified.agent) == AGENT


def test_sign_engines_agree(world: World, run: Run) -> None:
    """Ed25519 is deterministic: the PyNaCl and cryptography engines sign alike."""
    argv = ("--token", world.token, "--method", "GET", "--url", GET_URL, "--now", str(NOW))
    sodium = run("sign", "--key", world.agent_ref, *argv)
    crypto = run("sign", "--key", world.agent, *argv)
    assert "engine=sodium" in world.agent_ref
    assert sodium.rc == crypto.rc == 0
    assert sodium.out == crypto.out


def test_sign_cover_body_adds_content_digest(world: World, run: Run) -> None:
    body = '{"title": "Lunch", "day": "today"}'
    body_file = world.path("body.json")
    body_file.write_text(body)
    for body_arg in (body, f"@{body_file}"):
        result = run(
            "sign", "--key", world.agent_ref, "--token", world.token, "--method", "POST",
            "--url", f"{RESOURCE}/calendar/events", "-H", "Content-Type: application/json",
            "--body", body_arg, "--cover-body", "--now", str(NOW), "--json",
        )  # fmt: skip
        assert result.rc == 0, result
        added = result.json()["added_headers"]
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert added["Content-Digest"] == f"sha-256=:{digest}:"
        assert '"content-digest" "content-type");created=' in added["Signature-Input"]
        assert result.json()["request"]["body"] == body


def test_sign_binary_body_round_trips_as_base64(world: World, run: Run) -> None:
    body_file = world.path("body.bin")
    body_file.write_bytes(b"\xff\x00\xfe binary")
    out = world.sign(
        "bin.json", "--method", "PUT", "--url", f"{RESOURCE}/blob",
        "-H", "Content-Type: application/octet-stream", "--body", f"@{body_file}", "--cover-body",
    )  # fmt: skip
    request = json.loads(out.read_text())
    assert base64.b64decode(request["body_base64"]) == b"\xff\x00\xfe binary"
    assert world.verify(out, "--now", str(NOW), "--require-body-coverage").rc == 0


# --------------------------------------------------------------------------- verify


def test_verify_valid_json(world: World) -> None:
    result = world.verify(world.sign("get.json"), "--now", str(NOW), "--json")
    assert result.rc == 0, result
    report = result.json()
    assert report["verdict"] == "valid"
    assert report["token"]["typ"] == "aa-agent+jwt"
    assert report["token"]["kid"] == world.ap_kid
    assert report["token"]["claims"]["sub"] == AGENT
    assert (report["agent"], report["person"]) == (AGENT, None)
    assert report["key_thumbprint"] == world.agent_kid
    assert report["created"] == NOW
    assert report["signature_base"].splitlines() == [
        '"@method": GET',
        '"@authority": resource.example',
        '"@path": /calendar/events',
        f'"signature-key": sig=jwt;jwt="{world.token}"',
        f'"@signature-params": ("@method" "@authority" "@path" "signature-key");created={NOW}',
    ]


def test_verify_valid_text(world: World) -> None:
    result = world.verify(world.sign("get.json"), "--now", str(NOW))
    assert result.rc == 0, result
    assert "token    aa-agent+jwt" in result.out
    assert "signature base:" in result.out
    assert '    "@path": /calendar/events' in result.out
    assert f"verdict  VALID: agent {AGENT}, key {world.agent_kid}" in result.out


def test_verify_from_flags_instead_of_a_request_file(world: World, run: Run) -> None:
    request = json.loads(world.sign("get.json").read_text())
    headers = [arg for name, value in request["headers"] for arg in ("-H", f"{name}: {value}")]
    result = run(
        "verify", "--method", "GET", "--url", GET_URL, *headers, "--jwks",
        f"{AP}={world.jwks}", "--now", str(NOW),
    )  # fmt: skip
    assert result.rc == 0, result


def rejected(result: Result, code: str) -> dict[str, Any]:
    assert result.rc == 1, result
    report: dict[str, Any] = result.json()
    assert report["verdict"] == "rejected"
    assert report["status"] == 401
    assert report["error"] == code
    assert report["headers"]["Signature-Error"].startswith(f"error={code}")
    return report


@pytest.mark.parametrize(
    "tamper",
    [
        lambda r: r.update(url=r["url"].replace("/events", "/eventz")),
        lambda r: r.update(url=r["url"].replace("resource.", "resourcf.")),
        lambda r: r.update(method="PUT"),
        lambda r: r["headers"][2].__setitem__(1, r["headers"][2][1].replace("sig=:", "sig=:A", 1)),
    ],
    ids=["path", "authority", "method", "signature"],
)
def test_verify_tampered_request_is_rejected(
    world: World, tamper: Callable[[dict[str, Any]], None]
) -> None:
    path = world.sign("get.json")
    request = json.loads(path.read_text())
    assert request["headers"][2][0] == "Signature"
    tamper(request)
    path.write_text(json.dumps(request))
    result = world.verify(path, "--now", str(NOW), "--json")
    rejected(result, "invalid_signature")
    text = world.verify(path, "--now", str(NOW))
    assert text.rc == 1
    assert "verdict  REJECTED (401)" in text.out
    assert "Signature-Error: error=invalid_signature" in text.out


def test_verify_unsigned_request_is_rejected(world: World) -> None:
    path = world.path("plain.json")
    path.write_text(json.dumps({"method": "GET", "url": GET_URL, "headers": []}))
    rejected(world.verify(path, "--now", str(NOW), "--json"), "invalid_signature")


def test_verify_expired_token_at_exactly_exp(world: World) -> None:
    path = world.sign("get.json")
    wide = ("--window", "7200", "--json")
    assert world.verify(path, "--now", str(NOW + 3599), *wide).rc == 0
    rejected(world.verify(path, "--now", str(NOW + 3600), *wide), "expired_jwt")
    rejected(world.verify(path, "--now", str(NOW + 7200), "--json"), "expired_jwt")


def test_verify_signature_window(world: World) -> None:
    path = world.sign("get.json")
    assert world.verify(path, "--now", str(NOW + 60), "--json").rc == 0
    report = rejected(world.verify(path, "--now", str(NOW + 61), "--json"), "invalid_signature")
    assert "window" in report["detail"]
    assert world.verify(path, "--now", str(NOW + 61), "--window", "61").rc == 0


def test_verify_clock_behind_is_clock_skew(world: World) -> None:
    path = world.sign("get.json")
    assert world.verify(path, "--now", str(NOW - 60), "--json").rc == 0
    rejected(world.verify(path, "--now", str(NOW - 61), "--json"), "clock_skew")
    rejected(world.verify(path, "--now", str(NOW - 3600), "--json"), "clock_skew")


def test_verify_signature_created_in_the_future_is_clock_skew(world: World) -> None:
    """The token is fine at NOW; the signature's ``created`` is 100 s ahead."""
    path = world.path("future.json")
    result = world.run(
        "sign", "--key", world.agent, "--token", world.token, "--method", "GET", "--url",
        GET_URL, "--now", str(NOW + 100), "--out", path,
    )  # fmt: skip
    assert result.rc == 0, result
    report = rejected(world.verify(path, "--now", str(NOW), "--json"), "clock_skew")
    assert "iat" not in report["detail"]


def test_verify_with_the_wrong_jwks(world: World, run: Run) -> None:
    path = world.sign("get.json")
    other = world.path("other.pem")
    assert run("keygen", "--out", other).rc == 0
    other_jwk = run("jwk", "--key", other).json()["jwk"]
    other_jwks = world.path("other.jwks")
    other_jwks.write_text(json.dumps({"keys": [other_jwk]}))
    # another key for the issuer: the token's kid is unknown
    report = rejected(
        world.verify(path, "--now", str(NOW), "--json", jwks=f"{AP}={other_jwks}"), "unknown_key"
    )
    assert world.ap_kid in report["detail"]
    # the AP's JWKS, trusted for another issuer only
    rejected(
        world.verify(path, "--now", str(NOW), "--json", jwks=f"https://other.example={world.jwks}"),
        "unknown_key",
    )
    # a different key published under the AP key's kid: the JWS does not verify
    impostor = world.path("impostor.jwks")
    impostor.write_text(json.dumps({"keys": [{**other_jwk, "kid": world.ap_kid}]}))
    rejected(
        world.verify(path, "--now", str(NOW), "--json", jwks=f"{AP}={impostor}"), "invalid_jwt"
    )
    # an empty JWKS
    empty = world.path("empty.jwks")
    empty.write_text('{"keys": []}')
    rejected(world.verify(path, "--now", str(NOW), "--json", jwks=f"{AP}={empty}"), "unknown_key")


def test_verify_token_signed_by_another_key_of_the_same_holder(world: World, run: Run) -> None:
    """A token bound to one agent key, presented with a signature by another key."""
    intruder = world.path("intruder.pem")
    assert run("keygen", "--out", intruder).rc == 0
    path = world.path("stolen.json")
    result = run(
        "sign", "--key", intruder, "--token", world.token, "--method", "GET", "--url",
        GET_URL, "--now", str(NOW), "--out", path,
    )  # fmt: skip
    assert result.rc == 0, result
    rejected(world.verify(path, "--now", str(NOW), "--json"), "invalid_signature")


def test_verify_body_coverage(world: World) -> None:
    post = (
        "--method", "POST", "--url", f"{RESOURCE}/calendar/events",
        "-H", "Content-Type: application/json", "--body", '{"title": "Lunch"}',
    )  # fmt: skip
    covered = world.sign("covered.json", *post, "--cover-body")
    bare = world.sign("bare.json", *post)
    assert world.verify(covered, "--now", str(NOW), "--require-body-coverage").rc == 0
    assert world.verify(bare, "--now", str(NOW)).rc == 0  # a resource need not ask
    report = rejected(
        world.verify(bare, "--now", str(NOW), "--require-body-coverage", "--json"), "invalid_input"
    )
    assert '"content-digest"' in report["headers"]["Signature-Error"]
    assert "required_input" in report["headers"]["Signature-Error"]
    # one byte of the covered body changes
    request = json.loads(covered.read_text())
    request["body"] = request["body"].replace("Lunch", "Lunck")
    covered.write_text(json.dumps(request))
    report = rejected(world.verify(covered, "--now", str(NOW), "--json"), "invalid_signature")
    assert "Content-Digest" in report["detail"]


def test_verify_person_token_presented_to_its_audience(world: World) -> None:
    person = world.mint("person", "--iss", PS, "--sub", "user-123", "--aud", RESOURCE)
    path = world.sign("person.json", token=person)
    result = world.verify(path, "--now", str(NOW), "--json", jwks=f"{PS}={world.jwks}")
    assert result.rc == 0, result
    assert (result.json()["agent"], result.json()["person"]) == (None, [PS, "user-123"])
    other = world.verify(
        path, "--now", str(NOW), "--json", "--audience", "https://other.example",
        jwks=f"{PS}={world.jwks}",
    )  # fmt: skip
    rejected(other, "invalid_jwt")


def test_verify_refuses_a_resource_token_in_signature_key(world: World) -> None:
    resource = world.mint(
        "resource", "--iss", RESOURCE, "--aud", PS, "--ps", PS, "--sub", "u",
        "--presented-jti", "j", "--lifetime", "300",
    )  # fmt: skip
    path = world.sign("resource.json", token=resource)
    rejected(
        world.verify(path, "--now", str(NOW), "--json", jwks=f"{RESOURCE}={world.jwks}"),
        "invalid_jwt",
    )


# --------------------------------------------------------------------------- bad input


BAD_INVOCATIONS: dict[str, tuple[str, ...]] = {
    "no command": (),
    "unknown command": ("frobnicate",),
    "token without subcommand": ("token",),
    "keygen without --out": ("keygen",),
    "keygen unknown alg": ("keygen", "--alg", "HS256", "--out", "{d}/k.pem"),
    "keygen unknown engine": ("keygen", "--engine", "openssl", "--out", "{d}/k.pem"),
    "keygen not .pem": ("keygen", "--out", "{d}/k.txt"),
    "keygen into a file as directory": ("keygen", "--out", "{ap}/k.pem"),
    "keygen passphrase var unset": ("keygen", "--out", "{d}/k.pem", "--passphrase-env", "NOPE_X"),
    "jwk missing key": ("jwk", "--key", "{d}/missing.pem"),
    "jwk directory as key": ("jwk", "--key", "{d}"),
    "jwk JSON as key": ("jwk", "--key", "{jwks}"),
    "jwk empty key ref": ("jwk", "--key", ""),
    "jwk software ref": ("jwk", "--key", "software:agent"),
    "jwk pkcs11 ref": ("jwk", "--key", "pkcs11:token=x;object=y"),
    "jwk bad file ref": ("jwk", "--key", "file:"),
    "jwk key with newline": ("jwk", "--key", "{d}/a\nb.pem"),
    "mint unknown type": ("token", "mint", "--type", "id", "--key", "{ap}", "--iss", AP),
    "mint missing key": ("token", "mint", "--type", "agent", "--key", "{d}/x.pem", "--iss", AP),
    "mint lifetime not int": ("token", "mint", "--type", "agent", "--key", "{ap}", "--iss", AP,
                              "--lifetime", "1h"),
    "mint cnf-jwk not JSON": ("token", "mint", "--type", "agent", "--key", "{ap}", "--iss", AP,
                              "--sub", AGENT, "--cnf-jwk", "{ap}"),
    "inspect garbage": ("token", "inspect", "garbage"),
    "inspect three garbage parts": ("token", "inspect", "a.b.c"),
    "inspect non-JSON parts": ("token", "inspect", "YWJj.YWJj.YWJj"),
    "inspect empty": ("token", "inspect", ""),
    "inspect missing file": ("token", "inspect", "@{d}/missing.jwt"),
    "inspect directory": ("token", "inspect", "@{d}"),
    "inspect non-UTF-8 file": ("token", "inspect", "@{d}/binary.bin"),
    "sign garbage token": ("sign", "--key", "{agent}", "--token", "garbage", "--method", "GET",
                           "--url", GET_URL),
    "sign token with a quote": ("sign", "--key", "{agent}", "--token", 'a"b.c.d', "--method",
                                "GET", "--url", GET_URL),
    "sign non-ASCII token": ("sign", "--key", "{agent}", "--token", "é.b.c", "--method", "GET",
                             "--url", GET_URL),
    "sign relative URL": ("sign", "--key", "{agent}", "--token", "@{jwt}", "--method", "GET",
                          "--url", "/calendar"),
    "sign not a URL": ("sign", "--key", "{agent}", "--token", "@{jwt}", "--method", "GET",
                       "--url", "not a url"),
    "sign broken IPv6 URL": ("sign", "--key", "{agent}", "--token", "@{jwt}", "--method", "GET",
                             "--url", "https://[::1/x"),
    "sign header without colon": ("sign", "--key", "{agent}", "--token", "@{jwt}", "--method",
                                  "GET", "--url", GET_URL, "-H", "Accept application/json"),
    "sign header name with space": ("sign", "--key", "{agent}", "--token", "@{jwt}", "--method",
                                    "GET", "--url", GET_URL, "-H", "Bad Name: x"),
    "sign header empty name": ("sign", "--key", "{agent}", "--token", "@{jwt}", "--method",
                               "GET", "--url", GET_URL, "-H", ": x"),
    "sign header CRLF injection": ("sign", "--key", "{agent}", "--token", "@{jwt}", "--method",
                                   "GET", "--url", GET_URL, "-H", "X: a\r\nEvil: b"),
    "sign method with space": ("sign", "--key", "{agent}", "--token", "@{jwt}", "--method",
                               "GE T", "--url", GET_URL),
    "sign bad label": ("sign", "--key", "{agent}", "--token", "@{jwt}", "--method", "GET",
                       "--url", GET_URL, "--label", "Not A Key"),
    "sign negative created": ("sign", "--key", "{agent}", "--token", "@{jwt}", "--method", "GET",
                              "--url", GET_URL, "--now", "-5"),
    "sign missing body file": ("sign", "--key", "{agent}", "--token", "@{jwt}", "--method",
                               "POST", "--url", GET_URL, "--body", "@{d}/missing"),
    "sign missing token file": ("sign", "--key", "{agent}", "--token", "@{d}/missing",
                                "--method", "GET", "--url", GET_URL),
    "sign JWKS as key": ("sign", "--key", "{jwks}", "--token", "@{jwt}", "--method", "GET",
                         "--url", GET_URL),
    "sign out into missing dir": ("sign", "--key", "{agent}", "--token", "@{jwt}", "--method",
                                  "GET", "--url", GET_URL, "--out", "{d}/no/such/dir/x.json"),
    "verify without --jwks": ("verify", "--request", "{req}"),
    "verify --jwks without =": ("verify", "--request", "{req}", "--jwks", AP),
    "verify --jwks bad issuer": ("verify", "--request", "{req}", "--jwks", "agent.example={jwks}"),
    "verify --jwks missing file": ("verify", "--request", "{req}", "--jwks", AP + "={d}/none"),
    "verify --jwks directory": ("verify", "--request", "{req}", "--jwks", AP + "={d}"),
    "verify --jwks not JSON": ("verify", "--request", "{req}", "--jwks", AP + "={ap}"),
    "verify --jwks not a JWKS": ("verify", "--request", "{req}", "--jwks", AP + "={req}"),
    "verify --jwks keys not a list": ("verify", "--request", "{req}", "--jwks",
                                      AP + "={d}/keys-object.json"),
    "verify --jwks bad member": ("verify", "--request", "{req}", "--jwks",
                                 AP + "={d}/bad-member.json"),
    "verify --jwks private key": ("verify", "--request", "{req}", "--jwks",
                                  AP + "={d}/private.json"),
    "verify --jwks non-UTF-8": ("verify", "--request", "{req}", "--jwks", AP + "={d}/binary.bin"),
    "verify missing request": ("verify", "--request", "{d}/none.json", "--jwks", AP + "={jwks}"),
    "verify request directory": ("verify", "--request", "{d}", "--jwks", AP + "={jwks}"),
    "verify request not JSON": ("verify", "--request", "{ap}", "--jwks", AP + "={jwks}"),
    "verify request a list": ("verify", "--request", "{d}/list.json", "--jwks", AP + "={jwks}"),
    "verify request bad headers": ("verify", "--request", "{d}/bad-headers.json", "--jwks",
                                   AP + "={jwks}"),
    "verify request no url": ("verify", "--request", "{d}/no-url.json", "--jwks", AP + "={jwks}"),
    "verify request bad base64": ("verify", "--request", "{d}/bad-b64.json", "--jwks",
                                  AP + "={jwks}"),
    "verify request non-UTF-8": ("verify", "--request", "{d}/binary.bin", "--jwks",
                                 AP + "={jwks}"),
    "verify neither request nor url": ("verify", "--method", "GET", "--jwks", AP + "={jwks}"),
    "verify negative window": ("verify", "--request", "{req}", "--jwks", AP + "={jwks}",
                               "--window", "-1"),
    "verify --now not a number": ("verify", "--request", "{req}", "--jwks", AP + "={jwks}",
                                  "--now", "yesterday"),
}  # fmt: skip


@pytest.fixture
def hostile_files(world: World) -> dict[str, str]:
    d = world.root
    (d / "binary.bin").write_bytes(b"\xff\xfe\x00garbage")
    (d / "list.json").write_text("[1, 2, 3]")
    (d / "keys-object.json").write_text('{"keys": {"kty": "OKP"}}')
    (d / "bad-member.json").write_text('{"keys": [{"kty": "OKP", "crv": "Ed25519"}]}')
    jwk = json.loads(world.jwks.read_text())["keys"][0]
    (d / "private.json").write_text(json.dumps({"keys": [{**jwk, "d": jwk["x"]}]}))
    (d / "bad-headers.json").write_text(
        json.dumps({"method": "GET", "url": GET_URL, "headers": [["a", "b", "c"]]})
    )
    (d / "no-url.json").write_text(json.dumps({"method": "GET", "headers": []}))
    (d / "bad-b64.json").write_text(
        json.dumps({"method": "GET", "url": GET_URL, "body_base64": "YWJj!!"})
    )
    return {
        "d": str(d),
        "ap": str(world.ap),
        "agent": str(world.agent),
        "jwks": str(world.jwks),
        "jwt": str(world.token_file),
        "req": str(world.sign("req.json")),
    }


@pytest.mark.parametrize("argv", list(BAD_INVOCATIONS.values()), ids=list(BAD_INVOCATIONS))
def test_bad_input_is_one_clean_line(
    run: Run,
    hostile_files: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    argv: tuple[str, ...],
) -> None:
    monkeypatch.delenv("NOPE_X", raising=False)
    result = run(*(a.format(**hostile_files) for a in argv))
    assert_clean_error(result)


def test_wrong_passphrase_is_one_clean_line(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASS_VAR, "right")
    assert run("keygen", "--out", tmp_path / "k.pem", "--passphrase-env", PASS_VAR).rc == 0
    monkeypatch.setenv(PASS_VAR, "wrong")
    for argv in (
        ("jwk", "--key", tmp_path / "k.pem", "--passphrase-env", PASS_VAR),
        ("sign", "--key", tmp_path / "k.pem", "--passphrase-env", PASS_VAR, "--token", "a.b.c",
         "--method", "GET", "--url", GET_URL),
    ):  # fmt: skip
        assert_clean_error(run(*argv))
    monkeypatch.setenv(PASS_VAR, "")
    assert_clean_error(run("jwk", "--key", tmp_path / "k.pem", "--passphrase-env", PASS_VAR))


request_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
request_objects = st.fixed_dictionaries(
    {},
    optional={
        "method": st.sampled_from(["GET", "POST"]) | request_values,
        "url": st.sampled_from([GET_URL, "https://x", "/p", ""]) | request_values,
        "headers": st.lists(st.tuples(st.text(max_size=12), st.text(max_size=30)), max_size=4)
        | request_values,
        "body": request_values,
        "body_base64": request_values,
    },
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.one_of(request_values, request_objects) | st.binary(max_size=64))
def test_verify_any_request_file_rejects_or_errors_cleanly(
    world: World, run: Run, data: object
) -> None:
    """Whatever the request file holds: exit 1 with a verdict, or exit 2 with one line."""
    path = world.path("fuzz.json")
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(json.dumps(data))
    result = world.verify(path, "--now", str(NOW), "--json")
    if result.rc == 1:
        assert result.json()["verdict"] == "rejected"
        assert result.err == ""
    else:
        assert_clean_error(result)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    method=st.text(max_size=10),
    url=st.text(max_size=40),
    header=st.text(max_size=40),
    token=st.text(max_size=40),
)
def test_sign_any_text_succeeds_or_errors_cleanly(
    world: World, run: Run, method: str, url: str, header: str, token: str
) -> None:
    argv = ["sign", "--key", str(world.agent), "--now", str(NOW)]
    argv += ["--token", token or world.token, "--method", method, "--url", url, "-H", header]
    result = run(*(a for a in argv if "\x00" not in a))
    if result.rc == 0:
        assert result.out.startswith("Signature-Key: ")
    else:
        assert_clean_error(result)


# --------------------------------------------------------------------------- console script


def _console_script() -> Path:
    script = Path(sys.executable).parent / "aauth"
    assert script.is_file() and os.access(script, os.X_OK), f"no console script at {script}"
    return script


def test_console_script_generates_a_key(tmp_path: Path) -> None:
    out = tmp_path / "k.pem"
    proc = subprocess.run(
        [str(_console_script()), "keygen", "--out", str(out), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert json.loads(proc.stdout)["kid"] == load_key_file(out).key_id


def test_console_script_bad_input_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(_console_script()), "jwk", "--key", str(tmp_path / "missing.pem")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.splitlines()) == 1
    assert proc.stderr.startswith("aauth: error: ")


def test_endless_files_are_refused(run: Run) -> None:
    for argv in (
        ("token", "inspect", "@/dev/zero"),
        ("verify", "--request", "/dev/zero", "--jwks", "https://a.example=/dev/zero"),
    ):
        result = run(*argv)
        assert_clean_error(result)
        assert "larger than" in result.err
