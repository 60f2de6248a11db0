"""The one import for what every Person Server machine shares, and the ``Step`` shorthand.

The shared names live in modules named for what they hold, and are re-exported here:

- :mod:`~aauth_flows.machines.ps_config`: :class:`PersonServerConfig`;
- :mod:`~aauth_flows.machines.ps_store`: what the PS remembers (issued tokens, missions),
  the read-only :class:`PsStore` protocol, the ``Record…`` actions that write it and
  :class:`InMemoryPsStore`;
- :mod:`~aauth_flows.machines.ps_events`: the events a PS machine takes (requests, the
  person's code, decision and questions) and the consent UI's actions;
- :mod:`~aauth_flows.machines.ps_http`: the HTTP answers and the JSON body reader;
- :func:`~aauth_flows.machines.ps_minting.directed_sub`: the person's directed ``sub``.

Cross-request state is never kept in a machine: machines *read* it through
:class:`PsStore` and *write* it by emitting ``Record…`` actions that the driver applies.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import TypeVar

from aauth_flows.machines import ps_config, ps_events, ps_http, ps_store
from aauth_flows.machines.engine import Action, Step
from aauth_flows.machines.ps_config import *  # noqa: F403
from aauth_flows.machines.ps_events import *  # noqa: F403
from aauth_flows.machines.ps_http import *  # noqa: F403
from aauth_flows.machines.ps_minting import directed_sub
from aauth_flows.machines.ps_store import *  # noqa: F403

__all__ = [
    *ps_config.__all__,
    *ps_store.__all__,
    *ps_events.__all__,
    *ps_http.__all__,
    "directed_sub",
    "step",
]

St = TypeVar("St", bound=enum.Enum)
Dt = TypeVar("Dt")


def step(*, state: St, data: Dt, actions: Iterable[Action] = ()) -> Step[St, Dt]:
    """A :class:`Step` (shorthand for the PS handlers)."""
    return Step(state=state, data=data, actions=actions)
