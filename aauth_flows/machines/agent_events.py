"""The events that drive an :class:`~aauth_flows.machines.agent.AgentFlow` and the
agent-only actions it asks its driver for (the shared ones are in
:mod:`aauth_flows.machines.actions`)."""

from __future__ import annotations

from attrs import field, frozen

from aauth_core.http import HttpRequest
from aauth_core.metadata import PersonServerMetadata
from aauth_flows.machines.engine import Action, Event

__all__ = [
    "StartCall",
    "AgentTokenRefreshed",
    "PersonServerDiscovered",
    "RefreshAgentToken",
    "DiscoverPersonServer",
]


@frozen(kw_only=True)
class StartCall(Event):
    """Make ``request`` (unsigned) to a resource, within ``mission_s256`` if given."""

    request: HttpRequest
    at: int
    mission_s256: str | None = None
    justification: str | None = None
    #: ``request`` is a ``POST`` to the resource's ``authorization_endpoint`` (§5.2, the
    #: proactive path of §6.4): it is signed with a person token, and a ``200
    #: {"resource_token"}`` is taken to the PS; the call delivers that 200 once the auth
    #: token is in the store.
    authorize: bool = False


@frozen(kw_only=True)
class AgentTokenRefreshed(Event):
    """The AP's new agent token (answer to :class:`RefreshAgentToken`)."""

    token: str = field(repr=False)
    at: int


@frozen(kw_only=True)
class PersonServerDiscovered(Event):
    """The PS metadata (answer to :class:`DiscoverPersonServer`)."""

    metadata: PersonServerMetadata
    at: int


@frozen(kw_only=True)
class RefreshAgentToken(Action):
    """Get a fresh agent token from the AP; answer with :class:`AgentTokenRefreshed`."""

    current: str | None = field(default=None, repr=False)


@frozen(kw_only=True)
class DiscoverPersonServer(Action):
    """Fetch ``{issuer}/.well-known/aauth-person.json`` (issuer-checked); answer with
    :class:`PersonServerDiscovered`."""

    issuer: str
