"""The evaluation slice: hash-selected events kept out of training, in a uniform
natural-mix reservoir published beside each snapshot (eval.parquet)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest
from scipy import stats

from sampler import EVAL_LABEL, QuotaPolicy, eval_mask
from snapshot_format import SnapshotFormatError, read_eval_table, read_table
from streamproc.decode.events import Limits
from streamproc.snapshot.build import build_snapshot
from streamproc.snapshot.shards import export_shard, write_shard
from streamproc.state.processor import PartitionProcessor, SamplerConfig
from streamproc.state.store import RocksPartitionStore

FRACTION = 0.1
CFG = SamplerConfig(
    QuotaPolicy(
        min_capacity=5, max_capacity=60, boost_capacity=60, global_cap=2_000, max_labels=16,
        per_label={EVAL_LABEL: (400, 400)},
    ),
    seed=9,
    eval_fraction=FRACTION,
)  # fmt: skip
PRIOR = {"common": 0.7, "mid": 0.2, "rare": 0.1}


def _msgs(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    names = rng.choice(list(PRIOR), size=n, p=list(PRIOR.values()))
    out = []
    for i, lab in enumerate(names.tolist()):
        ev = {"id": f"e{i}", "ts": float(i), "label": lab, "features": [i % 5, i % 11]}
        out.append((i, orjson.dumps(ev), 1e9))
    return out, names


def _snapshot(tmp_path: Path, msgs, parts: int = 3):
    shard_dir, store = tmp_path / "shards", tmp_path / "snaps"
    for p in range(parts):
        proc = PartitionProcessor(
            "events", p, RocksPartitionStore(tmp_path / f"p{p}"), CFG, Limits(feature_dim=2)
        )
        mine = [m for m in msgs if m[0] % parts == p]
        for lo in range(0, len(mine), 700):
            proc.process(mine[lo : lo + 700])
        proc.checkpoint()
        write_shard(
            shard_dir,
            export_shard(p, proc.next_offset, proc.counters, proc.reservoirs, proc.store),
        )
        proc.store.close()
    return build_snapshot(shard_dir, store), store


def test_eval_slice_is_held_out_natural_and_counted(tmp_path: Path) -> None:
    n = 12_000
    msgs, names = _msgs(n)
    m, store = _snapshot(tmp_path, msgs)
    train = read_table(store, m.version)
    ev = read_eval_table(store, m.version)
    assert ev is not None and m.eval_rows == ev.num_rows == 400
    # held out: no evaluation event is a training row, and every one was hash-selected
    train_ids, eval_ids = set(train.column("id").to_pylist()), set(ev.column("id").to_pylist())
    assert not train_ids & eval_ids
    # seen counts still cover every event (training + slice), per label
    produced = {k: int(v) for k, v in zip(*np.unique(names, return_counts=True), strict=True)}
    assert m.seen == produced
    assert sum(m.eval_seen.values()) == pytest.approx(n * FRACTION, rel=0.1)
    assert EVAL_LABEL not in m.seen and EVAL_LABEL not in m.retained
    # natural class mix: a chi-square goodness-of-fit against the stream's prior
    # (seed fixed; at alpha 0.001 a correct sampler fails this 1 time in 1,000)
    got = [ev.column("label").to_pylist().count(k) for k in PRIOR]
    expected = [p * ev.num_rows for p in PRIOR.values()]
    assert stats.chisquare(got, expected).pvalue > 1e-3
    # the training set is balanced, the evaluation set is not
    assert m.retained["rare"] == m.retained["common"]
    assert got[0] > 3 * got[2]


def test_eval_selection_is_label_blind_and_deterministic() -> None:
    keys = np.arange(200_000, dtype=np.uint64)
    a, b = eval_mask(keys, 9, FRACTION), eval_mask(keys, 9, FRACTION)
    assert (a == b).all()
    assert abs(a.mean() - FRACTION) < 0.003  # binomial sd ~ 0.0007
    assert (a != eval_mask(keys, 10, FRACTION)).any()  # the seed matters


def test_eval_slice_is_identical_under_any_partitioning(tmp_path: Path) -> None:
    msgs, _ = _msgs(6_000, seed=3)
    m1, s1 = _snapshot(tmp_path / "a", msgs, parts=1)
    m3, s3 = _snapshot(tmp_path / "b", msgs, parts=4)
    e1, e3 = read_eval_table(s1, m1.version), read_eval_table(s3, m3.version)
    assert sorted(e1.column("id").to_pylist()) == sorted(e3.column("id").to_pylist())


def test_reserved_label_is_a_dead_letter(tmp_path: Path) -> None:
    proc = PartitionProcessor(
        "events", 0, RocksPartitionStore(tmp_path / "p"), CFG, Limits(feature_dim=2)
    )
    bad = orjson.dumps({"id": "x", "ts": 1.0, "label": EVAL_LABEL, "features": [1, 2]})
    rejects = proc.process([(0, bad, 1e9)])
    assert len(rejects) == 1 and "reserved" in rejects[0].reason
    assert proc.reservoirs.seen_counts().get(EVAL_LABEL, 0) == 0


def test_tampered_eval_file_is_refused(tmp_path: Path) -> None:
    msgs, _ = _msgs(3_000, seed=5)
    m, store = _snapshot(tmp_path, msgs)
    path = store / m.version / "eval.parquet"
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(SnapshotFormatError, match="version hash"):
        read_eval_table(store, m.version)
    with pytest.raises(SnapshotFormatError, match="version hash"):
        read_table(store, m.version)


def test_manifest_reports_row_and_event_balance_in_split_mode(tmp_path: Path) -> None:
    """Split mode balances label rows; the events those rows come from carry common
    labels too, which the event balance shows."""
    cfg = SamplerConfig(
        QuotaPolicy(min_capacity=5, max_capacity=50, global_cap=1_000, max_labels=8),
        seed=1, multilabel="split",
    )  # fmt: skip
    proc = PartitionProcessor(
        "events", 0, RocksPartitionStore(tmp_path / "p"), cfg, Limits(feature_dim=2)
    )
    rng = np.random.default_rng(4)
    msgs = []
    for i in range(4_000):  # "common" on every event, "rare" on 5%, "mid" on 30%
        labels = ["common"] + (["rare"] if rng.random() < 0.05 else [])
        labels += ["mid"] if rng.random() < 0.3 else []
        ev = {"id": f"e{i}", "ts": float(i), "labels": labels, "features": [1, 2]}
        msgs.append((i, orjson.dumps(ev), 1e9))
    proc.process(msgs)
    proc.checkpoint()
    write_shard(
        tmp_path / "shards",
        export_shard(0, proc.next_offset, proc.counters, proc.reservoirs, proc.store),
    )
    m = build_snapshot(tmp_path / "shards", tmp_path / "snaps")
    assert m.balance_ratio == 1.0  # 50 rows per label
    # every retained event carries "common": far more events carry it than "rare"
    assert m.event_balance_ratio is not None and m.event_balance_ratio < 0.5
