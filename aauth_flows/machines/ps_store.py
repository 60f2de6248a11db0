"""What a Person Server remembers across requests, how its machines read it, and the
actions that write it.

Machines never keep cross-request state: they *read* it through :class:`PsStore` (held by
the config) and *write* it by emitting the ``Record…`` actions below, which the driver
applies (:meth:`InMemoryPsStore.apply` does it for the in-memory store). A rejected
request emits no record action; a repeated one is refused by the lookup.
"""

from __future__ import annotations

import enum
from typing import Protocol

from attrs import field, frozen

from aauth_flows.machines.actions import RecordRevocation
from aauth_flows.machines.engine import Action

__all__ = [
    "IssuedKind",
    "IssuedRecord",
    "MissionRecord",
    "PsStore",
    "InMemoryPsStore",
    "RecordIssued",
    "RecordConsent",
    "RecordGrant",
    "RecordBinding",
    "RecordRequestSeen",
    "RecordRevocation",
    "RecordAgentToken",
    "RecordDownstreamOutcome",
]


class IssuedKind(enum.Enum):
    PERSON = "person"
    AUTH = "auth"
    #: An auth token an AS issued against a person token this PS presented to it.
    FEDERATED_AUTH = "federated-auth"


@frozen(kw_only=True)
class IssuedRecord:
    """A token this PS issued (or obtained from an AS): kept until ``exp`` + skew."""

    kind: IssuedKind
    jti: str
    iss: str
    aud: str
    exp: int
    agent_iss: str
    agent_sub: str
    person: str
    #: The directed person identifier the token carries.
    sub: str
    #: For a federated auth token: the person token presented to the AS.
    presented_jti: str | None = None
    #: For a person token issued against an ``upstream_token``: its ``(iss, jti)``.
    upstream: tuple[str, str] | None = None


@frozen(kw_only=True)
class MissionRecord:
    """What the PS knows of a mission (§2.8, §6.6)."""

    s256: str
    agent_iss: str
    agent_sub: str
    active: bool = True
    expires_at: int | None = None
    termination_reason: str | None = None


class PsStore(Protocol):
    """Read-only lookups a PS machine makes (writes are ``Record…`` actions)."""

    def person_for_agent(self, agent_iss: str, agent_sub: str) -> str | None: ...
    def has_person_consent(
        self, person: str, agent_iss: str, agent_sub: str, resource: str
    ) -> bool: ...
    def has_grant(
        self, person: str, resource: str, scope: str | None, mission_s256: str | None
    ) -> bool: ...
    def can_reach(self, person: str) -> bool: ...
    def is_revoked(self, iss: str, jti: str) -> bool: ...
    def mission(self, s256: str) -> MissionRecord | None: ...
    def request_seen(self, replay_key: str) -> bool: ...
    def person_for_directed(self, aud: str, sub: str) -> str | None: ...
    def issued_to_agent(self, agent_iss: str, agent_sub: str) -> tuple[IssuedRecord, ...]: ...
    def agent_token_sub(self, iss: str, jti: str) -> str | None: ...
    def accepts_revocations_from(self, iss: str) -> bool: ...
    def revocation_endpoint(self, server: str) -> str | None: ...


@frozen(kw_only=True)
class RecordIssued(Action):
    record: IssuedRecord


@frozen(kw_only=True)
class RecordConsent(Action):
    """The person let ``agent`` act at ``resource`` as them (person tokens)."""

    person: str
    agent_iss: str
    agent_sub: str
    resource: str


@frozen(kw_only=True)
class RecordGrant(Action):
    """The person granted ``scope`` at ``resource`` (within ``mission_s256``)."""

    person: str
    resource: str
    scope: str | None
    mission_s256: str | None


@frozen(kw_only=True)
class RecordBinding(Action):
    """First consent bound the agent to the approving person (§7.2)."""

    agent_iss: str
    agent_sub: str
    person: str


@frozen(kw_only=True)
class RecordRequestSeen(Action):
    """A signed request was accepted: refuse a replay of it until ``until``."""

    replay_key: str
    until: int


@frozen(kw_only=True)
class RecordAgentToken(Action):
    """An agent token the PS accepted: lets an AP's revocation find the agent (§7.6)."""

    iss: str
    jti: str
    sub: str
    exp: int


@frozen(kw_only=True)
class RecordDownstreamOutcome(Action):
    """A cascade revocation at ``recipient`` ended with ``outcome`` (``None`` = done;
    ``revocation_unsupported`` / ``revocation_unavailable`` otherwise)."""

    recipient: str
    jti: str
    outcome: str | None


@frozen
class InMemoryPsStore:
    """The in-memory :class:`PsStore`; :meth:`apply` is the driver's writer."""

    bindings: dict[tuple[str, str], str] = field(factory=dict)
    consents: set[tuple[str, str, str, str]] = field(factory=set)
    grants: set[tuple[str, str, str | None, str | None]] = field(factory=set)
    reachable: set[str] = field(factory=set)
    revoked: dict[tuple[str, str], int] = field(factory=dict)
    missions: dict[str, MissionRecord] = field(factory=dict)
    seen: dict[str, int] = field(factory=dict)
    directed: dict[tuple[str, str], str] = field(factory=dict)
    issued: list[IssuedRecord] = field(factory=list)
    agent_tokens: dict[tuple[str, str], str] = field(factory=dict)
    revocation_issuers: set[str] = field(factory=set)
    revocation_endpoints: dict[str, str] = field(factory=dict)
    downstream: list[RecordDownstreamOutcome] = field(factory=list)

    def person_for_agent(self, agent_iss: str, agent_sub: str) -> str | None:
        return self.bindings.get((agent_iss, agent_sub))

    def has_person_consent(
        self, person: str, agent_iss: str, agent_sub: str, resource: str
    ) -> bool:
        return (person, agent_iss, agent_sub, resource) in self.consents

    def has_grant(
        self, person: str, resource: str, scope: str | None, mission_s256: str | None
    ) -> bool:
        return (person, resource, scope, mission_s256) in self.grants

    def can_reach(self, person: str) -> bool:
        return person in self.reachable

    def is_revoked(self, iss: str, jti: str) -> bool:
        return (iss, jti) in self.revoked

    def mission(self, s256: str) -> MissionRecord | None:
        return self.missions.get(s256)

    def request_seen(self, replay_key: str) -> bool:
        return replay_key in self.seen

    def person_for_directed(self, aud: str, sub: str) -> str | None:
        return self.directed.get((aud, sub))

    def issued_to_agent(self, agent_iss: str, agent_sub: str) -> tuple[IssuedRecord, ...]:
        return tuple(
            r for r in self.issued if r.agent_iss == agent_iss and r.agent_sub == agent_sub
        )

    def agent_token_sub(self, iss: str, jti: str) -> str | None:
        return self.agent_tokens.get((iss, jti))

    def accepts_revocations_from(self, iss: str) -> bool:
        return iss in self.revocation_issuers

    def revocation_endpoint(self, server: str) -> str | None:
        return self.revocation_endpoints.get(server)

    def apply(self, action: Action) -> bool:
        """Apply a record action; False for any other action (the driver's business)."""
        if isinstance(action, RecordIssued):
            self.issued.append(action.record)
            self.directed[(action.record.aud, action.record.sub)] = action.record.person
        elif isinstance(action, RecordConsent):
            self.consents.add((action.person, action.agent_iss, action.agent_sub, action.resource))
        elif isinstance(action, RecordGrant):
            self.grants.add((action.person, action.resource, action.scope, action.mission_s256))
        elif isinstance(action, RecordBinding):
            self.bindings.setdefault((action.agent_iss, action.agent_sub), action.person)
        elif isinstance(action, RecordRequestSeen):
            self.seen[action.replay_key] = action.until
        elif isinstance(action, RecordRevocation):
            self.revoked[(action.iss, action.jti)] = action.exp
        elif isinstance(action, RecordAgentToken):
            self.agent_tokens[(action.iss, action.jti)] = action.sub
        elif isinstance(action, RecordDownstreamOutcome):
            self.downstream.append(action)
        else:
            return False
        return True
