"""Balance and stability metrics of reservoir states.

>>> from sampler.balance import balance_ratio, jaccard_stability
>>> balance_ratio({"a": 100, "b": 50})
0.5
>>> import numpy as np
>>> jaccard_stability({"a": np.array([1, 2, 3])}, {"a": np.array([2, 3, 4])})
0.5
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


def balance_ratio(retained: Mapping[str, int]) -> float:
    """Smallest over largest per-label retained count (1.0 = perfectly balanced).

    Labels with nothing retained are ignored; an empty state has ratio 1.0.
    """
    counts = [c for c in retained.values() if c > 0]
    if not counts:
        return 1.0
    return min(counts) / max(counts)


def jaccard_stability(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> float:
    """Jaccard overlap of the retained (label, key) sets of two states, in [0, 1]."""
    inter = union = 0
    for name in set(a) | set(b):
        ka = np.asarray(a.get(name, np.zeros(0, np.uint64)))
        kb = np.asarray(b.get(name, np.zeros(0, np.uint64)))
        i = np.intersect1d(ka, kb).shape[0]
        inter += i
        union += ka.shape[0] + kb.shape[0] - i
    return 1.0 if union == 0 else inter / union


@dataclass(frozen=True)
class BalanceReport:
    """Per-label seen / retained / capacity, balance ratio and estimated class prior."""

    seen: dict[str, int]
    retained: dict[str, int]
    capacity: dict[str, int]
    balance_ratio: float
    estimated_prior: dict[str, float]

    @classmethod
    def of(cls, reservoirs) -> BalanceReport:  # noqa: ANN001 - LabelReservoirs
        seen = reservoirs.seen_counts()
        retained = reservoirs.retained_counts()
        items = reservoirs.items()
        ht = np.bincount(
            items.labels, weights=items.ht_weights, minlength=reservoirs.policy.max_labels
        )
        total = float(ht.sum())
        prior = {n: (float(ht[reservoirs.label_id(n)]) / total if total else 0.0) for n in seen}
        return cls(seen, retained, reservoirs.capacities(), balance_ratio(retained), prior)
