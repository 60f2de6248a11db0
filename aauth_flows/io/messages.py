"""Moving HTTP messages between core's values and the libraries on the wire.

Core signs and verifies :class:`~aauth_core.http.HttpRequest` /
:class:`~aauth_core.http.HttpResponse`; httpx (client side) and Starlette/ASGI (server
side) have their own types. These functions are the only place that converts, and they
bound what they read: a body over ``max_body`` is refused with 413, never buffered whole.

A server rebuilds the request URL from its own configured ``origin`` (its server
identifier), not from the ``Host`` header: the signature covers ``@authority``, and a
request signed for another authority must fail verification here rather than be judged
against whatever the client claimed to be talking to.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx
from starlette.requests import Request
from starlette.responses import Response

from aauth_core.errors import AAuthError, MalformedInput
from aauth_core.http import HttpRequest, HttpResponse
from aauth_flows.io.egress import BodyBudget, EgressRefused, read_limited, read_limited_async
from aauth_flows.machines.wire import MAX_BODY, problem_response

__all__ = [
    "BodyTooLarge",
    "to_httpx",
    "from_httpx",
    "from_httpx_async",
    "send",
    "send_async",
    "from_starlette",
    "to_starlette",
    "error_response",
]


class BodyTooLarge(AAuthError):
    default_code = "invalid_request"
    default_status = 413


def to_httpx(request: HttpRequest) -> httpx.Request:
    return httpx.Request(
        request.method,
        request.url,
        headers=list(request.headers.pairs),
        content=request.body or None,
    )


def _response(response: httpx.Response, body: bytes) -> HttpResponse:
    try:
        return HttpResponse(
            status=response.status_code, headers=list(response.headers.items()), body=body
        )
    except (MalformedInput, TypeError) as err:  # a header core refuses (CR/LF, bad name)
        raise EgressRefused(f"unusable response from {response.url.host}: {err}") from err


def from_httpx(response: httpx.Response, *, max_body: int = MAX_BODY) -> HttpResponse:
    """A streamed httpx response as core's value (body bounded by ``max_body``)."""
    return _response(response, read_limited(response, max_body))


async def from_httpx_async(response: httpx.Response, *, max_body: int = MAX_BODY) -> HttpResponse:
    return _response(response, await read_limited_async(response, max_body))


def send(client: httpx.Client, request: HttpRequest, *, max_body: int = MAX_BODY) -> HttpResponse:
    """Send ``request`` with ``client`` and read the answer (bounded). Transport failures
    (refused connection, timeout, TLS) raise :class:`EgressRefused`."""
    try:
        with client.stream(
            request.method,
            request.url,
            headers=list(request.headers.pairs),
            content=request.body or None,
        ) as response:
            return from_httpx(response, max_body=max_body)
    except httpx.HTTPError as err:
        raise EgressRefused(f"{request.method} {request.url}: {type(err).__name__}") from err


async def send_async(
    client: httpx.AsyncClient, request: HttpRequest, *, max_body: int = MAX_BODY
) -> HttpResponse:
    """:func:`send` for an async client."""
    try:
        async with client.stream(
            request.method,
            request.url,
            headers=list(request.headers.pairs),
            content=request.body or None,
        ) as response:
            return await from_httpx_async(response, max_body=max_body)
    except httpx.HTTPError as err:
        raise EgressRefused(f"{request.method} {request.url}: {type(err).__name__}") from err


async def from_starlette(request: Request, *, origin: str, max_body: int = MAX_BODY) -> HttpRequest:
    """The request a Starlette app received, as core's value, at ``origin`` + its raw path.

    Raises :class:`BodyTooLarge` (413) past ``max_body`` and :class:`MalformedInput` (400)
    for a header core refuses."""
    budget = BodyBudget(
        max_body,
        BodyTooLarge(f"request body is over {max_body} bytes"),
        request.headers.get("content-length"),
    )
    async for chunk in request.stream():
        budget.add(chunk)
    raw_path: bytes = request.scope.get("raw_path") or request.url.path.encode()
    query: bytes = request.scope.get("query_string", b"")
    target = raw_path.decode("latin-1")
    if query:
        target = f"{target}?{query.decode('latin-1')}"
    try:
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        return HttpRequest(
            method=request.method, url=f"{origin}{target}", headers=headers, body=budget.body()
        )
    except TypeError as err:
        raise MalformedInput(f"unusable request: {err}") from err


def to_starlette(response: HttpResponse) -> Response:
    """Core's response value as a Starlette response (headers kept in order)."""
    out = Response(content=response.body, status_code=response.status)
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.pairs]
    raw.append((b"content-length", str(len(response.body)).encode()))
    out.raw_headers = raw
    return out


def error_response(error: AAuthError, headers: Mapping[str, str] | None = None) -> Response:
    """An :class:`AAuthError` as the problem response a server answers with."""
    return to_starlette(problem_response(error, headers))
