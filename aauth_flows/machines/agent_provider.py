"""The Agent Provider: agent tokens, sub-agent tokens, and revocation at the PS
(protocol -11 §2.3, §5.8, §7.5; bootstrap draft for the lifetimes).

:class:`AgentTokenIssuance` mints one token::

    IDLE --IssueAgentToken / IssueSubAgentToken--> SIGNING | FAILED (refused)
    SIGNING --SignatureProduced--> ISSUED (RecordAgentToken + Deliver(IssuedAgentToken))

The enrolment/refresh ceremony that proves the agent holds its key (``hwk`` single-key
or ``jkt-jwt`` two-key refresh, digest §2.9) is out of scope here: the driver runs it and
hands the machine the agent's *verified* public key on the start event. The machine
checks that the AP vouches for that (agent, key) through :class:`AgentRegistry`.

Sub-agent tokens are one level deep: the parent presents its own agent token (verified
here with the AP's own keys); a sub-agent token cannot parent another; the sub-agent's
``exp`` never passes the parent's.

:class:`AgentTokenRevocation` revokes an agent token at the PS only ("agent token — by
its AP, at the PS only", -11 §5.8): a server-signed ``POST {"jti","exp"}`` to the PS's
``revocation_endpoint`` (``jwks_uri`` scheme, ``dwk="aauth-agent.json"``), following a
``202`` to its end with signed polls.
"""

from __future__ import annotations

import enum
from typing import Protocol

from attrs import evolve, field, frozen

from aauth_core.b64 import b64url_encode
from aauth_core.errors import AAuthError, InvalidIdentifier, LocalProtocolError, RemoteProtocolError
from aauth_core.identifiers import AgentId, ServerId
from aauth_core.jwk import PublicJwk
from aauth_core.tokens.claims import DWK_AGENT, AgentTokenClaims, Confirmation
from aauth_core.tokens.mint import mint_token
from aauth_core.tokens.verify import DEFAULT_POLICY, KeyResolver, TokenPolicy, verify_agent_token
from aauth_core.urls import endpoint_url
from aauth_flows.machines.actions import (
    Deliver,
    Fail,
    ResponseReceived,
    SendRequest,
    SignatureProduced,
    SignBytes,
    TimerFired,
    Wait,
)
from aauth_flows.machines.as_wire import (
    PendingSignature,
    begin_server_request,
    finish_server_request,
    json_request,
    read_json_response,
    retry_after,
    same_origin_location,
    step,
)
from aauth_flows.machines.engine import (
    Action,
    ConfiguredMachine,
    Event,
    Step,
    handles,
    require,
    table,
)
from aauth_flows.machines.signing import SigningKey, complete, signing_input

__all__ = [
    "MAX_AGENT_TOKEN_LIFETIME",
    "AgentRegistry",
    "StaticAgentRegistry",
    "AgentProviderConfig",
    "IssueAgentToken",
    "IssueSubAgentToken",
    "IssuedAgentToken",
    "RecordAgentToken",
    "IssuanceState",
    "IssuanceData",
    "AgentTokenIssuance",
    "RevokeAgentToken",
    "RevocationClientState",
    "RevocationClientData",
    "AgentTokenRevocation",
]

#: Agent tokens SHOULD live at most 24 h (-11 §2.3); the AP never mints longer ones.
MAX_AGENT_TOKEN_LIFETIME = 24 * 3600
MIN_NONCE = 16


class AgentRegistry(Protocol):
    """Whom the AP vouches for: agent identifiers and the keys they enrolled."""

    def vouches_for(self, agent: AgentId, key_thumbprint: str) -> bool: ...


@frozen
class StaticAgentRegistry:
    """``{agent identifier: {key thumbprints}}``."""

    agents: dict[str, frozenset[str]]

    def vouches_for(self, agent: AgentId, key_thumbprint: str) -> bool:
        return key_thumbprint in self.agents.get(str(agent), frozenset())


@frozen(kw_only=True)
class AgentProviderConfig:
    """The AP: its issuer (the ``domain`` of the identifiers it issues), signing key,
    registry, its own keys (to verify a parent's token), and the default lifetime."""

    issuer: str
    signing_key: SigningKey
    registry: AgentRegistry
    keys: KeyResolver
    lifetime: int = 3600
    token_policy: TokenPolicy = DEFAULT_POLICY

    def __attrs_post_init__(self) -> None:
        ServerId.parse(self.issuer)
        if not 0 < self.lifetime <= MAX_AGENT_TOKEN_LIFETIME:
            raise ValueError("agent tokens live at most 24 hours")


# -- issuance ---------------------------------------------------------------------------


@frozen(kw_only=True)
class IssueAgentToken(Event):
    """Issue a token to ``agent`` for ``key`` (verified by the enrolment ceremony)."""

    agent: AgentId
    key: PublicJwk
    ps: str | None
    at: int
    nonce: bytes = field(repr=False)
    lifetime: int | None = None


@frozen(kw_only=True)
class IssueSubAgentToken(Event):
    """Issue a sub-agent token: the parent presents its own agent token; the sub-agent's
    identifier is ``<parent local>+<discriminator>``."""

    parent_token: str = field(repr=False)
    discriminator: str
    key: PublicJwk
    at: int
    nonce: bytes = field(repr=False)
    lifetime: int | None = None


@frozen(kw_only=True)
class IssuedAgentToken:
    token: str = field(repr=False)
    jti: str
    sub: AgentId
    exp: int


@frozen(kw_only=True)
class RecordAgentToken(Action):
    """Retain ``(jti, sub, exp)``: what a later revocation at the PS names."""

    jti: str
    sub: AgentId
    exp: int


class IssuanceState(enum.Enum):
    IDLE = "idle"
    SIGNING = "signing"
    ISSUED = "issued"
    FAILED = "failed"
    ERROR = "error"


@frozen(kw_only=True)
class IssuanceData:
    claims: AgentTokenClaims | None = None
    to_sign: bytes = field(default=b"", repr=lambda b: f"<{len(b)} bytes>")


N = IssuanceState


def _refused(detail: str, code: str = "invalid_request", status: int = 400) -> AAuthError:
    return AAuthError(detail, code=code, status=status)


class AgentTokenIssuance(ConfiguredMachine[IssuanceState, IssuanceData, AgentProviderConfig]):
    """One agent or sub-agent token."""

    State = IssuanceState
    INITIAL = IssuanceState.IDLE
    DATA = IssuanceData
    TRANSITIONS = table(
        [
            (N.IDLE, IssueAgentToken, {N.SIGNING, N.FAILED}),
            (N.IDLE, IssueSubAgentToken, {N.SIGNING, N.FAILED}),
            (N.SIGNING, SignatureProduced, {N.ISSUED}),
        ]
    )

    def _lifetime(self, requested: int | None) -> int:
        lifetime = self._config.lifetime if requested is None else requested
        return max(1, min(lifetime, MAX_AGENT_TOKEN_LIFETIME))

    def _fail(self, data: IssuanceData, error: AAuthError) -> Step[IssuanceState, IssuanceData]:
        return step(N.FAILED, data, [Fail(error=error)])

    def _sign(
        self, data: IssuanceData, claims: AgentTokenClaims
    ) -> Step[IssuanceState, IssuanceData]:
        key = self._config.signing_key
        to_sign = signing_input(key, lambda s: mint_token(claims, s))
        return step(
            N.SIGNING,
            evolve(data, claims=claims, to_sign=to_sign),
            [SignBytes(key=key.ref, data=to_sign)],
        )

    def _domain_ok(self, agent: AgentId) -> bool:
        return agent.domain == self._config.issuer.removeprefix("https://")

    @handles(IssueAgentToken)
    def _issue(
        self, state: IssuanceState, data: IssuanceData, event: IssueAgentToken
    ) -> Step[IssuanceState, IssuanceData]:
        if len(event.nonce) < MIN_NONCE:
            raise LocalProtocolError(f"issuance needs at least {MIN_NONCE} random bytes")
        agent = event.agent
        if agent.is_subagent:
            return self._fail(data, _refused("sub-agent tokens are issued to a parent's request"))
        if not self._domain_ok(agent):
            return self._fail(data, _refused("the agent identifier is not in this AP's domain"))
        if not self._config.registry.vouches_for(agent, event.key.thumbprint()):
            error = _refused("the AP does not vouch for this agent and key", "access_denied", 403)
            return self._fail(data, error)
        if event.ps is not None:
            try:
                ServerId.parse(event.ps)
            except InvalidIdentifier as exc:
                return self._fail(data, _refused(f"ps: {exc.detail}"))
        claims = AgentTokenClaims(
            iss=self._config.issuer,
            dwk=DWK_AGENT,
            jti=b64url_encode(event.nonce),
            iat=event.at,
            exp=event.at + self._lifetime(event.lifetime),
            sub=agent,
            cnf=Confirmation(jwk=event.key),
            ps=event.ps,
        )
        return self._sign(data, claims)

    @handles(IssueSubAgentToken)
    def _issue_sub(
        self, state: IssuanceState, data: IssuanceData, event: IssueSubAgentToken
    ) -> Step[IssuanceState, IssuanceData]:
        if len(event.nonce) < MIN_NONCE:
            raise LocalProtocolError(f"issuance needs at least {MIN_NONCE} random bytes")
        config = self._config
        try:
            parent = verify_agent_token(
                event.parent_token, keys=config.keys, now=event.at, policy=config.token_policy
            ).claims
        except AAuthError as exc:
            return self._fail(data, _refused(f"the parent's agent token: {exc.detail}"))
        if parent.iss != config.issuer:
            return self._fail(data, _refused("the parent's agent token is from another AP"))
        if parent.parent_agent is not None or parent.sub.is_subagent:
            # An AP MUST NOT issue a sub-agent of a sub-agent (-11 §10.2).
            return self._fail(data, _refused("a sub-agent cannot have sub-agents"))
        if parent.cnf.jwk is not None and parent.cnf.binds(event.key):
            return self._fail(data, _refused("a sub-agent has its own key"))
        try:
            sub = parent.sub.subagent(event.discriminator)
        except InvalidIdentifier as exc:
            return self._fail(data, _refused(f"sub-agent identifier: {exc.detail}"))
        exp = min(event.at + self._lifetime(event.lifetime), parent.exp)
        claims = AgentTokenClaims(
            iss=config.issuer,
            dwk=DWK_AGENT,
            jti=b64url_encode(event.nonce),
            iat=event.at,
            exp=exp,
            sub=sub,
            cnf=Confirmation(jwk=event.key),
            ps=parent.ps,
            parent_agent=parent.sub,
        )
        return self._sign(data, claims)

    @handles(SignatureProduced)
    def _signed(
        self, state: IssuanceState, data: IssuanceData, event: SignatureProduced
    ) -> Step[IssuanceState, IssuanceData]:
        claims = require(data.claims, "the claims being minted")
        key = self._config.signing_key
        token = complete(key, lambda s: mint_token(claims, s), data.to_sign, event.signature)
        issued = IssuedAgentToken(token=token, jti=claims.jti, sub=claims.sub, exp=claims.exp)
        return step(
            N.ISSUED,
            evolve(data, to_sign=b""),
            [
                RecordAgentToken(jti=claims.jti, sub=claims.sub, exp=claims.exp),
                Deliver(result=issued),
            ],
        )


# -- revocation at the PS ---------------------------------------------------------------


@frozen(kw_only=True)
class RevokeAgentToken(Event):
    """Revoke the agent token ``jti`` (expiring at ``exp``) at the PS's endpoint."""

    jti: str
    exp: int
    revocation_endpoint: str
    at: int


class RevocationClientState(enum.Enum):
    IDLE = "idle"
    SIGNING = "signing"
    AWAITING = "awaiting"
    WAITING = "waiting"
    DONE = "done"
    FAILED = "failed"
    ERROR = "error"


@frozen(kw_only=True)
class RevocationClientData:
    jti: str = ""
    exp: int = 0
    endpoint: str = ""
    location: str | None = None
    retry: int = 5
    signing: PendingSignature | None = None


C = RevocationClientState


class AgentTokenRevocation(
    ConfiguredMachine[RevocationClientState, RevocationClientData, AgentProviderConfig]
):
    """AP → PS: ``POST {"jti","exp"}`` signed as the AP; done on an empty ``200``."""

    State = RevocationClientState
    INITIAL = RevocationClientState.IDLE
    DATA = RevocationClientData
    TRANSITIONS = table(
        [
            (C.IDLE, RevokeAgentToken, {C.SIGNING}),
            (C.SIGNING, SignatureProduced, {C.AWAITING}),
            (C.AWAITING, ResponseReceived, {C.DONE, C.FAILED, C.WAITING}),
            (C.WAITING, TimerFired, {C.SIGNING}),
        ]
    )

    def _sign(
        self, data: RevocationClientData, at: int
    ) -> Step[RevocationClientState, RevocationClientData]:
        endpoint = require(data.endpoint or None, "the revocation endpoint")
        if data.location is None:
            request = json_request("POST", endpoint, {"jti": data.jti, "exp": data.exp})
        else:
            request = json_request("GET", data.location)
        pending, action = begin_server_request(
            self._config.signing_key,
            request,
            issuer=self._config.issuer,
            dwk=DWK_AGENT,
            created=at,
        )
        return step(C.SIGNING, evolve(data, signing=pending), [action])

    @handles(RevokeAgentToken)
    def _start(
        self, state: RevocationClientState, data: RevocationClientData, event: RevokeAgentToken
    ) -> Step[RevocationClientState, RevocationClientData]:
        endpoint = endpoint_url(event.revocation_endpoint, error=LocalProtocolError)
        data = evolve(data, jti=event.jti, exp=event.exp, endpoint=endpoint)
        return self._sign(data, event.at)

    @handles(SignatureProduced)
    def _signed(
        self, state: RevocationClientState, data: RevocationClientData, event: SignatureProduced
    ) -> Step[RevocationClientState, RevocationClientData]:
        signing = require(data.signing, "the request being signed")
        request = finish_server_request(self._config.signing_key, signing, event.signature)
        return step(C.AWAITING, evolve(data, signing=None), [SendRequest(request=request)])

    @handles(TimerFired)
    def _timer(
        self, state: RevocationClientState, data: RevocationClientData, event: TimerFired
    ) -> Step[RevocationClientState, RevocationClientData]:
        return self._sign(data, event.at)

    @handles(ResponseReceived)
    def _response(
        self, state: RevocationClientState, data: RevocationClientData, event: ResponseReceived
    ) -> Step[RevocationClientState, RevocationClientData]:
        response = event.response
        if response.status == 200:
            return step(C.DONE, data, [Deliver(result=None)])
        if response.status == 202:
            try:
                location = same_origin_location(data.endpoint, response.headers.get("location"))
            except AAuthError as exc:
                return step(C.FAILED, data, [Fail(error=exc)])
            seconds = retry_after(response, at=event.at)
            data = evolve(data, location=location, retry=seconds)
            return step(C.WAITING, data, [Wait(seconds=seconds)])
        if response.status == 429:
            seconds = max(
                retry_after(response, at=event.at, default=data.retry + 5), data.retry + 5
            )
            return step(C.WAITING, evolve(data, retry=seconds), [Wait(seconds=seconds)])
        body = read_json_response(response) or {}
        code = body.get("error")
        error = RemoteProtocolError(
            f"the Person Server refused the revocation ({response.status})",
            code=code[:64] if isinstance(code, str) and code else "server_error",
            status=response.status,
        )
        actions: list[Action] = [Fail(error=error)]
        return step(C.FAILED, data, actions)
