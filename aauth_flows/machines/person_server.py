"""The Person Server's machines (protocol -11 §5.3, §5.4, §5.8, §6.3 to §6.5, §7.4 to §7.6).

- :class:`PersonTokenMachine`: one request at ``person_token_endpoint``;
- :class:`AuthTokenMachine`: one request at ``auth_token_endpoint`` (three-party,
  four-party through :mod:`~aauth_flows.machines.federation_api`, and the optional
  RFC 8693 form binding);
- :class:`RevocationMachine`: one request at ``revocation_endpoint`` and its cascade.

A token request that needs the person stays alive as a pending record: the driver stores
its snapshot under the pending URL and feeds it :class:`PendingRequest` (the agent),
:class:`InteractionArrived` / :class:`PersonDecided` / :class:`PersonAsked` (the person)
and :class:`~aauth_flows.machines.actions.TimerFired` (expiry). Lookups go through the
config's :class:`PsStore`; writes are the ``Record…`` actions.

The person is asked with :class:`ConsentPrompt`, on the PS page she opened with the code
(``channel`` interaction) or through the PS's own channel (``channel`` approval). When the
resource token carries ``interaction`` (§5.4) the PS first sends her to the resource with
:class:`RedirectPerson`; her return to the callback URL is :class:`ResourceCallback`.
"""

from __future__ import annotations

from aauth_flows.machines.ps_auth_token import (
    GRANT_TYPE_TOKEN_EXCHANGE,
    AuthTokenMachine,
    parse_token_exchange,
)
from aauth_flows.machines.ps_common import (
    CALLBACK_ERRORS,
    RANDOM_BYTES,
    CodeRefused,
    ConsentMode,
    ConsentPrompt,
    Decision,
    DecisionRefused,
    InMemoryPsStore,
    InteractionArrived,
    IssuedKind,
    IssuedRecord,
    MissionRecord,
    PendingRequest,
    PersonAsked,
    PersonDecided,
    PersonServerConfig,
    PsStore,
    RecordAgentToken,
    RecordBinding,
    RecordConsent,
    RecordDownstreamOutcome,
    RecordGrant,
    RecordIssued,
    RecordRequestSeen,
    RecordRevocation,
    RedirectPerson,
    RequestArrived,
    ResourceCallback,
    callback_outcome,
    directed_sub,
    not_found,
)
from aauth_flows.machines.ps_consent import (
    TOKEN_TYPE_JWT,
    TokenRequestData,
    TokenRequestMachine,
    TokenRequestState,
    form_error,
)
from aauth_flows.machines.ps_person_token import PersonTokenMachine
from aauth_flows.machines.ps_revocation import (
    Downstream,
    DownstreamUnavailable,
    RevocationData,
    RevocationMachine,
    RevocationState,
    verify_server_request,
)

__all__ = [
    "PersonServerConfig",
    "PsStore",
    "InMemoryPsStore",
    "IssuedKind",
    "IssuedRecord",
    "MissionRecord",
    "PersonTokenMachine",
    "AuthTokenMachine",
    "RevocationMachine",
    "TokenRequestMachine",
    "TokenRequestState",
    "TokenRequestData",
    "ConsentMode",
    "RevocationState",
    "RevocationData",
    "Downstream",
    "RequestArrived",
    "PendingRequest",
    "InteractionArrived",
    "PersonDecided",
    "PersonAsked",
    "Decision",
    "DownstreamUnavailable",
    "CodeRefused",
    "DecisionRefused",
    "ConsentPrompt",
    "RedirectPerson",
    "ResourceCallback",
    "CALLBACK_ERRORS",
    "callback_outcome",
    "not_found",
    "RecordIssued",
    "RecordConsent",
    "RecordGrant",
    "RecordBinding",
    "RecordRequestSeen",
    "RecordRevocation",
    "RecordAgentToken",
    "RecordDownstreamOutcome",
    "directed_sub",
    "form_error",
    "parse_token_exchange",
    "verify_server_request",
    "GRANT_TYPE_TOKEN_EXCHANGE",
    "TOKEN_TYPE_JWT",
    "RANDOM_BYTES",
]
