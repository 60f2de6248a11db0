"""The requests the agent sends, and how each is signed.

The call to the resource carries the caller's request plus ``Authorization: AAuth
<session token>`` and ``AAuth-Capabilities``; its signature covers the resource's
``additional_signature_components`` and any ``required_input`` it named. The PS requests
(``person_token_endpoint``, ``auth_token_endpoint``, ``interaction_endpoint``, §5.7) are
JSON ``POST``s signed with the agent token, body covered.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from attrs import evolve

from aauth_core.headers.access import AccessToken
from aauth_core.headers.capabilities import Capabilities, Capability
from aauth_core.headers.prefer import serialize_prefer_wait
from aauth_core.http import Headers, HttpRequest
from aauth_core.jws import decode_compact
from aauth_core.metadata import PersonServerMetadata
from aauth_core.requests import aauth_components, sign_aauth_request
from aauth_core.signer import Signer
from aauth_core.tokens.claims import ResourceTokenClaims
from aauth_flows.machines.agent_config import AgentConfig, AgentData, Exchange, Relay
from aauth_flows.machines.engine import require

__all__ = [
    "resource_of",
    "resource_request",
    "person_token_request",
    "auth_token_request",
    "interaction_request",
    "request_producer",
    "relay_producer",
    "resource_claims",
]

Producer = Callable[[Signer], dict[str, str]]


def resource_of(url: str) -> str:
    """The resource a URL belongs to: its lower-cased scheme and authority."""
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def resource_request(config: AgentConfig, data: AgentData) -> HttpRequest:
    """The caller's request with the session token, the agent's capabilities and (with
    ``prefer_wait``) ``Prefer: wait=N`` added: a resource that may answer 202 can then hold
    the request or tell the agent to poll at once (§5.9). The caller's own ``Prefer`` wins."""
    request = require(data.request, "request")
    extra: dict[str, str] = {}
    session = data.store.session_token(data.resource)
    if session is not None:
        extra["Authorization"] = AccessToken(value=session).authorization()
    if config.capabilities:
        extra["AAuth-Capabilities"] = Capabilities.of(*config.capabilities).serialize()
    if config.prefer_wait is not None and "prefer" not in request.headers:
        extra["Prefer"] = serialize_prefer_wait(config.prefer_wait)
    return evolve(request, headers=request.headers.with_fields(extra))


def person_token_request(
    config: AgentConfig, data: AgentData, meta: PersonServerMetadata
) -> HttpRequest:
    """``POST {person_token_endpoint}`` for the call's resource (and mission)."""
    body: dict[str, Any] = {"resource": data.resource}
    if data.mission_s256 is not None:
        body["mission_s256"] = data.mission_s256
    return _ps_post(config, meta.person_token_endpoint, body)


def auth_token_request(
    config: AgentConfig, data: AgentData, meta: PersonServerMetadata
) -> HttpRequest:
    """``POST {auth_token_endpoint}`` with the resource token and the token presented to
    the resource (plus the justification and the resource token's ``login_hint``)."""
    resource_token = require(data.resource_token, "resource_token")
    presented = require(data.presented, "presented")
    body: dict[str, Any] = {
        "resource_token": resource_token,
        "presented_token": presented.token,
    }
    if data.justification is not None:
        body["justification"] = data.justification
    login_hint = resource_claims(resource_token).login_hint
    if login_hint is not None:
        body["login_hint"] = login_hint
    return _ps_post(config, meta.auth_token_endpoint, body)


def interaction_request(data: AgentData, endpoint: str, url: str, code: str) -> HttpRequest:
    """``POST {interaction_endpoint}`` relaying an interaction to the PS (§5.7)."""
    body: dict[str, Any] = {"type": "interaction", "url": url, "code": code}
    if data.justification is not None:
        body["description"] = data.justification
    if data.mission_s256 is not None:
        body["mission_s256"] = data.mission_s256
    return _json_post(endpoint, body)


def request_producer(config: AgentConfig, data: AgentData) -> Producer:
    """Sign ``data.outgoing`` with ``data.signing_token``, covering the body whenever there
    is one (the protocol demands it only at PS/AS and revocation endpoints; covering it at
    a resource too costs one SHA-256 and keeps a body from being swapped in transit), plus
    what the resource demands."""
    request = require(data.outgoing, "request")
    resource = data.exchange is Exchange.RESOURCE
    covered = aauth_components(
        request,
        cover_body=True,
        extra=_resource_components(config, data) if resource else (),
    )
    return _producer(request, token=data.signing_token, created=data.created, covered=covered)


def relay_producer(relay: Relay) -> Producer:
    """Sign the relay with the agent token, body covered (a PS endpoint)."""
    covered = aauth_components(relay.request, cover_body=True)
    return _producer(relay.request, token=relay.token, created=relay.created, covered=covered)


def resource_claims(token: str) -> ResourceTokenClaims:
    """The claims of a resource token already checked by
    :func:`~aauth_flows.machines.agent_checks.check_resource_token`."""
    return ResourceTokenClaims.from_payload(decode_compact(token).payload)


def _resource_components(config: AgentConfig, data: AgentData) -> tuple[str, ...]:
    """What the resource demands beyond the four: its metadata's
    ``additional_signature_components`` (from the first request on) and any
    ``required_input`` it named in an ``invalid_input`` answer."""
    declared: tuple[str, ...] = ()
    for meta in (*config.resources, *data.store.resources):
        if str(meta.issuer) == data.resource:
            declared = meta.additional_signature_components or ()
            break
    return tuple(dict.fromkeys((*declared, *data.extra_components)))


def _producer(
    request: HttpRequest, *, token: str, created: int, covered: tuple[str, ...]
) -> Producer:
    def run(signer: Signer) -> dict[str, str]:
        return sign_aauth_request(request, signer, token=token, created=created, covered=covered)

    return run


def _ps_post(config: AgentConfig, endpoint: str, body: dict[str, Any]) -> HttpRequest:
    """A token request to the PS; with ``prefer_wait`` it says ``Prefer: wait=N`` as polls
    do (§5.9: on the initial request and on polls), so a PS may hold it for the answer."""
    caps = [c.value for c in Capability if c in config.capabilities]
    if caps:
        body["capabilities"] = caps
    request = _json_post(endpoint, body)
    if config.prefer_wait is None:
        return request
    prefer = {"Prefer": serialize_prefer_wait(config.prefer_wait)}
    return evolve(request, headers=request.headers.with_fields(prefer))


def _json_post(url: str, body: dict[str, Any]) -> HttpRequest:
    return HttpRequest(
        method="POST",
        url=url,
        headers=Headers({"Content-Type": "application/json"}),
        body=json.dumps(body, separators=(",", ":")).encode(),
    )
