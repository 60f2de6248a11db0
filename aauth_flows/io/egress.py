"""Egress admission: where this process may open a connection, and the httpx clients that ask.

Every outbound request the I/O edge makes (metadata and JWKS discovery, token endpoints,
federation, revocation, the agent's own calls) goes through a transport that admits the
destination first (Signature Keys "egress admission", protocol digest §8):

- ``https`` only (a policy may allow ``http`` for a test harness, never by default);
- the host is resolved once, and *every* address must be public unless the policy allows
  private destinations; the connection then goes to that address (the resolved IP is
  pinned, so a second DNS answer cannot rebind it), with TLS SNI and the ``Host`` header
  still naming the host, so certificate checks are unchanged;
- redirects are never followed (a redirect to another host is the classic SSRF hop); the
  caller sees the 3xx;
- ``timeout`` bounds connect and every read; :func:`read_limited` bounds a body.

``connect_to`` is curl's ``--connect-to``: a host name is served at another address and
port (the demo runs ``https://ps.aauth.test`` on a free loopback port). A mapped address
is admitted like a resolved one: loopback still needs ``allow_private``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

import httpx
from attrs import field, frozen

from aauth_core.errors import AAuthError

__all__ = [
    "EgressRefused",
    "EgressPolicy",
    "Destination",
    "admit",
    "admit_async",
    "client",
    "async_client",
    "BodyBudget",
    "read_limited",
    "read_limited_async",
]

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Discovery documents and token responses are small; 256 KiB is generous.
DEFAULT_MAX_BYTES = 256 * 1024


class EgressRefused(AAuthError):
    """This process will not connect there (policy), or could not (DNS, size, timeout)."""

    default_code = "egress_refused"
    default_status = 502


def _frozen_map(value: Mapping[str, tuple[str, int]]) -> Mapping[str, tuple[str, int]]:
    checked: dict[str, tuple[str, int]] = {}
    for host, (address, port) in dict(value).items():
        ipaddress.ip_address(address)  # ValueError for a name: connect_to maps to addresses
        if not 0 < int(port) < 65536:
            raise ValueError(f"connect_to port for {host!r} out of range")
        checked[host.lower()] = (address, int(port))
    return MappingProxyType(checked)


def _lower_names(hosts: Iterable[str]) -> frozenset[str]:
    return frozenset(host.lower() for host in hosts)


@frozen(kw_only=True)
class EgressPolicy:
    """Where outbound requests may go. The defaults are the safe ones."""

    allow_private: bool = False
    """Admit loopback, private (RFC 1918, ULA), link-local, CGNAT and other non-global
    addresses. Off by default; the demo and the tests turn it on for their loopback servers."""
    private_hosts: frozenset[str] = field(factory=frozenset, converter=_lower_names)
    """Host names that may resolve (or be mapped) to non-global addresses while every other
    name may not: the narrow form of ``allow_private`` (the demo lists its five servers, so
    a token naming ``https://evil.aauth.test`` still cannot make a server fetch loopback)."""
    allow_http: bool = False
    """Admit ``http://`` URLs. Never for discovery in production."""
    connect_to: Mapping[str, tuple[str, int]] = field(
        factory=dict, converter=_frozen_map, repr=False
    )
    ca_file: str | None = None
    """A PEM file of extra trust anchors (the demo's private CA) instead of the system ones."""
    timeout: float = 5.0
    max_bytes: int = DEFAULT_MAX_BYTES

    def ssl_context(self) -> ssl.SSLContext:
        if self.ca_file is None:
            return ssl.create_default_context()
        return ssl.create_default_context(cafile=self.ca_file)


@frozen(kw_only=True)
class Destination:
    """An admitted destination: connect to ``address:port``, speak TLS to ``host``."""

    scheme: str
    host: str
    address: str
    port: int


def _scheme_and_host(url: httpx.URL, policy: EgressPolicy) -> tuple[str, str, int]:
    scheme = url.scheme
    if scheme != "https" and not (scheme == "http" and policy.allow_http):
        raise EgressRefused(f"refusing a {scheme or 'scheme-less'} URL: only https is allowed")
    host = url.host
    if not host:
        raise EgressRefused("refusing a URL without a host")
    if url.userinfo:
        raise EgressRefused("refusing a URL with userinfo")
    port = url.port or (443 if scheme == "https" else 80)
    return scheme, host.lower(), port


def _check_address(host: str, address: str, policy: EgressPolicy) -> None:
    ip: IpAddress = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_global and not ip.is_multicast:
        return
    if ip.is_multicast or ip.is_unspecified:
        raise EgressRefused(f"refusing {host}: {ip} is not a unicast address")
    if not policy.allow_private and host not in policy.private_hosts:
        raise EgressRefused(
            f"refusing {host}: {ip} is a private, loopback or link-local address"
            " (not allowed by the egress policy)"
        )


def _pick(
    host: str, port: int, infos: list[tuple[Any, ...]], policy: EgressPolicy
) -> tuple[str, int]:
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise EgressRefused(f"refusing {host}: it does not resolve")
    for address in addresses:  # every answer must be admissible, not just the first
        _check_address(host, address, policy)
    return addresses[0], port


def _mapped(host: str, port: int, policy: EgressPolicy) -> tuple[str, int] | None:
    target = policy.connect_to.get(host)
    if target is None:
        return None
    _check_address(host, target[0], policy)
    return target


def _literal(host: str, port: int, policy: EgressPolicy) -> tuple[str, int] | None:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    _check_address(host, host.strip("[]"), policy)
    return host.strip("[]"), port


def admit(url: str | httpx.URL, policy: EgressPolicy) -> Destination:
    """Admit ``url`` under ``policy`` (resolving its host), or raise :class:`EgressRefused`."""
    scheme, host, port = _scheme_and_host(httpx.URL(url), policy)
    target = _mapped(host, port, policy) or _literal(host, port, policy)
    if target is None:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as err:
            raise EgressRefused(f"refusing {host}: it does not resolve") from err
        target = _pick(host, port, list(infos), policy)
    return Destination(scheme=scheme, host=host, address=target[0], port=target[1])


async def admit_async(url: str | httpx.URL, policy: EgressPolicy) -> Destination:
    """:func:`admit` without blocking the event loop on DNS."""
    scheme, host, port = _scheme_and_host(httpx.URL(url), policy)
    target = _mapped(host, port, policy) or _literal(host, port, policy)
    if target is None:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as err:
            raise EgressRefused(f"refusing {host}: it does not resolve") from err
        target = _pick(host, port, list(infos), policy)
    return Destination(scheme=scheme, host=host, address=target[0], port=target[1])


def _pinned(request: httpx.Request, destination: Destination) -> httpx.Request:
    """A copy of ``request`` addressed to the admitted address; ``Host`` and SNI keep the
    name. The caller's request is left as it was (an ``httpx.Auth`` flow may send it again)."""
    address = destination.address
    if ":" in address:
        address = f"[{address}]"
    extensions = dict(request.extensions)
    if destination.scheme == "https":
        extensions["sni_hostname"] = destination.host
    return httpx.Request(
        request.method,
        request.url.copy_with(host=address, port=destination.port),
        headers=request.headers,
        stream=request.stream,
        extensions=extensions,
    )


class _AdmittingTransport(httpx.BaseTransport):
    def __init__(self, policy: EgressPolicy) -> None:
        self._policy = policy
        self._inner = httpx.HTTPTransport(verify=policy.ssl_context(), retries=0)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._inner.handle_request(_pinned(request, admit(request.url, self._policy)))

    def close(self) -> None:
        self._inner.close()


class _AsyncAdmittingTransport(httpx.AsyncBaseTransport):
    def __init__(self, policy: EgressPolicy) -> None:
        self._policy = policy
        self._inner = httpx.AsyncHTTPTransport(verify=policy.ssl_context(), retries=0)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        pinned = _pinned(request, await admit_async(request.url, self._policy))
        return await self._inner.handle_async_request(pinned)

    async def aclose(self) -> None:
        await self._inner.aclose()


def client(policy: EgressPolicy | None = None, **kwargs: Any) -> httpx.Client:
    """An ``httpx.Client`` whose every request is admitted by ``policy`` first; redirects
    are not followed. ``kwargs`` go to ``httpx.Client`` (``auth``, ``headers``, …)."""
    policy = policy or EgressPolicy()
    return httpx.Client(
        transport=_AdmittingTransport(policy),
        follow_redirects=False,
        timeout=policy.timeout,
        trust_env=False,
        **kwargs,
    )


def async_client(policy: EgressPolicy | None = None, **kwargs: Any) -> httpx.AsyncClient:
    """:func:`client` for asyncio."""
    policy = policy or EgressPolicy()
    return httpx.AsyncClient(
        transport=_AsyncAdmittingTransport(policy),
        follow_redirects=False,
        timeout=policy.timeout,
        trust_env=False,
        **kwargs,
    )


class BodyBudget:
    """Collects a body in chunks and refuses it, by raising ``error``, the moment it is
    over ``max_bytes`` (or as soon as a declared ``Content-Length`` says it will be)."""

    __slots__ = ("_chunks", "_error", "_max", "_size")

    def __init__(self, max_bytes: int, error: AAuthError, declared: str | None = None) -> None:
        self._max, self._error = max_bytes, error
        self._chunks: list[bytes] = []
        self._size = 0
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            raise error

    def add(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self._max:
            raise self._error
        self._chunks.append(chunk)

    def body(self) -> bytes:
        return b"".join(self._chunks)


def _response_budget(response: httpx.Response, max_bytes: int) -> BodyBudget:
    error = EgressRefused(f"response from {response.url.host} is over {max_bytes} bytes")
    return BodyBudget(max_bytes, error, response.headers.get("content-length"))


def read_limited(response: httpx.Response, max_bytes: int) -> bytes:
    """The body of a streamed ``response``, refusing more than ``max_bytes``."""
    budget = _response_budget(response, max_bytes)
    for chunk in response.iter_bytes():
        budget.add(chunk)
    return budget.body()


async def read_limited_async(response: httpx.Response, max_bytes: int) -> bytes:
    """:func:`read_limited` for an async streamed response."""
    budget = _response_budget(response, max_bytes)
    async for chunk in response.aiter_bytes():
        budget.add(chunk)
    return budget.body()
