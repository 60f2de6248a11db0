"""Session tokens of resource-managed access (protocol -11 §2.7, §3.5, §6.2).

Format (a choice the draft leaves to the resource): an **opaque** token of 32 random bytes
(base64url, a token68) with a server-side :class:`SessionRecord` looked up by the token's
SHA-256 digest, so a leaked store does not leak usable tokens. The record names the agent
key thumbprint: a session token is accepted only on a request that key signed, with
``authorization`` covered (core's verifier enforces the coverage). Rolling refresh: a
response to a call whose session has less than ``session_refresh_margin`` left carries a
new ``AAuth-Access``; the old token stays valid until its own expiry (concurrent calls).
"""

from __future__ import annotations

import hashlib

from attrs import evolve, frozen

from aauth_core.b64 import b64url_encode
from aauth_core.errors import MalformedInput
from aauth_core.headers.access import AccessToken
from aauth_core.http import HttpRequest
from aauth_flows.machines.resource_actions import RecordSession
from aauth_flows.machines.resource_config import ResourceConfig, SessionRecord

__all__ = ["session_digest", "SessionGrant", "new_session", "session_for", "rotate_if_due"]


def session_digest(token: str) -> str:
    """The store key of a session token."""
    return b64url_encode(hashlib.sha256(token.encode("ascii")).digest())


@frozen(kw_only=True)
class SessionGrant:
    """A freshly minted session token and the record to store for it."""

    token: str
    record: SessionRecord

    @property
    def action(self) -> RecordSession:
        return RecordSession(digest=session_digest(self.token), record=self.record)


def new_session(
    config: ResourceConfig,
    *,
    token: str,
    agent_jkt: str,
    agent_issuer: str | None,
    agent: str | None,
    scope: str | None,
    at: int,
) -> SessionGrant:
    record = SessionRecord(
        agent_jkt=agent_jkt,
        agent_issuer=agent_issuer,
        agent=agent,
        scope=scope,
        issued_at=at,
        expires_at=at + config.session_lifetime,
    )
    return SessionGrant(token=token, record=record)


def session_for(
    config: ResourceConfig, request: HttpRequest, *, key_thumbprint: str, at: int
) -> SessionRecord | None:
    """The live session the request's ``Authorization: AAuth`` names, bound to the key that
    signed it; None when absent, unknown, expired or bound to another key."""
    raw = request.headers.get("authorization")
    if raw is None:
        return None
    try:
        token = AccessToken.from_authorization(raw)
    except MalformedInput:
        return None
    record = config.sessions.session(session_digest(token.value))
    if record is None or at >= record.expires_at or record.agent_jkt != key_thumbprint:
        return None
    return record


def rotate_if_due(
    config: ResourceConfig, record: SessionRecord, *, token: str, at: int
) -> SessionGrant | None:
    """A new session token when ``record`` is within the refresh margin of its expiry."""
    if record.expires_at - at > config.session_refresh_margin:
        return None
    renewed = evolve(record, issued_at=at, expires_at=at + config.session_lifetime)
    return SessionGrant(token=token, record=renewed)
