"""Requests a server signs in its own right: the ``jwks_uri`` Signature-Key scheme.

A Person Server calling an Access Server, any server calling a revocation endpoint, an
Agent Provider revoking at a PS: each signs as itself,
``Signature-Key: sig=jwks_uri;id=<issuer>;dwk=<document>;kid=<key id>``, and covers the body
(``content-digest`` and ``content-type``). :func:`verify_server_request` is the one check
for all of them; agents' requests (the ``jwt`` scheme) go through
:class:`~aauth_core.requests.RequestVerifier`.
"""

from __future__ import annotations

from collections.abc import Collection

from attrs import field, frozen

from aauth_core.algorithms import DEFAULT_ALGS, Alg
from aauth_core.errors import (
    AAuthError,
    InvalidIdentifier,
    LocalProtocolError,
    SignatureFailure,
    UnsupportedAlgorithm,
)
from aauth_core.http import HttpRequest
from aauth_core.httpsig.sign import AAUTH_COMPONENTS, sign_request
from aauth_core.httpsig.verify import (
    AAUTH_REQUIRED_COMPONENTS,
    DEFAULT_WINDOW,
    VerifiedSignature,
    read_signature,
    verify_selected,
)
from aauth_core.identifiers import ServerId
from aauth_core.jwk import PublicJwk
from aauth_core.requests import BODY_COMPONENTS
from aauth_core.signature_key import JwksUriScheme, select, serialize_jwks_uri_scheme
from aauth_core.signer import Signer
from aauth_core.tokens.verify import KeyResolver

__all__ = ["VerifiedServerRequest", "verify_server_request", "sign_server_request"]


@frozen(kw_only=True)
class VerifiedServerRequest:
    """A request whose ``jwks_uri`` server signature verified: who signed it, with what."""

    issuer: str
    dwk: str
    key: PublicJwk = field(repr=False)
    signature: VerifiedSignature = field(repr=False)


def verify_server_request(
    request: HttpRequest,
    *,
    keys: KeyResolver,
    dwks: Collection[str],
    now: int,
    window: int = DEFAULT_WINDOW,
    allowed_algs: frozenset[Alg] = DEFAULT_ALGS,
) -> VerifiedServerRequest:
    """Verify a server signature (``jwks_uri`` scheme) whose ``dwk`` is one of ``dwks``.

    Every failure is a :class:`SignatureFailure` (401 + ``Signature-Error``): another
    scheme is ``unsupported_scheme`` (with ``Accept-Signature-Scheme: jwks_uri``); an
    ``id`` that is not a server identifier, or a ``dwk`` not accepted here, is
    ``invalid_signature``; the resolver's ``unknown_key`` / ``issuer_missing`` /
    ``issuer_mismatch`` pass through with their codes; a body must be covered
    (``content-digest``, checked against the body, and ``content-type``).
    """
    selected = read_signature(request.headers, None)
    raw_key = request.headers.get("signature-key")
    if raw_key is None:
        raise LocalProtocolError("broken invariant: read_signature let a missing Signature-Key by")
    scheme = select(raw_key, selected.label, accepted_schemes=("jwks_uri",))
    if not isinstance(scheme, JwksUriScheme):
        raise LocalProtocolError("broken invariant: select returned a scheme not accepted")
    try:
        issuer = str(ServerId.parse(scheme.id))
    except InvalidIdentifier as exc:
        raise SignatureFailure(
            f"Signature-Key id is not a server identifier: {exc.detail}"
        ) from None
    if scheme.dwk not in dwks:
        raise SignatureFailure(f"Signature-Key dwk {scheme.dwk[:40]!r} is not accepted here")
    try:
        key = keys.resolve(issuer, scheme.dwk, scheme.kid)
    except SignatureFailure:
        raise
    except AAuthError as exc:  # MetadataError: issuer_missing / issuer_mismatch
        raise SignatureFailure(exc.detail, code=exc.code) from None
    if key.alg not in allowed_algs:
        raise UnsupportedAlgorithm(
            f"server key algorithm {key.alg.value} is not accepted",
            accept_algs=tuple(a.value for a in Alg if a in allowed_algs),
        )
    signature = verify_selected(
        request,
        selected,
        key=key,
        now=now,
        window=window,
        required_components=AAUTH_REQUIRED_COMPONENTS,
        require_body_coverage=True,
    )
    return VerifiedServerRequest(issuer=issuer, dwk=scheme.dwk, key=key, signature=signature)


def sign_server_request(
    request: HttpRequest,
    signer: Signer,
    *,
    issuer: str,
    dwk: str,
    created: int,
    label: str = "sig",
) -> dict[str, str]:
    """Sign ``request`` as the server ``issuer`` (its metadata document ``dwk``); return
    the fields to add: ``Signature-Key`` (``jwks_uri`` scheme, ``kid`` = the signer's key
    id), ``Signature-Input``, ``Signature`` and, with a body, ``Content-Digest`` (the body
    is always covered: ``content-digest`` and ``content-type``)."""
    signature_key = serialize_jwks_uri_scheme(label, id=issuer, dwk=dwk, kid=signer.key_id)
    covered = (*AAUTH_COMPONENTS, *BODY_COMPONENTS) if request.body else AAUTH_COMPONENTS
    added = sign_request(
        request,
        signer,
        covered=covered,
        created=created,
        label=label,
        extra_headers={"Signature-Key": signature_key},
    )
    return {"Signature-Key": signature_key, **added}
