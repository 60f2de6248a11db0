"""The only module that touches python-pkcs11 (which is untyped in places) and raw Cryptoki.

Everything here takes and returns python-pkcs11 objects as ``Any`` and turns every
``pkcs11.PKCS11Error`` into a :class:`P11Failure` carrying a :class:`Fault`, so that the
rest of the backend reasons about *kinds* of failure, never about library classes.

Login and logout are raw ``C_Login``/``C_Logout`` calls (through ``ctypes``) on a session
python-pkcs11 opened without a PIN: ``Token.open(user_pin=…)`` leaks its session when
``C_Login`` fails, and ``Session.close()`` of a logged-in session logs every session out.
The function list is the very one python-pkcs11 uses (read from its ``lib`` object), which
matters for p11-kit-proxy: every ``C_GetFunctionList`` call there creates a new proxy state
with its own session handles.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import struct
from collections.abc import Sequence
from typing import Any

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.attributes import AttributeMapper

__all__ = [
    "Fault",
    "P11Failure",
    "MECH",
    "load",
    "unload",
    "find_token",
    "token_flags",
    "token_mechanisms",
    "open_session",
    "close_session",
    "login",
    "logout",
    "find_private_key",
    "find_public_key",
    "find_private_keys",
    "key_attributes",
    "sign",
    "sign_prepared",
    "mechanism_of",
    "generate_keypair",
    "create_private_key",
    "create_public_key",
    "FLAG_PIN_LOCKED",
    "FLAG_PIN_FINAL_TRY",
    "FLAG_PIN_COUNT_LOW",
    "CKK_EC",
    "CKK_EC_EDWARDS",
    "CKK_RSA",
]


class Fault(enum.Enum):
    """What went wrong, as far as recovery and error mapping care."""

    PIN_INCORRECT = "pin incorrect"
    PIN_LOCKED = "pin locked"
    ALREADY_LOGGED_IN = "already logged in"
    NOT_LOGGED_IN = "user not logged in"
    SESSION = "session handle invalid"
    OBJECT = "object handle invalid"
    DEVICE = "device removed or failed"
    NOT_INITIALIZED = "module not initialised"
    MECHANISM = "mechanism or parameters refused"
    KEY_TYPE = "key type inconsistent"
    NO_SUCH_TOKEN = "no such token"  # noqa: S105 - not a password
    MANY_TOKENS = "several tokens match"
    NO_SUCH_KEY = "no such key"
    MANY_KEYS = "several keys match"
    FUNCTION_FAILED = "function failed or cancelled"
    TEMPLATE = "template refused"
    OTHER = "PKCS#11 error"


class P11Failure(Exception):
    """A PKCS#11 call failed; ``fault`` says how, ``name`` is the library's error name."""

    def __init__(self, fault: Fault, name: str) -> None:
        super().__init__(f"{name} ({fault.value})")
        self.fault = fault
        self.name = name


_BY_CLASS: dict[type[BaseException], Fault] = {
    pkcs11.PinIncorrect: Fault.PIN_INCORRECT,
    pkcs11.PinInvalid: Fault.PIN_INCORRECT,
    pkcs11.PinLenRange: Fault.PIN_INCORRECT,
    pkcs11.PinExpired: Fault.PIN_LOCKED,
    pkcs11.PinLocked: Fault.PIN_LOCKED,
    pkcs11.UserAlreadyLoggedIn: Fault.ALREADY_LOGGED_IN,
    pkcs11.UserNotLoggedIn: Fault.NOT_LOGGED_IN,
    pkcs11.SessionHandleInvalid: Fault.SESSION,
    pkcs11.SessionClosed: Fault.SESSION,
    pkcs11.ObjectHandleInvalid: Fault.OBJECT,
    pkcs11.KeyHandleInvalid: Fault.OBJECT,
    pkcs11.DeviceRemoved: Fault.DEVICE,
    pkcs11.DeviceError: Fault.DEVICE,
    pkcs11.DeviceMemory: Fault.DEVICE,
    pkcs11.TokenNotPresent: Fault.DEVICE,
    pkcs11.TokenNotRecognised: Fault.DEVICE,
    pkcs11.GeneralError: Fault.DEVICE,
    pkcs11.MechanismInvalid: Fault.MECHANISM,
    pkcs11.MechanismParamInvalid: Fault.MECHANISM,
    pkcs11.ArgumentsBad: Fault.MECHANISM,
    pkcs11.KeyTypeInconsistent: Fault.KEY_TYPE,
    pkcs11.NoSuchToken: Fault.NO_SUCH_TOKEN,
    pkcs11.MultipleTokensReturned: Fault.MANY_TOKENS,
    pkcs11.NoSuchKey: Fault.NO_SUCH_KEY,
    pkcs11.MultipleObjectsReturned: Fault.MANY_KEYS,
    pkcs11.FunctionFailed: Fault.FUNCTION_FAILED,
    pkcs11.FunctionCancelled: Fault.FUNCTION_FAILED,
    pkcs11.TemplateIncomplete: Fault.TEMPLATE,
    pkcs11.TemplateInconsistent: Fault.TEMPLATE,
    pkcs11.AttributeValueInvalid: Fault.TEMPLATE,
    pkcs11.AttributeTypeInvalid: Fault.TEMPLATE,
}

# Cryptoki return values of the raw calls made here (PKCS#11 2.40 §11.1).
_BY_RV: dict[int, tuple[Fault, str]] = {
    0x05: (Fault.DEVICE, "GeneralError"),
    0x06: (Fault.FUNCTION_FAILED, "FunctionFailed"),
    0x30: (Fault.DEVICE, "DeviceError"),
    0x32: (Fault.DEVICE, "DeviceRemoved"),
    0x50: (Fault.FUNCTION_FAILED, "FunctionCancelled"),
    0xA0: (Fault.PIN_INCORRECT, "PinIncorrect"),
    0xA1: (Fault.PIN_INCORRECT, "PinInvalid"),
    0xA2: (Fault.PIN_INCORRECT, "PinLenRange"),
    0xA3: (Fault.PIN_LOCKED, "PinExpired"),
    0xA4: (Fault.PIN_LOCKED, "PinLocked"),
    0xB0: (Fault.SESSION, "SessionClosed"),
    0xB3: (Fault.SESSION, "SessionHandleInvalid"),
    0xE0: (Fault.DEVICE, "TokenNotPresent"),
    0x100: (Fault.ALREADY_LOGGED_IN, "UserAlreadyLoggedIn"),
    0x101: (Fault.NOT_LOGGED_IN, "UserNotLoggedIn"),
    0x190: (Fault.NOT_INITIALIZED, "CryptokiNotInitialized"),
}

CKU_USER = 1
CKK_RSA = int(KeyType.RSA)
CKK_EC = int(KeyType.EC)
CKK_EC_EDWARDS = int(KeyType.EC_EDWARDS)
FLAG_PIN_COUNT_LOW = 0x00010000
FLAG_PIN_FINAL_TRY = 0x00020000
FLAG_PIN_LOCKED = 0x00040000

#: The mechanisms the signer uses, by name (so that callers need not import pkcs11).
MECH: dict[str, int] = {
    "EDDSA": int(Mechanism.EDDSA),
    "ECDSA": int(Mechanism.ECDSA),
    "SHA256_RSA_PKCS_PSS": int(Mechanism.SHA256_RSA_PKCS_PSS),
    "SHA256_RSA_PKCS": int(Mechanism.SHA256_RSA_PKCS),
}
_PSS_SHA256 = (Mechanism.SHA256, pkcs11.MGF.SHA256, 32)


def _fault_of(exc: BaseException) -> Fault:
    for klass in type(exc).__mro__:
        fault = _BY_CLASS.get(klass)
        if fault is not None:
            return fault
    if "not initialized" in str(exc).lower():
        return Fault.NOT_INITIALIZED
    return Fault.OTHER


def _failure(exc: BaseException) -> P11Failure:
    return P11Failure(_fault_of(exc), type(exc).__name__)


# --------------------------------------------------------------------------- raw Cryptoki

_ULONG = ctypes.c_ulong
_LOGIN = ctypes.CFUNCTYPE(_ULONG, _ULONG, _ULONG, ctypes.c_char_p, _ULONG)
_LOGOUT = ctypes.CFUNCTYPE(_ULONG, _ULONG)
# Offsets in CK_FUNCTION_LIST: CK_VERSION (padded to a pointer), then function pointers in
# the order of PKCS#11 2.40 §5.1; C_Login is the 19th, C_Logout the 20th.
_C_LOGIN_INDEX = 18
_C_LOGOUT_INDEX = 19


class _Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_ubyte), ("minor", ctypes.c_ubyte)]


def _function_list(lib: Any) -> int:
    """The ``CK_FUNCTION_LIST *`` python-pkcs11's ``lib`` calls through.

    python-pkcs11 0.10 keeps it as the first C member of its ``lib`` extension object
    (right after the object header). The version it points to is checked, so a layout
    change is detected instead of calling through a wrong pointer.
    """
    address = ctypes.c_void_p.from_address(id(lib) + object.__basicsize__).value
    if not address:
        raise P11Failure(Fault.NOT_INITIALIZED, "CryptokiNotInitialized")
    version = _Version.from_address(address)
    if version.major not in (2, 3):
        raise RuntimeError("unexpected python-pkcs11 object layout: refusing to call C_Login")
    return address


def _entry(lib: Any, index: int) -> int:
    base = _function_list(lib) + ctypes.sizeof(ctypes.c_void_p)
    pointer = ctypes.c_void_p.from_address(base + index * ctypes.sizeof(ctypes.c_void_p)).value
    if not pointer:
        raise P11Failure(Fault.OTHER, "FunctionNotSupported")
    return pointer


def _check_rv(rv: int) -> None:
    if rv != 0:
        fault, name = _BY_RV.get(rv, (Fault.OTHER, f"CKR_0x{rv:08X}"))
        raise P11Failure(fault, name)


def login(lib: Any, session: Any, pin: str) -> None:
    """``C_Login(CKU_USER)`` on ``session`` (opened without a PIN); nothing to leak."""
    secret = pin.encode("utf-8")
    function = _LOGIN(_entry(lib, _C_LOGIN_INDEX))
    _check_rv(int(function(session.handle, CKU_USER, secret, len(secret))))


def logout(lib: Any, session: Any) -> None:
    """``C_Logout`` on ``session``: logs the whole application out of the token."""
    function = _LOGOUT(_entry(lib, _C_LOGOUT_INDEX))
    _check_rv(int(function(session.handle)))


# --------------------------------------------------------------------------- modules, tokens


def load(path: str) -> Any:
    """Load and ``C_Initialize`` a module (python-pkcs11 caches it by path)."""
    try:
        return pkcs11.lib(path)
    except pkcs11.PKCS11Error as exc:
        raise _failure(exc) from exc


def unload(path: str) -> None:
    """``C_Finalize`` and unload; a failing finalise (in a forked child) is ignored."""
    with contextlib.suppress(pkcs11.PKCS11Error):
        pkcs11.unload(path)


def find_token(lib: Any, label: str | None, serial: str | None) -> Any:
    kwargs: dict[str, Any] = {}
    if label is not None:
        kwargs["token_label"] = label
    if serial is not None:
        kwargs["token_serial"] = serial.encode("ascii")
    try:
        return lib.get_token(**kwargs)
    except pkcs11.PKCS11Error as exc:
        raise _failure(exc) from exc


def token_flags(token: Any) -> int:
    """Fresh token flags (``C_GetTokenInfo``): the PIN counters change over time."""
    try:
        return int(token.slot.get_token().flags)
    except pkcs11.PKCS11Error as exc:
        raise _failure(exc) from exc


def token_mechanisms(token: Any) -> frozenset[int]:
    try:
        return frozenset(int(m) for m in token.slot.get_mechanisms())
    except pkcs11.PKCS11Error as exc:
        raise _failure(exc) from exc


def _ulong_array(values: Sequence[int]) -> bytes:
    return b"".join(struct.pack("=L" if ctypes.sizeof(_ULONG) == 4 else "=Q", v) for v in values)


def _ulong_list(raw: bytes) -> list[int]:
    size = ctypes.sizeof(_ULONG)
    code = "=L" if size == 4 else "=Q"
    return [struct.unpack(code, raw[i : i + size])[0] for i in range(0, len(raw) - size + 1, size)]


def _mapper() -> Any:
    mapper = AttributeMapper()
    mapper.register_handler(Attribute.ALLOWED_MECHANISMS, _ulong_array, _ulong_list)
    return mapper


def open_session(token: Any, *, rw: bool = False) -> Any:
    """A session without login (the application's login covers it)."""
    try:
        return token.open(rw=rw, attribute_mapper=_mapper())
    except pkcs11.PKCS11Error as exc:
        raise _failure(exc) from exc


def close_session(session: Any) -> None:
    """Close a PIN-less session; failures are ignored (the handle may be gone already)."""
    with contextlib.suppress(pkcs11.PKCS11Error):
        session.close()


# --------------------------------------------------------------------------- keys


def _find(
    session: Any, object_class: Any, key_id: bytes | None, label: str | None, key_type: int | None
) -> list[Any]:
    """Every matching object, with the search finished (``C_FindObjectsFinal``) before
    returning: python-pkcs11's ``get_key`` leaves its search open when it raises."""
    template: dict[Any, Any] = {Attribute.CLASS: object_class}
    if key_id is not None:
        template[Attribute.ID] = key_id
    if label is not None:
        template[Attribute.LABEL] = label
    if key_type is not None:
        template[Attribute.KEY_TYPE] = KeyType(key_type)
    try:
        return list(session.get_objects(template))
    except pkcs11.PKCS11Error as exc:
        raise _failure(exc) from exc


def _one(found: list[Any]) -> Any:
    if not found:
        raise P11Failure(Fault.NO_SUCH_KEY, "NoSuchKey")
    if len(found) > 1:
        raise P11Failure(Fault.MANY_KEYS, "MultipleObjectsReturned")
    return found[0]


def find_private_key(
    session: Any, *, key_id: bytes | None, label: str | None, key_type: int | None
) -> Any:
    return _one(_find(session, ObjectClass.PRIVATE_KEY, key_id, label, key_type))


def find_public_key(session: Any, *, key_id: bytes, key_type: int) -> Any | None:
    """The public key object with the same CKA_ID, or None (some tokens keep none)."""
    found = _find(session, ObjectClass.PUBLIC_KEY, key_id, None, key_type)
    return _one(found) if found else None


def find_private_keys(session: Any, *, label: str | None = None) -> list[Any]:
    return _find(session, ObjectClass.PRIVATE_KEY, None, label, None)


_ATTRIBUTES: dict[str, Any] = {
    "id": Attribute.ID,
    "label": Attribute.LABEL,
    "key_type": Attribute.KEY_TYPE,
    "sign": Attribute.SIGN,
    "ec_params": Attribute.EC_PARAMS,
    "ec_point": Attribute.EC_POINT,
    "modulus": Attribute.MODULUS,
    "public_exponent": Attribute.PUBLIC_EXPONENT,
    "always_authenticate": Attribute.ALWAYS_AUTHENTICATE,
    "allowed_mechanisms": Attribute.ALLOWED_MECHANISMS,
    "sensitive": Attribute.SENSITIVE,
    "extractable": Attribute.EXTRACTABLE,
}


def key_attributes(obj: Any, names: Sequence[str]) -> dict[str, Any]:
    """The named attributes that the object has (absent or unreadable ones are left out)."""
    found: dict[str, Any] = {}
    for name in names:
        try:
            value = obj[_ATTRIBUTES[name]]
        except (pkcs11.AttributeTypeInvalid, pkcs11.AttributeSensitive, NotImplementedError):
            continue
        except pkcs11.PKCS11Error as exc:
            raise _failure(exc) from exc
        if isinstance(value, enum.Enum):
            value = value.value
        found[name] = value
    return found


def mechanism_of(mechanism: int) -> tuple[Any, Any]:
    """python-pkcs11's ``(Mechanism, mechanism_param)`` for a signing mechanism number,
    computed once per key (see :func:`sign_prepared`)."""
    param = _PSS_SHA256 if mechanism == MECH["SHA256_RSA_PKCS_PSS"] else None
    try:
        return Mechanism(mechanism), param
    except ValueError:
        raise P11Failure(Fault.MECHANISM, "MechanismInvalid") from None


def sign_prepared(key: Any, data: bytes, mechanism: Any, param: Any, pin: str | None) -> bytes:
    """One ``C_SignInit`` + ``C_Sign`` with a :func:`mechanism_of` pair."""
    try:
        if param is None and pin is None:
            signature = key.sign(data, mechanism=mechanism)
        else:
            signature = key.sign(data, mechanism=mechanism, mechanism_param=param, pin=pin)
    except pkcs11.PKCS11Error as exc:
        raise _failure(exc) from exc
    return signature if type(signature) is bytes else bytes(signature)


def sign(key: Any, data: bytes, mechanism: int, *, pin: str | None = None) -> bytes:
    """One ``C_SignInit`` + ``C_Sign`` with explicit mechanism parameters."""
    chosen, param = mechanism_of(mechanism)
    return sign_prepared(key, data, chosen, param, pin)


def _hygiene(key_id: bytes, label: str, allowed: Sequence[int]) -> dict[Any, Any]:
    return {
        Attribute.TOKEN: True,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.SIGN: True,
        Attribute.DECRYPT: False,
        Attribute.UNWRAP: False,
        Attribute.DERIVE: False,
        Attribute.ID: key_id,
        Attribute.LABEL: label,
        Attribute.ALLOWED_MECHANISMS: list(allowed),
    }


def generate_keypair(
    session: Any,
    *,
    key_type: int,
    ec_params: bytes | None,
    rsa_bits: int,
    key_id: bytes,
    label: str,
    allowed: Sequence[int],
    private_extra: dict[str, bool] | None = None,
) -> tuple[Any, Any]:
    """Generate a key pair on the token: private key sensitive, non-extractable, stored."""
    private = _hygiene(key_id, label, allowed)
    for name, value in (private_extra or {}).items():
        private[_ATTRIBUTES[name]] = value
    public = {
        Attribute.TOKEN: True,
        Attribute.VERIFY: True,
        Attribute.ENCRYPT: False,
        Attribute.WRAP: False,
        Attribute.ID: key_id,
        Attribute.LABEL: label,
    }
    try:
        if key_type == CKK_RSA:
            public[Attribute.MODULUS_BITS] = rsa_bits
            public[Attribute.PUBLIC_EXPONENT] = b"\x01\x00\x01"
            return tuple(
                session.generate_keypair(
                    KeyType.RSA,
                    rsa_bits,
                    store=True,
                    id=key_id,
                    label=label,
                    public_template=public,
                    private_template=private,
                )
            )
        params = session.create_domain_parameters(
            KeyType(key_type), {Attribute.EC_PARAMS: ec_params}, local=True
        )
        mechanism = (
            Mechanism.EC_EDWARDS_KEY_PAIR_GEN
            if key_type == CKK_EC_EDWARDS
            else Mechanism.EC_KEY_PAIR_GEN
        )
        return tuple(
            params.generate_keypair(
                store=True,
                id=key_id,
                label=label,
                mechanism=mechanism,
                public_template=public,
                private_template=private,
            )
        )
    except pkcs11.PKCS11Error as exc:
        raise _failure(exc) from exc


def create_private_key(
    session: Any,
    *,
    key_type: int,
    material: dict[str, bytes],
    key_id: bytes,
    label: str,
    allowed: Sequence[int],
) -> Any:
    """``C_CreateObject`` of a private key (import for migration and tests)."""
    names = {
        "ec_params": Attribute.EC_PARAMS,
        "value": Attribute.VALUE,
        "modulus": Attribute.MODULUS,
        "public_exponent": Attribute.PUBLIC_EXPONENT,
        "private_exponent": Attribute.PRIVATE_EXPONENT,
        "prime_1": Attribute.PRIME_1,
        "prime_2": Attribute.PRIME_2,
        "exponent_1": Attribute.EXPONENT_1,
        "exponent_2": Attribute.EXPONENT_2,
        "coefficient": Attribute.COEFFICIENT,
    }
    template = _hygiene(key_id, label, allowed)
    template[Attribute.CLASS] = ObjectClass.PRIVATE_KEY
    template[Attribute.KEY_TYPE] = KeyType(key_type)
    for name, value in material.items():
        template[names[name]] = value
    try:
        return session.create_object(template)
    except pkcs11.PKCS11Error as exc:
        raise _failure(exc) from exc


def create_public_key(
    session: Any, *, key_type: int, material: dict[str, bytes], key_id: bytes, label: str
) -> Any:
    names = {
        "ec_params": Attribute.EC_PARAMS,
        "ec_point": Attribute.EC_POINT,
        "modulus": Attribute.MODULUS,
        "public_exponent": Attribute.PUBLIC_EXPONENT,
    }
    template: dict[Any, Any] = {
        Attribute.CLASS: ObjectClass.PUBLIC_KEY,
        Attribute.KEY_TYPE: KeyType(key_type),
        Attribute.TOKEN: True,
        Attribute.VERIFY: True,
        Attribute.ID: key_id,
        Attribute.LABEL: label,
    }
    for name, value in material.items():
        template[names[name]] = value
    try:
        return session.create_object(template)
    except pkcs11.PKCS11Error as exc:
        raise _failure(exc) from exc
