from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT.parent / "shared" / "vectors"
LOCAL_VECTORS = Path(__file__).resolve().parent / "vectors"


def load_vector(relative: str) -> Any:
    """Read a vector file from ``tests/vectors`` (copied verbatim from
    ``../shared/vectors`` with their PROVENANCE files), else from the shared folder."""
    for base in (LOCAL_VECTORS, VECTORS):
        path = base / relative
        if path.exists():
            return json.loads(path.read_text(encoding="utf-8"))
    pytest.fail(f"vector file {relative} not found under {VECTORS} or {LOCAL_VECTORS}")


def _hypothesis_profiles() -> None:
    """No per-example deadline (a shared machine stalls now and then); in CI the
    examples are derandomised, so a run cannot turn red by chance alone."""
    import os

    from hypothesis import settings

    settings.register_profile("default", deadline=None)
    settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
    settings.load_profile("ci" if os.environ.get("CI") else "default")


_hypothesis_profiles()
