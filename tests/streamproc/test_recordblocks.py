"""Record blocks and the locator table on a real RocksDB store, against a dict model."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stratastream.errors import StateError
from streamproc.state.records import RecordColumns, encode_records
from streamproc.state.store import Checkpoint, RecordChanges, RocksPartitionStore


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


def test_store_records_its_format_and_refuses_another(tmp_path: Path) -> None:
    from rocksdict import Options, Rdict

    from stratastream.errors import StateError
    from streamproc.state.store import KEY_FORMAT, STORE_FORMAT, Checkpoint, RecordChanges

    store = RocksPartitionStore(tmp_path / "s")
    store.write_checkpoint(Checkpoint(b"r", 7, {}), RecordChanges.none())
    store.close()
    opts = Options(raw_mode=True)
    db = Rdict(str(tmp_path / "s"), options=opts)
    assert bytes(db[KEY_FORMAT]) == STORE_FORMAT
    db[KEY_FORMAT] = b"99"
    db.close()
    with pytest.raises(StateError, match="format b'99'"):
        RocksPartitionStore(tmp_path / "s")


def test_record_columns_come_back_in_the_order_asked(tmp_path: Path) -> None:
    """Records gathered column by column from several blocks, in the caller's order."""
    from streamproc.state.records import decode_record, encode_records
    from streamproc.state.store import Checkpoint, RecordChanges

    store = RocksPartitionStore(tmp_path / "s")
    for block in range(3):  # three checkpoints: three blocks
        keys = np.arange(block * 10, block * 10 + 10, dtype=np.uint64)
        ch = RecordChanges.none()
        ch.put_labels = np.zeros(10, np.int64)
        ch.put_keys = keys
        ch.records = RecordColumns.from_records(
            encode_records(np.zeros(10), keys.astype(np.int64), 0, np.zeros((10, 1), np.float32),
                           [["a"]] * 10, [f"e{k}" for k in keys], [b"{}"] * 10)
        )  # fmt: skip
        store.write_checkpoint(Checkpoint(b"r", block, {}), ch)
    want = np.array([25, 3, 17, 0, 29, 11], np.uint64)
    got = store.get_record_columns(np.zeros(6, np.int64), want)
    assert [decode_record(r)["id"] for r in got.records(list(range(6)))] == [f"e{k}" for k in want]
    with pytest.raises(StateError, match="1 retained items lack records"):
        store.get_record_columns(np.zeros(1, np.int64), np.array([999], np.uint64))
    store.close()
