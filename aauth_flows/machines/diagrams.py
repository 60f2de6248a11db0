"""State diagrams generated from the transition tables (never drawn by hand).

:func:`mermaid` renders one machine's ``TRANSITIONS`` as a mermaid ``stateDiagram-v2``.
Documentation pages hold each diagram between two markers::

    <!-- diagram:AgentMachine -->
    ...generated...
    <!-- /diagram:AgentMachine -->

and :func:`refresh` rewrites what lies between them. ``python -m
aauth_flows.machines.diagrams docs/flows.md docs/flows/*.md`` refreshes pages in place;
with ``--check`` it only reports pages that are out of date (the test suite runs that).
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from aauth_flows.machines.engine import Machine

__all__ = ["mermaid", "refresh", "machine_by_name", "main"]

_MARKER = re.compile(
    r"(<!-- diagram:(?P<name>[A-Za-z_][A-Za-z0-9_.:]*) -->\n)(?P<body>.*?)(<!-- /diagram:(?P=name) -->)",
    re.DOTALL,
)


def mermaid(machine: type[Machine[Any, Any]]) -> str:
    """The machine's table as a fenced mermaid block (rows in table order; one edge per
    allowed target; the initial state marked; terminal states lead to ``[*]``)."""
    lines = ["```mermaid", "stateDiagram-v2"]
    lines.append(f"    [*] --> {machine.INITIAL.name}")
    sources = set()
    for (state, event_type), targets in machine.TRANSITIONS.items():
        sources.add(state)
        for target in sorted(targets, key=lambda s: list(machine.State).index(s)):
            lines.append(f"    {state.name} --> {target.name}: {event_type.__name__}")
    reached = {t for targets in machine.TRANSITIONS.values() for t in targets}
    for state in machine.State:
        if state in reached and state not in sources and state.name != "ERROR":
            lines.append(f"    {state.name} --> [*]")
    lines.append("```")
    return "\n".join(lines) + "\n"


def machine_by_name(name: str) -> type[Machine[Any, Any]]:
    """``module:Class`` or a bare class name of ``aauth_flows.machines``."""
    module_name, _, class_name = name.rpartition(":")
    module = importlib.import_module(module_name or "aauth_flows.machines")
    found = getattr(module, class_name, None)
    if not (isinstance(found, type) and issubclass(found, Machine)):
        raise LookupError(f"{name!r} is not a flow machine")
    return found


def refresh(text: str) -> str:
    """``text`` with every diagram block regenerated from its machine's table."""

    def render(match: re.Match[str]) -> str:
        machine = machine_by_name(match["name"])
        return f"{match.group(1)}{mermaid(machine)}{match.group(4)}"

    return _MARKER.sub(render, text)


def _pages(paths: Iterable[str]) -> list[Path]:
    return [Path(p) for p in paths]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aauth_flows.machines.diagrams")
    parser.add_argument("pages", nargs="+", help="markdown pages holding diagram markers")
    parser.add_argument("--check", action="store_true", help="report stale pages, change none")
    args = parser.parse_args(argv)
    stale = []
    for page in _pages(args.pages):
        old = page.read_text(encoding="utf-8")
        new = refresh(old)
        if new != old:
            stale.append(str(page))
            if not args.check:
                page.write_text(new, encoding="utf-8")
    if stale:
        verb = "out of date" if args.check else "refreshed"
        print(f"{verb}: {' '.join(stale)}", file=sys.stderr)  # noqa: T201 - a command's report
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    raise SystemExit(main())
