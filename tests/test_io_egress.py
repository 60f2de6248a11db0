"""Egress admission and bounded message conversion, over real loopback TLS."""

from __future__ import annotations

import time

import pytest
from live import policy, serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from aauth_core.http import HttpRequest
from aauth_flows.io import egress
from aauth_flows.io.egress import EgressPolicy, EgressRefused, admit
from aauth_flows.io.messages import BodyTooLarge, from_starlette, send, to_starlette


async def _echo(request: Request) -> Response:
    try:
        seen = await from_starlette(request, origin="https://api.aauth.test", max_body=64)
    except BodyTooLarge as err:
        return JSONResponse({"error": err.code}, status_code=err.status)
    return JSONResponse(
        {"url": seen.url, "host": request.headers["host"], "body": seen.body.decode()}
    )


async def _redirect(_request: Request) -> Response:
    return RedirectResponse("https://evil.aauth.test/steal", status_code=302)


async def _big(_request: Request) -> Response:
    return Response(b"x" * 100_000, media_type="application/octet-stream")


async def _slow(_request: Request) -> Response:
    import asyncio

    await asyncio.sleep(2)
    return Response(b"late")


APP = Starlette(
    routes=[
        Route("/echo", _echo, methods=["GET", "POST"]),
        Route("/redirect", _redirect),
        Route("/big", _big),
        Route("/slow", _slow),
    ]
)
HIT = {"evil": 0}


async def _evil(_request: Request) -> Response:
    HIT["evil"] += 1
    return Response(b"secret")


EVIL = Starlette(routes=[Route("/steal", _evil)])


@pytest.fixture(scope="module")
def servers():  # type: ignore[no-untyped-def]
    with serve({"api.aauth.test": APP, "evil.aauth.test": EVIL}) as running:
        yield running


# -- admission without a network ------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://api.example/x", "only https"),
        ("ftp://api.example/x", "only https"),
        ("https://127.0.0.1/x", "private, loopback"),
        ("https://10.1.2.3/x", "private, loopback"),
        ("https://192.168.0.1/x", "private, loopback"),
        ("https://169.254.169.254/latest/meta-data", "private, loopback"),  # cloud metadata
        ("https://[::1]/x", "private, loopback"),
        ("https://[fe80::1]/x", "private, loopback"),
        ("https://[::ffff:127.0.0.1]/x", "private, loopback"),
        ("https://100.64.0.1/x", "private, loopback"),  # CGNAT
        ("https://localhost/x", "private, loopback"),
        ("https://user:pw@api.example/x", "userinfo"),
        ("https://224.0.0.1/x", "not a unicast"),
        ("https://0.0.0.0/x", "not a unicast"),
    ],
)
def test_refused_by_default(url: str, reason: str) -> None:
    with pytest.raises(EgressRefused, match=reason) as caught:
        admit(url, EgressPolicy())
    assert caught.value.status == 502
    assert caught.value.code == "egress_refused"


def test_public_literal_admitted_and_pinned() -> None:
    destination = admit("https://93.184.215.14/x", EgressPolicy())
    assert (destination.address, destination.port, destination.host) == (
        "93.184.215.14",
        443,
        "93.184.215.14",
    )


def test_private_needs_explicit_permission() -> None:
    allowed = EgressPolicy(allow_private=True)
    assert admit("https://127.0.0.1:8443/x", allowed).port == 8443
    # multicast stays refused even when private destinations are allowed
    with pytest.raises(EgressRefused):
        admit("https://224.0.0.1/x", allowed)


def test_http_needs_explicit_permission() -> None:
    assert admit("http://93.184.215.14/x", EgressPolicy(allow_http=True)).port == 80


def test_connect_to_is_admitted_like_a_resolved_address() -> None:
    mapped = {"ps.aauth.test": ("127.0.0.1", 4443)}
    with pytest.raises(EgressRefused, match="private, loopback"):
        admit("https://ps.aauth.test/x", EgressPolicy(connect_to=mapped))
    destination = admit(
        "https://PS.aauth.test/x", EgressPolicy(connect_to=mapped, allow_private=True)
    )
    assert (destination.host, destination.address, destination.port) == (
        "ps.aauth.test",
        "127.0.0.1",
        4443,
    )


def test_unresolvable_host_is_refused() -> None:
    with pytest.raises(EgressRefused, match="does not resolve"):
        admit("https://no-such-host.invalid/x", EgressPolicy())


def test_connect_to_must_name_an_address() -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the ipaddress module's own message
        EgressPolicy(connect_to={"ps.aauth.test": ("ps.internal", 443)})


# -- over real sockets ----------------------------------------------------------------------


def test_request_reaches_the_mapped_server_under_its_name(servers) -> None:  # type: ignore[no-untyped-def]
    with egress.client(policy(servers)) as http:
        answer = send(
            http, HttpRequest(method="POST", url="https://api.aauth.test/echo?a=1", body=b"hi")
        )
    assert answer.status == 200
    body = answer.body.decode()
    # TLS was checked against the name, the Host header kept it, the server rebuilt its own URL
    assert '"host":"api.aauth.test"' in body
    assert '"url":"https://api.aauth.test/echo?a=1"' in body


def test_loopback_server_refused_without_permission(servers) -> None:  # type: ignore[no-untyped-def]
    with (
        egress.client(policy(servers, allow_private=False)) as http,
        pytest.raises(EgressRefused, match="private, loopback"),
    ):
        send(http, HttpRequest(method="GET", url="https://api.aauth.test/echo"))


def test_redirect_to_another_host_is_not_followed(servers) -> None:  # type: ignore[no-untyped-def]
    before = HIT["evil"]
    with egress.client(policy(servers)) as http:
        answer = send(http, HttpRequest(method="GET", url="https://api.aauth.test/redirect"))
    assert answer.status == 302
    assert HIT["evil"] == before


def test_oversized_response_is_refused(servers) -> None:  # type: ignore[no-untyped-def]
    with (
        egress.client(policy(servers)) as http,
        pytest.raises(EgressRefused, match="over 1000 bytes"),
    ):
        send(http, HttpRequest(method="GET", url="https://api.aauth.test/big"), max_body=1000)


def test_slow_server_times_out(servers) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    with egress.client(policy(servers, timeout=0.3)) as http, pytest.raises(EgressRefused):
        send(http, HttpRequest(method="GET", url="https://api.aauth.test/slow"))
    assert time.monotonic() - started < 1.9  # gave up before the server answered


def test_untrusted_certificate_is_refused(servers) -> None:  # type: ignore[no-untyped-def]
    untrusted = EgressPolicy(
        allow_private=True,
        connect_to={"api.aauth.test": ("127.0.0.1", servers["api.aauth.test"].port)},
    )  # the system trust store does not know the test CA
    with egress.client(untrusted) as http, pytest.raises(EgressRefused):
        send(http, HttpRequest(method="GET", url="https://api.aauth.test/echo"))


def test_oversized_request_body_is_413(servers) -> None:  # type: ignore[no-untyped-def]
    with egress.client(policy(servers)) as http:
        answer = send(
            http, HttpRequest(method="POST", url="https://api.aauth.test/echo", body=b"y" * 65)
        )
    assert answer.status == 413


def test_to_starlette_keeps_status_headers_and_body() -> None:
    from aauth_core.http import HttpResponse

    response = to_starlette(
        HttpResponse(
            status=401,
            headers=[("Signature-Error", "error=invalid_signature"), ("X-A", "1"), ("X-A", "2")],
            body=b"{}",
        )
    )
    assert response.status_code == 401
    assert response.body == b"{}"
    assert response.headers.getlist("x-a") == ["1", "2"]
    assert response.headers["content-length"] == "2"
    assert response.headers["signature-error"] == "error=invalid_signature"


def test_private_hosts_admit_only_the_names_listed() -> None:
    mapped = {"ps.aauth.test": ("127.0.0.1", 4443), "evil.aauth.test": ("127.0.0.1", 4444)}
    narrow = EgressPolicy(connect_to=mapped, private_hosts=["PS.aauth.test"])
    assert admit("https://ps.aauth.test/x", narrow).port == 4443
    with pytest.raises(EgressRefused, match="private, loopback"):
        admit("https://evil.aauth.test/x", narrow)
    with pytest.raises(EgressRefused, match="private, loopback"):
        admit("https://127.0.0.1/x", narrow)
