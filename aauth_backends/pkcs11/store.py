""":class:`Pkcs11KeyStore`: keys on one PKCS#11 token, as a :class:`KeyStore`.

The store loads the module (see :mod:`aauth_backends.pkcs11.module` for the thread-safe
loadings), finds the token by label and/or serial (never by slot id), logs in once with a
holder session and serves signers from a bounded session pool. Keys are found by CKA_ID,
class and key type; the label is for people (and for lookups without an id).

Failures and recovery (every error names the token and the key, never the PIN):

- wrong PIN, PIN locked: :class:`WrongPin`, :class:`PinLocked`; never retried (every try
  burns one of the token's PIN attempts);
- session handle invalid, user not logged in, object handle invalid: recovered once (a
  new session, a new login, a new key lookup) and retried;
- token removed / not present / device error / module finalised: :class:`TokenRemoved`;
  the pool starts again (new login, new sessions) on the next use;
- anything else from PKCS#11: :class:`Pkcs11Failure`.

Here: opening and closing the store, login, and the signing path with its recovery.
Elsewhere: the config and PIN sources (:mod:`.config`), the error each PKCS#11 fault
becomes (:mod:`.faults`), ``pkcs11:`` key references (:mod:`.refs`), opening a key
(:mod:`.lookup`), and generating, importing and listing keys (:mod:`.provisioning`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

import structlog

from aauth_backends.errors import BackendError, InvalidKeyReference
from aauth_backends.interfaces import KeyInfo, KeyRef
from aauth_backends.pkcs11 import _lib, lookup, provisioning
from aauth_backends.pkcs11.config import MODULE_ENV, PIN_ENV, Pkcs11Config
from aauth_backends.pkcs11.errors import (
    ModuleLoadError,
    PinLocked,
    PinUnavailable,
    Pkcs11Failure,
    StoreClosed,
)
from aauth_backends.pkcs11.faults import RECOVERABLE, TOKEN_GONE, backend_error
from aauth_backends.pkcs11.module import acquire_module, release_module
from aauth_backends.pkcs11.pool import PooledSession, SessionPool
from aauth_backends.pkcs11.signer import Pkcs11KeyDetails, Pkcs11Signer, SignPlan
from aauth_backends.uris import Pkcs11Uri, parse_key_ref
from aauth_core.algorithms import Alg

__all__ = ["Pkcs11Config", "Pkcs11KeyStore", "MODULE_ENV", "PIN_ENV"]

log = structlog.get_logger(__name__)

_T = TypeVar("_T")


# Logins are per process and token; the last store on a token logs out.
_logins: dict[tuple[str, str], int] = {}
_logins_lock = threading.Lock()


class Pkcs11KeyStore:
    """Keys on one token: ``get_signer``, ``list_keys``, ``generate``, ``import_private_key``.

    Opening the store loads the module, finds the token and logs in (errors surface here,
    not at the first signature). Use it as a context manager or call :meth:`close`.
    """

    engine = "pkcs11"

    def __init__(self, config: Pkcs11Config) -> None:
        if not isinstance(config, Pkcs11Config):
            raise TypeError("Pkcs11KeyStore takes a Pkcs11Config")
        self._config = config
        self._module_path = config.resolved_module_path()
        self._token_name = repr(config.token_label or f"serial {config.token_serial}")
        self._serial = config.token_serial or ""
        self._label = config.token_label or ""
        self._mechanisms: frozenset[int] | None = None
        self._closed = False
        self._login_key: tuple[str, str] | None = None
        self._touch_policy = config.touch_policy
        self._module = acquire_module(self._module_path, config.loading)
        try:
            self._pool = SessionPool(
                module=self._module,
                find_token=self._find_token,
                login=self._login,
                size=config.pool_size or os.cpu_count() or 1,
                borrow_timeout=config.borrow_timeout,
                token_name=self._token_name,
            )
            self._guard("open the token", None, lambda: self._pool.holder)
        except BaseException:
            release_module(self._module)
            raise

    @classmethod
    def from_uri(cls, uri: str | Pkcs11Uri, **overrides: Any) -> Pkcs11KeyStore:
        """A store for the token a ``pkcs11:`` URI names (module-path, token, serial, pin)."""
        parsed = parse_key_ref(uri) if isinstance(uri, str) else uri
        if not isinstance(parsed, Pkcs11Uri):
            raise InvalidKeyReference("not a pkcs11: reference", ref=uri)
        serial = parsed.get("serial")
        settings: dict[str, Any] = {
            "module_path": parsed.module_path,
            "token_label": parsed.token,
            "token_serial": None if serial is None else serial.decode("utf-8"),
            "pin": parsed.pin_value,
            "pin_source": parsed.pin_source,
        }
        settings |= overrides
        if not settings.get("module_path") and not os.environ.get(MODULE_ENV):
            raise ModuleLoadError(
                f"no PKCS#11 module configured: module-path= in the URI or ${MODULE_ENV}",
                ref=uri if isinstance(uri, str) else None,
            )
        try:
            config = Pkcs11Config(**settings)
        except ValueError as exc:
            raise InvalidKeyReference(str(exc), ref=uri if isinstance(uri, str) else None) from None
        return cls(config)

    # -- properties

    @property
    def config(self) -> Pkcs11Config:
        return self._config

    @property
    def loading(self) -> str:
        """``"proxy"`` or ``"direct-locked"``: how the module was actually loaded."""
        return self._module.loading

    @property
    def token_label(self) -> str:
        return self._label

    @property
    def token_serial(self) -> str:
        return self._serial

    @property
    def pool(self) -> SessionPool:
        return self._pool

    # -- token and login (called by the pool)

    def _find_token(self, lib: Any) -> Any:
        token = _lib.find_token(lib, self._config.token_label, self._config.token_serial)
        self._label = str(token.label)
        self._serial = bytes(token.serial).decode("ascii", "replace").strip()
        self._token_name = repr(self._label)
        self._pool.token_name = self._token_name
        return token

    def _login(self, token: Any, holder: Any) -> None:
        with self._module.lock:
            flags = _lib.token_flags(token)
        if flags & _lib.FLAG_PIN_LOCKED:
            raise PinLocked(
                f"the user PIN of token {self._token_name} is locked; unlock it with the SO PIN"
            )
        pin = self._config.read_pin()
        if pin is None:
            raise PinUnavailable(f"no PIN configured for token {self._token_name}")
        if flags & _lib.FLAG_PIN_FINAL_TRY:
            log.warning("aauth.pkcs11.pin_final_try", token=self._label)
        try:
            with self._module.lock:
                _lib.login(self._module.lib, holder, pin)
        except _lib.P11Failure as failure:
            if failure.fault is not _lib.Fault.ALREADY_LOGGED_IN:
                log.warning("aauth.pkcs11.login", token=self._label, ok=False, error=failure.name)
                raise
        key = (self._module.load_path, self._serial)
        if self._login_key is None:
            with _logins_lock:
                _logins[key] = _logins.get(key, 0) + 1
            self._login_key = key
        log.info(
            "aauth.pkcs11.login",
            token=self._label,
            serial=self._serial,
            loading=self._module.loading,
            ok=True,
        )

    # -- failures

    def _error(
        self, failure: _lib.P11Failure, what: str, details: Pkcs11KeyDetails | None
    ) -> BackendError:
        return backend_error(
            failure,
            what,
            details,
            token_name=self._token_name,
            module_path=self._module_path,
            touch_policy=self._config.touch_policy,
        )

    def _guard(self, what: str, details: Pkcs11KeyDetails | None, action: Callable[[], _T]) -> _T:
        """Run ``action``; translate a PKCS#11 failure (no retry)."""
        try:
            return action()
        except _lib.P11Failure as failure:
            if failure.fault in TOKEN_GONE:
                self._pool.restart()
            raise self._error(failure, what, details) from failure

    def _prepare_retry(self, failure: _lib.P11Failure, pooled: PooledSession) -> None:
        if failure.fault is _lib.Fault.SESSION:
            self._pool.discard(pooled)
            return
        # Not logged in, or a stale handle (which is also what a logout behind our back
        # looks like: private objects vanish): log in again (an "already logged in"
        # answer is fine) and look the key up afresh.
        pooled.keys.clear()
        self._pool.relogin()

    # -- signing (called by Pkcs11Signer)

    def _plan(self, details: Pkcs11KeyDetails) -> SignPlan:
        """What signing with ``details`` needs on every call, worked out once."""
        mechanism, param = _lib.mechanism_of(details.mechanism)
        return SignPlan(
            details=details,
            cache_key=(details.cka_id, details.label, details.key_type),
            mechanism=mechanism,
            param=param,
        )

    def _find_key(self, pooled: PooledSession, plan: SignPlan) -> Any:
        details = plan.details
        key = _lib.find_private_key(
            pooled.session,
            key_id=details.cka_id or None,
            label=None if details.cka_id else details.label,
            key_type=details.key_type,
        )
        pooled.keys[plan.cache_key] = key
        return key

    def _sign(self, details: Pkcs11KeyDetails, payload: bytes) -> bytes:
        return self._sign_planned(self._plan(details), payload)

    def _sign_planned(self, plan: SignPlan, payload: bytes) -> bytes:
        """Sign on a pooled session, recovering once from a stale session, login or
        handle. The common case is: borrow, cached key handle, ``C_Sign``, give back."""
        if self._closed:
            raise StoreClosed(f"the key store for token {self._token_name} is closed")
        details = plan.details
        if self._touch_policy and _in_event_loop():
            raise BackendError(
                f"key {details.describe()} on token {self._token_name} waits for a touch: "
                "sign from a worker thread (AsyncSignerAdapter), never from the event loop",
                ref=details.ref,
            )
        pin = self._config.read_pin() if details.always_authenticate else None
        pool = self._pool
        module = self._module
        recovered: str | None = None
        while True:
            try:
                pooled = pool.borrow()
                try:
                    if module.loading == "proxy":  # p11-kit and the module lock for themselves
                        key = pooled.keys.get(plan.cache_key)
                        if key is None:
                            key = self._find_key(pooled, plan)
                        signature = _lib.sign_prepared(
                            key, payload, plan.mechanism, plan.param, pin
                        )
                    else:
                        with module.lock:
                            key = pooled.keys.get(plan.cache_key)
                            if key is None:
                                key = self._find_key(pooled, plan)
                            signature = _lib.sign_prepared(
                                key, payload, plan.mechanism, plan.param, pin
                            )
                except _lib.P11Failure as failure:
                    # A failed C_Sign can leave its operation open on the session (a
                    # refused context PIN does): never hand that session to the next call.
                    pool.discard(pooled)
                    if recovered is not None or failure.fault not in RECOVERABLE:
                        raise
                    if self._touch_policy and failure.fault is _lib.Fault.NOT_LOGGED_IN:
                        raise
                    recovered = failure.name
                    self._prepare_retry(failure, pooled)
                    continue
                finally:
                    pool.give_back(pooled)
            except _lib.P11Failure as failure:
                self._sign_failed(failure, details, recovered)
            if recovered is not None:
                log.info(
                    "aauth.pkcs11.recovered",
                    token=self._label,
                    key=details.describe(),
                    alg=details.alg.value,
                    fault=recovered,
                )
            return signature

    def _sign_failed(
        self, failure: _lib.P11Failure, details: Pkcs11KeyDetails, recovered: str | None
    ) -> NoReturn:
        if failure.fault in TOKEN_GONE:
            self._pool.restart()
        error = self._error(failure, "sign", details)
        log.warning(
            "aauth.pkcs11.sign_failed",
            token=self._label,
            key=details.describe(),
            alg=details.alg.value,
            error=failure.name,
            raised=type(error).__name__,
            retried=recovered is not None,
        )
        raise error from failure

    def _bad_signature(self, details: Pkcs11KeyDetails, size: int) -> NoReturn:
        raise Pkcs11Failure(
            f"token {self._token_name} returned a {size}-byte signature for "
            f"{details.alg.value}, key {details.describe()}",
            ref=details.ref,
        )

    # -- opening keys

    def get_signer(self, ref: KeyRef, *, alg: Alg | str | None = None) -> Pkcs11Signer:
        """The signer for the private key ``ref`` names (a ``pkcs11:`` URI or a label).

        Raises ``KeyNotFound``, ``KeyAmbiguous`` (several keys, e.g. one label and no
        id), ``UnsupportedKeyType`` (CKA_SIGN false, key type / algorithm mismatch) or
        ``MechanismUnsupported``.
        """
        return lookup.open_signer(self, ref, alg)

    def _token_mechanisms(self) -> frozenset[int]:
        if self._mechanisms is None:
            token = self._pool.token

            def read() -> frozenset[int]:
                with self._module.lock:
                    return _lib.token_mechanisms(token)

            self._mechanisms = self._guard("list mechanisms", None, read)
        return self._mechanisms

    # -- listing, generating, importing

    def list_keys(self) -> Sequence[KeyInfo]:
        """Every private key on the token that this backend can sign with."""
        return provisioning.list_keys(self)

    def generate(self, alg: Alg | str, name: str, **extra: bool) -> KeyRef:
        """Generate a key pair on the token; returns its ``pkcs11:`` reference.

        The private key is a token object, sensitive, never extractable, may only sign,
        and only with ``alg``'s mechanism (CKA_ALLOWED_MECHANISMS); its CKA_ID is 16
        random bytes and its label ``name``. ``extra`` sets further boolean private-key
        attributes (``always_authenticate=True``).
        """
        return provisioning.generate(self, alg, name, extra)

    def import_private_key(
        self, private_key: Any, name: str, *, alg: Alg | str | None = None
    ) -> KeyRef:
        """Import a ``cryptography`` private key (migration, tests) with ``C_CreateObject``.

        The CKA_ID is the first 16 bytes of SHA-256 over the key's RFC 7638 thumbprint,
        so importing one key twice is refused with ``KeyExists``.
        """
        return provisioning.import_private_key(self, private_key, name, alg)

    # -- lifetime

    def close(self) -> None:
        """Close the sessions (logging out if no other store uses the token) and release
        the module. Signers from this store fail with ``StoreClosed`` afterwards."""
        if self._closed:
            return
        self._closed = True
        last = True
        if self._login_key is not None:
            with _logins_lock:
                count = _logins.get(self._login_key, 1) - 1
                if count > 0:
                    _logins[self._login_key] = count
                    last = False
                else:
                    _logins.pop(self._login_key, None)
        with contextlib.suppress(BackendError):
            self._pool.close(logout=last)
        release_module(self._module)
        log.info("aauth.pkcs11.close", token=self._label, loading=self._module.loading)

    def __enter__(self) -> Pkcs11KeyStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Pkcs11KeyStore(token={self._label or self._token_name!r}, "
            f"module={self._module_path!r}, loading={self._module.loading!r}, "
            f"pool_size={self._pool.size}, closed={self._closed})"
        )

    def __reduce__(self) -> NoReturn:
        raise TypeError("Pkcs11KeyStore holds a token login and cannot be pickled")


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
