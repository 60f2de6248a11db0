"""Real servers on loopback for the I/O tests: uvicorn in a thread, TLS from a throwaway CA.

AAuth server identifiers are ``https://`` names without a port, so every live server gets a
name under ``.aauth.test`` and a free loopback port; :func:`policy` maps the names to the
ports (curl's ``--connect-to``) and trusts the CA. Everything on the wire is real: TCP,
TLS, HTTP/1.1 through uvicorn and h11.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import uvicorn

from aauth_flows.io.devtls import DevTls, make_dev_tls
from aauth_flows.io.egress import EgressPolicy

__all__ = ["LiveServer", "free_port", "serve", "policy", "dev_tls"]

_TLS: DevTls | None = None
_TLS_LOCK = threading.Lock()
#: every name a test may serve under (one certificate covers them all)
_TEST_NAMES = ("ap", "ps", "as", "rs", "fed", "calendar", "other", "evil", "app", "api")
HOSTS = (
    *(f"{name}.aauth.test" for name in _TEST_NAMES),
    # tests/flow_world.py's names: the in-memory world served over real HTTP
    "ap.example",
    "ps.example",
    "as.example",
    "resource.example",
    "federated.example",
    "other-ps.example",
)


def dev_tls(tmp_root: str = "/tmp") -> DevTls:
    """One CA and server certificate per test session."""
    global _TLS
    with _TLS_LOCK:
        if _TLS is None:
            import tempfile

            _TLS = make_dev_tls(tempfile.mkdtemp(prefix="aauth-tls-", dir=tmp_root), HOSTS)
        return _TLS


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LiveServer:
    """A uvicorn server running ``app`` in a background thread."""

    def __init__(
        self,
        app: Any,
        host: str,
        *,
        tls: bool = True,
        port: int | None = None,
        certificate: DevTls | None = None,
        **options: Any,
    ) -> None:
        self.host = host
        self.port = port or free_port()
        cert = (certificate or dev_tls()) if tls else None
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            ssl_certfile=cert.cert_file if cert else None,
            ssl_keyfile=cert.key_file if cert else None,
            **options,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.run(self.server.serve())

    @property
    def origin(self) -> str:
        return f"https://{self.host}"

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start for {self.host}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@contextmanager
def serve(apps: Mapping[str, Any], **options: Any) -> Iterator[dict[str, LiveServer]]:
    """Serve each ``{host: app}`` on its own port; stop them all afterwards."""
    servers = {host: LiveServer(app, host, **options) for host, app in apps.items()}
    try:
        for server in servers.values():
            server.start()
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def policy(servers: Mapping[str, LiveServer] | None = None, **overrides: Any) -> EgressPolicy:
    """An egress policy that reaches ``servers`` by name (loopback allowed, the CA trusted)."""
    mapping = {host: ("127.0.0.1", s.port) for host, s in (servers or {}).items()}
    options: dict[str, Any] = {
        "allow_private": True,
        "connect_to": mapping,
        "ca_file": dev_tls().ca_file,
    }
    options.update(overrides)
    return EgressPolicy(**options)
