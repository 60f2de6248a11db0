"""The reference Agent Provider over real TLS sockets: metadata and JWKS, agent tokens for
enrolled keys (sync and async clients), and each refusal with its status while the server
keeps serving."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from live import policy, serve
from signing_helpers import JwkSigner, generated_ed25519

from aauth_core.errors import RemoteProtocolError
from aauth_core.http import HttpRequest
from aauth_core.httpsig import content_digest
from aauth_core.jwk import PublicJwk
from aauth_core.signer import Signer
from aauth_core.tokens import DWK_AGENT, StaticKeyResolver, verify_agent_token
from aauth_core.tokens.verify import KeyResolver
from aauth_flows.io import egress
from aauth_flows.io.ap_client import (
    agent_token_request,
    request_agent_token,
    request_agent_token_async,
)
from aauth_flows.io.messages import send
from aauth_flows.io.servers.agent_provider import AgentProviderSettings, build_app
from aauth_flows.io.servers.context import ServerContext

AP = "https://ap.aauth.test"
PS = "https://ps.aauth.test"
AGENT = "aauth:assistant@ap.aauth.test"
OTHER_AGENT = "aauth:scribe@ap.aauth.test"


def make_context(
    issuer: str,
    signer: Signer,
    keys: KeyResolver | None = None,
    http: httpx.Client | None = None,
) -> ServerContext:
    """A ServerContext for a test server (a StaticKeyResolver stands in for discovery)."""
    host = issuer.removeprefix("https://").split(".")[0]
    return ServerContext(
        issuer=issuer,
        signer=signer,
        key_ref=f"software:{host}",
        egress=egress.EgressPolicy(),
        http=http if http is not None else egress.client(),
        keys=keys if keys is not None else StaticKeyResolver({}),
    )


class World:
    def __init__(self) -> None:
        self.ap_key = generated_ed25519()
        self.agent_key = generated_ed25519()
        self.scribe_key = generated_ed25519()
        self.stranger_key = generated_ed25519()
        self.resolver = StaticKeyResolver({(AP, DWK_AGENT): (self.ap_key.public_jwk(),)})
        self.settings = AgentProviderSettings.from_toml(
            {
                "lifetime": 1200,
                "agents": {
                    AGENT: [self.agent_key.public_jwk().thumbprint()],
                    OTHER_AGENT: [self.scribe_key.public_jwk().thumbprint()],
                },
            }
        )
        self.http: httpx.Client
        self.policy: egress.EgressPolicy


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    w = World()
    app = build_app(make_context(AP, w.ap_key, w.resolver), w.settings)
    with serve({"ap.aauth.test": app}) as servers, egress.client(policy(servers)) as http:
        w.http = http
        w.policy = policy(servers)
        yield w


def refusal(world: World, signer: JwkSigner, agent: str = AGENT, **kw: Any) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as caught:
        request_agent_token(world.http, AP, signer, agent, PS, **kw)
    return caught.value


def test_metadata_and_jwks_are_published(world: World) -> None:
    document = world.http.get(f"{AP}/.well-known/aauth-agent.json").json()
    assert document == {"issuer": AP, "jwks_uri": f"{AP}/jwks"}
    jwks = world.http.get(document["jwks_uri"]).json()
    assert jwks == {"keys": [world.ap_key.public_jwk().to_dict()]}


def test_enrolled_key_gets_a_verifiable_agent_token(world: World) -> None:
    before = int(time.time())
    token = request_agent_token(world.http, AP, world.agent_key, AGENT, PS)
    # verified with the key the AP publishes, not with one the test already knew
    published = world.http.get(f"{AP}/jwks").json()["keys"][0]
    resolver = StaticKeyResolver({(AP, DWK_AGENT): (PublicJwk.from_dict(published),)})
    claims = verify_agent_token(token, keys=resolver, now=int(time.time())).claims
    assert str(claims.sub) == AGENT and claims.iss == AP and claims.ps == PS
    assert claims.cnf.binds(world.agent_key.public_jwk())
    assert claims.exp - claims.iat == 1200 and claims.iat >= before


def test_answer_carries_expires_in_and_no_store(world: World) -> None:
    request = agent_token_request(AP, world.agent_key, AGENT, None, created=int(time.time()))
    response = send(world.http, request)
    assert response.status == 200
    assert response.headers.get("cache-control") == "no-store"
    body = json.loads(response.body)
    assert body["expires_in"] == 1200
    claims = verify_agent_token(
        body["agent_token"], keys=world.resolver, now=int(time.time())
    ).claims
    assert claims.ps is None


def test_async_client_gets_a_token(world: World) -> None:
    async def run() -> str:
        async with egress.async_client(world.policy) as http:
            return await request_agent_token_async(http, AP, world.scribe_key, OTHER_AGENT, PS)

    token = asyncio.run(run())
    claims = verify_agent_token(token, keys=world.resolver, now=int(time.time())).claims
    assert str(claims.sub) == OTHER_AGENT
    assert claims.cnf.binds(world.scribe_key.public_jwk())


def test_unenrolled_key_is_401_unknown_key(world: World) -> None:
    error = refusal(world, world.stranger_key)
    assert error.status == 401 and error.code == "unknown_key"
    request = agent_token_request(AP, world.stranger_key, AGENT, PS, created=int(time.time()))
    response = send(world.http, request)
    assert response.status == 401
    assert "unknown_key" in (response.headers.get("signature-error") or "")


def test_key_enrolled_for_another_agent_is_403(world: World) -> None:
    error = refusal(world, world.scribe_key, AGENT)
    assert error.status == 403 and error.code == "access_denied"


def test_agent_outside_the_ap_domain_is_400(world: World) -> None:
    error = refusal(world, world.agent_key, "aauth:assistant@other.aauth.test")
    assert error.status == 400 and error.code == "invalid_request"


def test_stale_and_future_signatures_are_401(world: World) -> None:
    stale = refusal(world, world.agent_key, clock=lambda: time.time() - 120)
    assert stale.status == 401 and stale.code == "invalid_signature"
    future = refusal(world, world.agent_key, clock=lambda: time.time() + 120)
    assert future.status == 401 and future.code == "clock_skew"


def _tampered(world: World, body: bytes, *, fix_digest: bool) -> HttpRequest:
    signed = agent_token_request(AP, world.agent_key, AGENT, PS, created=int(time.time()))
    headers = [(k, v) for k, v in signed.headers.pairs if k.lower() != "content-digest"]
    digest = content_digest(body) if fix_digest else signed.headers.get("content-digest")
    assert digest is not None
    headers.append(("Content-Digest", digest))
    return HttpRequest(method="POST", url=signed.url, headers=headers, body=body)


def test_tampered_body_is_401(world: World) -> None:
    body = json.dumps({"agent": OTHER_AGENT, "ps": PS}, separators=(",", ":")).encode()
    for fix_digest in (False, True):
        response = send(world.http, _tampered(world, body, fix_digest=fix_digest))
        assert response.status == 401, fix_digest
        assert response.headers.get("signature-error") is not None


def test_jwt_scheme_and_unsigned_requests_are_401(world: World) -> None:
    signed = agent_token_request(AP, world.agent_key, AGENT, PS, created=int(time.time()))
    unsigned = [(k, v) for k, v in signed.headers.pairs if not k.lower().startswith("signature")]
    response = send(world.http, HttpRequest(method="POST", url=signed.url, headers=unsigned))
    assert response.status == 401
    jwt_scheme = [
        (k, 'sig=jwt;jwt="a.b.c"' if k.lower() == "signature-key" else v)
        for k, v in signed.headers.pairs
    ]
    response = send(
        world.http, HttpRequest(method="POST", url=signed.url, headers=jwt_scheme, body=signed.body)
    )
    assert response.status == 401
    assert "unsupported_scheme" in (response.headers.get("signature-error") or "")


def test_server_keeps_serving_after_refusals(world: World) -> None:
    assert world.http.post(f"{AP}/agent-token", content=b"\xff" * 10).status_code == 401
    assert world.http.get(f"{AP}/agent-token").status_code == 405
    token = request_agent_token(world.http, AP, world.agent_key, AGENT, PS)
    assert verify_agent_token(token, keys=world.resolver, now=int(time.time()))


def test_settings_refuse_bad_config() -> None:
    with pytest.raises(ValueError, match="unknown key"):
        AgentProviderSettings.from_toml({"agentz": {}})
    with pytest.raises(ValueError, match="agents"):
        AgentProviderSettings.from_toml({"agents": {"not an agent": ["x"]}})
    with pytest.raises(ValueError, match="lifetime"):
        AgentProviderSettings.from_toml({"lifetime": 10 * 24 * 3600, "agents": {}})
