"""Snapshots published to an fsspec store, and read back from it by the trainer."""

from __future__ import annotations

import json
import time
from pathlib import Path

import fsspec
import pytest

from devtools.supervise import processed_all
from stratastream.errors import ConfigError
from streamproc.settings import Settings
from streamproc.snapshot.remote import publish
from tests.conftest import read_topic
from tests.trainer.conftest import make_snapshot
from trainer.data import latest_version, load_snapshot


def test_publish_to_an_object_store_and_train_from_it(tmp_path: Path) -> None:
    url = f"memory://bucket-{time.time_ns()}/snapshots"
    local = tmp_path / "snapshots"
    versions = []
    for i in range(3):
        v, _ = make_snapshot(
            tmp_path / f"run{i}", 1_500, 3, seed=i, id_prefix=f"r{i}-", store=local
        )
        publish(url, local, v, retention=2)
        versions.append(v)
    assert latest_version(url) == versions[-1]
    fs, root = fsspec.core.url_to_fs(url)
    kept = sorted(p.split("/")[-2] for p in fs.glob(f"{root}/*/manifest.json"))
    assert kept == sorted(versions[1:])  # retention 2: the oldest is gone
    remote = load_snapshot(url)
    here = load_snapshot(local, versions[-1])
    assert remote.version == versions[-1] and remote.n == here.n
    assert (remote.features == here.features).all() and remote.ids == here.ids


def test_snapshot_url_must_be_a_url() -> None:
    with pytest.raises(ConfigError, match="snapshot_url"):
        Settings.load(env={"STRATA_SNAPSHOT_URL": "/just/a/path"})


@pytest.mark.integration
def test_worker_publishes_to_the_configured_url(deployment, tmp_path: Path) -> None:
    from devtools.produce import produce_synthetic

    remote = tmp_path / "remote"
    url = f"file://{remote}"
    w = deployment.worker("w", STRATA_SNAPSHOT_URL=url)
    w.wait_ready()
    rep = produce_synthetic(
        deployment.broker.bootstrap, deployment.events, n=3_000, n_labels=4, progress=False
    )
    w.wait_until(lambda s: processed_all(rep.next_offsets)([s]), 120, "catch-up")
    w.request_snapshot()
    st = w.wait_until(lambda s: s["snapshots"], 60, "a snapshot")
    v = st["snapshots"][-1]
    assert (remote / "LATEST").read_text() == v
    assert json.loads((remote / v / "manifest.json").read_text())["version"] == v
    announced = [
        json.loads(m.value())
        for m in read_topic(deployment.broker.bootstrap, deployment.snapshots, expect=1)
    ]
    assert announced[-1]["path"] == f"{url}/{v}"
    assert load_snapshot(url).n == sum(
        json.loads((remote / v / "manifest.json").read_text())["retained"].values()
    )


def test_an_unwritable_store_is_a_clear_error(tmp_path: Path) -> None:
    from streamproc.snapshot.remote import RemoteStoreError

    local = tmp_path / "snapshots"
    v, _ = make_snapshot(tmp_path / "run", 500, 2, seed=0, store=local)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the store should be")
    with pytest.raises(RemoteStoreError, match=f"publishing {v} failed"):
        publish(f"file://{blocker}/snaps", local, v, retention=2)


def test_a_remote_shard_store_writes_reads_and_moves_shards_aside(tmp_path: Path) -> None:
    import numpy as np

    from streamproc.snapshot.shards import Shard, ShardStore
    from streamproc.state.records import RecordColumns

    store = ShardStore.for_snapshots(tmp_path / "local", f"memory://shards-{time.time_ns()}/s")
    assert store.remote and str(store).endswith("/s/shards")
    assert store.read(0) is None and store.read_all() == []
    for p in (0, 1):
        store.write(Shard.of(p, 10 + p, {"events": p}, b"R", np.array([1]),
                             np.array([9], np.uint64), RecordColumns.empty()))  # fmt: skip
    assert [s.next_offset for s in store.read_all()] == [10, 11]
    assert store.move_aside(1, tmp_path / "q") and (tmp_path / "q" / "p00001.shard").exists()
    assert [s.partition for s in store.read_all()] == [0]
    assert not store.move_aside(1, tmp_path / "q")


def test_an_unreachable_shard_store_falls_back_to_the_local_state(tmp_path, monkeypatch) -> None:
    from streamproc.snapshot import shards
    from streamproc.state.processor import PartitionProcessor
    from streamproc.worker.partitions import PartitionSet
    from tests.faults.test_state_quarantine import CFG, LIM, MSGS, _feed

    store = shards.ShardStore("s3://nowhere/shards")
    parts = PartitionSet("events", tmp_path / "state", store,
                         lambda p, st: PartitionProcessor("events", p, st, CFG, LIM))  # fmt: skip

    def unreachable(self, partition):
        raise shards.ShardStoreError("shard store s3://nowhere/shards: connection refused")

    monkeypatch.setattr(shards.ShardStore, "read", unreachable)
    proc = parts.open(0)
    _feed(proc, MSGS[:500])
    proc.checkpoint()
    want = proc.reservoirs.to_bytes()
    parts.release(0)
    again = parts.open(0)  # the remote store is down: the local checkpoint, no quarantine
    assert again.reservoirs.to_bytes() == want
    assert not (tmp_path / "state" / "quarantine").exists()
