"""Record blocks and the locator table on a real RocksDB store, against a dict model."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from streamproc.records import RecordColumns, encode_records
from streamproc.state import Checkpoint, RecordChanges, RocksPartitionStore


def _record(step: int, label: int, key: int) -> bytes:
    """A real record, distinct per (step, item)."""
    (rec,) = encode_records(
        np.array([float(step)]),
        np.array([key]),
        label,
        np.full((1, 2), step, np.float32),
        [[f"l{label}"] * (1 + key % 3)],
        [f"e{step}-{key}"],
        [b'{"k": %d}' % key],
    )
    return rec


items = st.tuples(st.integers(0, 3), st.integers(0, 40))
checkpoints = st.lists(
    st.tuples(st.sets(items, max_size=25), st.sets(items, max_size=25)), min_size=1, max_size=8
)


def _changes(puts: dict, dels: set) -> RecordChanges:
    ch = RecordChanges.none()
    if puts:
        ch.put_labels = np.array([lab for lab, _ in puts], dtype=np.int64)
        ch.put_keys = np.array([key for _, key in puts], dtype=np.uint64)
        ch.records = RecordColumns.from_records(list(puts.values()))
    if dels:
        ch.del_labels = np.array([lab for lab, _ in dels], dtype=np.int64)
        ch.del_keys = np.array([key for _, key in dels], dtype=np.uint64)
    return ch


@settings(max_examples=60, deadline=None)
@given(checkpoints)
def test_store_serves_exactly_the_live_records(log) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "s"
        store = RocksPartitionStore(path)
        model: dict = {}
        for step, (put_items, del_items) in enumerate(log):
            dels = {i for i in del_items if i not in put_items}
            puts = {i: _record(step, *i) for i in sorted(put_items)}
            store.write_checkpoint(Checkpoint(b"r", step, {}), _changes(puts, dels))
            for i in dels:
                model.pop(i, None)
            model.update(puts)
            # reopening reads the same table back (as after a restart)
            if step % 3 == 2:
                store.close()
                store = RocksPartitionStore(path)
            assert store.count_payloads() == len(model)
            every = sorted(model)
            labels = np.array([lab for lab, _ in every], dtype=np.int64)
            keys = np.array([key for _, key in every], dtype=np.uint64)
            assert store.get_records(labels, keys) == [model[i] for i in every]
            # an item never stored has no record
            assert store.get_records(np.array([9]), np.array([9], np.uint64)) == [None]
            # blocks hold at most about twice the live records (compaction)
            written = sum(store.table.block_sizes.values())
            assert written <= 2 * len(model) + len(puts)
        store.close()


def test_stores_of_earlier_versions_are_migrated(tmp_path: Path) -> None:
    """One ``p:`` entry per record (JSON header + payload), as earlier versions wrote."""
    import orjson
    from rocksdict import Options, Rdict

    from sampler import LabelReservoirs, QuotaPolicy
    from streamproc.records import decode_record, payload_key

    res = LabelReservoirs(QuotaPolicy(max_labels=4))
    res.encode(["a", "b"])
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    db = Rdict(str(tmp_path / "s"), options=opts)
    db[b"m:reservoirs"] = res.to_bytes()
    db[b"m:next_offset"] = (7).to_bytes(8, "big")
    db[b"m:counters"] = b"{}"
    old = {}
    for label, key in (("a", 1), ("b", 2)):
        head = {"id": f"e{key}", "ts": 1.5, "labels": [label], "features": [1.0, 2.0],
                "offset": key, "partition": 0}  # fmt: skip
        old[(label, key)] = orjson.dumps(head) + b"\n" + b'{"x": 1}'
        db[payload_key(label, key)] = old[(label, key)]
    db.close()
    store = RocksPartitionStore(tmp_path / "s")
    assert store.count_payloads() == 2
    got = store.get_records(np.array([0, 1]), np.array([1, 2], np.uint64))
    for rec, (label, key) in zip(got, old, strict=True):
        d = decode_record(rec)
        assert (d["labels"], d["id"], d["payload"]) == ([label], f"e{key}", b'{"x": 1}')
    store.close()
    # the legacy entries are gone and a reopen reads the block
    store = RocksPartitionStore(tmp_path / "s")
    assert store.count_payloads() == 2 and store.load_checkpoint().next_offset == 7
    store.close()
