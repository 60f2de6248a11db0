"""The docs' commands and code run as written: every ``sh`` block of the guides (in a
fresh directory, with the project's ``aauth`` on PATH) and every ``python`` block (in order,
in one namespace). ``make`` lines are the two set-up commands CI runs itself."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from softhsm import missing_reason, require_softhsm

ROOT = Path(__file__).resolve().parent.parent
GUIDES = sorted((ROOT / "docs").rglob("*.md"))
BLOCK = re.compile(r"```(sh|python)\n(.*?)```", re.DOTALL)


def blocks(path: Path, kind: str) -> list[str]:
    # Blocks inside list items are indented: dedent them as markdown does.
    text = path.read_text(encoding="utf-8")
    return [textwrap.dedent(body) for lang, body in BLOCK.findall(text) if lang == kind]


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: str(p.relative_to(ROOT / "docs")))
def test_shell_blocks_run(guide: Path, tmp_path: Path) -> None:
    scripts = [b for b in blocks(guide, "sh") if not b.lstrip().startswith("make ")]
    if not scripts:
        return
    if any("softhsm2-util" in s for s in scripts):
        require_softhsm()  # skips with one reason, or fails under AAUTH_REQUIRE_SOFTHSM=1
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    for script in scripts:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"{guide.name}:\n{script}\n--- stderr:\n{done.stderr}"
        assert "Traceback" not in done.stderr


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: str(p.relative_to(ROOT / "docs")))
def test_python_blocks_run(guide: Path) -> None:
    namespace: dict[str, object] = {"__name__": "docs"}
    for code in blocks(guide, "python"):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, str(guide), "exec"), namespace)


def test_getting_started_prints_what_it_says() -> None:
    namespace: dict[str, object] = {"__name__": "docs"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for code in blocks(ROOT / "docs" / "getting-started.md", "python"):
            exec(compile(code, "getting-started.md", "exec"), namespace)
    text = out.getvalue()
    assert 'sig=("@method" "@authority" "@path" "signature-key");created=' in text
    assert "aauth:assistant@agent.example aa-agent+jwt" in text
    assert "401 {'Signature-Error': 'error=invalid_signature'}" in text
    assert "expired_jwt expired_presented_token" in text


def test_cli_tour_script_runs() -> None:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "cli-tour.sh")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "invalid_signature" in done.stdout
    if missing_reason() is None or os.environ.get("AAUTH_REQUIRE_SOFTHSM") == "1":
        assert "hardware token: ES256 key on SoftHSM2 signed a request: VALID" in done.stdout
    assert "expired_jwt" in done.stdout
