"""Signing requests and responses (RFC 9421 §3.1) under the AAuth profile.

The functions return the fields to add to the message (``Signature-Input``,
``Signature``, and ``Content-Digest`` when ``content-digest`` is covered but absent).
AAuth forbids the ``alg`` parameter, so it is never emitted; ``keyid`` only on request.

The AAuth default (``@method @authority @path signature-key``, ``created`` only) has a
lean path that builds the base directly: it is measured against a raw Ed25519 sign.
Invalid components, a missing covered field or a value that cannot be signed are caller
misuse: ``ValueError`` (:class:`~aauth_core.httpsig.components.ComponentError`).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence

from aauth_core.errors import SignatureFailure
from aauth_core.http import HttpRequest, HttpResponse
from aauth_core.httpsig.base import build_signature_base, encode_base, signature_base_for
from aauth_core.httpsig.components import (
    Component,
    ComponentError,
    MessageParts,
    field_value,
    split_target,
)
from aauth_core.httpsig.digest import content_digest, verify_content_digest
from aauth_core.httpsig.fields import CoveredComponents, SignatureParams, is_label
from aauth_core.signer import Signer

__all__ = [
    "AAUTH_COMPONENTS",
    "aauth_base",
    "sign_request",
    "sign_response",
    "signature_base_for",
]

#: The components every AAuth request signature covers (-11 §11.3).
AAUTH_COMPONENTS: tuple[str, ...] = ("@method", "@authority", "@path", "signature-key")
_AAUTH_INNER = '("@method" "@authority" "@path" "signature-key")'


def _check_common(label: str, created: int, expires: int | None) -> None:
    if not is_label(label):
        raise ValueError(f"{label!r} is not a valid signature label")
    if type(created) is not int or created < 0:
        raise ValueError("created is a non-negative integer (Unix time)")
    if expires is not None and (type(expires) is not int or expires <= created):
        raise ValueError("expires is an integer after created")


def _lookup(extra: Mapping[str, str] | None, name: str) -> str | None:
    if extra:
        for key, value in extra.items():
            if key.lower() == name:
                return value
    return None


def aauth_base(
    request: HttpRequest, extra: Mapping[str, str] | None, created: int
) -> tuple[str, str]:
    """The AAuth default base and its ``@signature-params`` value, built directly (the
    same bytes as the generic builder; the verifier's fast path uses it too)."""
    target = split_target(request.url)
    key = _lookup(extra, "signature-key")
    key = field_value(request.headers, "signature-key") if key is None else key.strip(" \t")
    if key is None:
        raise ComponentError("covered field 'signature-key' is absent")
    method = request.method
    params = f"{_AAUTH_INNER};created={created}"
    base = (
        f'"@method": {method}\n"@authority": {target.authority}\n"@path": {target.path}\n'
        f'"signature-key": {key}\n"@signature-params": {params}'
    )
    if "\n" in method or "\r" in method or "\n" in key or "\r" in key:
        raise ComponentError("a covered value contains a line break")
    return base, params


def _finish(label: str, signer: Signer, base: str, params: str) -> dict[str, str]:
    signature = signer.sign(encode_base(base))
    return {
        "Signature-Input": f"{label}={params}",
        "Signature": f"{label}=:{base64.b64encode(signature).decode('ascii')}:",
    }


def _prepare(
    message: HttpRequest | HttpResponse,
    covered: Sequence[str | Component],
    extra_headers: Mapping[str, str] | None,
) -> tuple[CoveredComponents, dict[str, str], dict[str, str]]:
    """Covered components, the fields to add, and the fields that count as present."""
    cov = CoveredComponents(components=covered)
    present = dict(extra_headers or {})
    added: dict[str, str] = {}
    if Component.of("content-digest") in cov:
        existing = _lookup(present, "content-digest")
        if existing is None:
            existing = message.headers.get("content-digest")
        if existing is None:
            added["Content-Digest"] = present["Content-Digest"] = content_digest(message.body)
        else:
            try:
                verify_content_digest(existing, message.body)
            except SignatureFailure as exc:
                raise ValueError(
                    f"the message's own Content-Digest is wrong: {exc.detail}"
                ) from exc
    return cov, added, present


def sign_request(
    request: HttpRequest,
    signer: Signer,
    *,
    covered: Sequence[str | Component],
    created: int,
    label: str = "sig",
    expires: int | None = None,
    keyid: str | None = None,
    nonce: str | None = None,
    tag: str | None = None,
    extra_headers: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Sign ``request``; return the fields to add.

    ``extra_headers`` are fields the request will carry but ``request.headers`` does not
    hold yet (typically ``Signature-Key``); they are used for component values as if
    present and are not repeated in the result.
    """
    _check_common(label, created, expires)
    if (
        expires is None
        and keyid is None
        and nonce is None
        and tag is None
        and tuple(covered) == AAUTH_COMPONENTS
    ):
        base, params = aauth_base(request, extra_headers, created)
        return _finish(label, signer, base, params)
    cov, added, present = _prepare(request, covered, extra_headers)
    sig_params = SignatureParams(
        created=created, expires=expires, nonce=nonce, keyid=keyid, tag=tag
    )
    params = cov.serialize() + sig_params.serialize()
    base = build_signature_base(MessageParts(request, present), cov, params)
    return added | _finish(label, signer, base, params)


def sign_response(
    response: HttpResponse,
    signer: Signer,
    *,
    covered: Sequence[str | Component],
    created: int,
    request: HttpRequest | None = None,
    label: str = "sig",
    expires: int | None = None,
    keyid: str | None = None,
    nonce: str | None = None,
    tag: str | None = None,
    extra_headers: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Sign ``response`` (``request`` is the request it answers, for ``;req``)."""
    _check_common(label, created, expires)
    cov, added, present = _prepare(response, covered, extra_headers)
    sig_params = SignatureParams(
        created=created, expires=expires, nonce=nonce, keyid=keyid, tag=tag
    )
    params = cov.serialize() + sig_params.serialize()
    base = build_signature_base(MessageParts(response, present), cov, params, request=request)
    return added | _finish(label, signer, base, params)
