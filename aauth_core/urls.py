"""Syntax rules for the URLs AAuth carries besides server identifiers (-11 §1.4).

- Endpoints (``*_endpoint``, the interaction ``url``, callbacks): ``https``, no query, no
  fragment (:func:`endpoint_url`).
- Other URLs (``jwks_uri``, ``logo_uri``, ``tos_uri``, …): ``https`` (:func:`https_url`).
- A callback may be ``http://localhost`` or ``http://127.0.0.1`` (any port) when the AP
  allows it (:func:`callback_url`).

These are syntax checks only; egress admission (where a URL may be fetched) is separate.
Each function returns the text unchanged or raises ``error`` (an :class:`AAuthError`
subclass chosen by the caller, :class:`MalformedInput` by default).
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urljoin

from aauth_core.errors import AAuthError, MalformedInput
from aauth_core.identifiers import is_server_host

__all__ = [
    "https_url",
    "endpoint_url",
    "callback_url",
    "origin_of",
    "pending_location",
    "MAX_URL_LENGTH",
]

MAX_URL_LENGTH = 4096

# RFC 3986 unreserved, gen-delims, sub-delims and '%': anything else (space, controls,
# non-ASCII, backslash, quotes, braces) is refused rather than normalised.
_URL_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_PORT = re.compile(r"[0-9]{1,5}")
_LOCALHOST_HOSTS = frozenset({"localhost", "127.0.0.1"})


def _host_ok(host: str) -> bool:
    if host.startswith("["):
        if not host.endswith("]"):
            return False
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return False
        return True
    if is_server_host(host.lower()):
        return True
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def _split_authority(authority: str) -> tuple[str, str | None]:
    """``host[:port]`` → (host, port or None); IPv6 literals keep their brackets."""
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            return authority, None
        host, rest = authority[: end + 1], authority[end + 1 :]
        if not rest:
            return host, None
        if not rest.startswith(":"):
            return "", None
        return host, rest[1:]
    host, colon, port = authority.partition(":")
    return host, (port if colon else None)


def https_url(
    text: object,
    *,
    what: str = "URL",
    allow_query: bool = True,
    allow_fragment: bool = True,
    localhost_http: bool = False,
    error: type[AAuthError] = MalformedInput,
) -> str:
    """Check an absolute ``https`` URL and return it unchanged.

    No userinfo; the host is a DNS name (any case) or an IP literal; an explicit port is
    1-65535. ``localhost_http`` also admits ``http://localhost`` / ``http://127.0.0.1``.
    """
    if not isinstance(text, str):
        raise error(f"{what} must be a string")
    if len(text) > MAX_URL_LENGTH:
        raise error(f"{what} is longer than {MAX_URL_LENGTH} characters")
    if _URL_CHARS.fullmatch(text) is None or _BAD_PERCENT.search(text) is not None:
        raise error(f"{what} contains characters a URL may not carry")
    if text.startswith("https://"):
        rest, plain_http = text[len("https://") :], False
    elif localhost_http and text.startswith("http://"):
        rest, plain_http = text[len("http://") :], True
    else:
        raise error(f"{what} must be an absolute https URL")
    end = len(rest)
    for delimiter in "/?#":
        index = rest.find(delimiter)
        if 0 <= index < end:
            end = index
    authority, tail = rest[:end], rest[end:]
    if "@" in authority:
        raise error(f"{what} must not carry userinfo")
    host, port = _split_authority(authority)
    if not host or not _host_ok(host):
        raise error(f"{what} has no valid host")
    if port is not None and (_PORT.fullmatch(port) is None or not 0 < int(port) <= 65535):
        raise error(f"{what} has an invalid port")
    if plain_http and host.lower() not in _LOCALHOST_HOSTS:
        raise error(f"{what} may use http only for localhost or 127.0.0.1")
    path_and_query, hash_mark, _ = tail.partition("#")
    if hash_mark and not allow_fragment:
        raise error(f"{what} must not have a fragment")
    if "?" in path_and_query and not allow_query:
        raise error(f"{what} must not have a query")
    return text


def endpoint_url(
    text: object, *, what: str = "endpoint URL", error: type[AAuthError] = MalformedInput
) -> str:
    """An endpoint or interaction URL: ``https``, no query, no fragment."""
    return https_url(text, what=what, allow_query=False, allow_fragment=False, error=error)


def callback_url(
    text: object,
    *,
    localhost_allowed: bool,
    what: str = "callback URL",
    error: type[AAuthError] = MalformedInput,
) -> str:
    """An interaction callback: endpoint rules, plus ``http://localhost`` / ``127.0.0.1``
    (any port) when the agent's AP metadata has ``localhost_callback_allowed: true``."""
    return https_url(
        text,
        what=what,
        allow_query=False,
        allow_fragment=False,
        localhost_http=localhost_allowed,
        error=error,
    )


def origin_of(url: str, *, error: type[AAuthError] = MalformedInput) -> str:
    """``https://host[:port]`` of an absolute https URL (the host lower-cased)."""
    https_url(url, error=error)
    scheme_end = url.index("://") + 3
    end = len(url)
    for delimiter in "/?#":
        index = url.find(delimiter, scheme_end)
        if 0 <= index < end:
            end = index
    return "https://" + url[scheme_end:end].lower()


def pending_location(
    base_url: str, location: object, *, error: type[AAuthError] = MalformedInput
) -> str:
    """The absolute pending URL a ``202``'s ``Location`` names: a relative reference is
    resolved against ``base_url`` (the URL that answered), and the result must be an
    https URL on the same origin (-11 §5.9). Anything else (absent, another origin, not a
    URL, characters a URL may not carry) raises ``error``."""
    if not isinstance(location, str) or not location.strip():
        raise error("a deferred response needs a Location")
    if len(location) > MAX_URL_LENGTH:
        raise error(f"Location is longer than {MAX_URL_LENGTH} characters")
    if _URL_CHARS.fullmatch(location.strip()) is None:
        raise error("Location contains characters a URL may not carry")
    resolved = urljoin(base_url, location.strip())
    https_url(resolved, what="Location", error=error)
    if origin_of(resolved, error=error) != origin_of(base_url, error=error):
        raise error("Location is not on the origin that answered")
    return resolved
