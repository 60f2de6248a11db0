"""Minting AAuth tokens through a :class:`Signer` (software, PyNaCl or PKCS#11 alike)."""

from __future__ import annotations

import hmac

from aauth_core.errors import AAuthError, TokenError
from aauth_core.jwk import PublicJwk
from aauth_core.jws import encode_compact
from aauth_core.signer import Signer
from aauth_core.tokens.claims import (
    AuthTokenClaims,
    PersonTokenClaims,
    ResourceTokenClaims,
    TokenClaims,
)

__all__ = ["mint_token", "check_agent_jkt", "presented_mismatches"]


def mint_token(claims: TokenClaims, signer: Signer, *, allow_long_lifetime: bool = False) -> str:
    """Sign ``claims`` as a compact JWS with ``typ`` = the claims' token type.

    Lifetimes are capped at issuance: 1 h for person and auth tokens (MUST), 24 h for
    agent tokens and 5 min for resource tokens (SHOULD; ``allow_long_lifetime`` lifts
    only these two).
    """
    lifetime = claims.exp - claims.iat
    must = claims.MAX_LIFETIME
    if must is not None and lifetime > must:
        raise ValueError(f"{claims.TYPE.value} lifetime {lifetime} s exceeds the {must} s MUST cap")
    if not allow_long_lifetime and lifetime > claims.ISSUE_LIFETIME:
        raise ValueError(
            f"{claims.TYPE.value} lifetime {lifetime} s exceeds {claims.ISSUE_LIFETIME} s"
        )
    payload = claims.to_payload()
    try:
        # Claims built in code pass the same checks a verifier applies to the wire form,
        # so a minted token never fails structurally at its recipient.
        type(claims).from_payload(payload)
    except AAuthError as exc:
        raise ValueError(f"{claims.TYPE.value} claims are invalid: {exc.detail}") from exc
    header = {"typ": claims.TYPE.value, "kid": signer.key_id}
    return encode_compact(header, payload, signer)


def check_agent_jkt(claims: ResourceTokenClaims, key: PublicJwk) -> None:
    """A resource token's ``agent_jkt`` must be the thumbprint of the request-signing key."""
    if not hmac.compare_digest(claims.agent_jkt, key.thumbprint()):
        raise TokenError("agent_jkt does not match the request-signing key")


def presented_mismatches(
    resource: ResourceTokenClaims, presented: PersonTokenClaims | AuthTokenClaims
) -> list[str]:
    """The claims a resource token copies from the token presented to the resource
    (``presented_jti``, ``sub``, ``mission_s256``, ``tenant``) that disagree with it,
    absence included: the mission-stripping and tampering defence of -11 §2.5 (a PS and an
    AS refuse the pair when this is not empty)."""
    return [
        name
        for name, copied, actual in (
            ("presented_jti", resource.presented_jti, presented.jti),
            ("sub", resource.sub, presented.sub),
            ("mission_s256", resource.mission_s256, presented.mission_s256),
            ("tenant", resource.tenant, presented.tenant),
        )
        if copied != actual
    ]
