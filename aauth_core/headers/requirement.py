"""``AAuth-Requirement`` (protocol -11 §11.6): what a resource, PS or AS wants next.

The field is an RFC 9651 Dictionary whose ``requirement`` member is a Token; the data for
a requirement are parameters on that member. Unknown members and parameters are ignored.
An unknown requirement value is kept as data (``is_known`` is False): the agent decides
(for a 202 it may keep polling; otherwise the requirement cannot be met).

Serialisation writes ``"; "`` between parameters, the form every example in the draft
uses (``requirement=auth-token; resource-token="eyJ..."``); parsing accepts any RFC 9651
spelling.
"""

from __future__ import annotations

import enum
import re

from attrs import field, frozen

from aauth_core import sfv
from aauth_core.errors import MalformedInput
from aauth_core.urls import endpoint_url

__all__ = [
    "HEADER",
    "RequirementType",
    "Requirement",
    "validate_interaction_url",
    "validate_interaction_code",
]

HEADER = "AAuth-Requirement"

#: Longest interaction code accepted; real codes are 8 to a few dozen symbols.
MAX_CODE_LENGTH = 64

_CODE = re.compile(r"[0-9A-Za-z][0-9A-Za-z-]*")


class RequirementType(enum.StrEnum):
    """The ``requirement`` values registered by protocol -11."""

    AGENT_TOKEN = "agent-token"  # noqa: S105 - a requirement name
    PERSON_TOKEN = "person-token"  # noqa: S105 - a requirement name
    AUTH_TOKEN = "auth-token"  # noqa: S105 - a requirement name
    INTERACTION = "interaction"
    APPROVAL = "approval"
    CLARIFICATION = "clarification"
    CLAIMS = "claims"


_KNOWN = frozenset(RequirementType)
# wire parameter name -> attribute; also the serialisation order
_PARAMS = (("resource-token", "resource_token"), ("url", "url"), ("code", "code"))
# which parameters each known requirement carries (all of them are REQUIRED there)
_CARRIES: dict[str, frozenset[str]] = {
    RequirementType.AUTH_TOKEN: frozenset({"resource_token"}),
    RequirementType.INTERACTION: frozenset({"url", "code"}),
}


def validate_interaction_url(url: str) -> str:
    """An interaction ``url``: absolute ``https`` with a host, no query, fragment or userinfo
    (the agent appends ``?code=``). Egress policy is the caller's, before redirecting."""
    return endpoint_url(url, what="interaction url")


def validate_interaction_code(code: str) -> str:
    """An interaction ``code``: letters, digits and presentational hyphens (a Crockford base32
    code, not yet folded), so that ``{url}?code={code}`` needs no escaping."""
    if not isinstance(code, str) or _CODE.fullmatch(code) is None:
        raise MalformedInput("interaction code must be letters, digits and hyphens")
    if len(code) > MAX_CODE_LENGTH:
        raise MalformedInput(f"interaction code is longer than {MAX_CODE_LENGTH} characters")
    return code


def _check_requirement(_inst: object, _attr: object, value: str) -> None:
    if not sfv.is_token(value):
        raise MalformedInput("requirement must be a structured field token")


def _check_resource_token(_inst: object, _attr: object, value: str | None) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value:
        raise MalformedInput("resource-token must be a non-empty string")
    sfv.serialize_string(value, what="resource-token")  # printable ASCII only


def _check_url(_inst: object, _attr: object, value: str | None) -> None:
    if value is not None:
        validate_interaction_url(value)


def _check_code(_inst: object, _attr: object, value: str | None) -> None:
    if value is not None:
        validate_interaction_code(value)


@frozen(kw_only=True)
class Requirement:
    """One ``AAuth-Requirement`` value.

    Known requirements carry exactly their parameters (``auth-token``: ``resource_token``;
    ``interaction``: ``url`` and ``code``; the others none). An unknown requirement may
    carry any of the three.
    """

    requirement: str = field(validator=_check_requirement)
    resource_token: str | None = field(default=None, validator=_check_resource_token, repr=False)
    url: str | None = field(default=None, validator=_check_url)
    code: str | None = field(default=None, validator=_check_code)

    def __attrs_post_init__(self) -> None:
        if self.requirement not in _KNOWN:
            return
        carries = _CARRIES.get(self.requirement, frozenset())
        for _, attr in _PARAMS:
            present = getattr(self, attr) is not None
            if attr in carries and not present:
                raise MalformedInput(f"requirement={self.requirement} needs {attr}")
            if attr not in carries and present:
                raise MalformedInput(f"requirement={self.requirement} does not carry {attr}")

    @property
    def is_known(self) -> bool:
        """True for the values protocol -11 registers."""
        return self.requirement in _KNOWN

    @property
    def type(self) -> RequirementType | None:
        """The registered value, or None for an unknown one."""
        return RequirementType(self.requirement) if self.requirement in _KNOWN else None

    def interaction_target(self) -> str:
        """Where to send the user: ``{url}?code={code}`` (``interaction`` only)."""
        if self.url is None or self.code is None:
            raise ValueError("only an interaction requirement has a url and a code")
        return f"{self.url}?code={self.code}"

    # -- builders ----------------------------------------------------------------------

    @classmethod
    def agent_token(cls) -> Requirement:
        return cls(requirement=RequirementType.AGENT_TOKEN.value)

    @classmethod
    def person_token(cls) -> Requirement:
        return cls(requirement=RequirementType.PERSON_TOKEN.value)

    @classmethod
    def auth_token(cls, resource_token: str) -> Requirement:
        return cls(requirement=RequirementType.AUTH_TOKEN.value, resource_token=resource_token)

    @classmethod
    def interaction(cls, url: str, code: str) -> Requirement:
        return cls(requirement=RequirementType.INTERACTION.value, url=url, code=code)

    @classmethod
    def approval(cls) -> Requirement:
        return cls(requirement=RequirementType.APPROVAL.value)

    @classmethod
    def clarification(cls) -> Requirement:
        return cls(requirement=RequirementType.CLARIFICATION.value)

    @classmethod
    def claims(cls) -> Requirement:
        return cls(requirement=RequirementType.CLAIMS.value)

    # -- wire --------------------------------------------------------------------------

    @classmethod
    def parse(cls, value: str | bytes) -> Requirement:
        """Parse a field value; :class:`MalformedInput` (``invalid_request``, 400) if it is
        not a Dictionary with a Token ``requirement`` and the parameters it needs."""
        members = sfv.parse_dictionary(value, what=HEADER)
        member = members.get("requirement")
        if member is None:
            raise MalformedInput(f"{HEADER} has no requirement member")
        bare, params = member
        if not isinstance(bare, sfv.Token):
            raise MalformedInput(f"{HEADER} requirement is not a token")
        name = str(bare)
        carries = _CARRIES.get(name, frozenset()) if name in _KNOWN else None
        kwargs: dict[str, str] = {}
        for wire, attr in _PARAMS:
            if carries is not None and attr not in carries:
                continue  # a parameter this requirement does not define: ignored
            if wire not in params:
                continue
            param = params[wire]
            if not isinstance(param, str):
                raise MalformedInput(f"{HEADER} parameter {wire} is not a string")
            kwargs[attr] = param
        return cls(requirement=name, **kwargs)

    def serialize(self) -> str:
        parts = [f"requirement={self.requirement}"]
        for wire, attr in _PARAMS:
            param = getattr(self, attr)
            if param is not None:
                parts.append(f"{wire}={sfv.serialize_string(param, what=wire)}")
        return "; ".join(parts)
