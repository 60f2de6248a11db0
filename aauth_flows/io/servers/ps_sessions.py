"""Browser sessions of the people logged in at the reference PS: the PS's cookie names
over the shared :mod:`aauth_flows.io.forms` sessions (the sample resource uses the same
code under its own cookie names).
"""

from __future__ import annotations

from aauth_flows.io.forms import MemorySessionStore, Session

__all__ = ["Session", "MemorySessionStore", "COOKIE", "LOGIN_COOKIE"]

#: ``__Host-``: Secure, Path=/, no Domain: the cookie cannot be set by a sibling host.
COOKIE = "__Host-aauth-ps"
#: the login form's pre-session CSRF value (double-submit: cookie and form field agree)
LOGIN_COOKIE = "__Host-aauth-ps-login"
