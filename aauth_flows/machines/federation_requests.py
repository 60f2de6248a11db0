"""What the Person Server's federation client sends to the Access Server (protocol -11
§5.5, §6.5): the token request body, the ``auth_token_endpoint`` it goes to (checked
against the resource token's ``aud``) and the identity claims POSTed when the AS asks
for them (never ``sub``). Signing and sending are the machine's actions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aauth_core.errors import MalformedInput
from aauth_core.tokens.claims import ResourceTokenClaims
from aauth_core.urls import endpoint_url
from aauth_flows.machines.as_wire import origin_of
from aauth_flows.machines.federation_api import FederationRequest
from aauth_flows.machines.federation_checks import (
    DeliveryExpectation,
    as_unreachable,
    forwarded,
)
from aauth_flows.machines.federation_config import AccessServerEndpoint, ClaimsSource

__all__ = [
    "token_request_body",
    "token_endpoint",
    "requested_claim_names",
    "released_claims",
]


def token_request_body(request: FederationRequest) -> dict[str, str]:
    """The JSON body POSTed to the ``auth_token_endpoint`` (optional tokens only if set)."""
    body = {
        "resource_token": request.resource_token,
        "agent_token": request.agent_token,
        "presented_token": request.presented_token,
    }
    if request.subagent_token is not None:
        body["subagent_token"] = request.subagent_token
    if request.upstream_token is not None:
        body["upstream_token"] = request.upstream_token
    return body


def token_endpoint(access_server: AccessServerEndpoint, request: FederationRequest) -> str:
    """The AS's ``auth_token_endpoint``, if the AS is the one the resource token names
    (its ``aud``); otherwise, or for a malformed endpoint, :func:`as_unreachable`."""
    resource = forwarded(request.resource_token, ResourceTokenClaims, "resource_token")
    try:
        endpoint = endpoint_url(access_server.auth_token_endpoint)
        origin_of(endpoint)
    except MalformedInput as exc:
        raise as_unreachable(f"AS metadata: {exc.detail}") from None
    if access_server.issuer != request.access_server or access_server.issuer != resource.aud:
        raise as_unreachable("the AS metadata issuer is not the resource token's aud")
    return endpoint


def requested_claim_names(body: Mapping[str, Any]) -> tuple[str, ...]:
    """The claims a 202 ``requirement=claims`` asks for, in order, without ``sub``."""
    names = body.get("required_claims")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise MalformedInput("requirement=claims without a required_claims array")
    return tuple(dict.fromkeys(n for n in names if n != "sub"))  # never sub (-11)


def released_claims(
    source: ClaimsSource, expect: DeliveryExpectation, wanted: tuple[str, ...]
) -> dict[str, Any]:
    """The body POSTed to the pending URL: what ``source`` releases among ``wanted``."""
    values = source.claims_for(expect.resource, expect.sub, wanted)
    return {name: values[name] for name in wanted if name in values}
