"""The reference Person Server as a Starlette app, with its consent page.

Agents (signed requests, JSON answers): ``/.well-known/aauth-person.json`` and ``/jwks``,
``POST /person-token``, ``POST /auth-token``, ``POST /revoke`` and the pending URLs
``/pending/{id}`` (``GET`` poll, ``POST`` answer, ``DELETE`` cancel).

People (HTML, session cookie): ``/login``, ``/interaction`` (the code form; ``?code=``
prefills it), ``/consent/{id}`` (the consent page and its Approve / Deny / Ask form),
``/callback/{id}`` (back from a resource's own interaction), ``/approvals`` (what the PS
asks through its own channel in ``approval`` mode).

Every request is hostile until checked: bodies are bounded (413), a malformed one gets the
machine's problem answer, an unknown pending URL 404, and any failure is an answer, never
a traceback. The machines run in worker threads (:mod:`~aauth_flows.io.servers.ps_driver`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import structlog
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aauth_core.errors import AAuthError, MalformedInput
from aauth_core.http import HttpResponse
from aauth_core.interaction import normalize_code
from aauth_core.metadata import PersonServerMetadata
from aauth_core.tokens.claims import DWK_PERSON
from aauth_flows.io.forms import PasswordLogin, read_form, see_other
from aauth_flows.io.long_poll import answer_poll, poll_now
from aauth_flows.io.messages import error_response, from_starlette, to_starlette
from aauth_flows.io.pending_store import CALLBACK_INDEX, CODE_INDEX, code_key
from aauth_flows.io.servers.context import ServerContext, well_known_routes
from aauth_flows.io.servers.ps_driver import PersonOutcome, PersonServer
from aauth_flows.io.servers.ps_pages import (
    SECURITY_HEADERS,
    STYLESHEET,
    approvals_page,
    consent_page,
    interaction_page,
    login_page,
    message_page,
)
from aauth_flows.io.servers.ps_sessions import (
    COOKIE,
    LOGIN_COOKIE,
    MemorySessionStore,
    Session,
)
from aauth_flows.io.servers.ps_settings import PersonServerSettings, verify_password
from aauth_flows.machines.person_server import (
    Decision,
    InteractionArrived,
    PersonAsked,
    PersonDecided,
    ResourceCallback,
)

__all__ = ["PersonServerSettings", "PersonServer", "build_app"]

log = structlog.get_logger("aauth.io")

_MAX_FORM = 8 * 1024
_MAX_QUESTION = 500

Handler = Callable[[Request], Awaitable[Response]]


async def _form(request: Request) -> dict[str, str]:
    return await read_form(request, max_bytes=_MAX_FORM)


def _redirect(url: str) -> Response:
    return see_other(url, SECURITY_HEADERS)


def build_app(
    context: ServerContext,
    settings: PersonServerSettings,
    *,
    server: PersonServer | None = None,
) -> Starlette:
    """The PS app. ``app.state.person_server`` is the :class:`PersonServer` (its stores,
    and :meth:`~PersonServer.close`, which the app's shutdown also calls)."""
    ps = server if server is not None else PersonServer(context, settings)
    issuer = context.issuer
    PersonServerMetadata.from_dict(ps.metadata(), expected_issuer=issuer)  # fail at start
    sessions = MemorySessionStore(lifetime=settings.session_lifetime)
    logins = PasswordLogin(
        people=settings.people,
        sessions=sessions,
        cookie=COOKIE,
        login_cookie=LOGIN_COOKIE,
        page=login_page,
        verify=verify_password,
        default_next="/interaction",
        headers=SECURITY_HEADERS,
    )

    # -- shared helpers ---------------------------------------------------------------

    current = logins.current
    to_login = logins.to_login

    def guarded(handler: Handler, *, html: bool) -> Handler:
        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except AAuthError as err:
                if html:
                    return message_page("Something is wrong", err.detail, status=err.status)
                return error_response(err)
            except Exception as err:
                log.error("aauth.ps.failed", path=request.url.path, error=type(err).__name__)
                failure = AAuthError("the server failed", code="server_error", status=500)
                if html:
                    return message_page("Something went wrong", failure.detail, status=500)
                return error_response(failure)

        return run

    def pending_url(pending_id: str) -> str:
        return f"{issuer}/pending/{pending_id}"

    def may_decide(session: Session, url: str) -> bool:
        return url in session.reached or ps.approvals.get(url) == session.person

    # -- agents -----------------------------------------------------------------------

    async def endpoint(request: Request) -> Response:
        message = await from_starlette(request, origin=issuer, max_body=settings.max_body)
        response = await run_in_threadpool(ps.endpoint_request, message)
        if response is None:  # pragma: no cover - routes only reach known endpoints
            return error_response(AAuthError("not found", code="not_found", status=404))
        return to_starlette(poll_now(message, response))

    async def pending(request: Request) -> Response:
        message = await from_starlette(request, origin=issuer, max_body=settings.max_body)
        response, seen = await run_in_threadpool(ps.pending_request_tracked, message)
        # RFC 7240 Prefer: wait: a poll that found nothing new is held (on the loop, no
        # thread) until the record changes (the person decided, the AS answered) or the
        # wait is over, then answered with a fresh poll (aauth_flows.io.long_poll).
        url = message.url.split("?", 1)[0]

        async def repoll() -> HttpResponse:
            again, _ = await run_in_threadpool(ps.pending_request_tracked, message)
            return again

        answer = await answer_poll(
            message,
            response,
            seen=seen,
            version=lambda: ps.version(url),
            repoll=repoll,
        )
        return to_starlette(answer)

    # -- people -----------------------------------------------------------------------

    async def interaction_form(request: Request) -> Response:
        session = current(request)
        if session is None:
            return to_login(request)
        code = request.query_params.get("code", "")[:64]
        return interaction_page(
            person=session.person,
            csrf=session.csrf_token("interaction"),
            logout_csrf=session.csrf_token("logout"),
            code=code,
        )

    async def logout(request: Request) -> Response:
        session = current(request)
        if session is None:
            return _redirect("/login")
        form = await _form(request)
        if not session.csrf_ok(form.get("csrf"), "logout"):
            return message_page("Form expired", "Reload the page and try again.", status=403)
        return logins.logged_out(request, "/login")

    async def interaction(request: Request) -> Response:
        session = current(request)
        if session is None:
            return _redirect("/login?next=%2Finteraction")
        form = await _form(request)
        csrf = session.csrf_token("interaction")
        if not session.csrf_ok(form.get("csrf"), "interaction"):
            return message_page("Form expired", "Reload the page and try again.", status=403)
        if session.code_attempts >= settings.code_attempts:
            return message_page(
                "Too many codes", "Too many wrong codes from this session.", status=429
            )
        code = form.get("code", "")

        def refused(text: str, status: int) -> Response:
            session.code_attempts += 1
            return interaction_page(
                person=session.person,
                csrf=csrf,
                logout_csrf=session.csrf_token("logout"),
                error=text,
                status=status,
            )

        try:
            key = code_key(normalize_code(code))
        except MalformedInput:
            return refused("That is not a code.", 400)
        url = ps.records.find(CODE_INDEX, key)
        if url is None:
            return refused("Unknown or expired code.", 400)
        event = InteractionArrived(code=code, at=context.clock())
        outcome: PersonOutcome = await run_in_threadpool(ps.person_event, url, event)
        if outcome.refused_code is not None or outcome.state == "MISSING":
            status = outcome.refused_code.status if outcome.refused_code else 400
            return refused("This code is no longer valid.", status)
        session.reached.add(url)
        if outcome.redirect is not None:
            return _redirect(outcome.redirect)
        return _redirect(f"/consent/{url.rsplit('/', 1)[1]}")

    async def consent_view(request: Request) -> Response:
        session = current(request)
        if session is None:
            return to_login(request)
        url = pending_url(request.path_params["pending_id"])
        if not may_decide(session, url):
            return message_page("Not found", "There is no such request for you.", status=404)
        state, prompt = await run_in_threadpool(ps.prompt_for, url)
        if prompt is None:
            return _state_page(state)
        descriptions = await run_in_threadpool(ps.scope_descriptions, prompt.resource)
        return consent_page(
            prompt,
            person=session.person,
            action=f"/consent/{url.rsplit('/', 1)[1]}",
            csrf=session.csrf_token("consent", url),
            descriptions=descriptions,
        )

    async def consent(request: Request) -> Response:
        session = current(request)
        if session is None:
            return _redirect("/login")
        url = pending_url(request.path_params["pending_id"])
        if not may_decide(session, url):
            return message_page("Not found", "There is no such request for you.", status=404)
        form = await _form(request)
        if not session.csrf_ok(form.get("csrf"), "consent", url):
            return message_page("Form expired", "Reload the page and try again.", status=403)
        choice, at = form.get("decision"), context.clock()
        event: PersonDecided | PersonAsked
        if choice == "approve":
            event = PersonDecided(decision=Decision.APPROVE, person=session.person, at=at)
        elif choice == "deny":
            event = PersonDecided(decision=Decision.DENY, person=session.person, at=at)
        elif choice == "ask":
            question = form.get("question", "").strip()
            if not question or len(question) > _MAX_QUESTION:
                return message_page("No question", "Write a short question first.", status=400)
            event = PersonAsked(question=question, at=at)
        else:
            return message_page("No decision", "Choose Approve or Deny.", status=400)
        outcome = await run_in_threadpool(ps.person_event, url, event)
        if outcome.state == "MISSING":
            return message_page("Not found", "The request is over.", status=404)
        if outcome.refused_decision is not None:
            return message_page("Not taken", outcome.refused_decision, status=409)
        ps.approvals.pop(url, None)
        if choice == "approve":
            return message_page("Approved", "Your agent will receive its token.")
        if choice == "deny":
            return message_page("Denied", "Your agent has been told you said no.")
        return message_page("Question sent", "The agent will answer; come back to this page.")

    async def callback(request: Request) -> Response:
        session = current(request)
        if session is None:
            return to_login(request)
        url = ps.records.find(CALLBACK_INDEX, f"{issuer}{request.url.path}")
        if url is None or url not in session.reached:
            return message_page("Not found", "There is no such request for you.", status=404)
        error = request.query_params.get("error")
        event = ResourceCallback(error=error[:64] if error else None, at=context.clock())
        outcome = await run_in_threadpool(ps.person_event, url, event)
        if outcome.prompts:
            return _redirect(f"/consent/{url.rsplit('/', 1)[1]}")
        if outcome.refused_decision is not None:
            return message_page("Not taken", outcome.refused_decision, status=409)
        return _state_page(outcome.state)

    async def approvals(request: Request) -> Response:
        session = current(request)
        if session is None:
            return to_login(request)
        mine = [url for url, person in list(ps.approvals.items()) if person == session.person]
        waiting = []
        for url in mine[:50]:
            _, prompt = await run_in_threadpool(ps.prompt_for, url)
            if prompt is None:
                ps.approvals.pop(url, None)  # decided, expired or gone meanwhile
            else:
                waiting.append((f"/consent/{url.rsplit('/', 1)[1]}", prompt))
        return approvals_page(session.person, waiting)

    async def stylesheet(_request: Request) -> Response:
        return Response(
            STYLESHEET,
            media_type="text/css",
            headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
        )

    async def not_found(_request: Request, _exc: Exception) -> Response:
        return error_response(AAuthError("not found", code="not_found", status=404))

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await run_in_threadpool(ps.close)

    agent = {"html": False}
    person = {"html": True}
    routes = [
        *well_known_routes(context, DWK_PERSON, ps.metadata()),
        Route("/person-token", guarded(endpoint, **agent), methods=["POST"]),
        Route("/auth-token", guarded(endpoint, **agent), methods=["POST"]),
        Route("/revoke", guarded(endpoint, **agent), methods=["POST"]),
        Route(
            "/pending/{pending_id}", guarded(pending, **agent), methods=["GET", "POST", "DELETE"]
        ),
        Route("/login", guarded(logins.show, **person), methods=["GET"]),
        Route("/login", guarded(logins.submit, **person), methods=["POST"]),
        Route("/logout", guarded(logout, **person), methods=["POST"]),
        Route("/interaction", guarded(interaction_form, **person), methods=["GET"]),
        Route("/interaction", guarded(interaction, **person), methods=["POST"]),
        Route("/consent/{pending_id}", guarded(consent_view, **person), methods=["GET"]),
        Route("/consent/{pending_id}", guarded(consent, **person), methods=["POST"]),
        Route("/callback/{callback_id}", guarded(callback, **person), methods=["GET"]),
        Route("/approvals", guarded(approvals, **person), methods=["GET"]),
        Route("/assets/ps.css", stylesheet, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.add_exception_handler(404, not_found)
    app.state.person_server = ps
    return app


_STATES = {
    "PENDING": ("Waiting", "This request is waiting for its code.", 200),
    "CLARIFYING": ("Waiting for the agent", "The agent has not answered your question yet.", 200),
    "AT_RESOURCE": ("At the resource", "Finish at the resource's page first.", 200),
    "FEDERATING": ("In progress", "The access server is deciding.", 200),
    "MINTING": ("Approved", "Your agent will receive its token.", 200),
    "COMPLETED": ("Approved", "Your agent will receive its token.", 200),
    "FAILED": ("Over", "This request has ended.", 410),
    "GONE": ("Over", "This request has ended.", 410),
    "MISSING": ("Not found", "There is no such request.", 404),
}


def _state_page(state: str) -> Response:
    title, text, status = _STATES.get(state, ("Over", "This request has ended.", 410))
    return message_page(title, text, status=status)
