"""Keyless per-label reservoirs: Vitter's Algorithm L with geometric skips.

For streams with no event keys, where idempotent replays and exact merging are not
needed, Algorithm L skips over the events it will not keep: per event it does one
label lookup and one counter decrement, and draws random numbers only on the
``k (1 + ln(n / k))`` admissions. Its random numbers come from a per-label xorshift
generator seeded from ``seed``, so a run is reproducible, but unlike
:class:`LabelReservoirs` the sample depends on arrival order.

>>> import numpy as np
>>> from sampler.skip import SkipReservoirs
>>> r = SkipReservoirs(k=5, n_labels=2, seed=1)
>>> r.update(np.array([0, 1] * 50, dtype=np.int32))
>>> [len(r.retained(l)) for l in (0, 1)], r.seen.tolist()
([5, 5], [50, 50])
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .errors import ConfigError, InputError
from .hashing import mix64


@njit(cache=True, inline="always")
def _next_uniform(state, l):
    x = state[l]
    x ^= x << np.uint64(13)
    x ^= x >> np.uint64(7)
    x ^= x << np.uint64(17)
    state[l] = x
    return (np.float64(x >> np.uint64(11)) + 0.5) * (1.0 / 9007199254740992.0)


@njit(cache=True)
def _skip_len(w, state, l):
    return np.int64(math.floor(math.log(_next_uniform(state, l)) / math.log(1.0 - w)))


@njit(cache=True)
def algorithm_l_kernel(labels, first_pos, k, fill, w, skip, state, seen, res):
    n_labels = fill.shape[0]
    for i in range(labels.shape[0]):
        l = labels[i]
        if l < 0 or l >= n_labels:
            return i
        seen[l] += 1
        f = fill[l]
        if f < k:
            res[l * k + f] = first_pos + i
            fill[l] = f + 1
            if f + 1 == k:
                w[l] = math.exp(math.log(_next_uniform(state, l)) / k)
                skip[l] = _skip_len(w[l], state, l)
            continue
        if skip[l] > 0:
            skip[l] -= 1
            continue
        j = np.int64(_next_uniform(state, l) * k)
        res[l * k + j] = first_pos + i
        w[l] *= math.exp(math.log(_next_uniform(state, l)) / k)
        skip[l] = _skip_len(w[l], state, l)
    return labels.shape[0]


class SkipReservoirs:
    """Per-label uniform reservoirs of stream positions (Algorithm L)."""

    def __init__(self, k: int, n_labels: int, seed: int = 0) -> None:
        if k < 1:
            raise ConfigError(f"SkipReservoirs.k must be >= 1, got {k!r}")
        if n_labels < 1:
            raise ConfigError(f"SkipReservoirs.n_labels must be >= 1, got {n_labels!r}")
        self.k = k
        self.fill = np.zeros(n_labels, dtype=np.int64)
        self.w = np.ones(n_labels)
        self.skip = np.zeros(n_labels, dtype=np.int64)
        self.state = np.array(
            [mix64(np.uint64(seed) + np.uint64(l + 1)) | np.uint64(1) for l in range(n_labels)],
            dtype=np.uint64,
        )
        self.seen = np.zeros(n_labels, dtype=np.int64)
        self.positions = np.full(n_labels * k, -1, dtype=np.int64)
        self._consumed = 0

    def update(self, labels: np.ndarray) -> None:
        labels = np.ascontiguousarray(labels, dtype=np.int32)
        stop = algorithm_l_kernel(
            labels,
            self._consumed,
            self.k,
            self.fill,
            self.w,
            self.skip,
            self.state,
            self.seen,
            self.positions,
        )
        self._consumed += stop
        if stop != labels.shape[0]:
            raise InputError(
                f"labels[{stop}] = {int(labels[stop])} is outside [0, {self.fill.shape[0]})"
            )

    def retained(self, label: int) -> np.ndarray:
        """Stream positions retained for a label, sorted."""
        seg = self.positions[label * self.k : label * self.k + int(self.fill[label])]
        return np.sort(seg)
