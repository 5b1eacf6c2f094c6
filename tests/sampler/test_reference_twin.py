"""The numba kernels agree with the pure-Python twin, event for event."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sampler import LabelReservoirs, QuotaPolicy
from sampler.hashing import draw_uniform, draw_uniform_py, name_salt

from .conftest import zipf_stream


def _compare(res: LabelReservoirs, ref) -> None:
    assert res.seen_counts() == {str(l): c for l, c in ref.seen.items()}
    for l, its in ref.items.items():
        assert res.retained_keys(str(l)).tolist() == sorted(its)
        assert res.thresholds()[str(l)] == pytest.approx(ref.tau[l], rel=0, abs=1e-12)
        probs = res.inclusion_probabilities()[str(l)]
        expect = [ref.inclusion(l, k) for k in sorted(its)]
        np.testing.assert_allclose(probs, expect, rtol=1e-12, atol=1e-15)


def test_hash_twin_matches_numba() -> None:
    rng = np.random.default_rng(1)
    for key, label, seed in zip(
        rng.integers(0, 2**63, 200),
        rng.integers(0, 50, 200),
        rng.integers(0, 2**63, 200),
        strict=True,
    ):
        name = f"label-{label}-é"
        salt = name_salt(name, int(seed))
        assert draw_uniform(np.uint64(key), np.uint64(salt)) == draw_uniform_py(
            int(key), name, int(seed)
        )


@pytest.mark.parametrize("mode,half_life", [("uniform", None), ("decayed", 500.0)])
@pytest.mark.parametrize("weighted", [False, True])
def test_kernel_matches_reference(mode: str, half_life, weighted: bool) -> None:
    from sampler.reference import ReferenceReservoirs

    policy = QuotaPolicy(
        min_capacity=5, max_capacity=40, boost_capacity=80, global_cap=150, max_labels=10
    )
    rng = np.random.default_rng(7)
    labels, ts, keys = zipf_stream(4_000, 7, rng)
    w = rng.uniform(0.1, 3.0, size=labels.shape[0]) if weighted else None
    res = LabelReservoirs(policy, mode=mode, half_life=half_life, seed=99)
    ref = ReferenceReservoirs(policy, mode=mode, half_life=half_life, seed=99)
    for lo in range(0, 4_000, 700):  # several batches, new labels arriving mid-stream
        sl = slice(lo, lo + 700)
        res.update(labels[sl], ts[sl], keys[sl], None if w is None else w[sl])
        ref.update(labels[sl], ts[sl], keys[sl], None if w is None else w[sl])
        _compare(res, ref)
    # replaying a batch admits nothing twice, in both
    res.update(labels[:700], ts[:700], keys[:700], None if w is None else w[:700])
    ref.update(labels[:700], ts[:700], keys[:700], None if w is None else w[:700])
    _compare(res, ref)
    assert math.isfinite(sum(res.thresholds().values()))
