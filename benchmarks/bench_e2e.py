"""End to end on the embedded broker, one run, same data: this project's worker (JSON and
frames), a naive per-event Faust agent with a Faust table, and the raw confluent-kafka
batch consume + decode ceiling. Also worker RSS, checkpoint cost, and scaling from 1 to 4
partitions and from 1 to 2 workers.

Rates are measured from the first consumed event until every partition's last event is
*checkpointed and committed* (state written, offset committed), so start-up and group joins are not
counted and checkpoints are. Events are small JSON objects (~180 bytes) of 12 Zipf-skewed labels.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import orjson

from devtools.broker import EmbeddedBroker, free_port
from devtools.supervise import WorkerProcess, processed_all
from streamproc.decode.frames import encode_frame
from streamproc.worker.loop import consumer_config

from .common import write_result


def make_events(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    p = 1 / np.arange(1, 13) ** 1.2
    labels = rng.choice(12, n, p=p / p.sum())
    feats = rng.normal(size=(n, 4)).round(4)
    ts0 = time.time() - n * 0.001
    return labels, feats, ts0


def produce_json(bootstrap: str, topic: str, n: int, seed: int = 0) -> dict[int, int]:
    from confluent_kafka import Producer

    labels, feats, ts0 = make_events(n, seed)
    prod = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 2_000_000,
        }
    )
    last: dict[int, int] = {}

    def cb(err, msg):
        if err is None:
            last[msg.partition()] = max(last.get(msg.partition(), -1), msg.offset())

    fl = feats.tolist()
    for i in range(n):
        v = orjson.dumps(
            {
                "id": f"e{seed}-{i}",
                "ts": ts0 + i * 0.001,
                "label": f"label_{labels[i]:02d}",
                "features": fl[i],
                "payload": {"u": i % 1000},
            }
        )
        prod.produce(topic, v, key=str(i).encode(), on_delivery=cb)
        if i % 10_000 == 0:
            prod.poll(0)
    prod.flush(120)
    return {p: o + 1 for p, o in last.items()}


def produce_frames(
    bootstrap: str, topic: str, n: int, rows: int = 2_000, seed: int = 1
) -> dict[int, int]:
    from confluent_kafka import Producer

    labels, feats, ts0 = make_events(n, seed)
    prod = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 20, "message.max.bytes": 10_000_000}
    )
    last: dict[int, int] = {}

    def cb(err, msg):
        if err is None:
            last[msg.partition()] = max(last.get(msg.partition(), -1), msg.offset())

    names = [f"label_{i:02d}" for i in range(12)]
    for k, lo in enumerate(range(0, n, rows)):
        sl = slice(lo, lo + rows)
        f = encode_frame(
            ts0 + np.arange(lo, min(n, lo + rows)) * 0.001,
            [names[x] for x in labels[sl]],
            feats[sl],
            ids=[f"f{seed}-{i}" for i in range(lo, min(n, lo + rows))],
        )
        prod.produce(topic, f, key=str(k).encode(), on_delivery=cb)
        prod.poll(0)
    prod.flush(120)
    return {p: o + 1 for p, o in last.items()}


def raw_ceiling(bootstrap: str, topic: str, n: int) -> float:
    from confluent_kafka import Consumer

    c = Consumer(consumer_config(bootstrap, f"raw-{time.time_ns()}"))
    c.subscribe([topic])
    got, t0 = 0, None
    while got < n:
        msgs = c.consume(10_000, 1.0)
        if msgs and t0 is None:
            t0 = time.perf_counter()
        for m in msgs:
            if m.error() is None:
                orjson.loads(m.value())
                got += 1
    dt = time.perf_counter() - t0
    c.close()
    return n / dt


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_workers(
    bootstrap: str,
    topic: str,
    partitions: int,
    next_offsets: dict[int, int],
    root: Path,
    n_workers: int = 1,
    broker_pid: int | None = None,
    defaults: bool = False,
) -> dict:
    run = f"{topic}-{n_workers}" + ("-defaults" if defaults else "")
    env = {
        "STRATA_EVENTS_TOPIC": topic,
        "STRATA_DLQ_TOPIC": f"{topic}-dlq",
        "STRATA_SNAPSHOTS_TOPIC": f"{topic}-snapshots",
        "STRATA_DRIFT_TOPIC": f"{topic}-drift",
        "STRATA_GROUP_ID": f"g-{run}",
        "STRATA_SNAPSHOT_EVERY_S": "3600",
        "STRATA_DRIFT_ENABLED": "false",
    }
    if defaults:  # what a user runs: snapshots every 10 s, drift checks on
        del env["STRATA_SNAPSHOT_EVERY_S"], env["STRATA_DRIFT_ENABLED"]
    ws = [
        WorkerProcess(
            bootstrap,
            root / f"state-{run}-{i}",  # one state directory per worker
            root / f"snap-{run}",
            root / f"w-{run}-{i}.log",
            env=env,
            partitions=partitions,
        )
        for i in range(n_workers)
    ]
    try:
        for w in ws:
            w.wait_ready(120)
        pred = processed_all(next_offsets, field="committed_offset")  # durable + committed
        t0 = None
        rss = 0.0
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            sts = [w.status() or {"consumed": 0, "partitions": {}} for w in ws]
            consumed = sum(s["consumed"] for s in sts)
            if t0 is None and consumed > 0:
                t0, c0 = time.perf_counter(), consumed
                cpu0 = [_cpu_s(w.proc.pid) for w in ws]
                bcpu0 = _cpu_s(broker_pid) if broker_pid else 0.0
            rss = max(rss, sum(_rss_mb(w.proc.pid) for w in ws))
            if pred(sts):
                break
            time.sleep(0.05)
        dt = time.perf_counter() - t0
        cpu = sum(_cpu_s(w.proc.pid) for w in ws) - sum(cpu0)
        bcpu = (_cpu_s(broker_pid) - bcpu0) if broker_pid else float("nan")
        total = sum(next_offsets.values())
        metrics = urllib.request.urlopen(ws[0].url + "/metrics", timeout=5).read().decode()
        cks = float(re.search(r"^strata_checkpoint_duration_seconds_sum (\S+)", metrics, re.M)[1])
        ckn = float(re.search(r"^strata_checkpoint_duration_seconds_count (\S+)", metrics, re.M)[1])
        bn = float(re.search(r"^strata_batch_duration_seconds_count (\S+)", metrics, re.M)[1])
        bs = float(re.search(r"^strata_batch_duration_seconds_sum (\S+)", metrics, re.M)[1])
        return {
            "messages": total,
            "seconds": dt,
            "messages_per_s": (total - c0) / dt,
            # CPU the worker processes (all threads, librdkafka's included) and the broker
            # used while measured: on a shared 2-core machine the broker competes for it
            "worker_cpu_s": cpu,
            "broker_cpu_s": bcpu,
            "messages_per_worker_cpu_s": (total - c0) / cpu if cpu > 0 else float("nan"),
            "rss_mb": rss,
            "checkpoint_mean_ms": 1e3 * cks / max(ckn, 1),
            "checkpoints": ckn,
            "batches": bn,  # partition batches processed by worker 0 (whole run)
            "batch_seconds": bs,
        }
    finally:
        for w in ws:
            w.stop()


def naive_faust(bootstrap: str, topic: str, n: int, root: Path) -> float:
    port = free_port()
    env = {
        **os.environ,
        "BENCH_BROKER": f"kafka://{bootstrap}",
        "BENCH_TOPIC": topic,
        "BENCH_EXPECT": str(n),
        "BENCH_WEB_PORT": str(port),
        "BENCH_DATADIR": str(root / "naive"),
    }
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "faust",
            "-A",
            "benchmarks.faust_naive",
            "worker",
            "-l",
            "warn",
            "--web-port",
            str(port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 600
        for line in p.stdout:
            m = re.search(r"NAIVE_DONE (\S+)", line)
            if m:
                return n / float(m[1])
            if time.monotonic() > deadline:
                break
        raise RuntimeError("naive Faust baseline did not finish")
    finally:
        p.terminate()
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()


def main(n: int = 500_000, n_frames: int = 10_000_000, n_naive: int = 100_000) -> dict:
    from rich.console import Console
    from rich.table import Table

    root = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    res: dict = {"events": n}
    with EmbeddedBroker() as b:
        b.create_topics({"json4": 4, "json1": 1, "frames4": 4, "naive4": 4, "gen4": 4})
        off4 = produce_json(b.bootstrap, "json4", n)
        # the project's own generator (1% malformed, 5% multi-label, payloads), as users
        # feed it with `stratastream-dev produce`
        from devtools.produce import produce_synthetic

        gen = produce_synthetic(b.bootstrap, "gen4", n=n, malformed_frac=0.01,
                                multilabel_frac=0.05, seed=4, progress=False)  # fmt: skip
        off1 = produce_json(b.bootstrap, "json1", n // 2, seed=2)
        offf = produce_frames(b.bootstrap, "frames4", n_frames)
        produce_json(b.bootstrap, "naive4", n_naive, seed=3)
        res["raw_confluent_consume_decode"] = raw_ceiling(b.bootstrap, "json4", n)
        bp = b.pid
        res["worker_json_4p"] = run_workers(b.bootstrap, "json4", 4, off4, root, broker_pid=bp)
        res["worker_json_1p"] = run_workers(b.bootstrap, "json1", 1, off1, root, broker_pid=bp)
        res["worker_json_4p_2w"] = run_workers(
            b.bootstrap, "json4", 4, off4, root, n_workers=2, broker_pid=bp
        )
        res["worker_generator_defaults_4p"] = run_workers(
            b.bootstrap, "gen4", 4, gen.next_offsets, root, broker_pid=bp, defaults=True
        )
        res["worker_generator_off_4p"] = run_workers(
            b.bootstrap, "gen4", 4, gen.next_offsets, root, broker_pid=bp
        )
        fr = run_workers(b.bootstrap, "frames4", 4, offf, root, broker_pid=bp)
        rows_per_message = n_frames / fr["messages"]
        fr["events_per_s"] = fr["messages_per_s"] * rows_per_message
        fr["events_per_worker_cpu_s"] = fr["messages_per_worker_cpu_s"] * rows_per_message
        res["worker_frames_4p"] = fr
        res["naive_faust_agent"] = naive_faust(b.bootstrap, "naive4", n_naive, root)
    base = res["naive_faust_agent"]
    t = Table(
        title=f"end to end on the embedded broker ({n:,} JSON events, {n_frames:,} in frames)"
    )
    for c in ("pipeline", "events/s", "× naive Faust", "events per worker CPU-s"):
        t.add_column(c, justify="left" if c == "pipeline" else "right")
    wj, w1, w2 = res["worker_json_4p"], res["worker_json_1p"], res["worker_json_4p_2w"]
    rows = [
        ("naive Faust agent + table (baseline)", base, None),
        (
            "raw confluent-kafka consume + orjson decode (ceiling)",
            res["raw_confluent_consume_decode"],
            None,
        ),
        ("worker, JSON, 4 partitions, 1 worker", wj["messages_per_s"], wj),
        ("worker, JSON, 1 partition", w1["messages_per_s"], w1),
        ("worker, JSON, 4 partitions, 2 workers", w2["messages_per_s"], w2),
        (
            "worker, generator events, default settings (snapshots 10 s, drift on)",
            res["worker_generator_defaults_4p"]["messages_per_s"],
            res["worker_generator_defaults_4p"],
        ),
        (
            "worker, generator events, snapshots and drift off",
            res["worker_generator_off_4p"]["messages_per_s"],
            res["worker_generator_off_4p"],
        ),
        ("worker, frames (2,000 rows), 4 partitions", fr["events_per_s"], fr),
    ]
    res["table"] = []
    for a, v, w in rows:
        per_cpu = None
        if w is not None:
            per_cpu = w.get("events_per_worker_cpu_s", w["messages_per_worker_cpu_s"])
        res["table"].append(
            {
                "pipeline": a,
                "events_per_s": v,
                "ratio_vs_naive": v / base,
                "events_per_worker_cpu_s": per_cpu,
            }
        )
        t.add_row(a, f"{v:,.0f}", f"{v / base:.1f}", "" if per_cpu is None else f"{per_cpu:,.0f}")
    Console().print(t)
    w = res["worker_json_4p"]
    Console().print(
        f"worker RSS {w['rss_mb']:.0f} MB; checkpoint mean {w['checkpoint_mean_ms']:.1f} ms "
        f"over {w['checkpoints']:.0f} checkpoints; while measured, the broker used "
        f"{w['broker_cpu_s']:.1f} CPU-s (JSON) and {fr['broker_cpu_s']:.1f} CPU-s (frames) "
        f"beside the worker's {w['worker_cpu_s']:.1f} and {fr['worker_cpu_s']:.1f}"
    )
    print(f"wrote {write_result('e2e', res)}")
    return res


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=500_000)
    ap.add_argument("--frame-events", type=int, default=10_000_000)
    ap.add_argument("--naive-events", type=int, default=100_000)
    a = ap.parse_args()
    main(a.events, a.frame_events, a.naive_events)
