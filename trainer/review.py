"""A scoring pass over recent events: the promoted model scores a snapshot's rows, and the
ones it is least sure of (or that disagree with their label) go to annotators.

``/predict`` traffic is scored as it comes (the worker's active learning). This pass adds
the events already in the training set: a row the model finds uncertain is either a hard
case or a wrong label, and a human look at it is worth the most there. Per label (the
row's current label), each row is drawn with a probability proportional to its
uncertainty ``u = 1 - margin``, scaled so that the expected number drawn is the label's
``budget`` (water-filled: ``q = min(1, c u)`` with ``c`` such that ``sum q = budget``),
so the selection probability of every row is known and recorded. The draws are a hash of
the row id and the pass id, so a pass can be repeated exactly.

Selected rows go to the ``annotate`` topic as items with ``source: "review"`` and the
row's event id; an annotation of one becomes a correction of that event (``relabel``),
which keeps its place in the sample: the row was sampled by the reservoir, not selected,
so its weight does not change (the probability is kept as ``review_probability``).

>>> import numpy as np
>>> probs = np.array([[0.98, 0.02], [0.55, 0.45], [0.5, 0.5], [0.1, 0.9]])
>>> q = review_probabilities(probs, np.array([0, 0, 0, 1]), budget=1.0)
>>> [round(float(x), 3) for x in q], round(float(q[:3].sum()), 6)
([0.021, 0.464, 0.515, 1.0], 1.0)
"""

from __future__ import annotations

import hashlib

import numpy as np


def uncertainty(probs: np.ndarray) -> np.ndarray:
    """``1 - (top - second)`` per row of class probabilities."""
    if probs.shape[1] < 2:
        return np.zeros(probs.shape[0])
    top2 = np.sort(probs, axis=1)[:, -2:]
    return 1.0 - (top2[:, 1] - top2[:, 0])


def _fill(u: np.ndarray, budget: float) -> np.ndarray:
    """``min(1, c u)`` with ``sum = min(budget, rows with u > 0)``."""
    target = min(float(budget), float((u > 0).sum()))
    if target <= 0:
        return np.zeros_like(u)
    lo, hi = 0.0, 1.0 / max(float(u[u > 0].min()), 1e-12)
    for _ in range(100):  # bisection on c: sum(min(1, c u)) is monotone in c
        c = (lo + hi) / 2
        if np.minimum(1.0, c * u).sum() < target:
            lo = c
        else:
            hi = c
    return np.minimum(1.0, hi * u)


def review_probabilities(probs: np.ndarray, labels: np.ndarray, budget: float) -> np.ndarray:
    """Per row, the probability this pass draws it (module docstring)."""
    u = uncertainty(probs)
    q = np.zeros(probs.shape[0])
    for lab in np.unique(labels).tolist():
        m = labels == lab
        q[m] = _fill(u[m], budget)
    return q


def draws(ids: list[str], pass_id: str) -> np.ndarray:
    """A uniform number in [0, 1) per row id, reproducible for a pass."""
    out = np.empty(len(ids))
    for i, rid in enumerate(ids):
        h = hashlib.blake2b(f"{pass_id}\0{rid}".encode(), digest_size=8).digest()
        out[i] = int.from_bytes(h, "big") / 2**64
    return out


def review_items(data, probs: np.ndarray, model_id: str, budget: float, now: float) -> list:
    """The items a pass over ``data`` (a :class:`~trainer.data.SnapshotData`) selects, for
    the ``annotate`` topic."""
    q = review_probabilities(probs, data.labels, budget)
    pass_id = f"{data.version}:{model_id}"
    picked = np.flatnonzero(draws(data.ids, pass_id) < q)
    u = uncertainty(probs)
    names = data.label_names
    items = []
    for r in picked.tolist():
        p = probs[r]
        top = int(np.argmax(p))
        ent = float(-(p[p > 0] * np.log(p[p > 0])).sum())
        label = names[int(data.labels[r])]
        items.append({
            "item_id": f"rv-{model_id}-{data.ids[r]}",
            "source": "review",
            "features": [float(x) for x in data.features[r]],
            "model": model_id,
            "predicted": names[top],
            "probability": float(p[top]),
            "uncertainty": float(u[r]),
            "entropy": ent,
            "selection_probability": float(q[r]),
            "label": label,
            "snapshot": data.version,
            "reason": f"scoring pass over snapshot {data.version}: uncertainty {u[r]:.3f} "
                      f"(labelled {label!r}, predicted {names[top]!r}); drawn with "
                      f"probability {q[r]:.3f}",
            "ts": now,
            "event_id": data.ids[r],
        })  # fmt: skip
    return items
