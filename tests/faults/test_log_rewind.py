"""A log that changes under a worker's checkpoint is never skipped silently.

Unit: :meth:`PartitionProcessor.check_log` on every shape of change. End to end: a real
worker on the embedded broker, the broker replaced by an empty one on the same address
(the in-memory broker's restart; in production a topic deleted and recreated or a cluster
restored), and the three policies."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest

from devtools.broker import EmbeddedBroker, free_port
from devtools.produce import produce_synthetic
from devtools.supervise import WorkerProcess, processed_all
from sampler import QuotaPolicy
from snapshot_format import latest_version, read_manifest
from streamproc.decode.events import Limits
from streamproc.decode.messages import RawMessages
from streamproc.state.processor import PartitionProcessor, SamplerConfig
from streamproc.state.store import RocksPartitionStore

CFG = SamplerConfig(QuotaPolicy(min_capacity=5, max_capacity=30, global_cap=600, max_labels=8))


def _msg(i: int, tag: str = "") -> tuple[int, bytes, float]:
    ev = {"id": f"e{tag}{i}", "ts": float(i), "label": f"l{i % 3}", "features": [1, 2]}
    return (i, orjson.dumps(ev), 1e9)


def _reopened(tmp_path: Path, n: int) -> PartitionProcessor:
    p = PartitionProcessor("events", 0, RocksPartitionStore(tmp_path / "s"), CFG, Limits(2))
    p.process([_msg(i) for i in range(n)])
    p.checkpoint()
    p.store.close()
    return PartitionProcessor("events", 0, RocksPartitionStore(tmp_path / "s"), CFG, Limits(2))


@pytest.mark.parametrize(
    ("first_msgs", "problem"),
    [
        ([_msg(i) for i in range(99, 120)], None),  # the same log: the last message again
        ([_msg(i) for i in range(100, 120)], None),  # the log starts at our position
        ([_msg(i, "new") for i in range(0, 30)], "beyond the log's end"),  # recreated
        ([_msg(i) for i in range(130, 140)], "are gone"),  # retention overtook
        ([_msg(i, "new") for i in range(99, 110)], "not the one processed"),  # restored
    ],
)
def test_check_log(tmp_path: Path, first_msgs, problem) -> None:
    proc = _reopened(tmp_path, 100)
    assert proc.resume_offset() == 99 and not proc.log_checked
    got = proc.check_log(RawMessages.from_tuples(first_msgs))
    assert (got is None) if problem is None else (problem in got), got
    assert proc.log_checked and proc.check_log(RawMessages.from_tuples(first_msgs)) is None


def _health(w: WorkerProcess) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(w.url + "/health", timeout=2) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.integration
def test_replaced_broker_is_detected_and_each_policy_applies(tmp_path: Path) -> None:
    port = free_port()
    env = {
        "STRATA_GROUP_ID": "rewind",
        "STRATA_SNAPSHOT_EVERY_S": "3600",
        "STRATA_CHECKPOINT_EVERY_S": "0.5",
        "STRATA_STALL_TIMEOUT_S": "600",
        "STRATA_LOG_CHECK_S": "5",
    }

    started: list[WorkerProcess] = []

    def worker(name: str, broker: EmbeddedBroker, **extra: str) -> WorkerProcess:
        w = WorkerProcess(
            broker.bootstrap, tmp_path / "state", tmp_path / "snaps", tmp_path / f"{name}.log",
            env={**env, **extra}, partitions=2,
        )  # fmt: skip
        started.append(w)
        return w

    try:
        _scenario(tmp_path, port, worker)
    finally:  # a failed assertion must not leave workers behind
        for w in started:
            if w.proc.poll() is None:
                w.kill9()


def _scenario(tmp_path: Path, port: int, worker) -> None:

    with EmbeddedBroker(port=port) as first:
        w = worker("w1", first)
        w.wait_ready()
        old = produce_synthetic(first.bootstrap, "events", n=4_000, n_labels=4, seed=1,
                                progress=False)  # fmt: skip
        w.wait_until(lambda s: processed_all(old.next_offsets)([s]), 120, "the first log")
        assert w.stop() == 0
    # an empty broker on the same address: the checkpoints point ~2,000 into each partition
    with EmbeddedBroker(port=port) as second:
        w = worker("w2", second, STRATA_ON_LOG_REWIND="fail")
        w.wait_ready()
        new = produce_synthetic(second.bootstrap, "events", n=600, n_labels=4, seed=2,
                                progress=False)  # fmt: skip

        def both_paused(_st) -> bool:
            code, body = _health(w)
            return code == 503 and sum("log changed" in r for r in body["reasons"]) == 2

        st = w.wait_until(both_paused, 120, "an unhealthy worker (two paused partitions)")
        code, body = _health(w)
        assert code == 503 and len([r for r in body["reasons"] if "log changed" in r]) == 2
        assert "beyond the log's end" in " ".join(body["reasons"])
        with urllib.request.urlopen(w.url + "/metrics", timeout=5) as r:
            metrics = r.read().decode()
        assert 'strata_log_rewinds_total{partition="0",policy="fail"} 1.0' in metrics
        assert st is not None
        assert w.stop() == 0
        # reset: the old state goes to quarantine and the partitions rebuild from offset 0
        w = worker("w3", second, STRATA_ON_LOG_REWIND="reset")
        want = {str(p): o for p, o in new.next_offsets.items()}
        w.wait_until(
            lambda s: {p: v["next_offset"] for p, v in s["partitions"].items()} == want,
            120, "the new log, from its start",
        )  # fmt: skip
        before = latest_version(tmp_path / "snaps")
        w.request_snapshot()
        w.wait_until(lambda s: latest_version(tmp_path / "snaps") != before, 60, "a snapshot")
        m = read_manifest(tmp_path / "snaps", latest_version(tmp_path / "snaps"))
        assert sum(m.seen.values()) == new.events  # the new log only, nothing skipped
        assert len(list((tmp_path / "state" / "quarantine").iterdir())) == 2
        assert w.stop() == 0


@pytest.mark.integration
def test_a_wiped_state_directory_is_noticed_and_rebuilt_exactly(tmp_path: Path) -> None:
    """The group committed offsets but the state is gone: the worker says so (metric, log)
    and, the log still starting at 0, rebuilds the same state from the log start."""
    import shutil

    env = {"STRATA_GROUP_ID": "wiped", "STRATA_SNAPSHOT_EVERY_S": "3600",
           "STRATA_CHECKPOINT_EVERY_S": "0.5"}  # fmt: skip
    with EmbeddedBroker() as b:
        b.create_topics({"events": 2})
        rep = produce_synthetic(b.bootstrap, "events", n=3_000, n_labels=4, seed=7,
                                progress=False)  # fmt: skip
        runs = []
        for name in ("before", "after"):
            w = WorkerProcess(b.bootstrap, tmp_path / "state", tmp_path / f"snaps-{name}",
                              tmp_path / f"{name}.log", env=env, partitions=2)  # fmt: skip
            try:
                st = w.wait_until(
                    lambda s: processed_all(rep.next_offsets, "committed_offset")([s]),
                    120, "committed",
                )  # fmt: skip
                with urllib.request.urlopen(w.url + "/metrics", timeout=5) as r:
                    metrics = r.read().decode()
                runs.append((st["labels"]["seen"], metrics))
            finally:
                assert w.stop() == 0
            shutil.rmtree(tmp_path / "state")  # the state is lost; the group offsets stay
    (seen_before, m_before), (seen_after, m_after) = runs
    assert sum(seen_before.values()) == rep.events
    assert seen_after == seen_before  # rebuilt from offset 0: nothing missing, nothing twice
    assert 'strata_state_rebuilt_total{partition="0"}' not in m_before  # a first start
    assert 'strata_state_rebuilt_total{partition="0"} 1.0' in m_after
    assert 'strata_state_rebuilt_total{partition="1"} 1.0' in m_after
