"""The resource's interaction page (protocol -11 §5.9, §6.2, §8 "Interaction and pending
state"): where a signed-in person brings the code an agent showed and approves or denies
the pending request.

``GET {interaction_url}?code=…`` shows the full context (agent, its provider, the
resource, the scopes and what they mean, who is signed in) and changes nothing (link
previews and prefetchers must not consume a code); the ``POST`` (form: ``code``,
``decision``, ``csrf``) presents the code and the decision to the pending machine in one
step. Every value put in the page is agent- or person-controlled text: HTML-escaped, shown
as text, never as markup.
"""

from __future__ import annotations

import html
from collections.abc import Mapping

from starlette.responses import HTMLResponse

from aauth_core.errors import AAuthError
from aauth_core.identifiers import AgentId

__all__ = ["PAGE_HEADERS", "consent_form", "code_form", "outcome_page", "login_page"]

PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    text = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{_e(title)}</title></head><body>"
        f"<h1>{_e(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(text, status_code=status, headers=PAGE_HEADERS)


def _signed_in(person: str) -> str:
    return f"<p>Signed in as <strong>{_e(person)}</strong>.</p>" if person else ""


def code_form(
    action: str, resource: str, *, person: str, error: str | None = None, status: int = 200
) -> HTMLResponse:
    """No (known) code yet: ask for one. The form is a GET: it only opens the request's
    page, where the person sees what she would approve before she can."""
    problem = f"<p role=alert>{_e(error)}</p>" if error else ""
    body = (
        f"{_signed_in(person)}{problem}"
        f"<p>Enter the code your agent showed you for {_e(resource)}.</p>"
        f"<form method='get' action='{_e(action)}'>"
        "<input name='code' autocomplete='off' maxlength='64' required>"
        "<button type='submit'>Continue</button></form>"
    )
    return _page("Connect an agent", body, status)


def _provider(agent: str | None) -> str | None:
    try:
        return f"https://{AgentId.parse(agent).domain}"
    except AAuthError:
        return None


def consent_form(
    action: str,
    resource: str,
    *,
    code: str,
    csrf: str,
    person: str,
    agent: str | None,
    scope: str | None,
    descriptions: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """The pending request the code belongs to, with Approve / Deny."""
    rows = [f"<dt>Agent</dt><dd><code>{_e(agent or '(unnamed agent)')}</code></dd>"]
    provider = _provider(agent)
    if provider is not None:
        rows.append(f"<dt>Agent provider</dt><dd><code>{_e(provider)}</code></dd>")
    rows.append(f"<dt>Resource</dt><dd><code>{_e(resource)}</code></dd>")
    items = []
    for name in (scope or "").split():
        described = (descriptions or {}).get(name)
        text = f"<code>{_e(name)}</code>" + (f": {_e(described)}" if described else "")
        items.append(f"<li>{text}</li>")
    listing = f"<ul>{''.join(items)}</ul>" if items else "(no scope)"
    rows.append(f"<dt>Access asked for</dt><dd>{listing}</dd>")
    body = (
        f"{_signed_in(person)}<p>May this agent use this resource?</p>"
        f"<dl>{''.join(rows)}</dl>"
        f"<form method='post' action='{_e(action)}'>"
        f"<input type='hidden' name='code' value='{_e(code)}'>"
        f"<input type='hidden' name='csrf' value='{_e(csrf)}'>"
        "<button name='decision' value='approve'>Approve</button>"
        "<button name='decision' value='deny'>Deny</button></form>"
    )
    return _page("Approve this agent?", body)


def outcome_page(title: str, message: str, status: int = 200) -> HTMLResponse:
    return _page(title, f"<p>{_e(message)}</p>", status)


def login_page(
    *, next_url: str = "", nonce: str, error: str | None = None, status: int = 200
) -> HTMLResponse:
    """A resource's own sign-in form (for :class:`~aauth_flows.io.forms.PasswordLogin`)."""
    problem = f"<p role=alert>{_e(error)}</p>" if error else ""
    body = (
        f"{problem}<form method='post' action='/login'>"
        f"<input type='hidden' name='next' value='{_e(next_url)}'>"
        f"<input type='hidden' name='nonce' value='{_e(nonce)}'>"
        "<p><label>Id <input name='person' autocomplete='username' required></label></p>"
        "<p><label>Password <input type='password' name='password' "
        "autocomplete='current-password' required></label></p>"
        "<p><button type='submit'>Sign in</button></p></form>"
    )
    return _page("Sign in", body, status)
