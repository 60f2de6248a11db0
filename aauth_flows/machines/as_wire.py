"""Server-to-server wire helpers shared by the AS, the PS's federation client and the AP.

A server signing in its own right (PS → AS, revocation requests, polls of their pending
URLs) uses the ``jwks_uri`` scheme of ``Signature-Key`` (-11 §11.3, protocol digest
§3.1): ``sig=jwks_uri;id="<issuer>";dwk="<its document>";kid="<key>"``, covering
``@method @authority @path signature-key`` and, with a body, ``content-digest
content-type``.

Core's :class:`~aauth_core.requests.RequestVerifier` verifies only the agents' ``jwt``
scheme, so :func:`verify_server_request` builds the ``jwks_uri`` verification here on
top of :mod:`aauth_core.httpsig.verify` and :mod:`aauth_core.signature_key`: the
signer's key is looked up by ``(id, dwk, kid)`` through a
:class:`~aauth_core.tokens.verify.KeyResolver` (discovery with its issuer check is the
driver's I/O, behind the resolver).

Signing is an action: :func:`begin_server_request` returns the bytes to sign and the
state to keep; :func:`finish_server_request` returns the signed request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from attrs import field, frozen

from aauth_core.http import HttpRequest
from aauth_core.httpsig import (
    AAUTH_COMPONENTS,
)
from aauth_core.server_requests import sign_server_request
from aauth_core.signer import Signer
from aauth_core.strict_json import json_request_body
from aauth_core.urls import origin_of, pending_location
from aauth_flows.machines.actions import SignBytes
from aauth_flows.machines.engine import Action, Step
from aauth_flows.machines.signing import SigningKey, complete, signing_input
from aauth_flows.machines.wire import (
    JSON,
    MAX_BODY,
    json_bytes,
    json_response,
    problem_response,
    read_json_response,
    retry_after,
)

__all__ = [
    "SERVER_BODY_COMPONENTS",
    "MAX_BODY",
    "PendingSignature",
    "begin_server_request",
    "finish_server_request",
    "json_request",
    "json_response",
    "problem_response",
    "read_json_body",
    "read_json_response",
    "retry_after",
    "same_origin_location",
    "origin_of",
    "step",
]

S = TypeVar("S")
D = TypeVar("D")
T = TypeVar("T")


def step(state: S, data: D, actions: Iterable[Action] = ()) -> Step[Any, D]:
    """A :class:`Step` (positional shorthand for the AS handlers)."""
    return Step(state=state, data=data, actions=actions)


#: What a server signature covers on a request with a body (-11 §11.3).
SERVER_BODY_COMPONENTS: tuple[str, ...] = (*AAUTH_COMPONENTS, "content-digest", "content-type")


@frozen(kw_only=True)
class PendingSignature:
    """A server-signed request waiting for its signature (kept in a machine's data)."""

    request: HttpRequest
    issuer: str
    dwk: str
    created: int
    to_sign: bytes = field(repr=lambda b: f"<{len(b)} bytes>")


def _producer(
    key: SigningKey, request: HttpRequest, issuer: str, dwk: str, created: int
) -> Callable[[Signer], dict[str, str]]:
    def run(signer: Signer) -> dict[str, str]:
        return sign_server_request(request, signer, issuer=issuer, dwk=dwk, created=created)

    return run


def begin_server_request(
    key: SigningKey, request: HttpRequest, *, issuer: str, dwk: str, created: int
) -> tuple[PendingSignature, SignBytes]:
    """The signing step for ``request`` signed as server ``issuer`` (``dwk`` = its doc)."""
    data = signing_input(key, _producer(key, request, issuer, dwk, created))
    pending = PendingSignature(
        request=request, issuer=issuer, dwk=dwk, created=created, to_sign=data
    )
    return pending, SignBytes(key=key.ref, data=data)


def finish_server_request(
    key: SigningKey, pending: PendingSignature, signature: bytes
) -> HttpRequest:
    """The signed request (the signature is checked with the public key first)."""
    produce = _producer(key, pending.request, pending.issuer, pending.dwk, pending.created)
    fields = complete(key, produce, pending.to_sign, signature)
    request = pending.request
    return HttpRequest(
        method=request.method,
        url=request.url,
        headers=request.headers.with_fields(fields),
        body=request.body,
    )


# -- messages ----------------------------------------------------------------------------


def json_request(method: str, url: str, body: Mapping[str, Any] | None = None) -> HttpRequest:
    """An unsigned request (JSON body when given)."""
    if body is None:
        return HttpRequest(method=method, url=url)
    return HttpRequest(
        method=method, url=url, headers={"Content-Type": JSON}, body=json_bytes(body)
    )


def read_json_body(request: HttpRequest) -> dict[str, Any]:
    """The request's JSON object body; anything else is ``invalid_request`` (400)."""
    return json_request_body(request.headers, request.body, max_size=MAX_BODY)


def same_origin_location(base_url: str, location: str | None) -> str:
    """An absolute pending URL on the origin of ``base_url`` (a relative one is resolved
    against it); a missing, cross-origin or malformed ``Location`` raises
    :class:`MalformedInput`."""
    return pending_location(base_url, location)
