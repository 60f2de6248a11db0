"""Threads and forks on real SoftHSM2 tokens: several threads signing through one store,
thousands of signatures, every one valid, for both thread-safe loadings; a forked child
re-initialises the module (``library.reset_on_fork = true`` makes the parent's handles
fail in the child) and signs."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from softhsm import SOFTHSM_MODULE, SoftHsm, Token, fresh_label

from aauth_backends.testing import independent_verifier
from aauth_core.algorithms import Alg

THREADS = 4
PER_THREAD = 600


@pytest.fixture(scope="module")
def hsm() -> SoftHsm:
    return SoftHsm.shared()


@pytest.fixture(scope="module")
def token(hsm: SoftHsm) -> Token:
    return hsm.token("threads")


@pytest.fixture(params=["proxy", "direct-locked"])
def store(request: pytest.FixtureRequest, token: Token) -> Iterator[Any]:
    from aauth_backends.pkcs11 import Pkcs11Config, Pkcs11KeyStore

    config = Pkcs11Config(
        module_path=SOFTHSM_MODULE,
        token_label=token.label,
        pin=token.pin,
        loading=request.param,
        pool_size=THREADS,
    )
    with Pkcs11KeyStore(config) as opened:
        assert opened.loading == request.param
        yield opened


def test_threads_sign_concurrently_and_every_signature_verifies(store: Any) -> None:
    signers = [
        store.get_signer(store.generate(Alg.ES256, fresh_label())),
        store.get_signer(store.generate(Alg.ED25519, fresh_label())),
    ]
    results: list[list[tuple[int, bytes, bytes]]] = [[] for _ in range(THREADS)]
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def work(index: int) -> None:
        try:
            start.wait()
            for n in range(PER_THREAD):
                which = (index + n) % 2
                message = f"thread {index} message {n}".encode()
                results[index].append((which, message, signers[which].sign(message)))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    verifiers = [independent_verifier(s.public_jwk()) for s in signers]
    signed = [item for chunk in results for item in chunk]
    assert len(signed) == THREADS * PER_THREAD
    assert all(verifiers[which](message, sig) for which, message, sig in signed)


def test_a_forked_child_reinitialises_and_signs(store: Any) -> None:
    from aauth_backends.pkcs11 import _lib

    signer = store.get_signer(store.generate(Alg.ES256, fresh_label()))
    verify = independent_verifier(signer.public_jwk())
    assert verify(b"parent", signer.sign(b"parent"))
    with store.pool.session() as pooled:
        parent_key = next(iter(pooled.keys.values()))
    generation = store.pool.module.generation
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        status = 10
        try:
            try:
                _lib.sign(parent_key, b"\x00" * 32, _lib.MECH["ECDSA"])
                status = 3  # the parent's handles still work: the test proves nothing
            except _lib.P11Failure:
                status = 4
                signature = signer.sign(b"child")
                status = 5
                if verify(b"child", signature) and store.pool.module.generation == generation + 1:
                    status = 0
        finally:
            os._exit(status)
    _, wait_status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(wait_status) == 0
    # The parent is untouched by the child's re-initialisation.
    assert verify(b"parent again", signer.sign(b"parent again"))
