"""Compact JWS (RFC 7515) for AAuth tokens: signed through a :class:`Signer`, verified with
the algorithm taken from the key's JWK ``alg`` only.

Why not PyJWT here: PyJWT does not know the fully specified ``Ed25519`` name (AAuth -10+
requires it and must reject ``EdDSA``), signing through an HSM-backed :class:`Signer`
needs a custom algorithm object per key, and its decode path costs more than our whole
verification budget for a cached request. The measurement is in ``docs/jose.md`` and
``docs/benchmarks.md``; PyJWT stays in the test suite as the independent JOSE
implementation that checks our tokens.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from attrs import field, frozen

from aauth_core.algorithms import REJECTED_ALGS, Alg
from aauth_core.b64 import b64url_decode_alphabet_checked, b64url_encode
from aauth_core.errors import MalformedInput, TokenError
from aauth_core.jwk import PublicJwk
from aauth_core.signer import Signer
from aauth_core.strict_json import no_constants
from aauth_core.verify import verifier_for

__all__ = [
    "MAX_TOKEN_CHARS",
    "UnverifiedJws",
    "decode_compact",
    "encode_compact",
    "header_alg",
    "verify_jws",
]

#: Longest compact JWS accepted (characters). AAuth tokens are well under 4 kB.
MAX_TOKEN_CHARS = 16 * 1024
_MAX_HEADER_CHARS = 2048


def _json_bytes(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def encode_compact(
    header: Mapping[str, Any], payload: Mapping[str, Any] | bytes, signer: Signer
) -> str:
    """Sign ``payload`` under ``header`` with ``signer``.

    ``alg`` and ``kid`` come from the signer (``kid=None`` in ``header`` leaves it out);
    members are emitted in sorted order (as PyJWT and Go's encoder do), the payload in the
    order given.
    """
    full = dict(header)
    full["alg"] = signer.algorithm.value
    full.setdefault("kid", signer.key_id)
    # A member given as None is left out (``{"kid": None}`` mints a token without kid).
    head = b64url_encode(_json_bytes({k: v for k, v in sorted(full.items()) if v is not None}))
    body = payload if isinstance(payload, bytes) else _json_bytes(payload)
    signing_input = f"{head}.{b64url_encode(body)}"
    signature = signer.sign(signing_input.encode("ascii"))
    return f"{signing_input}.{b64url_encode(signature)}"


@frozen(kw_only=True)
class UnverifiedJws:
    """A compact JWS that was only decoded: nothing in it is trusted yet."""

    header: dict[str, Any] = field(repr=False)
    payload: dict[str, Any] = field(repr=False)
    signing_input: bytes = field(repr=False)
    signature: bytes = field(repr=False)

    @property
    def alg(self) -> str:
        value = self.header.get("alg")
        return value if isinstance(value, str) else ""

    @property
    def typ(self) -> str | None:
        value = self.header.get("typ")
        return value if isinstance(value, str) else None

    @property
    def kid(self) -> str | None:
        value = self.header.get("kid")
        return value if isinstance(value, str) else None


def decode_compact(token: object, *, max_chars: int = MAX_TOKEN_CHARS) -> UnverifiedJws:
    """Split and decode a compact JWS; raise ``TokenError(invalid_jwt)`` for anything off."""
    if not isinstance(token, str):
        raise TokenError("token is not a string")
    if len(token) > max_chars:
        raise TokenError(f"token is longer than {max_chars} characters")
    parts = token.split(".")
    # The base64url alphabet: strict base64 decoding (below) refuses everything outside
    # the standard alphabet, so only its own '+', '/' and '=' need refusing here.
    if len(parts) != 3 or "+" in token or "/" in token or "=" in token:
        raise TokenError("token is not a compact JWS (three base64url parts)")
    head_b64, body_b64, sig_b64 = parts
    if len(head_b64) > _MAX_HEADER_CHARS:
        raise TokenError("JWS header is too long")
    try:
        cached = _HEADERS.get(head_b64)
        if cached is None:
            header = _json_object(_b64(head_b64, what="JWS header"), "JWS header")
            if len(_HEADERS) >= _HEADERS_MAX:
                _HEADERS.clear()
            _HEADERS[head_b64] = dict(header)
        else:
            header = dict(cached)  # a copy: callers may change theirs
        payload = _json_object(_b64(body_b64, what="JWS payload"), "JWS payload")
        signature = _b64(sig_b64, what="JWS signature")
    except MalformedInput as exc:
        raise TokenError(exc.detail) from exc
    crit = header.get("crit")
    if crit is not None:
        raise TokenError("JWS 'crit' header parameters are not understood")
    if "b64" in header:
        raise TokenError("unencoded payload JWS is not accepted")
    # Built without __init__ (this is the hot path; the fields are exactly those).
    jws = _NEW(UnverifiedJws)
    _SET(jws, "header", header)
    _SET(jws, "payload", payload)
    _SET(jws, "signing_input", f"{head_b64}.{body_b64}".encode("ascii"))
    _SET(jws, "signature", signature)
    return jws


def verify_jws(jws: UnverifiedJws, key: PublicJwk) -> None:
    """Verify with ``key``; the header ``alg`` must name exactly the key's ``alg``."""
    alg = jws.header.get("alg")
    if alg != key.alg:  # Alg is a StrEnum: equal to its JOSE name
        alg = str(alg)
        reason = REJECTED_ALGS.get(alg)
        if reason is None:
            reason = f"JWS alg {alg[:20]!r} does not match the key's alg {key.alg.value}"
        raise TokenError(reason)
    if not jws.signature:
        raise TokenError("JWS has no signature")
    if not verifier_for(key)(jws.signing_input, jws.signature):
        raise TokenError("JWS signature does not verify")


def header_alg(jws: UnverifiedJws) -> Alg:
    """The header ``alg`` as an :class:`Alg`, or ``TokenError`` for ``none``/``EdDSA``/…."""
    name = jws.header.get("alg")
    alg = _BY_NAME.get(name) if type(name) is str else None
    if alg is not None:
        return alg
    name = jws.alg
    raise TokenError(REJECTED_ALGS.get(name, f"JWS alg {name[:20]!r} is not supported"))


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
        # The C scanner directly: tokens are compact JSON objects, so skip the
        # whitespace handling of JSONDecoder.decode unless the fast scan leaves a tail.
        try:
            value, end = _SCAN(text, 0)
        except StopIteration:
            end = -1
        if end != len(text):
            value = _DECODER.decode(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MalformedInput(f"{what} is not JSON") from exc
    if not isinstance(value, dict):
        raise MalformedInput(f"{what} is not a JSON object")
    return value


_BY_NAME = {a.value: a for a in Alg}
_NEW = object.__new__
_SET = object.__setattr__
# A JWS header is the same for every token an issuer key signs, so decoded headers are
# remembered by their base64url text (bounded; a copy is handed out each time).
_HEADERS: dict[str, dict[str, Any]] = {}
_HEADERS_MAX = 1024
_b64 = b64url_decode_alphabet_checked  # decode_compact matched the alphabet already

# One decoder: json.loads with any keyword builds a new decoder on every call.
_DECODER = json.JSONDecoder(parse_constant=no_constants)
_SCAN: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]
