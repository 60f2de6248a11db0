"""The Access Server: its ``auth_token_endpoint`` (only a PS calls it) and its
``revocation_endpoint`` (protocol -11 §5.5, §5.8, §6.5, §7.6).

:class:`AuthTokenExchange` is one request to the token endpoint and, when the answer is
deferred, its pending record (the driver stores the snapshot under the pending URL)::

    NEW --TokenRequestReceived--> REJECTED (400/401/403: bad request, signature, tokens)
                                | MINTING  (policy grants: the token is signed)
                                | PENDING  (202 claims/interaction/approval/clarification,
                                            402 payment; Location = pending URL)
                                | REFUSED  (403 by policy)
    PENDING --PendingRequestReceived--> PENDING (202 again, 401/404/400 to bad polls;
                                                 claims, clarification_response or
                                                 updated_request POSTed: decided again)
                                      | MINTING | REFUSED (403, 408 expired, 403 revoked)
                                      | GONE (DELETE)
    MINTING --SignatureProduced--> ISSUED (200 + RecordIssued)
    ISSUED / REFUSED --PendingRequestReceived--> GONE (410 to the PS), same (404 others)

An ``updated_request`` answering a clarification (§5.9) replaces the resource and
presented tokens after :func:`verify_updated_request`; the policy then decides again.

:class:`RevocationRequest` (in :mod:`aauth_flows.machines.as_revocation`, re-exported
here) is one request to the revocation endpoint, with the cascade of a PS revoking a
person token to the auth tokens the AS issued against it, revoked at their resources.

Bad requests are answered (``Respond``), never raised. Every request is checked as a
server signature (``jwks_uri`` scheme, see :mod:`aauth_flows.machines.as_wire`).

The machine's helpers live in small modules, re-exported here: the request checks in
:mod:`~aauth_flows.machines.as_checks`, the pending record (:class:`ExchangeData`) and
its answers in :mod:`~aauth_flows.machines.as_pending`, the minted token in
:mod:`~aauth_flows.machines.as_minting`.
"""

from __future__ import annotations

import enum

from attrs import evolve, field, frozen

from aauth_core.b64 import b64url_encode
from aauth_core.errors import AAuthError, LocalProtocolError, MalformedInput
from aauth_core.http import HttpRequest
from aauth_core.server_requests import verify_server_request
from aauth_core.tokens.claims import DWK_PERSON
from aauth_core.tokens.mint import mint_token
from aauth_flows.machines.actions import Respond, SignatureProduced, SignBytes
from aauth_flows.machines.as_checks import (
    KEPT_CLAIMS,
    GrantContext,
    verify_token_request,
    verify_updated_request,
)
from aauth_flows.machines.as_minting import auth_token_claims, issued_actions
from aauth_flows.machines.as_pending import (
    ExchangeData,
    accept_post,
    already_answered,
    not_found,
    pending_answer,
    policy_request,
    poll_refusal,
)
from aauth_flows.machines.as_policy import AccessServerConfig, Decision, Deny, Grant
from aauth_flows.machines.as_revocation import (
    DownstreamUnavailable,
    RevocationData,
    RevocationReceived,
    RevocationRequest,
    RevocationState,
)
from aauth_flows.machines.as_wire import json_response, problem_response, step
from aauth_flows.machines.engine import (
    ConfiguredMachine,
    Event,
    Step,
    handles,
    require,
    table,
)
from aauth_flows.machines.signing import complete, signing_input

__all__ = [
    "ExchangeState",
    "GrantContext",
    "ExchangeData",
    "TokenRequestReceived",
    "PendingRequestReceived",
    "AuthTokenExchange",
    "verify_token_request",
    "verify_updated_request",
    "KEPT_CLAIMS",
    "RevocationState",
    "RevocationData",
    "RevocationReceived",
    "DownstreamUnavailable",
    "RevocationRequest",
    "MIN_NONCE",
]

#: Random bytes a request event must carry (pending URL ids and token ``jti``s).
MIN_NONCE = 16


def _nonce(value: bytes) -> bytes:
    if len(value) < MIN_NONCE:
        raise LocalProtocolError(f"request events carry at least {MIN_NONCE} random bytes")
    return value


class ExchangeState(enum.Enum):
    NEW = "new"
    PENDING = "pending"
    MINTING = "minting"
    ISSUED = "issued"
    REFUSED = "refused"
    REJECTED = "rejected"
    GONE = "gone"
    ERROR = "error"


@frozen(kw_only=True)
class TokenRequestReceived(Event):
    """A request to the ``auth_token_endpoint``; ``nonce``: fresh random bytes (≥ 16)."""

    request: HttpRequest
    at: int
    nonce: bytes = field(repr=False)


@frozen(kw_only=True)
class PendingRequestReceived(Event):
    """A request to this exchange's pending URL (GET poll, POST claims/answer, DELETE)."""

    request: HttpRequest
    at: int
    nonce: bytes = field(repr=False)


X = ExchangeState


class AuthTokenExchange(ConfiguredMachine[ExchangeState, ExchangeData, AccessServerConfig]):
    """One PS request at the AS's ``auth_token_endpoint``, and its pending record."""

    State = ExchangeState
    INITIAL = ExchangeState.NEW
    DATA = ExchangeData
    TRANSITIONS = table(
        [
            (X.NEW, TokenRequestReceived, {X.REJECTED, X.REFUSED, X.PENDING, X.MINTING}),
            (X.PENDING, PendingRequestReceived, {X.PENDING, X.MINTING, X.REFUSED, X.GONE}),
            (X.MINTING, SignatureProduced, {X.ISSUED}),
            (X.ISSUED, PendingRequestReceived, {X.ISSUED, X.GONE}),
            (X.REFUSED, PendingRequestReceived, {X.REFUSED, X.GONE}),
            (X.GONE, PendingRequestReceived, {X.GONE}),
        ]
    )

    # -- the first request -------------------------------------------------------------

    @handles(TokenRequestReceived)
    def _received(
        self, state: ExchangeState, data: ExchangeData, event: TokenRequestReceived
    ) -> Step[ExchangeState, ExchangeData]:
        nonce = _nonce(event.nonce)
        try:
            context = verify_token_request(self._config, event.request, event.at)
        except AAuthError as exc:
            return step(X.REJECTED, data, [Respond(response=problem_response(exc))])
        data = evolve(data, context=context)
        return self._decide(data, event.at, nonce, pending_id=nonce)

    # -- polls, claims, answers, cancellation -------------------------------------------------

    @handles(PendingRequestReceived)
    def _pending(
        self, state: ExchangeState, data: ExchangeData, event: PendingRequestReceived
    ) -> Step[ExchangeState, ExchangeData]:
        nonce = _nonce(event.nonce)
        request, at = event.request, event.at
        context = data.context
        if context is None or data.pending_url is None or request.url != data.pending_url:
            return step(state, data, [Respond(response=problem_response(not_found()))])
        try:
            signed = verify_server_request(
                request,
                keys=self._config.keys,
                dwks=(DWK_PERSON,),
                now=at,
                window=self._config.window,
            )
        except AAuthError as exc:
            return step(state, data, [Respond(response=problem_response(exc))])
        if signed.issuer != context.ps:  # only the PS that asked may poll
            return step(state, data, [Respond(response=problem_response(not_found()))])
        if state is not X.PENDING:
            return step(X.GONE, data, [Respond(response=problem_response(already_answered()))])
        if request.method == "DELETE":
            return step(X.GONE, data, [Respond(response=json_response(204))])
        if request.method == "POST":
            try:
                data = accept_post(self._config, data, request, at)
            except AAuthError as exc:
                return step(state, data, [Respond(response=problem_response(exc))])
        elif request.method != "GET":
            error = MalformedInput("a pending URL takes GET, POST or DELETE")
            return step(state, data, [Respond(response=problem_response(error))])
        # Checked against the request as it was pending (before an updated_request).
        refusal = poll_refusal(self._config, context, at)
        if refusal is not None:
            return step(X.REFUSED, data, [Respond(response=problem_response(refusal))])
        return self._decide(data, at, nonce, pending_id=None)

    # -- deciding and answering ----------------------------------------------------------------

    def _decide(
        self, data: ExchangeData, at: int, nonce: bytes, *, pending_id: bytes | None
    ) -> Step[ExchangeState, ExchangeData]:
        context = require(data.context, "the verified request")
        pending_url = data.pending_url
        if pending_url is None and pending_id is not None:
            pending_url = f"{self._config.pending_base}/{b64url_encode(pending_id)}"
        decision: Decision = self._config.policy.decide(
            policy_request(context, data, pending_url, at)
        )
        if isinstance(decision, Grant):
            return self._mint(data, decision, at, nonce)
        if isinstance(decision, Deny):
            denied = AAuthError(decision.detail, code="denied", status=403)
            return step(X.REFUSED, data, [Respond(response=problem_response(denied))])
        # a new request comes with pending_id, a polled one has its pending_url
        pending_url = require(pending_url, "the pending URL")
        data, response = pending_answer(data, decision, pending_url, self._config.retry_after)
        return step(X.PENDING, data, [Respond(response=response)])

    def _mint(
        self, data: ExchangeData, grant: Grant, at: int, nonce: bytes
    ) -> Step[ExchangeState, ExchangeData]:
        context = require(data.context, "the verified request")
        claims = auth_token_claims(self._config, context, grant, at, nonce)
        to_sign = signing_input(self._config.signing_key, lambda s: mint_token(claims, s))
        key = self._config.signing_key
        return step(
            X.MINTING,
            evolve(data, minting=claims, to_sign=to_sign),
            [SignBytes(key=key.ref, data=to_sign)],
        )

    @handles(SignatureProduced)
    def _signed(
        self, state: ExchangeState, data: ExchangeData, event: SignatureProduced
    ) -> Step[ExchangeState, ExchangeData]:
        claims = require(data.minting, "the claims being minted")
        context = require(data.context, "the verified request")
        token = complete(
            self._config.signing_key, lambda s: mint_token(claims, s), data.to_sign, event.signature
        )
        actions = issued_actions(claims, context, token)
        return step(X.ISSUED, evolve(data, minting=None, to_sign=b""), actions)
