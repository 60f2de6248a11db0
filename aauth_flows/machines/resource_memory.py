"""In-memory stores for a resource (one process; the embedded default and the tests').

:class:`MemoryResourceStore` answers the read-only lookups of
:class:`~aauth_flows.machines.resource_config.ResourceConfig` (revocations, sessions) and
applies the record actions the resource machines emit. Pending records are kept as JSON
snapshots under their pending id (what a shared store would hold), with an index from the
normalised interaction code to the pending id.
"""

from __future__ import annotations

from aauth_core.errors import MalformedInput
from aauth_core.interaction import normalize_code
from aauth_flows.machines.engine import Action, Snapshot
from aauth_flows.machines.resource_actions import OpenPending, RecordRevocation, RecordSession
from aauth_flows.machines.resource_config import SessionRecord

__all__ = ["MemoryResourceStore"]


class MemoryResourceStore:
    """Revocations keyed ``(iss, jti)``, sessions keyed by token digest, pending snapshots
    keyed by pending id."""

    def __init__(self) -> None:
        self._revoked: dict[tuple[str, str], int] = {}
        self._sessions: dict[str, SessionRecord] = {}
        self._pending: dict[str, str] = {}
        self._codes: dict[str, str] = {}

    # -- lookups (the Protocols in the config) ----------------------------------------------

    def is_revoked(self, iss: str, jti: str) -> bool:
        return (iss, jti) in self._revoked

    def session(self, digest: str) -> SessionRecord | None:
        return self._sessions.get(digest)

    def pending(self, pending_id: str) -> Snapshot | None:
        text = self._pending.get(pending_id)
        return None if text is None else Snapshot.from_json(text)

    def pending_for_code(self, code: str) -> str | None:
        """The pending id an interaction code was issued for (None if unknown or malformed)."""
        try:
            return self._codes.get(normalize_code(code))
        except MalformedInput:
            return None

    # -- writes ------------------------------------------------------------------------------

    def apply(self, action: Action) -> bool:
        """Apply a record action; False for any other action (not the store's business)."""
        if isinstance(action, RecordRevocation):
            self._revoked.setdefault((action.iss, action.jti), action.exp)
            return True
        if isinstance(action, RecordSession):
            self._sessions[action.digest] = action.record
            return True
        if isinstance(action, OpenPending):
            if action.pending_id in self._pending:
                raise ValueError("a pending id is never reused")
            self._pending[action.pending_id] = action.snapshot.to_json()
            if action.code is not None:
                self._codes[normalize_code(action.code)] = action.pending_id
            return True
        return False

    def save_pending(self, pending_id: str, snapshot: Snapshot) -> None:
        """Replace a pending record's snapshot after a step."""
        if pending_id not in self._pending:
            raise KeyError(pending_id)
        self._pending[pending_id] = snapshot.to_json()

    def purge(self, now: int, *, skew: int = 60) -> None:
        """Drop revocations past their token's ``exp`` + ``skew`` and expired sessions."""
        self._revoked = {k: exp for k, exp in self._revoked.items() if exp + skew > now}
        self._sessions = {d: r for d, r in self._sessions.items() if r.expires_at > now}
