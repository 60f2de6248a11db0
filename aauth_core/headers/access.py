"""``AAuth-Access`` and ``Authorization: AAuth`` (protocol -11 §3.5 of the digest).

A resource hands out an opaque credential in ``AAuth-Access: <token68>``; the agent returns
it as ``Authorization: AAuth <token68>`` and covers ``authorization`` in its signature.
token68 is RFC 9110 §11.2. The credential never appears in ``repr`` or error text.
"""

from __future__ import annotations

import re

from attrs import field, frozen

from aauth_core.errors import MalformedInput

__all__ = ["AAUTH_ACCESS", "AUTHORIZATION", "SCHEME", "MAX_TOKEN_LENGTH", "AccessToken"]

AAUTH_ACCESS = "AAuth-Access"
AUTHORIZATION = "Authorization"
SCHEME = "AAuth"

#: Longest credential accepted (characters). A resource-issued session token is small.
MAX_TOKEN_LENGTH = 8 * 1024

_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
# RFC 9110 §11.6.2 credentials: auth-scheme 1*SP token68; the field value may be
# surrounded by OWS (SP / HTAB), which HTTP strips.
_CREDENTIALS = re.compile(r"[ \t]*([!#$%&'*+\-.^_`|~0-9A-Za-z]+) +([^ \t]+)[ \t]*")
_OWS = " \t"


def _as_text(value: str | bytes, what: str) -> str:
    if isinstance(value, bytes | bytearray):
        if len(value) > MAX_TOKEN_LENGTH + 64:
            raise MalformedInput(f"{what} is too long")
        try:
            return bytes(value).decode("ascii")
        except UnicodeDecodeError:
            raise MalformedInput(f"{what} contains non-ASCII characters") from None
    if not isinstance(value, str):
        raise TypeError("a field value is str or bytes")
    return value


def _check_token68(_inst: object, _attr: object, value: str) -> None:
    if not isinstance(value, str) or len(value) > MAX_TOKEN_LENGTH:
        raise MalformedInput(f"AAuth credential is empty or longer than {MAX_TOKEN_LENGTH}")
    if _TOKEN68.fullmatch(value) is None:
        raise MalformedInput("AAuth credential is not token68")


@frozen(kw_only=True)
class AccessToken:
    """The opaque credential of ``AAuth-Access`` / ``Authorization: AAuth``."""

    value: str = field(validator=_check_token68, repr=False)

    @classmethod
    def parse(cls, value: str | bytes) -> AccessToken:
        """Parse an ``AAuth-Access`` field value (exactly one token68)."""
        text = _as_text(value, AAUTH_ACCESS)
        if len(text) > MAX_TOKEN_LENGTH + 64:
            raise MalformedInput(f"{AAUTH_ACCESS} is too long")
        token = text.strip(_OWS)
        if not token:
            raise MalformedInput(f"{AAUTH_ACCESS} is empty")
        if _TOKEN68.fullmatch(token) is None:
            raise MalformedInput(f"{AAUTH_ACCESS} is not a single token68")
        return cls(value=token)

    @classmethod
    def from_authorization(cls, value: str | bytes) -> AccessToken:
        """Parse ``Authorization: AAuth <token68>``. Another scheme, auth-params, several
        credentials or anything but one token68 is :class:`MalformedInput`."""
        text = _as_text(value, AUTHORIZATION)
        if len(text) > MAX_TOKEN_LENGTH + 64:
            raise MalformedInput(f"{AUTHORIZATION} is too long")
        match = _CREDENTIALS.fullmatch(text)
        if match is None:
            raise MalformedInput(f"{AUTHORIZATION} is not one '<scheme> <token68>' credential")
        if match.group(1).lower() != SCHEME.lower():
            raise MalformedInput(f"{AUTHORIZATION} scheme is not {SCHEME}")
        token = match.group(2)
        if _TOKEN68.fullmatch(token) is None:
            raise MalformedInput(f"{AUTHORIZATION} {SCHEME} credential is not a single token68")
        return cls(value=token)

    def serialize(self) -> str:
        """The ``AAuth-Access`` field value."""
        return self.value

    def authorization(self) -> str:
        """The ``Authorization`` field value: ``AAuth <token68>``."""
        return f"{SCHEME} {self.value}"
