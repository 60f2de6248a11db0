"""What the Person Server's federation client is configured with: the AS it calls
(:class:`AccessServerEndpoint`, from the AS's metadata), the identity claims it may
release (:class:`ClaimsSource`) and its own issuer, key and trust in the AS's keys
(:class:`FederationClientConfig`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from attrs import frozen

from aauth_core.metadata import AccessServerMetadata
from aauth_core.tokens.verify import DEFAULT_POLICY, KeyResolver, TokenPolicy
from aauth_flows.machines.signing import SigningKey

__all__ = [
    "AccessServerEndpoint",
    "ClaimsSource",
    "StaticClaims",
    "FederationClientConfig",
]


@frozen(kw_only=True)
class AccessServerEndpoint:
    """What the client needs from the AS's ``aauth-access.json``."""

    issuer: str
    auth_token_endpoint: str

    @classmethod
    def from_metadata(cls, metadata: AccessServerMetadata) -> AccessServerEndpoint:
        return cls(issuer=str(metadata.issuer), auth_token_endpoint=metadata.auth_token_endpoint)


class ClaimsSource(Protocol):
    """The PS's identity claims for the person a resource knows as ``sub`` (read-only).

    Returns the values it is willing to release among ``names``; ``sub`` is never asked
    for and is dropped if returned."""

    def claims_for(self, resource: str, sub: str, names: tuple[str, ...]) -> Mapping[str, Any]: ...


@frozen
class StaticClaims:
    """A :class:`ClaimsSource` over fixed values per ``(resource, sub)``."""

    values: Mapping[tuple[str, str], Mapping[str, Any]]

    def claims_for(self, resource: str, sub: str, names: tuple[str, ...]) -> Mapping[str, Any]:
        known = self.values.get((resource, sub), {})
        return {name: known[name] for name in names if name in known}


@frozen(kw_only=True)
class FederationClientConfig:
    """The PS's side: its issuer and signing key, the AS keys for the delivery checks."""

    issuer: str
    signing_key: SigningKey
    as_keys: KeyResolver
    claims: ClaimsSource = StaticClaims({})
    token_policy: TokenPolicy = DEFAULT_POLICY
    max_polls: int = 720
