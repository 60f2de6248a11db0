"""Verifying request and response signatures under the AAuth profile (-11 §11.3.4).

Two steps, so that a caller who must read ``Signature-Key`` before it has a key (the
resource pipeline) parses each header once:

1. :func:`read_signature` parses ``Signature-Input`` and ``Signature`` and selects the
   label → :class:`SelectedSignature`;
2. :func:`verify_selected` checks coverage, the ``created``/``expires`` window and
   ``keyid``, rebuilds the base, checks ``Content-Digest`` and verifies the signature.

:func:`verify_request_signature` and :func:`verify_response_signature` do both. Every
failure is a :class:`~aauth_core.errors.SignatureFailure`: ``invalid_signature``,
``invalid_input`` (with ``required_input``) or ``clock_skew``; the key's own errors
(``invalid_key``) come from :func:`aauth_core.verify.verifier_for`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from attrs import field, frozen

from aauth_core.errors import LocalProtocolError, SignatureErrorCode, SignatureFailure
from aauth_core.http import Headers, HttpRequest, HttpResponse
from aauth_core.httpsig.base import build_signature_base, encode_base
from aauth_core.httpsig.components import Component, ComponentError, MessageParts
from aauth_core.httpsig.digest import verify_content_digest
from aauth_core.httpsig.fields import (
    CoveredComponents,
    SignatureInput,
    SignatureParams,
    parse_signature,
    parse_signature_input,
)
from aauth_core.jwk import PublicJwk
from aauth_core.verify import verifier_for

__all__ = [
    "time_failure",
    "AAUTH_REQUIRED_COMPONENTS",
    "DEFAULT_WINDOW",
    "SelectedSignature",
    "VerifiedSignature",
    "read_signature",
    "verify_selected",
    "verify_request_signature",
    "verify_response_signature",
]

#: Components every AAuth request signature must cover (-11 §11.3).
AAUTH_REQUIRED_COMPONENTS: tuple[str, ...] = ("@method", "@authority", "@path", "signature-key")
#: The default ``created`` window in seconds (a resource may advertise ``signature_window``).
DEFAULT_WINDOW = 60
_BODY_COMPONENTS = ("content-digest", "content-type")
_CONTENT_DIGEST = Component.of("content-digest")


@frozen(kw_only=True)
class SelectedSignature:
    """The parsed ``Signature-Input`` member and signature bytes of one label."""

    label: str
    input: SignatureInput
    signature: bytes = field(repr=False)


@frozen(kw_only=True)
class VerifiedSignature:
    """A signature that verified: what it covered, when it was made, and its base."""

    label: str
    covered: CoveredComponents
    params: SignatureParams
    created: int
    expires: int | None
    base: str


def read_signature(
    headers: Headers, label: str | None = None, *, require_signature_key: bool = True
) -> SelectedSignature:
    """Parse ``Signature-Input`` and ``Signature`` and select ``label``.

    With ``label=None`` the one label present in both fields is used (several →
    ``invalid_signature``). Absent fields (and ``Signature-Key`` when required) →
    ``invalid_signature``.
    """
    raw_input = headers.get("signature-input")
    raw_signature = headers.get("signature")
    if raw_input is None or raw_signature is None:
        raise SignatureFailure("Signature and Signature-Input are required")
    if require_signature_key and "signature-key" not in headers:
        raise SignatureFailure("Signature-Key is required")
    inputs = parse_signature_input(raw_input)
    signatures = parse_signature(raw_signature)
    if label is None:
        common = [name for name in inputs if name in signatures]
        if len(common) != 1:
            raise SignatureFailure(
                "no signature label in both Signature-Input and Signature"
                if not common
                else "several signatures present: the label must be chosen"
            )
        label = common[0]
    elif label not in inputs or label not in signatures:
        raise SignatureFailure(f"signature label {label[:40]!r} is not present")
    return SelectedSignature(label=label, input=inputs[label], signature=signatures[label])


@lru_cache(maxsize=256)
def _required_cached(
    required_components: tuple[str | Component, ...], body_rule: bool
) -> tuple[Component, ...]:
    out = [Component.of(c) for c in required_components]
    if body_rule:
        out.extend(c for c in map(Component.of, _BODY_COMPONENTS) if c not in out)
    return tuple(out)


def _required(
    required_components: Sequence[str | Component], body_rule: bool
) -> tuple[Component, ...]:
    try:
        return _required_cached(tuple(required_components), body_rule)
    except ComponentError as exc:
        raise ValueError(f"required_components: {exc}") from exc


def time_failure(
    created: int | None, expires: int | None, now: int, window: int
) -> SignatureFailure | None:
    """The ``created``/``expires`` rule (-11 §11.3.4 step 3): ``None`` when the times are
    acceptable, else the failure to raise (stale → ``invalid_signature``, ahead of the
    clock by more than the window → ``clock_skew``)."""
    if created is None:
        return SignatureFailure("the created signature parameter is required")
    if now - created > window:
        return SignatureFailure("the signature is older than the allowed window")
    if created - now > window:
        return SignatureFailure(
            "the signature was created in the future", code=SignatureErrorCode.CLOCK_SKEW
        )
    if expires is not None and (expires <= now or expires < created):
        return SignatureFailure("the signature has expired")
    return None


def _check_time(params: SignatureParams, now: int, window: int) -> int:
    created = params.created
    failure = time_failure(created, params.expires, now, window)
    if failure is not None:
        raise failure
    if created is None:  # time_failure refuses a missing created: unreachable
        raise LocalProtocolError("broken invariant: time_failure accepted a missing created")
    return created


def verify_selected(
    message: HttpRequest | HttpResponse,
    selected: SelectedSignature,
    *,
    key: PublicJwk,
    now: int,
    window: int = DEFAULT_WINDOW,
    required_components: Sequence[str | Component] = AAUTH_REQUIRED_COMPONENTS,
    require_body_coverage: bool = False,
    request: HttpRequest | None = None,
) -> VerifiedSignature:
    """Verify one selected signature of ``message`` with ``key`` at time ``now``.

    ``require_body_coverage``: a message with a body must also cover ``content-digest``
    and ``content-type`` (PS/AS endpoints, revocation). A covered ``content-digest`` is
    always checked against the body. ``request`` is the request a response answers.
    """
    sig_input = selected.input
    covered = sig_input.covered
    body_rule = require_body_coverage and len(message.body) > 0
    required = _required(required_components, body_rule)
    if covered.missing(required):
        raise SignatureFailure(
            "the signature does not cover the required components",
            code=SignatureErrorCode.INVALID_INPUT,
            required_input=tuple(c.short for c in required),
        )
    params = sig_input.params
    created = _check_time(params, now, window)
    keyid = params.keyid
    if keyid is not None and keyid != key.kid and keyid != key.thumbprint():
        raise SignatureFailure("keyid does not name the signing key")
    parts = MessageParts(message)
    try:
        base = build_signature_base(parts, covered, sig_input.signature_params, request=request)
        data = encode_base(base)
    except ComponentError as exc:
        raise SignatureFailure(f"the signature base cannot be built: {exc}") from None
    if _CONTENT_DIGEST in covered:
        verify_content_digest(parts.field("content-digest"), message.body)
    if not verifier_for(key)(data, selected.signature):
        raise SignatureFailure("the signature does not verify")
    return VerifiedSignature(
        label=selected.label,
        covered=covered,
        params=params,
        created=created,
        expires=params.expires,
        base=base,
    )


def verify_request_signature(
    request: HttpRequest,
    *,
    label: str | None,
    key: PublicJwk,
    now: int,
    window: int = DEFAULT_WINDOW,
    required_components: Sequence[str | Component] = AAUTH_REQUIRED_COMPONENTS,
    require_body_coverage: bool = False,
    require_signature_key: bool = True,
) -> VerifiedSignature:
    """Verify the request signature ``label`` (None: the only one) with ``key``."""
    selected = read_signature(request.headers, label, require_signature_key=require_signature_key)
    return verify_selected(
        request,
        selected,
        key=key,
        now=now,
        window=window,
        required_components=required_components,
        require_body_coverage=require_body_coverage,
    )


def verify_response_signature(
    response: HttpResponse,
    *,
    label: str | None,
    key: PublicJwk,
    now: int,
    request: HttpRequest | None = None,
    window: int = DEFAULT_WINDOW,
    required_components: Sequence[str | Component] = ("@status",),
    require_body_coverage: bool = False,
    require_signature_key: bool = False,
) -> VerifiedSignature:
    """Verify a response signature; ``request`` is the request it answers (``;req``)."""
    selected = read_signature(response.headers, label, require_signature_key=require_signature_key)
    return verify_selected(
        response,
        selected,
        key=key,
        now=now,
        window=window,
        required_components=required_components,
        require_body_coverage=require_body_coverage,
        request=request,
    )
