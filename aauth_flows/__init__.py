"""aauth_flows: sans-I/O flow machines, and at their edge the I/O (the ``aauth`` command)."""

from __future__ import annotations
