"""The Person Server's verification steps, as pure functions raising :class:`AAuthError`
with the wire code (§2.5 step 3, §5.3, §5.4, §7.4, §7.5). The machines turn a raised
error into an error response."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from attrs import frozen

from aauth_core.b64 import b64url_encode
from aauth_core.errors import AAuthError, MalformedInput, TokenError, TokenParameterError
from aauth_core.http import HttpRequest
from aauth_core.identifiers import ServerId
from aauth_core.jwk import PublicJwk
from aauth_core.requests import RequestVerifier, VerifiedRequest
from aauth_core.tokens.claims import (
    AgentTokenClaims,
    AuthTokenClaims,
    PersonTokenClaims,
    ResourceTokenClaims,
    TokenType,
)
from aauth_core.tokens.mint import presented_mismatches
from aauth_core.tokens.verify import (
    VerifiedToken,
    inspect_token,
    verify_agent_token,
    verify_resource_token,
    verify_token,
)
from aauth_flows.machines.engine import narrow
from aauth_flows.machines.ps_config import PersonServerConfig
from aauth_flows.machines.ps_store import MissionRecord

__all__ = [
    "AgentCaller",
    "verify_agent_request",
    "replay_key",
    "verify_subagent",
    "VerifiedPair",
    "verify_resource_and_presented",
    "verify_upstream",
    "check_mission",
    "server_identifier",
    "optional_string",
    "capabilities",
]


@frozen(kw_only=True)
class AgentCaller:
    """The agent that signed a PS request (a top-level agent: sub-agents never call)."""

    verified: VerifiedRequest
    claims: AgentTokenClaims
    token: str

    @property
    def key(self) -> PublicJwk:
        return self.verified.key

    def request_fields(self, at: int, random: bytes) -> dict[str, Any]:
        """What every token request remembers of its caller (and its new ``jti``)."""
        return {
            "at": at,
            "jti": b64url_encode(random[:16]),
            "agent_iss": self.claims.iss,
            "agent_sub": str(self.claims.sub),
            "agent_token": self.token,
            "signer_jkt": self.verified.key_thumbprint,
        }


def _verifier(config: PersonServerConfig) -> RequestVerifier:
    return RequestVerifier(
        keys=config.keys,
        audience=config.issuer,
        accepted_types=frozenset({TokenType.AGENT}),
        window=config.signature_window,
        require_body_coverage=True,
        policy=config.policy,
        cache=config.token_cache,
        is_revoked=config.store.is_revoked,
    )


def verify_agent_request(config: PersonServerConfig, request: HttpRequest, now: int) -> AgentCaller:
    """Signature (agent token, body covered) → 401 family; a sub-agent signer → 400."""
    verified = _verifier(config).verify(request, now=now)
    claims = verified.token.claims
    # accepted_types admits only agent tokens
    claims = narrow(claims, AgentTokenClaims, "the PS caller's token claims")
    if claims.parent_agent is not None:
        raise MalformedInput("a sub-agent never calls the PS: its parent signs (§7.5)")
    return AgentCaller(verified=verified, claims=claims, token=verified.token.token)


def replay_key(caller: VerifiedRequest) -> str:
    """``(signing key, signature base)``: the base holds ``created``, method, authority,
    path and (for a body) its digest."""
    digest = hashlib.sha256(caller.signature.base.encode()).hexdigest()
    return f"{caller.key_thumbprint}:{digest}"


def _param(err: AAuthError, parameter: str) -> AAuthError:
    """A token carried as a parameter: ``<invalid|expired|revoked>_<parameter>_token`` 400."""
    if isinstance(err, TokenError):
        return err.as_parameter(parameter)
    return _invalid(parameter, err.detail)


def _invalid(parameter: str, detail: str) -> TokenParameterError:
    return TokenParameterError(detail, code=f"invalid_{parameter}_token", parameter=parameter)


def _revoked(parameter: str) -> TokenParameterError:
    return TokenParameterError(
        f"the {parameter} token has been revoked",
        code=f"revoked_{parameter}_token",
        parameter=parameter,
    )


def _require_string(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise MalformedInput(f"{name} is required and must be a non-empty string")
    return value


def optional_string(body: dict[str, Any], name: str, max_len: int = 8192) -> str | None:
    if name not in body:
        return None
    value = body[name]
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise MalformedInput(f"{name} must be a non-empty string")
    return value


def server_identifier(body: dict[str, Any], name: str) -> str:
    value = _require_string(body, name)
    parsed = str(ServerId.parse(value))
    if parsed != value:
        raise MalformedInput(f"{name} is not a server identifier")
    return parsed


def capabilities(body: dict[str, Any]) -> frozenset[str]:
    value = body.get("capabilities", [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MalformedInput("capabilities must be an array of strings")
    return frozenset(value)


def verify_subagent(
    config: PersonServerConfig, caller: AgentCaller, token: str, now: int
) -> AgentTokenClaims:
    """``subagent_token``: an agent token of the same AP whose ``parent_agent`` is the signer,
    bound with ``cnf.jwk`` (the key the issued token is bound to)."""
    try:
        verified = verify_agent_token(token, keys=config.keys, now=now, policy=config.policy)
    except AAuthError as exc:
        raise _param(exc, "subagent") from exc
    claims = verified.claims
    if claims.cnf.jwk is None:
        raise _invalid("subagent", "the sub-agent token's cnf carries no jwk")
    if claims.parent_agent is None or claims.parent_agent != caller.claims.sub:
        raise _invalid("subagent", "the sub-agent's parent_agent is not the signer")
    if claims.iss != caller.claims.iss:
        raise _invalid("subagent", "the sub-agent token comes from another AP")
    if config.store.is_revoked(claims.iss, claims.jti):
        raise _revoked("subagent")
    return claims


@frozen(kw_only=True)
class VerifiedPair:
    """A resource token and the presented token it was issued against."""

    resource: ResourceTokenClaims
    presented: PersonTokenClaims | AuthTokenClaims

    @property
    def three_party(self) -> bool:
        return self.resource.ps == self.resource.aud


def _verify_resource(config: PersonServerConfig, token: str, now: int) -> ResourceTokenClaims:
    try:
        header_aud = inspect_token(token).payload.get("aud")
        if isinstance(header_aud, list) and len(header_aud) == 1:
            header_aud = header_aud[0]
        # The audience is the PS (three-party) or an AS (four-party); the signature and
        # the claims are verified either way, ``ps`` must then name this PS.
        audience = header_aud if isinstance(header_aud, str) else config.issuer
        verified = verify_resource_token(
            token, keys=config.keys, now=now, audience=audience, policy=config.policy
        )
    except AAuthError as exc:
        raise _param(exc, "resource") from exc
    claims = verified.claims
    if claims.ps != config.issuer:
        raise _invalid("resource", "the resource token's ps is not this PS")
    if config.store.is_revoked(claims.iss, claims.jti):
        raise _revoked("resource")
    return claims


#: What verify_token returns for ``expected=(TokenType.PERSON, TokenType.AUTH)``.
_PRESENTED = (PersonTokenClaims, AuthTokenClaims)


def verify_resource_and_presented(
    config: PersonServerConfig,
    *,
    resource_token: str,
    presented_token: str,
    signer_key: PublicJwk,
    now: int,
) -> VerifiedPair:
    """§2.5 verification at the PS: the resource token (``aud`` = this PS, or an AS with
    ``ps`` = this PS), ``agent_jkt`` = ``signer_key``, then the presented token by its
    ``typ`` (``aud`` = resource token ``iss``, ``cnf`` = ``agent_jkt``) and the claims that
    must agree (``presented_jti``, ``ps``, ``sub``, ``mission_s256``, ``tenant``)."""
    rt = _verify_resource(config, resource_token, now)
    if not hmac.compare_digest(rt.agent_jkt, signer_key.thumbprint()):
        raise _invalid("resource", "agent_jkt is not the agent's key")
    try:
        verified: VerifiedToken[Any] = verify_token(
            presented_token,
            expected=(TokenType.PERSON, TokenType.AUTH),
            keys=config.keys,
            now=now,
            audience=rt.iss,
            policy=config.policy,
        )
    except AAuthError as exc:
        raise _param(exc, "presented") from exc
    pt = narrow(verified.claims, _PRESENTED, "the presented token claims")  # by expected
    issuer_ps = pt.iss if isinstance(pt, PersonTokenClaims) else pt.ps
    if issuer_ps != config.issuer:
        raise _invalid("presented", "the presented token was not issued for this PS")
    if not hmac.compare_digest(pt.cnf.jwk.thumbprint() if pt.cnf.jwk else "", rt.agent_jkt):
        raise _invalid("presented", "the presented token is bound to another key")
    if config.store.is_revoked(pt.iss, pt.jti):
        raise _revoked("presented")
    # Tampering / mission stripping: every copied claim must agree, absence included.
    mismatches = presented_mismatches(rt, pt)
    if rt.ps != issuer_ps:
        mismatches.append("ps")
    if mismatches:
        raise _invalid(
            "resource", f"the resource token disagrees with the presented token: {mismatches}"
        )
    return VerifiedPair(resource=rt, presented=pt)


def verify_upstream(
    config: PersonServerConfig, caller: AgentCaller, token: str, now: int
) -> PersonTokenClaims | AuthTokenClaims:
    """§7.4: a person or auth token whose ``aud`` is the intermediary (the signer's agent
    token ``iss``), issued by (or for) this PS; its ``cnf`` is not the signer's."""
    try:
        verified: VerifiedToken[Any] = verify_token(
            token,
            expected=(TokenType.PERSON, TokenType.AUTH),
            keys=config.keys,
            now=now,
            audience=caller.claims.iss,
            policy=config.policy,
        )
    except AAuthError as exc:
        raise _param(exc, "upstream") from exc
    ut = narrow(verified.claims, _PRESENTED, "the upstream token claims")  # by expected
    if isinstance(ut, PersonTokenClaims):
        ok = ut.iss == config.issuer
    else:
        ok = ut.ps == config.issuer and ut.iss == config.issuer
    if not ok:
        raise _invalid("upstream", "the upstream token was not issued by this PS")
    if config.store.is_revoked(ut.iss, ut.jti):
        raise _revoked("upstream")
    return ut


def check_mission(
    config: PersonServerConfig, s256: str, caller: AgentCaller, now: int, *, owned: bool = True
) -> MissionRecord:
    """The mission exists, is this agent's, is active and unexpired. Not found and not
    owned answer the same (no existence oracle). ``owned=False`` is call chaining (§7.4):
    the mission came with the upstream token and belongs to the agent upstream, not to
    the intermediary that signs; it must still be active and unexpired."""
    mission = config.store.mission(s256)
    if mission is None or (
        owned
        and (mission.agent_iss, mission.agent_sub) != (caller.claims.iss, str(caller.claims.sub))
    ):
        raise MalformedInput("unknown mission")
    if not mission.active or (mission.expires_at is not None and now >= mission.expires_at):
        reason = mission.termination_reason or ("expired" if mission.active else "revoked")
        raise MissionTerminated(reason)
    return mission


class MissionTerminated(AAuthError):
    """``mission_terminated`` 403 with ``mission_status`` and ``termination_reason``."""

    default_code = "mission_terminated"
    default_status = 403

    def __init__(self, reason: str) -> None:
        super().__init__(f"the mission is terminated ({reason})")
        self.reason = reason

    def to_problem(self) -> dict[str, Any]:
        return {
            **super().to_problem(),
            "mission_status": "terminated",
            "termination_reason": self.reason,
        }
