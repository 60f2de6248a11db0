"""The reference servers' TOML config file, and running one server (``aauth serve``).

One file per server. The common part builds the :class:`ServerContext`; the role's own
section (``[ap]``, ``[ps]``, ``[as]`` or ``[resource]``) is parsed by that role module's
``<Role>Settings.from_toml``::

    issuer = "https://as.aauth.test"
    listen = "127.0.0.1:8443"          # port 0: a free port, printed when ready
    key = "file:/etc/aauth/as-key.pem" # or "pkcs11:token=aauth;object=as?pin-source=file:..."
    key_secret_env = "AS_KEY_SECRET"   # optional: env var holding the passphrase / PIN

    [tls]                              # optional (without it: plain HTTP behind a proxy)
    cert = "/etc/aauth/server.pem"
    key = "/etc/aauth/server-key.pem"

    [egress]                           # optional; the defaults are the safe ones
    allow_private = false
    private_hosts = ["ps.aauth.test"]  # names allowed to reach private addresses
    allow_http = false
    ca_file = "/etc/aauth/ca.pem"
    timeout = 5.0
    connect_to = { "ps.aauth.test" = "127.0.0.1:40123" }

    [as]
    ...

Every mistake raises :class:`ConfigError` (a ``ValueError``) whose one-line message names
the file and the key; ``aauth serve`` prints it and exits 2. Secrets (passphrases, PINs)
come from the environment or the key URI's ``pin-source`` file, never from this file, and
never reach a message or a log.
"""

from __future__ import annotations

import asyncio
import importlib
import ipaddress
import os
import signal
import socket
import sys
import tomllib
from collections.abc import Mapping
from types import FrameType, ModuleType
from typing import Any, TextIO

import httpx
import structlog
from attrs import frozen

from aauth_core.errors import AAuthError, TokenError
from aauth_core.identifiers import ServerId
from aauth_core.jwk import PublicJwk
from aauth_core.signer import Signer
from aauth_core.tokens.verify import KeyResolver
from aauth_flows.io import egress
from aauth_flows.io.servers.context import ServerContext

__all__ = [
    "ROLES",
    "ConfigError",
    "Listen",
    "TlsFiles",
    "LoadedConfig",
    "load_config",
    "build_role_app",
    "serve",
]

log = structlog.get_logger("aauth.io")

#: role name → its module under :mod:`aauth_flows.io.servers`
ROLES: Mapping[str, str] = {
    "ap": "agent_provider",
    "ps": "ps",
    "as": "access",
    "resource": "resource",
}
_COMMON = {"issuer", "listen", "key", "key_secret_env", "tls", "egress"}
_MAX_CONFIG = 1024 * 1024


class ConfigError(ValueError):
    """A bad config file: the message is one line naming the file and the key."""


@frozen(kw_only=True)
class Listen:
    host: str
    port: int

    def url(self, scheme: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"


@frozen(kw_only=True)
class TlsFiles:
    cert: str
    key: str


@frozen(kw_only=True)
class LoadedConfig:
    context: ServerContext
    settings: Any
    listen: Listen
    tls: TlsFiles | None

    def __iter__(self) -> Any:  # (context, settings, listen, tls)
        return iter((self.context, self.settings, self.listen, self.tls))


class _NoDiscovery:
    """Stands in while :mod:`aauth_flows.io.discovery` is not installed: every peer key
    is unknown (a server that must verify peers refuses, it never trusts blindly)."""

    def resolve(self, issuer: str, dwk: str, kid: str | None) -> PublicJwk:
        raise TokenError(f"no key discovery configured for {issuer}", code="unknown_key")


# -- parsing ----------------------------------------------------------------------------


def _fail(path: str, key: str, problem: str) -> ConfigError:
    line = " ".join(f"{path}: {key}: {problem}".split())
    return ConfigError(line)


def _str(path: str, table: Mapping[str, Any], key: str, *, where: str = "") -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise _fail(path, where + key, "a non-empty string")
    return value


def _bool(path: str, table: Mapping[str, Any], key: str, where: str) -> bool:
    value = table.get(key, False)
    if not isinstance(value, bool):
        raise _fail(path, where + key, "true or false")
    return value


def _address(path: str, key: str, text: str) -> tuple[str, int]:
    host, sep, port_text = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise _fail(path, key, f"{text!r} is not host:port")
    return host, int(port_text)


def _listen(path: str, data: Mapping[str, Any]) -> Listen:
    text = _str(path, data, "listen") or "127.0.0.1:8443"
    host, port = _address(path, "listen", text)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise _fail(path, "listen", "an IP address (or localhost) and a port") from None
    return Listen(host=host, port=port)


def _tls(path: str, data: Mapping[str, Any]) -> TlsFiles | None:
    table = data.get("tls")
    if table is None:
        return None
    if not isinstance(table, Mapping):
        raise _fail(path, "tls", "a table with cert and key")
    unknown = sorted(set(table) - {"cert", "key"})
    if unknown:
        raise _fail(path, f"tls.{unknown[0]}", "unknown key")
    files: dict[str, str] = {}
    for name in ("cert", "key"):
        value = _str(path, table, name, where="tls.")
        if value is None:
            raise _fail(path, f"tls.{name}", "required (a PEM file)")
        if not os.path.isfile(value):
            raise _fail(path, f"tls.{name}", f"no such file {value!r}")
        files[name] = value
    return TlsFiles(cert=files["cert"], key=files["key"])


def _egress(path: str, data: Mapping[str, Any]) -> egress.EgressPolicy:
    table = data.get("egress", {})
    if not isinstance(table, Mapping):
        raise _fail(path, "egress", "a table")
    known = {
        "allow_private",
        "private_hosts",
        "allow_http",
        "ca_file",
        "connect_to",
        "timeout",
        "max_bytes",
    }
    unknown = sorted(set(table) - known)
    if unknown:
        raise _fail(path, f"egress.{unknown[0]}", "unknown key")
    options: dict[str, Any] = {
        "allow_private": _bool(path, table, "allow_private", "egress."),
        "allow_http": _bool(path, table, "allow_http", "egress."),
    }
    hosts = table.get("private_hosts", [])
    if not isinstance(hosts, list) or not all(isinstance(h, str) and h for h in hosts):
        raise _fail(path, "egress.private_hosts", "a list of host names")
    options["private_hosts"] = frozenset(hosts)
    ca_file = _str(path, table, "ca_file", where="egress.")
    if ca_file is not None:
        if not os.path.isfile(ca_file):
            raise _fail(path, "egress.ca_file", f"no such file {ca_file!r}")
        options["ca_file"] = ca_file
    for name, low in (("timeout", 0.1), ("max_bytes", 1024)):
        if name in table:
            value = table[name]
            if isinstance(value, bool) or not isinstance(value, int | float) or value < low:
                raise _fail(path, f"egress.{name}", f"a number ≥ {low}")
            options[name] = int(value) if name == "max_bytes" else float(value)
    mapping = table.get("connect_to", {})
    if not isinstance(mapping, Mapping):
        raise _fail(path, "egress.connect_to", 'a table of "host" = "ip:port"')
    connect_to: dict[str, tuple[str, int]] = {}
    for host, target in mapping.items():
        key = f"egress.connect_to.{host}"
        if not isinstance(target, str):
            raise _fail(path, key, "an ip:port string")
        address, port = _address(path, key, target)
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise _fail(path, key, f"{address!r} is not an IP address") from None
        if port == 0:
            raise _fail(path, key, "port 0")
        connect_to[host] = (address, port)
    options["connect_to"] = connect_to
    return egress.EgressPolicy(**options)


def _secret(path: str, data: Mapping[str, Any]) -> str | None:
    name = _str(path, data, "key_secret_env")
    if name is None:
        return None
    value = os.environ.get(name)
    if value is None:
        raise _fail(path, "key_secret_env", f"environment variable {name} is not set")
    return value


def _open_key(path: str, ref: str, secret: str | None) -> Signer:
    from aauth_backends.errors import BackendError
    from aauth_backends.uris import open_signer

    try:
        if secret is not None and ref.startswith("pkcs11:"):
            from aauth_backends.pkcs11 import Pkcs11KeyStore

            store = Pkcs11KeyStore.from_uri(ref, pin=secret, pin_source=None)
            return open_signer(ref, stores={"pkcs11": store})
        return open_signer(ref, passphrase=secret)
    except BackendError as exc:
        raise _fail(path, "key", f"{exc.code}: {exc.detail}") from None
    except ImportError as exc:
        raise _fail(path, "key", f"the key's backend is not installed ({exc.name})") from None
    except (ValueError, TypeError) as exc:
        raise _fail(path, "key", str(exc)) from None


def _key_ref(path: str, data: Mapping[str, Any]) -> str:
    ref = _str(path, data, "key")
    if ref is None:
        raise _fail(path, "key", "required (file:/path/key.pem or a pkcs11: URI)")
    if not ref.startswith(("file:", "pkcs11:")):
        raise _fail(path, "key", "a file: or pkcs11: key reference")
    return ref


def _key_resolver(http: Any) -> KeyResolver:
    """Discovery over the egress client (imported lazily: written alongside)."""
    try:
        module = importlib.import_module("aauth_flows.io.discovery")
    except ModuleNotFoundError:
        log.warning("aauth.config.no_discovery")
        return _NoDiscovery()
    resolver: KeyResolver = module.Discovery(http)
    return resolver


def _role_module(role: str) -> ModuleType:
    if role not in ROLES:
        raise ConfigError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    name = f"aauth_flows.io.servers.{ROLES[role]}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"the {role} server is not available ({exc.name})") from None


#: the settings class each role module is expected to name (else its one ``*Settings``)
_SETTINGS = {
    "ap": "AgentProviderSettings",
    "ps": "PersonServerSettings",
    "as": "AccessServerSettings",
    "resource": "ResourceSettings",
}


def _settings_class(role: str, module: ModuleType) -> Any:
    preferred = getattr(module, _SETTINGS[role], None)
    if preferred is not None and hasattr(preferred, "from_toml"):
        return preferred
    names = [n for n in getattr(module, "__all__", dir(module)) if n.endswith("Settings")]
    found = [getattr(module, n) for n in names if hasattr(getattr(module, n), "from_toml")]
    if len(found) != 1:
        raise ConfigError(f"{module.__name__} has no single <Role>Settings with from_toml")
    return found[0]


def _read(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            raw = handle.read(_MAX_CONFIG + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror})") from None
    if len(raw) > _MAX_CONFIG:
        raise ConfigError(f"{path}: the config file is over {_MAX_CONFIG} bytes")
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise _fail(path, "TOML", str(exc)) from None


def load_config(path: str, role: str) -> LoadedConfig:
    """Read ``path`` for ``role``: the :class:`ServerContext`, the role's settings, where
    to listen and the TLS files. Unpacks as ``(context, settings, listen, tls)``."""
    module = _role_module(role)
    data = _read(path)
    unknown = sorted(set(data) - _COMMON - set(ROLES))
    if unknown:
        raise _fail(path, unknown[0], "unknown key")
    issuer = _str(path, data, "issuer")
    if issuer is None:
        raise _fail(path, "issuer", "required (https://host, no port or path)")
    try:
        if str(ServerId.parse(issuer)) != issuer:
            raise _fail(path, "issuer", "not in canonical form")
    except AAuthError as exc:
        raise _fail(path, "issuer", exc.detail) from None
    listen = _listen(path, data)
    tls = _tls(path, data)
    policy = _egress(path, data)
    section = data.get(role, {})
    if not isinstance(section, Mapping):
        raise _fail(path, role, "a table")
    try:
        settings = _settings_class(role, module).from_toml(section)
    except (ValueError, TypeError, AAuthError) as exc:
        raise _fail(path, f"[{role}]", str(exc)) from None
    ref = _key_ref(path, data)
    signer = _open_key(path, ref, _secret(path, data))
    http = egress.client(policy)
    context = ServerContext(
        issuer=issuer,
        signer=signer,
        key_ref=ref,
        egress=policy,
        http=http,
        keys=_key_resolver(http),
    )
    return LoadedConfig(context=context, settings=settings, listen=listen, tls=tls)


def build_role_app(role: str, context: ServerContext, settings: Any) -> Any:
    """``<role module>.build_app(context, settings)``."""
    return _role_module(role).build_app(context, settings)


# -- running --------------------------------------------------------------------------------


def _bind(listen: Listen) -> socket.socket:
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((listen.host, listen.port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"listen: cannot bind {listen.host}:{listen.port} ({exc.strerror})"
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _ignore(_signum: int, _frame: FrameType | None) -> None:
    """Uvicorn re-raises the signal that stopped it; once it has shut down gracefully,
    the process exits 0 instead of dying of that signal."""


def _server_class() -> Any:
    import uvicorn

    class _Server(uvicorn.Server):
        """Closes this server's outbound connections as soon as it is told to stop.

        Servers call each other (discovery, federation, revocation) over keep-alive TLS. A
        stopping uvicorn waits for every open connection to close, and an idle TLS
        connection only closes when its client does: two servers stopping together would
        each wait out the whole grace period for the other. Closing our own client first
        lets every peer finish at once."""

        def __init__(self, config: Any, outbound: httpx.Client) -> None:
            super().__init__(config)
            self._outbound = outbound

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            self._outbound.close()
            super().handle_exit(sig, frame)

    return _Server


async def _run(server: Any, sock: socket.socket, ready: str, out: TextIO) -> None:
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.02)
    if server.started:
        print(ready, file=out, flush=True)
    await task


def serve(role: str, path: str, *, out: TextIO | None = None) -> int:
    """Run the ``role`` server the config file describes until SIGTERM/SIGINT; 0 when it
    stopped gracefully. Prints ``aauth <role> serving <issuer> on <url>`` once ready."""
    import uvicorn

    context, settings, listen, tls = load_config(path, role)
    try:
        app = build_role_app(role, context, settings)
        sock = _bind(listen)
        bound = Listen(host=listen.host, port=sock.getsockname()[1])
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            ssl_certfile=tls.cert if tls else None,
            ssl_keyfile=tls.key if tls else None,
            timeout_graceful_shutdown=10,
        )
        server = _server_class()(config, context.http)
        scheme = "https" if tls else "http"
        ready = f"aauth {role} serving {context.issuer} on {bound.url(scheme)}"
        previous = {s: signal.signal(s, _ignore) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            asyncio.run(_run(server, sock, ready, out or sys.stdout))
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
            sock.close()
        log.info("aauth.serve.stopped", role=role, issuer=context.issuer)
        return 0
    finally:
        context.http.close()
