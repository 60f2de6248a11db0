"""Metadata and JWKS discovery with caching: the I/O edge's :class:`KeyResolver`.

``{issuer}/.well-known/{dwk}`` → issuer check → ``jwks_uri`` → key by ``kid`` (protocol
digest §4, §4.4, §8 "Discovery / SSRF"). The ``httpx.Client`` given is egress-admitted
(:func:`aauth_flows.io.egress.client`: https only, private addresses refused unless
allowed, resolved IP pinned, redirects never followed); here every answer but ``200`` is
a failure, bodies are bounded and the client's timeout applies.

Caching, per ``(issuer, dwk)`` (one entry holds the document and its JWKS):

- fresh for the ``Cache-Control: max-age`` / ``Expires`` lifetime of the two responses
  (the shorter), ``DEFAULT_TTL`` without either; ``no-store`` / ``no-cache`` count as 0.
  The lifetime is clamped to ``[min_interval, max_age]``: ``no-store`` cannot make every
  request a fetch (the keys are still needed to verify the request at hand);
- at most one network fetch per entry per ``min_interval`` seconds, whatever triggers it
  (expiry, or an unknown ``kid``: that refreshes once, and a second unknown ``kid`` within
  the interval answers ``unknown_key`` without fetching), and never two at once: other
  threads wait for the fetch in flight (the lock is not held during network I/O);
- a failed fetch keeps the cached copy in service and retries after an exponential
  backoff (``min_interval`` doubling up to ``MAX_BACKOFF``); without a copy the failure
  is answered again until the backoff passes;
- a copy older than ``max_age`` is dropped, never served;
- at most ``max_entries`` entries, least recently used evicted first: unauthenticated
  callers choose the issuers, so they create the entries.

Errors: :meth:`Discovery.metadata` and the typed accessors raise what went wrong
(:class:`~aauth_flows.io.egress.EgressRefused` 502 for a refused or failed fetch,
:class:`~aauth_core.errors.MetadataError` for a bad document: ``issuer_missing`` /
``issuer_mismatch`` 401, ``invalid_metadata`` 502). :meth:`Discovery.resolve` answers as a
verifier needs (401 + ``Signature-Error``): ``unknown_key``, ``issuer_missing`` /
``issuer_mismatch`` as :class:`~aauth_core.errors.SignatureFailure`, a selected JWK that
is unusable as ``invalid_key`` / ``unsupported_algorithm``, and everything else (no key
could be obtained) as :class:`~aauth_core.errors.TokenError` ``invalid_jwt`` saying why.
"""

from __future__ import annotations

import copy
import email.utils
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import structlog
from attrs import frozen

from aauth_core.errors import (
    AAuthError,
    InvalidIdentifier,
    MetadataError,
    SignatureErrorCode,
    SignatureFailure,
    TokenError,
)
from aauth_core.http import Headers, HttpRequest
from aauth_core.identifiers import ServerId
from aauth_core.jwk import PublicJwk
from aauth_core.metadata import (
    MAX_METADATA_BYTES,
    METADATA_TYPES,
    AccessServerMetadata,
    AgentProviderMetadata,
    PersonServerMetadata,
    ResourceMetadata,
    ServerMetadata,
    load_json_object,
)
from aauth_flows.io.egress import EgressRefused
from aauth_flows.io.messages import send
from aauth_flows.machines.engine import narrow

__all__ = [
    "Discovery",
    "CachedKeys",
    "WouldBlock",
    "DEFAULT_TTL",
    "MAX_BACKOFF",
    "MAX_DOCUMENT_BYTES",
]

log = structlog.get_logger("aauth.io")

#: Freshness of a response that says nothing about caching.
DEFAULT_TTL = 3600
#: Ceiling of the retry backoff after failed fetches.
MAX_BACKOFF = 3600
#: Size bound of a metadata document or a JWKS.
MAX_DOCUMENT_BYTES = MAX_METADATA_BYTES

_ISSUER_CODES = frozenset(
    {SignatureErrorCode.ISSUER_MISSING.value, SignatureErrorCode.ISSUER_MISMATCH.value}
)
M = TypeVar("M", bound=ServerMetadata)


@frozen(kw_only=True)
class _Document:
    """One successful fetch: the checked document, its JWKS members, and its times."""

    data: dict[str, Any]
    typed: ServerMetadata
    keys: tuple[dict[str, Any], ...] | None  # None: the document names no jwks_uri
    fresh_until: float
    drop_at: float


class WouldBlock(Exception):
    """The answer needs the network (not an AAuthError: no peer did anything wrong). An
    event-loop caller retries the whole step where blocking is allowed."""


class CachedKeys:
    """:meth:`Discovery.without_fetching`: resolves from fresh cached documents only."""

    __slots__ = ("_discovery",)

    def __init__(self, discovery: Discovery) -> None:
        self._discovery = discovery

    def resolve(self, issuer: str, dwk: str, kid: str | None) -> PublicJwk:
        key = self._discovery.cached(issuer, dwk, kid)
        if key is None:
            raise WouldBlock(f"keys of {issuer[:100]} are not cached")
        return key


class _Entry:
    """Mutable cache state of one ``(issuer, dwk)``; guarded by the Discovery lock."""

    __slots__ = ("document", "error", "failures", "fetching", "retry_at")

    def __init__(self) -> None:
        self.document: _Document | None = None
        self.error: AAuthError | None = None
        self.failures = 0
        self.fetching = False
        self.retry_at = float("-inf")  # no network fetch before this time


def _seconds(value: str) -> int | None:
    value = value.strip().strip('"')
    if not value.isascii() or not value.isdigit():
        return None
    return int(value[:12])  # RFC 9111 §1.2.2: huge delta-seconds saturate


def _http_date(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.timestamp()


def _lifetime(headers: Headers, now: float) -> float:
    """The freshness lifetime RFC 9111 gives the response (0: already stale)."""
    cache_control = headers.get("cache-control")
    if cache_control is not None:
        directives = [part.strip().lower() for part in cache_control.split(",")]
        for directive in directives:
            if directive in {"no-store", "no-cache"} or directive.startswith("no-cache="):
                return 0.0
        for directive in directives:
            name, _, value = directive.partition("=")
            if name.strip() == "max-age":
                seconds = _seconds(value)
                return 0.0 if seconds is None else float(seconds)
    expires_header = headers.get("expires")
    if expires_header is not None:
        expires = _http_date(expires_header)
        if expires is None:
            return 0.0  # an invalid Expires means "already expired"
        date = _http_date(headers.get("date"))
        return max(0.0, expires - (now if date is None else date))
    return float(DEFAULT_TTL)


def _jwks_members(body: bytes) -> tuple[dict[str, Any], ...]:
    data = load_json_object(body, max_size=MAX_DOCUMENT_BYTES, what="JWKS", error=MetadataError)
    keys = data.get("keys")
    if not isinstance(keys, list):
        raise MetadataError("JWKS has no 'keys' array")
    # Members are parsed only when selected: one unusable key must not hide the others.
    return tuple(member for member in keys if isinstance(member, dict))


def _copy_error(error: AAuthError) -> AAuthError:
    """A fresh instance to raise again (one instance raised from several threads would
    share, and grow, one traceback)."""
    return copy.copy(error).with_traceback(None)


class Discovery:
    """Cached, thread-safe discovery of metadata documents and issuer keys (module docs).

    ``http`` must be an egress-admitted client; ``clock`` is wall-clock seconds.
    ``allow_cross_origin_jwks`` admits a ``jwks_uri`` on another origin than the issuer.
    """

    def __init__(
        self,
        http: httpx.Client,
        *,
        clock: Callable[[], float] = time.time,
        min_interval: float = 60,
        max_age: float = 86400,
        max_entries: int = 1024,
        allow_cross_origin_jwks: bool = False,
    ) -> None:
        if min_interval <= 0 or max_age < min_interval:
            raise ValueError("need 0 < min_interval <= max_age")
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._http = http
        self._clock = clock
        self._min_interval = float(min_interval)
        self._max_age = float(max_age)
        self._max_entries = max_entries
        self._allow_cross_origin_jwks = allow_cross_origin_jwks
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._lock = threading.Condition(threading.Lock())

    # --- public API -------------------------------------------------------------------

    def metadata(self, issuer: str, dwk: str) -> dict[str, Any]:
        """The issuer-checked, validated document ``dwk`` of ``issuer`` (a copy)."""
        return copy.deepcopy(self._document(issuer, dwk).data)

    def agent_provider(self, issuer: str) -> AgentProviderMetadata:
        return self._typed(issuer, AgentProviderMetadata)

    def person_server(self, issuer: str) -> PersonServerMetadata:
        return self._typed(issuer, PersonServerMetadata)

    def access_server(self, issuer: str) -> AccessServerMetadata:
        return self._typed(issuer, AccessServerMetadata)

    def resource(self, issuer: str) -> ResourceMetadata:
        return self._typed(issuer, ResourceMetadata)

    def resolve(self, issuer: str, dwk: str, kid: str | None) -> PublicJwk:
        """Core's :class:`~aauth_core.tokens.verify.KeyResolver`: the key ``kid`` of the
        JWKS that ``{issuer}/.well-known/{dwk}`` names. Every failure is a 401
        :class:`SignatureFailure` (see the module docstring for the codes)."""
        try:
            key = self._select(issuer, self._document(issuer, dwk), kid)
            if key is None:  # an unknown kid refreshes, within the fetch rate limit
                key = self._select(issuer, self._document(issuer, dwk, refresh=True), kid)
        except SignatureFailure:
            raise
        except AAuthError as exc:
            if isinstance(exc, MetadataError) and exc.code in _ISSUER_CODES:
                raise SignatureFailure(exc.detail, code=exc.code) from None
            raise TokenError(
                f"no key could be obtained for issuer {issuer[:100]!r}: {exc.detail}"
            ) from None
        if key is None:
            which = "has several keys and the token names none" if kid is None else "no key"
            named = "" if kid is None else f" {kid[:64]!r}"
            raise TokenError(
                f"issuer {issuer[:100]} {which}{named}", code=SignatureErrorCode.UNKNOWN_KEY
            )
        return key

    def cached(self, issuer: str, dwk: str, kid: str | None) -> PublicJwk | None:
        """The key :meth:`resolve` would return without touching the network: from a
        fresh cached document only (None: a fetch, or a wait for one, would be needed)."""
        with self._lock:
            entry = self._entries.get((issuer, dwk))
            document = None if entry is None or entry.fetching else entry.document
            if document is None or self._clock() >= min(document.fresh_until, document.drop_at):
                return None
        return self._select(issuer, document, kid)

    def without_fetching(self) -> CachedKeys:
        """A :class:`KeyResolver` over this cache that never blocks: it raises
        :class:`WouldBlock` where :meth:`resolve` would fetch."""
        return CachedKeys(self)

    # --- cache --------------------------------------------------------------------------

    def _typed(self, issuer: str, cls: type[M]) -> M:
        typed = self._document(issuer, cls.dwk.value).typed
        # the entry for cls.dwk was parsed with METADATA_TYPES[cls.dwk], i.e. cls
        return narrow(typed, cls, f"the cached {cls.dwk.value} document")

    def _document(self, issuer: str, dwk: str, *, refresh: bool = False) -> _Document:
        url = self._well_known_url(issuer, dwk)
        key = (issuer, dwk)
        with self._lock:
            while True:
                now = self._clock()
                entry = self._entry(key)
                document = entry.document
                if document is not None and now >= document.drop_at:
                    entry.document = document = None
                if document is not None and not refresh and now < document.fresh_until:
                    return document
                if entry.fetching:  # one fetch per entry at a time: wait for its outcome
                    self._lock.wait()
                    continue
                if now < entry.retry_at:
                    if document is not None:
                        return document
                    if entry.error is not None:
                        raise _copy_error(entry.error)
                    raise EgressRefused(f"{url} was fetched less than a minute ago")
                entry.fetching = True
                entry.retry_at = now + self._min_interval
                break
        try:
            fetched = self._fetch(issuer, dwk, url, now)
        except AAuthError as exc:
            with self._lock:
                entry.failures += 1
                backoff = self._min_interval * 2 ** min(entry.failures - 1, 32)
                entry.retry_at = now + min(backoff, max(MAX_BACKOFF, self._min_interval))
                entry.error = exc
                entry.fetching = False
                self._lock.notify_all()
                document = entry.document
            if document is not None and now < document.drop_at:
                log.warning(
                    "aauth.discovery.stale", issuer=issuer, dwk=dwk, failures=entry.failures
                )
                return document
            raise
        except BaseException:
            with self._lock:
                entry.fetching = False
                self._lock.notify_all()
            raise
        with self._lock:
            entry.document = fetched
            entry.failures = 0
            entry.error = None
            entry.fetching = False
            self._lock.notify_all()
        return fetched

    def _entry(self, key: tuple[str, str]) -> _Entry:
        """The entry for ``key`` (created if new), marked most recently used; evicts the
        least recently used entries past ``max_entries`` (never one being fetched)."""
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            return entry
        entry = self._entries[key] = _Entry()
        if len(self._entries) > self._max_entries:
            for old in list(self._entries):
                if len(self._entries) <= self._max_entries:
                    break
                if old != key and not self._entries[old].fetching:
                    del self._entries[old]
        return entry

    # --- network ------------------------------------------------------------------------

    @staticmethod
    def _well_known_url(issuer: str, dwk: str) -> str:
        server = ServerId.parse(issuer)
        if str(server) != issuer:
            raise InvalidIdentifier("issuer is not in its canonical form")
        if dwk not in METADATA_TYPES:
            raise MetadataError(
                f"unknown metadata document {dwk[:40]!r}", code="invalid_request", status=400
            )
        return server.well_known_url(dwk)

    def _fetch(self, issuer: str, dwk: str, url: str, now: float) -> _Document:
        body, headers = self._get(issuer, url)
        data = load_json_object(body, max_size=MAX_DOCUMENT_BYTES, what=dwk, error=MetadataError)
        typed = METADATA_TYPES[dwk].from_dict(data, expected_issuer=issuer)
        lifetime = _lifetime(headers, now)
        jwks_uri: str | None = getattr(typed, "jwks_uri", None)
        keys: tuple[dict[str, Any], ...] | None = None
        if jwks_uri is not None:
            self._check_jwks_origin(issuer, jwks_uri)
            jwks_body, jwks_headers = self._get(issuer, jwks_uri)
            keys = _jwks_members(jwks_body)
            lifetime = min(lifetime, _lifetime(jwks_headers, now))
        ttl = min(max(lifetime, self._min_interval), self._max_age)
        return _Document(
            data=data, typed=typed, keys=keys, fresh_until=now + ttl, drop_at=now + self._max_age
        )

    def _check_jwks_origin(self, issuer: str, jwks_uri: str) -> None:
        if self._allow_cross_origin_jwks:
            return
        target = httpx.URL(jwks_uri)
        if target.host.lower() != ServerId.parse(issuer).host or target.port not in {None, 443}:
            raise MetadataError(
                f"jwks_uri {jwks_uri[:200]!r} is not on the issuer's origin"
                " (cross-origin JWKS are not admitted)"
            )

    def _get(self, issuer: str, url: str) -> tuple[bytes, Headers]:
        started = time.monotonic()
        outcome = "error"
        try:
            response = send(
                self._http,
                HttpRequest(method="GET", url=url, headers=[("accept", "application/json")]),
                max_body=MAX_DOCUMENT_BYTES,
            )
            if response.status != 200:
                outcome = f"status_{response.status}"
                raise EgressRefused(f"GET {url[:200]} answered {response.status}, not 200")
            outcome = "ok"
            return response.body, response.headers
        except AAuthError as exc:
            if outcome == "error":
                outcome = exc.code
            raise
        finally:
            log.info(
                "aauth.discovery.fetch",
                issuer=issuer,
                url=url,
                outcome=outcome,
                duration=round(time.monotonic() - started, 4),
            )

    # --- keys ---------------------------------------------------------------------------

    @staticmethod
    def _select(issuer: str, document: _Document, kid: str | None) -> PublicJwk | None:
        if document.keys is None:
            raise TokenError(f"issuer {issuer[:100]} publishes no jwks_uri")
        if kid is None:
            return PublicJwk.from_dict(document.keys[0]) if len(document.keys) == 1 else None
        for member in document.keys:
            if member.get("kid") == kid:
                return PublicJwk.from_dict(member)
        return None
