"""The demo's servers: keys, a throwaway CA, four config files, four ``aauth serve`` processes.

Every server is its own process on its own free loopback port, reached by its AAuth name
(``https://ps.aauth.test``) through the egress policy's ``connect_to`` map and a private
CA (:mod:`aauth_flows.io.devtls`). The resource process serves two resource identities
(``calendar`` for three-party access, ``fed`` whose access an Access Server governs).
:class:`Stack` starts them, waits for each ready line, and always stops them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from attrs import frozen

from aauth_backends.softhsm import SOFTHSM_MODULE, PrivateSoftHsm, softhsm_missing
from aauth_backends.stores import FileKeyStore
from aauth_core.algorithms import Alg
from aauth_core.signer import Signer
from aauth_flows.io.devtls import DevTls, make_dev_tls
from aauth_flows.io.egress import EgressPolicy

__all__ = [
    "AP",
    "PS",
    "AS",
    "CALENDAR",
    "FED",
    "AGENT",
    "PERSON",
    "AgentKey",
    "Stack",
    "agent_key",
]

AP = "https://ap.aauth.test"
PS = "https://ps.aauth.test"
AS = "https://as.aauth.test"
CALENDAR = "https://calendar.aauth.test"
FED = "https://fed.aauth.test"
AGENT = "aauth:assistant@ap.aauth.test"
PERSON = ("alice", "correct horse battery staple")
HOSTS = tuple(url.removeprefix("https://") for url in (AP, PS, AS, CALENDAR, FED))
READY_TIMEOUT = 20.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return (
            "{ "
            + ", ".join(f"{_toml_value(k)} = {_toml_value(v)}" for k, v in value.items())
            + " }"
        )
    raise TypeError(f"no TOML for {type(value).__name__}")


def _toml(common: Mapping[str, Any], tables: Mapping[str, Mapping[str, Any]]) -> str:
    lines = [f"{_toml_value(key)} = {_toml_value(value)}" for key, value in common.items()]
    for name, table in tables.items():
        if name.startswith("[["):
            for entry in table["entries"]:
                lines.append(f"\n{name}")
                lines.extend(f"{_toml_value(k)} = {_toml_value(v)}" for k, v in entry.items())
            continue
        lines.append(f"\n[{name}]")
        lines.extend(f"{_toml_value(k)} = {_toml_value(v)}" for k, v in table.items())
    return "\n".join(lines) + "\n"


@frozen(kw_only=True)
class AgentKey:
    """The agent's key: its signer and where it lives."""

    signer: Signer
    where: str  # "SoftHSM2 token (ES256)" or "software (Ed25519)"


def agent_key(work: Path) -> AgentKey:
    """An ES256 key generated on a private SoftHSM2 token when SoftHSM2 is installed (the
    ``make`` targets install it as root), else an Ed25519 key in a PKCS#8 file."""
    if softhsm_missing() is None:
        PrivateSoftHsm(work / "softhsm").init_token("demo-agent", pin="246810", so_pin="13579111")
        pin = work / "pin.txt"
        pin.write_text("246810")
        pin.chmod(0o600)
        from aauth_backends.pkcs11 import Pkcs11KeyStore  # the [pkcs11] extra

        store = Pkcs11KeyStore.from_uri(
            f"pkcs11:token=demo-agent?module-path={SOFTHSM_MODULE}&pin-source=file:{pin}"
        )
        on_token = store.get_signer(store.generate(Alg.ES256, "agent"))
        return AgentKey(signer=on_token, where="SoftHSM2 token (ES256, not extractable)")
    store_dir = FileKeyStore(work / "keys")
    signer = store_dir.get_signer(store_dir.generate(Alg.ED25519, "agent"))
    return AgentKey(signer=signer, where="software (Ed25519 PKCS#8 file)")


@frozen(kw_only=True)
class Server:
    role: str
    issuer: str
    config: Path
    port: int


class Stack:
    """The four servers of the demo, their files under ``work``, and their processes."""

    def __init__(
        self,
        work: Path,
        agent_thumbprint: str,
        *,
        extra_hosts: Mapping[str, tuple[int, bool]] | None = None,
    ) -> None:
        """``extra_hosts``: more names the servers can reach, ``{host: (loopback port, may
        reach loopback)}`` (tests serve hostile peers there); the certificate covers them."""
        extra = dict(extra_hosts or {})
        self.work = work
        self.tls: DevTls = make_dev_tls(work / "tls", (*HOSTS, *extra))
        self.ports = {role: _free_port() for role in ("ap", "ps", "as", "resource")}
        self.connect_to = {
            host: f"127.0.0.1:{self.ports[role]}"
            for host, role in zip(HOSTS, ("ap", "ps", "as", "resource", "resource"), strict=True)
        }
        self.connect_to.update({host: f"127.0.0.1:{port}" for host, (port, _) in extra.items()})
        self.private_hosts = [*HOSTS, *(host for host, (_, private) in extra.items() if private)]
        keys = FileKeyStore(work / "keys")
        self.key_refs = {role: str(keys.generate(Alg.ED25519, role)) for role in self.ports}
        self.servers = [self._write(role, agent_thumbprint) for role in self.ports]
        self.processes: dict[str, subprocess.Popen[str]] = {}
        self.logs: dict[str, Path] = {}

    @property
    def egress(self) -> EgressPolicy:
        """How the agent (and the scripted person's browser) reach the servers."""
        mapping = {
            host: ("127.0.0.1", int(t.rsplit(":", 1)[1])) for host, t in self.connect_to.items()
        }
        return EgressPolicy(
            private_hosts=self.private_hosts, connect_to=mapping, ca_file=self.tls.ca_file
        )

    def _write(self, role: str, agent_thumbprint: str) -> Server:
        issuer = {"ap": AP, "ps": PS, "as": AS, "resource": CALENDAR}[role]
        common = {
            "issuer": issuer,
            "listen": f"127.0.0.1:{self.ports[role]}",
            "key": self.key_refs[role],
        }
        tables: dict[str, Mapping[str, Any]] = {
            "tls": {"cert": self.tls.cert_file, "key": self.tls.key_file},
            "egress": {
                # loopback only for the five names: any other name or address that a
                # token or a document points at is still refused
                "private_hosts": self.private_hosts,
                "ca_file": self.tls.ca_file,
                "connect_to": self.connect_to,
            },
        }
        tables.update(self._role_tables(role, agent_thumbprint))
        path = self.work / f"{role}.toml"
        path.write_text(_toml(common, tables))
        return Server(role=role, issuer=issuer, config=path, port=self.ports[role])

    def _role_tables(self, role: str, agent_thumbprint: str) -> dict[str, Mapping[str, Any]]:
        if role == "ap":
            return {"ap": {"lifetime": 3600}, "ap.agents": {AGENT: [agent_thumbprint]}}
        if role == "ps":
            return {
                "ps": {
                    "sub_secret": "demo directed-sub secret (not for production)",
                    "access_servers": [AS],
                    "revocation_issuers": [AP],
                    "revocation_endpoints": {CALENDAR: f"{CALENDAR}/revoke", FED: f"{FED}/revoke"},
                },
                "[[ps.people]]": {"entries": [{"id": PERSON[0], "password": PERSON[1]}]},
            }
        if role == "as":
            return {
                "as": {"person_servers": [PS]},
                f'as.resources."{FED}"': {"scopes": ["calendar.read"]},
            }
        return {
            "resource": {"replay": True},
            "[[resource.identities]]": {
                "entries": [
                    {"issuer": CALENDAR, "api": "calendar"},
                    {"issuer": FED, "api": "team", "access_server": AS},
                ]
            },
            # the person signs in at the calendar too before she approves on its own page
            "[[resource.people]]": {"entries": [{"id": PERSON[0], "password": PERSON[1]}]},
        }

    # -- processes --------------------------------------------------------------------------

    def start(self) -> None:
        aauth = Path(sys.executable).with_name("aauth")
        command = [str(aauth)] if aauth.exists() else [sys.executable, "-m", "aauth_flows.cli"]
        for server in self.servers:
            log = self.work / f"{server.role}.log"
            self.logs[server.role] = log
            self.processes[server.role] = subprocess.Popen(  # noqa: S603 - our own command
                [*command, "serve", server.role, "--config", str(server.config)],
                stdout=subprocess.PIPE,
                stderr=log.open("w"),
                text=True,
                env=dict(os.environ),
                start_new_session=True,
            )
        for server in self.servers:
            self._wait_ready(server)

    def _wait_ready(self, server: Server) -> None:
        process = self.processes[server.role]
        stdout = process.stdout
        if stdout is None:  # start() opens every server with stdout=PIPE
            raise RuntimeError(f"aauth serve {server.role} has no stdout pipe")
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            line = stdout.readline()
            if not line and process.poll() is not None:
                break
            if f"aauth {server.role} serving" in line:
                return
        raise RuntimeError(
            f"aauth serve {server.role} did not start; its log:\n{self.log_tail(server.role)}"
        )

    def log_tail(self, role: str, lines: int = 20) -> str:
        log = self.logs.get(role)
        if log is None or not log.exists():
            return "(no log)"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> dict[str, int | None]:
        """SIGTERM every process, then SIGKILL what is still there after 10 s."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        for role, process in self.processes.items():
            try:
                codes[role] = process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                codes[role] = process.wait(timeout=5)
            if process.stdout is not None:
                process.stdout.close()
        return codes
