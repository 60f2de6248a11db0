"""Discovery over real HTTPS on loopback: metadata, JWKS, the issuer check, egress
refusals, caching rules (Cache-Control, the one-fetch-per-minute floor, unknown kid,
24 h expiry, LRU bound, stale-on-failure with backoff), and core's verifier on top."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from live import LiveServer, policy, serve
from signing_helpers import JwkSigner, generated_ed25519
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from structlog.testing import capture_logs

from aauth_core.errors import AAuthError, MetadataError, SignatureFailure, TokenError
from aauth_core.http import HttpRequest
from aauth_core.identifiers import AgentId
from aauth_core.jwk import PublicJwk
from aauth_core.metadata import (
    AccessServerMetadata,
    AgentProviderMetadata,
    PersonServerMetadata,
    ResourceMetadata,
)
from aauth_core.requests import RequestVerifier, sign_aauth_request
from aauth_core.tokens import DWK_AGENT, AgentTokenClaims, Confirmation, mint_token
from aauth_core.tokens.verify import verify_agent_token
from aauth_flows.io import egress
from aauth_flows.io.discovery import Discovery
from aauth_flows.io.egress import EgressRefused
from aauth_flows.io.messages import error_response, from_starlette, send

AP = "https://ap.aauth.test"
PS = "https://ps.aauth.test"
OTHER = "https://other.aauth.test"
EVIL = "https://evil.aauth.test"
RS = "https://rs.aauth.test"
DWK_PERSON = "aauth-person.json"
NOW = 1_800_000_000.0

AP_KEY = generated_ed25519()
AP_KEY_2 = generated_ed25519()
AGENT_KEY = generated_ed25519()


# --- the live documents ------------------------------------------------------------------


class Site:
    """What every live test host answers, per (host, path), and how often it was asked."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], dict[str, Any]] = {}
        self.hits: Counter[tuple[str, str]] = Counter()
        self.lock = threading.Lock()

    def reset(self) -> None:
        with self.lock:
            self.routes.clear()
            self.hits.clear()

    def set(
        self,
        url: str,
        body: bytes | dict[str, Any] | list[Any],
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
        stream: bool = False,
    ) -> None:
        parsed = httpx.URL(url)
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        with self.lock:
            self.routes[(parsed.host, parsed.path)] = {
                "body": raw,
                "status": status,
                "headers": headers or {},
                "delay": delay,
                "stream": stream,
            }

    def count(self, url: str) -> int:
        parsed = httpx.URL(url)
        with self.lock:
            return self.hits[(parsed.host, parsed.path)]

    async def handle(self, request: Request) -> Response:
        host = request.headers.get("host", "").split(":")[0]
        key = (host, request.url.path)
        with self.lock:
            self.hits[key] += 1
            spec = self.routes.get(key)
        if spec is None:
            return Response(b"not here", status_code=404)
        if spec["delay"]:
            await asyncio.sleep(spec["delay"])
        if spec["stream"]:
            body: bytes = spec["body"]

            async def chunks() -> AsyncIterator[bytes]:
                for start in range(0, len(body), 4096):
                    yield body[start : start + 4096]

            return StreamingResponse(chunks(), status_code=spec["status"], headers=spec["headers"])
        return Response(
            b"" if spec["status"] in {204, 304} else spec["body"],
            status_code=spec["status"],
            headers=spec["headers"],
            media_type="application/json",
        )

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self.handle, methods=["GET"])])


SITE = Site()
HOSTS = ("ap.aauth.test", "ps.aauth.test", "other.aauth.test", "evil.aauth.test")


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, LiveServer]]:
    app = SITE.app()
    # no server Date: the tests that need one send it (the clock under test is fake)
    with serve(dict.fromkeys(HOSTS, app), date_header=False) as live:
        yield live


@pytest.fixture(scope="module")
def http(servers: dict[str, LiveServer]) -> Iterator[httpx.Client]:
    with egress.client(policy(servers)) as client:
        yield client


@pytest.fixture
def site(servers: dict[str, LiveServer]) -> Site:
    SITE.reset()
    return SITE


class Clock:
    def __init__(self, start: float = NOW) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def publish_ap(
    site: Site,
    *,
    issuer: str = AP,
    host: str = AP,
    keys: tuple[JwkSigner, ...] = (AP_KEY,),
    headers: dict[str, str] | None = None,
    jwks_uri: str | None = None,
) -> None:
    site.set(
        f"{host}/.well-known/aauth-agent.json",
        {"issuer": issuer, "jwks_uri": jwks_uri or f"{host}/jwks"},
        headers=headers,
    )
    site.set(
        jwks_uri or f"{host}/jwks",
        {"keys": [k.public_jwk().to_dict() for k in keys]},
        headers=headers,
    )


def failure(call: Any, *args: Any) -> AAuthError:
    with pytest.raises(AAuthError) as info:
        call(*args)
    return info.value


# --- the happy path ----------------------------------------------------------------------


def test_resolve_fetches_metadata_then_jwks_and_caches(site: Site, http: httpx.Client) -> None:
    publish_ap(site)
    discovery = Discovery(http, clock=Clock())
    with capture_logs() as logs:
        key = discovery.resolve(AP, DWK_AGENT, AP_KEY.key_id)
    assert key.same_key(AP_KEY.public_jwk())
    assert key.kid == AP_KEY.key_id
    assert site.count(f"{AP}/.well-known/aauth-agent.json") == 1
    assert site.count(f"{AP}/jwks") == 1
    fetches = [entry for entry in logs if entry["event"] == "aauth.discovery.fetch"]
    assert [(f["url"], f["outcome"], f["issuer"]) for f in fetches] == [
        (f"{AP}/.well-known/aauth-agent.json", "ok", AP),
        (f"{AP}/jwks", "ok", AP),
    ]
    assert all(f["duration"] >= 0 for f in fetches)
    # cached: the key, the document and the typed view answer without fetching
    assert discovery.resolve(AP, DWK_AGENT, AP_KEY.key_id) == key
    document = discovery.metadata(AP, DWK_AGENT)
    assert document == {"issuer": AP, "jwks_uri": f"{AP}/jwks"}
    document["issuer"] = "changed"  # a copy: the cache is not affected
    typed = discovery.agent_provider(AP)
    assert isinstance(typed, AgentProviderMetadata)
    assert str(typed.issuer) == AP
    assert site.count(f"{AP}/.well-known/aauth-agent.json") == 1
    assert site.count(f"{AP}/jwks") == 1


def test_a_token_without_kid_resolves_only_a_single_key(site: Site, http: httpx.Client) -> None:
    publish_ap(site)
    assert Discovery(http, clock=Clock()).resolve(AP, DWK_AGENT, None).same_key(AP_KEY.public_jwk())
    publish_ap(site, keys=(AP_KEY, AP_KEY_2))
    err = failure(Discovery(http, clock=Clock()).resolve, AP, DWK_AGENT, None)
    assert err.code == "unknown_key"
    assert err.status == 401


def test_typed_accessors_for_every_role(site: Site, http: httpx.Client) -> None:
    site.set(
        f"{PS}/.well-known/aauth-person.json",
        {
            "issuer": PS,
            "jwks_uri": f"{PS}/jwks",
            "auth_token_endpoint": f"{PS}/token",
            "person_token_endpoint": f"{PS}/person-token",
        },
    )
    site.set(
        f"{PS}/.well-known/aauth-access.json",
        {"issuer": PS, "jwks_uri": f"{PS}/jwks", "auth_token_endpoint": f"{PS}/as-token"},
    )
    site.set(f"{PS}/.well-known/aauth-resource.json", {"issuer": PS, "signature_window": 30})
    site.set(f"{PS}/jwks", {"keys": [AP_KEY.public_jwk().to_dict()]})
    discovery = Discovery(http, clock=Clock())
    person = discovery.person_server(PS)
    assert isinstance(person, PersonServerMetadata)
    assert person.person_token_endpoint == f"{PS}/person-token"
    access = discovery.access_server(PS)
    assert isinstance(access, AccessServerMetadata)
    assert access.auth_token_endpoint == f"{PS}/as-token"
    resource = discovery.resource(PS)
    assert isinstance(resource, ResourceMetadata)
    assert resource.effective_signature_window == 30
    # a resource document without jwks_uri has no keys to give
    err = failure(discovery.resolve, PS, "aauth-resource.json", "k")
    assert isinstance(err, TokenError)
    assert err.code == "invalid_jwt"
    assert "jwks_uri" in err.detail
    # a document of the wrong shape is invalid_metadata for its direct caller
    site.set(f"{OTHER}/.well-known/aauth-person.json", {"issuer": OTHER, "jwks_uri": "x"})
    bad = failure(discovery.person_server, OTHER)
    assert isinstance(bad, MetadataError)
    assert bad.code == "invalid_metadata"


def test_bad_issuer_or_dwk_arguments(http: httpx.Client) -> None:
    discovery = Discovery(http, clock=Clock())
    for issuer, dwk in [
        ("http://ap.aauth.test", DWK_AGENT),
        ("https://AP.aauth.test", DWK_AGENT),
        (AP + "/", DWK_AGENT),
        (AP, "../secret"),
        (AP, "other.json"),
    ]:
        err = failure(discovery.resolve, issuer, dwk, "k")
        assert isinstance(err, TokenError), (issuer, dwk)
        assert (err.code, err.status) == ("invalid_jwt", 401)
        assert isinstance(failure(discovery.metadata, issuer, dwk), AAuthError)


# --- the issuer check ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "code"),
    [
        ({"issuer": EVIL, "jwks_uri": f"{AP}/jwks"}, "issuer_mismatch"),
        ({"issuer": AP + "/", "jwks_uri": f"{AP}/jwks"}, "issuer_mismatch"),
        ({"issuer": "https://AP.aauth.test", "jwks_uri": f"{AP}/jwks"}, "issuer_mismatch"),
        ({"issuer": ["https://ap.aauth.test"], "jwks_uri": f"{AP}/jwks"}, "issuer_mismatch"),
        ({"jwks_uri": f"{AP}/jwks"}, "issuer_missing"),
    ],
)
def test_issuer_must_equal_the_requested_issuer(
    site: Site, http: httpx.Client, document: dict[str, Any], code: str
) -> None:
    site.set(f"{AP}/.well-known/aauth-agent.json", document)
    site.set(f"{AP}/jwks", {"keys": [AP_KEY.public_jwk().to_dict()]})
    discovery = Discovery(http, clock=Clock())
    err = failure(discovery.resolve, AP, DWK_AGENT, AP_KEY.key_id)
    assert isinstance(err, SignatureFailure)
    assert (err.code, err.status) == (code, 401)
    direct = failure(discovery.metadata, AP, DWK_AGENT)
    assert isinstance(direct, MetadataError)
    assert (direct.code, direct.status) == (code, 401)
    assert site.count(f"{AP}/jwks") == 0  # the keys of a mismatched document are never asked


# --- egress: cross-origin, private addresses, redirects, size, time ----------------------


def test_cross_origin_jwks_uri_is_refused_unless_admitted(site: Site, http: httpx.Client) -> None:
    publish_ap(site, jwks_uri=f"{OTHER}/ap-keys")
    err = failure(Discovery(http, clock=Clock()).resolve, AP, DWK_AGENT, AP_KEY.key_id)
    assert (err.code, err.status) == ("invalid_jwt", 401)
    assert "origin" in err.detail
    assert site.count(f"{OTHER}/ap-keys") == 0
    admitting = Discovery(http, clock=Clock(), allow_cross_origin_jwks=True)
    assert admitting.resolve(AP, DWK_AGENT, AP_KEY.key_id).same_key(AP_KEY.public_jwk())
    assert site.count(f"{OTHER}/ap-keys") == 1


def test_a_jwks_uri_on_another_port_is_cross_origin(site: Site, http: httpx.Client) -> None:
    publish_ap(site, jwks_uri=f"{AP}:8443/jwks")
    err = failure(Discovery(http, clock=Clock()).resolve, AP, DWK_AGENT, AP_KEY.key_id)
    assert err.code == "invalid_jwt"
    assert "origin" in err.detail


def test_jwks_uri_to_a_private_address_is_refused_by_the_policy(
    site: Site, servers: dict[str, LiveServer]
) -> None:
    # Production policy (no private addresses) except for the issuer itself, which the
    # test serves on loopback: a mount admits just that origin privately.
    strict = policy(servers, allow_private=False)
    issuer_only = egress._AdmittingTransport(policy(servers))
    port = servers["other.aauth.test"].port
    for jwks_uri in (f"{OTHER}/ap-keys", f"https://127.0.0.1:{port}/ap-keys"):
        site.reset()
        publish_ap(site, jwks_uri=jwks_uri)
        site.set(f"{OTHER}/ap-keys", {"keys": [AP_KEY.public_jwk().to_dict()]})
        with egress.client(strict, mounts={AP: issuer_only}) as client:
            discovery = Discovery(client, clock=Clock(), allow_cross_origin_jwks=True)
            with capture_logs() as logs:
                err = failure(discovery.resolve, AP, DWK_AGENT, AP_KEY.key_id)
        assert isinstance(err, TokenError)
        assert (err.code, err.status) == ("invalid_jwt", 401)
        assert "private" in err.detail
        assert site.count(f"{AP}/.well-known/aauth-agent.json") == 1
        assert site.count(f"{OTHER}/ap-keys") == 0
        outcomes = [e["outcome"] for e in logs if e["event"] == "aauth.discovery.fetch"]
        assert outcomes == ["ok", "egress_refused"]


def test_an_issuer_on_a_private_address_is_refused(
    site: Site, servers: dict[str, LiveServer]
) -> None:
    publish_ap(site)
    with egress.client(policy(servers, allow_private=False)) as client:
        err = failure(Discovery(client, clock=Clock()).resolve, AP, DWK_AGENT, AP_KEY.key_id)
    assert (err.code, err.status) == ("invalid_jwt", 401)
    assert "private" in err.detail
    assert site.count(f"{AP}/.well-known/aauth-agent.json") == 0


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_not_followed(site: Site, http: httpx.Client, status: int) -> None:
    publish_ap(site, host=OTHER, issuer=AP)  # what the redirect would lead to
    site.set(
        f"{AP}/.well-known/aauth-agent.json",
        b"",
        status=status,
        headers={"location": f"{OTHER}/.well-known/aauth-agent.json"},
    )
    err = failure(Discovery(http, clock=Clock()).resolve, AP, DWK_AGENT, AP_KEY.key_id)
    assert (err.code, err.status) == ("invalid_jwt", 401)
    assert str(status) in err.detail
    assert site.count(f"{OTHER}/.well-known/aauth-agent.json") == 0


@pytest.mark.parametrize("status", [404, 500, 503, 204])
def test_any_status_but_200_is_a_failure(site: Site, http: httpx.Client, status: int) -> None:
    publish_ap(site)
    site.set(f"{AP}/jwks", {"keys": [AP_KEY.public_jwk().to_dict()]}, status=status)
    err = failure(Discovery(http, clock=Clock()).resolve, AP, DWK_AGENT, AP_KEY.key_id)
    assert err.code == "invalid_jwt"
    assert str(status) in err.detail


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("which", ["metadata", "jwks"])
def test_an_oversized_document_is_refused(
    site: Site, http: httpx.Client, stream: bool, which: str
) -> None:
    publish_ap(site)
    padding = "x" * (80 * 1024)
    if which == "metadata":
        url = f"{AP}/.well-known/aauth-agent.json"
        body: dict[str, Any] = {"issuer": AP, "jwks_uri": f"{AP}/jwks", "name": padding}
    else:
        url = f"{AP}/jwks"
        body = {"keys": [AP_KEY.public_jwk().to_dict()], "pad": padding}
    site.set(url, json.dumps(body).encode(), stream=stream)
    err = failure(Discovery(http, clock=Clock()).resolve, AP, DWK_AGENT, AP_KEY.key_id)
    assert (err.code, err.status) == ("invalid_jwt", 401)
    assert "bytes" in err.detail


def test_a_slow_server_times_out(site: Site, servers: dict[str, LiveServer]) -> None:
    publish_ap(site)
    site.set(f"{AP}/jwks", {"keys": [AP_KEY.public_jwk().to_dict()]}, delay=1.0)
    with egress.client(policy(servers, timeout=0.2)) as client:
        err = failure(Discovery(client, clock=Clock()).resolve, AP, DWK_AGENT, AP_KEY.key_id)
    assert (err.code, err.status) == ("invalid_jwt", 401)
    assert "Timeout" in err.detail


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1, 2]", b'{"keys": {}}', b"{}", b'{"keys": "k"}', b"\xff\xfe"],
)
def test_a_jwks_that_is_not_a_key_set(site: Site, http: httpx.Client, body: bytes) -> None:
    publish_ap(site)
    site.set(f"{AP}/jwks", body)
    err = failure(Discovery(http, clock=Clock()).resolve, AP, DWK_AGENT, AP_KEY.key_id)
    assert (err.code, err.status) == ("invalid_jwt", 401)


def test_a_bad_member_does_not_hide_the_others_but_is_refused_when_selected(
    site: Site, http: httpx.Client
) -> None:
    broken = {"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "x": "AAAA", "kid": "bad"}
    site.set(f"{AP}/.well-known/aauth-agent.json", {"issuer": AP, "jwks_uri": f"{AP}/jwks"})
    site.set(f"{AP}/jwks", {"keys": [broken, 7, AP_KEY.public_jwk().to_dict()]})
    discovery = Discovery(http, clock=Clock())
    assert discovery.resolve(AP, DWK_AGENT, AP_KEY.key_id).same_key(AP_KEY.public_jwk())
    err = failure(discovery.resolve, AP, DWK_AGENT, "bad")
    assert isinstance(err, SignatureFailure)
    assert err.code == "unsupported_algorithm"
    assert err.status == 401


# --- caching ------------------------------------------------------------------------------


def fetches(site: Site) -> int:
    return site.count(f"{AP}/.well-known/aauth-agent.json")


def test_cache_control_max_age_is_honoured(site: Site, http: httpx.Client) -> None:
    publish_ap(site, headers={"cache-control": "public, max-age=300"})
    clock = Clock()
    discovery = Discovery(http, clock=clock)
    discovery.resolve(AP, DWK_AGENT, AP_KEY.key_id)
    clock.now = NOW + 299
    discovery.resolve(AP, DWK_AGENT, AP_KEY.key_id)
    assert fetches(site) == 1
    clock.now = NOW + 300
    discovery.resolve(AP, DWK_AGENT, AP_KEY.key_id)
    assert fetches(site) == 2
    assert site.count(f"{AP}/jwks") == 2


def test_the_shorter_of_the_two_lifetimes_wins(site: Site, http: httpx.Client) -> None:
    publish_ap(site, headers={"cache-control": "max-age=3000"})
    site.set(
        f"{AP}/jwks",
        {"keys": [AP_KEY.public_jwk().to_dict()]},
        headers={"cache-control": "max-age=120"},
    )
    clock = Clock()
    discovery = Discovery(http, clock=clock)
    discovery.resolve(AP, DWK_AGENT, AP_KEY.key_id)
    clock.now = NOW + 119
    discovery.resolve(AP, DWK_AGENT, AP_KEY.key_id)
    assert fetches(site) == 1
    clock.now = NOW + 121
    discovery.resolve(AP, DWK_AGENT, AP_KEY.key_id)
    assert fetches(site) == 2


@pytest.mark.parametrize(
    "headers",
    [
        {"cache-control": "no-store"},
        {"cache-control": "no-cache"},
        {"cache-control": "max-age=0"},
        {"cache-control": "max-age=banana"},
        {"expires": "0"},
        {"expires": "Thu, 01 Jan 1970 00:00:00 GMT"},
    ],
)
def test_no_store_still_means_at_most_one_fetch_per_minute(
    site: Site, http: httpx.Client, headers: dict[str, str]
) -> None:
    publish_ap(site, headers=headers)
    clock = Clock()
    discovery = Discovery(http, clock=clock)
    for offset in (0, 1, 30, 59):
        clock.now = NOW + offset
        discovery.resolve(AP, DWK_AGENT, AP_KEY.key_id)
    assert fetches(site) == 1
    clock.now = NOW + 60
    discovery.resolve(AP, DWK_AGENT, AP_KEY.key_id)
    assert fetches(site) == 2


def test_expires_is_honoured_relative_to_date(site: Site, http: httpx.Client) -> None:
    publish_ap(
        site,
        headers={
            "date": "Sat, 01 Jan 2033 00:00:00 GMT",
            "expires": "Sat, 01 Jan 2033 00:10:00 GMT",
        },
    )
    clock = Clock()
    discovery = Discovery(http, clock=clock)
    discovery.resolve(AP, DWK_AGENT, AP_KEY.key_id)
    clock.now = NOW + 599
    discovery.resolve(AP, DWK_AGENT, AP_KEY.key_id)
    assert fetches(site) == 1
    clock.now = NOW + 600
    discovery.resolve(AP, DWK_AGENT, AP_KEY.key_id)
    assert fetches(site) == 2


def test_expires_without_date_is_relative_to_the_clock(site: Site, http: httpx.Client) -> None:
    publish_ap(site, headers={"expires": email.utils.formatdate(NOW + 900, usegmt=True)})
    clock = Clock()
    discovery = Discovery(http, clock=clock)
    discovery.resolve(AP, DWK_AGENT, AP_KEY.key_id)
    clock.now = NOW + 899
    discovery.resolve(AP, DWK_AGENT, AP_KEY.key_id)
    assert fetches(site) == 1
    clock.now = NOW + 900
    discovery.resolve(AP, DWK_AGENT, AP_KEY.key_id)
    assert fetches(site) == 2


def test_max_age_wins_over_expires(site: Site, http: httpx.Client) -> None:
    publish_ap(
        site,
        headers={
            "cache-control": "max-age=120",
            "expires": email.utils.formatdate(NOW + 9000, usegmt=True),
        },
    )
    clock = Clock()
    discovery = Discovery(http, clock=clock)
    discovery.resolve(AP, DWK_AGENT, AP_KEY.key_id)
    clock.now = NOW + 120
    discovery.resolve(AP, DWK_AGENT, AP_KEY.key_id)
    assert fetches(site) == 2


def test_without_cache_headers_an_hour(site: Site, http: httpx.Client) -> None:
    publish_ap(site)
    clock = Clock()
    discovery = Discovery(http, clock=clock)
    discovery.resolve(AP, DWK_AGENT, AP_KEY.key_id)
    clock.now = NOW + 3599
    discovery.resolve(AP, DWK_AGENT, AP_KEY.key_id)
    assert fetches(site) == 1
    clock.now = NOW + 3600
    discovery.resolve(AP, DWK_AGENT, AP_KEY.key_id)
    assert fetches(site) == 2


def test_an_unknown_kid_refreshes_once_then_answers_unknown_key(
    site: Site, http: httpx.Client
) -> None:
    publish_ap(site, headers={"cache-control": "max-age=3600"})
    clock = Clock()
    discovery = Discovery(http, clock=clock)
    discovery.resolve(AP, DWK_AGENT, AP_KEY.key_id)
    # the fetch just made counts: an unknown kid right away does not refetch
    err = failure(discovery.resolve, AP, DWK_AGENT, "nobody")
    assert isinstance(err, TokenError)
    assert (err.code, err.status) == ("unknown_key", 401)
    assert fetches(site) == 1
    # a minute later the AP rotated: the unknown kid refreshes and is found
    publish_ap(site, keys=(AP_KEY, AP_KEY_2), headers={"cache-control": "max-age=3600"})
    clock.now = NOW + 61
    assert discovery.resolve(AP, DWK_AGENT, AP_KEY_2.key_id).same_key(AP_KEY_2.public_jwk())
    assert fetches(site) == 2
    # a second unknown kid within the minute: no fetch, unknown_key
    clock.now = NOW + 90
    err = failure(discovery.resolve, AP, DWK_AGENT, "still-nobody")
    assert err.code == "unknown_key"
    assert fetches(site) == 2
    # after the minute one refresh again, and still unknown
    clock.now = NOW + 122
    assert failure(discovery.resolve, AP, DWK_AGENT, "still-nobody").code == "unknown_key"
    assert fetches(site) == 3
    assert failure(discovery.resolve, AP, DWK_AGENT, "again").code == "unknown_key"
    assert fetches(site) == 3
    # the known keys keep answering from the cache
    assert discovery.resolve(AP, DWK_AGENT, AP_KEY.key_id).same_key(AP_KEY.public_jwk())
    assert fetches(site) == 3


def test_entries_are_dropped_after_24_hours(site: Site, http: httpx.Client) -> None:
    publish_ap(site, headers={"cache-control": "max-age=999999999"})
    clock = Clock()
    discovery = Discovery(http, clock=clock)
    discovery.resolve(AP, DWK_AGENT, AP_KEY.key_id)
    clock.now = NOW + 86399
    discovery.resolve(AP, DWK_AGENT, AP_KEY.key_id)
    assert fetches(site) == 1
    clock.now = NOW + 86400
    discovery.resolve(AP, DWK_AGENT, AP_KEY.key_id)
    assert fetches(site) == 2
    # and a copy older than 24 h is never served, even when the issuer is down
    site.set(f"{AP}/.well-known/aauth-agent.json", b"down", status=503)
    clock.now = NOW + 2 * 86400 + 1
    err = failure(discovery.resolve, AP, DWK_AGENT, AP_KEY.key_id)
    assert (err.code, err.status) == ("invalid_jwt", 401)
    assert fetches(site) == 3


def test_at_most_max_entries_issuers_least_recently_used_evicted(
    site: Site, http: httpx.Client
) -> None:
    for issuer in (AP, PS, OTHER):
        publish_ap(site, issuer=issuer, host=issuer)
    discovery = Discovery(http, clock=Clock(), max_entries=2)

    def resolve(issuer: str) -> None:
        discovery.resolve(issuer, DWK_AGENT, AP_KEY.key_id)

    def count(issuer: str) -> int:
        return site.count(f"{issuer}/.well-known/aauth-agent.json")

    resolve(AP)
    resolve(PS)
    resolve(AP)  # AP is now the most recently used
    resolve(OTHER)  # evicts PS
    assert (count(AP), count(PS), count(OTHER)) == (1, 1, 1)
    resolve(AP)
    resolve(OTHER)
    assert (count(AP), count(OTHER)) == (1, 1)
    resolve(PS)  # evicted: fetched again (and evicts AP)
    assert count(PS) == 2
    resolve(AP)
    assert count(AP) == 2
    assert len(discovery._entries) == 2


def test_the_cached_copy_is_served_while_the_issuer_is_down_with_backoff(
    site: Site, http: httpx.Client
) -> None:
    publish_ap(site, headers={"cache-control": "max-age=600"})
    clock = Clock()
    discovery = Discovery(http, clock=clock)
    discovery.resolve(AP, DWK_AGENT, AP_KEY.key_id)
    site.set(f"{AP}/.well-known/aauth-agent.json", b"maintenance", status=503)

    def still_served(at: float) -> None:
        clock.now = at
        assert discovery.resolve(AP, DWK_AGENT, AP_KEY.key_id).same_key(AP_KEY.public_jwk())

    with capture_logs() as logs:
        still_served(NOW + 600)  # stale: refetch fails, copy served
    assert fetches(site) == 2
    assert any(e["event"] == "aauth.discovery.stale" for e in logs)
    still_served(NOW + 659)  # backoff 60 s: no fetch
    assert fetches(site) == 2
    still_served(NOW + 660)  # retried, fails again: backoff 120 s
    assert fetches(site) == 3
    still_served(NOW + 779)
    assert fetches(site) == 3
    still_served(NOW + 780)  # third failure: backoff 240 s
    assert fetches(site) == 4
    still_served(NOW + 1019)
    assert fetches(site) == 4
    # the issuer comes back: the next retry succeeds and the backoff resets
    publish_ap(site, keys=(AP_KEY, AP_KEY_2), headers={"cache-control": "max-age=60"})
    still_served(NOW + 1020)
    assert fetches(site) == 5
    assert discovery.resolve(AP, DWK_AGENT, AP_KEY_2.key_id).same_key(AP_KEY_2.public_jwk())
    clock.now = NOW + 1080
    discovery.resolve(AP, DWK_AGENT, AP_KEY.key_id)
    assert fetches(site) == 6


def test_a_failure_without_a_copy_is_answered_again_without_fetching(
    site: Site, http: httpx.Client
) -> None:
    site.set(f"{AP}/.well-known/aauth-agent.json", b"gone", status=404)
    clock = Clock()
    discovery = Discovery(http, clock=clock)
    first = failure(discovery.resolve, AP, DWK_AGENT, AP_KEY.key_id)
    clock.now = NOW + 30
    second = failure(discovery.resolve, AP, DWK_AGENT, AP_KEY.key_id)
    assert (first.code, second.code) == ("invalid_jwt", "invalid_jwt")
    assert "404" in second.detail
    assert fetches(site) == 1
    direct = failure(discovery.metadata, AP, DWK_AGENT)
    assert isinstance(direct, EgressRefused)
    assert fetches(site) == 1
    publish_ap(site)
    clock.now = NOW + 60
    assert discovery.resolve(AP, DWK_AGENT, AP_KEY.key_id).same_key(AP_KEY.public_jwk())
    assert fetches(site) == 2


def test_concurrent_callers_share_one_fetch(site: Site, http: httpx.Client) -> None:
    publish_ap(site)
    site.set(
        f"{AP}/.well-known/aauth-agent.json",
        {"issuer": AP, "jwks_uri": f"{AP}/jwks"},
        delay=0.3,
    )
    discovery = Discovery(http, clock=Clock())
    barrier = threading.Barrier(6)
    results: list[Any] = []

    def worker() -> None:
        barrier.wait()
        try:
            results.append(discovery.resolve(AP, DWK_AGENT, AP_KEY.key_id))
        except AAuthError as err:  # pragma: no cover - would fail the assertion below
            results.append(err)

    pool = [threading.Thread(target=worker) for _ in range(6)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert len(results) == 6
    assert all(r == results[0] and not isinstance(r, AAuthError) for r in results)
    assert fetches(site) == 1
    assert site.count(f"{AP}/jwks") == 1


def test_configuration_is_checked(http: httpx.Client) -> None:
    with pytest.raises(ValueError, match="min_interval"):
        Discovery(http, min_interval=0)
    with pytest.raises(ValueError, match="min_interval"):
        Discovery(http, min_interval=100, max_age=50)
    with pytest.raises(ValueError, match="max_entries"):
        Discovery(http, max_entries=0)


# --- core's verifiers with Discovery as ``keys`` -------------------------------------------


def agent_token(issuer: str, *, now: int, signer: JwkSigner = AP_KEY) -> str:
    host = issuer.removeprefix("https://")
    return mint_token(
        AgentTokenClaims(
            iss=issuer,
            dwk=DWK_AGENT,
            jti=f"a-{now}",
            iat=now - 5,
            exp=now + 3600,
            sub=AgentId.parse(f"aauth:assistant@{host}"),
            cnf=Confirmation(jwk=AGENT_KEY.public_jwk()),
            ps=PS,
        ),
        signer,
    )


def signed_call(token: str, *, now: int) -> HttpRequest:
    request = HttpRequest(method="GET", url=f"{RS}/calendar")
    added = sign_aauth_request(request, AGENT_KEY, token=token, created=now)
    return HttpRequest(method="GET", url=request.url, headers=request.headers.with_fields(added))


def resource_app(verifier: RequestVerifier) -> Starlette:
    async def calendar(request: Request) -> Response:
        try:
            incoming = await from_starlette(request, origin=RS)
            verified = await run_in_threadpool(
                lambda: verifier.verify(incoming, now=int(time.time()))
            )
        except AAuthError as err:
            return error_response(err)
        return JSONResponse({"agent": str(verified.token.claims.sub)})

    return Starlette(routes=[Route("/calendar", calendar, methods=["GET"])])


def test_request_verifier_over_live_discovery(site: Site, servers: dict[str, LiveServer]) -> None:
    publish_ap(site)
    # evil.aauth.test serves the AP's own keys under a document claiming to be the AP
    publish_ap(site, host=EVIL, issuer=AP)
    with egress.client(policy(servers)) as http:
        discovery = Discovery(http)
        app = resource_app(RequestVerifier(keys=discovery, audience=RS))
        with (
            serve({"rs.aauth.test": app}) as resource,
            egress.client(policy(resource)) as agent_http,
        ):
            now = int(time.time())
            good = send(agent_http, signed_call(agent_token(AP, now=now), now=now))
            assert good.status == 200, good.body
            assert json.loads(good.body) == {"agent": "aauth:assistant@ap.aauth.test"}
            bad = send(agent_http, signed_call(agent_token(EVIL, now=now), now=now))
            assert bad.status == 401
            assert bad.headers.get("signature-error") == "error=issuer_mismatch"
            assert json.loads(bad.body)["error"] == "issuer_mismatch"
            # a token signed by a key the AP does not publish: unknown_key (the refresh it
            # triggers is within the minute of the first fetch, so it is not made)
            stranger = send(
                agent_http, signed_call(agent_token(AP, now=now, signer=AP_KEY_2), now=now)
            )
            assert stranger.status == 401
            assert stranger.headers.get("signature-error") == "error=unknown_key"
        # core's token verifier directly
        verified = verify_agent_token(agent_token(AP, now=now), keys=discovery, now=now)
        assert verified.issuer_key.same_key(AP_KEY.public_jwk())
        err = failure(
            lambda: verify_agent_token(agent_token(EVIL, now=now), keys=discovery, now=now)
        )
        assert (err.code, err.status) == ("issuer_mismatch", 401)
    assert site.count(f"{AP}/.well-known/aauth-agent.json") == 1
    assert site.count(f"{EVIL}/.well-known/aauth-agent.json") == 1


# --- arbitrary documents ----------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_jwk_member = st.fixed_dictionaries(
    {"kid": st.sampled_from(["k1", "k2"])},
    optional={
        "kty": st.sampled_from(["OKP", "EC", "RSA", "oct", 3]),
        "crv": st.sampled_from(["Ed25519", "P-256", "X25519", ""]),
        "alg": st.sampled_from(["Ed25519", "ES256", "EdDSA", "none", "HS256", "PS256"]),
        "x": st.sampled_from(["", "AAAA", AP_KEY.public_jwk().to_dict()["x"], "!!"]) | _json,
        "y": _json,
        "n": _json,
        "e": _json,
    },
)
_metadata = st.one_of(
    st.binary(max_size=64),
    _json.map(lambda value: json.dumps(value).encode()),
    st.fixed_dictionaries(
        {"issuer": st.just(AP), "jwks_uri": st.sampled_from([f"{AP}/jwks", "ftp://x", f"{AP}"])},
        optional={"callback_endpoint": _json, "name": _json, "localhost_callback_allowed": _json},
    ).map(lambda value: json.dumps(value).encode()),
)
_jwks = st.one_of(
    st.binary(max_size=64),
    _json.map(lambda value: json.dumps(value).encode()),
    st.fixed_dictionaries({"keys": st.lists(_jwk_member | _json, max_size=3)}).map(
        lambda value: json.dumps(value).encode()
    ),
)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(metadata=_metadata, jwks=_jwks, kid=st.sampled_from(["k1", "k2", None]))
def test_arbitrary_documents_only_ever_raise_aauth_errors(
    site: Site, http: httpx.Client, metadata: bytes, jwks: bytes, kid: str | None
) -> None:
    site.reset()
    site.set(f"{AP}/.well-known/aauth-agent.json", metadata)
    site.set(f"{AP}/jwks", jwks)
    discovery = Discovery(http, clock=Clock())
    outcome: object
    try:
        outcome = discovery.resolve(AP, DWK_AGENT, kid)
    except SignatureFailure as err:  # every resolver failure is a 401 with a wire code
        outcome = err
    if isinstance(outcome, SignatureFailure):
        assert outcome.status == 401
    else:
        assert isinstance(outcome, PublicJwk)
        assert kid is None or outcome.kid == kid
    with contextlib.suppress(AAuthError):
        discovery.agent_provider(AP)
