"""Security checks that a mutation audit found untested: each test here pins one check
whose removal no other test noticed (one test per check, named after it)."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

import pytest
from attrs import evolve
from signing_helpers import generated_ed25519
from softhsm import SOFTHSM_MODULE, SoftHsm, fresh_label
from structlog.testing import capture_logs
from test_flow_access_server import problem as as_problem
from test_flow_access_server import server_signed
from test_flow_federation_world import AS as FED_AS
from test_flow_federation_world import NOW as FED_NOW
from test_flow_federation_world import RS as FED_RS
from test_flow_federation_world import ScriptedPolicy, as_config
from test_flow_ps_more import AT_URL as PS_AUTH_TOKEN_URL
from test_flow_ps_more import FORM, bound_store, error_of, exchange_params, form, granted_pair
from test_flow_ps_world import (
    AGENT_KEY,
    agent_token,
    arrive,
    drive,
    new_config,
    new_store,
    person_token,
    poll,
    resource_token,
    response_of,
    signed_post,
)
from test_flow_ps_world import NOW as PS_NOW
from test_flow_ps_world import PS as PS_URL
from test_flow_ps_world import RS as PS_RS
from test_flow_resource_machines import CONFIG as RESOURCE_CONFIG
from test_flow_resource_machines import INTERACTION
from test_server_requests import KEYS as SERVER_KEYS
from test_server_requests import NOW as SERVER_NOW
from test_server_requests import signed as server_request

from aauth_backends.pkcs11 import Pkcs11Config, Pkcs11KeyStore, WrongPin, _lib
from aauth_core import interaction
from aauth_core.algorithms import Alg
from aauth_core.errors import RemoteProtocolError, TokenError, UnsupportedAlgorithm
from aauth_core.http import HttpRequest
from aauth_core.identifiers import AgentId
from aauth_core.jws import encode_compact
from aauth_core.mission import mission_s256
from aauth_core.requests import sign_aauth_request
from aauth_core.server_requests import verify_server_request
from aauth_core.tokens import (
    DWK_AGENT,
    DWK_PERSON,
    DWK_RESOURCE,
    Confirmation,
    PersonTokenClaims,
    ResourceTokenClaims,
    StaticKeyResolver,
    TokenType,
    verify_agent_token,
    verify_person_token,
    verify_resource_token,
)
from aauth_flows.machines.access_server import (
    RevocationReceived,
    RevocationRequest,
    RevocationState,
)
from aauth_flows.machines.actions import Respond
from aauth_flows.machines.agent_checks import check_person_token, check_resource_token
from aauth_flows.machines.agent_credentials import CachedToken
from aauth_flows.machines.as_policy import InMemoryAccessServerStore
from aauth_flows.machines.person_server import (
    AuthTokenMachine,
    PendingRequest,
    PersonTokenMachine,
    TokenRequestState,
)
from aauth_flows.machines.resource import (
    CodePresented,
    PendingInteraction,
    PendingState,
    ShowConsent,
)

AP = "https://agent.example"
PS = "https://ps.example"
NOW = 1_800_000_000


# -- tokens: cnf.jwk and cnf.jkt must name the same key ------------------------------------


def _agent_payload(cnf: dict[str, Any]) -> dict[str, Any]:
    return {
        "iss": AP,
        "dwk": DWK_AGENT,
        "jti": "agent-1",
        "iat": NOW - 10,
        "exp": NOW + 600,
        "sub": str(AgentId.parse("aauth:bot@agent.example")),
        "ps": PS,
        "cnf": cnf,
    }


def test_cnf_jwk_and_jkt_must_name_the_same_key() -> None:
    """Pins ``Confirmation.from_claim``: a ``cnf`` whose ``jwk`` and ``jkt`` name different
    keys is refused. Otherwise ``binds`` (which prefers ``jkt``) and the request verifier
    (which signs against ``jwk``) would each accept a different key for one token."""
    issuer = generated_ed25519()
    agent = generated_ed25519()
    other = generated_ed25519()
    cnf = {"jwk": agent.public_jwk().to_dict(), "jkt": other.public_jwk().thumbprint()}

    with pytest.raises(TokenError, match="different keys"):
        Confirmation.from_claim(cnf)

    token = encode_compact({"typ": TokenType.AGENT.value}, _agent_payload(cnf), issuer)
    keys = StaticKeyResolver({(AP, DWK_AGENT): (issuer.public_jwk(),)})
    with pytest.raises(TokenError, match="different keys"):
        verify_agent_token(token, keys=keys, now=NOW)

    # The same token with an agreeing jkt verifies: the refusal is about the mismatch.
    agreeing = {"jwk": agent.public_jwk().to_dict(), "jkt": agent.public_jwk().thumbprint()}
    good = encode_compact({"typ": TokenType.AGENT.value}, _agent_payload(agreeing), issuer)
    verified = verify_agent_token(good, keys=keys, now=NOW)
    assert verified.claims.cnf.binds(agent.public_jwk())


# -- interaction codes: compared in constant time ------------------------------------------


def test_interaction_codes_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pins ``codes_match``: the normalised codes go through ``hmac.compare_digest``, never
    ``==`` (an early-exit compare leaks how many leading symbols of a guess are right)."""
    seen: list[tuple[object, object]] = []
    real = hmac.compare_digest

    def spy(left: Any, right: Any) -> bool:
        seen.append((left, right))
        return real(left, right)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # looked up at call time
    code = interaction.generate_code(bytes(range(32)))

    assert interaction.codes_match(code, code.lower())
    assert not interaction.codes_match(code, "ZZZZ-ZZZZ")
    normalised = interaction.normalize_code(code)
    assert seen[0] == (normalised, normalised)
    assert len(seen) == 2


# -- PS pending URL: the poller must hold the key that made the request --------------------


def test_ps_pending_url_caller_key_must_be_the_requesters() -> None:
    """Pins the key half of the PS pending-URL caller check (``signer_jkt``): the same
    agent identity (same ``iss`` and ``sub``) polling with another key, under an agent
    token the AP issued for that key, gets the unknown-URL answer and changes nothing."""
    store = new_store()
    machine = PersonTokenMachine(config=new_config(store))
    body = {"resource": PS_RS, "capabilities": ["interaction"]}
    started = arrive(machine, signed_post(PS_URL + "/person-token", body), store)
    assert response_of(started).status == 202
    assert machine.state is TokenRequestState.PENDING

    new_key = generated_ed25519()
    rotated = agent_token(key=new_key, jti="agent-jti-rotated")  # same iss, same sub
    url = machine.data.pending_url
    bare = HttpRequest(method="GET", url=url)
    fields = sign_aauth_request(bare, new_key, token=rotated, created=PS_NOW + 1)
    request = evolve(bare, headers=bare.headers.with_fields(fields))
    answer = response_of(drive(machine, PendingRequest(request=request, at=PS_NOW + 1), store))
    assert answer.status == 404
    assert machine.state is TokenRequestState.PENDING

    # The requester's own key still polls the same record.
    assert poll(machine, store, PS_NOW + 2).status == 202


def test_ps_pending_url_caller_identity_must_be_the_requesters() -> None:
    """Pins the identity half of the PS pending-URL caller check (``agent_iss`` and
    ``agent_sub``): a poll signed with the requester's key, but under an agent token that
    names another agent, gets the unknown-URL answer and changes nothing."""
    store = new_store()
    machine = PersonTokenMachine(config=new_config(store))
    body = {"resource": PS_RS, "capabilities": ["interaction"]}
    arrive(machine, signed_post(PS_URL + "/person-token", body), store)
    assert machine.state is TokenRequestState.PENDING

    url = machine.data.pending_url
    other_agent = agent_token(sub="aauth:someone-else@agent.example", jti="agent-jti-other")
    bare = HttpRequest(method="GET", url=url)
    fields = sign_aauth_request(bare, AGENT_KEY, token=other_agent, created=PS_NOW + 1)
    request = evolve(bare, headers=bare.headers.with_fields(fields))
    answer = response_of(drive(machine, PendingRequest(request=request, at=PS_NOW + 1), store))
    assert answer.status == 404
    assert machine.state is TokenRequestState.PENDING
    assert poll(machine, store, PS_NOW + 2).status == 202


# -- AS revocation endpoint: a resource must be one the AS knows ---------------------------


def _as_revocation(known: frozenset[str]) -> tuple[RevocationRequest, list[Respond]]:
    store = InMemoryAccessServerStore()
    config = as_config(ScriptedPolicy(), store, known_resources=known)
    machine = RevocationRequest(config=config)
    request = server_signed(
        {"jti": "rt-1", "exp": FED_NOW + 60},
        url=f"{FED_AS}/revoke",
        signer="rs",
        issuer=FED_RS,
        dwk=DWK_RESOURCE,
    )
    actions = machine.handle(RevocationReceived(request=request, at=FED_NOW))
    return machine, [a for a in actions if isinstance(a, Respond)]


def test_as_revocation_resource_caller_must_be_a_known_resource() -> None:
    """Pins the AS revocation admission for resources (``caller in known_resources``): a
    correctly signed resource the AS does not know may not record revocations there."""
    machine, [answer] = _as_revocation(frozenset())
    assert machine.state is RevocationState.REJECTED
    assert answer.response.status == 403
    assert as_problem(answer.response) == "unsupported_iss"

    # The same request from a known resource is admitted.
    machine, [answer] = _as_revocation(frozenset({FED_RS}))
    assert machine.state is RevocationState.ANSWERED
    assert answer.response.status == 200


# -- PS: the RFC 8693 binding is off unless configured -------------------------------------


def test_rfc8693_token_exchange_is_off_by_default() -> None:
    """Pins the default ``PersonServerConfig.token_exchange = False``: a PS configured
    without naming the option refuses a form-encoded token-exchange request (the existing
    "off" test passes ``token_exchange=False`` explicitly, so it never saw the default)."""
    store = bound_store()
    config = new_config(store)
    assert config.token_exchange is False

    rt, pt = granted_pair(store)
    request = signed_post(PS_AUTH_TOKEN_URL, form(exchange_params(rt, pt)), content_type=FORM)
    actions = arrive(AuthTokenMachine(config=config), request, store)
    assert error_of(response_of(actions)) == (400, "invalid_request")


# -- agent: a resource token must answer the token the agent presented ---------------------


def test_agent_resource_token_presented_jti_must_be_the_presented_tokens() -> None:
    """Pins the ``presented_jti`` half of the agent-side check on a resource token (§2.5):
    a resource token naming another presented token (same ``sub``) is a protocol error,
    so an agent never carries a resource token minted for another of its tokens."""
    presented, claims = person_token(jti="pt-presented")
    cached = CachedToken.parse(presented)

    def check(token: str) -> object:
        return check_resource_token(
            token,
            resource=PS_RS,
            ps=PS_URL,
            key=AGENT_KEY.public_jwk(),
            presented=cached,
            keys=None,
            now=PS_NOW,
        )

    check(resource_token(claims))  # the matching resource token is accepted
    elsewhere = resource_token(claims, presented_jti="pt-another")
    with pytest.raises(RemoteProtocolError) as caught:
        check(elsewhere)
    assert caught.value.code == "invalid_resource_token"
    assert "presented_jti" in caught.value.detail


# -- agent: a person token must carry the mission the agent asked for ----------------------


def test_agent_person_token_mission_s256_must_be_the_mission_asked_for() -> None:
    """Pins the ``mission_s256`` equality of the agent-side check on a person token: a PS
    answer that drops the mission (mission stripping) or names another mission is a
    protocol error, as is a mission the agent never asked for."""
    asked = mission_s256(b"book a table for two")

    def check(token: str, wanted: str | None) -> object:
        return check_person_token(
            token,
            resource=PS_RS,
            ps=PS_URL,
            key=AGENT_KEY.public_jwk(),
            mission_s256=wanted,
            keys=None,
            now=PS_NOW,
        )

    with_mission, _ = person_token(mission_s256=asked)
    check(with_mission, asked)  # the mission asked for is accepted
    stripped, _ = person_token()
    other, _ = person_token(mission_s256=mission_s256(b"empty the bank account"))
    for token, wanted in ((stripped, asked), (other, asked), (with_mission, None)):
        with pytest.raises(RemoteProtocolError) as caught:
            check(token, wanted)
        assert caught.value.code == "invalid_person_token"
        assert "mission_s256" in caught.value.detail


# -- PKCS#11: a PIN refused while signing is never retried ---------------------------------


def test_pkcs11_wrong_context_pin_is_never_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pins "wrong PIN never retried" on the signing path (``RECOVERABLE`` has no PIN
    fault): a key with ``CKA_ALWAYS_AUTHENTICATE`` passes the PIN with every signature;
    when the token refuses it (here: the pin-source file was rotated to a wrong PIN) the
    signature fails with ``WrongPin`` after exactly one attempt, since every try burns
    one of the token's PIN attempts."""
    token = SoftHsm.shared().token("mutation-gap-pin", pin="735911")
    pin_file = tmp_path / "pin"
    pin_file.write_text("735911\n")
    config = Pkcs11Config(
        module_path=SOFTHSM_MODULE,
        token_label=token.label,
        pin_source=f"file:{pin_file}",
        loading="direct-locked",
        pool_size=1,
    )
    pins: list[str | None] = []
    real = _lib.sign_prepared

    def spy(key: Any, data: bytes, mechanism: Any, param: Any, pin: str | None) -> bytes:
        pins.append(pin)
        return real(key, data, mechanism, param, pin)

    monkeypatch.setattr(_lib, "sign_prepared", spy)
    with Pkcs11KeyStore(config) as store:
        signer = store.get_signer(
            store.generate(Alg.ES256, fresh_label(), always_authenticate=True)
        )
        assert len(signer.sign(b"with the right PIN")) == 64
        assert pins == ["735911"]

        pins.clear()
        pin_file.write_text("864209\n")
        with capture_logs() as events, pytest.raises(WrongPin) as refused:
            signer.sign(b"with a wrong PIN")
        assert pins == ["864209"]  # one C_Sign with the PIN, no second try
        [failed] = [e for e in events if e["event"] == "aauth.pkcs11.sign_failed"]
        assert failed["retried"] is False
        assert "864209" not in str(refused.value) and "864209" not in repr(refused.value)

        # The PIN is put right: the key signs again (the session whose operation the
        # refused PIN left open was dropped, not handed to the next signature).
        pins.clear()
        pin_file.write_text("735911\n")
        assert len(signer.sign(b"with the right PIN again")) == 64
        assert pins == ["735911"]


# -- server-signed requests: the key's algorithm must be allowed ---------------------------


def test_server_request_key_alg_must_be_allowed() -> None:
    """Pins ``verify_server_request``'s ``allowed_algs`` check: a server key whose
    algorithm the verifier does not accept is ``unsupported_algorithm`` with the accepted
    list, before any signature is verified."""
    request = server_request()
    verified = verify_server_request(
        request, keys=SERVER_KEYS, dwks=(DWK_PERSON,), now=SERVER_NOW
    )  # an Ed25519 key, accepted by default
    assert verified.key.alg is Alg.ED25519

    with pytest.raises(UnsupportedAlgorithm) as refused:
        verify_server_request(
            request,
            keys=SERVER_KEYS,
            dwks=(DWK_PERSON,),
            now=SERVER_NOW,
            allowed_algs=frozenset({Alg.ES256}),
        )
    assert refused.value.code == "unsupported_algorithm"
    assert refused.value.accept_algs == ("ES256",)


# -- tokens: a resource token binds with agent_jkt, never cnf ------------------------------


def test_resource_token_with_cnf_is_refused() -> None:
    """Pins ``ResourceTokenClaims._specific``'s ``cnf`` refusal: a resource token binds
    the agent by ``agent_jkt`` only; one that also carries ``cnf`` (naming some other key
    a lax consumer might trust) is not a valid resource token."""
    resource, agent, stranger = generated_ed25519(), generated_ed25519(), generated_ed25519()
    claims = ResourceTokenClaims(
        iss="https://resource.example",
        dwk=DWK_RESOURCE,
        jti="rt-1",
        iat=NOW - 5,
        exp=NOW + 120,
        aud=PS,
        ps=PS,
        sub="person-1",
        presented_jti="pt-1",
        agent_jkt=agent.public_jwk().thumbprint(),
    )
    keys = StaticKeyResolver({("https://resource.example", DWK_RESOURCE): (resource.public_jwk(),)})
    header = {"typ": TokenType.RESOURCE.value}
    plain = encode_compact(header, claims.to_payload(), resource)
    assert verify_resource_token(plain, keys=keys, now=NOW, audience=PS).claims == claims

    payload = {**claims.to_payload(), "cnf": {"jwk": stranger.public_jwk().to_dict()}}
    with_cnf = encode_compact(header, payload, resource)
    with pytest.raises(TokenError, match="never cnf"):
        verify_resource_token(with_cnf, keys=keys, now=NOW, audience=PS)


# -- tokens: exactly one audience -----------------------------------------------------------


def test_token_aud_array_must_hold_exactly_one_audience() -> None:
    """Pins ``_audience``'s one-element rule: an ``aud`` array is accepted only with one
    member. A token for several audiences must not verify at the first of them, and an
    empty array is a token error (not a crash)."""
    ps, agent = generated_ed25519(), generated_ed25519()
    resource = "https://resource.example"
    claims = PersonTokenClaims(
        iss=PS,
        dwk=DWK_PERSON,
        jti="pt-1",
        iat=NOW - 5,
        exp=NOW + 600,
        aud=resource,
        sub="person-1",
        cnf=Confirmation(jwk=agent.public_jwk()),
    )
    keys = StaticKeyResolver({(PS, DWK_PERSON): (ps.public_jwk(),)})
    header = {"typ": TokenType.PERSON.value}

    def token_with(aud: object) -> str:
        return encode_compact(header, {**claims.to_payload(), "aud": aud}, ps)

    one = verify_person_token(token_with([resource]), keys=keys, now=NOW, audience=resource)
    assert one.claims.aud == resource
    for aud in ([resource, "https://elsewhere.example"], []):
        with pytest.raises(TokenError, match="exactly one audience"):
            verify_person_token(token_with(aud), keys=keys, now=NOW, audience=resource)


# -- resource interaction: an expired code shows nothing ------------------------------------


def test_resource_interaction_code_presented_after_expiry_is_refused() -> None:
    """Pins the expiry check of the resource's ``CodePresented`` handler: the right code
    presented at or after ``expires_at`` (before any timer fired) answers 408 ``expired``
    and ends the record, and never shows the consent page for the agent's request."""
    code, expires = INTERACTION.code, INTERACTION.expires_at
    in_time = PendingInteraction(config=RESOURCE_CONFIG, data=INTERACTION)
    [consent] = in_time.handle(CodePresented(code=code, at=expires - 1))
    assert isinstance(consent, ShowConsent)

    late = PendingInteraction(config=RESOURCE_CONFIG, data=INTERACTION)
    [answer] = late.handle(CodePresented(code=code, at=expires))
    assert isinstance(answer, Respond) and answer.response.status == 408
    assert late.state is PendingState.EXPIRED
