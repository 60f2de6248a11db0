"""Key references on one token: the ``pkcs11:`` URIs the store hands out and accepts.

A reference names the key by CKA_ID and/or label (``id=``, ``object=``), the token by
label (and optionally serial and module), and, for RSA keys, the algorithm (``x-alg=``).
A bare key label is accepted too.
"""

from __future__ import annotations

import os

from aauth_backends.errors import InvalidKeyReference
from aauth_backends.interfaces import KeyRef
from aauth_backends.software import as_alg
from aauth_backends.uris import Pkcs11Uri, check_key_name, parse_key_ref
from aauth_core.algorithms import Alg

__all__ = ["make_ref", "parse_ref"]


def make_ref(token: str, cka_id: bytes | None, label: str | None, alg: Alg | None) -> str:
    """The ``pkcs11:`` URI of the private key ``cka_id`` / ``label`` on ``token``."""
    attributes: list[tuple[str, bytes]] = [("token", token.encode("utf-8"))]
    if cka_id:
        attributes.append(("id", cka_id))
    if label:
        attributes.append(("object", label.encode("utf-8")))
    attributes.append(("type", b"private"))
    if alg is not None and alg.kty == "RSA":
        attributes.append(("x-alg", alg.value.encode("ascii")))
    return Pkcs11Uri(attributes=tuple(attributes)).to_uri()


def parse_ref(
    ref: KeyRef, *, token_label: str, token_serial: str, token_name: str, module_path: str
) -> tuple[bytes | None, str | None, Alg | None]:
    """(CKA_ID, label, algorithm) from a ``pkcs11:`` URI or a bare key label.

    A URI that names another token, serial or module than the store's is refused with
    :class:`InvalidKeyReference`, as is one without ``id=`` or ``object=``.
    """
    if not isinstance(ref, str):
        raise InvalidKeyReference("a key reference must be a string", ref=ref)
    if not ref.lower().startswith("pkcs11:"):
        return None, check_key_name(ref), None
    uri = parse_key_ref(ref)
    if not isinstance(uri, Pkcs11Uri):  # a pkcs11: reference parses to a Pkcs11Uri
        raise InvalidKeyReference("not a pkcs11: key reference", ref=ref)
    if uri.token is not None and uri.token != token_label:
        raise InvalidKeyReference(f"the reference names another token than {token_name}", ref=ref)
    serial = uri.get("serial")
    if serial is not None and serial.decode("utf-8") != token_serial:
        raise InvalidKeyReference("the reference names another token serial", ref=ref)
    if uri.type not in (None, "private"):
        raise InvalidKeyReference("a signing key reference has type=private", ref=ref)
    if uri.module_path is not None and os.path.realpath(uri.module_path) != os.path.realpath(
        module_path
    ):
        raise InvalidKeyReference("the reference names another PKCS#11 module", ref=ref)
    raw_alg = uri.get("x-alg")
    alg = None if raw_alg is None else as_alg(raw_alg.decode("utf-8"), ref=ref)
    if uri.id is None and uri.object is None:
        raise InvalidKeyReference("a key reference needs id= or object=", ref=ref)
    return uri.id, uri.object, alg
