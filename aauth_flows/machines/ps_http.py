"""What a Person Server machine says over HTTP, and the JSON body it reads.

JSON answers, RFC 9457 problems (401 + ``Signature-Error`` for a signature failure), the
``202`` pending answer, the indistinguishable ``404`` and the ``410`` of a pending URL, and
the RFC 6749 errors of the RFC 8693 form binding.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aauth_core.errors import AAuthError, SignatureFailure
from aauth_core.headers.requirement import Requirement
from aauth_core.http import HttpRequest, HttpResponse
from aauth_core.strict_json import json_request_body
from aauth_flows.machines.actions import Respond
from aauth_flows.machines.engine import Action
from aauth_flows.machines.wire import json_response as shared_json_response
from aauth_flows.machines.wire import pending_gone, pending_not_found, problem_response

__all__ = [
    "TOKEN_TYPE_JWT",
    "json_response",
    "problem",
    "pending_response",
    "not_found",
    "gone",
    "form_error",
    "respond",
    "parse_json_body",
]

TOKEN_TYPE_JWT = "urn:ietf:params:oauth:token-type:jwt"  # noqa: S105 - a URN

_JSON = {"Content-Type": "application/json", "Cache-Control": "no-store"}


def json_response(status: int, body: Mapping[str, Any]) -> HttpResponse:
    return shared_json_response(status, body, headers=_JSON)


def problem(error: AAuthError, **members: Any) -> HttpResponse:
    """The error answer: 401 + ``Signature-Error`` for a signature failure, an RFC 9457
    problem body otherwise (a 403 never carries ``Signature-Error``)."""
    return problem_response(error, {"Cache-Control": "no-store"}, **members)


def pending_response(
    location: str,
    retry_after: int,
    requirement: Requirement | None = None,
    body: Mapping[str, Any] | None = None,
) -> HttpResponse:
    headers = {
        "Location": location,
        "Retry-After": str(retry_after),
        "Cache-Control": "no-store",
        "Content-Type": "application/json",
    }
    if requirement is not None:
        headers["AAuth-Requirement"] = requirement.serialize()
    content = {"status": "pending", **(body or {})}
    return HttpResponse(
        status=202, headers=headers, body=json.dumps(content, separators=(",", ":")).encode()
    )


def not_found() -> HttpResponse:
    """The answer for a pending URL that does not exist *or* is not the caller's (§5.9)."""
    return problem(pending_not_found())


def gone() -> HttpResponse:
    return problem(pending_gone())


def parse_json_body(request: HttpRequest, max_size: int) -> dict[str, Any]:
    """A strict JSON object body with ``Content-Type: application/json``."""
    return json_request_body(request.headers, request.body, max_size=max_size)


_FORM_CODES = {
    "invalid_request": "invalid_request",
    "invalid_scope": "invalid_scope",
    "unsupported_grant_type": "unsupported_grant_type",
}


def form_error(error: AAuthError) -> HttpResponse:
    """An RFC 6749 §5.2 error for the RFC 8693 binding: token and policy refusals are
    ``invalid_grant`` (the AAuth code is kept in ``aauth_error``); signature failures stay
    401 + ``Signature-Error``; 5xx keep their status."""
    if isinstance(error, SignatureFailure) and error.status == 401:
        return problem(error)
    if error.status >= 500:
        code, status = (
            ("temporarily_unavailable" if error.status == 502 else "server_error"),
            error.status,
        )
    else:
        code, status = _FORM_CODES.get(error.code, "invalid_grant"), 400
    body = {"error": code, "error_description": error.detail, "aauth_error": error.code}
    return HttpResponse(
        status=status,
        headers={"Content-Type": "application/json", "Cache-Control": "no-store"},
        body=json.dumps(body, separators=(",", ":")).encode(),
    )


def respond(response: HttpResponse) -> Action:
    """The :class:`~aauth_flows.machines.actions.Respond` action for ``response``."""
    return Respond(response=response)
