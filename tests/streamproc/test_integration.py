"""End to end on the embedded broker, with real worker processes and real RocksDB."""

from __future__ import annotations

import json
import random
import subprocess
import threading
import time

import pytest

from devtools.produce import produce_synthetic
from devtools.supervise import processed_all
from sampler import QuotaPolicy
from snapshot_format import SnapshotManifest, latest_version, read_manifest
from tests.conftest import read_topic

pytestmark = pytest.mark.integration


def _wait_all(workers, next_offsets, timeout=120.0):
    pred = processed_all(next_offsets)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sts = [w.wait_until(lambda s: True, 30, "status") for w in workers]
        if pred(sts):
            return sts
        time.sleep(0.2)
    raise AssertionError(f"workers did not process up to {next_offsets}: {sts}")


def _snapshot(worker, timeout=60.0) -> str:
    before = len(worker.status()["snapshots"])
    worker.request_snapshot()
    st = worker.wait_until(lambda s: len(s["snapshots"]) > before, timeout, "a snapshot")
    return st["snapshots"][-1]


def _manifest(path, version) -> SnapshotManifest:
    return read_manifest(path, version)


def _dlq(bootstrap: str, topic: str, expect: int) -> list:
    return read_topic(bootstrap, topic, expect=expect, timeout=60.0)


def test_end_to_end_quotas_seen_counts_and_dlq(deployment) -> None:
    w = deployment.worker("w1")
    w.wait_ready()
    rep = produce_synthetic(
        deployment.broker.bootstrap,
        deployment.events,
        n=20_000,
        n_labels=10,
        feature_dim=4,
        malformed_frac=0.02,
        multilabel_frac=0.05,
        seed=1,
        progress=False,
    )
    (st,) = _wait_all([w], rep.next_offsets)
    version = _snapshot(w)
    m = _manifest(deployment.root / "snap-g", version)
    # every valid event is seen exactly once, under its primary label
    assert m.seen == dict(rep.per_label)
    policy = QuotaPolicy(
        min_capacity=20, max_capacity=150, boost_capacity=300, global_cap=20_000, max_labels=64
    )
    caps = policy.allocate(sorted(m.seen), demand=m.seen)
    assert m.retained == {k: min(v, caps[k]) for k, v in m.seen.items()}
    injected = sum(rep.malformed.values())
    assert injected > 100
    assert m.counters["rejected"] == injected
    assert m.counters["accepted"] == rep.events
    dlq = _dlq(deployment.broker.bootstrap, deployment.dlq, injected)
    assert len(dlq) == injected
    h = dict(dlq[0].headers())
    connect = {f"__connect.errors.{k}" for k in (
        "topic", "partition", "offset", "connector.name", "stage", "exception.class.name",
        "exception.message",
    )}  # fmt: skip
    assert set(h) == {"reason", "source_topic", "source_partition", "source_offset"} | connect
    assert h["__connect.errors.offset"] == h["source_offset"]
    assert h["__connect.errors.exception.message"] == h["reason"]
    assert h["source_topic"].decode() == deployment.events
    reasons = {dict(x.headers())["reason"].decode().split(":")[0] for x in dlq}
    assert reasons == {"decode", "label", "features", "ts", "value", "schema"}


def kcat_env(tmp_path) -> dict:
    """Debian's kcat links librdkafka 1.9, which misreads Tansu's ApiVersions v3 response
    ("Read underflow"); the same kcat binary runs against librdkafka 2.x from the
    confluent-kafka wheel (same soname, backward-compatible ABI)."""
    import glob
    import os

    import confluent_kafka

    libs = glob.glob(
        os.path.join(
            os.path.dirname(confluent_kafka.__file__),
            os.pardir,
            "confluent_kafka.libs",
            "librdkafka-*.so.1",
        )
    )
    assert libs, "confluent-kafka's bundled librdkafka not found"
    d = tmp_path / "rdkafka"
    d.mkdir()
    (d / "librdkafka.so.1").symlink_to(os.path.abspath(libs[0]))
    return {**os.environ, "LD_LIBRARY_PATH": str(d)}


def test_event_from_kcat_is_accepted(deployment, tmp_path) -> None:
    w = deployment.worker("w1")
    w.wait_ready()
    ev = {
        "id": "from-kcat",
        "ts": time.time(),
        "label": "kcat_label",
        "features": [1, 2, 3, 4],
        "payload": {"via": "kcat"},
    }
    subprocess.run(
        ["kcat", "-P", "-b", deployment.broker.bootstrap, "-t", deployment.events, "-p", "2"],
        input=json.dumps(ev).encode(),
        check=True,
        timeout=30,
        env=kcat_env(tmp_path),
    )
    w.wait_until(lambda s: s["partitions"].get("2", {}).get("accepted", 0) == 1, 60, "kcat event")
    rep = produce_synthetic(
        deployment.broker.bootstrap, deployment.events, n=200, n_labels=3, seed=2, progress=False
    )
    offs = {p: max(o, 1 if p == 2 else 0) for p, o in rep.next_offsets.items()}
    _wait_all([w], offs)
    m = _manifest(deployment.root / "snap-g", _snapshot(w))
    assert m.seen["kcat_label"] == 1
    assert m.counters["rejected"] == 0


def test_sigkill_restart_and_two_workers_match_an_uninterrupted_run(deployment) -> None:
    # a worker killed with SIGKILL mid-stream, then restarted on the same state. The
    # stream is paced (~10k events/s) so that the kill lands while events still arrive
    # and processed work is not yet checkpointed: the worker would otherwise finish
    # 40k events within one status poll.
    crash = deployment.worker("crash-1", group="crash")
    crash.wait_until(lambda s: bool(s["partitions"]), 120, "its partitions")  # group joined
    produced: dict = {}

    def produce() -> None:
        produced["rep"] = produce_synthetic(
            deployment.broker.bootstrap,
            deployment.events,
            n=40_000,
            n_labels=12,
            malformed_frac=0.01,
            seed=3,
            progress=False,
            rate=10_000,
        )

    producer = threading.Thread(target=produce)
    producer.start()
    target = random.Random(7).randint(5_000, 30_000)

    def mid_stream(s: dict) -> bool:  # far enough, with processed work not checkpointed
        parts = s["partitions"].values()
        return s["consumed"] >= target and any(
            p["next_offset"] > p["checkpointed_offset"] for p in parts
        )

    st = crash.wait_until(mid_stream, 120, f"{target} events consumed, not all checkpointed")
    crash.kill9()
    producer.join(120)
    rep = produced["rep"]
    assert st["consumed"] < rep.messages  # killed mid-stream, with work left to replay

    ref = deployment.worker("ref", group="ref")
    ref.wait_ready()
    _wait_all([ref], rep.next_offsets)
    ref_version = _snapshot(ref)
    ref.stop()

    again = deployment.worker("crash-2", group="crash")
    _wait_all([again], rep.next_offsets)
    assert _snapshot(again) == ref_version  # same content hash: same data, same offsets
    again.stop()

    # two workers on one group split the partitions; their merged snapshot is the same
    duo = [  # each worker its own state directory; only the snapshot store is shared
        deployment.worker(f"duo-{i}", group="duo", state=f"state-duo-{i}", snaps="snap-duo")
        for i in range(2)
    ]
    sts = _wait_all(duo, rep.next_offsets)
    owned = [set(s["partitions"]) for s in sts]
    assert owned[0] and owned[1] and not owned[0] & owned[1]
    for w in duo:
        _snapshot_or_partial(w)
    # the second export sees every partition's shard and merges them (shards are counted
    # before the merge finishes, so wait for the snapshot itself)
    deadline = time.monotonic() + 60
    while latest_version(deployment.root / "snap-duo") is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert latest_version(deployment.root / "snap-duo") == ref_version
    m = _manifest(deployment.root / "snap-duo", ref_version)
    assert sum(m.seen.values()) == rep.events


def _snapshot_or_partial(worker) -> None:
    """Ask for a snapshot; the first worker of a pair only exports its shards."""
    before = worker.status()["shards"]
    worker.request_snapshot()
    worker.wait_until(lambda s: s["shards"] > before, 60, "shard export")
