#!/usr/bin/env bash
# `make tour`: a walk-through of AAuth with the `aauth` command (no servers).
#
# An Agent Provider (AP) key and an agent key; an agent token the AP mints for the agent;
# requests the agent signs with its key (presenting the token in Signature-Key); a
# resource verifying them; the rejections a resource answers with Signature-Error
# when one byte changes, the token expires, or the signature is stale or from the future;
# and the same agent signing with a key on a PKCS#11 token (a private SoftHSM2 token).
# Every expected outcome is checked: if the command's behaviour changes, the tour fails.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
AAUTH="$PWD/.venv/bin/aauth"
PYTHON="$PWD/.venv/bin/python"
[[ -x "$AAUTH" ]] || { echo "tour: $AAUTH not found (run 'make tour')" >&2; exit 1; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/aauth-tour.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

AP=https://agent.example
AGENT=aauth:assistant@agent.example
PS=https://ps.example
RESOURCE=https://resource.example
NOW="$(date +%s)" # one clock reading; every step below passes it (or an offset) as --now

if [[ -t 1 ]]; then BOLD=$'\033[1m' PLAIN=$'\033[0m'; else BOLD='' PLAIN=''; fi
step() { printf '\n%s== %s%s\n' "$BOLD" "$*" "$PLAIN"; }
say() { printf -- '-- %s\n' "$*"; }
# Display only: long lines (tokens) are shortened; the checks always read the full output.
show() { awk '{ if (length($0) > 140) print substr($0, 1, 100) "... (" length($0) " chars)"; else print }'; }
die() { printf '\ntour: FAILED: %s\n' "$*" >&2; exit 1; }

# expect_valid FILE [verify options...]: verify a signed request; it must pass.
expect_valid() {
    local file="$1" out rc=0
    shift
    out="$("$AAUTH" verify --request "$file" --jwks "$AP=ap.jwks" --now "$NOW" "$@" 2>&1)" || rc=$?
    printf '%s\n' "$out" | show
    [[ $rc -eq 0 ]] || die "verify $file $* exited $rc, expected 0"
    grep -q '^verdict  VALID' <<<"$out" || die "verify $file $* printed no VALID verdict"
}

# expect_rejected CODE FILE [verify options...]: verification must fail (exit 1) with CODE.
expect_rejected() {
    local code="$1" file="$2" out rc=0
    shift 2
    out="$("$AAUTH" verify --request "$file" --jwks "$AP=ap.jwks" "$@" 2>&1)" || rc=$?
    printf '%s\n' "$out" | show
    [[ $rc -eq 1 ]] || die "verify $file $* exited $rc, expected 1 (rejected)"
    grep -q "^Signature-Error: error=$code\b" <<<"$out" ||
        die "verify $file $* did not answer Signature-Error: error=$code"
}

step "1) Keys: the Agent Provider's (Ed25519, cryptography) and the agent's (Ed25519, PyNaCl)"
"$AAUTH" keygen --alg Ed25519 --engine cryptography --out ap.pem
"$AAUTH" keygen --alg Ed25519 --engine sodium --out agent.pem --json >agent-key.json
AGENT_KEY="$("$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["key"])' <agent-key.json)"
say "agent key reference: $AGENT_KEY"
[[ "$AGENT_KEY" == *"engine=sodium"* ]] || die "the agent key is not on the sodium engine"

step "2) Public keys: the AP's JWKS (what it publishes at jwks_uri) and the agent's JWK"
"$AAUTH" jwk --key ap.pem --jwks | tee ap.jwks
"$AAUTH" jwk --key "$AGENT_KEY" | tee agent-jwk.json
AGENT_JKT="$("$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["thumbprint"])' <agent-jwk.json)"
say "agent key thumbprint (RFC 7638): $AGENT_JKT"

step "3) The AP mints an agent token bound to the agent's key (cnf.jwk)"
"$AAUTH" token mint --type agent --key ap.pem --iss "$AP" --sub "$AGENT" --ps "$PS" \
    --cnf-key agent.pem --now "$NOW" >agent.jwt
show <agent.jwt
say "token inspect (decoded only, not verified):"
"$AAUTH" token inspect @agent.jwt
"$AAUTH" token inspect --json @agent.jwt >inspect.json
"$PYTHON" - inspect.json "$AGENT_JKT" <<'EOF' || die "the agent token is not what was asked for"
import json, sys
from aauth_core.jwk import PublicJwk
token = json.load(open(sys.argv[1]))
assert token["verified"] is False and token["header"]["typ"] == "aa-agent+jwt"
assert PublicJwk.from_dict(token["payload"]["cnf"]["jwk"]).thumbprint() == sys.argv[2]
EOF

step "4) The agent signs two requests with its key (PyNaCl engine)"
say "GET $RESOURCE/calendar/events?day=today"
"$AAUTH" sign --key "$AGENT_KEY" --token @agent.jwt --now "$NOW" \
    --method GET --url "$RESOURCE/calendar/events?day=today" --out get.json | show
say "POST $RESOURCE/calendar/events with a JSON body (Content-Digest covered)"
"$AAUTH" sign --key "$AGENT_KEY" --token @agent.jwt --now "$NOW" --cover-body \
    --method POST --url "$RESOURCE/calendar/events" \
    -H 'Content-Type: application/json' --body '{"title":"Lunch","day":"today"}' \
    --out post.json | show

step "5) The resource verifies both (it trusts the AP's JWKS)"
say "GET:"
expect_valid get.json
say "POST (body coverage required, as at a PS/AS or revocation endpoint):"
expect_valid post.json --require-body-coverage
"$AAUTH" verify --request post.json --jwks "$AP=ap.jwks" --now "$NOW" --json >post-verdict.json ||
    die "the POST does not verify (--json)"
"$PYTHON" - post-verdict.json <<'EOF' || die "the --json verdict is not what the text said"
import json, sys
report = json.load(open(sys.argv[1]))
assert report["verdict"] == "valid" and report["token"]["typ"] == "aa-agent+jwt"
assert '"content-digest"' in report["covered"] and "content-digest" in report["signature_base"]
EOF

step "6) One byte changes on the way: /calendar/events becomes /calendar/eventz"
"$PYTHON" - <<'EOF'
import json
request = json.load(open("get.json"))
before = request["url"]
request["url"] = before.replace("/calendar/events", "/calendar/eventz", 1)
assert sum(a != b for a, b in zip(before, request["url"])) == 1
json.dump(request, open("tampered.json", "w"), indent=2)
print(f"url  {before}\n  -> {request['url']}")
EOF
expect_rejected invalid_signature tampered.json --now "$NOW"
say "and one byte of the POST body (Lunch -> Lunck): the Content-Digest no longer matches"
"$PYTHON" - <<'EOF'
import json
request = json.load(open("post.json"))
request["body"] = request["body"].replace("Lunch", "Lunck", 1)
json.dump(request, open("tampered-body.json", "w"), indent=2)
EOF
expect_rejected invalid_signature tampered-body.json --now "$NOW"

step "7) Time: an expired token, a stale signature, a signature from the future"
say "two hours later (the token lived one hour):"
expect_rejected expired_jwt get.json --now "$((NOW + 7200))"
say "120 s later (the signature window is 60 s; the token is still valid):"
expect_rejected invalid_signature get.json --now "$((NOW + 120))"
say "120 s earlier (the verifier's clock is behind: iat is ahead of it):"
expect_rejected clock_skew get.json --now "$((NOW - 120))"
say "a verifier that does not trust this AP (an empty JWKS):"
printf '{"keys": []}\n' >empty.jwks
out="$("$AAUTH" verify --request get.json --jwks "$AP=empty.jwks" --now "$NOW" 2>&1)" && die "verified without the AP's key"
printf '%s\n' "$out" | show
grep -q '^Signature-Error: error=unknown_key' <<<"$out" || die "expected unknown_key"

step "8) The agent's key on a hardware token: PKCS#11 on a private SoftHSM2 token"
if ! command -v softhsm2-util >/dev/null || [[ ! -e /usr/lib/softhsm/libsofthsm2.so ]]; then
    say "SoftHSM2 is not installed here (make tour installs it when run as root): step skipped"
    HSM_RESULT="skipped (no SoftHSM2)"
else
    mkdir -p softhsm/tokens
    printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
        "$WORK/softhsm/tokens" >softhsm/softhsm2.conf
    export SOFTHSM2_CONF="$WORK/softhsm/softhsm2.conf"
    softhsm2-util --init-token --free --label demo --pin 246810 --so-pin 13579111 >/dev/null
    printf 246810 >pin.txt && chmod 600 pin.txt
    TOKEN="pkcs11:token=demo?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:$WORK/pin.txt"
    say "an ES256 key generated on the token (sensitive, never extractable):"
    "$AAUTH" keygen --backend pkcs11 --token "$TOKEN" --name agent --alg ES256 --json >hsm-key.json
    HSM_KEY="$("$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["key"])' <hsm-key.json)"
    "$AAUTH" keys list --store "$TOKEN" | show
    say "the AP binds a new agent token to it; the agent signs on the token; the resource verifies"
    "$AAUTH" token mint --type agent --key ap.pem --iss "$AP" --sub "$AGENT" --ps "$PS" \
        --cnf-key "$HSM_KEY" --now "$NOW" >hsm-agent.jwt
    "$AAUTH" sign --key "$HSM_KEY" --token @hsm-agent.jwt --now "$NOW" \
        --method GET --url "$RESOURCE/calendar/events?day=today" --out hsm-get.json | show
    expect_valid hsm-get.json
    say "a wrong PIN is refused once, never retried, and never printed:"
    printf 999999 >wrong-pin.txt
    out="$("$AAUTH" keys list --store "pkcs11:token=demo?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:$WORK/wrong-pin.txt" 2>&1)" &&
        die "a wrong PIN was accepted"
    printf '%s\n' "$out" | tail -n 1
    grep -q "refused the PIN" <<<"$out" || die "expected the PIN refusal"
    ! grep -q 999999 <<<"$out" || die "the PIN was printed"
    HSM_RESULT="ES256 key on SoftHSM2 signed a request: VALID; wrong PIN refused"
fi

step "Summary"
cat <<EOF
- keys: AP Ed25519 (cryptography), agent Ed25519 (PyNaCl), agent thumbprint $AGENT_JKT
- agent token: iss $AP, sub $AGENT, cnf.jwk = the agent's key
- GET and POST signed by the agent and verified by the resource: VALID
- one byte changed in the path or the body: REJECTED, invalid_signature
- token two hours old: expired_jwt; signature 120 s old: invalid_signature;
  verifier clock 120 s behind the token: clock_skew; issuer key unknown: unknown_key
- hardware token: $HSM_RESULT
tour: OK
EOF
