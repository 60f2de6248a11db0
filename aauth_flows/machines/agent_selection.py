"""Which credential the agent presents, and what it drops when one fails.

Auth token > person token > agent token (§6.0); a token inside the refresh margin is not
presented, except one just issued for this call.
"""

from __future__ import annotations

from attrs import evolve

from aauth_core.metadata import PersonServerMetadata
from aauth_core.tokens.claims import TokenType
from aauth_flows.machines.agent_config import AgentConfig, AgentData, Need
from aauth_flows.machines.agent_credentials import CachedToken
from aauth_flows.machines.engine import require

__all__ = ["person_server", "choose", "forget"]


def person_server(config: AgentConfig, data: AgentData) -> PersonServerMetadata | None:
    """The metadata of the agent's PS, from the configuration or the store."""
    ps = data.store.ps
    for meta in (config.person_server, data.store.person_server):
        if meta is not None and str(meta.issuer) == ps:
            return meta
    return None


def choose(config: AgentConfig, data: AgentData, at: int) -> CachedToken | Need:
    """Auth token > person token > agent token; a stale person token → refresh it."""
    store = data.store
    agent = require(store.agent_token, "agent")
    if data.force_agent:
        return agent
    obtained = data.obtained
    if obtained is not None and at < obtained.exp:
        return obtained  # just issued for this call: presented even inside the margin
    auth = None if data.authorize else store.auth_token(data.resource, at, config.margin)
    if auth is not None:
        return auth
    if store.has_person_token(data.resource, data.mission_s256):
        person = store.person_token(data.resource, data.mission_s256, at, config.margin)
        return person if person is not None else Need.PERSON_TOKEN
    return agent


def forget(data: AgentData, token: CachedToken) -> AgentData:
    """Drop a presented token that is stale, expired or revoked (and what hangs on it)."""
    store = data.store
    if token.typ == TokenType.AUTH.value:
        store = store.drop_auth_tokens(data.resource)
        store = store.drop_person_token(data.resource, data.mission_s256)
    elif token.typ == TokenType.PERSON.value:
        store = store.drop_person_token(data.resource, data.mission_s256)
    else:
        store = evolve(store, agent_token=None)
    obtained = None if data.obtained == token else data.obtained
    return evolve(data, store=store, obtained=obtained)
