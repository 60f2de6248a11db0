"""What every reference server is built from: its identity, key, clock, randomness and egress.

Each role module exposes ``build_app(context, settings) -> Starlette``; ``aauth serve``
builds the :class:`ServerContext` from the config file's common part and the role's
settings from its own section. Tests build both directly.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import httpx
from attrs import field, frozen
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aauth_core.identifiers import ServerId
from aauth_core.signer import Signer
from aauth_core.tokens.verify import KeyResolver
from aauth_flows.io.egress import EgressPolicy
from aauth_flows.machines.signing import SigningKey
from aauth_flows.machines.wire import json_bytes

__all__ = ["ServerContext", "well_known_routes", "json_route_response"]


def _now() -> int:
    return int(time.time())


@frozen(kw_only=True)
class ServerContext:
    """One server's identity and I/O. ``http`` is an egress-admitted client
    (:func:`aauth_flows.io.egress.client`); ``keys`` resolves peers' keys (discovery)."""

    issuer: str
    signer: Signer = field(repr=False)
    key_ref: str
    egress: EgressPolicy
    http: httpx.Client = field(repr=False)
    keys: KeyResolver = field(repr=False)
    clock: Callable[[], int] = _now
    random: Callable[[int], bytes] = os.urandom

    def __attrs_post_init__(self) -> None:
        ServerId.parse(self.issuer)

    @property
    def signing_key(self) -> SigningKey:
        return SigningKey(ref=self.key_ref, public_jwk=self.signer.public_jwk())

    @property
    def signers(self) -> dict[str, Signer]:
        return {self.key_ref: self.signer}

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.signer.public_jwk().to_dict()]}


def json_route_response(body: dict[str, Any], *, max_age: int = 300) -> Response:
    return Response(
        content=json_bytes(body),
        media_type="application/json",
        headers={"Cache-Control": f"public, max-age={max_age}"},
    )


def well_known_routes(
    context: ServerContext, dwk: str, metadata: dict[str, Any], *, jwks_path: str = "/jwks"
) -> list[Route]:
    """``/.well-known/{dwk}`` (``metadata``) and the JWKS at ``jwks_path``."""

    async def document(_request: Request) -> Response:
        return json_route_response(metadata)

    async def jwks(_request: Request) -> Response:
        return json_route_response(context.jwks())

    return [
        Route(f"/.well-known/{dwk}", document, methods=["GET"]),
        Route(jwks_path, jwks, methods=["GET"]),
    ]
