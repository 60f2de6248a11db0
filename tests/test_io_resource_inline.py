"""The middleware's event-loop path: an API call whose keys are cached and whose signers
are software keys runs without the worker thread; anything that could block (a key not
cached yet, a hardware key) takes the worker thread from the start. Real sockets."""

from __future__ import annotations

import itertools
import time
from typing import Any

import httpx
import pytest
from live import policy, serve
from signing_helpers import generated_ed25519
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route as WebRoute

from aauth_backends.software import CryptographySigner
from aauth_core.http import HttpRequest
from aauth_core.identifiers import AgentId
from aauth_core.jwk import PublicJwk
from aauth_core.requests import sign_aauth_request
from aauth_core.signer import Signer
from aauth_core.tokens import DWK_AGENT, AgentTokenClaims, Confirmation, StaticKeyResolver
from aauth_core.tokens import mint_token as mint
from aauth_flows.io import egress
from aauth_flows.io.discovery import Discovery
from aauth_flows.io.messages import send
from aauth_flows.io.resource_asgi import AAuthMiddleware, AAuthResource, caller_of
from aauth_flows.machines.resource import AccessMode, Route

AP = "https://ap.aauth.test"
API = "https://api.aauth.test"
AGENT = AgentId.parse("aauth:assistant@ap.aauth.test")
AP_KEY = generated_ed25519()
AGENT_KEY = generated_ed25519()
SERIAL = itertools.count(1)


class HardwareLike:
    """A signer that is not a software key (as a PKCS#11 key is not): it may block."""

    def __init__(self, inner: Signer) -> None:
        self._inner = inner

    @property
    def key_id(self) -> str:
        return self._inner.key_id

    @property
    def algorithm(self) -> Any:
        return self._inner.algorithm

    def public_jwk(self) -> PublicJwk:
        return self._inner.public_jwk()

    def sign(self, data: bytes) -> bytes:
        return self._inner.sign(data)


async def _whoami(request: Request) -> Response:
    caller = caller_of(request)
    return JSONResponse({"agent": None if caller is None else str(caller.agent)})


def _ap_app() -> Starlette:
    async def document(_request: Request) -> Response:
        return JSONResponse({"issuer": AP, "jwks_uri": f"{AP}/jwks"})

    async def jwks(_request: Request) -> Response:
        return JSONResponse({"keys": [AP_KEY.public_jwk().to_dict()]})

    return Starlette(
        routes=[WebRoute("/.well-known/aauth-agent.json", document), WebRoute("/jwks", jwks)]
    )


def _app(keys: Any, signer: Signer) -> Starlette:
    resource = AAuthResource.build(
        issuer=API,
        signer=signer,
        keys=keys,
        routes=(Route(path="/whoami", mode=AccessMode.AGENT),),
    )
    app = Starlette(routes=[WebRoute("/whoami", _whoami)])
    app.add_middleware(AAuthMiddleware, resource=resource)
    return app


def _token() -> str:
    now = int(time.time())
    claims = AgentTokenClaims(
        iss=AP,
        dwk=DWK_AGENT,
        jti=f"t-{next(SERIAL)}",  # every token new: none is in the verified-token cache
        iat=now,
        exp=now + 600,
        sub=AGENT,
        cnf=Confirmation(jwk=AGENT_KEY.public_jwk()),
    )
    return mint(claims, AP_KEY)


def _call(http: httpx.Client, token: str) -> int:
    bare = HttpRequest(method="GET", url=f"{API}/whoami")
    fields = sign_aauth_request(bare, AGENT_KEY, token=token, created=int(time.time()))
    answer = send(http, HttpRequest(method="GET", url=bare.url, headers=fields))
    assert str(AGENT) in answer.body.decode(), answer.body
    return answer.status


@pytest.fixture
def threaded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every call that took the worker-thread path."""
    calls: list[str] = []
    original = AAuthResource.handle_tracked

    def counting(self: AAuthResource, request: HttpRequest, serve: Any) -> Any:
        calls.append(request.url)
        return original(self, request, serve)

    monkeypatch.setattr(AAuthResource, "handle_tracked", counting)
    return calls


def test_static_keys_and_software_signers_stay_on_the_loop(threaded: list[str]) -> None:
    keys = StaticKeyResolver({(AP, DWK_AGENT): (AP_KEY.public_jwk(),)})
    signer = CryptographySigner.generate("Ed25519")
    with (
        serve({"api.aauth.test": _app(keys, signer)}) as servers,
        egress.client(policy(servers)) as http,
    ):
        token = _token()
        assert [_call(http, token) for _ in range(3)] == [200, 200, 200]
    assert threaded == []


def test_a_key_that_may_block_takes_the_worker_thread(threaded: list[str]) -> None:
    keys = StaticKeyResolver({(AP, DWK_AGENT): (AP_KEY.public_jwk(),)})
    signer = HardwareLike(CryptographySigner.generate("Ed25519"))
    with (
        serve({"api.aauth.test": _app(keys, signer)}) as servers,
        egress.client(policy(servers)) as http,
    ):
        token = _token()
        assert [_call(http, token) for _ in range(2)] == [200, 200]
    assert len(threaded) == 2


def test_discovery_fetches_in_the_worker_thread_then_serves_from_the_loop(
    threaded: list[str],
) -> None:
    signer = CryptographySigner.generate("Ed25519")
    with serve({"ap.aauth.test": _ap_app()}) as peers, egress.client(policy(peers)) as outbound:
        discovery = Discovery(outbound)
        with (
            serve({"api.aauth.test": _app(discovery, signer)}) as servers,
            egress.client(policy(servers)) as http,
        ):
            first = _call(http, _token())  # the AP's keys are not cached yet
            assert len(threaded) == 1
            again = _call(http, _token())  # a new token, its key now cached
    assert (first, again) == (200, 200)
    assert len(threaded) == 1
