"""Packed byte columns against plain lists of bytes, and ``pack`` against ``take_bytes``."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from streamproc.decode.columns import pack, take_bytes
from streamproc.decode.decoding import decode_batch
from streamproc.decode.events import Limits
from streamproc.decode.frames import encode_frame
from streamproc.decode.packed import Packed
from streamproc.settings import Settings
from streamproc.state.processor import PartitionProcessor
from streamproc.state.records import RecordColumns, block_records, encode_records
from streamproc.state.store import RocksPartitionStore
from streamproc.worker.assembly import sampler_config

values_st = st.lists(st.binary(max_size=12), max_size=30)


@settings(max_examples=200, deadline=None)
@given(values_st, st.data())
def test_packed_take_and_concat_equal_list_operations(values, data) -> None:
    p = Packed.of(values)
    assert len(p) == len(values) and p.values() == values
    rows = data.draw(st.lists(st.integers(0, max(len(values) - 1, 0)), max_size=40))
    rows = rows if values else []
    assert p.take(np.array(rows, dtype=np.int64)).values() == [values[i] for i in rows]
    other = data.draw(values_st)
    assert Packed.concat([p, Packed.of(other), Packed.empty()]).values() == values + other


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=64), st.data())
def test_mixed_spans_and_extra_values_keep_row_order(buf, data) -> None:
    n = data.draw(st.integers(0, 20))
    starts = np.array([data.draw(st.integers(0, len(buf))) for _ in range(n)], dtype=np.int64)
    ends = np.array([data.draw(st.integers(s, len(buf))) for s in starts], dtype=np.int64)
    direct = np.array([data.draw(st.booleans()) for _ in range(n)], dtype=bool)
    extra = [data.draw(st.binary(max_size=5)) for _ in range(int((~direct).sum()))]
    it = iter(extra)
    want = [buf[s:e] if d else next(it) for s, e, d in zip(starts, ends, direct, strict=True)]
    assert Packed.mixed(buf, starts, ends, direct, extra).values() == want


def _mixed_batch():
    frame = encode_frame(
        np.arange(50, dtype=float),
        [["a"] if i % 3 else ["a", "c"] for i in range(50)],
        np.ones((50, 4)),
        payloads=[{"i": i} for i in range(50)],
    )  # no ids: derived from the frame's coordinates
    events = [
        b'{"ts": 1, "label": "b", "features": [1, 2, 3, 4], "id": "e%d", "payload": [%d]}' % (i, i)
        for i in range(6)
    ]
    events[2] = b'{"ts": 1, "label": "b", "features": [1, 2, 3, 4], "id": "\\u00e9t\\u00e9"}'
    events[4] = b'{"ts": 1, "label": "b", "features": [1, 2, 3, 4]}'  # no id, no payload
    msgs = [(i, v, None) for i, v in enumerate([*events[:3], frame, *events[3:]])]
    return decode_batch("events", 0, msgs, Limits())


def test_pack_reads_the_same_bytes_as_take_bytes_on_every_column_kind() -> None:
    b = _mixed_batch()
    assert b.reference_decoded >= 1  # the escaped id took the reference path (an override)
    rng = np.random.default_rng(3)
    for rows in (np.arange(len(b)), np.sort(rng.choice(len(b), 17, replace=False)), []):
        rows = np.asarray(rows, dtype=np.int64)
        for col in (b.ids, b.payloads):
            assert pack(col, rows).values() == take_bytes(col, rows.tolist())


def test_pending_records_of_admitted_rows_equal_the_reference_encoder(tmp_path) -> None:
    """What the processor builds per batch for admitted events, span by span, is
    byte for byte what encode_records builds from Python values."""
    b = _mixed_batch()
    proc = PartitionProcessor(
        "events",
        0,
        RocksPartitionStore(tmp_path / "s"),
        sampler_config(Settings().sampler),
        Limits(),
    )
    rows = np.array([0, 1, 2, 3, 10, 41, len(b) - 2, len(b) - 1])
    got = proc._record_columns(b, rows)
    want = encode_records(
        b.ts[rows],
        b.offsets[rows],
        0,
        b.features[rows],
        [b.labels[i] for i in rows],
        [b.ids[i] for i in rows],
        [bytes(b.payloads[i]) for i in rows],
    )
    assert got.records(range(len(rows))) == want
    assert got.take(np.array([3, 3, 0])).records(range(3)) == [want[3], want[3], want[0]]
    proc.store.close()


def test_record_columns_from_a_block_equal_its_records() -> None:
    recs = encode_records(
        np.arange(5, dtype=float),
        np.arange(5),
        2,
        np.ones((5, 3), np.float32),
        [["a"], ["b", "c"], [], ["d"], ["é"]],
        ["i0", "", "i2", "é3", "i4"],
        [b"{}", b"null", b"[1,2]", b'"x"', b""],
    )
    block = RecordColumns.from_records(recs).to_block()
    index = [4, 0, 2, 2]
    assert RecordColumns.from_block(block, np.array(index)).records(range(4)) == [
        recs[i] for i in index
    ]
    assert block_records(block, index) == [recs[i] for i in index]
