"""Data quality of snapshot rows: near-duplicates and outliers flagged per label, the same
whatever the row order (so replays and partitionings agree), counted in the manifest and
in metrics, and left out of the published rows on request -- unit level and through a
real worker."""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pyarrow.parquet as pq
import pytest
from confluent_kafka import Producer

from snapshot_format import data_path, latest_version, read_manifest
from streamproc.snapshot.quality import near_duplicates, outliers


def _rows(seed: int = 0, n: int = 3_000, labels: int = 3, dim: int = 4):
    rng = np.random.default_rng(seed)
    lab = rng.integers(0, labels, n)
    x = rng.normal(size=(n, dim)).round(3) + lab[:, None] * 3.0
    keys = rng.permutation(np.arange(10, 10 + n, dtype=np.uint64) * 7919)
    return lab, x, keys


def test_near_duplicates_flag_every_copy_but_one_whatever_the_order() -> None:
    lab, x, keys = _rows()
    copies = np.arange(0, 300)  # 300 exact copies and 300 within the grid cell
    x2 = np.vstack([x, x[copies], np.floor(x[copies] / 1e-4) * 1e-4 + 2e-5])
    lab2 = np.concatenate([lab, lab[copies], lab[copies]])
    keys2 = np.concatenate([keys, keys[copies] + np.uint64(1), keys[copies] + np.uint64(2)])
    flags = near_duplicates(lab2, x2, keys2, 1e-4)
    n = lab.shape[0]
    # every group of three keeps exactly one row: the one with the smallest key
    assert not flags[:n].any()  # each original has the smallest key of its group
    group = np.concatenate([np.arange(n), copies, copies])
    kept = {g: k for g, k, f in zip(group, keys2, flags, strict=True) if not f and g < 300}
    assert all(kept[g] == min(keys2[group == g]) for g in range(300))
    assert flags.sum() == 600
    perm = np.random.default_rng(5).permutation(lab2.shape[0])  # another arrival order
    again = near_duplicates(lab2[perm], x2[perm], keys2[perm], 1e-4)
    assert np.array_equal(again, flags[perm])
    # another label, or another source, is not a duplicate
    assert not near_duplicates(np.array([0, 1]), np.zeros((2, 4)), np.array([1, 2], np.uint64),
                               1e-4).any()  # fmt: skip
    assert not near_duplicates(np.zeros(2, int), np.zeros((2, 4)), np.array([1, 2], np.uint64),
                               1e-4, sources=np.array([0, 1])).any()  # fmt: skip
    assert not near_duplicates(lab, x, keys, 0.0).any()  # 0: off


def test_outliers_find_gross_errors_and_spare_normal_rows() -> None:
    lab, x, _ = _rows(seed=1, n=15_000)
    assert not outliers(lab, x, z=8.0).any()  # P(|z| > 8) per value ~1e-15: none expected
    bad = np.arange(0, 15_000, 500)  # 30 rows with one feature off by 60 sd
    x[bad, 2] += 60.0
    flags = outliers(lab, x, z=8.0)
    assert set(np.flatnonzero(flags)) == set(bad.tolist())
    few = outliers(lab[:20], x[:20], z=8.0, min_rows=30)  # too few rows to judge
    assert not few.any()


@pytest.mark.integration
@pytest.mark.parametrize("exclude", [False, True])
def test_worker_snapshot_flags_counts_and_excludes(deployment, tmp_path, exclude) -> None:
    rng = np.random.default_rng(3)
    evs = []
    for i in range(900):
        lab = int(rng.integers(0, 3))
        evs.append({"id": f"q{i}", "ts": 1.7e9 + i, "label": f"L{lab}",
                    "features": (rng.normal(size=4) + 3 * lab).round(4).tolist()})  # fmt: skip
    dups = [dict(evs[i], id=f"dup{i}") for i in range(0, 60)]  # 60 copies, new ids
    outs = [
        dict(evs[i], id=f"out{i}", features=[99.0, 0.0, 0.0, 0.0]) for i in range(100, 110)
    ]  # fmt: skip  10 gross outliers (all alike: 9 are dups too)
    p = Producer({"bootstrap.servers": deployment.broker.bootstrap})
    for ev in evs + dups + outs:
        p.produce(deployment.events, json.dumps(ev).encode(), key=ev["id"].encode())
    assert p.flush(30) == 0
    w = deployment.worker("dq", STRATA_MAX_CAPACITY="2000", STRATA_BOOST_CAPACITY="2000",
                          STRATA_EVAL_FRACTION="0",
                          STRATA_DQ_EXCLUDE=str(exclude).lower())  # fmt: skip
    w.wait_ready(90)
    total = len(evs) + len(dups) + len(outs)
    w.wait_until(lambda st: sum(v["accepted"] for v in st["partitions"].values()) == total,
                 120, "every event")  # fmt: skip
    snaps = tmp_path / "snap-g"
    before = latest_version(snaps)
    w.request_snapshot()
    w.wait_until(lambda st: latest_version(snaps) != before, 60, "a snapshot")
    m = read_manifest(snaps, latest_version(snaps))
    q = m.quality
    dup_n = sum(v["duplicates"] for v in q["per_label"].values())
    out_n = sum(v["outliers"] for v in q["per_label"].values())
    # each copy of an event, and the outliers that share a label (one of each label kept)
    assert dup_n == 60 + len(outs) - len({o["label"] for o in outs})
    assert out_n == 10
    t = pq.read_table(data_path(snaps, m.version))
    if exclude:
        assert t.num_rows == total - q["flagged_rows"]
        assert not any(t.column("dq_duplicate").to_pylist() + t.column("dq_outlier").to_pylist())
    else:
        assert t.num_rows == total
        assert sum(t.column("dq_outlier").to_pylist()) == 10
        assert sum(t.column("dq_duplicate").to_pylist()) == dup_n

    def exported(_st) -> bool:  # set by the publisher just after the version is written
        with urllib.request.urlopen(w.url + "/metrics", timeout=5) as r:
            return 'strata_quality_flagged{kind="outliers"' in r.read().decode()

    w.wait_until(exported, 30, "the quality metric of the snapshot")
    assert w.stop() == 0
