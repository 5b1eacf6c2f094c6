"""Memory under a long run: one worker with default settings (snapshots every 10 s,
drift on) takes 10M events (frames of 2,000 rows, 50 labels filling the default 100k
cap, 4 partitions); its RSS is sampled every 0.25 s against the events consumed.

Reported: peak RSS, steady-state RSS (median over the second half of the run), and the
growth per million events over the second half (least-squares slope): a worker whose
memory is bounded by its settings shows a flat second half. Disk too, sampled every
2 s: the state directory (RocksDB stores: records, WAL, logs) and the snapshot store
(retained versions and shards), peak and at the end -- the figures behind the README's
disk sizing.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from devtools.broker import EmbeddedBroker
from devtools.supervise import WorkerProcess, processed_all

from .bench_snapshot_cadence import produce
from .common import write_result


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _du_mb(path: Path) -> float:
    total = 0
    for p in path.rglob("*"):
        try:
            if p.is_file():
                total += p.stat().st_size
        except OSError:  # removed while walking
            continue
    return total / 2**20


def main(n: int = 10_000_000, labels: int = 50) -> dict:
    root = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    with EmbeddedBroker() as b:
        b.create_topics({"soak": 4})
        offsets = produce(b.bootstrap, "soak", n, labels)
        env = {"STRATA_EVENTS_TOPIC": "soak", "STRATA_DLQ_TOPIC": "soak-dlq",
               "STRATA_SNAPSHOTS_TOPIC": "soak-snapshots", "STRATA_DRIFT_TOPIC": "soak-drift",
               "STRATA_GROUP_ID": "soak"}  # fmt: skip
        w = WorkerProcess(b.bootstrap, root / "state", root / "snaps", root / "w.log",
                          env=env, partitions=4)  # fmt: skip
        samples: list[tuple[float, int, float]] = []  # (seconds, consumed rows, RSS MB)
        disk: list[tuple[float, float, float]] = []  # (seconds, state MB, snapshot store MB)
        try:
            w.wait_ready(120)
            pred = processed_all(offsets, field="committed_offset")
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < 900:
                st = w.status()
                if st is not None:
                    rows = int(sum(st["labels"]["seen"].values())) if st["labels"] else 0
                    samples.append((time.perf_counter() - t0, rows, _rss_mb(w.proc.pid)))
                    if pred([st]):
                        break
                now = time.perf_counter() - t0
                if not disk or now - disk[-1][0] >= 2.0:
                    disk.append((now, _du_mb(root / "state"), _du_mb(root / "snaps")))
                time.sleep(0.25)
            disk.append((time.perf_counter() - t0, _du_mb(root / "state"), _du_mb(root / "snaps")))
            snapshots = len((w.status() or {}).get("snapshots", []))
        finally:
            w.stop()
    t, rows, rss = (np.array(c, dtype=float) for c in zip(*samples, strict=True))
    half = rows >= rows[-1] / 2
    slope = float(np.polyfit(rows[half] / 1e6, rss[half], 1)[0]) if half.sum() > 2 else 0.0
    res = {
        "events": int(rows[-1]),
        "seconds": float(t[-1]),
        "snapshots": snapshots,
        "rss_peak_mb": float(rss.max()),
        "rss_steady_mb": float(np.median(rss[half])),
        "rss_growth_mb_per_million_events": slope,
        "state_dir_peak_mb": max(d[1] for d in disk),
        "state_dir_end_mb": disk[-1][1],
        "snapshot_store_peak_mb": max(d[2] for d in disk),
        "snapshot_store_end_mb": disk[-1][2],
        "samples": [
            [float(a), int(b_), float(c)] for a, b_, c in samples[:: max(1, len(samples) // 200)]
        ],
    }
    print(
        f"{res['events']:,} events in {res['seconds']:.0f} s, {snapshots} snapshots: RSS peak "
        f"{res['rss_peak_mb']:.0f} MB, steady {res['rss_steady_mb']:.0f} MB, growth "
        f"{slope:+.1f} MB per million events over the second half; state dir peak "
        f"{res['state_dir_peak_mb']:.0f} MB (end {res['state_dir_end_mb']:.0f}), snapshot "
        f"store peak {res['snapshot_store_peak_mb']:.0f} MB "
        f"(end {res['snapshot_store_end_mb']:.0f})"
    )
    print(f"wrote {write_result('soak', res)}")
    return res


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--labels", type=int, default=50)
    a = ap.parse_args()
    main(a.events, a.labels)
