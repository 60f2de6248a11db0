"""Claim models of the four -11 token types (``../shared/spec/aauth-protocol.md`` §2).

Each model is built from a decoded JWT payload by ``from_payload`` (wire rules, raising
:class:`TokenError`) and turned back into one by ``to_payload``. Claims a model does not
name are kept verbatim in ``extra`` (APs add attestation claims; auth tokens may carry
OIDC claims): verifiers ignore them, builders pass them through.
"""

from __future__ import annotations

import enum
import functools
import hmac
import re
from collections.abc import Mapping
from typing import Any, ClassVar, Self

from attrs import field, frozen

from aauth_core.errors import AAuthError, InvalidIdentifier, TokenError
from aauth_core.identifiers import AgentId, ServerId
from aauth_core.jwk import PublicJwk
from aauth_core.urls import endpoint_url

__all__ = [
    "TokenType",
    "DWK_AGENT",
    "DWK_PERSON",
    "DWK_ACCESS",
    "DWK_RESOURCE",
    "Confirmation",
    "TokenClaims",
    "AgentTokenClaims",
    "PersonTokenClaims",
    "ResourceTokenClaims",
    "ResourceInteraction",
    "AuthTokenClaims",
    "CLAIMS_FOR",
]

DWK_AGENT = "aauth-agent.json"
DWK_PERSON = "aauth-person.json"
DWK_ACCESS = "aauth-access.json"
DWK_RESOURCE = "aauth-resource.json"

_MAX_STRING = 4096
_S256 = re.compile(r"[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]")
_MAX_NUMERIC_DATE = 253402300799  # 9999-12-31T23:59:59Z


class TokenType(enum.StrEnum):
    """The JWT ``typ`` header values of -11."""

    AGENT = "aa-agent+jwt"
    PERSON = "aa-person+jwt"
    RESOURCE = "aa-resource+jwt"
    AUTH = "aa-auth+jwt"


@frozen(kw_only=True)
class Confirmation:
    """RFC 7800 ``cnf``: the key the token is bound to.

    AAuth -11 always uses ``cnf.jwk``; the ``cnf.jkt`` (thumbprint) form of the
    overview's tokens is accepted too, and binds by RFC 7638 SHA-256 thumbprint.
    """

    jwk: PublicJwk | None = None
    jkt: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.jwk is None and self.jkt is None:
            raise ValueError("a confirmation needs jwk or jkt")

    @classmethod
    def from_claim(cls, value: object) -> Confirmation:
        if type(value) is not dict and not isinstance(value, Mapping):
            raise TokenError("cnf is missing or not an object")
        jwk_value = value.get("jwk")
        jkt_value = value.get("jkt")
        jwk = None
        if jwk_value is not None:
            # Structural problems here are invalid_key / unsupported_algorithm (-11 §9.4.3).
            jwk = PublicJwk.from_dict(jwk_value)
        if jkt_value is not None and (
            not isinstance(jkt_value, str) or _S256.fullmatch(jkt_value) is None
        ):
            raise TokenError("cnf.jkt is not an RFC 7638 SHA-256 thumbprint")
        if jwk is None and jkt_value is None:
            raise TokenError("cnf has neither jwk nor jkt")
        if jwk is not None and jkt_value is not None and jwk.thumbprint() != jkt_value:
            raise TokenError("cnf.jwk and cnf.jkt name different keys")
        return cls(jwk=jwk, jkt=jkt_value)

    def to_claim(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.jwk is not None:
            out["jwk"] = self.jwk.to_dict()
        if self.jkt is not None:
            out["jkt"] = self.jkt
        return out

    def binds(self, key: PublicJwk) -> bool:
        """True when ``key`` is the confirmed key (constant-time thumbprint compare)."""
        expected = self.jkt if self.jkt is not None else self.jwk.thumbprint()  # type: ignore[union-attr]
        return hmac.compare_digest(expected, key.thumbprint())


@frozen(kw_only=True)
class TokenClaims:
    """Claims every AAuth token carries (-11 §11.5)."""

    TYPE: ClassVar[TokenType]
    DWKS: ClassVar[frozenset[str]]
    #: -11 MUST caps on ``exp - iat`` (seconds); None where the draft only says SHOULD.
    MAX_LIFETIME: ClassVar[int | None] = None
    #: The SHOULD cap, enforced when minting.
    ISSUE_LIFETIME: ClassVar[int]
    _NAMED: ClassVar[frozenset[str]] = frozenset({"iss", "dwk", "jti", "iat", "exp"})

    iss: str
    dwk: str
    jti: str
    iat: int
    exp: int
    extra: Mapping[str, Any] = field(factory=dict, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.dwk not in self.DWKS:
            raise ValueError(f"dwk {self.dwk!r} is not valid for {self.TYPE.value}")
        if self.exp <= self.iat:
            raise ValueError("exp must be after iat")

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Self:
        """Validate a decoded payload; raise ``TokenError`` (or ``InvalidKey`` for ``cnf``)."""
        try:
            values = cls._common(payload)
            values.update(cls._specific(payload))
            others = payload.keys() - cls._NAMED
            # In the payload's order (set difference alone would lose it).
            values["extra"] = {k: v for k, v in payload.items() if k in others} if others else {}
            return cls(**values)
        except (TokenError, AAuthError):
            raise
        except ValueError as exc:
            raise TokenError(str(exc)) from exc

    @classmethod
    def _common(cls, p: Mapping[str, Any]) -> dict[str, Any]:
        dwk = _string(p, "dwk")
        if dwk not in cls.DWKS:
            raise TokenError(f"dwk {dwk[:40]!r} is not valid for {cls.TYPE.value}")
        return {
            "iss": _server_id(p, "iss"),
            "dwk": dwk,
            "jti": _string(p, "jti"),
            "iat": _numeric_date(p, "iat"),
            "exp": _numeric_date(p, "exp"),
        }

    @classmethod
    def _specific(cls, p: Mapping[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def to_payload(self) -> dict[str, Any]:
        """The JWT payload, typed claims first, then ``extra``."""
        out: dict[str, Any] = {"iss": self.iss, "dwk": self.dwk}
        out.update(self._specific_payload())
        out.update({"jti": self.jti, "iat": self.iat, "exp": self.exp})
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out

    def _specific_payload(self) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def confirmation(self) -> Confirmation | None:
        return None

    @property
    def audience(self) -> str | None:
        return None


@frozen(kw_only=True)
class AgentTokenClaims(TokenClaims):
    """``aa-agent+jwt``: issued by the Agent Provider to one agent key (§2.3)."""

    TYPE: ClassVar[TokenType] = TokenType.AGENT
    DWKS: ClassVar[frozenset[str]] = frozenset({DWK_AGENT})
    ISSUE_LIFETIME: ClassVar[int] = 24 * 3600
    _NAMED: ClassVar[frozenset[str]] = TokenClaims._NAMED | {"sub", "cnf", "ps", "parent_agent"}

    sub: AgentId
    cnf: Confirmation
    ps: str | None = None
    parent_agent: AgentId | None = None

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if self.parent_agent is not None and not self.sub.is_subagent_of(self.parent_agent):
            raise ValueError("a sub-agent's sub must be <parent local>+<discriminator>@<domain>")
        if self.parent_agent is None and self.sub.is_subagent:
            raise ValueError("an agent identifier with '+' needs parent_agent")

    @classmethod
    def _specific(cls, p: Mapping[str, Any]) -> dict[str, Any]:
        parent = p.get("parent_agent")
        return {
            "sub": _agent_id(p, "sub"),
            "cnf": Confirmation.from_claim(p.get("cnf")),
            "ps": _server_id(p, "ps") if "ps" in p else None,
            "parent_agent": _agent_id(p, "parent_agent") if parent is not None else None,
        }

    def _specific_payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {"sub": str(self.sub), "cnf": self.cnf.to_claim()}
        if self.ps is not None:
            out["ps"] = self.ps
        if self.parent_agent is not None:
            out["parent_agent"] = str(self.parent_agent)
        return out

    @property
    def confirmation(self) -> Confirmation:
        return self.cnf


@frozen(kw_only=True)
class PersonTokenClaims(TokenClaims):
    """``aa-person+jwt``: tells one resource which person the agent acts for (§2.4)."""

    TYPE: ClassVar[TokenType] = TokenType.PERSON
    DWKS: ClassVar[frozenset[str]] = frozenset({DWK_PERSON})
    MAX_LIFETIME: ClassVar[int | None] = 3600
    ISSUE_LIFETIME: ClassVar[int] = 3600
    _NAMED: ClassVar[frozenset[str]] = TokenClaims._NAMED | {
        "aud",
        "sub",
        "cnf",
        "mission_s256",
        "tenant",
    }

    aud: str
    sub: str
    cnf: Confirmation
    mission_s256: str | None = None
    tenant: str | None = None

    @classmethod
    def _specific(cls, p: Mapping[str, Any]) -> dict[str, Any]:
        for forbidden in ("scope", "account"):
            if forbidden in p:
                raise TokenError(f"a person token must not carry {forbidden!r} (-11 §7.1.2)")
        return {
            "aud": _audience(p),
            "sub": _string(p, "sub"),
            "cnf": Confirmation.from_claim(p.get("cnf")),
            "mission_s256": _opt_thumbprint(p, "mission_s256"),
            "tenant": _opt_string(p, "tenant"),
        }

    def _specific_payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {"aud": self.aud, "sub": self.sub, "cnf": self.cnf.to_claim()}
        _put(out, "mission_s256", self.mission_s256)
        _put(out, "tenant", self.tenant)
        return out

    @property
    def confirmation(self) -> Confirmation:
        return self.cnf

    @property
    def audience(self) -> str:
        return self.aud


@frozen(kw_only=True)
class ResourceInteraction:
    """The resource token's ``interaction`` member: the resource's own user flow first."""

    url: str
    code: str


@frozen(kw_only=True)
class ResourceTokenClaims(TokenClaims):
    """``aa-resource+jwt``: the resource's signed request for authorization (§2.5)."""

    TYPE: ClassVar[TokenType] = TokenType.RESOURCE
    DWKS: ClassVar[frozenset[str]] = frozenset({DWK_RESOURCE})
    ISSUE_LIFETIME: ClassVar[int] = 300
    _NAMED: ClassVar[frozenset[str]] = TokenClaims._NAMED | {
        "aud",
        "ps",
        "sub",
        "presented_jti",
        "agent_jkt",
        "scope",
        "account",
        "login_hint",
        "mission_s256",
        "tenant",
        "interaction",
    }

    aud: str
    ps: str
    sub: str
    presented_jti: str
    agent_jkt: str
    scope: str | None = None
    account: str | None = None
    login_hint: str | None = None
    mission_s256: str | None = None
    tenant: str | None = None
    interaction: ResourceInteraction | None = None

    @classmethod
    def _specific(cls, p: Mapping[str, Any]) -> dict[str, Any]:
        if "cnf" in p:
            raise TokenError("a resource token binds with agent_jkt, never cnf")
        jkt = _thumbprint(p, "agent_jkt")
        interaction = p.get("interaction")
        parsed_interaction = None
        if interaction is not None:
            if not isinstance(interaction, Mapping):
                raise TokenError("interaction is not an object")
            parsed_interaction = ResourceInteraction(
                url=_https_url(interaction, "url"), code=_string(interaction, "code")
            )
        return {
            "aud": _audience(p),
            "ps": _server_id(p, "ps"),
            "sub": _string(p, "sub"),
            "presented_jti": _string(p, "presented_jti"),
            "agent_jkt": jkt,
            "scope": _opt_string(p, "scope"),
            "account": _opt_string(p, "account"),
            "login_hint": _opt_string(p, "login_hint"),
            "mission_s256": _opt_thumbprint(p, "mission_s256"),
            "tenant": _opt_string(p, "tenant"),
            "interaction": parsed_interaction,
        }

    def _specific_payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "aud": self.aud,
            "ps": self.ps,
            "sub": self.sub,
            "presented_jti": self.presented_jti,
            "agent_jkt": self.agent_jkt,
        }
        for name in ("scope", "account", "login_hint", "mission_s256", "tenant"):
            _put(out, name, getattr(self, name))
        if self.interaction is not None:
            out["interaction"] = {"url": self.interaction.url, "code": self.interaction.code}
        return out

    @property
    def audience(self) -> str:
        return self.aud

    @property
    def scopes(self) -> frozenset[str]:
        return frozenset((self.scope or "").split())


@frozen(kw_only=True)
class AuthTokenClaims(TokenClaims):
    """``aa-auth+jwt``: issued by a PS (three-party) or an AS (four-party) (§2.6)."""

    TYPE: ClassVar[TokenType] = TokenType.AUTH
    DWKS: ClassVar[frozenset[str]] = frozenset({DWK_PERSON, DWK_ACCESS})
    MAX_LIFETIME: ClassVar[int | None] = 3600
    ISSUE_LIFETIME: ClassVar[int] = 3600
    _NAMED: ClassVar[frozenset[str]] = TokenClaims._NAMED | {
        "aud",
        "ps",
        "sub",
        "cnf",
        "scope",
        "account",
        "mission_s256",
        "tenant",
    }

    aud: str
    ps: str
    sub: str
    cnf: Confirmation
    scope: str | None = None
    account: str | None = None
    mission_s256: str | None = None
    tenant: str | None = None

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if self.dwk == DWK_PERSON and self.ps != self.iss:
            raise ValueError("a PS-issued auth token has ps equal to iss")

    @classmethod
    def _specific(cls, p: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "aud": _audience(p),
            "ps": _server_id(p, "ps"),
            "sub": _string(p, "sub"),
            "cnf": Confirmation.from_claim(p.get("cnf")),
            "scope": _opt_string(p, "scope"),
            "account": _opt_string(p, "account"),
            "mission_s256": _opt_thumbprint(p, "mission_s256"),
            "tenant": _opt_string(p, "tenant"),
        }

    def _specific_payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "aud": self.aud,
            "ps": self.ps,
            "sub": self.sub,
            "cnf": self.cnf.to_claim(),
        }
        for name in ("scope", "account", "mission_s256", "tenant"):
            _put(out, name, getattr(self, name))
        return out

    @property
    def confirmation(self) -> Confirmation:
        return self.cnf

    @property
    def audience(self) -> str:
        return self.aud

    @property
    def scopes(self) -> frozenset[str]:
        return frozenset((self.scope or "").split())


CLAIMS_FOR: dict[TokenType, type[TokenClaims]] = {
    TokenType.AGENT: AgentTokenClaims,
    TokenType.PERSON: PersonTokenClaims,
    TokenType.RESOURCE: ResourceTokenClaims,
    TokenType.AUTH: AuthTokenClaims,
}


def _string(p: Mapping[str, Any], name: str) -> str:
    value = p.get(name)
    if not isinstance(value, str) or not value:
        raise TokenError(f"claim {name!r} is missing or not a non-empty string")
    if len(value) > _MAX_STRING:
        raise TokenError(f"claim {name!r} is too long")
    return value


def _opt_string(p: Mapping[str, Any], name: str) -> str | None:
    return _string(p, name) if name in p else None


def _numeric_date(p: Mapping[str, Any], name: str) -> int:
    value = p.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenError(f"claim {name!r} is missing or not a NumericDate")
    if value != value or not 0 <= value <= _MAX_NUMERIC_DATE:  # NaN or out of range
        raise TokenError(f"claim {name!r} is out of range")
    return int(value)


# Issuers and agents repeat across tokens; remember the ones that parsed (bounded, and
# only successes: a bad value is parsed, and refused, every time).
@functools.lru_cache(maxsize=1024)
def _parse_server_id(value: str) -> str:
    return str(ServerId.parse(value))


@functools.lru_cache(maxsize=4096)
def _parse_agent_id(value: str) -> AgentId:
    return AgentId.parse(value)


def _server_id(p: Mapping[str, Any], name: str) -> str:
    value = _string(p, name)
    try:
        return _parse_server_id(value)
    except InvalidIdentifier as exc:
        raise TokenError(f"claim {name!r} is not a server identifier: {exc.detail}") from exc


def _agent_id(p: Mapping[str, Any], name: str) -> AgentId:
    value = _string(p, name)
    try:
        return _parse_agent_id(value)
    except InvalidIdentifier as exc:
        raise TokenError(f"claim {name!r} is not an agent identifier: {exc.detail}") from exc


def _https_url(p: Mapping[str, Any], name: str) -> str:
    return endpoint_url(_string(p, name), what=f"claim {name!r}", error=TokenError)


def _audience(p: Mapping[str, Any]) -> str:
    """``aud`` is one server identifier; a one-element array (as some peers send) is
    accepted."""
    value = p.get("aud")
    if isinstance(value, list):
        if len(value) != 1:
            raise TokenError("an AAuth token has exactly one audience")
        value = value[0]
    return _server_id({"aud": value}, "aud")


def _thumbprint(p: Mapping[str, Any], name: str) -> str:
    """An unpadded base64url SHA-256 value (RFC 7638 thumbprint, mission ``s256``)."""
    value = _string(p, name)
    if _S256.fullmatch(value) is None:
        raise TokenError(f"claim {name!r} is not an unpadded base64url SHA-256 value")
    return value


def _opt_thumbprint(p: Mapping[str, Any], name: str) -> str | None:
    return _thumbprint(p, name) if name in p else None


def _put(out: dict[str, Any], name: str, value: object) -> None:
    if value is not None:
        out[name] = value
