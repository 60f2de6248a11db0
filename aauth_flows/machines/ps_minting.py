"""What the PS mints: the directed ``sub``, the claims of a person or auth token, the
producer a signing action completes, and the record of the issued token."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

from attrs import evolve

from aauth_core.b64 import b64url_encode
from aauth_core.errors import LocalProtocolError
from aauth_core.signer import Signer
from aauth_core.tokens.claims import (
    DWK_PERSON,
    AuthTokenClaims,
    Confirmation,
    PersonTokenClaims,
)
from aauth_core.tokens.mint import mint_token
from aauth_flows.machines.engine import require
from aauth_flows.machines.ps_config import PersonServerConfig
from aauth_flows.machines.ps_store import IssuedKind, IssuedRecord
from aauth_flows.machines.ps_token_request import TokenRequestData

__all__ = ["directed_sub", "with_claims", "minted_claims", "token_producer", "issued_record"]


def directed_sub(secret: bytes, person: str, resource: str) -> str:
    """The person's identifier for ``resource``: stable across agents and keys, unlinkable
    across resources without ``secret``."""
    message = b"%d:%s|%s" % (len(person), person.encode(), resource.encode())
    return b64url_encode(hmac.new(secret, message, hashlib.sha256).digest()[:24])


def with_claims(
    config: PersonServerConfig, data: TokenRequestData, at: int, exp: int
) -> TokenRequestData:
    """``data`` with the claims of the token it asks for (``data.kind``), issued at ``at``."""
    cnf_key = require(data.cnf_key, "the request's cnf_key")
    person = require(data.person, "the request's person")
    if data.kind is IssuedKind.PERSON:
        person_claims = PersonTokenClaims(
            iss=config.issuer,
            dwk=DWK_PERSON,
            jti=data.jti,
            iat=at,
            exp=exp,
            aud=data.resource,
            sub=directed_sub(config.sub_secret, person, data.resource),
            cnf=Confirmation(jwk=cnf_key),
            mission_s256=data.mission_s256,
            tenant=data.tenant,
        )
        return evolve(data, person_claims=person_claims)
    auth_claims = AuthTokenClaims(
        iss=config.issuer,
        dwk=DWK_PERSON,
        jti=data.jti,
        iat=at,
        exp=exp,
        aud=data.resource,
        ps=config.issuer,
        sub=data.rt_sub,
        cnf=Confirmation(jwk=cnf_key),
        scope=data.granted_scope,
        account=data.account,
        mission_s256=data.mission_s256,
        tenant=data.tenant,
    )
    return evolve(data, auth_claims=auth_claims)


def minted_claims(data: TokenRequestData) -> PersonTokenClaims | AuthTokenClaims | None:
    """The claims being minted (None before :func:`with_claims`)."""
    return data.person_claims if data.kind is IssuedKind.PERSON else data.auth_claims


def token_producer(data: TokenRequestData) -> Callable[[Signer], str]:
    """The token as a function of the signer, for a ``SignBytes`` round trip."""
    claims = minted_claims(data)
    if claims is None:
        raise LocalProtocolError("nothing is being minted: the signature was not asked for")
    return lambda signer: mint_token(claims, signer)


def issued_record(data: TokenRequestData) -> IssuedRecord:
    """The record of the token just minted for ``data``."""
    claims = require(minted_claims(data), "the claims being minted")
    person = require(data.person, "the request's person")
    return IssuedRecord(
        kind=data.kind,
        jti=claims.jti,
        iss=claims.iss,
        aud=data.resource,
        exp=claims.exp,
        agent_iss=data.agent_iss,
        agent_sub=data.agent_sub,
        person=person,
        sub=claims.sub if isinstance(claims, PersonTokenClaims | AuthTokenClaims) else "",
        upstream=data.upstream,
    )
