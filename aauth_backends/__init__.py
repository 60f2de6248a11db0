"""aauth_backends: everything that holds a private key, behind one narrow ``Signer`` protocol."""

from __future__ import annotations
