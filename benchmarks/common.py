"""Shared helpers of the benchmarks: timing, machine facts, result files."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

# A run's results go to .run/bench/ (untracked: `make bench` leaves the tree clean); the
# reference results the README quotes are kept in benchmarks/results/ and refreshed on
# purpose with `make bench-reference` (STRATA_BENCH_OUT=benchmarks/results).
REFERENCE = Path(__file__).resolve().parent / "results"
RESULTS = Path(
    os.environ.get("STRATA_BENCH_OUT") or Path(__file__).resolve().parents[1] / ".run" / "bench"
)


def best_of(fn: Callable[[], object], repeat: int = 3) -> float:
    """Smallest wall time of ``repeat`` runs (seconds)."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def machine() -> dict:
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.uname().machine,
    }


def write_result(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"machine": machine(), **payload}, indent=2) + "\n")
    tmp.replace(path)
    return path


def print_table(title: str, rows: list[dict], baseline: str) -> None:
    from rich.console import Console
    from rich.table import Table

    base = next(r["events_per_s"] for r in rows if r["name"] == baseline)
    t = Table(title=title)
    for col in ("implementation", "events", "seconds", "events/s", f"× {baseline}"):
        t.add_column(col, justify="right" if col != "implementation" else "left")
    for r in rows:
        t.add_row(
            r["name"],
            f"{r['events']:,}",
            f"{r['seconds']:.4f}",
            f"{r['events_per_s'] / 1e6:,.2f} M",
            f"{r['events_per_s'] / base:,.1f}",
        )
    Console().print(t)
