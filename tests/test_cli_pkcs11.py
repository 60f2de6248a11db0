"""``aauth keygen --backend pkcs11``, ``aauth keys list`` and ``--key pkcs11:…`` against a
private SoftHSM2 token, run as a user runs them (a subprocess each)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from softhsm import SOFTHSM_MODULE, SoftHsm, Token

AAUTH = [sys.executable, "-m", "aauth_flows.cli"]


@pytest.fixture(scope="module")
def hsm() -> SoftHsm:
    return SoftHsm.shared()


@pytest.fixture
def token(hsm: SoftHsm) -> Token:
    return hsm.token("cli")


def run(hsm: SoftHsm, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"SOFTHSM2_CONF": str(hsm.conf)}
    env.pop("AAUTH_PKCS11_PIN", None)
    return subprocess.run(
        [*AAUTH, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def token_uri(token: Token, pin_file: Path) -> str:
    return f"pkcs11:token={token.label}?module-path={SOFTHSM_MODULE}&pin-source=file:{pin_file}"


@pytest.mark.parametrize("alg", ["ES256", "Ed25519"])
def test_keygen_list_sign_and_verify_through_the_token(
    hsm: SoftHsm, token: Token, tmp_path: Path, alg: str
) -> None:
    pin = tmp_path / "pin"
    pin.write_text(token.pin)
    uri = token_uri(token, pin)
    made = run(hsm, "keygen", "--backend", "pkcs11", "--token", uri, "--name", "agent",
               "--alg", alg, "--json", cwd=tmp_path)  # fmt: skip
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)
    assert key["alg"] == alg and key["key"].startswith(f"pkcs11:token={token.label};id=")
    assert "pin-source=" in key["key"] and token.pin not in made.stdout + made.stderr

    listed = run(hsm, "keys", "list", "--store", uri, "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    [entry] = json.loads(listed.stdout)
    assert entry["key"] == key["key"] and entry["kid"] == key["kid"] and entry["engine"] == "pkcs11"

    assert run(hsm, "keygen", "--out", "ap.pem", cwd=tmp_path).returncode == 0
    minted = run(hsm, "token", "mint", "--type", "agent", "--key", "ap.pem",
                 "--iss", "https://agent.example", "--sub", "aauth:bot@agent.example",
                 "--cnf-key", key["key"], cwd=tmp_path)  # fmt: skip
    assert minted.returncode == 0, minted.stderr
    (tmp_path / "agent.jwt").write_text(minted.stdout)
    signed = run(hsm, "sign", "--key", key["key"], "--token", "@agent.jwt", "--method", "GET",
                 "--url", "https://r.example/x", "--out", "req.json", cwd=tmp_path)  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    jwks = run(hsm, "jwk", "--key", "ap.pem", "--jwks", cwd=tmp_path)
    (tmp_path / "ap.jwks").write_text(jwks.stdout)
    verified = run(hsm, "verify", "--request", "req.json", "--jwks",
                   "https://agent.example=ap.jwks", "--json", cwd=tmp_path)  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["key_thumbprint"] == key["kid"]


def test_wrong_pin_is_one_line_without_the_pin(hsm: SoftHsm, token: Token, tmp_path: Path) -> None:
    pin = tmp_path / "pin"
    pin.write_text("987654")
    done = run(hsm, "keys", "list", "--store", token_uri(token, pin), cwd=tmp_path)
    assert done.returncode == 2
    # The backend's warning event may come first; the error is one line, the last one.
    last = done.stderr.rstrip("\n").split("\n")[-1]
    assert last.startswith("aauth: error: ") and "refused the PIN" in last
    assert "987654" not in done.stderr + done.stdout


def test_keygen_argument_rules(hsm: SoftHsm, tmp_path: Path) -> None:
    for args in (
        ["keygen", "--backend", "pkcs11", "--out", "x.pem"],
        ["keygen", "--backend", "pkcs11", "--token", "file:x.pem", "--name", "k"],
        ["keygen", "--token", "pkcs11:token=x", "--name", "k"],
        ["keys", "list", "--store", str(tmp_path / "missing")],
    ):
        done = run(hsm, *args, cwd=tmp_path)
        assert done.returncode == 2 and done.stderr.startswith("aauth: error: "), args
        assert "Traceback" not in done.stderr


def test_keys_list_of_a_key_directory(hsm: SoftHsm, tmp_path: Path) -> None:
    assert run(hsm, "keygen", "--out", "one.pem", "--alg", "ES256", cwd=tmp_path).returncode == 0
    done = run(hsm, "keys", "list", "--store", str(tmp_path), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    [entry] = json.loads(done.stdout)
    assert entry["alg"] == "ES256" and entry["name"] == "one" and entry["key"].startswith("file:")
