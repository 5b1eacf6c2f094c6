"""The evaluation slice: a deterministic, label-blind share of events kept out of training.

An event belongs to the slice when a hash of its key (salted by the seed, never by its
label) falls under ``fraction``; the slice is offered to one uniform reservoir under the
reserved label :data:`EVAL_LABEL`, so it keeps the stream's natural class mix, merges
exactly and replays identically, like every other reservoir.

>>> import numpy as np
>>> keys = np.arange(100_000, dtype=np.uint64)
>>> m = eval_mask(keys, seed=7, fraction=0.05)
>>> bool(0.045 < m.mean() < 0.055), bool((eval_mask(keys, 7, 0.05) == m).all())
(True, True)
>>> bool(eval_mask(keys, 7, 0.0).any())
False
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .errors import ConfigError
from .hashing import draw_uniform, name_salt

EVAL_LABEL = "__eval__"  # reserved: an event may not carry it
_SELECT = "__eval_select__"  # salt of the selection draw (not the reservoir's priority draw)


@njit(cache=True, nogil=True)
def _below(keys, salt, fraction):  # pragma: no cover - numba
    out = np.empty(keys.shape[0], dtype=np.bool_)
    for i in range(keys.shape[0]):
        out[i] = draw_uniform(keys[i], salt) < fraction
    return out


def eval_mask(keys: np.ndarray, seed: int, fraction: float) -> np.ndarray:
    """True for the events of the evaluation slice (by key and seed only)."""
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"eval_fraction: must be in [0, 1), got {fraction!r}")
    keys = np.ascontiguousarray(keys, dtype=np.uint64)
    if fraction == 0.0 or keys.shape[0] == 0:
        return np.zeros(keys.shape[0], dtype=bool)
    return _below(keys, np.uint64(name_salt(_SELECT, seed)), float(fraction))
