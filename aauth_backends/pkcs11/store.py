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
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

import structlog
from attrs import field, frozen, validators

from aauth_backends.errors import (
    BackendError,
    InvalidKeyReference,
    KeyAmbiguous,
    KeyExists,
    KeyNotFound,
    MechanismUnsupported,
    UnsupportedKeyType,
)
from aauth_backends.interfaces import KeyInfo, KeyRef
from aauth_backends.pkcs11 import _lib
from aauth_backends.pkcs11.errors import (
    ModuleLoadError,
    PinLocked,
    PinUnavailable,
    Pkcs11Failure,
    StoreClosed,
    TokenNotFound,
    TokenRemoved,
    UserPresenceTimeout,
    WrongPin,
)
from aauth_backends.pkcs11.keys import (
    ALG_PROFILES,
    alg_for_key,
    import_material,
    public_jwk_from_attributes,
)
from aauth_backends.pkcs11.module import (
    LOADINGS,
    Loading,
    acquire_module,
    release_module,
)
from aauth_backends.pkcs11.pool import PooledSession, SessionPool
from aauth_backends.pkcs11.signer import Pkcs11KeyDetails, Pkcs11Signer, SignPlan
from aauth_backends.software import as_alg, resolve_alg
from aauth_backends.uris import Pkcs11Uri, check_key_name, parse_key_ref
from aauth_core.algorithms import Alg
from aauth_core.jwk import PublicJwk

__all__ = ["Pkcs11Config", "Pkcs11KeyStore", "MODULE_ENV", "PIN_ENV"]

log = structlog.get_logger(__name__)

MODULE_ENV = "AAUTH_PKCS11_MODULE"
PIN_ENV = "AAUTH_PKCS11_PIN"
_MAX_PIN_FILE = 4096
_RECOVERABLE = frozenset({_lib.Fault.SESSION, _lib.Fault.NOT_LOGGED_IN, _lib.Fault.OBJECT})
_T = TypeVar("_T")


def _positive_or_none(_inst: object, attribute: Any, value: int | None) -> None:
    if value is not None and (not isinstance(value, int) or value < 1):
        raise ValueError(f"{attribute.name} must be a positive integer")


def _check_loading(_inst: object, _attribute: object, value: object) -> None:
    if value not in LOADINGS:
        raise ValueError(f"loading must be one of {LOADINGS}, not {value!r}")


@frozen(kw_only=True)
class Pkcs11Config:
    """How to reach one token. The PIN is kept out of ``repr`` and every message.

    ``module_path`` defaults to ``$AAUTH_PKCS11_MODULE``; the PIN comes from ``pin``,
    else ``pin_source`` (``file:/path`` or a path; the first line is the PIN), else
    ``$AAUTH_PKCS11_PIN``. ``pool_size`` defaults to the CPU count. ``touch_policy``:
    the token's keys need a touch (YubiKey), so a missing confirmation is reported as
    :class:`UserPresenceTimeout` and not mistaken for a logout.
    """

    module_path: str | None = None
    token_label: str | None = None
    token_serial: str | None = None
    pin: str | None = field(default=None, repr=False)
    pin_source: str | None = None
    pool_size: int | None = field(default=None, validator=_positive_or_none)
    borrow_timeout: float = 5.0
    loading: Loading = field(default="auto", validator=_check_loading)
    rsa_bits: int = field(default=2048, validator=validators.in_((2048, 3072, 4096)))
    touch_policy: bool = False

    def __attrs_post_init__(self) -> None:
        if self.token_label is None and self.token_serial is None:
            raise ValueError("a PKCS#11 token is selected by token_label and/or token_serial")
        if self.pin is not None and self.pin_source is not None:
            raise ValueError("pin and pin_source exclude each other")
        if not self.borrow_timeout > 0:
            raise ValueError("borrow_timeout must be positive")

    def resolved_module_path(self) -> str:
        path = self.module_path or os.environ.get(MODULE_ENV)
        if not path:
            raise ModuleLoadError(f"no PKCS#11 module configured (module_path or ${MODULE_ENV})")
        return path

    def read_pin(self) -> str | None:
        """The PIN, read when logging in (a pin-source file may be rotated)."""
        if self.pin is not None:
            return self.pin
        if self.pin_source is not None:
            return _read_pin_source(self.pin_source)
        return os.environ.get(PIN_ENV)


def _read_pin_source(source: str) -> str:
    if source.startswith("|"):
        raise PinUnavailable("pin-source commands ('|…') are not run; use file: or a path")
    path = source[len("file:") :] if source.startswith("file:") else source
    if path.startswith("//"):
        path = path[2:] if path.startswith("///") else "/" + path.partition("/")[2]
    try:
        with open(path, "rb") as handle:
            data = handle.read(_MAX_PIN_FILE + 1)
    except OSError as exc:
        raise PinUnavailable(f"cannot read the pin-source file ({type(exc).__name__})") from None
    if len(data) > _MAX_PIN_FILE:
        raise PinUnavailable("the pin-source file is too large")
    try:
        return data.decode("utf-8").splitlines()[0] if data.strip() else ""
    except UnicodeDecodeError:
        raise PinUnavailable("the pin-source file is not UTF-8") from None


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

    def _error(self, failure: _lib.P11Failure, what: str, details: Any) -> BackendError:
        key = f", key {details.describe()}" if details is not None else ""
        where = f"token {self._token_name}{key}"
        ref = details.ref if details is not None else None
        fault = failure.fault
        text = f"{what} failed on {where}: {failure.name}"
        if fault is _lib.Fault.PIN_INCORRECT:
            return WrongPin(f"token {self._token_name} refused the PIN ({failure.name})")
        if fault is _lib.Fault.PIN_LOCKED:
            return PinLocked(f"the user PIN of token {self._token_name} is locked or expired")
        if fault in (_lib.Fault.DEVICE, _lib.Fault.NOT_INITIALIZED):
            return TokenRemoved(
                f"{what}: token {self._token_name} is removed or failing ({failure.name}){key}",
                ref=ref,
            )
        if fault in (_lib.Fault.NO_SUCH_TOKEN, _lib.Fault.MANY_TOKENS):
            many = fault is _lib.Fault.MANY_TOKENS
            return TokenNotFound(
                f"{'several tokens match' if many else 'no token matches'} "
                f"{self._token_name} in module {self._module_path}"
            )
        if fault is _lib.Fault.NO_SUCH_KEY:
            return KeyNotFound(f"no private key matches on {where}", ref=ref)
        if fault is _lib.Fault.MANY_KEYS:
            return KeyAmbiguous(f"several private keys match on {where}", ref=ref)
        if fault is _lib.Fault.MECHANISM:
            return MechanismUnsupported(text, ref=ref)
        if fault is _lib.Fault.KEY_TYPE:
            return UnsupportedKeyType(text, ref=ref)
        if self._config.touch_policy and fault in (
            _lib.Fault.FUNCTION_FAILED,
            _lib.Fault.NOT_LOGGED_IN,
        ):
            return UserPresenceTimeout(
                f"{what} on {where} was not confirmed on the device (touch or PIN)", ref=ref
            )
        return Pkcs11Failure(text, ref=ref)

    def _guard(self, what: str, details: Any, action: Callable[[], _T]) -> _T:
        """Run ``action``; translate a PKCS#11 failure (no retry)."""
        try:
            return action()
        except _lib.P11Failure as failure:
            if failure.fault in (_lib.Fault.DEVICE, _lib.Fault.NOT_INITIALIZED):
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
                    if recovered is not None or failure.fault not in _RECOVERABLE:
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
        if failure.fault in (_lib.Fault.DEVICE, _lib.Fault.NOT_INITIALIZED):
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

    def _parse_ref(self, ref: KeyRef) -> tuple[bytes | None, str | None, Alg | None]:
        """(CKA_ID, label, algorithm) from a ``pkcs11:`` URI or a bare key label."""
        if not isinstance(ref, str):
            raise InvalidKeyReference("a key reference must be a string", ref=ref)
        if not ref.lower().startswith("pkcs11:"):
            return None, check_key_name(ref), None
        uri = parse_key_ref(ref)
        assert isinstance(uri, Pkcs11Uri)
        if uri.token is not None and uri.token != self._label:
            raise InvalidKeyReference(
                f"the reference names another token than {self._token_name}", ref=ref
            )
        serial = uri.get("serial")
        if serial is not None and serial.decode("utf-8") != self._serial:
            raise InvalidKeyReference("the reference names another token serial", ref=ref)
        if uri.type not in (None, "private"):
            raise InvalidKeyReference("a signing key reference has type=private", ref=ref)
        if uri.module_path is not None and os.path.realpath(uri.module_path) != os.path.realpath(
            self._module_path
        ):
            raise InvalidKeyReference("the reference names another PKCS#11 module", ref=ref)
        raw_alg = uri.get("x-alg")
        alg = None if raw_alg is None else as_alg(raw_alg.decode("utf-8"), ref=ref)
        if uri.id is None and uri.object is None:
            raise InvalidKeyReference("a key reference needs id= or object=", ref=ref)
        return uri.id, uri.object, alg

    def get_signer(self, ref: KeyRef, *, alg: Alg | str | None = None) -> Pkcs11Signer:
        """The signer for the private key ``ref`` names (a ``pkcs11:`` URI or a label).

        Raises ``KeyNotFound``, ``KeyAmbiguous`` (several keys, e.g. one label and no
        id), ``UnsupportedKeyType`` (CKA_SIGN false, key type / algorithm mismatch) or
        ``MechanismUnsupported``.
        """
        key_id, label, ref_alg = self._parse_ref(ref)
        wanted = None if alg is None else as_alg(alg, ref=ref)
        if wanted is not None and ref_alg is not None and wanted is not ref_alg:
            raise UnsupportedKeyType(
                f"the reference says {ref_alg.value}, the caller {wanted.value}", ref=ref
            )
        wanted = wanted or ref_alg
        display = _make_ref(self._label, key_id, label, None) if key_id or label else str(ref)
        probe = Pkcs11KeyDetails(
            ref=display,
            token_label=self._label,
            token_serial=self._serial,
            label=label,
            cka_id=key_id or b"",
            key_type=0,
            alg=wanted or Alg.ES256,
            mechanism=0,
            always_authenticate=False,
            loading=self._module.loading,
            module_path=self._module_path,
        )

        def describe(session: Any) -> tuple[dict[str, Any], dict[str, Any]]:
            with self._module.lock:
                private = _lib.find_private_key(session, key_id=key_id, label=label, key_type=None)
                attrs = _lib.key_attributes(
                    private,
                    (
                        "id",
                        "label",
                        "key_type",
                        "sign",
                        "ec_params",
                        "modulus",
                        "public_exponent",
                        "always_authenticate",
                        "allowed_mechanisms",
                    ),
                )
                public: dict[str, Any] = {}
                if attrs.get("key_type") != _lib.CKK_RSA:
                    pub = _lib.find_public_key(
                        session, key_id=attrs.get("id", b""), key_type=attrs["key_type"]
                    )
                    if pub is not None:
                        public = _lib.key_attributes(pub, ("ec_point",))
            return attrs, public

        with self._pool.admin_session() as session:
            attrs, public = self._guard("open key", probe, lambda: describe(session))
        return self._signer_from(attrs, public, wanted, display)

    def _signer_from(
        self, attrs: dict[str, Any], public: dict[str, Any], wanted: Alg | None, ref: str
    ) -> Pkcs11Signer:
        label = attrs.get("label") or None
        cka_id = bytes(attrs.get("id") or b"")
        where = f"key {label or cka_id.hex()!r} on token {self._token_name}"
        if not attrs.get("sign", False):
            raise UnsupportedKeyType(f"{where} may not sign (CKA_SIGN is false)", ref=ref)
        key_type = int(attrs["key_type"])
        alg = alg_for_key(
            key_type=key_type,
            ec_params=attrs.get("ec_params"),
            allowed_mechanisms=attrs.get("allowed_mechanisms"),
            wanted=wanted,
            what=where,
        )
        profile = ALG_PROFILES[alg]
        mechanisms = self._token_mechanisms()
        if profile.mechanism not in mechanisms:
            raise MechanismUnsupported(
                f"token {self._token_name} does not offer the mechanism {alg.value} needs",
                ref=ref,
            )
        jwk: PublicJwk = public_jwk_from_attributes(
            alg,
            ec_point=public.get("ec_point"),
            modulus=attrs.get("modulus"),
            public_exponent=attrs.get("public_exponent"),
        )
        details = Pkcs11KeyDetails(
            ref=_make_ref(self._label, cka_id, label, alg) if cka_id or label else ref,
            token_label=self._label,
            token_serial=self._serial,
            label=label,
            cka_id=cka_id,
            key_type=key_type,
            alg=alg,
            mechanism=profile.mechanism,
            always_authenticate=bool(attrs.get("always_authenticate", False)),
            loading=self._module.loading,
            module_path=self._module_path,
        )
        signer = Pkcs11Signer(store=self, details=details, public=jwk)
        log.info(
            "aauth.pkcs11.open",
            token=self._label,
            key=details.describe(),
            key_id=signer.key_id,
            alg=alg.value,
            loading=self._module.loading,
            always_authenticate=details.always_authenticate,
        )
        return signer

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
        infos: list[KeyInfo] = []
        with self._pool.admin_session() as session:

            def scan() -> list[tuple[bytes, str | None]]:
                with self._module.lock:
                    found = _lib.find_private_keys(session)
                    return [
                        (bytes(a.get("id") or b""), a.get("label") or None)
                        for a in (_lib.key_attributes(k, ("id", "label")) for k in found)
                    ]

            entries = self._guard("list keys", None, scan)
        for cka_id, label in sorted(entries, key=lambda e: (e[1] or "", e[0])):
            ref = _make_ref(self._label, cka_id or None, None if cka_id else label, None)
            try:
                signer = self.get_signer(ref)
            except BackendError as exc:
                log.info("aauth.pkcs11.list_skip", token=self._label, key=label, reason=exc.detail)
                continue
            infos.append(
                KeyInfo(
                    ref=signer.details.ref,
                    name=label or cka_id.hex(),
                    alg=signer.algorithm,
                    key_id=signer.key_id,
                    engine=self.engine,
                )
            )
        return infos

    def _check_free(self, session: Any, name: str, cka_id: bytes | None) -> None:
        with self._module.lock:
            taken = _lib.find_private_keys(session, label=name)
            if not taken and cka_id is not None:
                try:
                    _lib.find_private_key(session, key_id=cka_id, label=None, key_type=None)
                except _lib.P11Failure as failure:
                    if failure.fault is not _lib.Fault.NO_SUCH_KEY:
                        raise
                else:
                    taken = [True]
        if taken:
            raise KeyExists(
                f"token {self._token_name} already holds a private key with this label or id",
                ref=_make_ref(self._label, cka_id, name, None),
            )

    def generate(self, alg: Alg | str, name: str, **extra: bool) -> KeyRef:
        """Generate a key pair on the token; returns its ``pkcs11:`` reference.

        The private key is a token object, sensitive, never extractable, may only sign,
        and only with ``alg``'s mechanism (CKA_ALLOWED_MECHANISMS); its CKA_ID is 16
        random bytes and its label ``name``. ``extra`` sets further boolean private-key
        attributes (``always_authenticate=True``).
        """
        alg = as_alg(alg)
        name = check_key_name(name)
        profile = ALG_PROFILES[alg]
        unknown = set(extra) - {"always_authenticate"}
        if unknown:
            raise ValueError(f"unknown private key attributes {sorted(unknown)}")
        cka_id = os.urandom(16)
        ref = _make_ref(self._label, cka_id, name, alg)
        details = self._admin_details(ref, name, cka_id, alg)

        def create(session: Any) -> None:
            self._check_free(session, name, None)
            with self._module.lock:
                _lib.generate_keypair(
                    session,
                    key_type=profile.key_type,
                    ec_params=profile.ec_params,
                    rsa_bits=self._config.rsa_bits,
                    key_id=cka_id,
                    label=name,
                    allowed=[profile.mechanism],
                    private_extra=extra,
                )

        with self._pool.admin_session() as session:
            self._guard("generate key", details, lambda: create(session))
        log.info(
            "aauth.pkcs11.generate", token=self._label, key=name, id=cka_id.hex(), alg=alg.value
        )
        return ref

    def import_private_key(
        self, private_key: Any, name: str, *, alg: Alg | str | None = None
    ) -> KeyRef:
        """Import a ``cryptography`` private key (migration, tests) with ``C_CreateObject``.

        The CKA_ID is the first 16 bytes of SHA-256 over the key's RFC 7638 thumbprint,
        so importing one key twice is refused with ``KeyExists``.
        """
        name = check_key_name(name)
        chosen = resolve_alg(private_key, alg)
        profile = ALG_PROFILES[chosen]
        private, public, digest = import_material(private_key, chosen)
        cka_id = digest[:16]
        ref = _make_ref(self._label, cka_id, name, chosen)
        details = self._admin_details(ref, name, cka_id, chosen)

        def create(session: Any) -> None:
            self._check_free(session, name, cka_id)
            with self._module.lock:
                _lib.create_private_key(
                    session,
                    key_type=profile.key_type,
                    material=private,
                    key_id=cka_id,
                    label=name,
                    allowed=[profile.mechanism],
                )
                _lib.create_public_key(
                    session, key_type=profile.key_type, material=public, key_id=cka_id, label=name
                )

        with self._pool.admin_session() as session:
            self._guard("import key", details, lambda: create(session))
        log.info(
            "aauth.pkcs11.import", token=self._label, key=name, id=cka_id.hex(), alg=chosen.value
        )
        return ref

    def _admin_details(self, ref: str, name: str, cka_id: bytes, alg: Alg) -> Pkcs11KeyDetails:
        profile = ALG_PROFILES[alg]
        return Pkcs11KeyDetails(
            ref=ref,
            token_label=self._label,
            token_serial=self._serial,
            label=name,
            cka_id=cka_id,
            key_type=profile.key_type,
            alg=alg,
            mechanism=profile.mechanism,
            always_authenticate=False,
            loading=self._module.loading,
            module_path=self._module_path,
        )

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


def _make_ref(token: str, cka_id: bytes | None, label: str | None, alg: Alg | None) -> str:
    attributes: list[tuple[str, bytes]] = [("token", token.encode("utf-8"))]
    if cka_id:
        attributes.append(("id", cka_id))
    if label:
        attributes.append(("object", label.encode("utf-8")))
    attributes.append(("type", b"private"))
    if alg is not None and alg.kty == "RSA":
        attributes.append(("x-alg", alg.value.encode("ascii")))
    return Pkcs11Uri(attributes=tuple(attributes)).to_uri()
