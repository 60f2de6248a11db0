"""aauth-go ``http-signature.json``: RFC 9421 request signatures under the AAuth profile.

Each case is verified with the public part of its ``signing_key`` at
``created + verify.at_offset``; ``tamper`` is applied to the signed request first.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import load_vector

from aauth_core.errors import SignatureFailure
from aauth_core.http import HttpRequest
from aauth_core.httpsig import (
    AAUTH_REQUIRED_COMPONENTS,
    parse_signature_input,
    verify_request_signature,
)
from aauth_core.jwk import PublicJwk

VECTORS = load_vector("aauth-go/http-signature.json")
CASES = VECTORS["cases"]


def _public(jwk: dict[str, Any]) -> PublicJwk:
    return PublicJwk.from_dict({k: v for k, v in jwk.items() if k != "d"})


def _request(case: dict[str, Any]) -> HttpRequest:
    req = case["request"]
    headers = dict(req.get("headers", {}))
    headers.update(case["signed"])
    method, url, body = req["method"], req["url"], req.get("body", "")
    tamper = case.get("tamper")
    if tamper:
        method = tamper.get("method") or method
        url = tamper.get("url") or url
        if "body" in tamper:
            body = tamper["body"]
        headers.update(tamper.get("headers", {}))
    return HttpRequest(method=method, url=url, headers=headers, body=body.encode("utf-8"))


def _verify(case: dict[str, Any]) -> Any:
    options = case.get("verify", {})
    signed_input = parse_signature_input(case["signed"]["Signature-Input"])
    created = signed_input["sig"].params.created
    assert isinstance(created, int)
    return verify_request_signature(
        _request(case),
        label=None,
        key=_public(case["signing_key"]),
        now=created + options.get("at_offset", 0),
        window=options.get("window_seconds", 60),
        required_components=tuple(options.get("required_components", AAUTH_REQUIRED_COMPONENTS)),
        require_body_coverage=options.get("require_body_coverage", False),
    )


def test_all_thirteen_cases_are_present() -> None:
    assert len(CASES) == 13


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_case(case: dict[str, Any]) -> None:
    expect = case["expect"]
    if expect == "valid":
        verified = _verify(case)
        assert verified.label == "sig"
        assert verified.base.endswith(
            '"@signature-params": ' + case["signed"]["Signature-Input"][len("sig=") :]
        )
        return
    with pytest.raises(SignatureFailure) as info:
        _verify(case)
    assert info.value.code == expect
    assert info.value.status == 401
    if expect == "invalid_input":
        required = info.value.required_input
        assert "content-type" in required
        if case.get("verify", {}).get("required_components"):
            assert required == tuple(case["verify"]["required_components"])
        else:
            assert set(AAUTH_REQUIRED_COMPONENTS) <= set(required)


def test_untampered_twins_of_tamper_cases_verify() -> None:
    """The tamper cases fail because of the tamper, not because the vector is broken."""
    for case in CASES:
        if "tamper" in case and case["name"] != (
            "PS endpoint body without content-type coverage is invalid_input"
        ):
            clean = {k: v for k, v in case.items() if k != "tamper"}
            assert _verify(clean).label == "sig"
