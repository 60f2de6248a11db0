"""RFC 9530 ``Content-Digest`` (``sha-256`` and ``sha-512``).

:func:`verify_content_digest` decides as follows:

- header absent → ``invalid_input`` with ``required_input=("content-digest",)``: the
  peer has to send it (inside signature verification a *covered* but absent field is
  ``invalid_signature`` before this is ever called);
- header malformed, no supported algorithm, or a supported digest that does not match
  → ``invalid_signature`` ("Content-Digest does not match the body" for a mismatch).

Unknown algorithms are ignored; every supported member present must match.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from aauth_core import sfv
from aauth_core.errors import MalformedInput, SignatureErrorCode, SignatureFailure

__all__ = ["DIGEST_ALGORITHMS", "content_digest", "verify_content_digest"]

#: RFC 9530 algorithm names this module computes and checks.
DIGEST_ALGORITHMS = {"sha-256": hashlib.sha256, "sha-512": hashlib.sha512}
_SIZES = {"sha-256": 32, "sha-512": 64}
_FAST = re.compile(r"(sha-256|sha-512)=:([A-Za-z0-9+/]*={0,2}):")
_MISMATCH = "Content-Digest does not match the body"


def content_digest(body: bytes, alg: str = "sha-256") -> str:
    """The ``Content-Digest`` field value for ``body``: ``sha-256=:<base64>:``."""
    hasher = DIGEST_ALGORITHMS.get(alg)
    if hasher is None:
        raise ValueError(f"unsupported Content-Digest algorithm {alg!r}")
    return f"{alg}=:{base64.b64encode(hasher(body).digest()).decode('ascii')}:"


def _members(value: str) -> dict[str, bytes]:
    match = _FAST.fullmatch(value)
    if match is not None:
        try:
            return {match.group(1): base64.b64decode(match.group(2), validate=True)}
        except ValueError:
            pass  # the full parser decides (unpadded input)
    try:
        parsed = sfv.parse_dictionary(value, what="Content-Digest")
    except MalformedInput:
        raise SignatureFailure("Content-Digest is not a valid structured field") from None
    out = {}
    for alg, (bare, _params) in parsed.items():
        if alg in DIGEST_ALGORITHMS:
            if not isinstance(bare, bytes):
                raise SignatureFailure(f"Content-Digest {alg} is not a byte sequence")
            out[alg] = bare
    return out


def verify_content_digest(header_value: str | None, body: bytes) -> None:
    """Check ``Content-Digest`` against ``body``; raise ``SignatureFailure`` otherwise."""
    if header_value is None:
        raise SignatureFailure(
            "Content-Digest is required",
            code=SignatureErrorCode.INVALID_INPUT,
            required_input=("content-digest",),
        )
    if not isinstance(header_value, str):
        raise SignatureFailure("Content-Digest is not a string")
    members = _members(header_value)
    supported = {a: v for a, v in members.items() if a in DIGEST_ALGORITHMS}
    if not supported:
        raise SignatureFailure("Content-Digest has no supported algorithm (sha-256, sha-512)")
    for alg, expected in supported.items():
        if len(expected) != _SIZES[alg]:
            raise SignatureFailure(_MISMATCH)
        actual = DIGEST_ALGORITHMS[alg](body).digest()
        if not hmac.compare_digest(actual, expected):
            raise SignatureFailure(_MISMATCH)
