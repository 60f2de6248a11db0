"""Agent identifiers (``aauth:local@domain``) and server identifiers (-11 §1.2, §1.3).

Both are compared by exact string equality and never case-folded, so parsing accepts only
the one canonical spelling: a server identifier is ``https://`` plus a lowercase host; an
agent identifier's domain is such a host, its local part is case-sensitive.
"""

from __future__ import annotations

import re

from attrs import field, frozen

from aauth_core.errors import InvalidIdentifier, MalformedInput

__all__ = [
    "AgentId",
    "ServerId",
    "is_server_host",
    "MAX_HOST_LENGTH",
    "MAX_LOCAL_LENGTH",
]

#: RFC 1035 limit for a host name in its textual form.
MAX_HOST_LENGTH = 253
#: -11 §1.2: the local part is at most 255 characters.
MAX_LOCAL_LENGTH = 255

_SCHEME = "aauth:"
_HTTPS = "https://"
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_DIGITS = re.compile(r"[0-9]+")
_LOCAL = re.compile(r"[A-Za-z0-9._+-]{1,255}")
_DWK = re.compile(r"[A-Za-z0-9._-]{1,64}")
_MAX_AGENT_ID = len(_SCHEME) + MAX_LOCAL_LENGTH + 1 + MAX_HOST_LENGTH


def _is_a_label(label: str) -> bool:
    """An ``xn--`` label must decode as Punycode to a label with non-ASCII characters."""
    try:
        decoded = label[4:].encode("ascii").decode("punycode")
    except (UnicodeError, ValueError, IndexError, OverflowError):
        return False
    return bool(decoded) and not decoded.isascii()


def is_server_host(text: str) -> bool:
    """True for a lowercase LDH host name (A-labels allowed) as a server identifier needs.

    Rejects ports, paths, upper case, empty labels, leading or trailing hyphens, labels over
    63 characters, hosts over 253 characters, non-ASCII (IDNs must be A-labels), and IP
    address literals (a final label of digits only).
    """
    if not isinstance(text, str) or not text or len(text) > MAX_HOST_LENGTH:
        return False
    labels = text.split(".")
    for label in labels:
        if _LABEL.fullmatch(label) is None:
            return False
        if label.startswith("xn--") and not _is_a_label(label):
            return False
    return _DIGITS.fullmatch(labels[-1]) is None


def _check_local(local: object) -> str:
    if not isinstance(local, str) or _LOCAL.fullmatch(local) is None:
        raise InvalidIdentifier(
            "agent identifier local part must be 1-255 characters of A-Z a-z 0-9 - _ + ."
        )
    if "+" in local:
        parent, _, discriminator = local.partition("+")
        if not parent or not discriminator or "+" in discriminator:
            raise InvalidIdentifier(
                "'+' in an agent identifier may only separate a parent from a non-empty"
                " sub-agent discriminator"
            )
    return local


def _check_domain(domain: object) -> str:
    if not isinstance(domain, str) or not is_server_host(domain):
        raise InvalidIdentifier(
            "agent identifier domain must be a lowercase host name (A-labels, no scheme,"
            " port or path)"
        )
    return domain


def _validate_local(_instance: object, _attribute: object, value: str) -> None:
    _check_local(value)


def _validate_domain(_instance: object, _attribute: object, value: str) -> None:
    _check_domain(value)


@frozen(kw_only=True)
class AgentId:
    """An agent identifier ``aauth:local@domain``; a sub-agent's local is ``parent+disc``.

    Never parse ``local`` for authorization decisions: the ``parent_agent`` claim of a
    sub-agent's token is authoritative (-11 §1.2); :attr:`parent` is a convenience.
    """

    local: str = field(validator=_validate_local)
    domain: str = field(validator=_validate_domain)

    @classmethod
    def parse(cls, text: object) -> AgentId:
        """Parse the wire form; raise :class:`InvalidIdentifier` (``invalid_request``, 400)."""
        if not isinstance(text, str):
            raise InvalidIdentifier("agent identifier must be a string")
        if len(text) > _MAX_AGENT_ID:
            raise InvalidIdentifier("agent identifier is too long")
        if not text.startswith(_SCHEME):
            raise InvalidIdentifier("agent identifier must start with 'aauth:'")
        parts = text[len(_SCHEME) :].split("@")
        if len(parts) != 2:
            raise InvalidIdentifier("agent identifier must contain exactly one '@'")
        return cls(local=_check_local(parts[0]), domain=_check_domain(parts[1]))

    def __str__(self) -> str:
        return f"{_SCHEME}{self.local}@{self.domain}"

    @property
    def name(self) -> str:
        """The local part before any ``+`` (the parent's local for a sub-agent)."""
        return self.local.partition("+")[0]

    @property
    def discriminator(self) -> str | None:
        """The sub-agent discriminator after ``+``, or ``None`` for a top-level agent."""
        _, plus, discriminator = self.local.partition("+")
        return discriminator if plus else None

    @property
    def is_subagent(self) -> bool:
        return "+" in self.local

    @property
    def parent(self) -> AgentId | None:
        """The identifier this sub-agent's local part names as its parent, else ``None``."""
        if not self.is_subagent:
            return None
        return AgentId(local=self.name, domain=self.domain)

    def is_subagent_of(self, parent: AgentId) -> bool:
        """True if this is a sub-agent whose local is exactly ``<parent local>+<disc>``."""
        return self.is_subagent and not parent.is_subagent and self.parent == parent

    def subagent(self, discriminator: str) -> AgentId:
        """The sub-agent identifier ``<local>+<discriminator>@<domain>`` (single level)."""
        if self.is_subagent:
            raise InvalidIdentifier("sub-agents are a single level: a sub-agent has no sub-agents")
        return AgentId(local=f"{self.local}+{discriminator}", domain=self.domain)


def _validate_host(_instance: object, _attribute: object, value: str) -> None:
    if not isinstance(value, str) or not is_server_host(value):
        raise InvalidIdentifier(
            "server identifier host must be a lowercase host name (A-labels, no port,"
            " path, query, fragment or userinfo)"
        )


@frozen(kw_only=True)
class ServerId:
    """A server identifier: ``https://`` + lowercase host, nothing else (-11 §1.3)."""

    host: str = field(validator=_validate_host)

    @classmethod
    def parse(cls, text: object) -> ServerId:
        """Parse the wire form; raise :class:`InvalidIdentifier` (``invalid_request``, 400)."""
        if not isinstance(text, str):
            raise InvalidIdentifier("server identifier must be a string")
        if len(text) > len(_HTTPS) + MAX_HOST_LENGTH:
            raise InvalidIdentifier("server identifier is too long")
        if not text.startswith(_HTTPS):
            raise InvalidIdentifier("server identifier must use the lowercase 'https://' scheme")
        return cls(host=text[len(_HTTPS) :])

    def __str__(self) -> str:
        return f"{_HTTPS}{self.host}"

    def well_known_url(self, dwk: str) -> str:
        """``{id}/.well-known/{dwk}``; ``dwk`` must be a single safe path segment."""
        if not isinstance(dwk, str) or _DWK.fullmatch(dwk) is None or dwk in {".", ".."}:
            raise MalformedInput("dwk must be a single path segment of A-Z a-z 0-9 . _ -")
        return f"{self}/.well-known/{dwk}"
