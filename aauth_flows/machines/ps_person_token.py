"""The PS ``person_token_endpoint`` (protocol -11 §5.3, §6.3, §7.4, §7.5).

``POST`` signed with the agent token (body covered) ``{"resource", "mission_s256"?,
"subagent_token"?, "upstream_token"?, "capabilities"?, …}``. The first token for an
(agent, resource) needs the person's approval (``202``); later ones are issued at once.
The token: ``iss`` = PS, ``aud`` = resource, directed ``sub``, ``cnf`` = the agent's (or
sub-agent's) key, ``exp`` ≤ 1 h, the agent token, the upstream token and the mission.
A call-chaining request (``upstream_token``, §7.4) names its person through the upstream
token and neither uses nor creates a binding; otherwise the consent rules are the same
(the person's consent for this intermediary at this resource, remembered or asked), the
upstream ``mission_s256`` is copied and ``exp`` is capped at the upstream token's.
"""

from __future__ import annotations

from attrs import evolve

from aauth_core.b64 import b64url_encode
from aauth_core.errors import AAuthError, MalformedInput, SignatureFailure
from aauth_core.interaction import generate_code
from aauth_core.tokens.claims import Confirmation
from aauth_flows.machines.engine import Action, Step, handles, require, table
from aauth_flows.machines.ps_checks import (
    capabilities,
    check_mission,
    optional_string,
    replay_key,
    server_identifier,
    verify_agent_request,
    verify_subagent,
    verify_upstream,
)
from aauth_flows.machines.ps_common import (
    IssuedKind,
    RecordAgentToken,
    RecordRequestSeen,
    RequestArrived,
    parse_json_body,
    step,
)
from aauth_flows.machines.ps_consent import (
    CONSENT_ROWS,
    ConsentMode,
    TokenRequestData,
    TokenRequestMachine,
    TokenRequestState,
)

__all__ = ["PersonTokenMachine"]

S = TokenRequestState


class PersonTokenMachine(TokenRequestMachine):
    """One request at ``person_token_endpoint``; a pending record when consent is needed."""

    KIND = IssuedKind.PERSON
    TRANSITIONS = table(
        [
            (S.RECEIVED, RequestArrived, {S.MINTING, S.PENDING, S.REJECTED}),
            *CONSENT_ROWS,
        ]
    )

    @handles(RequestArrived)
    def _arrived(
        self, state: S, data: TokenRequestData, event: RequestArrived
    ) -> Step[S, TokenRequestData]:
        try:
            return self._start(data, event)
        except AAuthError as exc:
            return self._reject(data, exc)

    def _start(self, data: TokenRequestData, event: RequestArrived) -> Step[S, TokenRequestData]:
        config = self.config
        at = event.at
        caller = verify_agent_request(config, event.request, at)
        key = replay_key(caller.verified)
        if config.store.request_seen(key):
            raise SignatureFailure("the request was already received (replay)")
        body = parse_json_body(event.request, config.max_body)
        resource = server_identifier(body, "resource")
        mission_s256 = optional_string(body, "mission_s256", 64)
        upstream_text = optional_string(body, "upstream_token", 16384)
        subagent_text = optional_string(body, "subagent_token", 16384)
        if mission_s256 is not None and upstream_text is not None:
            raise MalformedInput("mission_s256 and upstream_token are not sent together")
        caps = capabilities(body)
        agent = caller.claims
        cnf_key = caller.key
        if subagent_text is not None:
            sub_claims = verify_subagent(config, caller, subagent_text, at)
            cnf_key = require(sub_claims.cnf.jwk, "the sub-agent's cnf.jwk (verify_subagent)")
        exp_cap = agent.exp
        person: str | None
        upstream = None
        if upstream_text is not None:
            ut = verify_upstream(config, caller, upstream_text, at)
            person = config.store.person_for_directed(ut.aud, ut.sub)
            if person is None:
                from aauth_core.errors import TokenParameterError

                raise TokenParameterError(
                    "the PS has no record of the upstream token's person",
                    code="invalid_upstream_token",
                    parameter="upstream",
                )
            mission_s256 = ut.mission_s256
            exp_cap = min(exp_cap, ut.exp)
            upstream = (ut.iss, ut.jti)
        else:
            person = config.store.person_for_agent(agent.iss, str(agent.sub))
        if mission_s256 is not None:
            mission = check_mission(config, mission_s256, caller, at, owned=upstream is None)
            if mission.expires_at is not None:
                exp_cap = min(exp_cap, mission.expires_at)
        rand = event.random
        data = evolve(
            data,
            **caller.request_fields(at, rand),
            cnf_key=Confirmation(jwk=cnf_key).jwk,
            person=person,
            resource=resource,
            mission_s256=mission_s256,
            tenant=optional_string(body, "tenant"),
            justification=optional_string(body, "justification"),
            exp_cap=exp_cap,
            upstream=upstream,
        )
        records: list[Action] = [
            RecordRequestSeen(replay_key=key, until=at + 2 * config.signature_window)
        ]
        if config.store.agent_token_sub(agent.iss, agent.jti) is None:
            records.append(
                RecordAgentToken(iss=agent.iss, jti=agent.jti, sub=str(agent.sub), exp=agent.exp)
            )
        if person is not None and config.store.has_person_consent(
            person, agent.iss, str(agent.sub), resource
        ):
            return self._mint(data, at, records)
        # The question is "may this agent act at this resource as you?" (§5.3).
        if person is not None and config.store.can_reach(person):
            mode = ConsentMode.APPROVAL
        elif "interaction" in caps:
            mode = ConsentMode.INTERACTION
        else:
            raise AAuthError(
                "the PS cannot reach the person and the agent lacks the interaction capability",
                code="user_unreachable",
                status=403,
            )
        opened = self._open_pending(
            data, mode, generate_code(rand[32:40]), b64url_encode(rand[16:32])
        )
        return step(state=opened.state, data=opened.data, actions=[*records, *opened.actions])
