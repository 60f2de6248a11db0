"""``aauth serve`` as a real process from a TOML config, and the config file's errors: the
server prints its ready line, answers over HTTPS (metadata and an agent token), stops on
SIGTERM with exit 0; a bad config exits 2 with one line naming the key."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from aauth_backends.software import pkcs8_pem
from aauth_backends.uris import open_signer
from aauth_core.jwk import PublicJwk
from aauth_core.tokens import DWK_AGENT, StaticKeyResolver, verify_agent_token
from aauth_flows.io import egress
from aauth_flows.io.ap_client import request_agent_token
from aauth_flows.io.devtls import DevTls, make_dev_tls
from aauth_flows.io.servers.access import AccessServerSettings
from aauth_flows.io.servers.agent_provider import AgentProviderSettings
from aauth_flows.io.servers.config import ConfigError, build_role_app, load_config

ROOT = Path(__file__).resolve().parent.parent
AP = "https://ap.aauth.test"
AGENT = "aauth:assistant@ap.aauth.test"
READY = re.compile(r"^aauth ap serving https://ap\.aauth\.test on https://127\.0\.0\.1:(\d+)$")


def write_key(path: Path, passphrase: str | None = None) -> str:
    path.write_bytes(pkcs8_pem(ed25519.Ed25519PrivateKey.generate(), passphrase))
    path.chmod(0o600)
    return f"file:{path}"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> DevTls:
    return make_dev_tls(tmp_path_factory.mktemp("tls"), ["ap.aauth.test", "as.aauth.test"])


def ap_config(tmp: Path, tls: DevTls, agent_thumbprint: str, **over: str) -> Path:
    values = {
        "issuer": f'"{AP}"',
        "listen": '"127.0.0.1:0"',
        "key": f'"{write_key(tmp / "ap-key.pem")}"',
    }
    values.update(over)
    common = "\n".join(f"{k} = {v}" for k, v in values.items())
    text = f"""{common}

[tls]
cert = "{tls.cert_file}"
key = "{tls.key_file}"

[egress]
allow_private = true
ca_file = "{tls.ca_file}"
connect_to = {{ "ps.aauth.test" = "127.0.0.1:9" }}
timeout = 3

[ap]
lifetime = 600

[ap.agents]
"{AGENT}" = ["{agent_thumbprint}"]
"""
    path = tmp / "ap.toml"
    path.write_text(text)
    return path


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aauth_flows.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def server(tmp_path: Path, tls: DevTls) -> Iterator[tuple[subprocess.Popen[str], int, Any]]:
    agent_path = tmp_path / "agent-key.pem"
    agent = open_signer(write_key(agent_path))
    config = ap_config(tmp_path, tls, agent.public_jwk().thumbprint())
    proc = subprocess.Popen(
        [sys.executable, "-m", "aauth_flows.cli", "serve", "ap", "--config", str(config)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    stdout = proc.stdout
    assert stdout is not None
    reader = threading.Thread(target=lambda: lines.append(stdout.readline()))
    reader.start()
    reader.join(timeout=30)  # waits for readiness; no assertion on how long it took
    try:
        assert lines, "the server printed no ready line"
        match = READY.match(lines[0].rstrip("\n"))
        assert match, lines[0]
        yield proc, int(match.group(1)), agent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_serve_runs_the_ap_over_https_and_stops_on_sigterm(
    server: tuple[subprocess.Popen[str], int, Any], tls: DevTls
) -> None:
    proc, port, agent = server
    policy = egress.EgressPolicy(
        allow_private=True, ca_file=tls.ca_file, connect_to={"ap.aauth.test": ("127.0.0.1", port)}
    )
    with egress.client(policy) as http:
        document = http.get(f"{AP}/.well-known/aauth-agent.json").json()
        assert document["issuer"] == AP
        jwks = http.get(document["jwks_uri"]).json()
        resolver = StaticKeyResolver(
            {(AP, DWK_AGENT): tuple(PublicJwk.from_dict(k) for k in jwks["keys"])}
        )
        token = request_agent_token(http, AP, agent, AGENT, "https://ps.aauth.test")
        claims = verify_agent_token(token, keys=resolver, now=int(time.time())).claims
        assert str(claims.sub) == AGENT and claims.exp - claims.iat == 600
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert proc.stderr is not None
    stderr = proc.stderr.read()
    assert "Traceback" not in stderr


def one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_bad_configs_exit_2_with_one_line(tmp_path: Path, tls: DevTls) -> None:
    config = ap_config(tmp_path, tls, "thumb", issuer='"http://ap.aauth.test"')
    one_line_error(run_cli("serve", "ap", "--config", str(config)), "issuer")

    config = ap_config(tmp_path, tls, "thumb", lifetime_typo="3")
    one_line_error(run_cli("serve", "ap", "--config", str(config)), "lifetime_typo")

    broken = tmp_path / "broken.toml"
    broken.write_text('issuer = "https://ap.aauth.test"\n[ap\n')
    one_line_error(run_cli("serve", "ap", "--config", str(broken)), "TOML")

    one_line_error(
        run_cli("serve", "ap", "--config", str(tmp_path / "missing.toml")), "missing.toml"
    )


def test_bad_role_section_and_key_exit_2(tmp_path: Path, tls: DevTls) -> None:
    config = ap_config(tmp_path, tls, "thumb")
    text = config.read_text().replace('"aauth:assistant@ap.aauth.test"', '"not-an-agent"')
    config.write_text(text)
    one_line_error(run_cli("serve", "ap", "--config", str(config)), "[ap]", "agents")

    config = ap_config(tmp_path, tls, "thumb", key=f'"file:{tmp_path}/nope.pem"')
    one_line_error(run_cli("serve", "ap", "--config", str(config)), "key")


def _config_text(tmp: Path, tls: DevTls, body: str) -> str:
    path = tmp / "c.toml"
    path.write_text(body)
    return str(path)


def test_load_config_builds_the_context_and_settings(tmp_path: Path, tls: DevTls) -> None:
    secret = "correct horse battery staple"
    key_ref = write_key(tmp_path / "as-key.pem", secret)
    path = _config_text(
        tmp_path,
        tls,
        f"""
issuer = "https://as.aauth.test"
listen = "127.0.0.1:8443"
key = "{key_ref}"
key_secret_env = "TEST_AS_KEY_SECRET"

[egress]
allow_private = true
connect_to = {{ "ps.aauth.test" = "127.0.0.1:40123" }}

[as]
person_servers = ["https://ps.aauth.test"]
[as.resources."https://calendar.aauth.test"]
scopes = ["calendar.read"]
""",
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TEST_AS_KEY_SECRET", secret)
        context, settings, listen, tls_files = load_config(path, "as")
    try:
        assert context.issuer == "https://as.aauth.test" and context.key_ref == key_ref
        assert context.egress.connect_to == {"ps.aauth.test": ("127.0.0.1", 40123)}
        assert context.egress.allow_private and not context.egress.allow_http
        assert isinstance(settings, AccessServerSettings)
        assert settings.resources["https://calendar.aauth.test"].scopes == {"calendar.read"}
        assert (listen.host, listen.port) == ("127.0.0.1", 8443) and tls_files is None
        signature = context.signer.sign(b"x")
        assert len(signature) == 64
        app = build_role_app("as", context, settings)
        routes = {getattr(r, "path", "") for r in app.routes}
        assert {"/.well-known/aauth-access.json", "/token", "/revoke"} <= routes
    finally:
        context.http.close()

    # the passphrase's variable unset, or wrong: one message, no secret in it
    with pytest.raises(ConfigError, match="TEST_AS_KEY_SECRET"):
        load_config(path, "as")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TEST_AS_KEY_SECRET", "Zq9-not-it")
        with pytest.raises(ConfigError, match="key") as caught:
            load_config(path, "as")
        assert "Zq9-not-it" not in str(caught.value)


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('listen = "127.0.0.1"', "listen"),
        ('listen = "example.com:80"', "listen"),
        ("[tls]\ncert = 1", "tls"),
        ('[egress]\nconnect_to = { "a.test" = "a.test:1" }', "egress.connect_to.a.test"),
        ('[egress]\nallow_private = "yes"', "egress.allow_private"),
        ("[egress]\nproxy = 1", "egress.proxy"),
        ("unknown = 1", "unknown"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, tls: DevTls, line: str, key: str) -> None:
    key_ref = write_key(tmp_path / "k.pem")
    path = _config_text(
        tmp_path,
        tls,
        f'issuer = "https://ap.aauth.test"\nkey = "{key_ref}"\n'
        + (line if not line.startswith("[") else "")
        + "\n[ap]\nlifetime = 60\n"
        + (line if line.startswith("[") else ""),
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, "ap")
    message = str(caught.value)
    assert f": {key}" in message and "\n" not in message


def test_unknown_role_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown role"):
        load_config(str(tmp_path / "x.toml"), "idp")
    assert AgentProviderSettings.from_toml({}).agents == {}
