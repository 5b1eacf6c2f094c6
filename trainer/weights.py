"""Row weights for training: event-level balance for multi-label data.

Split mode balances label *rows*, but each retained event carries all of its labels, so a
multi-label model sees labels that co-occur with many others far more often.
:func:`event_balance_weights` rakes row weights (iterative proportional fitting, in log
space) so that every label is carried by the same weighted number of rows, as nearly as
co-occurrence allows (a label on every event can never be rarer than the whole set),
with the spread of weights bounded.

>>> import numpy as np
>>> m = np.array([[1, 0], [1, 0], [1, 0], [1, 1]], dtype=np.float32)
>>> round(event_balance(m), 2)
0.25
>>> w = event_balance_weights(m)
>>> event_balance(m, w) > 0.9
True
"""

from __future__ import annotations

import numpy as np


def carried(multi_hot: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Per label, the (weighted) number of rows that carry it."""
    m = np.asarray(multi_hot) >= 0.5
    w = np.ones(m.shape[0]) if weights is None else np.asarray(weights, float)
    return w @ m


def event_balance(multi_hot: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Smallest over largest weighted count of rows carrying each present label."""
    c = carried(multi_hot, weights)
    c = c[c > 0]
    return float(c.min() / c.max()) if c.size else 1.0


def event_balance_weights(
    multi_hot: np.ndarray, iterations: int = 200, max_ratio: float = 100.0
) -> np.ndarray:
    """Row weights (mean 1) that equalise how many weighted rows carry each label.

    Each round moves every row's log-weight by the mean, over its labels, of
    ``log(target / carried)`` (target: the geometric mean of the labels' counts), then
    clips the weights to ``max_ratio`` times their smallest value.
    """
    m = np.asarray(multi_hot) >= 0.5
    n = m.shape[0]
    if n == 0:
        return np.ones(0)
    per_row = np.maximum(m.sum(1), 1)
    logw = np.zeros(n)
    for _ in range(iterations):
        c = np.exp(logw) @ m
        present = c > 0
        if not present.any():
            break
        gap = np.zeros(m.shape[1])
        gap[present] = np.log(c[present]).mean() - np.log(c[present])
        step = (m @ gap) / per_row
        if np.abs(step).max() < 1e-6:
            break
        logw += step
        logw = np.maximum(logw, logw.max() - np.log(max_ratio))
    w = np.exp(logw - logw.max())
    return w / w.mean()
