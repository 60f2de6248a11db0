"""Errors: one root, each carrying the wire code and the HTTP status to answer with.

Every failure that can come from input (a header, a token, a JWK, a metadata document)
is an :class:`AAuthError`. ``code`` is the protocol's error code (a ``Signature-Error``
code, a token-endpoint code, or ``invalid_request``); ``status`` is the HTTP status a
server answers with. ``detail`` is human text and never contains secrets.

Misuse of the API that has nothing to do with the protocol (a wrong argument type, an
impossible configuration) raises ``TypeError`` or ``ValueError``, as the standard
library and ``cryptography`` do.
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar

__all__ = [
    "AAuthError",
    "MalformedInput",
    "InvalidIdentifier",
    "SignatureErrorCode",
    "SignatureFailure",
    "InvalidKey",
    "UnsupportedAlgorithm",
    "UnsupportedScheme",
    "TokenError",
    "TokenParameterError",
    "MetadataError",
    "ProtocolError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "IllegalTransition",
]


class AAuthError(Exception):
    """Root of every error this library raises for bad input or a refused protocol step."""

    default_code: ClassVar[str] = "invalid_request"
    default_status: ClassVar[int] = 400

    def __init__(self, detail: str, *, code: str | None = None, status: int | None = None):
        super().__init__(detail)
        self.detail = detail
        self.code: str = code if code is not None else self.default_code
        self.status: int = status if status is not None else self.default_status

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status={self.status}, detail={self.detail!r})"

    def to_problem(self) -> dict[str, Any]:
        """The RFC 9457 problem body AAuth endpoints answer with (``error`` is authoritative)."""
        return {"error": self.code, "detail": self.detail}


class MalformedInput(AAuthError):
    """Input that does not parse: JSON, base64, a structured field, a size limit."""


class InvalidIdentifier(MalformedInput):
    """An agent or server identifier that breaks the -11 syntax rules."""


class SignatureErrorCode(enum.StrEnum):
    """The ``Signature-Error`` codes (Signature Keys -08 plus ``clock_skew``, ``revoked_jwt``)."""

    UNSUPPORTED_ALGORITHM = "unsupported_algorithm"
    UNSUPPORTED_SCHEME = "unsupported_scheme"
    CACHE_MISS = "cache_miss"
    INVALID_SIGNATURE = "invalid_signature"
    INVALID_INPUT = "invalid_input"
    INVALID_REQUEST = "invalid_request"
    INVALID_KEY = "invalid_key"
    UNKNOWN_KEY = "unknown_key"
    ISSUER_MISSING = "issuer_missing"
    ISSUER_MISMATCH = "issuer_mismatch"
    INVALID_JWT = "invalid_jwt"
    EXPIRED_JWT = "expired_jwt"
    CLOCK_SKEW = "clock_skew"
    REVOKED_JWT = "revoked_jwt"


class SignatureFailure(AAuthError):
    """A request signature or its key could not be accepted: 401 + ``Signature-Error``.

    ``required_input`` is set with ``invalid_input``; ``accept_schemes`` and
    ``accept_algs`` fill ``Accept-Signature-Scheme`` / ``Accept-Signature-Alg``.
    """

    default_code: ClassVar[str] = SignatureErrorCode.INVALID_SIGNATURE.value
    default_status: ClassVar[int] = 401

    def __init__(
        self,
        detail: str,
        *,
        code: str | SignatureErrorCode | None = None,
        status: int | None = None,
        required_input: tuple[str, ...] = (),
        accept_schemes: tuple[str, ...] = (),
        accept_algs: tuple[str, ...] = (),
    ):
        super().__init__(detail, code=None if code is None else str(code), status=status)
        self.required_input = required_input
        self.accept_schemes = accept_schemes
        self.accept_algs = accept_algs


class InvalidKey(SignatureFailure):
    """A JWK that is structurally incomplete, unparseable, or whose ``kty``/``crv`` disagree
    with its ``alg``."""

    default_code: ClassVar[str] = SignatureErrorCode.INVALID_KEY.value


class UnsupportedAlgorithm(SignatureFailure):
    """An ``alg`` that is absent, polymorphic (``EdDSA``), symmetric, ``none`` or not implemented."""

    default_code: ClassVar[str] = SignatureErrorCode.UNSUPPORTED_ALGORITHM.value


class UnsupportedScheme(SignatureFailure):
    """A ``Signature-Key`` scheme the verifier does not accept."""

    default_code: ClassVar[str] = SignatureErrorCode.UNSUPPORTED_SCHEME.value


_PARAMETER_SUFFIX = {
    SignatureErrorCode.EXPIRED_JWT.value: "expired",
    SignatureErrorCode.REVOKED_JWT.value: "revoked",
}


class TokenError(SignatureFailure):
    """A JWT that failed verification.

    The code is the ``Signature-Error`` code, right for a token carried in
    ``Signature-Key``. A token carried as a request parameter (``resource_token``,
    ``presented_token``, …) is answered with 400 and a typed code instead: use
    :meth:`as_parameter`.
    """

    default_code: ClassVar[str] = SignatureErrorCode.INVALID_JWT.value

    def as_parameter(self, parameter: str) -> TokenParameterError:
        """Map to ``<invalid|expired|revoked>_<parameter>_token`` (or ``clock_skew``), 400."""
        if self.code == SignatureErrorCode.CLOCK_SKEW.value:
            code = "clock_skew"
        else:
            code = f"{_PARAMETER_SUFFIX.get(self.code, 'invalid')}_{parameter}_token"
        return TokenParameterError(self.detail, code=code, parameter=parameter)


class TokenParameterError(AAuthError):
    """A token carried as a request parameter failed: 400 with a typed code."""

    def __init__(self, detail: str, *, code: str, parameter: str, status: int = 400):
        super().__init__(detail, code=code, status=status)
        self.parameter = parameter


class MetadataError(AAuthError):
    """A metadata document (``/.well-known/aauth-*.json``) that breaks its rules.

    ``issuer_missing`` / ``issuer_mismatch`` are the Signature Keys codes for the issuer
    check; anything else structural is ``invalid_metadata``.
    """

    default_code: ClassVar[str] = "invalid_metadata"
    default_status: ClassVar[int] = 502


class ProtocolError(AAuthError):
    """Someone broke the protocol (flows). Abstract: raise a Local or Remote subclass."""

    def __init__(self, detail: str, *, code: str | None = None, status: int | None = None):
        if type(self) is ProtocolError:
            raise TypeError(
                "ProtocolError is abstract; raise LocalProtocolError or RemoteProtocolError"
            )
        super().__init__(detail, code=code, status=status)


class LocalProtocolError(ProtocolError):
    """The caller misused a flow (an event in the wrong state, a bad configuration)."""

    default_status: ClassVar[int] = 500


class RemoteProtocolError(ProtocolError):
    """The peer sent something invalid; ``code``/``status`` say what a server answers."""


class IllegalTransition(LocalProtocolError):
    """An event arrived in a state whose transition table has no entry for it."""
