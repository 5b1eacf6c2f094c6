"""Ingest throughput with snapshots at the default cadence, against the same worker with
snapshots off, in one run on the same data (the case where snapshots used to starve
ingestion: 50 labels filling the default 100k global cap).

Events arrive as frames of 2,000 rows (so the broker is not the bottleneck), 50 labels of
equal frequency, default worker settings except the topic names; the rate is measured
from the first consumed event until every partition's last event is checkpointed and
committed. Reported: events/s with and without snapshots, their ratio, the snapshots
taken and their export/build times from the worker's metrics.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from devtools.broker import EmbeddedBroker
from devtools.supervise import WorkerProcess, processed_all
from streamproc.decode.frames import encode_frame

from .common import write_result


def produce(bootstrap: str, topic: str, n: int, labels: int, rows: int = 2_000) -> dict:
    from confluent_kafka import Producer

    rng = np.random.default_rng(0)
    lab = rng.integers(0, labels, n)
    feats = rng.normal(size=(n, 4)).round(4)
    names = [f"label_{i:02d}" for i in range(labels)]
    prod = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                     "message.max.bytes": 10_000_000})  # fmt: skip
    last: dict[int, int] = {}

    def cb(err, msg):
        if err is None:
            last[msg.partition()] = max(last.get(msg.partition(), -1), msg.offset())

    ts0 = time.time() - n * 1e-4
    for k, lo in enumerate(range(0, n, rows)):
        hi = min(n, lo + rows)
        f = encode_frame(ts0 + np.arange(lo, hi) * 1e-4, [names[x] for x in lab[lo:hi]],
                         feats[lo:hi], ids=[f"e{i}" for i in range(lo, hi)])  # fmt: skip
        prod.produce(topic, f, key=str(k).encode(), on_delivery=cb)
        prod.poll(0)
    prod.flush(120)
    return {p: o + 1 for p, o in last.items()}


def _metric(text: str, pattern: str) -> float:
    m = re.search(pattern, text, re.M)
    return float(m[1]) if m else 0.0


def run(bootstrap: str, topic: str, offsets: dict, root: Path, snapshots: bool) -> dict:
    env = {
        "STRATA_EVENTS_TOPIC": topic,
        "STRATA_DLQ_TOPIC": f"{topic}-dlq",
        "STRATA_SNAPSHOTS_TOPIC": f"{topic}-snapshots-{snapshots}",
        "STRATA_DRIFT_TOPIC": f"{topic}-drift",
        "STRATA_GROUP_ID": f"g-{topic}-{snapshots}",
        "STRATA_DRIFT_ENABLED": "false",
    }
    if not snapshots:
        env["STRATA_SNAPSHOT_EVERY_S"] = "86400"
    tag = "on" if snapshots else "off"
    w = WorkerProcess(bootstrap, root / f"state-{tag}", root / f"snap-{tag}",
                      root / f"w-{tag}.log", env=env, partitions=len(offsets))  # fmt: skip
    try:
        w.wait_ready(120)
        pred = processed_all(offsets, field="committed_offset")
        t0 = c0 = None
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            st = w.status() or {"consumed": 0, "partitions": {}}
            if t0 is None and st["consumed"] > 0:
                t0, c0 = time.perf_counter(), st["consumed"]
            if pred([st]):
                break
            time.sleep(0.05)
        dt = time.perf_counter() - t0
        m = urllib.request.urlopen(w.url + "/metrics", timeout=5).read().decode()
        st = w.status()
        rows = int(sum(st["labels"]["seen"].values()))
        return {
            "seconds": dt,
            "events": rows,
            "events_per_s": rows * (1 - c0 / sum(offsets.values())) / dt,
            "snapshots": len(st["snapshots"]),
            "skipped": _metric(m, r"^strata_snapshots_skipped_total (\S+)"),
            "export_s_mean": _metric(
                m, r'^strata_snapshot_duration_seconds_sum\{stage="export"\} (\S+)'
            )
            / max(
                1.0, _metric(m, r'^strata_snapshot_duration_seconds_count\{stage="export"\} (\S+)')
            ),
            "build_s_mean": _metric(
                m, r'^strata_snapshot_duration_seconds_sum\{stage="build"\} (\S+)'
            )
            / max(
                1.0, _metric(m, r'^strata_snapshot_duration_seconds_count\{stage="build"\} (\S+)')
            ),
        }
    finally:
        w.stop()


def main(n: int = 60_000_000, labels: int = 50) -> dict:
    root = Path(tempfile.mkdtemp(prefix="bench-cadence-"))
    with EmbeddedBroker() as b:
        b.create_topics({"cadence": 4})
        offsets = produce(b.bootstrap, "cadence", n, labels)
        off = run(b.bootstrap, "cadence", offsets, root, snapshots=False)
        on = run(b.bootstrap, "cadence", offsets, root, snapshots=True)
    res = {
        "events": n,
        "labels": labels,
        "snapshots_off": off,
        "snapshots_default_cadence": on,
        "ratio_on_vs_off": on["events_per_s"] / off["events_per_s"],
    }
    print(
        f"{n:,} events, {labels} labels: {off['events_per_s']:,.0f} events/s without "
        f"snapshots, {on['events_per_s']:,.0f} with snapshots every 10 s "
        f"({res['ratio_on_vs_off']:.2f}x; {on['snapshots']} snapshots, {on['skipped']:.0f} "
        f"ticks skipped, export {on['export_s_mean']:.2f} s and build "
        f"{on['build_s_mean']:.2f} s on average)"
    )
    print(f"wrote {write_result('snapshot_cadence', res)}")
    return res


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=60_000_000)
    ap.add_argument("--labels", type=int, default=50)
    a = ap.parse_args()
    main(a.events, a.labels)
