"""``Signature-Input`` and ``Signature`` (RFC 9421 §4): values, parsers, serialisers.

Both fields are parsed on every verified request, so each parser has a strict fast path
(compiled regular expressions) for the common AAuth shape: one label, an inner list of
plain quoted component names, and ``created``/``expires``/``keyid``/``alg``/``nonce``/
``tag`` parameters. Anything else falls back to the full RFC 9651 parser in
:mod:`aauth_core.sfv`. The fast path returns either None or exactly what the full parser
returns (``tests/test_httpsig.py`` checks that on the vectors and on generated input).

The ``@signature-params`` value of a signature is the canonical serialisation of its
parsed inner list (RFC 9421 §2.3, §3.2 step 7), with components and parameters in wire
order; the fast path only accepts text that already is canonical and reuses it.

Byte sequences are emitted in standard base64; base64url (``-``/``_``) is accepted on
input because some peers send it.

Every parse failure is ``SignatureFailure(invalid_signature)``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from attrs import Factory, field, frozen

from aauth_core import sfv
from aauth_core.errors import MalformedInput, SignatureFailure
from aauth_core.httpsig.components import Component, ComponentError

__all__ = [
    "CoveredComponents",
    "SignatureParams",
    "SignatureInput",
    "parse_signature_input",
    "parse_signature_input_fast",
    "parse_signature_input_full",
    "serialize_signature_input",
    "parse_signature",
    "parse_signature_fast",
    "parse_signature_full",
    "serialize_signature",
    "is_label",
]

_LABEL = re.compile(r"[a-z*][a-z0-9_.*-]*")
_SF_INT_MAX = 999_999_999_999_999
_INT_PARAMS = ("created", "expires")
_STR_PARAMS = ("nonce", "alg", "keyid", "tag")
_DEFAULT_ORDER = ("created", "expires", "keyid", "nonce", "tag", "alg")
_STRING = re.compile(r"[\x20-\x7e]*")


def is_label(value: object) -> bool:
    """True for a valid signature label (an RFC 9651 dictionary key)."""
    return isinstance(value, str) and _LABEL.fullmatch(value) is not None


def _fail(detail: str) -> SignatureFailure:
    return SignatureFailure(detail)


# --- values --------------------------------------------------------------------------


def _to_components(value: Iterable[str | Component]) -> tuple[Component, ...]:
    if isinstance(value, str):
        raise ComponentError("covered components are a sequence, not one str")
    return tuple(Component.of(c) for c in value)


@frozen(kw_only=True)
class CoveredComponents:
    """The ordered covered components of one signature (RFC 9421 §2.3 inner list)."""

    components: tuple[Component, ...] = field(converter=_to_components)
    _index: frozenset[Component] = field(init=False, eq=False, repr=False, alias="_index")

    def __attrs_post_init__(self) -> None:
        index = frozenset(self.components)
        if len(index) != len(self.components):
            raise ComponentError("a component identifier is repeated")
        # RFC 9421 §2.5: parameter order does not make a different component.
        keys = {(c.name, frozenset(c.params)) for c in self.components}
        if len(keys) != len(self.components):
            raise ComponentError("a component identifier is repeated")
        object.__setattr__(self, "_index", index)

    def __contains__(self, item: object) -> bool:
        if isinstance(item, str):
            try:
                item = Component.of(item)
            except ComponentError:
                return False
        return item in self._index

    def __iter__(self) -> Any:
        return iter(self.components)

    def __len__(self) -> int:
        return len(self.components)

    def missing(self, required: Iterable[Component]) -> tuple[Component, ...]:
        """The components of ``required`` that are not covered."""
        index = self._index
        if index.issuperset(required):
            return ()
        return tuple(c for c in required if c not in index)

    def serialize(self) -> str:
        """The inner list without parameters: ``("@method" "@path")``."""
        return "(" + " ".join(c.identifier for c in self.components) + ")"


@frozen(kw_only=True)
class SignatureParams:
    """RFC 9421 §2.3 signature parameters.

    ``extra`` keeps parameters this library does not know, so that the signature base
    can be rebuilt; ``order`` is the wire order of every parameter present (empty means
    ``created, expires, keyid, nonce, tag, alg`` then ``extra``, the order of the
    RFC 9421 examples).
    """

    created: int | None = None
    expires: int | None = None
    nonce: str | None = None
    alg: str | None = None
    keyid: str | None = None
    tag: str | None = None
    extra: tuple[tuple[str, Any], ...] = ()
    order: tuple[str, ...] = ()

    def __attrs_post_init__(self) -> None:
        # Direct checks: this runs for every parsed Signature-Input (the hot path).
        count = 0
        ints: tuple[tuple[str, object], ...] = (
            ("created", self.created),
            ("expires", self.expires),
        )
        for iname, ivalue in ints:
            if ivalue is not None:
                if type(ivalue) is not int or not -_SF_INT_MAX <= ivalue <= _SF_INT_MAX:
                    raise ValueError(f"signature parameter {iname} must be an integer")
                count += 1
        strs: tuple[tuple[str, object], ...] = (
            ("nonce", self.nonce),
            ("alg", self.alg),
            ("keyid", self.keyid),
            ("tag", self.tag),
        )
        for sname, svalue in strs:
            if svalue is not None:
                if type(svalue) is not str or _STRING.fullmatch(svalue) is None:
                    raise ValueError(f"signature parameter {sname} must be printable ASCII")
                count += 1
        extra = self.extra
        if extra:
            for name, _ in extra:
                if name in _DEFAULT_ORDER or not sfv.is_key(name):
                    raise ValueError(f"extra signature parameter {name[:20]!r} is not allowed")
            count += len(extra)
            if len({name for name, _ in extra}) != len(extra):
                raise ValueError("an extra signature parameter is repeated")
        order = self.order
        if order:
            extra_names = {name for name, _ in extra}
            if len(order) != count or len(set(order)) != count:
                raise ValueError("order must list each present parameter once")
            for name in order:
                if name in _DEFAULT_ORDER:
                    if getattr(self, name) is None:
                        raise ValueError(f"order names {name}, which is absent")
                elif name not in extra_names:
                    raise ValueError(f"order names {name[:20]!r}, which is absent")

    def _present(self, extra: tuple[tuple[str, Any], ...]) -> list[str]:
        names = [n for n in _DEFAULT_ORDER if getattr(self, n) is not None]
        names.extend(n for n, _ in extra)
        return names

    @classmethod
    def from_sf(cls, params: Mapping[str, Any]) -> SignatureParams:
        """From parsed structured-field parameters; wrong types → ``invalid_signature``."""
        known: dict[str, Any] = {}
        extra = []
        for name, value in params.items():
            if name in _DEFAULT_ORDER:
                known[name] = value
            else:
                extra.append((name, value))
        try:
            return cls(**known, extra=tuple(extra), order=tuple(params))
        except (ValueError, TypeError) as exc:
            raise _fail(f"Signature-Input: {exc}") from None

    def names(self) -> tuple[str, ...]:
        return self.order or tuple(self._present(self.extra))

    def serialize(self) -> str:
        """``;created=…;keyid="…"`` in :meth:`names` order."""
        extra = dict(self.extra)
        out = []
        for name in self.names():
            value = extra[name] if name in extra else getattr(self, name)
            if name in _INT_PARAMS:
                out.append(f";{name}={value}")
            elif name in _STR_PARAMS:
                out.append(f";{name}={sfv.serialize_string(value)}")
            elif value is True:
                out.append(f";{name}")
            else:
                out.append(f";{name}={sfv.serialize_item((value, {}))}")
        return "".join(out)


_new = object.__new__
_set = object.__setattr__


def _trusted_params(known: dict[str, Any]) -> SignatureParams:
    """A :class:`SignatureParams` from values the fast-path regex already validated
    (skips ``__init__``: this is the hot path; equal to the validated construction)."""
    params = _new(SignatureParams)
    get = known.get
    for name in _DEFAULT_ORDER:
        _set(params, name, get(name))
    _set(params, "extra", ())
    _set(params, "order", tuple(known))
    return params


def trusted_created_params(created: int) -> SignatureParams:
    """``;created=<created>`` alone, as the fast parsers build it (``created`` checked).

    Requests signed in the same second share one (immutable) value: a few are kept."""
    params = _CREATED_PARAMS.get(created)
    if params is None:
        if len(_CREATED_PARAMS) >= 64:
            _CREATED_PARAMS.clear()
        params = _CREATED_PARAMS[created] = _trusted_params({"created": created})
    return params


_CREATED_PARAMS: dict[int, SignatureParams] = {}


def _default_signature_params(self: SignatureInput) -> str:
    return self.covered.serialize() + self.params.serialize()


@frozen(kw_only=True)
class SignatureInput:
    """One ``Signature-Input`` member: a label, its covered components and parameters.

    ``signature_params`` is the ``@signature-params`` value (computed when not given).
    """

    label: str
    covered: CoveredComponents
    params: SignatureParams
    signature_params: str = field(default=Factory(_default_signature_params, takes_self=True))

    def serialize_member(self) -> str:
        return f"{self.label}={self.signature_params}"


# --- Signature-Input -----------------------------------------------------------------

_NAME = r"[a-z0-9@!#$%&'*+.^_`|~-]+"
_PLAIN_STRING = r"[\x20\x21\x23-\x5b\x5d-\x7e]*"
_INT = r"(?:0|[1-9][0-9]{0,14})"
_FAST_INPUT = re.compile(
    rf'([a-z*][a-z0-9_.*-]*)=(\((?:"{_NAME}"(?: "{_NAME}")*)?\))'
    rf'((?:;(?:created|expires)={_INT}|;(?:keyid|alg|nonce|tag)="{_PLAIN_STRING}")*)'
)
_FAST_PARAM = re.compile(
    rf'(?:;(created|expires)=({_INT})|;(keyid|alg|nonce|tag)="({_PLAIN_STRING})")'
)
_COVERED_CACHE: dict[str, CoveredComponents] = {}
_COVERED_CACHE_MAX = 512


def _covered_from_text(text: str) -> CoveredComponents | None:
    covered = _COVERED_CACHE.get(text)
    if covered is None:
        names = text[2:-2].split('" "') if len(text) > 2 else []
        try:
            covered = CoveredComponents(components=names)
        except ComponentError:
            return None  # let the full parser produce the error
        if len(_COVERED_CACHE) >= _COVERED_CACHE_MAX:
            _COVERED_CACHE.clear()
        _COVERED_CACHE[text] = covered
    return covered


def parse_signature_input_fast(value: str) -> dict[str, SignatureInput] | None:
    """The strict fast path: one canonical AAuth-shaped member, or None."""
    match = _FAST_INPUT.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return None
    label, covered_text, params_text = match.groups()
    covered = _covered_from_text(covered_text)
    if covered is None:
        return None
    known: dict[str, Any] = {}
    if params_text.startswith(";created=") and params_text.count(";") == 1:
        known["created"] = int(params_text[9:])  # the usual AAuth shape
        params_text_rest = ""
    else:
        params_text_rest = params_text
    for m in _FAST_PARAM.finditer(params_text_rest):
        int_name, int_value, str_name, str_value = m.groups()
        name: str = int_name or str_name
        pvalue: int | str = int(int_value) if int_name is not None else str_value
        if name in known:
            return None  # duplicates: the full parser applies RFC 9651's rule
        known[name] = pvalue
    params = _trusted_params(known)
    return {
        label: SignatureInput(
            label=label,
            covered=covered,
            params=params,
            signature_params=covered_text + params_text,
        )
    }


def _to_text(value: str | bytes, what: str) -> str:
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("ascii")
        except UnicodeDecodeError:
            raise _fail(f"{what} contains non-ASCII bytes") from None
    if not isinstance(value, str):
        raise _fail(f"{what} is not a string")
    return value


def parse_signature_input_full(value: str | bytes) -> dict[str, SignatureInput]:
    """The full RFC 9651 parse; any structural or type error → ``invalid_signature``."""
    try:
        members = sfv.parse_dictionary(value, what="Signature-Input")
    except MalformedInput as exc:
        raise _fail(exc.detail) from None
    except TypeError:
        raise _fail("Signature-Input is not a string") from None
    if not members:
        raise _fail("Signature-Input is empty")
    out: dict[str, SignatureInput] = {}
    for label, (inner, params) in members.items():
        if not isinstance(inner, list):
            raise _fail(f"Signature-Input member {label!r} is not an inner list")
        try:
            covered = CoveredComponents(
                components=[Component.from_sf(bare, cparams) for bare, cparams in inner]
            )
        except ComponentError as exc:
            raise _fail(f"Signature-Input member {label!r}: {exc}") from None
        sig_params = SignatureParams.from_sf(params)
        try:
            serialized = covered.serialize() + sig_params.serialize()
        except MalformedInput as exc:  # pragma: no cover - parsed values re-serialise
            raise _fail(exc.detail) from None
        out[label] = SignatureInput(
            label=label, covered=covered, params=sig_params, signature_params=serialized
        )
    return out


def parse_signature_input(value: str | bytes) -> dict[str, SignatureInput]:
    """Parse ``Signature-Input`` (fast path first). Labels map to :class:`SignatureInput`."""
    text = _to_text(value, "Signature-Input")
    if len(text) <= sfv.MAX_FIELD_LENGTH:
        fast = parse_signature_input_fast(text)
        if fast is not None:
            return fast
    return parse_signature_input_full(text)


def serialize_signature_input(inputs: SignatureInput | Sequence[SignatureInput]) -> str:
    """The ``Signature-Input`` field value for one or several members."""
    if isinstance(inputs, SignatureInput):
        return inputs.serialize_member()
    return ", ".join(i.serialize_member() for i in inputs)


# --- Signature -----------------------------------------------------------------------

_FAST_SIGNATURE = re.compile(r"([a-z*][a-z0-9_.*-]*)=:([A-Za-z0-9+/_-]*)(={0,2}):")
_URL_TO_STD = str.maketrans("-_", "+/")
_BYTESEQ = re.compile(r":[A-Za-z0-9+/=_-]*:")


def _decode(body: str) -> bytes | None:
    """Decode base64 whose alphabet the fast regex already checked (padding stripped)."""
    rest = len(body) % 4
    if rest == 1:
        return None
    if "-" in body or "_" in body:
        body = body.translate(_URL_TO_STD)
    if rest:
        body += "=" * (4 - rest)
    try:
        return binascii.a2b_base64(body, strict_mode=True)
    except binascii.Error:  # pragma: no cover - the regex guards the alphabet
        return None


def parse_signature_fast(value: str) -> dict[str, bytes] | None:
    """The strict fast path: ``label=:base64:`` (standard or URL-safe), or None."""
    match = _FAST_SIGNATURE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return None
    label, body, padding = match.groups()
    if padding and not body:
        return None
    raw = _decode(body)
    if raw is None:
        return None
    return {label: raw}


def parse_signature_full(value: str | bytes) -> dict[str, bytes]:
    """The full RFC 9651 parse (base64url translated first); members must be byte
    sequences (their parameters are ignored)."""
    text = _to_text(value, "Signature")
    if "-" in text or "_" in text:
        text = _BYTESEQ.sub(lambda m: m.group().translate(_URL_TO_STD), text)
    try:
        members = sfv.parse_dictionary(text, what="Signature")
    except MalformedInput as exc:
        raise _fail(exc.detail) from None
    if not members:
        raise _fail("Signature is empty")
    out: dict[str, bytes] = {}
    for label, (bare, _params) in members.items():
        if not isinstance(bare, bytes):
            raise _fail(f"Signature member {label!r} is not a byte sequence")
        out[label] = bare
    return out


def parse_signature(value: str | bytes) -> dict[str, bytes]:
    """Parse ``Signature`` (fast path first): labels map to the raw signature bytes."""
    text = _to_text(value, "Signature")
    if len(text) <= sfv.MAX_FIELD_LENGTH:
        fast = parse_signature_fast(text)
        if fast is not None:
            return fast
    return parse_signature_full(text)


def serialize_signature(signatures: Mapping[str, bytes]) -> str:
    """The ``Signature`` field value: ``label=:<standard base64>:`` members."""
    parts = []
    for label, raw in signatures.items():
        if not is_label(label):
            raise ValueError(f"{label!r} is not a valid signature label")
        parts.append(f"{label}=:{base64.b64encode(raw).decode('ascii')}:")
    return ", ".join(parts)
