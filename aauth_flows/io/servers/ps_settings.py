"""The reference Person Server's own settings (the ``[ps]`` section of a server config).

People log in to the demo PS with an id and a password; only a scrypt hash is kept
(:func:`~aauth_flows.io.passwords.hash_password`, re-exported here). The
directed-``sub`` secret comes from the config (inline or from a file) and never reaches
``repr`` or a log line.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from attrs import field, frozen

from aauth_core.errors import AAuthError
from aauth_core.identifiers import ServerId
from aauth_flows.io.forms import read_people
from aauth_flows.io.passwords import hash_password, verify_password

__all__ = [
    "PersonServerSettings",
    "hash_password",
    "verify_password",
    "CONSENT_MODES",
]

#: ``interaction``: the person opens the PS page with the code the agent relays;
#: ``approval``: the PS treats its people as reachable and shows the prompt on their
#: ``/approvals`` page once they log in (§5.4 ``requirement=approval``).
CONSENT_MODES = ("interaction", "approval")

_MIN_SECRET = 32


def _people(value: Mapping[str, str]) -> Mapping[str, str]:
    checked = dict(value)
    for person, encoded in checked.items():
        if not person or len(person) > 64 or not person.isprintable():
            raise ValueError(f"person id {person[:64]!r} is not a short printable string")
        verify_password(encoded, "")  # ValueError for a hash it cannot read
    return checked


def _servers(values: Any) -> frozenset[str]:
    out = set()
    for value in values:
        try:
            canonical = str(ServerId.parse(value)) == value
        except AAuthError:
            canonical = False
        if not canonical:
            raise ValueError(f"{str(value)[:80]!r} is not a server identifier")
        out.add(value)
    return frozenset(out)


def _endpoints(value: Mapping[str, str]) -> Mapping[str, str]:
    checked = dict(value)
    for server, url in checked.items():
        _servers([server])
        if not isinstance(url, str) or not url.startswith("https://"):
            raise ValueError(f"the revocation endpoint of {server} must be an https URL")
    return checked


@frozen(kw_only=True)
class PersonServerSettings:
    """What the reference PS is configured with beyond its identity and key.

    ``people`` maps a person id to her password hash; ``access_servers`` are the ASes the
    PS may federate with (four-party); ``revocation_issuers`` the APs whose agent-token
    revocations it accepts; ``revocation_endpoints`` where it cascades revocations per
    resource. ``settle_payments`` answers an AS's 402 as paid (a demo knob: off, a 402
    fails the request)."""

    people: Mapping[str, str] = field(converter=_people, repr=False)
    sub_secret: bytes = field(repr=False)
    consent_mode: str = "interaction"
    scopes_supported: tuple[str, ...] = ()
    revocation_issuers: frozenset[str] = field(default=frozenset(), converter=_servers)
    revocation_endpoints: Mapping[str, str] = field(factory=dict, converter=_endpoints)
    access_servers: frozenset[str] = field(default=frozenset(), converter=_servers)
    settle_payments: bool = False
    token_exchange: bool = False
    pending_lifetime: int = 600
    max_body: int = 64 * 1024
    #: interaction codes a browser session may try (right or wrong) before it is refused
    code_attempts: int = 5
    session_lifetime: int = 8 * 3600

    def __attrs_post_init__(self) -> None:
        if len(self.sub_secret) < _MIN_SECRET:
            raise ValueError(f"sub_secret must be at least {_MIN_SECRET} bytes")
        if self.consent_mode not in CONSENT_MODES:
            raise ValueError(f"consent_mode must be one of {', '.join(CONSENT_MODES)}")
        if not 60 <= self.pending_lifetime <= 86400:
            raise ValueError("pending_lifetime must be between 60 and 86400 seconds")
        if not 1024 <= self.max_body <= 1024 * 1024:
            raise ValueError("max_body must be between 1 KiB and 1 MiB")
        if not 1 <= self.code_attempts <= 100:
            raise ValueError("code_attempts must be between 1 and 100")

    @classmethod
    def from_toml(cls, section: Mapping[str, Any]) -> PersonServerSettings:
        """Settings from the ``[ps]`` table. People are ``[[ps.people]]`` with ``id`` and
        ``password_hash`` (or ``password``, hashed on load: demos only); the secret is
        ``sub_secret`` or ``sub_secret_file``."""
        data = dict(section)
        known = {
            "people",
            "sub_secret",
            "sub_secret_file",
            "consent_mode",
            "scopes_supported",
            "revocation_issuers",
            "revocation_endpoints",
            "access_servers",
            "settle_payments",
            "token_exchange",
            "pending_lifetime",
            "max_body",
            "code_attempts",
            "session_lifetime",
        }
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown [ps] settings: {', '.join(unknown)}")
        secret = _secret(data.pop("sub_secret", None), data.pop("sub_secret_file", None))
        entries = data.pop("people", [])
        if not isinstance(entries, list) or not entries:
            raise ValueError("[ps] needs at least one [[ps.people]] entry")
        people = read_people(entries, what="ps")
        for name in ("scopes_supported", "revocation_issuers", "access_servers"):
            if name in data:
                value = data[name]
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise ValueError(f"{name} must be a list of strings")
                data[name] = tuple(value)
        for name in ("settle_payments", "token_exchange"):
            if name in data and not isinstance(data[name], bool):
                raise ValueError(f"{name} must be true or false")
        for name in ("pending_lifetime", "max_body", "code_attempts", "session_lifetime"):
            if name in data and (not isinstance(data[name], int) or isinstance(data[name], bool)):
                raise ValueError(f"{name} must be an integer")
        if "revocation_endpoints" in data and not isinstance(data["revocation_endpoints"], Mapping):
            raise ValueError("revocation_endpoints must be a table of server = URL")
        try:
            return cls(people=people, sub_secret=secret, **data)
        except (TypeError, ValueError) as err:
            raise ValueError(f"[ps]: {err}") from err


def _secret(inline: Any, path: Any) -> bytes:
    if (inline is None) == (path is None):
        raise ValueError("[ps] needs exactly one of sub_secret and sub_secret_file")
    if inline is not None:
        if not isinstance(inline, str):
            raise ValueError("sub_secret must be a string")
        return inline.encode()
    if not isinstance(path, str):
        raise ValueError("sub_secret_file must be a path")
    try:
        return Path(path).read_bytes().strip()
    except OSError as err:
        raise ValueError(f"cannot read sub_secret_file: {err.strerror}") from err
