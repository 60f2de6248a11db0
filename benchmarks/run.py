"""``make bench``: signature throughput of AAuth requests against the raw primitives.

Everything runs in one process and interleaved (``benchmarks/harness.py``): each round
times every operation once, and a ratio is taken within a round, so the shared machine's
noise moves both sides of a ratio together. The median over rounds is one run's result;
``--runs 3`` repeats the whole thing and reports the medians of the three runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import sys
from pathlib import Path
from typing import Any

import cryptography
import http_sf
import jwt as pyjwt
import nacl
import nacl.bindings
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from jwt.algorithms import OKPAlgorithm

from aauth_backends.sodium import SodiumSigner
from aauth_backends.software import CryptographySigner
from aauth_core.algorithms import Alg
from aauth_core.http import HttpRequest
from aauth_core.httpsig.fields import (
    parse_signature_input,
    parse_signature_input_full,
)
from aauth_core.identifiers import AgentId
from aauth_core.jws import decode_compact, verify_jws
from aauth_core.requests import RequestVerifier, sign_aauth_request
from aauth_core.signature_key import parse_fast, parse_full
from aauth_core.token_cache import VerifiedTokenCache
from aauth_core.tokens import (
    DWK_AGENT,
    AgentTokenClaims,
    Confirmation,
    StaticKeyResolver,
    mint_token,
)
from benchmarks import agent_ops, pkcs11_ops, resource_ops
from benchmarks.harness import Operation, run_rounds, summarise, table

ROOT = Path(__file__).resolve().parent.parent
NOW = 1_800_000_000
AP = "https://agent.example"
URL = "https://resource.example/calendar/events?day=today"

#: The issue's targets: (operation, minimum ratio to its baseline).
TARGETS = {
    "AAuth request sign (PKCS#11 Ed25519)": 0.90,
    "AAuth request sign (PKCS#11 ES256)": 0.90,
    "AAuth request sign (PKCS#11 PS256)": 0.90,
    "PKCS#11 signer, ES256, 2 threads": 1.00,
    "PKCS#11 signer, ES256, 2 threads, against raw on 2 threads": 0.90,
    "AAuth request sign (cryptography)": 0.80,
    "AAuth request sign (PyNaCl)": 0.80,
    "AAuth request verify, warm (cached token)": 0.75,
    "AAuth request verify, cold (token verified)": 0.40,
}


def build_operations() -> tuple[list[Operation], list[Any]]:
    """The operations, and what to close after the run (a PKCS#11 store)."""
    seed = bytes(range(32))
    crypto_key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    crypto_pub = crypto_key.public_key()
    crypto_signer = CryptographySigner.from_private_key(crypto_key)
    sodium_signer = SodiumSigner.from_seed(seed)
    sk = nacl.bindings.crypto_sign_seed_keypair(seed)[1]
    pk = crypto_pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    ap_signer = CryptographySigner.generate("Ed25519")
    claims = AgentTokenClaims(
        iss=AP,
        dwk=DWK_AGENT,
        jti="bench-agent-token-0001",
        iat=NOW - 60,
        exp=NOW + 3600,
        sub=AgentId.parse("aauth:assistant@agent.example"),
        cnf=Confirmation(jwk=crypto_signer.public_jwk()),
        ps="https://ps.example",
    )
    token = mint_token(claims, ap_signer)
    keys = StaticKeyResolver({(AP, DWK_AGENT): (ap_signer.public_jwk(),)})
    request = HttpRequest(method="GET", url=URL, headers={"Accept": "application/json"})

    def signed_request() -> HttpRequest:
        added = sign_aauth_request(request, crypto_signer, token=token, created=NOW)
        return HttpRequest(method="GET", url=URL, headers=request.headers.with_fields(added))

    signed = signed_request()
    cold = RequestVerifier(keys=keys, audience="https://resource.example")

    # Cold: every request brings a token the verifier has not seen (a new jti each), from
    # the same agent key; and the worst case, a new agent key each time as well.
    def distinct(count: int, new_keys: bool) -> list[HttpRequest]:
        out = []
        for i in range(count):
            agent = CryptographySigner.generate("Ed25519") if new_keys else crypto_signer
            fresh = mint_token(
                AgentTokenClaims(
                    iss=AP,
                    dwk=DWK_AGENT,
                    jti=f"bench-{new_keys}-{i:06d}",
                    iat=NOW - 60,
                    exp=NOW + 3600,
                    sub=AgentId.parse(
                        f"aauth:agent-{i}@agent.example"
                        if new_keys
                        else "aauth:assistant@agent.example"
                    ),
                    cnf=Confirmation(jwk=agent.public_jwk()),
                    ps="https://ps.example",
                ),
                ap_signer,
            )
            added = sign_aauth_request(request, agent, token=fresh, created=NOW)
            out.append(
                HttpRequest(method="GET", url=URL, headers=request.headers.with_fields(added))
            )
        return out

    known_key = distinct(512, new_keys=False)
    new_agents = distinct(8192, new_keys=True)
    cycle_known = _cycler(known_key)
    cycle_new = _cycler(new_agents)
    warm = RequestVerifier(
        keys=keys, audience="https://resource.example", cache=VerifiedTokenCache()
    )
    warm.verify(signed, now=NOW)  # fill the cache
    base = cold.verify(signed, now=NOW).signature.base.encode()
    raw_sig = crypto_key.sign(base)
    nacl_sig = nacl.bindings.crypto_sign(base, sk)[:64]
    sm = nacl_sig + base

    jws_api = pyjwt.PyJWS()
    jws_api.register_algorithm("Ed25519", OKPAlgorithm())
    ap_pub = ap_signer.private_key.public_key()
    ap_jwk = ap_signer.public_jwk()
    sig_key_header = signed.headers.get("signature-key") or ""
    sig_input_header = signed.headers.get("signature-input") or ""

    # Verifying the same message over and over runs faster than a stream of different
    # ones (CPU caches; measured at about 5 %), so the cold rows, which verify a
    # different token and request each time, are compared with raw verification of a
    # stream of different messages of the same size.
    distinct_sm = [
        nacl.bindings.crypto_sign(bytes([i % 256]) * 7 + base[7:], sk) for i in range(512)
    ]
    cycle_sm = _cycler(distinct_sm)

    extra: list[Operation] = []
    closers: list[Any] = []
    missing = pkcs11_ops.unavailable()
    if missing is None:
        software = {
            Alg.ED25519: crypto_signer,
            Alg.ES256: CryptographySigner.generate("ES256"),
            Alg.PS256: CryptographySigner.generate("PS256"),
        }
        extra, store = pkcs11_ops.build(request, token, NOW, software, sodium_signer)
        closers.append(store)
    else:
        print(f"PKCS#11 rows left out: {missing}", file=sys.stderr)

    raw_sign_c = "raw Ed25519 sign (cryptography)"
    raw_sign_n = "raw Ed25519 sign (PyNaCl)"
    raw_verify_c = "raw Ed25519 verify (cryptography)"
    raw_verify_n = "raw Ed25519 verify (PyNaCl)"
    raw_verify_stream = "raw Ed25519 verify (PyNaCl), a different message each time"
    # The resource side as deployed (benchmarks/resource_ops.py), same request, same baseline
    # as the warm verify row.
    resource_rows, resource_closers = resource_ops.build(
        signed=signed,
        keys=keys,
        audience="https://resource.example",
        now=NOW,
        baseline=raw_verify_n,
    )
    closers.extend(resource_closers)
    # The agent side (benchmarks/agent_ops.py): the same agent key and token as the
    # cryptography sign row, against the same baseline.
    agent_rows, agent_closers = agent_ops.build(
        signer=crypto_signer, token=token, keys=keys, url=URL, now=NOW, baseline=raw_sign_c
    )
    closers.extend(agent_closers)
    return [
        Operation(raw_sign_c, lambda: crypto_key.sign(base), group="primitive"),
        Operation(raw_sign_n, lambda: nacl.bindings.crypto_sign(base, sk), group="primitive"),
        Operation(raw_verify_c, lambda: crypto_pub.verify(raw_sig, base), group="primitive"),
        Operation(raw_verify_n, lambda: nacl.bindings.crypto_sign_open(sm, pk), group="primitive"),
        Operation(
            raw_verify_stream,
            lambda: nacl.bindings.crypto_sign_open(cycle_sm(), pk),
            group="primitive",
        ),
        Operation(
            "AAuth request sign (cryptography)",
            lambda: sign_aauth_request(request, crypto_signer, token=token, created=NOW),
            baseline=raw_sign_c,
            group="aauth",
        ),
        Operation(
            "AAuth request sign (PyNaCl)",
            lambda: sign_aauth_request(request, sodium_signer, token=token, created=NOW),
            baseline=raw_sign_n,
            group="aauth",
        ),
        Operation(
            "AAuth request verify, warm (cached token)",
            lambda: warm.verify(signed, now=NOW),
            baseline=raw_verify_n,
            group="aauth",
        ),
        Operation(
            "AAuth request verify, cold (token verified)",
            lambda: cold.verify(cycle_known(), now=NOW),
            baseline=raw_verify_stream,
            group="aauth",
        ),
        Operation(
            "AAuth request verify, cold, new agent key each time",
            lambda: cold.verify(cycle_new(), now=NOW),
            baseline=raw_verify_stream,
            group="aauth",
        ),
        *agent_rows,
        *resource_rows,
        Operation(
            "agent token decode + verify (ours)",
            lambda: verify_jws(decode_compact(token), ap_jwk),
            baseline=raw_verify_n,
            group="jose",
        ),
        Operation(
            "agent token decode + verify (PyJWT 2)",
            lambda: jws_api.decode_complete(token, ap_pub, algorithms=["Ed25519"]),
            baseline=raw_verify_c,
            group="jose",
        ),
        Operation(
            "Signature-Key parse, fast path",
            lambda: parse_fast(sig_key_header, "sig"),
            group="parse",
        ),
        Operation(
            "Signature-Key parse, full (http-sf)",
            lambda: parse_full(sig_key_header, "sig"),
            group="parse",
        ),
        Operation(
            "Signature-Input parse, fast path",
            lambda: parse_signature_input(sig_input_header),
            group="parse",
        ),
        Operation(
            "Signature-Input parse, full (http-sf)",
            lambda: parse_signature_input_full(sig_input_header),
            group="parse",
        ),
        *extra,
    ], closers


def _cycler(items: list[Any]) -> Any:
    """Endless round-robin over ``items`` with the least per-call overhead."""
    state = {"i": 0}
    n = len(items)

    def next_item() -> Any:
        i = state["i"]
        state["i"] = i + 1 if i + 1 < n else 0
        return items[i]

    return next_item


def one_run(rounds: int, seconds: float) -> list[dict[str, object]]:
    ops, closers = build_operations()
    try:
        run_rounds(ops, rounds=rounds, seconds_per_op=seconds)
    finally:
        for closer in closers:
            closer.close()
    return summarise(ops)


def combine(runs: list[list[dict[str, object]]]) -> list[dict[str, object]]:
    """Medians over runs, operation by operation."""
    out = []
    for i, row in enumerate(runs[0]):
        rows = [run[i] for run in runs]
        merged = dict(row)
        for key in ("ops_per_s", "us_per_op", "ratio"):
            if key in row:
                merged[key] = round(statistics.median(float(r[key]) for r in rows), 3)  # type: ignore[arg-type]
        if "ratio" in row:
            merged["ratios_per_run"] = [r["ratio"] for r in rows]
        out.append(merged)
    return out


def verdicts(rows: list[dict[str, object]]) -> list[str]:
    lines = []
    for row in rows:
        target = TARGETS.get(str(row["operation"]))
        if target is not None:
            ratio = float(row["ratio"])  # type: ignore[arg-type]
            mark = "meets" if ratio >= target else "MISSES"
            lines.append(
                f"- {row['operation']}: {ratio:.3f} of {row['baseline']} ({mark} ≥ {target})"
            )
    return lines


def environment() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cryptography": cryptography.__version__,
        "pynacl": nacl.__version__,
        "pyjwt": pyjwt.__version__,
        "http-sf": getattr(http_sf, "__version__", "?"),
    }


def write_docs(rows: list[dict[str, object]], command: str, runs: int) -> None:
    path = ROOT / "docs" / "benchmarks.md"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    env = environment()
    block = "\n".join(
        [
            start,
            f"Command: `{command}` — {runs} run(s), each the median of interleaved rounds; "
            "the figures below are the medians of the runs.",
            f"Measured {dt.date.today().isoformat()} on {env['machine']}, Python {env['python']}, "
            f"cryptography {env['cryptography']}, PyNaCl {env['pynacl']}, PyJWT {env['pyjwt']}.",
            "",
            table(rows),
            "",
            "Targets (issues 2 and 3):",
            *verdicts(rows),
            "",
            "Ratios per run: "
            + "; ".join(
                f"{r['operation']}: {r['ratios_per_run']}" for r in rows if "ratios_per_run" in r
            ),
            end,
        ]
    )
    if start in text and end in text:
        head, rest = text.split(start, 1)
        tail = rest.split(end, 1)[1]
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    import logging

    import structlog

    # The benchmark is an application: it keeps the backends' key events off the output.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.25, help="per operation per round")
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    parser.add_argument("--json-out", default=str(ROOT / "benchmarks" / "results" / "latest.json"))
    args = parser.parse_args(argv)
    runs = []
    for i in range(args.runs):
        rows = one_run(args.rounds, args.seconds)
        print(f"run {i + 1}/{args.runs}", file=sys.stderr)
        runs.append(rows)
    combined = combine(runs)
    print(table(combined))
    print()
    print("\n".join(verdicts(combined)))
    out = Path(args.json_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {"environment": environment(), "runs": runs, "median": combined}
    out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"\nJSON: {out}", file=sys.stderr)
    if args.write_docs:
        command = (
            "make bench"
            if args.runs == 3
            else "python -m benchmarks.run " + " ".join(argv or sys.argv[1:])
        )
        write_docs(combined, command, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
