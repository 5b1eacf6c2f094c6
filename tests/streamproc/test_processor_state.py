"""PartitionProcessor on real RocksDB: checkpoints, restart equivalence, snapshots."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from sampler import QuotaPolicy
from snapshot_format import list_manifests as list_snapshots
from stratastream.errors import ConfigError
from streamproc.decode.events import Limits
from streamproc.snapshot.build import build_snapshot
from streamproc.snapshot.shards import export_shard, write_shard
from streamproc.state.processor import PartitionProcessor, SamplerConfig
from streamproc.state.store import RocksPartitionStore

CFG = SamplerConfig(
    QuotaPolicy(min_capacity=5, max_capacity=30, boost_capacity=60, global_cap=600, max_labels=16),
    seed=5,
)
LIM = Limits(feature_dim=2)


def _msgs(n: int, start: int = 0, bad_every: int = 0):
    out = []
    for i in range(start, start + n):
        if bad_every and i % bad_every == 0:
            out.append((i, b"{broken", 1e9))
            continue
        labels = [f"l{i % 7 if i % 3 else 0}"]
        ev = {
            "id": f"e{i}",
            "ts": float(i),
            "label": labels[0],
            "features": [i % 5, i % 11],
            "payload": {"i": i},
        }
        out.append((i, orjson.dumps(ev), 1e9))
    return out


def _proc(path: Path, partition: int = 0) -> PartitionProcessor:
    return PartitionProcessor("events", partition, RocksPartitionStore(path), CFG, LIM)


def test_checkpoint_restart_equals_uninterrupted(tmp_path: Path) -> None:
    msgs = _msgs(3_000, bad_every=97)
    whole = _proc(tmp_path / "whole")
    for lo in range(0, 3_000, 250):
        whole.process(msgs[lo : lo + 250])
    whole.checkpoint()

    crashed = _proc(tmp_path / "crashed")
    crashed.process(msgs[:1_000])
    crashed.checkpoint()
    crashed.process(msgs[1_000:1_700])  # processed but never checkpointed: lost in the crash
    crashed.store.close()
    restarted = _proc(tmp_path / "crashed")
    assert restarted.next_offset == 1_000
    # the consumer resumes at the checkpoint offset; a redelivered older batch is skipped too
    restarted.process(msgs[500:1_200])
    restarted.process(msgs[1_200:])
    restarted.checkpoint()
    assert restarted.reservoirs.to_bytes() == whole.reservoirs.to_bytes()
    assert restarted.counters == whole.counters
    assert restarted.counters["rejected"] == len([m for m in msgs if m[1] == b"{broken"])
    # payload records exist for exactly the retained events
    assert restarted.store.count_payloads() == sum(restarted.reservoirs.retained_counts().values())
    assert whole.store.count_payloads() == restarted.store.count_payloads()


def test_snapshot_merges_partitions_and_carries_lineage(tmp_path: Path) -> None:
    shard_dir, store = tmp_path / "shards", tmp_path / "snaps"
    procs = [_proc(tmp_path / f"p{p}", p) for p in range(3)]
    msgs = _msgs(2_000)
    for p, proc in enumerate(procs):
        proc.process([m for m in msgs if m[0] % 3 == p])
        proc.checkpoint()
        write_shard(
            shard_dir,
            export_shard(p, proc.next_offset, proc.counters, proc.reservoirs, proc.store),
        )
    m = build_snapshot(shard_dir, store)
    assert m is not None and m.parent is None
    assert sum(m.seen.values()) == 2_000
    assert m.source_offsets == {str(p): procs[p].next_offset for p in range(3)}
    caps = CFG.new().policy.allocate(sorted(m.seen), demand=m.seen)
    assert m.retained == {k: min(v, caps[k]) for k, v in m.seen.items()}
    t = pq.read_table(store / m.version / "data.parquet")
    assert t.num_rows == m.rows == sum(m.retained.values())
    assert set(t.column_names) >= {
        "label",
        "ts",
        "features",
        "payload",
        "inclusion",
        "ht_weight",
        "partition",
        "offset",
    }
    ht = {}
    for lab, w in zip(
        t.column("label").to_pylist(), t.column("ht_weight").to_pylist(), strict=True
    ):
        ht[lab] = ht.get(lab, 0.0) + w
    for lab, seen in m.seen.items():  # uniform mode: HT weights sum to about the seen count
        assert abs(ht[lab] - seen) / seen < 0.35
    # nothing new -> no new version; more data -> a child version
    assert build_snapshot(shard_dir, store) is None
    procs[0].process(_msgs(10, start=5_000))
    procs[0].checkpoint()
    write_shard(
        shard_dir,
        export_shard(
            0, procs[0].next_offset, procs[0].counters, procs[0].reservoirs, procs[0].store
        ),
    )
    m2 = build_snapshot(shard_dir, store)
    assert m2 is not None and m2.parent == m.version
    assert [x.version for x in list_snapshots(store)] == [m.version, m2.version]


def test_incompatible_stored_state_is_refused(tmp_path: Path) -> None:
    p = _proc(tmp_path / "s")
    p.process(_msgs(10))
    p.checkpoint()
    p.store.close()
    other = SamplerConfig(CFG.policy, seed=6)
    with pytest.raises(ConfigError, match="different sampler configuration"):
        PartitionProcessor("events", 0, RocksPartitionStore(tmp_path / "s"), other, LIM)


def test_a_correction_relabels_a_retained_event(tmp_path: Path) -> None:
    p = _proc(tmp_path / "s")
    first = {"id": "ev-1", "ts": 1.0, "label": "old", "features": [1, 2], "payload": {"a": 1}}
    other = {"id": "ev-2", "ts": 2.0, "label": "old", "features": [3, 4]}
    p.process([(0, orjson.dumps(first), 1e9), (1, orjson.dumps(other), 1e9)])
    p.checkpoint()
    fix = {**first, "ts": 3.0, "label": "new", "relabel": True}
    p.process([(2, orjson.dumps(fix), 1e9)])
    p.checkpoint()
    r = p.reservoirs
    key = int(p.last_batch.keys[0])
    assert key not in r.retained_keys("old").tolist()
    assert r.retained_keys("new").tolist() == [key]
    assert len(r.retained_keys("old")) == 1  # ev-2 stays
    # the payload store follows: ev-1's old record is gone, the new one is there
    assert p.store.count_payloads() == 2
    # without the relabel flag, an event with the same id under another label is a new copy
    again = {**first, "ts": 4.0, "label": "third"}
    p.process([(3, orjson.dumps(again), 1e9)])
    assert key in r.retained_keys("third").tolist() and key in r.retained_keys("new").tolist()


def test_spot_check_sample_is_stratified_and_stable() -> None:
    from streamproc.snapshot.build import spot_check_rows

    labels = ["a"] * 3_000 + ["b"] * 1_000 + ["rare"] * 3
    ids = [f"e{i}" for i in range(len(labels))]
    rows = spot_check_rows(labels, ids, 0.05)
    picked = [labels[i] for i in rows]
    # about 5% of each label (binomial, 4 sigma), and at least one row of every label
    for lab, n in (("a", 3_000), ("b", 1_000)):
        share = picked.count(lab) / n
        assert abs(share - 0.05) < 4 * (0.05 * 0.95 / n) ** 0.5, (lab, share)
    assert picked.count("rare") >= 1
    # deterministic, and a row's membership does not depend on the other rows
    assert spot_check_rows(labels, ids, 0.05) == rows
    sub = spot_check_rows(labels[:3_000], ids[:3_000], 0.05)
    assert sub == [i for i in rows if i < 3_000]


def test_restarts_do_not_pile_up_rocksdb_info_logs(tmp_path: Path) -> None:
    """Every open used to leave a LOG.old.* file behind, never trimmed."""
    for i in range(6):
        proc = _proc(tmp_path / "p")
        proc.process(_msgs(200, start=200 * i))
        proc.checkpoint()
        proc.store.close()
    logs = list((tmp_path / "p").glob("LOG*"))
    assert 1 <= len(logs) <= 2, [p.name for p in logs]


def test_export_keeps_features_labels_and_payloads(tmp_path: Path) -> None:
    """CSV gets one column per feature and the labels joined by |; JSON lines keep the
    payload as JSON, not as a string."""
    import csv
    import os
    import subprocess
    import sys

    shard_dir, store = tmp_path / "shards", tmp_path / "snaps"
    proc = _proc(tmp_path / "p0")
    proc.process(_msgs(300))
    proc.checkpoint()
    write_shard(shard_dir, export_shard(0, proc.next_offset, proc.counters, proc.reservoirs,
                                        proc.store))  # fmt: skip
    m = build_snapshot(shard_dir, store, feature_names=["mod5", "mod11"])
    root = Path(__file__).resolve().parents[2]

    def export(out: Path) -> None:
        subprocess.run(
            [sys.executable, "-m", "streamproc.cli", "snapshot", "export", "--snapshot-dir",
             str(store), "--out", str(out)],
            check=True, capture_output=True, timeout=120,
            env={**os.environ, "PYTHONPATH": str(root)},
        )  # fmt: skip

    export(tmp_path / "rows.csv")
    rows = list(csv.DictReader((tmp_path / "rows.csv").open()))
    assert len(rows) == m.rows and {"labels", "mod5", "mod11", "payload"} <= set(rows[0])
    i = int(json.loads(rows[0]["payload"])["i"])
    assert float(rows[0]["mod5"]) == i % 5 and float(rows[0]["mod11"]) == i % 11
    export(tmp_path / "rows.jsonl")
    first = json.loads((tmp_path / "rows.jsonl").read_text().splitlines()[0])
    assert isinstance(first["payload"], dict) and isinstance(first["features"], list)
