"""Verification of AAuth tokens, in the order Signature Keys gives for the ``jwt`` scheme:
parse → ``typ`` → ``exp`` → required claims (``cnf``) → issuer key → JWS signature →
remaining claims (``iat`` skew, lifetime cap, audience).

Issuer keys come from a :class:`KeyResolver`; core never fetches anything.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Generic, Protocol, TypeVar, cast

from attrs import field, frozen

from aauth_core.algorithms import DEFAULT_ALGS, Alg
from aauth_core.errors import MetadataError, SignatureErrorCode, TokenError
from aauth_core.jwk import PublicJwk
from aauth_core.jws import decode_compact, header_alg, verify_jws
from aauth_core.tokens.claims import (
    CLAIMS_FOR,
    AgentTokenClaims,
    AuthTokenClaims,
    PersonTokenClaims,
    ResourceTokenClaims,
    TokenClaims,
    TokenType,
)

__all__ = [
    "KeyResolver",
    "StaticKeyResolver",
    "TokenPolicy",
    "UnverifiedToken",
    "VerifiedToken",
    "inspect_token",
    "verify_token",
    "verify_agent_token",
    "verify_person_token",
    "verify_resource_token",
    "verify_auth_token",
]

#: a resolver's MetadataError codes that are Signature-Error codes in their own right
_ISSUER_CODES = frozenset(
    {SignatureErrorCode.ISSUER_MISSING.value, SignatureErrorCode.ISSUER_MISMATCH.value}
)

C = TypeVar("C", bound=TokenClaims)
C_co = TypeVar("C_co", bound=TokenClaims, covariant=True)


class KeyResolver(Protocol):
    """Finds an issuer's public key: ``{iss}/.well-known/{dwk}`` → ``jwks_uri`` → ``kid``.

    Implementations raise ``TokenError`` with code ``unknown_key`` for an unknown ``kid``,
    or ``MetadataError`` (``issuer_missing`` / ``issuer_mismatch``) for a bad document.
    """

    def resolve(self, issuer: str, dwk: str, kid: str | None) -> PublicJwk: ...


@frozen
class StaticKeyResolver:
    """A resolver over keys known in advance: ``{(issuer, dwk): [jwk, ...]}``."""

    keys: dict[tuple[str, str], tuple[PublicJwk, ...]]

    def resolve(self, issuer: str, dwk: str, kid: str | None) -> PublicJwk:
        candidates = self.keys.get((issuer, dwk), ())
        if kid is None:
            if len(candidates) == 1:
                return candidates[0]
            raise TokenError("token has no kid and the issuer has several keys", code="unknown_key")
        for key in candidates:
            if key.kid == kid:
                return key
        raise TokenError(f"issuer {issuer} has no key {kid[:64]!r}", code="unknown_key")


@frozen(kw_only=True)
class TokenPolicy:
    """Verifier policy. ``max_lifetime`` adds a cap to the -11 MUST caps (1 h for person
    and auth tokens); for agent (SHOULD ≤ 24 h) and resource (SHOULD ≤ 5 min) tokens it
    is off unless set."""

    max_iat_skew: int = 60
    max_lifetime: int | None = None
    allowed_algs: frozenset[Alg] = DEFAULT_ALGS


DEFAULT_POLICY = TokenPolicy()


@frozen(kw_only=True)
class UnverifiedToken:
    """A decoded token whose signature and claims are NOT verified (for inspection only)."""

    typ: str | None
    header: dict[str, Any] = field(repr=False)
    payload: dict[str, Any] = field(repr=False)


@frozen(kw_only=True)
class VerifiedToken(Generic[C_co]):
    """A token whose signature, type, lifetime and audience were checked."""

    type: TokenType
    claims: C_co
    alg: Alg
    kid: str | None
    issuer_key: PublicJwk = field(repr=False)
    token: str = field(repr=False)

    @property
    def exp(self) -> int:
        return self.claims.exp

    @property
    def key(self) -> PublicJwk | None:
        """The confirmed (request-signing) key, when the token carries ``cnf.jwk``."""
        cnf = self.claims.confirmation
        return None if cnf is None else cnf.jwk


def inspect_token(token: str) -> UnverifiedToken:
    """Decode without verifying (``aauth token inspect``)."""
    jws = decode_compact(token)
    return UnverifiedToken(typ=jws.typ, header=jws.header, payload=jws.payload)


def verify_token(
    token: str,
    *,
    expected: TokenType | Collection[TokenType],
    keys: KeyResolver,
    now: int,
    audience: str | None = None,
    policy: TokenPolicy = DEFAULT_POLICY,
) -> VerifiedToken[TokenClaims]:
    """Verify a token of one of the ``expected`` types.

    ``audience`` is the verifier's own identifier; it is required for every type that
    carries ``aud`` (person, resource, auth).
    """
    allowed = (expected,) if isinstance(expected, TokenType) else tuple(expected)
    jws = decode_compact(token)
    header = jws.header
    token_type = _check_typ(header.get("typ"), allowed)
    alg = header_alg(jws)
    if alg not in policy.allowed_algs:
        raise TokenError(f"JWS alg {alg.value} is not allowed here")
    payload = jws.payload
    exp = payload.get("exp")
    if type(exp) is int and now >= exp:
        raise TokenError("token has expired", code=SignatureErrorCode.EXPIRED_JWT)
    claims = CLAIMS_FOR[token_type].from_payload(payload)
    kid = header.get("kid")
    kid = kid if type(kid) is str else None
    try:
        key = keys.resolve(claims.iss, claims.dwk, kid)
    except MetadataError as exc:  # the KeyResolver contract: the issuer's document is bad
        code = exc.code if exc.code in _ISSUER_CODES else SignatureErrorCode.INVALID_JWT
        raise TokenError(exc.detail, code=code) from None
    verify_jws(jws, key)
    _check_times(claims, now, policy)
    aud = claims.audience
    if aud is not None:
        if audience is None:
            raise ValueError(f"verifying {token_type.value} needs the verifier's own identifier")
        if aud != audience:
            raise TokenError(f"token audience {aud[:80]!r} is not {audience!r}")
    return VerifiedToken(
        type=token_type, claims=claims, alg=alg, kid=kid, issuer_key=key, token=token
    )


def _check_typ(typ: object, allowed: tuple[TokenType, ...]) -> TokenType:
    for candidate in allowed:
        if typ == candidate:
            return candidate
    wanted = " or ".join(t.value for t in allowed)
    raise TokenError(f"typ {str(typ)[:40]!r} where {wanted} is required")


def _check_times(claims: TokenClaims, now: int, policy: TokenPolicy) -> None:
    if claims.iat > now + policy.max_iat_skew:
        raise TokenError(
            f"iat is {claims.iat - now} s ahead of the verifier's clock",
            code=SignatureErrorCode.CLOCK_SKEW,
        )
    cap = claims.MAX_LIFETIME
    extra = policy.max_lifetime
    if extra is not None and (cap is None or extra < cap):
        cap = extra
    if cap is not None and claims.exp - claims.iat > cap:
        raise TokenError(f"token lifetime of {claims.exp - claims.iat} s exceeds the {cap} s cap")


def _typed(
    token: str,
    cls: type[C],
    *,
    keys: KeyResolver,
    now: int,
    audience: str | None,
    policy: TokenPolicy,
) -> VerifiedToken[C]:
    verified = verify_token(
        token, expected=cls.TYPE, keys=keys, now=now, audience=audience, policy=policy
    )
    # verify_token builds the claims with CLAIMS_FOR[typ], and typ is cls.TYPE here: the
    # four typed verifiers below pass the class CLAIMS_FOR maps cls.TYPE to.
    return cast("VerifiedToken[C]", verified)


def verify_agent_token(
    token: str, *, keys: KeyResolver, now: int, policy: TokenPolicy = DEFAULT_POLICY
) -> VerifiedToken[AgentTokenClaims]:
    return _typed(token, AgentTokenClaims, keys=keys, now=now, audience=None, policy=policy)


def verify_person_token(
    token: str, *, keys: KeyResolver, now: int, audience: str, policy: TokenPolicy = DEFAULT_POLICY
) -> VerifiedToken[PersonTokenClaims]:
    return _typed(token, PersonTokenClaims, keys=keys, now=now, audience=audience, policy=policy)


def verify_resource_token(
    token: str, *, keys: KeyResolver, now: int, audience: str, policy: TokenPolicy = DEFAULT_POLICY
) -> VerifiedToken[ResourceTokenClaims]:
    return _typed(token, ResourceTokenClaims, keys=keys, now=now, audience=audience, policy=policy)


def verify_auth_token(
    token: str, *, keys: KeyResolver, now: int, audience: str, policy: TokenPolicy = DEFAULT_POLICY
) -> VerifiedToken[AuthTokenClaims]:
    return _typed(token, AuthTokenClaims, keys=keys, now=now, audience=audience, policy=policy)
