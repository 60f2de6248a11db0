"""The agent's credential store (protocol -11 §6.0 "Agent credential store", §5.11).

A frozen value the driver keeps between calls and snapshots with the flow: the agent
token, the PS metadata once known, resource metadata, a person token per (resource,
mission), an auth token per (resource, scope) and a session token per resource. Every
method returns a new store.

Freshness follows the 5-minute refresh margin: :meth:`CredentialStore.person_token` and
:meth:`CredentialStore.auth_token` never return a token with less than ``margin`` seconds
left (the caller refreshes top-down: agent token, person token, auth token).
"""

from __future__ import annotations

from typing import Any

from attrs import evolve, field, frozen

from aauth_core.errors import RemoteProtocolError
from aauth_core.jws import decode_compact
from aauth_core.metadata import PersonServerMetadata, ResourceMetadata

__all__ = [
    "REFRESH_MARGIN",
    "CachedToken",
    "PersonTokenEntry",
    "AuthTokenEntry",
    "SessionEntry",
    "CredentialStore",
]

#: Never present a token with less than this many seconds left (-11 §5.11).
REFRESH_MARGIN = 300


def _opt_str(payload: dict[str, Any], name: str) -> str | None:
    value = payload.get(name)
    return value if isinstance(value, str) else None


@frozen(kw_only=True)
class CachedToken:
    """A token the agent holds, with the claims it needs to choose and check it."""

    token: str = field(repr=False)
    typ: str
    iss: str
    jti: str
    exp: int
    sub: str | None = None
    ps: str | None = None
    scope: str | None = None
    mission_s256: str | None = None

    @classmethod
    def parse(cls, token: str) -> CachedToken:
        """Read the claims of a token the agent already checked (or minted for it)."""
        jws = decode_compact(token)
        payload = jws.payload
        typ, iss, jti, exp = (
            jws.header.get("typ"),
            payload.get("iss"),
            payload.get("jti"),
            payload.get("exp"),
        )
        if not (isinstance(typ, str) and isinstance(iss, str) and isinstance(jti, str)):
            raise RemoteProtocolError("token lacks typ, iss or jti", code="invalid_token")
        if isinstance(exp, bool) or not isinstance(exp, int):
            raise RemoteProtocolError("token lacks an integer exp", code="invalid_token")
        return cls(
            token=token,
            typ=typ,
            iss=iss,
            jti=jti,
            exp=exp,
            sub=_opt_str(payload, "sub"),
            ps=_opt_str(payload, "ps"),
            scope=_opt_str(payload, "scope"),
            mission_s256=_opt_str(payload, "mission_s256"),
        )

    def fresh(self, now: int, margin: int = REFRESH_MARGIN) -> bool:
        """At least ``margin`` seconds left at ``now``."""
        return self.exp - now >= margin


@frozen(kw_only=True)
class PersonTokenEntry:
    resource: str
    mission_s256: str | None
    token: CachedToken


@frozen(kw_only=True)
class AuthTokenEntry:
    resource: str
    scope: str | None
    token: CachedToken


@frozen(kw_only=True)
class SessionEntry:
    resource: str
    value: str = field(repr=False)


@frozen(kw_only=True)
class CredentialStore:
    """Everything the agent holds between calls (snapshot-able)."""

    agent_token: CachedToken | None = None
    person_server: PersonServerMetadata | None = None
    #: resource metadata the agent knows (one per issuer)
    resources: tuple[ResourceMetadata, ...] = ()
    person_tokens: tuple[PersonTokenEntry, ...] = ()
    auth_tokens: tuple[AuthTokenEntry, ...] = ()
    sessions: tuple[SessionEntry, ...] = ()

    @property
    def ps(self) -> str | None:
        """The agent's PS, from its agent token's ``ps`` claim."""
        return None if self.agent_token is None else self.agent_token.ps

    # -- agent token -----------------------------------------------------------------------

    def with_agent_token(self, token: CachedToken) -> CredentialStore:
        return evolve(self, agent_token=token)

    def with_person_server(self, metadata: PersonServerMetadata) -> CredentialStore:
        return evolve(self, person_server=metadata)

    # -- resource metadata -----------------------------------------------------------------

    def with_resource_metadata(self, metadata: ResourceMetadata) -> CredentialStore:
        """Remember ``aauth-resource.json`` of a resource (replacing an older copy)."""
        issuer = str(metadata.issuer)
        kept = tuple(m for m in self.resources if str(m.issuer) != issuer)
        return evolve(self, resources=(*kept, metadata))

    def resource_metadata(self, resource: str) -> ResourceMetadata | None:
        for metadata in self.resources:
            if str(metadata.issuer) == resource:
                return metadata
        return None

    # -- person tokens: one per (resource, mission) -------------------------------------

    def person_token(
        self, resource: str, mission_s256: str | None, now: int, margin: int = REFRESH_MARGIN
    ) -> CachedToken | None:
        entry = self._person(resource, mission_s256)
        return entry.token if entry is not None and entry.token.fresh(now, margin) else None

    def has_person_token(self, resource: str, mission_s256: str | None) -> bool:
        return self._person(resource, mission_s256) is not None

    def _person(self, resource: str, mission_s256: str | None) -> PersonTokenEntry | None:
        for entry in self.person_tokens:
            if entry.resource == resource and entry.mission_s256 == mission_s256:
                return entry
        return None

    def put_person_token(
        self, resource: str, mission_s256: str | None, token: CachedToken
    ) -> CredentialStore:
        kept = self.drop_person_token(resource, mission_s256).person_tokens
        entry = PersonTokenEntry(resource=resource, mission_s256=mission_s256, token=token)
        return evolve(self, person_tokens=(*kept, entry))

    def drop_person_token(self, resource: str, mission_s256: str | None) -> CredentialStore:
        kept = tuple(
            e
            for e in self.person_tokens
            if not (e.resource == resource and e.mission_s256 == mission_s256)
        )
        return evolve(self, person_tokens=kept)

    # -- auth tokens: per (resource, scope); the newest wins ----------------------------

    def auth_token(
        self, resource: str, now: int, margin: int = REFRESH_MARGIN
    ) -> CachedToken | None:
        for entry in reversed(self.auth_tokens):
            if entry.resource == resource and entry.token.fresh(now, margin):
                return entry.token
        return None

    def put_auth_token(self, resource: str, token: CachedToken) -> CredentialStore:
        kept = tuple(
            e for e in self.auth_tokens if not (e.resource == resource and e.scope == token.scope)
        )
        entry = AuthTokenEntry(resource=resource, scope=token.scope, token=token)
        return evolve(self, auth_tokens=(*kept, entry))

    def drop_auth_tokens(self, resource: str) -> CredentialStore:
        return evolve(
            self, auth_tokens=tuple(e for e in self.auth_tokens if e.resource != resource)
        )

    def drop_stale(self, now: int, margin: int = REFRESH_MARGIN) -> CredentialStore:
        """Forget person and auth tokens inside the margin (they are never presented)."""
        return evolve(
            self,
            person_tokens=tuple(e for e in self.person_tokens if e.token.fresh(now, margin)),
            auth_tokens=tuple(e for e in self.auth_tokens if e.token.fresh(now, margin)),
        )

    # -- session tokens ------------------------------------------------------------------

    def session_token(self, resource: str) -> str | None:
        for entry in self.sessions:
            if entry.resource == resource:
                return entry.value
        return None

    def put_session_token(self, resource: str, value: str) -> CredentialStore:
        kept = tuple(e for e in self.sessions if e.resource != resource)
        return evolve(self, sessions=(*kept, SessionEntry(resource=resource, value=value)))
