"""The HTML the reference PS shows a person: login, the code form, the consent page.

Everything an agent or a resource controls (agent id, provider, resource, scopes and
their descriptions, justification, clarification answers) is agent-asserted text: it goes
through :func:`html.escape` and is shown as text, never as markup. Every page carries a
strict Content-Security-Policy (no script at all, styles only from the PS itself), is
never framed, never cached and sends no Referer (the code may be in the URL).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping

from starlette.responses import HTMLResponse, Response

from aauth_flows.machines.person_server import ConsentPrompt, IssuedKind

__all__ = [
    "SECURITY_HEADERS",
    "STYLESHEET",
    "page",
    "message_page",
    "login_page",
    "interaction_page",
    "consent_page",
    "approvals_page",
]

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self' https:; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

STYLESHEET = """body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem}
dt{font-weight:bold;margin-top:.6rem}dd{margin-left:1rem;white-space:pre-wrap;word-break:break-word}
.asserted{border-left:3px solid #c90;padding-left:.6rem}.error{color:#a00}
button{font-size:1rem;margin-right:.6rem;padding:.4rem 1rem}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def page(title: str, body: str, *, status: int = 200) -> Response:
    """A complete page; ``body`` is markup built here from escaped values."""
    text = (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{_e(title)}</title><link rel=stylesheet href=/assets/ps.css></head>"
        f"<body><h1>{_e(title)}</h1>{body}</body></html>\n"
    )
    return HTMLResponse(text, status_code=status, headers=SECURITY_HEADERS)


def message_page(title: str, text: str, *, status: int = 200, link: str | None = None) -> Response:
    extra = f'<p><a href="{_e(link)}">Continue</a></p>' if link else ""
    return page(title, f"<p>{_e(text)}</p>{extra}", status=status)


def _hidden(name: str, value: str) -> str:
    return f'<input type=hidden name="{_e(name)}" value="{_e(value)}">'


def login_page(
    *, next_url: str = "", nonce: str, error: str | None = None, status: int = 200
) -> Response:
    problem = f"<p class=error role=alert>{_e(error)}</p>" if error else ""
    body = (
        f"{problem}<form method=post action=/login>{_hidden('next', next_url)}"
        f"{_hidden('nonce', nonce)}"
        "<p><label>Person id <input name=person autocomplete=username required></label></p>"
        "<p><label>Password <input type=password name=password "
        "autocomplete=current-password required></label></p>"
        "<p><button type=submit>Log in</button></p></form>"
    )
    return page("Log in to your Person Server", body, status=status)


def interaction_page(
    *,
    person: str,
    csrf: str,
    logout_csrf: str,
    code: str = "",
    error: str | None = None,
    status: int = 200,
) -> Response:
    problem = f"<p class=error role=alert>{_e(error)}</p>" if error else ""
    body = (
        f"<p>Logged in as <strong>{_e(person)}</strong>.</p>{problem}"
        "<p>Enter the code your agent showed you.</p>"
        f"<form method=post action=/interaction>{_hidden('csrf', csrf)}"
        f'<p><label>Code <input name=code value="{_e(code)}" autocomplete=off '
        "maxlength=64 required></label></p>"
        "<p><button type=submit>Continue</button></p></form>"
        '<p><a href="/approvals">Requests waiting for you</a></p>'
        f"<form method=post action=/logout>{_hidden('csrf', logout_csrf)}"
        "<p><button type=submit>Log out</button></p></form>"
    )
    return page("Connect your agent", body, status=status)


def _scopes(scope: str | None, descriptions: Mapping[str, str]) -> str:
    names = (scope or "").split()
    if not names:
        return "<dd>(no scope)</dd>"
    items = []
    for name in names:
        described = descriptions.get(name)
        text = f"<code>{_e(name)}</code>"
        if isinstance(described, str) and described:
            text += f": {_e(described)}"
        items.append(f"<li>{text}</li>")
    return f"<dd><ul>{''.join(items)}</ul></dd>"


def consent_page(
    prompt: ConsentPrompt,
    *,
    person: str,
    action: str,
    csrf: str,
    descriptions: Mapping[str, str],
) -> Response:
    """The consent decision for ``prompt``, posting to ``action`` with ``csrf``."""
    if prompt.kind is IssuedKind.PERSON:
        question = "May this agent act at this resource as you?"
    else:
        question = "May this agent have this access at this resource?"
    rows = [
        f"<dt>Agent</dt><dd><code>{_e(prompt.agent)}</code></dd>",
        f"<dt>Agent provider</dt><dd><code>{_e(prompt.agent_provider)}</code></dd>",
        f"<dt>Resource</dt><dd><code>{_e(prompt.resource)}</code></dd>",
    ]
    if prompt.kind is not IssuedKind.PERSON or prompt.scope:
        rows.append(f"<dt>Access asked for</dt>{_scopes(prompt.scope, descriptions)}")
    if prompt.account:
        rows.append(f"<dt>Account</dt><dd>{_e(prompt.account)}</dd>")
    if prompt.mission_s256:
        rows.append(f"<dt>Mission</dt><dd><code>{_e(prompt.mission_s256)}</code></dd>")
    if prompt.justification:
        rows.append(
            "<dt>The agent says why (its own words, not checked)</dt>"
            f"<dd class=asserted>{_e(prompt.justification)}</dd>"
        )
    if prompt.clarification_response:
        rows.append(
            "<dt>The agent answered your question (its own words)</dt>"
            f"<dd class=asserted>{_e(prompt.clarification_response)}</dd>"
        )
    body = (
        f"<p>Logged in as <strong>{_e(person)}</strong>.</p><p>{_e(question)}</p>"
        f"<dl>{''.join(rows)}</dl>"
        f'<form method=post action="{_e(action)}">{_hidden("csrf", csrf)}'
        "<p><button type=submit name=decision value=approve>Approve</button>"
        "<button type=submit name=decision value=deny>Deny</button></p>"
        "<p><label>Or ask the agent a question <input name=question maxlength=500>"
        "</label> <button type=submit name=decision value=ask>Ask</button></p></form>"
    )
    return page("Approve access", body)


def approvals_page(person: str, waiting: Iterable[tuple[str, ConsentPrompt]]) -> Response:
    items = [
        f'<li><a href="{_e(link)}">{_e(prompt.agent)} at {_e(prompt.resource)}</a></li>'
        for link, prompt in waiting
    ]
    listing = f"<ul>{''.join(items)}</ul>" if items else "<p>Nothing is waiting for you.</p>"
    return page("Requests waiting for you", f"<p>Logged in as {_e(person)}.</p>{listing}")
