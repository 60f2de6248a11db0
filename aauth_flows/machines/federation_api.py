"""The seam between the Person Server's auth-token machine and its federation client.

When a resource token's ``aud`` is not the PS itself (four-party, protocol -11 §5.4/§6.5),
the PS's auth-token machine hands the request to the federation client (the PS acting as a
client of the Access Server) with a :class:`Federate` action. The driver runs the client
machine and feeds its outcome back as :class:`FederationProgress` (the AS deferred the
answer; a requirement may have to reach the agent or the person) and finally
:class:`FederationSettled` (an auth token whose delivery checks passed, or an error to
relay: the AS's own code and status, or ``as_unreachable`` 502).
"""

from __future__ import annotations

from typing import Any

from attrs import field, frozen

from aauth_core.errors import AAuthError
from aauth_core.headers.requirement import Requirement
from aauth_flows.machines.engine import Action, Event

__all__ = [
    "FederationRequest",
    "Federate",
    "FederationAnswer",
    "FederationProgress",
    "FederationSettled",
]


@frozen(kw_only=True)
class FederationRequest:
    """What the PS sends to the AS's ``auth_token_endpoint`` (§5.5)."""

    access_server: str  # the resource token's ``aud``: the AS issuer to discover
    resource_token: str = field(repr=False)
    agent_token: str = field(repr=False)
    presented_token: str = field(repr=False)
    subagent_token: str | None = field(default=None, repr=False)
    upstream_token: str | None = field(default=None, repr=False)


@frozen(kw_only=True)
class Federate(Action):
    """PS auth-token machine → driver: run the federation client for ``request``."""

    request: FederationRequest


@frozen(kw_only=True)
class FederationAnswer(Action):
    """PS auth-token machine → driver: the agent answered a requirement the AS relayed
    through the PS (a ``clarification``); POST ``body`` unchanged to the AS's pending URL
    (feed it to the federation client as ``AnswerPending``), -11 §6.5 step 6."""

    body: dict[str, Any] = field(repr=False)


@frozen(kw_only=True)
class FederationProgress(Event):
    """The AS answered 202 (or 402) and the client is polling; ``requirement`` (if any)
    may have to be relayed to the agent (interaction, clarification)."""

    requirement: Requirement | None
    body: dict[str, Any] = field(factory=dict)
    at: int


@frozen(kw_only=True)
class FederationSettled(Event):
    """The federation finished: exactly one of ``auth_token`` (delivery verified) and
    ``error`` (relayed AS error, or ``as_unreachable`` 502)."""

    auth_token: str | None = field(default=None, repr=False)
    expires_in: int | None = None
    error: AAuthError | None = None
    at: int

    def __attrs_post_init__(self) -> None:
        if (self.auth_token is None) == (self.error is None):
            raise ValueError("FederationSettled carries exactly one of auth_token and error")
