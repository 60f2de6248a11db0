"""aauth_core: the pure AAuth domain (no network, files, clock reads, randomness or logging).

Time, random bytes and keys arrive as arguments. The names below are the everyday API;
the submodules hold the rest (``aauth_core.headers``, ``aauth_core.httpsig``,
``aauth_core.metadata``, ``aauth_core.converter``, ...).
"""

from __future__ import annotations

from aauth_core.algorithms import Alg
from aauth_core.errors import (
    AAuthError,
    InvalidKey,
    MalformedInput,
    MetadataError,
    SignatureErrorCode,
    SignatureFailure,
    TokenError,
    TokenParameterError,
    UnsupportedAlgorithm,
    UnsupportedScheme,
)
from aauth_core.headers.signature_error import signature_error_headers
from aauth_core.http import Headers, HttpRequest, HttpResponse
from aauth_core.identifiers import AgentId, ServerId
from aauth_core.jwk import PublicJwk
from aauth_core.requests import RequestVerifier, VerifiedRequest, sign_aauth_request
from aauth_core.signer import Signer
from aauth_core.token_cache import VerifiedTokenCache
from aauth_core.tokens import (
    DWK_ACCESS,
    DWK_AGENT,
    DWK_PERSON,
    DWK_RESOURCE,
    AgentTokenClaims,
    AuthTokenClaims,
    Confirmation,
    KeyResolver,
    PersonTokenClaims,
    ResourceTokenClaims,
    StaticKeyResolver,
    TokenPolicy,
    TokenType,
    VerifiedToken,
    inspect_token,
    mint_token,
    verify_agent_token,
    verify_auth_token,
    verify_person_token,
    verify_resource_token,
    verify_token,
)

__all__ = [
    "AAuthError",
    "AgentId",
    "AgentTokenClaims",
    "Alg",
    "AuthTokenClaims",
    "Confirmation",
    "DWK_ACCESS",
    "DWK_AGENT",
    "DWK_PERSON",
    "DWK_RESOURCE",
    "Headers",
    "HttpRequest",
    "HttpResponse",
    "InvalidKey",
    "KeyResolver",
    "MalformedInput",
    "MetadataError",
    "PersonTokenClaims",
    "PublicJwk",
    "RequestVerifier",
    "ResourceTokenClaims",
    "ServerId",
    "SignatureErrorCode",
    "SignatureFailure",
    "Signer",
    "StaticKeyResolver",
    "TokenError",
    "TokenParameterError",
    "TokenPolicy",
    "TokenType",
    "UnsupportedAlgorithm",
    "UnsupportedScheme",
    "VerifiedRequest",
    "VerifiedToken",
    "VerifiedTokenCache",
    "inspect_token",
    "mint_token",
    "sign_aauth_request",
    "signature_error_headers",
    "verify_agent_token",
    "verify_auth_token",
    "verify_person_token",
    "verify_resource_token",
    "verify_token",
]
