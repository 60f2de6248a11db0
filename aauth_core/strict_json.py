"""Strict JSON for documents that come from elsewhere: no duplicate members (a second
``issuer`` must not quietly win), no ``NaN``/``Infinity``, UTF-8, bounded in size."""

from __future__ import annotations

import json
from typing import Any, NoReturn

from aauth_core.errors import AAuthError, MalformedInput

__all__ = ["loads", "load_json_object", "no_constants", "no_duplicates"]


def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` that refuses a repeated member name."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError("duplicate member")
        result[key] = value
    return result


def no_constants(name: str) -> NoReturn:
    """``parse_constant`` that refuses ``NaN``, ``Infinity`` and ``-Infinity``."""
    raise ValueError(f"{name} is not JSON")


def loads(text: str) -> Any:
    """``json.loads`` with both refusals; raises ``ValueError`` or ``RecursionError``."""
    return json.loads(text, object_pairs_hook=no_duplicates, parse_constant=no_constants)


def load_json_object(
    raw: bytes | str,
    *,
    max_size: int,
    what: str,
    error: type[AAuthError] = MalformedInput,
) -> dict[str, Any]:
    """A JSON object from ``raw``: UTF-8, at most ``max_size`` bytes, strict; any failure
    is ``error`` naming ``what``."""
    if isinstance(raw, str):
        try:
            raw = raw.encode("utf-8")
        except UnicodeError as exc:
            raise error(f"{what} is not valid UTF-8") from exc
    if not isinstance(raw, bytes | bytearray):
        raise error(f"{what} must be bytes")
    if len(raw) > max_size:
        raise error(f"{what} is larger than {max_size} bytes")
    try:
        value = loads(bytes(raw).decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise error(f"{what} is not valid JSON") from exc
    if not isinstance(value, dict):
        raise error(f"{what} is not a JSON object")
    return value


def json_request_body(
    headers: Any, body: bytes, *, max_size: int, what: str = "request body"
) -> dict[str, Any]:
    """The JSON object body of a request (AAuth bodies are ``application/json``): any
    other ``Content-Type``, or a body that is not a strict JSON object of at most
    ``max_size`` bytes, is ``invalid_request`` (400). ``headers`` is the request's
    :class:`~aauth_core.http.Headers`."""
    content_type = (headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise MalformedInput(f"the {what} must be application/json")
    return load_json_object(body, max_size=max_size, what=what)
