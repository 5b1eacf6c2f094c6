"""Checkpoints written as deltas on real RocksDB: what a reopened store loads is exactly
what was checkpointed, a steady-state checkpoint writes a small part of the state, the
deltas are folded into a new base in time, and a damaged delta is refused loudly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sampler import QuotaPolicy
from stratastream.errors import StateError
from streamproc.decode.events import Limits
from streamproc.state.deltas import diff, patch, same
from streamproc.state.processor import PartitionProcessor, SamplerConfig
from streamproc.state.store import DELTA_PREFIX, KEY_FORMAT, RocksPartitionStore

# 20 labels x 500 = 10k retained rows: the size the delta is meant for
CFG = SamplerConfig(
    QuotaPolicy(min_capacity=50, max_capacity=500, global_cap=10_000, max_labels=32), seed=3
)
LIM = Limits(feature_dim=2)


def _msgs(n: int, start: int = 0) -> list:
    return [
        (i, orjson.dumps({"id": f"e{i}", "ts": float(i), "label": f"l{(i * 7919) % 20}",
                          "features": [i % 5, i % 11], "payload": {"i": i}}), 1e9)
        for i in range(start, start + n)
    ]  # fmt: skip


def _proc(path: Path) -> PartitionProcessor:
    return PartitionProcessor("events", 0, RocksPartitionStore(path), CFG, LIM)


def _state_on_disk(path: Path):
    s = RocksPartitionStore(path)
    try:
        s.verify()
        ck = s.load_checkpoint()
        return ck, s.table.rows(), s.count_payloads(), s.deltas[0]
    finally:
        s.close()


def test_a_reopened_store_loads_every_checkpoint_exactly(tmp_path: Path) -> None:
    proc = _proc(tmp_path / "p")
    offset, sizes, deltas_seen = 0, [], []
    for step in range(40):
        n = 20_000 if step == 0 else 2_000  # fill, then steady state
        proc.process(_msgs(n, offset))
        offset += n
        proc.checkpoint()
        sizes.append(proc.store.last_write_bytes)
        want_rows, want_res = proc.store.table.rows(), proc.reservoirs.to_bytes()
        proc.store.close()
        ck, rows, payloads, n_deltas = _state_on_disk(tmp_path / "p")
        assert ck.reservoirs == want_res, f"checkpoint {step}: reservoirs differ"
        assert ck.next_offset == offset
        assert same(rows, want_rows), f"checkpoint {step}: locator table differs"
        assert payloads == sum(proc.reservoirs.retained_counts().values())
        deltas_seen.append(n_deltas)
        proc = _proc(tmp_path / "p")  # goes on from the state loaded from disk
        assert proc.reservoirs.to_bytes() == want_res
    full = sizes[0]
    steady = float(np.median(sizes[5:]))
    # stated tolerance: 2,000 new events against 10k retained rows admit a few hundred
    # items; their records dominate, the state around them is a delta
    assert steady < 0.5 * full, (steady, full)
    assert max(deltas_seen) >= 3  # deltas accumulate...
    assert 0 in deltas_seen[1:]  # ...and are folded into a new base


def test_restart_on_deltas_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    msgs = _msgs(30_000)
    whole = _proc(tmp_path / "whole")
    for lo in range(0, 30_000, 1_000):
        whole.process(msgs[lo : lo + 1_000])
    whole.checkpoint()
    crashed = _proc(tmp_path / "crashed")
    for lo in range(0, 17_000, 1_000):  # many checkpoints: a base and deltas
        crashed.process(msgs[lo : lo + 1_000])
        crashed.checkpoint()
    crashed.process(msgs[17_000:18_500])  # never checkpointed
    crashed.store.close()
    again = _proc(tmp_path / "crashed")
    assert again.next_offset == 17_000
    for lo in range(17_000, 30_000, 1_000):
        again.process(msgs[lo : lo + 1_000])
    again.checkpoint()
    assert again.reservoirs.to_bytes() == whole.reservoirs.to_bytes()
    assert again.counters == whole.counters


def test_a_damaged_delta_is_refused(tmp_path: Path) -> None:
    from rocksdict import Options, Rdict

    proc = _proc(tmp_path / "p")
    for i in range(4):
        proc.process(_msgs(5_000, 5_000 * i))
        proc.checkpoint()
    assert proc.store.deltas[0]  # there is a delta to damage
    proc.store.close()
    opts = Options(raw_mode=True)
    db = Rdict(str(tmp_path / "p"), options=opts)
    key = next(k for k in db.keys() if bytes(k).startswith(DELTA_PREFIX))  # noqa: SIM118
    value = bytearray(db[key])
    value[len(value) // 2] ^= 0xFF
    db[key] = bytes(value)
    db.close()
    with pytest.raises(StateError, match="checkpoint delta"):
        RocksPartitionStore(tmp_path / "p")


def test_a_store_of_the_previous_format_is_read_and_continued(tmp_path: Path) -> None:
    from rocksdict import Options, Rdict

    proc = _proc(tmp_path / "p")
    proc.process(_msgs(5_000))
    proc.checkpoint()  # the first checkpoint is a base: what format 1 wrote every time
    want = proc.reservoirs.to_bytes()
    proc.store.close()
    db = Rdict(str(tmp_path / "p"), options=Options(raw_mode=True))
    db[KEY_FORMAT] = b"1"
    db.close()
    again = _proc(tmp_path / "p")
    assert again.reservoirs.to_bytes() == want
    again.process(_msgs(2_000, 5_000))
    again.checkpoint()
    want = again.reservoirs.to_bytes()
    again.store.close()
    ck, _, _, n_deltas = _state_on_disk(tmp_path / "p")
    assert ck.reservoirs == want and n_deltas == 1


ROW = np.dtype([("label", "<i4"), ("key", "<u8"), ("v", "<f8")])
_rows = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 30), st.integers(0, 2)), max_size=40
).map(lambda xs: np.array(list({(a, b): (a, b, float(c)) for a, b, c in xs}.values()), ROW)
      if xs else np.zeros(0, ROW))  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(_rows, _rows)
def test_patch_of_diff_gives_the_new_rows(a, b) -> None:
    up, gone = diff(a, b)
    assert same(patch(a, up, gone), b)
    assert len(up) <= len(b) and len(gone) <= len(a)
