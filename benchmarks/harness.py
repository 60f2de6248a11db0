"""Interleaved timing: every operation is timed in every round, so a noisy neighbour
slows all of them alike and the ratios stay meaningful."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


@dataclass
class Operation:
    name: str
    fn: Callable[[], object]
    #: name of the raw primitive this operation is compared with (None for a primitive)
    baseline: str | None = None
    group: str = ""
    #: threads calling ``fn`` at once (ops/s counts the calls of all of them)
    threads: int = 1
    samples: list[float] = field(default_factory=list)  # ops/s per round


def _timed(op: Operation, n: int) -> float:
    """ops/s of ``n`` calls per thread, over the wall time all threads took."""
    fn = op.fn
    if op.threads == 1:
        start = time.perf_counter()
        for _ in range(n):
            fn()
        return n / (time.perf_counter() - start)
    barrier = threading.Barrier(op.threads + 1)
    errors: list[BaseException] = []

    def work() -> None:
        barrier.wait()
        try:
            for _ in range(n):
                fn()
        except BaseException as exc:  # reported after the join
            errors.append(exc)

    workers = [threading.Thread(target=work) for _ in range(op.threads)]
    for w in workers:
        w.start()
    barrier.wait()
    start = time.perf_counter()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return n * op.threads / elapsed


def calibrate(fn: Callable[[], object], target_seconds: float) -> int:
    """How many calls take about ``target_seconds``."""
    n = 1
    while True:
        start = time.perf_counter()
        for _ in range(n):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= 0.02:
            return max(1, int(n * target_seconds / elapsed))
        n *= 4


def run_rounds(ops: Sequence[Operation], *, rounds: int, seconds_per_op: float) -> None:
    """Time each operation once per round, in the same order every round."""
    counts = {op.name: calibrate(op.fn, seconds_per_op) for op in ops}
    for _ in range(rounds):
        for op in ops:
            op.samples.append(_timed(op, counts[op.name]))


def summarise(ops: Sequence[Operation]) -> list[dict[str, object]]:
    """Median ops/s and the median of per-round ratios to the baseline."""
    by_name = {op.name: op for op in ops}
    rows: list[dict[str, object]] = []
    for op in ops:
        row: dict[str, object] = {
            "group": op.group,
            "operation": op.name,
            "ops_per_s": round(statistics.median(op.samples), 1),
            "us_per_op": round(1e6 / statistics.median(op.samples), 2),
        }
        if op.baseline is not None:
            base = by_name[op.baseline]
            ratios = [a / b for a, b in zip(op.samples, base.samples, strict=True)]
            row["baseline"] = op.baseline
            row["ratio"] = round(statistics.median(ratios), 3)
        rows.append(row)
    return rows


def table(rows: Sequence[dict[str, object]]) -> str:
    lines = [
        "| operation | ops/s | µs/op | ratio | to |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        ratio = row.get("ratio")
        lines.append(
            f"| {row['operation']} | {row['ops_per_s']:,.0f} | {row['us_per_op']} | "
            f"{'' if ratio is None else f'{ratio:.3f}'} | {row.get('baseline', '')} |"
        )
    return "\n".join(lines)
