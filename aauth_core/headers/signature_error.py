"""``Signature-Error`` (Signature Keys -09 §5.1, §5.4): why a request signature was refused.

An RFC 9651 Dictionary whose ``error`` member is a Token, plus per-code members
(``required_input``: an Inner List of Strings, with ``invalid_input``). Unknown codes are kept
as raw strings and unknown members as their serialised text, so a client can still act on
what it understands and a proxy can pass the rest on.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from attrs import field, frozen

from aauth_core import sfv
from aauth_core.errors import MalformedInput, SignatureErrorCode, SignatureFailure
from aauth_core.headers.accept import (
    ACCEPT_SIGNATURE_ALG,
    ACCEPT_SIGNATURE_SCHEME,
    serialize_token_list,
)

__all__ = ["HEADER", "SignatureErrorHeader", "signature_error_headers"]

HEADER = "Signature-Error"

_KNOWN_CODES = frozenset(c.value for c in SignatureErrorCode)
_RESERVED = frozenset({"error", "required_input"})


def _to_code(value: str | SignatureErrorCode) -> SignatureErrorCode | str:
    if isinstance(value, SignatureErrorCode):
        return value
    return SignatureErrorCode(value) if value in _KNOWN_CODES else value


def _check_code(_inst: object, _attr: object, value: SignatureErrorCode | str) -> None:
    if not sfv.is_token(value):
        raise MalformedInput(f"{HEADER} error code must be a structured field token")


def _to_names(value: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    return tuple(value)


def _check_names(_inst: object, _attr: object, value: tuple[str, ...]) -> None:
    for name in value:
        if not isinstance(name, str):
            raise MalformedInput(f"{HEADER} required_input entries must be strings")
        sfv.serialize_string(name, what="required_input entry")


def _to_extra(value: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(value))


def _check_extra(_inst: object, _attr: object, value: Mapping[str, str]) -> None:
    for key, text in value.items():
        if not sfv.is_key(key) or key in _RESERVED:
            raise MalformedInput(f"{HEADER} member name {key[:40]!r} is not usable")
        if not isinstance(text, str):
            raise MalformedInput(f"{HEADER} member {key} must be serialised text")
        parsed = sfv.parse_dictionary(f"{key}={text}", what=f"{HEADER} member {key}")
        if list(parsed) != [key]:
            raise MalformedInput(f"{HEADER} member {key} is not one serialised value")


@frozen(kw_only=True)
class SignatureErrorHeader:
    """One ``Signature-Error`` value.

    ``code`` is a :class:`SignatureErrorCode` when registered, else the raw token.
    ``extra`` maps each unknown member to its serialised value (``'"x"'``, ``'?1'``,
    ``'("a" "b")'``).
    """

    code: SignatureErrorCode | str = field(converter=_to_code, validator=_check_code)
    required_input: tuple[str, ...] = field(default=(), converter=_to_names, validator=_check_names)
    extra: Mapping[str, str] = field(
        factory=dict, converter=_to_extra, validator=_check_extra, hash=False
    )

    @property
    def is_known(self) -> bool:
        return isinstance(self.code, SignatureErrorCode)

    @classmethod
    def from_failure(cls, err: SignatureFailure) -> SignatureErrorHeader:
        return cls(code=err.code, required_input=err.required_input)

    @classmethod
    def parse(cls, value: str | bytes) -> SignatureErrorHeader:
        """Parse a field value; :class:`MalformedInput` if it is not a Dictionary with a
        Token ``error`` (and, when present, an Inner List of Strings ``required_input``)."""
        members = sfv.parse_dictionary(value, what=HEADER)
        error = members.get("error")
        if error is None:
            raise MalformedInput(f"{HEADER} has no error member")
        if not isinstance(error[0], sfv.Token):
            raise MalformedInput(f"{HEADER} error is not a token")
        names: list[str] = []
        required = members.get("required_input")
        if required is not None:
            items, _params = required
            if not isinstance(items, list):
                raise MalformedInput(f"{HEADER} required_input is not an inner list")
            for bare, item_params in items:
                if not isinstance(bare, str):
                    raise MalformedInput(f"{HEADER} required_input entries must be strings")
                if item_params:
                    # Component parameters (;sf, ;key=, ;req) are not AAuth requirements;
                    # dropping them would make the client re-sign the wrong component.
                    raise MalformedInput(
                        f"{HEADER} required_input component parameters are not supported"
                    )
                names.append(bare)
        extra = {
            key: _member_text(member) for key, member in members.items() if key not in _RESERVED
        }
        return cls(code=str(error[0]), required_input=tuple(names), extra=extra)

    def serialize(self) -> str:
        parts = [f"error={self.code}"]
        if self.required_input:
            inner = " ".join(sfv.serialize_string(name) for name in self.required_input)
            parts.append(f"required_input=({inner})")
        parts.extend(f"{key}={text}" for key, text in self.extra.items())
        return ", ".join(parts)


def _member_text(member: sfv.Member) -> str:
    bare, params = member
    if isinstance(bare, list):
        text = sfv.serialize_list([member], what=HEADER)
    else:
        text = sfv.serialize_item((bare, params), what=HEADER)
    return text


def signature_error_headers(err: SignatureFailure) -> dict[str, str]:
    """The response fields for a refused signature: ``Signature-Error`` and, when the error
    names them, ``Accept-Signature-Scheme`` / ``Accept-Signature-Alg``. Send with 401, never
    with 403."""
    headers = {HEADER: SignatureErrorHeader.from_failure(err).serialize()}
    if err.accept_schemes:
        headers[ACCEPT_SIGNATURE_SCHEME] = serialize_token_list(err.accept_schemes)
    if err.accept_algs:
        headers[ACCEPT_SIGNATURE_ALG] = serialize_token_list(err.accept_algs)
    return headers
