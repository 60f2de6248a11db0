"""What the agent request loop is configured with and what one call remembers.

:class:`AgentConfig` is the host's (never in a snapshot); :class:`AgentData` and the
values inside it (:class:`PollerSlot`, :class:`Relay`, :class:`Exchange`, :class:`Need`)
are what an :class:`~aauth_flows.machines.agent.AgentFlow` snapshot holds;
:class:`CallResult` is what a finished call delivers.
"""

from __future__ import annotations

import enum

from attrs import field, frozen

from aauth_core.headers.capabilities import Capability
from aauth_core.http import HttpRequest, HttpResponse
from aauth_core.metadata import PersonServerMetadata, ResourceMetadata
from aauth_core.tokens.verify import KeyResolver
from aauth_flows.machines.agent_credentials import REFRESH_MARGIN, CachedToken, CredentialStore
from aauth_flows.machines.pending import PendingData, PendingState
from aauth_flows.machines.signing import SigningKey

__all__ = [
    "Exchange",
    "Need",
    "AgentConfig",
    "PollerSlot",
    "Relay",
    "AgentData",
    "CallResult",
]


class Exchange(enum.Enum):
    """Whom a signed request goes to."""

    RESOURCE = "resource"
    PERSON_TOKEN = "person_token"  # noqa: S105 - an exchange name
    AUTH_TOKEN = "auth_token"  # noqa: S105 - an exchange name


class Need(enum.Enum):
    """What the loop must get next."""

    CALL = "call"
    PERSON_TOKEN = "person_token"  # noqa: S105 - a step name
    AUTH_TOKEN = "auth_token"  # noqa: S105 - a step name


@frozen(kw_only=True)
class AgentConfig:
    """The agent's fixed configuration (never in a snapshot).

    ``keys`` (issuer keys from discovery) makes the agent verify the signatures of the
    resource, person and auth tokens it receives; without it only their claims are
    checked. ``person_server`` spares a discovery round; with an ``interaction_endpoint``
    the agent relays interactions there (§5.7). ``resources`` (or
    :meth:`CredentialStore.with_resource_metadata`) gives resource metadata up front.
    """

    key: SigningKey
    keys: KeyResolver | None = None
    person_server: PersonServerMetadata | None = None
    #: resources' metadata known in advance (their ``additional_signature_components``
    #: are covered from the first request); the store may hold more
    resources: tuple[ResourceMetadata, ...] = ()
    capabilities: tuple[Capability, ...] = ()
    margin: int = REFRESH_MARGIN
    prefer_wait: int | None = None
    as_unreachable_backoff: int = 5
    max_clock_skew_wait: int = 300
    max_sends: int = 10


@frozen(kw_only=True)
class PollerSlot:
    """A pending poller at rest inside the agent's data."""

    state: PendingState
    data: PendingData
    exchange: Exchange


@frozen(kw_only=True)
class Relay:
    """An interaction being relayed to the PS's ``interaction_endpoint`` (§5.7), with what
    to do afterwards: poll again after ``wait`` seconds, or show ``url``/``code`` if the
    PS cannot reach the person."""

    request: HttpRequest
    token: str = field(repr=False)
    created: int
    to_sign: bytes = field(default=b"", repr=False)
    url: str
    code: str
    wait: int


@frozen(kw_only=True)
class AgentData:
    """What one call remembers (snapshot-able); ``store`` is the agent's credential store."""

    store: CredentialStore
    request: HttpRequest | None = None
    resource: str = ""
    mission_s256: str | None = None
    justification: str | None = None
    need: Need = Need.CALL
    force_agent: bool = False
    presented: CachedToken | None = None
    obtained: CachedToken | None = None
    resource_token: str | None = field(default=None, repr=False)
    extra_components: tuple[str, ...] = ()
    used: tuple[str, ...] = ()
    sends: int = 0
    exchange: Exchange | None = None
    outgoing: HttpRequest | None = None
    signing_token: str = field(default="", repr=False)
    created: int = 0
    to_sign: bytes = field(default=b"", repr=False)
    poller: PollerSlot | None = None
    parked: PollerSlot | None = None
    authorize: bool = False
    authorization: HttpResponse | None = None
    relay: Relay | None = None


@frozen(kw_only=True)
class CallResult:
    """The resource's final answer and the store to keep for the next call."""

    response: HttpResponse
    store: CredentialStore
