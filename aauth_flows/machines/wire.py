"""HTTP helpers every machine shares: JSON bodies in and out, problem answers,
``Retry-After``. (Role modules add their own headers; the encoding and the reading rules
live here once.)"""

from __future__ import annotations

import email.utils
import json
from collections.abc import Mapping
from typing import Any

from aauth_core.errors import AAuthError, SignatureFailure
from aauth_core.headers.signature_error import signature_error_headers
from aauth_core.http import HttpResponse
from aauth_core.strict_json import load_json_object

__all__ = [
    "JSON",
    "PROBLEM_JSON",
    "MAX_BODY",
    "DEFAULT_RETRY_AFTER",
    "MAX_RETRY_AFTER",
    "json_bytes",
    "json_response",
    "problem_response",
    "read_json_response",
    "retry_after",
    "pending_not_found",
    "pending_gone",
]

JSON = "application/json"
PROBLEM_JSON = "application/problem+json"
#: Largest JSON body read from a peer.
MAX_BODY = 256 * 1024
#: ``Retry-After`` when a 202 has none (§5.9).
DEFAULT_RETRY_AFTER = 5
#: Longest wait taken from a peer's ``Retry-After`` (a peer cannot park a flow for days).
MAX_RETRY_AFTER = 3600


def json_bytes(body: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON, as every machine sends it."""
    return json.dumps(dict(body), separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def json_response(
    status: int,
    body: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> HttpResponse:
    """An answer with a JSON body (``Content-Type`` set unless ``headers`` set it)."""
    fields = dict(headers or {})
    if body is None:
        return HttpResponse(status=status, headers=fields)
    fields.setdefault("Content-Type", JSON)
    return HttpResponse(status=status, headers=fields, body=json_bytes(body))


def problem_response(
    error: AAuthError, headers: Mapping[str, str] | None = None, **members: Any
) -> HttpResponse:
    """RFC 9457 problem details (``members`` added to the body); a 401 signature failure
    also carries ``Signature-Error`` (a 403 never does)."""
    fields = dict(headers or {})
    if isinstance(error, SignatureFailure) and error.status == 401:
        fields.update(signature_error_headers(error))
    fields["Content-Type"] = PROBLEM_JSON
    body = {**error.to_problem(), **members}
    return HttpResponse(status=error.status, headers=fields, body=json_bytes(body))


def read_json_response(response: HttpResponse) -> dict[str, Any] | None:
    """A response's JSON object body (strict, at most :data:`MAX_BODY`), or None when it
    is absent or not one."""
    if not response.body:
        return None
    try:
        return load_json_object(response.body, max_size=MAX_BODY, what="response body")
    except AAuthError:
        return None


def retry_after(response: HttpResponse, *, at: int, default: int = DEFAULT_RETRY_AFTER) -> int:
    """``Retry-After`` in seconds: delta-seconds or an HTTP-date (relative to ``at``);
    absent or unreadable → ``default``; capped at :data:`MAX_RETRY_AFTER`."""
    raw = response.headers.get("retry-after")
    if raw is None:
        return default
    raw = raw.strip()
    if raw.isdigit():
        return min(int(raw), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return default
    return max(0, min(int(when.timestamp()) - at, MAX_RETRY_AFTER))


def pending_not_found() -> AAuthError:
    """404 for a pending URL that does not exist *or* is not the caller's: the same
    status, code and text for both, so a poller learns nothing about other callers'
    requests (§5.9, §8). Every role answers this."""
    return AAuthError("no such pending request", code="not_found", status=404)


def pending_gone() -> AAuthError:
    """410 to the caller that polls its pending URL after the terminal answer
    (``invalid_code``, the one polling code §5.10 has for 410)."""
    return AAuthError("the pending request is over", code="invalid_code", status=410)
