"""The httpwg structured-field-tests suite (tests/vectors/sfv, RFC 9651) through aauth_core.sfv.

Parse tests: ``raw`` field lines joined with ", " (RFC 9110 §5.3) are parsed as
``header_type``; ``must_fail`` cases raise MalformedInput, ``can_fail`` cases either raise
MalformedInput or parse to ``expected``, the rest parse to ``expected``. Every value that
parses serialises to ``canonical`` (else the raw form); an empty canonical list means the
field is omitted, which our serialisers signal by raising. Serialisation tests serialise
``expected`` to ``canonical`` or must fail.

The files are read with ``parse_float=Decimal`` rather than ``load_vector`` because the
expected decimals (e.g. 0.0015, rounded to 0.002) are not exact as binary floats.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from conftest import LOCAL_VECTORS
from http_sf.util import datetime_from_timestamp

from aauth_core import sfv
from aauth_core.errors import MalformedInput

SUITE = LOCAL_VECTORS / "sfv"

PARSE = {"dictionary": sfv.parse_dictionary, "list": sfv.parse_list, "item": sfv.parse_item}
SERIALIZE = {
    "dictionary": sfv.serialize_dictionary,
    "list": sfv.serialize_list,
    "item": sfv.serialize_item,
}


def _load(path: Path) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)
    return cases


def _cases(folder: Path) -> list[Any]:
    out = []
    for path in sorted(folder.glob("*.json")):
        for case in _load(path):
            out.append(pytest.param(case, id=f"{path.stem}: {case['name']}"))
    return out


PARSE_CASES = _cases(SUITE)
SERIALISATION_CASES = _cases(SUITE / "serialisation-tests")
VALID_PARSE_CASES = [p for p in PARSE_CASES if not p.values[0].get("must_fail")]
# every case with an ``expected`` structure (parse-valid ones and serialisation tests)
STRUCTURE_CASES = [p for p in PARSE_CASES + SERIALISATION_CASES if "expected" in p.values[0]]


# -- http-sf values <-> the suite's JSON form -------------------------------------------


def _bare_to_json(value: Any) -> Any:
    if isinstance(value, bool | int | Decimal | str):
        return value
    if isinstance(value, sfv.Token):
        return {"__type": "token", "value": str(value)}
    if isinstance(value, sfv.DisplayString):
        return {"__type": "displaystring", "value": str(value)}
    if isinstance(value, bytes):
        return {"__type": "binary", "value": base64.b32encode(value).decode("ascii")}
    if isinstance(value, datetime):
        return {"__type": "date", "value": int(value.timestamp())}
    raise AssertionError(f"unexpected bare item type {type(value).__name__}")


def _params_to_json(params: dict[str, Any]) -> list[Any]:
    return [[key, _bare_to_json(value)] for key, value in params.items()]


def _member_to_json(member: Any) -> list[Any]:
    bare, params = member
    if isinstance(bare, list):
        return [[_member_to_json(item) for item in bare], _params_to_json(params)]
    return [_bare_to_json(bare), _params_to_json(params)]


def to_json(value: Any, header_type: str) -> Any:
    if header_type == "dictionary":
        return [[key, _member_to_json(member)] for key, member in value.items()]
    if header_type == "list":
        return [_member_to_json(member) for member in value]
    return _member_to_json(value)


def _bare_from_json(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    kind, inner = value["__type"], value["value"]
    if kind == "token":
        return sfv.Token(inner)
    if kind == "displaystring":
        return sfv.DisplayString(inner)
    if kind == "binary":
        return base64.b32decode(inner)
    if kind == "date":
        return datetime_from_timestamp(inner)
    raise AssertionError(f"unknown __type {kind}")


def _params_from_json(params: list[Any]) -> dict[str, Any]:
    return {key: _bare_from_json(value) for key, value in params}


def _member_from_json(member: list[Any]) -> Any:
    bare, params = member
    if isinstance(bare, list):
        return ([_member_from_json(item) for item in bare], _params_from_json(params))
    return (_bare_from_json(bare), _params_from_json(params))


def from_json(value: Any, header_type: str) -> Any:
    if header_type == "dictionary":
        return {key: _member_from_json(member) for key, member in value}
    if header_type == "list":
        return [_member_from_json(member) for member in value]
    return _member_from_json(value)


def tagged(value: Any) -> Any:
    """Make the comparison type-exact: True == 1 and 1 == Decimal(1) in Python, not in SF."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return ("int", value)
    if isinstance(value, Decimal):
        return ("decimal", value)
    if isinstance(value, list):
        return [tagged(v) for v in value]
    if isinstance(value, dict):
        return {k: tagged(v) for k, v in value.items()}
    return value


def _expected_text(case: dict[str, Any]) -> list[str]:
    canonical: list[str] = case.get("canonical", case.get("raw"))
    # Several lines of one field are one value once combined.
    return [", ".join(canonical)] if canonical else []


# -- the suite ----------------------------------------------------------------------------


def test_suite_is_complete() -> None:
    assert len(PARSE_CASES) == 1591
    assert len(VALID_PARSE_CASES) == 727
    assert len(STRUCTURE_CASES) == 727 + len(SERIALISATION_CASES)


@pytest.mark.parametrize("case", PARSE_CASES)
def test_parse(case: dict[str, Any]) -> None:
    raw = ", ".join(case["raw"])
    parse = PARSE[case["header_type"]]
    if case.get("must_fail"):
        with pytest.raises(MalformedInput):
            parse(raw, max_length=len(raw) + 1)
        return
    try:
        value = parse(raw, max_length=len(raw) + 1)
    except MalformedInput:
        assert case.get("can_fail"), "a valid field was rejected"
        # The only can_fail values http-sf refuses are dates beyond Python's datetime.
        with pytest.raises(OverflowError):
            from_json(case["expected"], case["header_type"])
        return
    assert tagged(to_json(value, case["header_type"])) == tagged(case["expected"])


@pytest.mark.parametrize("case", VALID_PARSE_CASES)
def test_parse_then_serialize(case: dict[str, Any]) -> None:
    raw = ", ".join(case["raw"])
    try:
        value = PARSE[case["header_type"]](raw, max_length=len(raw) + 1)
    except MalformedInput:
        assert case.get("can_fail")
        return
    want = _expected_text(case)
    serialize = SERIALIZE[case["header_type"]]
    if not want:
        with pytest.raises(MalformedInput):
            serialize(value)
        return
    assert [serialize(value)] == want


@pytest.mark.parametrize("case", STRUCTURE_CASES)
def test_serialize_expected(case: dict[str, Any]) -> None:
    try:
        value = from_json(case["expected"], case["header_type"])
    except OverflowError:
        # a date outside Python's datetime range; only allowed for can_fail cases
        assert case.get("can_fail")
        return
    serialize = SERIALIZE[case["header_type"]]
    want = [] if case.get("must_fail") else _expected_text(case)
    if not want:
        with pytest.raises(MalformedInput):
            serialize(value)
        return
    assert [serialize(value)] == want


def test_length_bound() -> None:
    value = "a=1, " * 4000
    with pytest.raises(MalformedInput):
        sfv.parse_dictionary(value)
    assert len(sfv.parse_dictionary(value.rstrip(", "), max_length=len(value))) == 1


def test_non_ascii_text_is_malformed() -> None:
    with pytest.raises(MalformedInput):
        sfv.parse_item('"caf\u00e9"')
    with pytest.raises(MalformedInput):
        sfv.parse_item(b'"caf\xc3\xa9"')


def test_duplicate_keys_keep_the_last_value() -> None:
    assert sfv.parse_dictionary("a=1, b=2, a=3") == {"a": (3, {}), "b": (2, {})}


@pytest.mark.parametrize(
    ("text", "wire"),
    [("abc", '"abc"'), ('a"b', '"a\\"b"'), ("a\\b", '"a\\\\b"'), ("", '""'), (" ", '" "')],
)
def test_serialize_string(text: str, wire: str) -> None:
    assert sfv.serialize_string(text) == wire
    assert sfv.parse_item(wire) == (text, {})


@pytest.mark.parametrize("text", ["caf\u00e9", "a\nb", "\x7f", "tab\there"])
def test_serialize_string_rejects_what_cannot_be_carried(text: str) -> None:
    with pytest.raises(MalformedInput):
        sfv.serialize_string(text)


def test_token_and_key_predicates() -> None:
    assert sfv.is_token("jwt") and sfv.is_token("*a:/b") and sfv.is_token("Ed25519")
    assert not sfv.is_token("1a") and not sfv.is_token("") and not sfv.is_token(sfv.Token("a"))
    assert sfv.is_key("sig1") and sfv.is_key("*x") and sfv.is_key("a-b_c.d")
    assert not sfv.is_key("Sig") and not sfv.is_key("1a") and not sfv.is_key("")
