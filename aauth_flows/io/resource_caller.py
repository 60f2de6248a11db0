"""Who called a protected route: the verified facts the resource middleware hands the app.

:class:`~aauth_flows.io.resource_asgi.AAuthMiddleware` puts one :class:`Caller` in
``scope["state"]["aauth"]`` before it runs the application, and only after the resource
machines verified the request (signature, token, revocation, mode, scope, policy).
Handlers read it with :func:`caller_of` (Starlette) or ``Depends(aauth_caller)`` (FastAPI).
"""

from __future__ import annotations

from typing import Any

from attrs import frozen
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection

from aauth_core.headers.requirement import HEADER as REQUIREMENT
from aauth_core.headers.requirement import Requirement
from aauth_core.identifiers import AgentId
from aauth_core.tokens.claims import TokenType
from aauth_flows.machines.resource_config import (
    AgentPrincipal,
    AuthorizedPrincipal,
    PersonPrincipal,
    Principal,
)

__all__ = ["STATE_KEY", "Caller", "caller_of", "aauth_caller"]

#: The key of the :class:`Caller` in ``scope["state"]``.
STATE_KEY = "aauth"


@frozen(kw_only=True)
class Caller:
    """A verified AAuth caller.

    ``agent`` is set for an agent token (-11 names the agent nowhere else); ``person`` is
    ``(iss, sub)`` of a person token or ``(ps, sub)`` of an auth token; ``scopes`` what an
    auth token granted; ``session`` whether a resource session token came with an agent
    token (resource-managed access)."""

    token_type: TokenType
    agent: AgentId | None
    person: tuple[str, str] | None
    scopes: frozenset[str]
    key_thumbprint: str
    session: bool
    principal: Principal

    @classmethod
    def of(cls, principal: Principal) -> Caller:
        if isinstance(principal, AgentPrincipal):
            return cls(
                token_type=TokenType.AGENT,
                agent=principal.agent,
                person=None,
                scopes=frozenset(),
                key_thumbprint=principal.key_thumbprint,
                session=principal.session is not None,
                principal=principal,
            )
        if isinstance(principal, PersonPrincipal):
            return cls(
                token_type=TokenType.PERSON,
                agent=None,
                person=principal.person,
                scopes=frozenset(),
                key_thumbprint=principal.key_thumbprint,
                session=False,
                principal=principal,
            )
        if isinstance(principal, AuthorizedPrincipal):
            return cls(
                token_type=TokenType.AUTH,
                agent=None,
                person=principal.person,
                scopes=principal.scopes,
                key_thumbprint=principal.key_thumbprint,
                session=False,
                principal=principal,
            )
        raise TypeError(f"not a resource principal: {type(principal).__name__}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (no token, no key material beyond the thumbprint)."""
        out: dict[str, Any] = {
            "token_type": self.token_type.value,
            "key_thumbprint": self.key_thumbprint,
        }
        if self.agent is not None:
            out["agent"] = str(self.agent)
            out["session"] = self.session
        if self.person is not None:
            out["person"] = {"iss": self.person[0], "sub": self.person[1]}
        if self.scopes:
            out["scope"] = " ".join(sorted(self.scopes))
        return out


def caller_of(connection: HTTPConnection) -> Caller | None:
    """The :class:`Caller` the middleware verified for this request (None on a route the
    middleware leaves public)."""
    state = connection.scope.get("state")
    found = state.get(STATE_KEY) if isinstance(state, dict) else None
    return found if isinstance(found, Caller) else None


def aauth_caller(request: HTTPConnection) -> Caller:
    """FastAPI/Starlette dependency: the verified :class:`Caller`.

    A route the middleware does not protect (configured public by mistake) has none: the
    answer is 401 with ``AAuth-Requirement: requirement=agent-token`` rather than a
    handler running for an unverified caller."""
    caller = caller_of(request)
    if caller is None:
        raise HTTPException(
            status_code=401,
            detail="this route is not protected by AAuth: no verified caller",
            headers={REQUIREMENT: Requirement.agent_token().serialize()},
        )
    return caller
