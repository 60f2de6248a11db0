"""Loaded PKCS#11 modules: one per process and path, shared by every store that uses it.

python-pkcs11 initialises modules with ``C_Initialize(NULL)``, which tells SoftHSM2 and
ykcs11 that nobody calls them from several threads: they switch their own locking off and
crash under concurrent calls. Two loadings are safe:

- ``"proxy"``: load p11-kit-proxy, which initialises the real module with OS locking, and
  find the token (by label/serial) among every module registered with p11-kit. No
  application lock: threads run in parallel.
- ``"direct-locked"``: load the module itself and serialise every call into it with one
  lock per module.

``"auto"`` picks the proxy when it is installed and the configured module is registered
with p11-kit (a ``*.module`` file whose ``module:`` line names it), and direct-locked
otherwise. One process must not load the same module both ways (they would share one
instance of it, initialised twice); that is refused.

Fork: a child must not use its parent's handles. A fork bumps an epoch; the next use of a
module in the child unloads and reloads it (``C_Finalize``/``C_Initialize``), and pools
see the new generation and start again (log in, new sessions).
"""

from __future__ import annotations

import contextlib
import glob
import os
import threading
from typing import Any, Literal, TypeAlias

import structlog

from aauth_backends.pkcs11 import _lib
from aauth_backends.pkcs11.errors import ModuleLoadError

__all__ = [
    "Loading",
    "LOADINGS",
    "P11KIT_PROXY",
    "LoadedModule",
    "resolve_loading",
    "p11kit_registered",
    "acquire_module",
    "release_module",
    "fork_epoch",
]

log = structlog.get_logger(__name__)

Loading: TypeAlias = Literal["auto", "proxy", "direct-locked"]
LOADINGS: tuple[Loading, ...] = ("auto", "proxy", "direct-locked")
P11KIT_PROXY = "/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so"
_P11KIT_CONFIG_DIRS = ("/usr/share/p11-kit/modules", "/etc/pkcs11/modules")
_P11KIT_MODULE_DIR = "/usr/lib/x86_64-linux-gnu/pkcs11"

_epoch = 0


def fork_epoch() -> int:
    """Bumped in every forked child; state from an older epoch belongs to the parent."""
    return _epoch


class _NoLock:
    """The proxy's "lock": p11-kit and the module lock for themselves."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _real(path: str) -> str:
    return os.path.realpath(path)


def p11kit_registered(module_path: str, config_dirs: tuple[str, ...] = _P11KIT_CONFIG_DIRS) -> bool:
    """True when a p11-kit ``*.module`` file loads ``module_path`` into the proxy."""
    wanted = _real(module_path)
    for directory in config_dirs:
        for config in sorted(glob.glob(os.path.join(directory, "*.module"))):
            try:
                with open(config, encoding="utf-8") as handle:
                    lines = handle.read().splitlines()
            except OSError:
                continue
            settings: dict[str, str] = {}
            for line in lines:
                name, colon, value = line.partition(":")
                if colon and not line.lstrip().startswith("#"):
                    settings[name.strip()] = value.strip()
            module = settings.get("module")
            if not module:
                continue
            if "p11-kit-proxy" in settings.get("disable-in", ""):
                continue
            enabled = settings.get("enable-in")
            if enabled is not None and "p11-kit-proxy" not in enabled:
                continue
            if not os.path.isabs(module):
                module = os.path.join(_P11KIT_MODULE_DIR, module)
            if _real(module) == wanted:
                return True
    return False


def resolve_loading(
    module_path: str, loading: Loading, *, proxy_path: str = P11KIT_PROXY
) -> Literal["proxy", "direct-locked"]:
    """The loading actually used for ``module_path`` (see the module docstring)."""
    if loading == "direct-locked":
        return "direct-locked"
    usable = os.path.exists(proxy_path) and p11kit_registered(module_path)
    if loading == "proxy":
        if not usable:
            raise ModuleLoadError(
                "loading='proxy' needs p11-kit-proxy and a p11-kit registration of the module",
                ref=module_path,
            )
        return "proxy"
    if loading != "auto":
        raise ValueError(f"loading must be one of {LOADINGS}, not {loading!r}")
    return "proxy" if usable else "direct-locked"


class LoadedModule:
    """A loaded module (or the proxy): the python-pkcs11 ``lib``, its call lock, users."""

    __slots__ = ("_epoch", "generation", "lib", "load_path", "loading", "lock", "serves", "users")

    def __init__(self, load_path: str, loading: Literal["proxy", "direct-locked"]) -> None:
        self.load_path = load_path
        self.loading = loading
        self.lib: Any = _lib.load(load_path)
        self.lock: threading.RLock | _NoLock = (
            _NoLock() if loading == "proxy" else threading.RLock()
        )
        self.users = 0
        self.generation = 0
        self.serves: set[str] = set()
        self._epoch = _epoch

    def ensure_current(self) -> int:
        """Reload the module in a forked child (once); returns the current generation."""
        if self._epoch == _epoch:
            return self.generation
        with _registry_lock:
            if self._epoch != _epoch:
                _lib.unload(self.load_path)
                self.lib = _lib.load(self.load_path)
                self.generation += 1
                self._epoch = _epoch
                log.info(
                    "aauth.pkcs11.reinitialised",
                    module=self.load_path,
                    loading=self.loading,
                    reason="fork",
                )
        return self.generation

    def __repr__(self) -> str:
        return f"LoadedModule({self.load_path!r}, loading={self.loading!r}, users={self.users})"


_registry: dict[str, LoadedModule] = {}
_registry_lock = threading.RLock()


def acquire_module(module_path: str, loading: Loading) -> LoadedModule:
    """The loaded module for ``module_path`` (loading it if needed); call
    :func:`release_module` when done."""
    if not isinstance(module_path, str) or not os.path.isfile(module_path):
        raise ModuleLoadError("the PKCS#11 module file does not exist", ref=str(module_path))
    mode = resolve_loading(module_path, loading)
    load_path = P11KIT_PROXY if mode == "proxy" else module_path
    key = _real(load_path)
    with _registry_lock:
        _check_conflict(module_path, mode)
        module = _registry.get(key)
        if module is None:
            try:
                module = LoadedModule(load_path, mode)
            except _lib.P11Failure as failure:
                raise ModuleLoadError(
                    f"cannot initialise the PKCS#11 module: {failure}", ref=load_path
                ) from failure
            except OSError as exc:
                raise ModuleLoadError(
                    f"cannot load the PKCS#11 module ({type(exc).__name__})", ref=load_path
                ) from exc
            _registry[key] = module
        module.users += 1
        module.serves.add(_real(module_path))
    return module


def _check_conflict(module_path: str, mode: str) -> None:
    real = _real(module_path)
    proxy = _registry.get(_real(P11KIT_PROXY))
    if mode == "direct-locked" and proxy is not None and p11kit_registered(module_path):
        raise ModuleLoadError(
            "this module is already loaded through p11-kit-proxy in this process; "
            "use the same loading for every store",
            ref=module_path,
        )
    if mode == "proxy":
        clash = [m for p, m in _registry.items() if m.loading == "direct-locked"]
        for other in clash:
            if p11kit_registered(other.load_path) or _real(other.load_path) == real:
                raise ModuleLoadError(
                    "a module served by p11-kit-proxy is already loaded directly in this "
                    "process; use the same loading for every store",
                    ref=other.load_path,
                )


def release_module(module: LoadedModule) -> None:
    """Drop one user; the last one unloads the module (``C_Finalize``)."""
    with _registry_lock:
        module.users -= 1
        if module.users > 0:
            return
        _registry.pop(_real(module.load_path), None)
        _lib.unload(module.load_path)


def _after_fork_in_child() -> None:
    global _epoch, _registry_lock
    _epoch += 1
    # Locks held by other parent threads at fork time would stay locked forever.
    _registry_lock = threading.RLock()
    for module in _registry.values():
        if module.loading == "direct-locked":
            module.lock = threading.RLock()


with contextlib.suppress(AttributeError):  # pragma: no branch - POSIX only
    os.register_at_fork(after_in_child=_after_fork_in_child)
