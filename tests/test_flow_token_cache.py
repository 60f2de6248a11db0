"""The resource and the PS keep verified tokens between requests: a repeat caller's
token is not verified again (its signature check is skipped), while revocation is still
asked on every request."""

from __future__ import annotations

import pytest
from flow_world import RS, World

import aauth_core.requests as core_requests


def test_a_repeat_call_does_not_verify_its_token_again(monkeypatch: pytest.MonkeyPatch) -> None:
    world = World()
    assert world.call("GET", f"{RS}/data").response.status == 200
    assert len(world.rs.config.token_cache) >= 1
    verified: list[str] = []
    real = core_requests.verify_token

    def counting(token: str, **kwargs: object) -> object:
        verified.append(token)
        return real(token, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(core_requests, "verify_token", counting)
    start = len(world.wire)
    assert world.call("GET", f"{RS}/data").response.status == 200
    calls_at_rs = [e for e in world.wire[start:] if e.request.url == f"{RS}/data"]
    assert len(calls_at_rs) == 1  # the cached auth token was presented once
    assert verified == []  # ... and taken from the cache, not verified again


def test_a_revoked_token_is_refused_even_when_cached() -> None:
    world = World()
    world.call("GET", f"{RS}/data")
    assert len(world.rs.config.token_cache) >= 1  # the auth token is cached
    world.revoke_agent_token(world.ap_issued[-1])  # cascades to the auth token at RS
    start = len(world.wire)
    world.call("GET", f"{RS}/data")
    assert world.wire[start].response.status == 401
    assert world.wire[start].response.headers.get("signature-error") == "error=revoked_jwt"
