"""Private SoftHSM2 tokens for tests, benchmarks and demos (never for production keys).

SoftHSM2 reads its configuration (where tokens live) from ``SOFTHSM2_CONF`` when a
process first initialises the module, so a private token directory needs its own
``softhsm2.conf`` and the variable set before anything loads the module.
:class:`PrivateSoftHsm` writes both and creates tokens in that directory with
``softhsm2-util``; nothing global (``/var/lib/softhsm``) is touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

__all__ = ["SOFTHSM_MODULE", "softhsm_missing", "PrivateSoftHsm"]

#: Debian's softhsm2 package puts the module here.
SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


def softhsm_missing() -> str | None:
    """Why a private SoftHSM2 token cannot be made here, or None."""
    if shutil.which("softhsm2-util") is None:
        return "SoftHSM2 is not installed (softhsm2-util missing; apt-get install softhsm2)"
    if not os.path.exists(SOFTHSM_MODULE):
        return f"SoftHSM2 module {SOFTHSM_MODULE} is missing (apt-get install softhsm2)"
    return None


class PrivateSoftHsm:
    """A token directory of our own under ``root`` and the ``softhsm2.conf`` naming it;
    ``SOFTHSM2_CONF`` is set for this process (and the processes it starts)."""

    def __init__(self, root: Path, *, reset_on_fork: bool = False) -> None:
        self.root = root
        self.tokens = root / "tokens"
        self.tokens.mkdir(parents=True, exist_ok=True)
        self.conf = root / "softhsm2.conf"
        lines = [
            f"directories.tokendir = {self.tokens}",
            "objectstore.backend = file",
            "log.level = ERROR",
            "slots.removable = false",
            "slots.mechanisms = ALL",
        ]
        if reset_on_fork:  # a forked child re-initialises instead of using our handles
            lines.append("library.reset_on_fork = true")
        self.conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        os.environ["SOFTHSM2_CONF"] = str(self.conf)

    def util(self, *args: str) -> str:
        """Run ``softhsm2-util`` against this directory; its output, or RuntimeError."""
        done = subprocess.run(  # noqa: S603 - a fixed program, arguments from the caller
            ["softhsm2-util", *args],  # noqa: S607 - found on PATH like any tool
            env=os.environ | {"SOFTHSM2_CONF": str(self.conf)},
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        if done.returncode != 0:
            raise RuntimeError(f"softhsm2-util {args[0]} failed: {done.stderr.strip()}")
        return done.stdout

    def init_token(self, label: str, *, pin: str, so_pin: str) -> Path:
        """Create an empty token called ``label``; returns its directory."""
        before = set(self.tokens.iterdir())
        self.util("--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", so_pin)
        (directory,) = set(self.tokens.iterdir()) - before
        return directory

    def serial(self, label: str) -> str:
        """The serial number of the token called ``label``."""
        current: dict[str, str] = {}
        for line in self.util("--show-slots").splitlines():
            name, _, value = line.strip().partition(":")
            if name == "Serial number":
                current["serial"] = value.strip()
            elif name == "Label" and value.strip() == label:
                return current["serial"]
        raise RuntimeError(f"token {label} not listed")
