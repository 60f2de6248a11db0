"""The states of a PS token request and what it remembers (the snapshot data).

Both token machines (:mod:`~aauth_flows.machines.ps_person_token`,
:mod:`~aauth_flows.machines.ps_auth_token`) share them; a deferred request's snapshot is
what the driver stores under the pending URL.
"""

from __future__ import annotations

import enum

from attrs import frozen

from aauth_core.jwk import PublicJwk
from aauth_core.tokens.claims import AuthTokenClaims, PersonTokenClaims
from aauth_flows.machines.ps_events import ConsentMode
from aauth_flows.machines.ps_store import IssuedKind

__all__ = ["TokenRequestState", "TokenRequestData"]


class TokenRequestState(enum.Enum):
    RECEIVED = "received"
    MINTING = "minting"
    PENDING = "pending"
    INTERACTING = "interacting"
    AT_RESOURCE = "at_resource"  # the person was sent to the resource's own interaction
    CLARIFYING = "clarifying"
    FEDERATING = "federating"
    COMPLETED = "completed"  # result ready, served on the next poll
    ANSWERED = "answered"  # answered on the initial request (terminal)
    REJECTED = "rejected"  # the initial request was refused (terminal)
    FAILED = "failed"  # denied / abandoned / expired / relayed error, served on the next poll
    GONE = "gone"  # the terminal answer was served: 410 from now on
    ERROR = "error"


@frozen(kw_only=True)
class TokenRequestData:
    """What a token request remembers (snapshot-able: core values only)."""

    kind: IssuedKind
    at: int = 0
    jti: str = ""
    pending_url: str = ""
    pending_expires: int = 0
    mode: ConsentMode | None = None
    code: str | None = None
    code_failures: int = 0
    form: bool = False
    # the caller
    agent_iss: str = ""
    agent_sub: str = ""
    agent_token: str = ""
    signer_jkt: str = ""
    cnf_key: PublicJwk | None = None
    person: str | None = None
    # what is asked for
    resource: str = ""
    scope: str | None = None
    granted_scope: str | None = None
    account: str | None = None
    mission_s256: str | None = None
    tenant: str | None = None
    justification: str | None = None
    exp_cap: int = 0
    upstream: tuple[str, str] | None = None
    # the token pair an auth-token request carried (§5.9 updated_request checks)
    resource_token: str = ""
    presented_token: str = ""
    subagent_token: str | None = None
    upstream_token: str | None = None
    rt_iss: str = ""
    rt_sub: str = ""
    rt_agent_jkt: str = ""
    presented_jti: str = ""
    # clarification
    clarifications: int = 0
    question: str | None = None
    clarification_response: str | None = None
    resume: TokenRequestState = TokenRequestState.PENDING
    # resource-initiated interaction (§5.4): the resource token's ``interaction``
    resource_interaction_url: str | None = None
    resource_interaction_code: str | None = None
    callback_url: str | None = None
    # federation
    access_server: str | None = None
    relayed_requirement: str | None = None
    relayed_body: str | None = None
    # minting and the outcome
    person_claims: PersonTokenClaims | None = None
    auth_claims: AuthTokenClaims | None = None
    to_sign: bytes = b""
    deferred: bool = False
    result: str | None = None
    expires_in: int = 0
    outcome_code: str | None = None
    outcome_status: int = 0
    outcome_detail: str = ""
