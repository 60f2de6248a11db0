"""`make demo`, the main job: four server processes and an agent in every access mode.

It runs exactly as a user runs it (scripts/demo.sh), over real HTTPS between real
processes, and its own checks decide the exit status; here we also read what it printed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from softhsm import missing_reason

ROOT = Path(__file__).resolve().parent.parent
MODES = (
    "agent identity",
    "resource-managed (session)",
    "resource-managed, session reused",
    "person identity",
    "PS authorization, reactive (401)",
    "PS authorization, proactive",
    "deferred, consent on the PS page",
    "federated through the AS",
)


def test_make_demo_runs_every_mode_over_real_http() -> None:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "demo.sh")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, out[-4000:] + done.stderr[-2000:]
    assert "demo: 9/9 modes OK" in out
    assert "Traceback" not in out + done.stderr
    summary = out.split("== summary", 1)[1]
    for mode in MODES:
        assert f"{mode} " in summary, mode
    assert "FAIL " not in summary
    # the trace shows the requirement received, the tokens presented, the person's clicks
    assert "← 401   AAuth-Requirement: requirement=auth-token; resource-token=…" in out
    assert "token aa-auth+jwt: iss=https://as.aauth.test" in out  # federated: the AS issued
    assert "token aa-person+jwt: iss=https://ps.aauth.test" in out
    assert "person: sees the consent page and presses 'approve'" in out
    # the deferred call: held at the resource (202), completed at its pending URL
    deferred = out.split("== deferred", 1)[1].split("verdict", 1)[0]
    assert "← 202   AAuth-Requirement: requirement=auth-token; resource-token=…" in deferred
    assert "→ GET https://calendar.aauth.test/pending/" in deferred
    assert "servers stopped: ap exit 0, ps exit 0, as exit 0, resource exit 0" in out
    if missing_reason() is None or os.environ.get("AAUTH_REQUIRE_SOFTHSM") == "1":
        assert "key in SoftHSM2 token" in out


def test_without_softhsm_the_demo_agent_signs_in_software(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import aauth_flows.io.demo_stack as stack

    monkeypatch.setattr(stack, "softhsm_missing", lambda: "SoftHSM2 is not installed")
    key = stack.agent_key(tmp_path)
    assert key.where.startswith("software")
    assert key.signer.algorithm.value == "Ed25519"
    assert (tmp_path / "keys" / "agent.pem").exists()
