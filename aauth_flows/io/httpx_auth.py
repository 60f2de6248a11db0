"""``AAuthAuth``: an :class:`httpx.Auth` that signs every request as the agent.

For plain calls to resources that only need the agent's identity (``sig=jwt`` with the
agent token, protocol §3): no challenges are followed, no other tokens fetched. The
signature covers the four AAuth components and, when there is a body, ``content-type``
and ``content-digest`` of the final body (httpx has encoded it by the time an auth flow
runs: ``requires_request_body``). The agent token is fetched again once it is inside the
refresh margin, and once more when the resource answers 401 ``expired_jwt`` /
``revoked_jwt`` / ``invalid_jwt`` to it.

Signing runs where the request is sent: in the sync flow inline, in the async flow
through :class:`~aauth_backends.interfaces.AsyncSignerAdapter` (worker thread), with the
agent-token callback in a worker thread too.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator

import httpx
import structlog

from aauth_backends.interfaces import AsyncSignerAdapter
from aauth_core.errors import AAuthError
from aauth_core.headers.signature_error import SignatureErrorHeader
from aauth_core.http import HttpRequest
from aauth_core.requests import aauth_components, sign_aauth_request
from aauth_core.signer import Signer
from aauth_flows.machines.agent_checks import check_agent_token
from aauth_flows.machines.agent_credentials import REFRESH_MARGIN, CachedToken
from aauth_flows.machines.signing import SigningKey, complete, signing_input
from aauth_flows.machines.wire import MAX_BODY

__all__ = ["AAuthAuth"]

log = structlog.get_logger("aauth.io")

#: ``Signature-Error`` codes that mean "this agent token will not do": fetch a new one.
_RENEW = frozenset({"expired_jwt", "revoked_jwt", "invalid_jwt"})
#: Headers the signature never covers and httpx may change on the way (hop-by-hop).
_SKIP = frozenset({"connection", "keep-alive", "transfer-encoding"})


class AAuthAuth(httpx.Auth):
    """Sign each request with ``signer`` presenting the agent token ``agent_token(current)``
    returns (``current`` is the token held, or None)."""

    requires_request_body = True

    def __init__(
        self,
        signer: Signer | AsyncSignerAdapter,
        *,
        agent_token: Callable[[str | None], str],
        clock: Callable[[], float] = time.time,
        margin: int = REFRESH_MARGIN,
        retry_on_token_error: bool = True,
    ) -> None:
        self._async = signer if isinstance(signer, AsyncSignerAdapter) else None
        self._signer: Signer = signer.signer if isinstance(signer, AsyncSignerAdapter) else signer
        self._key = SigningKey(ref="agent", public_jwk=self._signer.public_jwk())
        self._fetch = agent_token
        self._clock = clock
        self._margin = margin
        self._retry = retry_on_token_error
        self._lock = threading.Lock()
        self._token: CachedToken | None = None

    # -- the agent token ---------------------------------------------------------------

    def _held(self) -> str | None:
        """The held token if it is fresh enough to present, else None."""
        with self._lock:
            token = self._token
        if token is not None and token.fresh(int(self._clock()), self._margin):
            return token.token
        return None

    def _renew(self, stale: str | None) -> str:
        """A fresh agent token (one fetch even when several requests find it stale)."""
        with self._lock:
            held = self._token
            now = int(self._clock())
            if held is not None and held.token != stale and held.fresh(now, self._margin):
                return held.token  # another request renewed it meanwhile
            fresh = self._fetch(None if held is None else held.token)
            checked = check_agent_token(fresh, key=self._key.public_jwk, now=now)
            self._token = checked
            log.debug("aauth.agent_token.renewed", exp=checked.exp)
            return checked.token

    def token(self) -> str:
        """The agent token the next request will present (fetched if needed)."""
        held = self._held()
        return held if held is not None else self._renew(None)

    # -- signing -----------------------------------------------------------------------

    def _core_request(self, request: httpx.Request) -> HttpRequest:
        body = request.content
        if len(body) > MAX_BODY:
            raise ValueError(f"request body is over {MAX_BODY} bytes")
        headers = [
            (k, v)
            for k, v in request.headers.multi_items()
            if k.lower() not in _SKIP and not k.lower().startswith("signature")
        ]
        return HttpRequest(method=request.method, url=str(request.url), headers=headers, body=body)

    def _produce(
        self, core: HttpRequest, token: str, created: int
    ) -> Callable[[Signer], dict[str, str]]:
        covered = aauth_components(core, cover_body=True)

        def produce(signer: Signer) -> dict[str, str]:
            return sign_aauth_request(core, signer, token=token, created=created, covered=covered)

        return produce

    @staticmethod
    def _apply(request: httpx.Request, fields: dict[str, str]) -> None:
        for name in ("Signature", "Signature-Input", "Signature-Key", "Content-Digest"):
            if name in request.headers:
                del request.headers[name]
        for name, value in fields.items():
            request.headers[name] = value

    def sign(self, request: httpx.Request, token: str) -> None:
        """Sign ``request`` in place (blocking)."""
        produce = self._produce(self._core_request(request), token, int(self._clock()))
        self._apply(request, produce(self._signer))

    async def sign_async(self, request: httpx.Request, token: str) -> None:
        produce = self._produce(self._core_request(request), token, int(self._clock()))
        if self._async is None:
            self._async = AsyncSignerAdapter(self._signer)
        to_sign = signing_input(self._key, produce)
        signature = await self._async.sign(to_sign)
        self._apply(request, complete(self._key, produce, to_sign, signature))

    def _token_refused(self, response: httpx.Response) -> bool:
        if response.status_code != 401 or not self._retry:
            return False
        raw = response.headers.get("signature-error")
        if raw is None:
            return False
        try:
            header = SignatureErrorHeader.parse(raw)
        except (ValueError, AAuthError):
            return False
        return str(header.code) in _RENEW

    # -- httpx -------------------------------------------------------------------------

    @staticmethod
    def _again(request: httpx.Request, url: httpx.URL) -> httpx.Request:
        """A copy of ``request`` at its original ``url``: a transport may have rewritten the
        one it sent (aauth_flows.io.egress pins the resolved address into ``request.url``)."""
        extensions = {k: v for k, v in request.extensions.items() if k != "sni_hostname"}
        return httpx.Request(
            request.method,
            url,
            headers=request.headers.copy(),
            content=request.content,
            extensions=extensions,
        )

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        url = request.url
        token = self.token()
        self.sign(request, token)
        response = yield request
        if self._token_refused(response):
            log.info("aauth.agent_token.refused", status=response.status_code)
            again = self._again(request, url)
            self.sign(again, self._renew(token))
            yield again

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        url = request.url
        token = self._held()
        if token is None:
            token = await asyncio.to_thread(self._renew, None)
        await self.sign_async(request, token)
        response = yield request
        if self._token_refused(response):
            log.info("aauth.agent_token.refused", status=response.status_code)
            again = self._again(request, url)
            await self.sign_async(again, await asyncio.to_thread(self._renew, token))
            yield again
