"""aauth_core: the pure AAuth domain (no network, files, clock reads, randomness or logging)."""

from __future__ import annotations
