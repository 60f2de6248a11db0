"""The PS ``auth_token_endpoint`` (protocol -11 §5.4, §6.4, §6.5, §7.4, §7.5).

Three-party (the resource token's ``aud`` is this PS): verify, consent through the
pending record, mint (``iss`` = ``ps`` = PS, ``dwk`` = ``aauth-person.json``, ``aud`` =
resource token ``iss``, ``cnf`` = agent key, ``scope`` ⊆ resource token scope,
``exp`` ≤ min(1 h, agent token, presented token, upstream token, mission)).

Four-party (``aud`` is an AS and ``ps`` is this PS): answer ``202`` and hand the request
to the federation client with :class:`~aauth_flows.machines.federation_api.Federate`;
its progress (AS requirements) and outcome (token, relayed AS error, ``as_unreachable``)
come back as events and reach the agent through this record.

RFC 8693 binding (``config.token_exchange``, off by default): the same endpoint takes a
signed ``application/x-www-form-urlencoded`` token-exchange request (``subject_token`` =
resource token, ``actor_token`` = presented token, both of type
``urn:ietf:params:oauth:token-type:jwt``), checked by the same code path, answered with
``access_token`` / ``issued_token_type`` / ``token_type=N_A`` and RFC 6749 errors. With the
option off a form request is ``invalid_request`` 400 (a JSON problem).
"""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from attrs import evolve

from aauth_core.b64 import b64url_encode
from aauth_core.errors import AAuthError, MalformedInput, SignatureFailure, TokenParameterError
from aauth_core.headers.requirement import validate_interaction_code
from aauth_core.interaction import generate_code
from aauth_core.tokens.claims import ResourceInteraction, ResourceTokenClaims
from aauth_flows.machines.actions import TimerFired
from aauth_flows.machines.engine import Action, Step, handles, require, table
from aauth_flows.machines.federation_api import (
    Federate,
    FederationProgress,
    FederationRequest,
    FederationSettled,
)
from aauth_flows.machines.ps_checks import (
    capabilities,
    check_mission,
    optional_string,
    replay_key,
    verify_agent_request,
    verify_resource_and_presented,
    verify_subagent,
    verify_upstream,
)
from aauth_flows.machines.ps_common import (
    IssuedKind,
    PendingRequest,
    PersonServerConfig,
    RecordAgentToken,
    RecordRequestSeen,
    RequestArrived,
    directed_sub,
    parse_json_body,
    step,
)
from aauth_flows.machines.ps_consent import (
    TOKEN_TYPE_JWT,
    ConsentMode,
    TokenRequestData,
    TokenRequestMachine,
    TokenRequestState,
    consent_rows,
    form_error,
)

__all__ = ["AuthTokenMachine", "GRANT_TYPE_TOKEN_EXCHANGE", "parse_token_exchange"]

S = TokenRequestState
GRANT_TYPE_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 - a URN
_FORM = "application/x-www-form-urlencoded"
_FORM_PARAMS = frozenset(
    {
        "grant_type",
        "subject_token",
        "subject_token_type",
        "actor_token",
        "actor_token_type",
        "scope",
        "requested_token_type",
    }
)


def _content_type(request_headers: Any) -> str:
    value = request_headers.get("content-type") or ""
    return str(value).split(";")[0].strip().lower()


def parse_token_exchange(body: bytes, max_size: int) -> dict[str, str]:
    """Strict RFC 8693 form parsing: UTF-8, bounded, no repeated parameter, the grant
    type and both token types exact. Unknown parameters are ignored (RFC 6749 §3.2)."""
    if len(body) > max_size:
        raise MalformedInput(f"the body is larger than {max_size} bytes")
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True, max_num_fields=32)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedInput("the body is not a valid form") from exc
    params: dict[str, str] = {}
    for name, value in pairs:
        if name not in _FORM_PARAMS:
            continue
        if name in params:
            raise MalformedInput(f"parameter {name!r} is repeated")
        params[name] = value
    if params.get("grant_type") != GRANT_TYPE_TOKEN_EXCHANGE:
        raise AAuthError("grant_type must be token-exchange", code="unsupported_grant_type")
    for token, kind in (
        ("subject_token", "subject_token_type"),
        ("actor_token", "actor_token_type"),
    ):
        if not params.get(token):
            raise MalformedInput(f"{token} is required")
        if params.get(kind) != TOKEN_TYPE_JWT:
            raise MalformedInput(f"{kind} must be {TOKEN_TYPE_JWT}")
    requested = params.get("requested_token_type")
    if requested is not None and requested != TOKEN_TYPE_JWT:
        raise MalformedInput(f"requested_token_type must be {TOKEN_TYPE_JWT}")
    return params


class AuthTokenMachine(TokenRequestMachine):
    """One request at the PS ``auth_token_endpoint`` and, when deferred, its pending record."""

    KIND = IssuedKind.AUTH
    TRANSITIONS = table(
        [
            (S.RECEIVED, RequestArrived, {S.MINTING, S.PENDING, S.FEDERATING, S.REJECTED}),
            *consent_rows(resource_interaction=True),
            (S.FEDERATING, FederationProgress, {S.FEDERATING}),
            (S.FEDERATING, FederationSettled, {S.COMPLETED, S.FAILED}),
            (S.FEDERATING, PendingRequest, {S.FEDERATING, S.GONE}),
            (S.FEDERATING, TimerFired, {S.FEDERATING, S.FAILED}),
        ]
    )

    @handles(RequestArrived)
    def _arrived(
        self, state: S, data: TokenRequestData, event: RequestArrived
    ) -> Step[S, TokenRequestData]:
        form = _content_type(event.request.headers) == _FORM
        if form and not self.config.token_exchange:
            # The binding is off: AAuth bodies are JSON (§5); the answer is a JSON problem.
            return self._reject(
                data, MalformedInput("form bodies are not accepted (RFC 8693 binding is off)")
            )
        data = evolve(data, form=form)
        try:
            return self._start(data, event)
        except AAuthError as exc:
            return self._reject(data, exc)

    def _body(self, data: TokenRequestData, event: RequestArrived) -> dict[str, Any]:
        if not data.form:
            return parse_json_body(event.request, self.config.max_body)
        params = parse_token_exchange(event.request.body, self.config.max_body)
        body: dict[str, Any] = {
            "resource_token": params["subject_token"],
            "presented_token": params["actor_token"],
        }
        if "scope" in params:
            body["scope"] = params["scope"]
        return body

    def _start(self, data: TokenRequestData, event: RequestArrived) -> Step[S, TokenRequestData]:
        config = self.config
        at = event.at
        caller = verify_agent_request(config, event.request, at)
        key = replay_key(caller.verified)
        if config.store.request_seen(key):
            raise SignatureFailure("the request was already received (replay)")
        body = self._body(data, event)
        rt_text = body.get("resource_token")
        pt_text = body.get("presented_token")
        if not isinstance(rt_text, str) or not rt_text:
            raise MalformedInput("resource_token is required")
        if not isinstance(pt_text, str) or not pt_text:
            raise MalformedInput("presented_token is required")
        subagent_text = optional_string(body, "subagent_token", 16384)
        upstream_text = optional_string(body, "upstream_token", 16384)
        caps = capabilities(body)
        agent = caller.claims
        cnf_key = caller.key
        if subagent_text is not None:
            sub_claims = verify_subagent(config, caller, subagent_text, at)
            cnf_key = require(sub_claims.cnf.jwk, "the sub-agent's cnf.jwk (verify_subagent)")
        pair = verify_resource_and_presented(
            config, resource_token=rt_text, presented_token=pt_text, signer_key=cnf_key, now=at
        )
        rt, pt = pair.resource, pair.presented
        exp_cap = min(agent.exp, pt.exp)
        upstream = None
        if upstream_text is not None:
            ut = verify_upstream(config, caller, upstream_text, at)
            exp_cap = min(exp_cap, ut.exp)
            upstream = (ut.iss, ut.jti)
        if rt.mission_s256 is not None:
            mission = check_mission(config, rt.mission_s256, caller, at)
            if mission.expires_at is not None:
                exp_cap = min(exp_cap, mission.expires_at)
        scope = rt.scope
        if "scope" in body:
            asked = str(body["scope"]).split()
            if not set(asked) <= rt.scopes:
                raise AAuthError("scope is broader than the resource token's", code="invalid_scope")
            scope = " ".join(asked) or None
        rand = event.random
        data = evolve(
            data,
            **caller.request_fields(at, rand),
            cnf_key=cnf_key,
            resource=rt.iss,
            scope=scope,
            granted_scope=scope,
            account=rt.account,
            mission_s256=rt.mission_s256,
            tenant=rt.tenant,
            justification=optional_string(body, "justification"),
            exp_cap=exp_cap,
            upstream=upstream,
            resource_token=rt_text,
            presented_token=pt_text,
            subagent_token=subagent_text,
            upstream_token=upstream_text,
            rt_iss=rt.iss,
            rt_sub=rt.sub,
            rt_agent_jkt=rt.agent_jkt,
            presented_jti=pt.jti,
        )
        records: list[Action] = [
            RecordRequestSeen(replay_key=key, until=at + 2 * config.signature_window)
        ]
        if config.store.agent_token_sub(agent.iss, agent.jti) is None:
            records.append(
                RecordAgentToken(iss=agent.iss, jti=agent.jti, sub=str(agent.sub), exp=agent.exp)
            )
        pending_id = b64url_encode(rand[16:32])
        if not pair.three_party:
            return self._federate(data, records, pending_id)
        person = self._person(data)
        data = evolve(data, person=person)
        interaction = rt.interaction
        if interaction is not None:
            # §5.4: the resource needs its own user flow first; the person reaches it
            # through this PS's interaction page, then comes back for the PS's consent.
            if "interaction" not in caps:
                raise AAuthError(
                    "the resource needs the person at its interaction page and the agent "
                    "lacks the interaction capability",
                    code="user_unreachable",
                    status=403,
                )
            data = evolve(
                data,
                resource_interaction_url=_admitted_interaction_url(config, rt, interaction),
                resource_interaction_code=_interaction_code(interaction),
                callback_url=config.callback_url(b64url_encode(rand[40:56])),
            )
            mode = ConsentMode.INTERACTION
            opened = self._open_pending(data, mode, generate_code(rand[32:40]), pending_id)
            return step(state=opened.state, data=opened.data, actions=[*records, *opened.actions])
        if config.store.has_grant(person, rt.iss, scope, rt.mission_s256):
            return self._mint(data, at, records)
        if config.store.can_reach(person):
            mode = ConsentMode.APPROVAL
        elif "interaction" in caps:
            mode = ConsentMode.INTERACTION
        else:
            raise AAuthError(
                "the PS cannot reach the person and the agent lacks the interaction capability",
                code="user_unreachable",
                status=403,
            )
        opened = self._open_pending(data, mode, generate_code(rand[32:40]), pending_id)
        return step(state=opened.state, data=opened.data, actions=[*records, *opened.actions])

    def _person(self, data: TokenRequestData) -> str:
        """The person the resource token's directed ``sub`` names: the agent's bound person,
        or (call chaining) the person of this PS's own record for that ``sub``."""
        store = self.config.store
        bound = store.person_for_agent(data.agent_iss, data.agent_sub)
        if bound is not None and hmac.compare_digest(
            directed_sub(self.config.sub_secret, bound, data.rt_iss), data.rt_sub
        ):
            return bound
        recorded = store.person_for_directed(data.rt_iss, data.rt_sub)
        if recorded is None:
            raise TokenParameterError(
                "the PS has no record of the presented token's person",
                code="invalid_presented_token",
                parameter="presented",
            )
        return recorded

    def _federate(
        self, data: TokenRequestData, records: list[Action], pending_id: str
    ) -> Step[S, TokenRequestData]:
        # The presented token was verified unexpired at ``at`` above: an expired one is
        # answered ``expired_presented_token`` here and never forwarded (§5.5).
        access_server = data.resource_token and _aud(data.resource_token)
        person = self.config.store.person_for_directed(data.rt_iss, data.rt_sub)
        data = evolve(
            data,
            access_server=access_server,
            person=person,
            pending_url=self.config.pending_base + pending_id,
            pending_expires=data.at + self.config.pending_lifetime,
            deferred=True,
        )
        federate = Federate(
            request=FederationRequest(
                access_server=access_server,
                resource_token=data.resource_token,
                agent_token=data.agent_token,
                presented_token=data.presented_token,
                subagent_token=data.subagent_token,
                upstream_token=data.upstream_token,
            )
        )
        from aauth_flows.machines.actions import Respond

        return step(
            state=S.FEDERATING,
            data=data,
            actions=[*records, federate, Respond(response=self._pending(S.FEDERATING, data))],
        )


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{(parts.netloc or '').lower()}"


def _admitted_interaction_url(
    config: PersonServerConfig, rt: ResourceTokenClaims, interaction: ResourceInteraction
) -> str:
    """The resource token's ``interaction.url``, checked before the person is ever sent
    there (§8): https with a host and no query (core checked it when parsing the token),
    on the resource's own origin or one the PS admits (egress admission)."""
    url = interaction.url
    if _origin(url) != _origin(rt.iss) and _origin(url) not in config.interaction_origins:
        raise TokenParameterError(
            "the resource token's interaction url is on an origin the PS does not admit",
            code="invalid_resource_token",
            parameter="resource",
        )
    return url


def _interaction_code(interaction: ResourceInteraction) -> str:
    try:
        return validate_interaction_code(interaction.code)
    except AAuthError as exc:
        raise TokenParameterError(
            f"the resource token's interaction code is malformed: {exc.detail}",
            code="invalid_resource_token",
            parameter="resource",
        ) from exc


def _aud(token: str) -> str:
    from aauth_core.tokens.verify import inspect_token

    aud = inspect_token(token).payload["aud"]
    return str(aud[0] if isinstance(aud, list) else aud)


__all__ += ["form_error"]
