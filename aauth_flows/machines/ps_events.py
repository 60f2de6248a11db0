"""What a Person Server machine is told, and what it tells the person.

Events: a signed request at an endpoint (:class:`RequestArrived`) or at a pending URL
(:class:`PendingRequest`), the person arriving with her code, deciding or asking the agent
something, and her return from a resource's own interaction (:class:`ResourceCallback`).
Actions for the consent UI: the prompt, the redirect to the resource, and refusals of a
code or a decision.
"""

from __future__ import annotations

import enum

from attrs import field, frozen

from aauth_core.errors import AAuthError
from aauth_core.http import HttpRequest
from aauth_flows.machines.engine import Action, Event
from aauth_flows.machines.ps_store import IssuedKind

__all__ = [
    "RANDOM_BYTES",
    "RequestArrived",
    "PendingRequest",
    "InteractionArrived",
    "ConsentMode",
    "Decision",
    "PersonDecided",
    "PersonAsked",
    "ResourceCallback",
    "CALLBACK_ERRORS",
    "callback_outcome",
    "CodeRefused",
    "DecisionRefused",
    "ConsentPrompt",
    "RedirectPerson",
]

#: Random bytes a request event carries: 16 for the ``jti``, 16 for the pending URL,
#: 8 for the interaction code (5 used), 16 for the callback URL of a resource interaction.
RANDOM_BYTES = 56


@frozen(kw_only=True)
class RequestArrived(Event):
    """A signed request at a PS endpoint; ``random`` is CSPRNG bytes (at least
    :data:`RANDOM_BYTES`) for the token ``jti``, the pending URL and the interaction code."""

    request: HttpRequest
    at: int
    random: bytes = field(repr=False)

    def __attrs_post_init__(self) -> None:
        if len(self.random) < RANDOM_BYTES:
            raise ValueError(f"a request event needs {RANDOM_BYTES} random bytes")


@frozen(kw_only=True)
class PendingRequest(Event):
    """A signed request at this machine's pending URL: ``GET`` polls, ``POST`` answers a
    clarification, ``DELETE`` cancels."""

    request: HttpRequest
    at: int


@frozen(kw_only=True)
class InteractionArrived(Event):
    """The person, authenticated at the PS, entered (or arrived with) ``code``."""

    code: str
    at: int


class ConsentMode(enum.Enum):
    """How the PS reaches the person: she opens its interaction page with the code the
    agent relays (``interaction``), or the PS asks her through a pre-established channel
    (``approval``, §5.4, preferred by §8)."""

    INTERACTION = "interaction"
    APPROVAL = "approval"


class Decision(enum.Enum):
    APPROVE = "approve"
    DENY = "deny"
    ABANDON = "abandon"


@frozen(kw_only=True)
class PersonDecided(Event):
    """The authenticated ``person`` decided. ``scope`` may narrow the requested scope."""

    decision: Decision
    person: str
    at: int
    scope: str | None = None


@frozen(kw_only=True)
class PersonAsked(Event):
    """The person asks the agent a question (``requirement=clarification``)."""

    question: str
    at: int


@frozen(kw_only=True)
class CodeRefused(Action):
    """Tell the person's browser the code was not accepted (``invalid_code``)."""

    error: AAuthError


@frozen(kw_only=True)
class DecisionRefused(Action):
    """The decision was not taken (wrong person, code not yet presented, already decided)."""

    reason: str


@frozen(kw_only=True)
class ConsentPrompt(Action):
    """Ask the person, with the full context §8 asks for (agent and its provider,
    resource, scope, mission) and agent-asserted text (``justification``,
    ``clarification_response``) kept apart for display as such.

    ``channel`` says where: the PS page the person opened with the interaction code
    (``interaction``), or pushed to ``person`` through the PS's pre-established channel
    (``approval``: the host must reach her there). Either way her answer comes back as
    :class:`PersonDecided` (or :class:`PersonAsked`) for ``pending_url``."""

    pending_url: str
    channel: ConsentMode
    #: PERSON: "may this agent act at this resource as you?"; AUTH: "grant this scope?"
    kind: IssuedKind
    resource: str
    agent: str
    agent_provider: str
    person: str | None = None
    scope: str | None = None
    account: str | None = None
    mission_s256: str | None = None
    justification: str | None = None
    clarification_response: str | None = None


@frozen(kw_only=True)
class ResourceCallback(Event):
    """The person's browser came back to the PS callback URL from the resource's own
    interaction (§5.4): ``error`` is its ``?error=`` value, None when the flow completed."""

    error: str | None
    at: int


@frozen(kw_only=True)
class RedirectPerson(Action):
    """Send the person's browser to ``url``: the resource's interaction with its code and
    the PS callback (§5.4). The URL was validated (https, admitted origin) first."""

    url: str


#: §5.4 / §5.10: the resource's ``?error=`` on the callback → the polling outcome.
CALLBACK_ERRORS: dict[str, tuple[str, int]] = {
    "access_denied": ("denied", 403),
    "user_abandoned": ("abandoned", 403),
    "interaction_expired": ("expired", 408),
    "server_error": ("server_error", 500),
    "temporarily_unavailable": ("server_error", 500),
}


def callback_outcome(error: str) -> tuple[str, int]:
    """The polling code and status for a callback ``error`` (an unknown value is the
    resource's failure: ``server_error``)."""
    return CALLBACK_ERRORS.get(error, ("server_error", 500))
