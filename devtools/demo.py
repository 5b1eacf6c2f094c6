"""``make run``: the whole product on one machine, with progress and a summary.

Starts the embedded broker, one worker (a Faust app, as a child process), the trainer
and the synthetic producer (Zipf-skewed labels, rare labels, multi-label events, a
fraction of malformed events); shows the worker warming up (numba), then a live
per-label table fed by the worker's ``/status``. The story runs in phases that do not
depend on timing: the stable stream, a snapshot that becomes the drift reference, the
drifted stream, a drift check that has seen all of it, a final snapshot and the model
trained on it; the summary reads the drift topic back to show what was detected.
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
from snapshot_format import latest_version, read_manifest
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


def _merge(reports: list[ProduceReport]) -> ProduceReport:
    out = ProduceReport()
    for r in reports:
        out.events += r.events
        out.messages += r.messages
        out.malformed.update(r.malformed)
        out.per_label.update(r.per_label)
        out.seconds += r.seconds
        for p, o in r.last_offsets.items():
            out.last_offsets[p] = max(out.last_offsets.get(p, -1), o)
    return out


def _numba_cached() -> bool:
    """Whether numba's on-disk cache already holds the worker's kernels (else the worker
    compiles them at start, about a minute here)."""
    import streamproc

    return any(Path(streamproc.__file__).parent.glob("**/__pycache__/*.nbi"))


def _wait_warm(console: Console, worker: WorkerProcess, timeout: float = 300) -> dict:
    """Wait for the worker to run, showing what it does while numba compiles."""
    what = (
        "loading numba's cached kernels"
        if _numba_cached()
        else "compiling numba kernels (first run on this machine, about a minute; "
        "cached for the next runs)"
    )
    t0 = time.monotonic()
    with console.status("") as spin:
        while True:
            worker._check_alive()
            st = worker.status()
            phase = (st or {}).get("phase", "starting")
            if phase == "running":
                break
            if time.monotonic() - t0 > timeout:
                raise StratastreamError(f"worker still {phase!r} after {timeout:.0f}s")
            doing = what if phase == "warming_up" else phase
            spin.update(f"worker: {doing} — {time.monotonic() - t0:.0f}s")
            time.sleep(0.25)
    console.print(f"worker warmed up and running after {time.monotonic() - t0:.0f}s")
    return st


def _produce_phase(console, broker, s, worker, a, n, seed, drift, total, done, t0, title):
    """Produce ``n`` events in a thread and show the live table until the worker has
    processed all of them."""
    rep: list[ProduceReport] = []
    err: list[BaseException] = []

    def produce() -> None:
        try:
            rep.append(
                produce_synthetic(
                    broker.bootstrap,
                    s.events_topic,
                    n=n,
                    n_labels=a.labels,
                    feature_dim=s.feature_dim,
                    malformed_frac=a.malformed,
                    drift_at=0.0 if drift else None,
                    seed=seed,
                    progress=False,
                    rate=a.rate,
                )  # fmt: skip
            )
        except BaseException as e:  # noqa: BLE001 - reported below
            err.append(e)

    th = threading.Thread(target=produce, daemon=True)
    th.start()
    st = None
    console.print(title)
    with Live(_table(None, done, total, t0), console=console, refresh_per_second=4) as live:
        while True:
            st = worker.status() or st
            consumed = (st or {}).get("consumed", 0)
            live.update(_table(st, min(total, max(done, consumed)), total, t0))
            if err:
                raise err[0]
            if rep and st and processed_all(rep[0].next_offsets)([st]):
                break
            worker._check_alive()
            time.sleep(0.25)
    return rep[0], st


def run_demo(a: argparse.Namespace) -> int:
    """The demo's story, in phases that do not depend on timing: events before the drift,
    a snapshot that becomes the drift reference, the drifted events, a drift check that
    has seen all of them, a final snapshot and the model trained on it."""
    console = Console()
    s = Settings.load(getattr(a, "config", None), **flag_values(a))
    root = Path(".run") / "demo"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    pre = a.events if a.drift_at is None else int(a.events * a.drift_at)
    console.print("[bold]Stratastream demo[/]: embedded broker + worker + synthetic producer")
    with EmbeddedBroker(log_dir=root / "broker") as broker:
        broker.create_topics(
            {s.events_topic: s.partitions, s.dlq_topic: 1, s.snapshots_topic: 1, s.drift_topic: 1}
        )
        console.print(f"broker (Tansu) on {broker.url}")
        # snapshots only when asked for: the drift reference stays the pre-drift snapshot
        worker = WorkerProcess(
            broker.bootstrap, root / "state", root / "snapshots", root / "worker.log",
            partitions=s.partitions,
            env={"STRATA_SNAPSHOT_EVERY_S": "3600", "STRATA_DRIFT_EVERY_S": "2"},
        )  # fmt: skip
        trainer = None
        try:
            worker.wait_ready(90)
            console.print(f"worker web on {worker.url} (log: {root / 'worker.log'})")
            _wait_warm(console, worker)
            trainer = _start_trainer(broker.bootstrap, s, root)
            console.print(
                f"trainer following topic {s.snapshots_topic!r} (log: {root / 'trainer.log'})"
            )
            t0 = time.monotonic()
            rep1, st = _produce_phase(
                console, broker, s, worker, a, pre, 0, False, a.events, 0, t0,
                f"[bold]1.[/] {pre:,} events from the stable stream",
            )  # fmt: skip
            reference = _snapshot(worker, st, root / "snapshots")
            worker.wait_until(lambda x: x.get("drift_reference") == reference, 60,
                              "the drift reference")  # fmt: skip
            console.print(f"snapshot {reference}: the drift reference, and the first model's data")
            reports, drift_started = [rep1], None
            if a.events > pre:
                drift_started = time.time()
                rep2, st = _produce_phase(
                    console, broker, s, worker, a, a.events - pre, 1, True, a.events, pre, t0,
                    f"[bold]2.[/] {a.events - pre:,} events after a drift (label mix reversed, "
                    "features shifted)",
                )  # fmt: skip
                reports.append(rep2)
                checks = st["drift_checks"]
                st = worker.wait_until(lambda x: x["drift_checks"] > checks, 60,
                                       "a drift check over every drifted event")  # fmt: skip
            final = _snapshot(worker, st, root / "snapshots")
            st = worker.status() or st
            models = _wait_for_model(root / "registry", final, trainer, 300)
            rep = _merge(reports)
            drift = _drift_story(broker.bootstrap, s.drift_topic, drift_started)
            _summary(console, rep, st, root / "snapshots", time.monotonic() - t0, final, drift)
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
        f"  trainer registry list --registry {root / 'registry'}\n"
        f"  open {root / 'snapshots' / 'drift-reports' / 'latest.html'}"
    )
    return 0


def _snapshot(worker: WorkerProcess, st: dict, store: Path) -> str:
    """A snapshot of everything processed so far (``st``): asked for, then waited for
    until the latest version covers those offsets. Versions are content hashes, so when a
    drift action's snapshot already holds everything, that version is the answer."""
    want = {p: v["next_offset"] for p, v in st["partitions"].items()}

    def covered(_x) -> bool:
        v = latest_version(store)
        if v is None:
            return False
        got = read_manifest(store, v).source_offsets
        return all(got.get(p, 0) >= o for p, o in want.items())

    worker.request_snapshot()
    worker.wait_until(covered, 60, "a snapshot of every processed event")
    return latest_version(store)


def _drift_story(bootstrap: str, topic: str, started: float | None) -> dict:
    """What the drift topic says happened: every message the worker published, read back."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"demo-drift-{time.time()}",
                  "enable.auto.commit": False})  # fmt: skip
    c.assign([TopicPartition(topic, 0, 0)])
    msgs, idle = [], 0
    while idle < 3:  # the worker produced them before this point; stop after 3 quiet polls
        got = [m for m in c.consume(500, 0.5) if m.error() is None]
        idle = 0 if got else idle + 1
        msgs += [json.loads(m.value()) for m in got]
    c.close()
    actions = [m for m in msgs if "action" in m]
    alerts = [m for m in actions if m["action"] == "alert"]
    first = min((m["at"] for m in alerts), default=None)
    return {
        "messages": len(msgs),
        "by_action": dict(
            sorted(__import__("collections").Counter(m["action"] for m in actions).items())
        ),
        "labels": sorted({m["label"] for m in alerts if m.get("label")}),
        "features": sorted({m["feature"] for m in alerts if m.get("feature")}),
        "before_drift": sum(1 for m in alerts if started is None or m["at"] < started),
        "first_after_s": None if first is None or started is None else first - started,
        "drifted": started is not None,
    }


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


def _summary(console, rep: ProduceReport, st: dict, store: Path, secs: float, version: str,
             drift: dict) -> None:  # fmt: skip
    m = read_manifest(store, version)
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
    t.add_row("drift messages on the drift topic", f"{drift['messages']:,}")
    if drift["drifted"]:
        acts = ", ".join(f"{k}: {v}" for k, v in drift["by_action"].items()) or "none"
        t.add_row("drift actions (alerts are per label and feature)", acts)
        t.add_row("alerts before the drift (false alarms)", str(drift["before_drift"]))
        after = drift["first_after_s"]
        t.add_row("first alert after the drift began",
                  "none: drift NOT detected" if after is None else f"{after:.1f}s")  # fmt: skip
        t.add_row("labels flagged", ", ".join(drift["labels"]) or "none")
        t.add_row("features flagged", ", ".join(drift["features"]) or "none")
    t.add_row("wall time", f"{secs:.1f}s")
    console.print(t)
