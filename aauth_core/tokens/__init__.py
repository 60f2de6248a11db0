"""The four -11 token types: claim models, minting and verification."""

from __future__ import annotations

from aauth_core.tokens.claims import (
    DWK_ACCESS,
    DWK_AGENT,
    DWK_PERSON,
    DWK_RESOURCE,
    AgentTokenClaims,
    AuthTokenClaims,
    Confirmation,
    PersonTokenClaims,
    ResourceInteraction,
    ResourceTokenClaims,
    TokenClaims,
    TokenType,
)
from aauth_core.tokens.mint import check_agent_jkt, mint_token, presented_mismatches
from aauth_core.tokens.verify import (
    KeyResolver,
    StaticKeyResolver,
    TokenPolicy,
    UnverifiedToken,
    VerifiedToken,
    inspect_token,
    verify_agent_token,
    verify_auth_token,
    verify_person_token,
    verify_resource_token,
    verify_token,
)

__all__ = [
    "DWK_ACCESS",
    "DWK_AGENT",
    "DWK_PERSON",
    "DWK_RESOURCE",
    "AgentTokenClaims",
    "AuthTokenClaims",
    "Confirmation",
    "KeyResolver",
    "PersonTokenClaims",
    "ResourceInteraction",
    "ResourceTokenClaims",
    "StaticKeyResolver",
    "TokenClaims",
    "TokenPolicy",
    "TokenType",
    "UnverifiedToken",
    "VerifiedToken",
    "check_agent_jkt",
    "inspect_token",
    "mint_token",
    "presented_mismatches",
    "verify_agent_token",
    "verify_auth_token",
    "verify_person_token",
    "verify_resource_token",
    "verify_token",
]
