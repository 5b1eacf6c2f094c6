"""Retraining triggers, on the embedded broker."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from trainer.follow import Follower
from trainer.registry import ModelRegistry
from trainer.train import TrainConfig

from .conftest import make_snapshot

CFG = TrainConfig(epochs=3, batch_size=256, device="cpu")


def _wait(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.integration
def test_follow_snapshots_topic_and_drift_trigger(broker, tmp_path: Path) -> None:
    from confluent_kafka import Producer

    store = tmp_path / "store"
    v1, _ = make_snapshot(tmp_path / "a", 3_000, 4, seed=1, store=store)
    snaps, drift = f"snapshots-follow-{time.time_ns()}", f"drift-follow-{time.time_ns()}"
    broker.create_topics({snaps: 1, drift: 1})
    reg = ModelRegistry(tmp_path / "reg")
    f = Follower(
        store,
        reg,
        CFG,
        bootstrap=broker.bootstrap,
        snapshots_topic=snaps,
        drift_topic=drift,
        group_id=f"trainer-{time.time_ns()}",
    )
    th = threading.Thread(target=f.run, daemon=True)
    th.start()
    p = Producer({"bootstrap.servers": broker.bootstrap})
    try:
        p.produce(snaps, b"not json")  # a malformed announcement is logged and ignored
        p.produce(snaps, json.dumps({"version": v1}).encode())
        p.flush(10)
        _wait(lambda: len(f.state.outcomes) == 1, 120, "training on v1")
        v2, _ = make_snapshot(tmp_path / "b", 3_000, 4, seed=2, id_prefix="f", store=store)
        p.produce(snaps, json.dumps({"version": v2}).encode())
        p.flush(10)
        _wait(lambda: len(f.state.outcomes) == 2, 120, "training on v2")
        p.produce(drift, json.dumps({"action": "retrain", "label": "L1"}).encode())
        p.flush(10)
        _wait(lambda: len(f.state.outcomes) == 3, 120, "drift-triggered retraining")
    finally:
        f.stop_event.set()
        th.join(30)
    assert [o.entry.meta["trigger"] for o in f.state.outcomes] == ["snapshot", "snapshot", "drift"]
    assert [o.entry.meta["snapshot_version"] for o in f.state.outcomes] == [v1, v2, v2]
    assert f.state.failures == []
    assert reg.promoted() is not None


def test_min_new_events_and_failed_training(tmp_path: Path) -> None:
    store = tmp_path / "store"
    v1, _ = make_snapshot(tmp_path / "a", 2_000, 3, seed=1, store=store)
    reg = ModelRegistry(tmp_path / "reg")
    f = Follower(store, reg, CFG, min_new_events=3_000)
    f.state.last_seen_total = 0
    assert f.handle(v1, "snapshot") is None  # 2,000 new events < 3,000: no retraining
    assert reg.list() == []
    f.min_new_events = 1_000
    out = f.handle(v1, "snapshot")
    assert out is not None and out.promoted
    promoted = reg.promoted().id
    (store / v1 / "data.parquet").write_bytes(b"garbage")
    assert f.handle(v1, "drift") is None  # fails: logged, promoted model untouched
    assert f.state.failures and "does not match its version hash" in f.state.failures[0]
    assert reg.promoted().id == promoted and len(reg.list()) == 1


def test_a_version_from_the_topic_never_leaves_the_store(tmp_path: Path) -> None:
    """Versions come from a topic anyone may write: ``<version>/../..`` is refused, an
    outside snapshot is never trained on."""
    outside = tmp_path / "outside"
    v, _ = make_snapshot(tmp_path / "o", 1_000, 3, seed=2, store=outside)
    store = tmp_path / "store"
    store.mkdir()
    reg = ModelRegistry(tmp_path / "reg")
    f = Follower(store, reg, CFG)
    for bad in (f"../outside/{v}", f"{v}/../../outside/{v}", "0123456789abcdef/.."):
        assert f.handle(bad, "snapshot") is None
    assert len(f.state.failures) == 3 and reg.list() == []
    assert all("snapshot version" in x for x in f.state.failures)
