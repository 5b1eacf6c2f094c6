from __future__ import annotations

import numpy as np
import pytest

from sampler import QuotaPolicy


def zipf_stream(n: int, n_labels: int, rng: np.random.Generator, a: float = 1.3):
    """Labels with Zipf-like skew, increasing timestamps, unique keys."""
    p = 1.0 / np.arange(1, n_labels + 1) ** a
    labels = rng.choice(n_labels, size=n, p=p / p.sum()).astype(np.int32)
    ts = np.sort(rng.uniform(0, 10_000, size=n))
    keys = rng.permutation(np.arange(n, dtype=np.uint64) * np.uint64(2654435761) + np.uint64(17))
    return labels, ts, keys


@pytest.fixture
def small_policy() -> QuotaPolicy:
    return QuotaPolicy(
        min_capacity=3, max_capacity=20, boost_capacity=40, global_cap=120, max_labels=8
    )
