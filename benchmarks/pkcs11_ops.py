"""The PKCS#11 rows of ``make bench``: SoftHSM2 keys signing through our backend, against
python-pkcs11's own ``sign`` on the same key in the same run, and thread scaling.

A private SoftHSM2 token is created in a temporary directory (its own ``SOFTHSM2_CONF``);
nothing global is touched. Without SoftHSM2 these rows are left out with one line saying
why.
"""

from __future__ import annotations

import atexit
import hashlib
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aauth_backends.softhsm import SOFTHSM_MODULE, PrivateSoftHsm, softhsm_missing
from aauth_core.algorithms import Alg
from aauth_core.http import HttpRequest
from aauth_core.requests import sign_aauth_request
from benchmarks.harness import Operation

PIN = "1234"
ALGS = (Alg.ED25519, Alg.ES256, Alg.PS256)


def unavailable() -> str | None:
    missing = softhsm_missing()
    if missing is not None:
        return f"{missing} (make bench installs it when run as root)"
    try:
        import pkcs11  # noqa: F401
    except ImportError:
        return "python-pkcs11 is not installed"
    return None


def private_token(label: str = "bench") -> Path:
    """A fresh SoftHSM2 token in a temporary directory; sets ``SOFTHSM2_CONF``."""
    root = Path(tempfile.mkdtemp(prefix="aauth-bench-softhsm-"))
    atexit.register(shutil.rmtree, root, True)  # the token dies with the run
    PrivateSoftHsm(root).init_token(label, pin=PIN, so_pin="5678")
    return root


def _raw_signer(details: Any, loaded_path: str) -> Callable[[bytes], bytes]:
    """python-pkcs11 signing with the same key, its own session, no aauth code between."""
    import pkcs11
    from pkcs11 import ObjectClass

    lib = pkcs11.lib(loaded_path)  # python-pkcs11 keeps one lib per path: the store's own
    token = lib.get_token(token_label=details.token_label)
    session = token.open()  # the store's login holder covers this session
    key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, id=details.cka_id)
    return _raw_sign_with(key, details.alg)


def _raw_per_thread(details: Any, loaded_path: str) -> Callable[[bytes], bytes]:
    """Raw python-pkcs11 signing where every thread has a session of its own (what two
    threads need to sign at once: a python-pkcs11 session serialises its callers)."""
    local = threading.local()

    def sign(data: bytes) -> bytes:
        signer = getattr(local, "sign", None)
        if signer is None:
            signer = local.sign = _raw_signer(details, loaded_path)
        return signer(data)

    return sign


def _raw_sign_with(key: Any, alg: Alg) -> Callable[[bytes], bytes]:
    from pkcs11 import MGF, Mechanism

    if alg is Alg.ED25519:
        return lambda data: key.sign(data, mechanism=Mechanism.EDDSA)
    if alg is Alg.ES256:
        return lambda data: key.sign(hashlib.sha256(data).digest(), mechanism=Mechanism.ECDSA)
    params = (Mechanism.SHA256, MGF.SHA256, 32)
    return lambda data: key.sign(
        data, mechanism=Mechanism.SHA256_RSA_PKCS_PSS, mechanism_param=params
    )


def build(
    request: HttpRequest, token: str, now: int, software: dict[Alg, Any], sodium: Any
) -> tuple[list[Operation], Any]:
    """The PKCS#11 operations, and the store to close afterwards."""
    from aauth_backends.pkcs11 import P11KIT_PROXY, Pkcs11Config, Pkcs11KeyStore

    private_token()
    store = Pkcs11KeyStore(Pkcs11Config(module_path=SOFTHSM_MODULE, token_label="bench", pin=PIN))
    loaded_path = P11KIT_PROXY if store.loading == "proxy" else SOFTHSM_MODULE
    ops: list[Operation] = []
    base = b"x" * 290  # the size of the RFC 9421 B.2.6 signature base
    for alg in ALGS:
        signer = store.get_signer(store.generate(alg, f"bench-{alg.value}"))
        raw = _raw_signer(signer.details, loaded_path)
        raw_name = f"raw python-pkcs11 sign, {alg.value} (SoftHSM2)"
        one = f"PKCS#11 signer, {alg.value}, 1 thread"
        ops += [
            Operation(raw_name, lambda raw=raw: raw(base), group="pkcs11"),
            Operation(
                f"AAuth request sign (PKCS#11 {alg.value})",
                lambda s=signer: sign_aauth_request(request, s, token=token, created=now),
                baseline=raw_name,
                group="pkcs11",
            ),
            Operation(one, lambda s=signer: s.sign(base), baseline=raw_name, group="threads"),
            Operation(
                f"PKCS#11 signer, {alg.value}, 2 threads",
                lambda s=signer: s.sign(base),
                baseline=one,
                threads=2,
                group="threads",
            ),
        ]
        if alg is Alg.ES256:
            # The same key signed by raw python-pkcs11 on 2 threads (a session each): what
            # SoftHSM2 itself gives two threads at this moment, against which our pool and
            # locking are measured.
            raw2 = f"raw python-pkcs11 sign, {alg.value} (SoftHSM2), 2 threads"
            per_thread = _raw_per_thread(signer.details, loaded_path)
            ops += [
                Operation(raw2, lambda r=per_thread: r(base), threads=2, group="threads"),
                Operation(
                    f"PKCS#11 signer, {alg.value}, 2 threads, against raw on 2 threads",
                    lambda s=signer: s.sign(base),
                    baseline=raw2,
                    threads=2,
                    group="threads",
                ),
            ]
    for alg, signer in software.items():
        one = f"cryptography signer, {alg.value}, 1 thread"
        ops += [
            Operation(one, lambda s=signer: s.sign(base), group="threads"),
            Operation(
                f"cryptography signer, {alg.value}, 2 threads",
                lambda s=signer: s.sign(base),
                baseline=one,
                threads=2,
                group="threads",
            ),
        ]
    one = "PyNaCl signer, Ed25519, 1 thread"
    ops += [
        Operation(one, lambda: sodium.sign(base), group="threads"),
        Operation(
            "PyNaCl signer, Ed25519, 2 threads",
            lambda: sodium.sign(base),
            baseline=one,
            threads=2,
            group="threads",
        ),
    ]
    return ops, store
