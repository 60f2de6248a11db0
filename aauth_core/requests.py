"""AAuth requests: an agent signs with its key and presents a token in ``Signature-Key``
(the ``jwt`` scheme); a server verifies the whole thing (-11 §11.3.4).

Verification order: the three signature fields → the ``Signature-Key`` member of the
signature's label (scheme allowed?) → the token (``typ`` first, then ``exp``, ``cnf``,
issuer key, JWS, ``iat``/lifetime/audience; or the warm cache) → revocation → the key's
algorithm → the RFC 9421 signature with ``cnf.jwk`` (coverage, ``created`` window,
``Content-Digest``). Every failure of the signature or its key is a
:class:`SignatureFailure` (401 + ``Signature-Error``); a malformed ``Authorization: AAuth``
credential is :class:`MalformedInput` (400).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Sequence
from typing import Any

from attrs import field, frozen

from aauth_core.algorithms import DEFAULT_ALGS, Alg
from aauth_core.errors import (
    LocalProtocolError,
    SignatureErrorCode,
    SignatureFailure,
    TokenError,
    UnsupportedAlgorithm,
)
from aauth_core.headers.access import AccessToken
from aauth_core.http import HttpRequest
from aauth_core.httpsig import (
    AAUTH_COMPONENTS,
    AAUTH_REQUIRED_COMPONENTS,
    DEFAULT_WINDOW,
    CoveredComponents,
    VerifiedSignature,
    read_signature,
    sign_request,
    verify_selected,
)
from aauth_core.httpsig.base import encode_base
from aauth_core.httpsig.fields import trusted_created_params
from aauth_core.httpsig.sign import aauth_base
from aauth_core.httpsig.verify import time_failure
from aauth_core.identifiers import AgentId
from aauth_core.jwk import PublicJwk
from aauth_core.signature_key import JwtScheme, select, serialize_jwt_scheme
from aauth_core.signature_key import parse_fast as parse_key_fast
from aauth_core.signer import Signer
from aauth_core.token_cache import VerifiedTokenCache
from aauth_core.tokens.claims import (
    AgentTokenClaims,
    AuthTokenClaims,
    PersonTokenClaims,
    TokenClaims,
    TokenType,
)
from aauth_core.tokens.verify import (
    DEFAULT_POLICY,
    KeyResolver,
    TokenPolicy,
    VerifiedToken,
    verify_token,
)
from aauth_core.verify import verifier_for

__all__ = [
    "BODY_COMPONENTS",
    "RequestVerifier",
    "VerifiedRequest",
    "aauth_components",
    "sign_aauth_request",
]

#: Added when a body goes to a PS/AS endpoint or any revocation endpoint (-11 §11.3).
BODY_COMPONENTS: tuple[str, ...] = ("content-digest", "content-type")

_FAST_INPUT = re.compile(
    r'([a-z*][a-z0-9_.*-]*)=\("@method" "@authority" "@path" "signature-key"\)'
    r";created=(0|[1-9][0-9]{0,14})"
)
_FAST_SIGNATURE = re.compile(r"([a-z*][a-z0-9_.*-]*)=:([A-Za-z0-9+/]{86}==):")
_AAUTH_COVERED = CoveredComponents(components=AAUTH_COMPONENTS)

#: Token types a resource accepts in ``Signature-Key`` (the resource token never signs).
RESOURCE_TOKEN_TYPES = frozenset({TokenType.AGENT, TokenType.PERSON, TokenType.AUTH})


def aauth_components(
    request: HttpRequest,
    *,
    cover_body: bool = False,
    extra: Sequence[str] = (),
) -> tuple[str, ...]:
    """The components an agent covers: the four base ones, the body pair when asked
    (PS/AS/revocation endpoints), ``authorization`` with a session token, and any the
    resource demands (``additional_signature_components`` / ``required_input``)."""
    covered = list(AAUTH_COMPONENTS)
    if cover_body and request.body:
        covered.extend(BODY_COMPONENTS)
    authorization = request.headers.get("authorization")
    if authorization is not None and authorization[:6].lower() == "aauth ":
        covered.append("authorization")
    covered.extend(c for c in extra if c not in covered)
    return tuple(covered)


def sign_aauth_request(
    request: HttpRequest,
    signer: Signer,
    *,
    token: str,
    created: int,
    label: str = "sig",
    covered: Sequence[str] | None = None,
    cover_body: bool = False,
    expires: int | None = None,
) -> dict[str, str]:
    """Sign ``request`` with ``signer``, presenting ``token`` (agent, person or auth
    token) in ``Signature-Key: <label>=jwt;jwt="…"``. Returns the fields to add:
    ``Signature-Key``, ``Signature-Input``, ``Signature`` (and ``Content-Digest``)."""
    signature_key = serialize_jwt_scheme(label, token)
    if (
        covered is None
        and not cover_body
        and expires is None
        and label == "sig"
        and type(created) is int
        and created >= 0
    ):
        authorization = request.headers.get("authorization")
        if authorization is None or authorization[:6].lower() != "aauth ":
            # The common request: the four AAuth components, nothing else (the same bytes
            # as the general path below, which the tests hold it to).
            base, params = aauth_base(request, {"Signature-Key": signature_key}, created)
            signature = signer.sign(encode_base(base))
            return {
                "Signature-Key": signature_key,
                "Signature-Input": f"sig={params}",
                "Signature": f"sig=:{base64.b64encode(signature).decode('ascii')}:",
            }
    components = (
        covered if covered is not None else aauth_components(request, cover_body=cover_body)
    )
    extra = {"Signature-Key": signature_key}
    added = sign_request(
        request,
        signer,
        covered=components,
        created=created,
        label=label,
        expires=expires,
        extra_headers=extra,
    )
    return {"Signature-Key": signature_key, **added}


@frozen(kw_only=True)
class VerifiedRequest:
    """What a verified AAuth request tells its handler."""

    token: VerifiedToken[TokenClaims]
    signature: VerifiedSignature
    key: PublicJwk = field(repr=False)

    @property
    def token_type(self) -> TokenType:
        return self.token.type

    @property
    def agent(self) -> AgentId | None:
        """The agent identifier: only an agent token names one (-11 removed it elsewhere)."""
        claims = self.token.claims
        return claims.sub if isinstance(claims, AgentTokenClaims) else None

    @property
    def person(self) -> tuple[str, str] | None:
        """The person as ``(iss, sub)``: from a person token, or ``(ps, sub)`` of an auth token."""
        claims = self.token.claims
        if isinstance(claims, PersonTokenClaims):
            return (claims.iss, claims.sub)
        if isinstance(claims, AuthTokenClaims):
            return (claims.ps, claims.sub)
        return None

    @property
    def scopes(self) -> frozenset[str]:
        claims = self.token.claims
        return claims.scopes if isinstance(claims, AuthTokenClaims) else frozenset()

    @property
    def key_thumbprint(self) -> str:
        return self.key.thumbprint()


@frozen(kw_only=True)
class RequestVerifier:
    """Verifies signed AAuth requests for one server (``audience`` = its identifier).

    ``cache`` holds verified tokens between requests (warm path); ``is_revoked(iss,
    jti)`` is asked on every request, cached or not. ``required_components`` add to the
    AAuth four (``additional_signature_components``); ``require_body_coverage`` is for
    PS/AS and revocation endpoints.
    """

    keys: KeyResolver
    audience: str
    accepted_types: frozenset[TokenType] = RESOURCE_TOKEN_TYPES
    window: int = DEFAULT_WINDOW
    required_components: tuple[str, ...] = AAUTH_REQUIRED_COMPONENTS
    require_body_coverage: bool = False
    require_session_token_coverage: bool = True
    policy: TokenPolicy = DEFAULT_POLICY
    allowed_algs: frozenset[Alg] = DEFAULT_ALGS
    cache: VerifiedTokenCache | None = None
    is_revoked: Callable[[str, str], bool] | None = None

    def verify(
        self, request: HttpRequest, *, now: int, label: str | None = None
    ) -> VerifiedRequest:
        if label is None:
            fast = self._verify_fast(request, now)
            if fast is not None:
                return fast
        return self._verify_generic(request, now, label)

    def _verify_generic(self, request: HttpRequest, now: int, label: str | None) -> VerifiedRequest:
        headers = request.headers
        selected = read_signature(headers, label)
        raw_key = headers.get("signature-key")
        if raw_key is None:
            raise LocalProtocolError(
                "broken invariant: read_signature let a missing Signature-Key by"
            )
        scheme = select(raw_key, selected.label, accepted_schemes=("jwt",))
        if not isinstance(scheme, JwtScheme):
            raise LocalProtocolError("broken invariant: select returned a scheme not accepted")
        verified = self._token(scheme.jwt, now)
        key = self._bound_key(verified)
        signature = verify_selected(
            request,
            selected,
            key=key,
            now=now,
            window=self.window,
            required_components=self._required(request),
            require_body_coverage=self.require_body_coverage,
        )
        return VerifiedRequest(token=verified, signature=signature, key=key)

    def _verify_fast(self, request: HttpRequest, now: int) -> VerifiedRequest | None:
        """The common request, checked without the generic machinery: one signature over
        exactly the four AAuth components with only ``created``, a 64-byte signature
        (Ed25519 or ES256), ``sig=jwt;jwt="…"``, no session token, no body rule.

        Any other shape, and any check it does not make itself, returns None and the
        generic path decides. What it does conclude (a token error from the one shared
        token step, a signature that does not verify) is what the generic path concludes:
        a test holds the two equal on generated requests.
        """
        if self.required_components != AAUTH_REQUIRED_COMPONENTS or (
            self.require_body_coverage and request.body
        ):
            return None
        get = request.headers.get_lower
        raw_input = get("signature-input")
        raw_signature = get("signature")
        raw_key = get("signature-key")
        if raw_input is None or raw_signature is None or raw_key is None:
            return None
        if self.require_session_token_coverage and get("authorization") is not None:
            return None
        match_input = _FAST_INPUT.fullmatch(raw_input)
        match_signature = _FAST_SIGNATURE.fullmatch(raw_signature)
        if match_input is None or match_signature is None:
            return None
        label = match_input.group(1)
        if match_signature.group(1) != label:
            return None
        scheme = parse_key_fast(raw_key, label)
        if scheme is None:
            return None
        created = int(match_input.group(2))
        if time_failure(created, None, now, self.window) is not None:
            return None
        verified = self._token(scheme.jwt, now)
        key = self._bound_key(verified)
        try:
            base, _params = aauth_base(request, None, created)
        except ValueError:
            return None
        signature = binascii.a2b_base64(match_signature.group(2))
        if not verifier_for(key)(base.encode("ascii"), signature):
            # What the generic path concludes for this shape too; raising here spares a
            # second verification of the token for a request that fails its signature.
            raise SignatureFailure("the signature does not verify")
        return VerifiedRequest(
            token=verified,
            signature=VerifiedSignature(
                label=label,
                covered=_AAUTH_COVERED,
                params=trusted_created_params(created),
                created=created,
                expires=None,
                base=base,
            ),
            key=key,
        )

    def _bound_key(self, verified: VerifiedToken[Any]) -> PublicJwk:
        """Revocation, then the confirmed key and its algorithm (steps 5 and 6)."""
        claims = verified.claims
        if self.is_revoked is not None and self.is_revoked(claims.iss, claims.jti):
            raise TokenError("the token has been revoked", code=SignatureErrorCode.REVOKED_JWT)
        key = verified.key
        if key is None:
            raise TokenError(
                "the token binds by thumbprint only (cnf.jkt); the jwt scheme needs cnf.jwk"
            )
        if key.alg not in self.allowed_algs:
            raise UnsupportedAlgorithm(
                f"request key algorithm {key.alg.value} is not accepted",
                accept_algs=tuple(a.value for a in Alg if a in self.allowed_algs),
            )
        return key

    def _token(self, jwt: str, now: int) -> VerifiedToken[Any]:
        cache = self.cache
        if cache is not None:
            hit = cache.get(jwt, now)
            if hit is not None:
                return hit
        verified = verify_token(
            jwt,
            expected=self.accepted_types,
            keys=self.keys,
            now=now,
            audience=self.audience,
            policy=self.policy,
        )
        if cache is not None:
            cache.put(verified)
        return verified

    def _required(self, request: HttpRequest) -> tuple[str, ...]:
        if not self.require_session_token_coverage:
            return self.required_components
        authorization = request.headers.get("authorization")
        if authorization is None or authorization[:6].lower() != "aauth ":
            return self.required_components
        AccessToken.from_authorization(authorization)  # malformed → MalformedInput
        return (*self.required_components, "authorization")
