"""The resource's interaction page (protocol -11 §5.9, §6.2): where a person brings the
code an agent showed and approves or denies the pending request.

``GET {interaction_url}?code=…`` shows the request (agent, scope) and two buttons and
changes nothing (link previews and prefetchers must not consume a code); the ``POST``
(form: ``code``, ``decision``) presents the code and the decision to the pending machine
in one step. Every value put in the page is HTML-escaped.
"""

from __future__ import annotations

import html

from starlette.responses import HTMLResponse

__all__ = ["consent_form", "code_form", "outcome_page"]

_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    text = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head><body>"
        f"<h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(text, status_code=status, headers=_HEADERS)


def code_form(action: str, resource: str) -> HTMLResponse:
    """No (known) code yet: ask for one."""
    body = (
        f"<p>Enter the code your agent showed you for {html.escape(resource)}.</p>"
        f"<form method='post' action='{html.escape(action)}'>"
        "<input name='code' autocomplete='off' required>"
        "<button name='decision' value='approve'>Approve</button>"
        "<button name='decision' value='deny'>Deny</button></form>"
    )
    return _page("Connect an agent", body)


def consent_form(
    action: str, resource: str, code: str, agent: str | None, scope: str | None
) -> HTMLResponse:
    """The pending request the code belongs to, with Approve / Deny."""
    who = html.escape(agent or "an agent")
    what = f" for <code>{html.escape(scope)}</code>" if scope else ""
    body = (
        f"<p><strong>{who}</strong> asks to use {html.escape(resource)}{what}.</p>"
        f"<form method='post' action='{html.escape(action)}'>"
        f"<input type='hidden' name='code' value='{html.escape(code)}'>"
        "<button name='decision' value='approve'>Approve</button>"
        "<button name='decision' value='deny'>Deny</button></form>"
    )
    return _page("Approve this agent?", body)


def outcome_page(title: str, message: str, status: int = 200) -> HTMLResponse:
    return _page(title, f"<p>{html.escape(message)}</p>", status)
