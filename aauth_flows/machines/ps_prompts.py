"""What a PS token request shows the person: the consent prompt (with the context §8
asks for) and the redirect to a resource's own interaction (§5.4)."""

from __future__ import annotations

from urllib.parse import urlencode

from aauth_flows.machines.engine import require
from aauth_flows.machines.ps_events import ConsentMode, ConsentPrompt, RedirectPerson
from aauth_flows.machines.ps_token_request import TokenRequestData

__all__ = ["consent_prompt", "resource_redirect"]


def consent_prompt(data: TokenRequestData) -> ConsentPrompt:
    """Ask the person about ``data``, on the channel its consent mode names."""
    channel = data.mode if data.mode is not None else ConsentMode.INTERACTION
    return ConsentPrompt(
        pending_url=data.pending_url,
        channel=channel,
        kind=data.kind,
        resource=data.resource,
        agent=data.agent_sub,
        agent_provider=data.agent_iss,
        person=data.person,
        scope=data.scope,
        account=data.account,
        mission_s256=data.mission_s256,
        justification=data.justification,
        clarification_response=data.clarification_response,
    )


def resource_redirect(data: TokenRequestData) -> RedirectPerson:
    """§5.4: ``{interaction.url}?code={interaction.code}&callback={ps_callback_url}``
    (the URL was validated and admitted when the request arrived)."""
    url = require(data.resource_interaction_url, "the resource's interaction url")
    query = urlencode(
        {"code": data.resource_interaction_code or "", "callback": data.callback_url or ""}
    )
    return RedirectPerson(url=f"{url}?{query}")
