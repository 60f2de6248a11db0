"""No ``assert`` statement in library code: ``python -O`` strips them, so nothing may rely
on one (tests are not library code). Walks every module's AST, so an ``assert`` in a
string or a comment does not count and one nested anywhere (a lambda, a class) does."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("aauth_core", "aauth_flows", "aauth_backends")


def _modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def _asserts(source: str, filename: str) -> list[int]:
    tree = ast.parse(source, filename=filename)
    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Assert)]


def test_the_packages_are_found() -> None:
    modules = _modules()
    for package in PACKAGES:
        assert (ROOT / package / "__init__.py") in modules
    assert len(modules) > 50


def test_no_assert_statement_in_library_code() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in _modules()
        for line in _asserts(path.read_text(encoding="utf-8"), str(path))
    ]
    assert found == [], "assert statements in library code (python -O strips them):\n" + (
        "\n".join(found)
    )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("x = 1\n", []),
        ("'assert x'\n# assert y\ntext = 'assert z'\n", []),
        ("def f(x):\n    assert x is not None\n    return x\n", [2]),
        ("class C:\n    def m(self):\n        if self:\n            assert self, 'no'\n", [4]),
        ("from typing import assert_never\ndef f(x):\n    assert_never(x)\n", []),
    ],
)
def test_the_detector(source: str, expected: list[int]) -> None:
    assert _asserts(source, "<test>") == expected


# -- a former assert a peer could reach ---------------------------------------------------
# ``assert sub_claims.cnf.jwk is not None`` at both PS token endpoints: a sub-agent token
# that binds by thumbprint only (``cnf.jkt``, never used by AAuth) reached it, so the
# machine raised AssertionError (or, under -O, went on with no key). It is a bad request.


def _jkt_only_subagent_token() -> str:
    from signing_helpers import generated_ed25519
    from test_flow_ps_world import AGENT, AP, AP_KEY, NOW, PS

    from aauth_core.identifiers import AgentId
    from aauth_core.tokens.claims import DWK_AGENT, AgentTokenClaims, Confirmation
    from aauth_core.tokens.mint import mint_token

    claims = AgentTokenClaims(
        iss=AP,
        dwk=DWK_AGENT,
        jti="sub-jti-jkt",
        iat=NOW - 10,
        exp=NOW + 3600,
        sub=AgentId.parse("aauth:assistant+s1@agent.example"),
        cnf=Confirmation(jkt=generated_ed25519().public_jwk().thumbprint()),
        ps=PS,
        parent_agent=AgentId.parse(AGENT),
    )
    return mint_token(claims, AP_KEY)


@pytest.mark.parametrize("endpoint", ["person-token", "auth-token"])
def test_s8_subagent_token_without_cnf_jwk_is_refused(endpoint: str) -> None:
    from test_flow_ps_world import (
        AGENT,
        AP,
        PS,
        RS,
        arrive,
        body_of,
        new_config,
        new_store,
        person_token,
        resource_token,
        response_of,
        signed_post,
    )

    from aauth_flows.machines.person_server import (
        AuthTokenMachine,
        PersonTokenMachine,
        RecordIssued,
        TokenRequestState,
    )

    store = new_store()
    store.bindings[(AP, AGENT)] = "alice"
    body: dict[str, object] = {"subagent_token": _jkt_only_subagent_token()}
    machine: PersonTokenMachine | AuthTokenMachine
    if endpoint == "person-token":
        machine = PersonTokenMachine(config=new_config(store))
        body["resource"] = RS
    else:
        machine = AuthTokenMachine(config=new_config(store))
        pt, claims = person_token()
        body.update(resource_token=resource_token(claims), presented_token=pt)
    actions = arrive(machine, signed_post(f"{PS}/{endpoint}", body), store)
    response = response_of(actions)
    assert (response.status, body_of(response)["error"]) == (400, "invalid_subagent_token")
    assert machine.state is not TokenRequestState.ERROR
    assert not [a for a in actions if isinstance(a, RecordIssued)]
