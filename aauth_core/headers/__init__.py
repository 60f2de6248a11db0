"""The AAuth and Signature Keys HTTP fields other than ``Signature-Key`` (which lives in
:mod:`aauth_core.signature_key`): parse from the wire, serialise back, no I/O."""

from __future__ import annotations

from aauth_core.headers.accept import (
    ACCEPT_SIGNATURE_ALG,
    ACCEPT_SIGNATURE_SCHEME,
    parse_accept_signature_alg,
    parse_accept_signature_scheme,
    parse_token_list,
    serialize_accept_signature_alg,
    serialize_accept_signature_scheme,
    serialize_token_list,
)
from aauth_core.headers.access import AAUTH_ACCESS, AUTHORIZATION, AccessToken
from aauth_core.headers.capabilities import Capabilities, Capability
from aauth_core.headers.prefer import (
    Preference,
    parse_prefer_wait,
    parse_preferences,
    serialize_prefer_wait,
)
from aauth_core.headers.requirement import Requirement, RequirementType
from aauth_core.headers.signature_error import SignatureErrorHeader, signature_error_headers

__all__ = [
    "ACCEPT_SIGNATURE_ALG",
    "ACCEPT_SIGNATURE_SCHEME",
    "AAUTH_ACCESS",
    "AUTHORIZATION",
    "AAUTH_CAPABILITIES",
    "AAUTH_REQUIREMENT",
    "PREFER",
    "SIGNATURE_ERROR",
    "Requirement",
    "RequirementType",
    "SignatureErrorHeader",
    "signature_error_headers",
    "parse_token_list",
    "serialize_token_list",
    "parse_accept_signature_scheme",
    "serialize_accept_signature_scheme",
    "parse_accept_signature_alg",
    "serialize_accept_signature_alg",
    "AccessToken",
    "Capability",
    "Capabilities",
    "Preference",
    "parse_preferences",
    "parse_prefer_wait",
    "serialize_prefer_wait",
]

AAUTH_REQUIREMENT = "AAuth-Requirement"
AAUTH_CAPABILITIES = "AAuth-Capabilities"
SIGNATURE_ERROR = "Signature-Error"
PREFER = "Prefer"
