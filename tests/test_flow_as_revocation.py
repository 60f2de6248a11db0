"""The AS's revocation cascade end to end (protocol -11 §5.8, §7.6): a PS revokes a person
token at the AS; the AS revokes the auth tokens it issued against it at their resources
(server-signed ``POST {"jti","exp"}``, 202 followed by polling) and reports the failures
in the ``downstream`` list of its 200.

A tiny driver wires the real machines: the AS's :class:`AuthTokenExchange` (to issue a real
auth token) and :class:`RevocationRequest`, and the resource's :class:`ResourceCall` and
:class:`RevocationEndpoint`. A resource can also be scripted (answers per URL) for the
statuses the real endpoint never gives (202, 500)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import pytest
from attrs import evolve
from test_flow_access_server import server_signed
from test_flow_federation_world import (
    AS,
    KEYS,
    NOW,
    PS,
    RESOLVER,
    RS,
    SIGNERS,
    ScriptedPolicy,
    as_config,
    federation_request,
    person_claims,
    sign,
)

from aauth_core.http import HttpRequest, HttpResponse
from aauth_core.requests import sign_aauth_request
from aauth_core.server_requests import verify_server_request
from aauth_core.tokens import DWK_ACCESS, PersonTokenClaims, inspect_token
from aauth_flows.machines.access_server import (
    AuthTokenExchange,
    DownstreamUnavailable,
    RevocationReceived,
    RevocationRequest,
    RevocationState,
    TokenRequestReceived,
)
from aauth_flows.machines.actions import (
    Respond,
    ResponseReceived,
    SendRequest,
    SignBytes,
    TimerFired,
    Wait,
)
from aauth_flows.machines.as_policy import (
    Grant,
    InMemoryAccessServerStore,
    StaticResourceDirectory,
)
from aauth_flows.machines.as_revocation import MAX_DOWNSTREAM_POLLS, MAX_DOWNSTREAM_WAIT
from aauth_flows.machines.engine import Action, Event, Snapshot
from aauth_flows.machines.resource import (
    AccessMode,
    MemoryResourceStore,
    RequestReceived,
    ResourceCall,
    ResourceConfig,
    RevocationEndpoint,
    Route,
    Serve,
    Served,
)
from aauth_flows.machines.resource_config import RANDOM_BYTES

RS_REVOKE = f"{RS}/revoke"
RS2 = "https://second-resource.example"
AS_REVOKE = f"{AS}/revoke"


class Net:
    """The AS and a real resource (plus optional scripted answers by URL)."""

    def __init__(
        self,
        *,
        revocation_issuers: frozenset[str] | None = None,
        endpoints: dict[str, str] | None = None,
    ) -> None:
        self.clock = NOW
        self.rs_store = MemoryResourceStore()
        self.rs_config = ResourceConfig(
            issuer=RS,
            signing_key=KEYS["rs"],
            keys=RESOLVER,
            routes=(Route(path="/data", mode=AccessMode.AUTHORIZATION, scope="data.read"),),
            revocations=self.rs_store,
            sessions=self.rs_store,
            interaction_url=f"{RS}/interaction",
            pending_base=f"{RS}/pending/",
            access_server=AS,
            scope_descriptions=frozenset({"data.read", "data.write"}),
            revocation_issuers=revocation_issuers,
        )
        self.as_store = InMemoryAccessServerStore()
        directory = StaticResourceDirectory({RS: RS_REVOKE} if endpoints is None else endpoints)
        self.as_config = as_config(
            ScriptedPolicy(Grant()),
            self.as_store,
            resources=directory,
            known_resources=frozenset({RS, RS2}),
        )
        #: URL → scripted answers (each a function of the request), used before the real
        #: resource
        self.scripted: dict[str, list[Callable[[HttpRequest], HttpResponse]]] = {}
        self.sent: list[HttpRequest] = []
        self.waits: list[int] = []
        self._nonce = itertools.count(1)

    def nonce(self) -> bytes:
        return next(self._nonce).to_bytes(4, "big") * RANDOM_BYTES

    # -- the AS issues a real auth token for RS ---------------------------------------------

    def issue(self, person: PersonTokenClaims | None = None) -> tuple[str, PersonTokenClaims]:
        person = person or person_claims()
        request = federation_request(person=person)
        body = {
            "resource_token": request.resource_token,
            "agent_token": request.agent_token,
            "presented_token": request.presented_token,
        }
        machine = AuthTokenExchange(config=self.as_config)
        queue: list[Action] = machine.handle(
            TokenRequestReceived(request=server_signed(body), at=self.clock, nonce=self.nonce())
        )
        while queue:
            action = queue.pop(0)
            if isinstance(action, SignBytes):
                queue += machine.handle(sign(action))
            elif isinstance(action, Respond):
                assert action.response.status == 200
                return json.loads(action.response.body)["auth_token"], person
            else:
                assert self.as_store.apply(action)
        raise AssertionError("no auth token")

    # -- the resource ---------------------------------------------------------------------

    def call(self, auth_token: str) -> HttpResponse:
        """The agent calls RS with the auth token (signed with the agent key)."""
        request = HttpRequest(method="GET", url=f"{RS}/data")
        fields = sign_aauth_request(request, SIGNERS["agent"], token=auth_token, created=self.clock)
        signed = evolve(request, headers=request.headers.with_fields(fields))
        return self._resource(ResourceCall(config=self.rs_config), signed)

    def _resource(self, machine: Any, request: HttpRequest) -> HttpResponse:
        queue: list[Action] = machine.handle(
            RequestReceived(request=request, at=self.clock, random=self.nonce())
        )
        while queue:
            action = queue.pop(0)
            if isinstance(action, SignBytes):
                queue += machine.handle(sign(action))
            elif isinstance(action, Serve):
                served = HttpResponse(status=200, body=b'{"data":1}')
                queue += machine.handle(Served(response=served, at=self.clock))
            elif isinstance(action, Respond):
                return action.response
            else:
                assert self.rs_store.apply(action), action
        raise AssertionError("the resource did not answer")

    def send(self, request: HttpRequest) -> HttpResponse:
        self.sent.append(request)
        answers = self.scripted.get(request.url)
        if answers:
            return answers.pop(0)(request)
        if request.url == RS_REVOKE:
            return self._resource(RevocationEndpoint(config=self.rs_config), request)
        return HttpResponse(status=404)

    # -- the PS revokes a person token at the AS ------------------------------------------

    def revoke(
        self,
        person: PersonTokenClaims,
        *,
        unreachable: frozenset[str] = frozenset(),
        snapshot_each_step: bool = False,
    ) -> tuple[RevocationRequest, HttpResponse]:
        request = server_signed({"jti": person.jti, "exp": person.exp}, url=AS_REVOKE)
        machine = RevocationRequest(config=self.as_config)
        queue: list[Event] = []
        response: HttpResponse | None = None

        def run(actions: list[Action]) -> None:
            nonlocal response
            for action in actions:
                if isinstance(action, SignBytes):
                    queue.append(sign(action))
                elif isinstance(action, SendRequest):
                    if action.request.url in unreachable:
                        self.sent.append(action.request)
                        queue.append(DownstreamUnavailable(at=self.clock))
                    else:
                        answer = self.send(action.request)
                        queue.append(ResponseReceived(response=answer, at=self.clock))
                elif isinstance(action, Wait):
                    self.waits.append(action.seconds)
                    self.clock += action.seconds
                    queue.append(TimerFired(at=self.clock))
                elif isinstance(action, Respond):
                    response = action.response
                else:
                    assert self.as_store.apply(action), action

        run(machine.handle(RevocationReceived(request=request, at=self.clock)))
        while queue:
            if snapshot_each_step:
                text = machine.snapshot().to_json()
                machine = RevocationRequest.restore(Snapshot.from_json(text), config=self.as_config)
            run(machine.handle(queue.pop(0)))
        assert response is not None and machine.state is RevocationState.ANSWERED
        return machine, response


def downstream(response: HttpResponse) -> list[dict[str, str]]:
    assert response.status == 200
    if not response.body:
        assert "content-type" not in response.headers  # empty 200, no Content-Type
        return []
    result: list[dict[str, str]] = json.loads(response.body)["downstream"]
    return result


def as_signed(request: HttpRequest, at: int) -> str:
    """The request verifies as a server signature by the AS (``aauth-access.json``)."""
    return verify_server_request(request, keys=RESOLVER, dwks=(DWK_ACCESS,), now=at).issuer


# -- end to end with the real resource --------------------------------------------------------------


def test_person_token_revocation_cascades_to_the_resource_which_then_refuses_the_auth_token() -> (
    None
):
    net = Net()
    auth_token, person = net.issue()
    assert net.call(auth_token).status == 200

    machine, response = net.revoke(person)
    assert downstream(response) == []  # every downstream revocation succeeded
    [sent] = net.sent
    assert sent.method == "POST" and sent.url == RS_REVOKE
    assert as_signed(sent, NOW) == AS
    [record] = machine.config.issued.issued_against(PS, person.jti)
    at_jti = record.jti
    assert at_jti == inspect_token(auth_token).payload["jti"]
    assert json.loads(sent.body) == {"jti": at_jti, "exp": record.exp}
    assert net.rs_store.is_revoked(AS, at_jti)  # keyed by the verified signer: the AS
    assert net.as_store.is_revoked(PS, person.jti) and net.as_store.is_revoked(AS, at_jti)

    refused = net.call(auth_token)
    assert refused.status == 401
    assert "revoked_jwt" in (refused.headers.get("signature-error") or "")


def test_s8_cascade_revokes_only_tokens_issued_against_that_person_token() -> None:
    net = Net()
    kept_token, _ = net.issue()
    revoked_token, person = net.issue()
    net.revoke(person)
    assert len(net.sent) == 1
    assert net.call(kept_token).status == 200
    assert net.call(revoked_token).status == 401


def test_repeated_revocation_sends_nothing_downstream_again() -> None:
    net = Net()
    _, person = net.issue()
    net.revoke(person)
    _, again = net.revoke(person)
    assert downstream(again) == [] and len(net.sent) == 1


def test_resource_refusing_the_as_as_issuer_is_revocation_unsupported() -> None:
    net = Net(revocation_issuers=frozenset({PS}))  # the resource takes revocations from PS only
    auth_token, person = net.issue()
    _, response = net.revoke(person)
    assert downstream(response) == [{"recipient": RS, "error": "revocation_unsupported"}]
    assert net.call(auth_token).status == 200  # it lives until exp


def test_resource_without_revocation_endpoint_is_revocation_unsupported() -> None:
    net = Net(endpoints={})
    _, person = net.issue()
    _, response = net.revoke(person)
    assert downstream(response) == [{"recipient": RS, "error": "revocation_unsupported"}]
    assert net.sent == []


@pytest.mark.parametrize("status", [500, 503, 429, 400, 401])
def test_resource_errors_are_revocation_unavailable(status: int) -> None:
    net = Net()
    net.scripted[RS_REVOKE] = [lambda _r: HttpResponse(status=status)]
    _, person = net.issue()
    _, response = net.revoke(person)
    assert downstream(response) == [{"recipient": RS, "error": "revocation_unavailable"}]


def test_unreachable_resource_is_revocation_unavailable() -> None:
    net = Net()
    _, person = net.issue()
    _, response = net.revoke(person, unreachable=frozenset({RS_REVOKE}))
    assert downstream(response) == [{"recipient": RS, "error": "revocation_unavailable"}]


# -- 202 from the resource: the AS polls under its own identity --------------------------------------


def _accepted(location: str, retry: str = "2") -> Callable[[HttpRequest], HttpResponse]:
    def answer(_request: HttpRequest) -> HttpResponse:
        return HttpResponse(
            status=202,
            headers={"Location": location, "Retry-After": retry, "Cache-Control": "no-store"},
            body=b'{"status":"pending"}',
        )

    return answer


def test_202_is_followed_by_signed_polls_until_200() -> None:
    net = Net()
    pending_url = f"{RS}/pending/revocation-1"
    net.scripted[RS_REVOKE] = [_accepted("/pending/revocation-1")]
    net.scripted[pending_url] = [
        _accepted("/pending/revocation-1", retry="3"),
        lambda _r: HttpResponse(status=200),
    ]
    _, person = net.issue()
    _, response = net.revoke(person, snapshot_each_step=True)
    assert downstream(response) == []
    post, poll1, poll2 = net.sent
    assert post.method == "POST"
    assert [(p.method, p.url, p.body) for p in (poll1, poll2)] == [("GET", pending_url, b"")] * 2
    assert as_signed(poll1, NOW + 2) == AS and as_signed(poll2, NOW + 5) == AS
    assert net.waits == [2, 3]


def test_202_that_never_settles_is_revocation_unavailable() -> None:
    net = Net()
    net.scripted[RS_REVOKE] = [_accepted(f"{RS}/p/1", retry="600")]
    net.scripted[f"{RS}/p/1"] = [_accepted(f"{RS}/p/1", retry="600")] * 10
    _, person = net.issue()
    _, response = net.revoke(person)
    assert downstream(response) == [{"recipient": RS, "error": "revocation_unavailable"}]
    assert len(net.sent) == 1 + MAX_DOWNSTREAM_POLLS
    assert net.waits == [MAX_DOWNSTREAM_WAIT] * MAX_DOWNSTREAM_POLLS  # Retry-After capped


@pytest.mark.parametrize("location", ["https://evil.example/p/1", None])
def test_s8_202_with_a_foreign_or_missing_location_is_revocation_unavailable(
    location: str | None,
) -> None:
    net = Net()

    def answer(_request: HttpRequest) -> HttpResponse:
        headers = {"Retry-After": "1"} if location is None else {"Location": location}
        return HttpResponse(status=202, headers=headers)

    net.scripted[RS_REVOKE] = [answer]
    _, person = net.issue()
    _, response = net.revoke(person)
    assert downstream(response) == [{"recipient": RS, "error": "revocation_unavailable"}]
    assert len(net.sent) == 1  # nothing polled off-origin


# -- several resources --------------------------------------------------------------------------------


def test_several_resources_one_at_a_time_failures_reported_in_order() -> None:
    net = Net(endpoints={RS: RS_REVOKE, RS2: f"{RS2}/revoke"})
    person = person_claims()
    first, _ = net.issue(person)
    second, _ = net.issue(person)
    # Move the second token to RS2 in the AS's records (the AS issued it for that resource).
    second_jti = inspect_token(second).payload["jti"]
    record = net.as_store.issued[second_jti]
    net.as_store.issued[second_jti] = evolve(record, resource=RS2)
    net.scripted[f"{RS2}/revoke"] = [lambda _r: HttpResponse(status=503)]
    _, response = net.revoke(person)
    assert [r.url for r in net.sent] == [RS_REVOKE, f"{RS2}/revoke"]
    assert all(as_signed(r, NOW) == AS for r in net.sent)
    assert downstream(response) == [{"recipient": RS2, "error": "revocation_unavailable"}]
    assert net.call(first).status == 401
