"""The sample of an event set is a pure function of (events, seed, policy): whatever the
partitioning, the batching, the order in which labels were registered or where a worker
was killed and restarted, the retained keys are byte-identical.

Real decoding (fast path for plain labels, reference path for non-ASCII and escaped
ones), real partition processors on real RocksDB stores, the real shard merge.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import orjson
import pytest

from sampler import LabelReservoirs, QuotaPolicy
from sampler.serialization import VERSION
from streamproc.decode.events import Limits
from streamproc.snapshot.build import build_snapshot
from streamproc.snapshot.shards import export_shard, write_shard
from streamproc.state.processor import PartitionProcessor, SamplerConfig
from streamproc.state.store import RocksPartitionStore

NOW = float(int(time.time()))
LABELS = ["plain", "other", "é-accent", "日本語", 'quo"te', "back\\slash", "tab\there", "zz"]
CFG = SamplerConfig(QuotaPolicy(min_capacity=5, max_capacity=25, global_cap=400,
                                max_labels=16, on_overflow="label"), seed=11)  # fmt: skip


def _events(n: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, len(LABELS) + 1)
    labs = rng.choice(len(LABELS), size=n, p=p / p.sum())
    out = []
    for i, li in enumerate(labs.tolist()):
        ev = {"id": f"ev-{i}", "ts": NOW - 100 + i * 1e-3, "label": LABELS[li],
              "features": [float(i % 7), 1.0, 2.0, 3.0]}  # fmt: skip
        out.append(orjson.dumps(ev))
    return out


def _run_partition(root: Path, p: int, values: list[bytes], rng) -> PartitionProcessor:
    """Process one partition's messages in random batches, killed (closed without a
    checkpoint of the work since the last one) and reopened at random points."""
    path = root / f"p{p}"
    proc = PartitionProcessor("events", p, RocksPartitionStore(path), CFG, Limits())
    msgs = [(o, v, NOW) for o, v in enumerate(values)]
    at = 0
    while at < len(msgs):
        size = int(rng.integers(1, 60))
        proc.process(msgs[at : at + size])
        at += size
        r = rng.random()
        if r < 0.3:
            proc.checkpoint()
        elif r < 0.4:  # kill -9: what was not checkpointed is lost and replayed
            proc.store.close()
            proc = PartitionProcessor("events", p, RocksPartitionStore(path), CFG, Limits())
            at = proc.next_offset
    proc.checkpoint()
    return proc


def _retained(res: LabelReservoirs) -> list[tuple[str, int, float]]:
    it = res.items()
    return sorted(
        (res.names[lid], int(k), float(pr))
        for lid, k, pr in zip(
            it.labels.tolist(), it.keys.tolist(), it.priorities.tolist(), strict=True
        )  # fmt: skip
    )


@pytest.mark.parametrize("trial", range(4))
def test_partitionings_batchings_and_kills_give_the_same_sample(tmp_path: Path, trial) -> None:
    events = _events(1_500, seed=trial)
    rng = np.random.default_rng(100 + trial)
    # the reference: one partition, one pass, no kill
    single = PartitionProcessor("events", 0, RocksPartitionStore(tmp_path / "one"), CFG,
                                Limits())  # fmt: skip
    single.process([(o, v, NOW) for o, v in enumerate(events)])
    want = _retained(single.reservoirs)
    # the same events spread over k partitions at random, each with batches and kills
    k = int(rng.integers(2, 6))
    owner = rng.integers(0, k, len(events))
    procs = [
        _run_partition(
            tmp_path / "parts", p, [e for e, o in zip(events, owner, strict=True) if o == p], rng
        )  # fmt: skip
        for p in range(k)
    ]
    merged = procs[0].reservoirs
    for pr in rng.permutation(procs[1:]).tolist():
        merged = merged.merge(pr.reservoirs)
    assert _retained(merged) == want
    # and the snapshot, built from the shards, has the same rows and bytes as one pass
    shards = tmp_path / "shards"
    for pr in procs:
        write_shard(shards, export_shard(pr.partition, pr.next_offset, pr.counters,
                                         pr.reservoirs, pr.store))  # fmt: skip
    m = build_snapshot(shards, tmp_path / "snaps")
    single.checkpoint()
    write_shard(tmp_path / "s1", export_shard(0, single.next_offset, single.counters,
                                              single.reservoirs, single.store))  # fmt: skip
    m1 = build_snapshot(tmp_path / "s1", tmp_path / "snaps1")
    import pyarrow.parquet as pq

    cols = ["label", "id", "inclusion"]
    a = pq.read_table(tmp_path / "snaps" / m.version / "data.parquet", columns=cols)
    b = pq.read_table(tmp_path / "snaps1" / m1.version / "data.parquet", columns=cols)
    assert a.equals(b)
    for pr in [*procs, single]:
        pr.store.close()


def test_registration_order_does_not_change_the_draws() -> None:
    pol = CFG.policy
    rng = np.random.default_rng(5)
    n = 3_000
    names = rng.choice(LABELS, size=n)
    keys = rng.integers(0, 2**63, n).astype(np.uint64)
    ts = np.full(n, NOW)
    one = LabelReservoirs(pol, seed=3)
    one.update(one.encode(list(names)), ts, keys)
    parts = []
    for lo, hi in ((0, 1000), (1000, 2000), (2000, 3000)):
        r = LabelReservoirs(pol, seed=3)
        r.encode(list(rng.permutation(LABELS)))  # a different registration order each
        r.update(r.encode(list(names[lo:hi])), ts[lo:hi], keys[lo:hi])
        parts.append(r)
    merged = parts[2].merge(parts[0]).merge(parts[1])
    assert _retained(merged) == _retained(one)
    assert merged.seen_counts() == one.seen_counts()


def test_version_1_states_are_migrated(tmp_path: Path) -> None:
    """A state written with id-salted draws (version 1) loads, keeps its items with
    priorities redrawn above each label's threshold, and is written as version 2."""
    import struct
    import zlib

    pol = CFG.policy
    r = LabelReservoirs(pol, seed=3)
    rng = np.random.default_rng(9)
    n = 2_000
    r.update(r.encode(list(rng.choice(LABELS, size=n))), np.full(n, NOW),
             rng.integers(0, 2**63, n).astype(np.uint64))  # fmt: skip
    data = bytearray(r.to_bytes())
    assert struct.unpack_from("<H", data, 16)[0] == VERSION == 2
    struct.pack_into("<H", data, 16, 1)  # as a version-1 writer would have labelled it
    body = bytes(data[:-4])
    old = body + struct.pack("<I", zlib.crc32(body))
    m = LabelReservoirs.from_bytes(old)
    assert m.retained_counts() == r.retained_counts() and m.seen_counts() == r.seen_counts()
    it, th = m.items(), m.thresholds()
    for lid, pr in zip(it.labels.tolist(), it.priorities.tolist(), strict=True):
        assert pr > th[m.names[lid]]
    assert struct.unpack_from("<H", m.to_bytes(), 16)[0] == 2
    more = rng.integers(0, 2**63, 500).astype(np.uint64)  # it goes on sampling
    m.update(m.encode(["plain"] * 500), np.full(500, NOW), more)
    assert m.seen_counts()["plain"] == r.seen_counts()["plain"] + 500
    shutil.rmtree(tmp_path, ignore_errors=True)
