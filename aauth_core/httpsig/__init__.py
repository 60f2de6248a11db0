"""RFC 9421 HTTP Message Signatures under the AAuth profile, and RFC 9530 Content-Digest.

- :mod:`.components`: component identifiers and their values;
- :mod:`.fields`: ``Signature-Input`` / ``Signature`` values, parsers (with fast paths)
  and serialisers;
- :mod:`.base`: the signature base (RFC 9421 §2.5);
- :mod:`.digest`: ``Content-Digest``;
- :mod:`.sign` / :mod:`.verify`: the two sides.
"""

from __future__ import annotations

from aauth_core.httpsig.base import build_signature_base, signature_base_for
from aauth_core.httpsig.components import Component, ComponentError
from aauth_core.httpsig.digest import content_digest, verify_content_digest
from aauth_core.httpsig.fields import (
    CoveredComponents,
    SignatureInput,
    SignatureParams,
    parse_signature,
    parse_signature_input,
    serialize_signature,
    serialize_signature_input,
)
from aauth_core.httpsig.sign import AAUTH_COMPONENTS, sign_request, sign_response
from aauth_core.httpsig.verify import (
    AAUTH_REQUIRED_COMPONENTS,
    DEFAULT_WINDOW,
    SelectedSignature,
    VerifiedSignature,
    read_signature,
    verify_request_signature,
    verify_response_signature,
    verify_selected,
)

__all__ = [
    "Component",
    "ComponentError",
    "CoveredComponents",
    "SignatureParams",
    "SignatureInput",
    "parse_signature_input",
    "parse_signature",
    "serialize_signature_input",
    "serialize_signature",
    "build_signature_base",
    "signature_base_for",
    "content_digest",
    "verify_content_digest",
    "AAUTH_COMPONENTS",
    "sign_request",
    "sign_response",
    "AAUTH_REQUIRED_COMPONENTS",
    "DEFAULT_WINDOW",
    "SelectedSignature",
    "VerifiedSignature",
    "read_signature",
    "verify_selected",
    "verify_request_signature",
    "verify_response_signature",
]
