"""Expanding multi-label events into per-label rows for :meth:`LabelReservoirs.update`.

``mode="primary"`` keeps each event's first label; ``mode="split"`` emits one row per
label with weight ``w / m`` (each label draws its own key, since the draw hashes the
label too).

>>> import numpy as np
>>> from sampler.multilabel import expand_labels
>>> rows = expand_labels(np.array([0, 2, 3]), np.array([5, 6, 7]), mode="split")
>>> rows.event_index.tolist(), rows.labels.tolist(), rows.weights.tolist()
([0, 0, 1], [5, 6, 7], [0.5, 0.5, 1.0])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from .errors import InputError


@dataclass(frozen=True)
class LabelRows:
    event_index: np.ndarray  # int64: which event each row comes from
    labels: np.ndarray  # int32 label id per row
    weights: np.ndarray  # float64 weight per row


def expand_labels(
    offsets: np.ndarray,
    label_ids: np.ndarray,
    weights: np.ndarray | None = None,
    mode: Literal["primary", "split"] = "primary",
) -> LabelRows:
    """Rows for events whose labels are ``label_ids[offsets[i]:offsets[i+1]]`` (CSR form)."""
    offsets = np.asarray(offsets, dtype=np.int64)
    label_ids = np.asarray(label_ids, dtype=np.int32)
    if offsets.ndim != 1 or offsets.shape[0] < 1 or offsets[0] != 0:
        raise InputError("offsets: expected a 1-D array starting at 0")
    if offsets[-1] != label_ids.shape[0]:
        raise InputError(
            f"offsets: last offset {offsets[-1]} != len(label_ids) {label_ids.shape[0]}"
        )
    counts = np.diff(offsets)
    if (counts < 1).any():
        raise InputError(f"label_ids: event {int(np.argmax(counts < 1))} has no label")
    n = counts.shape[0]
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise InputError(f"weights: length {w.shape} differs from the number of events {n}")
    if mode == "primary":
        return LabelRows(np.arange(n, dtype=np.int64), label_ids[offsets[:-1]], w.copy())
    if mode == "split":
        idx = np.repeat(np.arange(n, dtype=np.int64), counts)
        return LabelRows(idx, label_ids.copy(), (w / counts)[idx])
    raise InputError(f"mode: expected 'primary' or 'split', got {mode!r}")
