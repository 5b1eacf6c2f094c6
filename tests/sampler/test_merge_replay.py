"""Exact merging, idempotent replays, restart-from-checkpoint equivalence."""

from __future__ import annotations

import numpy as np
import pytest

from sampler import LabelReservoirs, QuotaPolicy, StateError

from .conftest import zipf_stream

POLICY = QuotaPolicy(
    min_capacity=10, max_capacity=80, boost_capacity=200, global_cap=600, max_labels=12
)
MODES = [("uniform", None), ("decayed", 2_000.0)]


def _new(mode: str, hl) -> LabelReservoirs:
    return LabelReservoirs(POLICY, mode=mode, half_life=hl, seed=11)


@pytest.mark.parametrize("mode,hl", MODES)
def test_merge_equals_one_pass_key_for_key(mode: str, hl) -> None:
    labels, ts, keys = zipf_stream(30_000, 10, np.random.default_rng(3))
    whole = _new(mode, hl)
    whole.update(labels, ts, keys)
    # split by a partition function, as Kafka partitions would
    part = keys % np.uint64(3)
    parts = []
    for p in range(3):
        m = part == p
        r = _new(mode, hl)
        for lo in range(0, int(m.sum()), 4_000):
            sl = slice(lo, lo + 4_000)
            r.update(labels[m][sl], ts[m][sl], keys[m][sl])
        parts.append(r)
    merged = parts[0].merge(parts[1]).merge(parts[2])
    assert merged.seen_counts() == whole.seen_counts()
    for name in whole.labels:
        assert merged.retained_keys(name).tolist() == whole.retained_keys(name).tolist()
    assert merged.thresholds() == whole.thresholds()
    # merge order does not matter, and equal states serialize identically
    assert parts[2].merge(parts[0]).merge(parts[1]).to_bytes() == merged.to_bytes()
    assert merged.to_bytes() == whole.to_bytes()


def test_merge_maps_labels_by_name() -> None:
    a, b = _new("uniform", None), _new("uniform", None)
    la = a.encode(["x", "y"])
    lb = b.encode(["y", "z"])  # ids differ between the two
    a.update(la, np.zeros(2), np.array([1, 2], dtype=np.uint64))
    b.update(lb, np.zeros(2), np.array([3, 4], dtype=np.uint64))
    m = a.merge(b)
    assert m.seen_counts() == {"x": 1, "y": 2, "z": 1}
    assert m.retained_keys("y").tolist() == [2, 3]


def test_merge_rejects_incompatible() -> None:
    with pytest.raises(StateError, match="seed"):
        _new("uniform", None).merge(LabelReservoirs(POLICY, seed=12))


@pytest.mark.parametrize("mode,hl", MODES)
def test_restart_from_checkpoint_equals_uninterrupted(mode: str, hl) -> None:
    labels, ts, keys = zipf_stream(20_000, 9, np.random.default_rng(8))
    full = _new(mode, hl)
    full.update(labels, ts, keys)
    for cut in (1, 777, 10_000, 19_999):
        first = _new(mode, hl)
        first.update(labels[:cut], ts[:cut], keys[:cut])
        restored = LabelReservoirs.from_bytes(first.to_bytes())
        restored.update(labels[cut:], ts[cut:], keys[cut:])
        assert restored.to_bytes() == full.to_bytes()


@pytest.mark.parametrize("mode,hl", MODES)
def test_replaying_a_prefix_changes_no_retained_item(mode: str, hl) -> None:
    labels, ts, keys = zipf_stream(10_000, 6, np.random.default_rng(9))
    r = _new(mode, hl)
    r.update(labels, ts, keys)
    before = {n: r.retained_keys(n).tolist() for n in r.labels}
    out = r.update(labels[:5_000], ts[:5_000], keys[:5_000])
    assert len(out.admitted) == 0 and len(out.evicted_keys) == 0
    assert {n: r.retained_keys(n).tolist() for n in r.labels} == before


def test_same_input_same_bytes_across_batchings() -> None:
    labels, ts, keys = zipf_stream(8_000, 7, np.random.default_rng(10))
    a, b = _new("decayed", 500.0), _new("decayed", 500.0)
    a.update(labels, ts, keys)
    for lo in range(0, 8_000, 333):
        b.update(labels[lo : lo + 333], ts[lo : lo + 333], keys[lo : lo + 333])
    assert a.to_bytes() == b.to_bytes()
