"""Signing as an action: a machine asks for a signature instead of calling a signer.

Core's signing functions (:func:`~aauth_core.requests.sign_aauth_request`,
:func:`~aauth_core.tokens.mint.mint_token`, …) take a :class:`~aauth_core.signer.Signer`.
A machine holds only a :class:`SigningKey` (the key's reference and public JWK), so it
runs the function twice: :func:`signing_input` runs it with a signer that records the
bytes (the machine emits them in :class:`~aauth_flows.machines.actions.SignBytes`), and
:func:`complete` runs it again with the signature the driver produced. The functions are
deterministic, so both runs build the same bytes; :func:`complete` checks that, and checks
the signature with the public key before anything signed leaves the machine (a faulty
token or a driver that signed with the wrong key is caught here, not by the peer).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from attrs import frozen

from aauth_core.algorithms import Alg
from aauth_core.errors import LocalProtocolError
from aauth_core.jwk import PublicJwk
from aauth_core.signer import Signer
from aauth_core.verify import verifier_for

__all__ = ["SigningKey", "signing_input", "complete"]

T = TypeVar("T")


@frozen(kw_only=True)
class SigningKey:
    """A key a machine signs with: ``ref`` names it to the driver's key store,
    ``public_jwk`` is what peers see (its ``alg`` is the one algorithm it signs with)."""

    ref: str
    public_jwk: PublicJwk

    @property
    def key_id(self) -> str:
        return self.public_jwk.kid or self.public_jwk.thumbprint()

    @property
    def algorithm(self) -> Alg:
        return self.public_jwk.alg

    @property
    def thumbprint(self) -> str:
        return self.public_jwk.thumbprint()


class _Recorder:
    """A Signer that records what it is asked to sign and answers with zeros."""

    def __init__(self, key: SigningKey) -> None:
        self._key = key
        self.data: bytes | None = None

    @property
    def key_id(self) -> str:
        return self._key.key_id

    @property
    def algorithm(self) -> Alg:
        return self._key.algorithm

    def public_jwk(self) -> PublicJwk:
        return self._key.public_jwk

    def sign(self, data: bytes) -> bytes:
        if self.data is not None:
            raise LocalProtocolError("a signing step may sign only once")
        self.data = bytes(data)
        return bytes(64)


class _Replay(_Recorder):
    def __init__(self, key: SigningKey, expected: bytes, signature: bytes) -> None:
        super().__init__(key)
        self._expected = expected
        self._signature = signature

    def sign(self, data: bytes) -> bytes:
        if bytes(data) != self._expected:
            raise LocalProtocolError("the signing input changed between the two runs")
        return self._signature


def signing_input(key: SigningKey, produce: Callable[[Signer], object]) -> bytes:
    """The bytes ``produce`` signs with ``key`` (its result is discarded)."""
    recorder = _Recorder(key)
    produce(recorder)
    if recorder.data is None:
        raise LocalProtocolError("the signing step signed nothing")
    return recorder.data


def complete(key: SigningKey, produce: Callable[[Signer], T], data: bytes, signature: bytes) -> T:
    """Run ``produce`` again with ``signature`` over ``data``; check the signature first."""
    if not verifier_for(key.public_jwk)(data, signature):
        raise LocalProtocolError(
            f"the signature produced for key {key.key_id} does not verify with its public key"
        )
    return produce(_Replay(key, data, signature))
