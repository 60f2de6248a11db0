"""A bounded cache of verified tokens, keyed by the token and expiring with it.

Verifying the agent token on every request costs a second signature verification. A
resource that sees the same token again (the common case: an agent token lives for
hours) can skip that work: the token's bytes are the key, so a cached entry can only
ever answer for exactly the token that was verified. Entries leave at their ``exp``
(zero leeway, like verification) or when the cache is full (least recently used
first): the cache is filled by unauthenticated callers, so it must be bounded.

Pure: the clock is an argument. One cache belongs to one verifier configuration
(audience, policy, key resolver); revocation is checked on every request, not cached.
It is safe to share between threads (a lock guards every operation).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from aauth_core.tokens.verify import VerifiedToken

__all__ = ["VerifiedTokenCache"]


class VerifiedTokenCache:
    """LRU of ``token -> VerifiedToken`` with at most ``max_entries`` entries."""

    def __init__(self, max_entries: int = 10_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._entries: OrderedDict[str, VerifiedToken[Any]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"VerifiedTokenCache(entries={len(self._entries)}, max_entries={self.max_entries})"

    def get(self, token: str, now: int) -> VerifiedToken[Any] | None:
        with self._lock:
            entry = self._entries.get(token)
            if entry is None:
                return None
            if now >= entry.claims.exp:
                del self._entries[token]
                return None
            self._entries.move_to_end(token)
            return entry

    def put(self, verified: VerifiedToken[Any]) -> None:
        with self._lock:
            entries = self._entries
            entries[verified.token] = verified
            entries.move_to_end(verified.token)
            while len(entries) > self.max_entries:
                entries.popitem(last=False)

    def discard(self, token: str) -> None:
        with self._lock:
            self._entries.pop(token, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
