"""``make run``: the whole product on one machine, with progress and a summary.

Starts the embedded broker, one worker (a Faust app, as a child process), and the
synthetic producer (Zipf-skewed labels, rare labels, multi-label events, a drift and a
fraction of malformed events); shows a live per-label table fed by the worker's
``/status``; asks for a snapshot once the worker has processed everything produced, and
prints a summary.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from devtools.broker import EmbeddedBroker
from devtools.produce import ProduceReport, produce_synthetic
from devtools.supervise import WorkerProcess, processed_all
from snapshot_format import read_manifest
from stratastream.errors import StratastreamError
from streamproc.settings import Settings, flag_values


def _table(st: dict | None, produced: int, total: int, t0: float) -> Table:
    t = Table(
        title=f"stratastream demo — produced {produced:,}/{total:,} events, "
        f"{time.monotonic() - t0:.0f}s"
    )
    for c in ("label", "seen", "retained (sum over partitions)"):
        t.add_column(c, justify="right" if c != "label" else "left")
    if st:
        seen = st.get("labels", {}).get("seen", {})
        kept = st.get("labels", {}).get("retained_per_partition_sum", {})
        for lab in sorted(seen, key=lambda x: -seen[x]):
            t.add_row(lab, f"{seen[lab]:,}", f"{kept.get(lab, 0):,}")
        t.caption = (
            f"consumed {st['consumed']:,} · dead-lettered {st['rejected']:,} · "
            f"checkpoints {st['checkpoints']} · snapshots {len(st['snapshots'])}"
        )
    return t


def run_demo(a: argparse.Namespace) -> int:
    console = Console()
    s = Settings.load(getattr(a, "config", None), **flag_values(a))
    root = Path(".run") / "demo"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    console.print("[bold]Stratastream demo[/]: embedded broker + worker + synthetic producer")
    with EmbeddedBroker(log_dir=root / "broker") as broker:
        broker.create_topics(
            {s.events_topic: s.partitions, s.dlq_topic: 1, s.snapshots_topic: 1, s.drift_topic: 1}
        )
        console.print(f"broker (Tansu) on {broker.url}")
        worker = WorkerProcess(
            broker.bootstrap,
            root / "state",
            root / "snapshots",
            root / "worker.log",
            partitions=s.partitions,
            env={"STRATA_SNAPSHOT_EVERY_S": "3", "STRATA_DRIFT_EVERY_S": "2"},
        )
        trainer = None
        try:
            worker.wait_ready(90)
            console.print(f"worker up, web on {worker.url} (log: {root / 'worker.log'})")
            trainer = _start_trainer(broker.bootstrap, s, root)
            console.print(
                f"trainer following topic {s.snapshots_topic!r} (log: {root / 'trainer.log'})"
            )
            rep: list[ProduceReport] = []
            err: list[BaseException] = []

            def produce() -> None:
                try:
                    rep.append(
                        produce_synthetic(
                            broker.bootstrap,
                            s.events_topic,
                            n=a.events,
                            n_labels=a.labels,
                            feature_dim=s.feature_dim,
                            malformed_frac=a.malformed,
                            drift_at=a.drift_at,
                            seed=0,
                            progress=False,
                            rate=a.rate,
                        )
                    )
                except BaseException as e:  # noqa: BLE001 - reported below
                    err.append(e)

            th = threading.Thread(target=produce, daemon=True)
            t0 = time.monotonic()
            th.start()
            st = None
            with Live(_table(None, 0, a.events, t0), console=console, refresh_per_second=4) as live:
                while True:
                    st = worker.status() or st
                    done = rep[0].events if rep else (st or {}).get("consumed", 0)
                    live.update(_table(st, min(done, a.events), a.events, t0))
                    if err:
                        raise err[0]
                    if rep and st and processed_all(rep[0].next_offsets)([st]):
                        break
                    worker._check_alive()
                    time.sleep(0.25)
            n_before = len(st["snapshots"])
            worker.request_snapshot()
            st = worker.wait_until(
                lambda x: len(x["snapshots"]) > n_before, 60, "the final snapshot"
            )
            models = _wait_for_model(root / "registry", st["snapshots"][-1], trainer, 300)
            _summary(console, rep[0], st, root / "snapshots", time.monotonic() - t0)
            _models(console, models, root / "registry")
        finally:
            worker.stop()
            if trainer is not None:
                trainer.terminate()
                trainer.wait(30)
    console.print(
        f"\n[bold]Next[/]: everything is under {root}/ — try\n"
        f"  source .venv/bin/activate\n"
        f"  streamproc snapshot list --snapshot-dir {root / 'snapshots'}\n"
        f"  trainer registry list --registry {root / 'registry'}"
    )
    return 0


def _start_trainer(bootstrap: str, s: Settings, root: Path) -> subprocess.Popen:
    """The trainer runs as its own process and knows only the snapshot format."""
    log = open(root / "trainer.log", "ab")  # noqa: SIM115 - owned by the child
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trainer.cli",
            "follow",
            "--broker",
            f"kafka://{bootstrap}",
            "--snapshots-topic",
            s.snapshots_topic,
            "--drift-topic",
            s.drift_topic,
            "--snapshot-dir",
            str(root / "snapshots"),
            "--registry",
            str(root / "registry"),
            "--epochs",
            "8",
            "--device",
            "auto",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _registry_entries(reg: Path) -> list[dict]:
    out = []
    for meta in (reg / "models").glob("*/meta.json"):
        try:
            out.append(json.loads(meta.read_text()))
        except (OSError, ValueError):
            continue
    return sorted(out, key=lambda m: m["created_at"])


def _wait_for_model(reg: Path, version: str, trainer: subprocess.Popen, timeout: float) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        models = _registry_entries(reg)
        if any(m["snapshot_version"] == version for m in models):
            return models
        if trainer.poll() is not None:
            raise StratastreamError(
                f"trainer exited with code {trainer.returncode}; see {reg.parent / 'trainer.log'}"
            )
        time.sleep(0.5)
    raise StratastreamError(f"no model trained on snapshot {version} within {timeout:.0f}s")


def _models(console: Console, models: list[dict], reg: Path) -> None:
    promoted = (reg / "PROMOTED").read_text().strip() if (reg / "PROMOTED").exists() else None
    t = Table(title="models (trainer registry)")
    for c in ("model", "trigger", "rows", "macro-F1", "vs promoted, same data", "state"):
        t.add_column(c, justify="right" if c in ("rows", "macro-F1") else "left")
    for m in models:
        prev = m.get("previous_f1_same_data")
        t.add_row(
            m["id"],
            m["trigger"],
            f"{m['rows']['train'] + m['rows']['eval']:,}",
            f"{m['metrics']['macro_f1']:.4f}",
            "-" if prev is None else f"{prev:.4f}",
            "PROMOTED" if m["id"] == promoted else "",
        )
    console.print(t)


def _summary(console: Console, rep: ProduceReport, st: dict, store: Path, secs: float) -> None:
    m = read_manifest(store, st["snapshots"][-1])
    t = Table(title="summary")
    t.add_column("what")
    t.add_column("value", justify="right")
    bad = sum(rep.malformed.values())
    t.add_row("events produced (valid + malformed)", f"{rep.events:,} + {bad:,}")
    t.add_row("events accepted by the worker", f"{m.counters['accepted']:,}")
    t.add_row("dead-lettered (events-dlq)", f"{st['rejected']:,}  {dict(st['dlq_by_reason'])}")
    t.add_row("seen == produced, per label", str(m.seen == dict(rep.per_label)))
    t.add_row("snapshot versions", ", ".join(st["snapshots"][-4:]))
    t.add_row("latest snapshot rows", f"{m.rows:,} ({len(m.retained)} labels)")
    t.add_row("balance ratio (min/max retained)", f"{m.balance_ratio:.2f}")
    raw = min(rep.per_label.values()) / max(rep.per_label.values())
    t.add_row("balance ratio of the raw stream", f"{raw:.3f}")
    drift = st.get("drift", {})
    t.add_row("drift actions", ", ".join(f"{k}: {v}" for k, v in sorted(drift.items())) or "none")
    t.add_row("wall time", f"{secs:.1f}s")
    console.print(t)
