"""Promotion decisions a user can trust: a declared metric, a margin, and a paired
bootstrap confidence interval over the rows both models are scored on.

The new model is promoted when the lower bound of the one-sided ``confidence`` interval
of ``metric(new) - metric(promoted)`` exceeds ``margin``; with ``confidence=0`` the
point estimates are compared (``new > promoted + margin``). Rows are resampled jointly
for both models (paired), so the interval reflects the evaluation set's size: on a few
dozen rows a small gain is not enough.

>>> import numpy as np
>>> y = np.repeat([0, 1], 500)
>>> better = y.copy(); better[:20] = 1          # 98% right
>>> worse = y.copy(); worse[:150] = 1           # 85% right
>>> c = compare(y, better, worse, 2, "accuracy", confidence=0.95)
>>> c.promote, round(c.new, 2), round(c.old, 2)
(True, 0.98, 0.85)
>>> compare(y, worse, better, 2, "accuracy", confidence=0.95).promote
False
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .errors import TrainerError

METRICS = ("macro_f1", "accuracy", "balanced_accuracy")


@dataclass(frozen=True)
class Comparison:
    metric: str
    new: float
    old: float
    diff: float
    low: float  # lower bound of the one-sided interval of new - old
    high: float  # upper bound of the same two-sided interval (for the report)
    confidence: float
    margin: float
    rows: int
    promote: bool

    def to_dict(self) -> dict:
        return asdict(self)

    def reason(self) -> str:
        if self.confidence > 0:
            return (
                f"{self.metric} {self.new:.4f} vs promoted {self.old:.4f} on {self.rows} rows: "
                f"difference {self.diff:+.4f}, {self.confidence:.0%} lower bound "
                f"{self.low:+.4f} vs margin {self.margin:g}"
            )
        return (
            f"{self.metric} {self.new:.4f} vs promoted {self.old:.4f} on {self.rows} rows "
            f"(margin {self.margin:g})"
        )


def _scores(cm: np.ndarray, metric: str) -> np.ndarray:
    """Metric per confusion matrix; ``cm`` is [B, k, k] (true, predicted), weighted."""
    tp = np.diagonal(cm, axis1=1, axis2=2)
    true = cm.sum(axis=2)
    pred = cm.sum(axis=1)
    present = true > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        if metric == "accuracy":
            return tp.sum(1) / np.maximum(cm.sum((1, 2)), 1e-300)
        rec = np.where(present, tp / np.where(present, true, 1), 0.0)
        if metric == "balanced_accuracy":
            return rec.sum(1) / np.maximum(present.sum(1), 1)
        prec = np.where(pred > 0, tp / np.where(pred > 0, pred, 1), 0.0)
        f1 = np.where(prec + rec > 0, 2 * prec * rec / np.where(prec + rec > 0, prec + rec, 1), 0)
        return (f1 * present).sum(1) / np.maximum(present.sum(1), 1)


def metric_value(y, pred, k: int, metric: str, weights=None) -> float:
    """One metric of predictions ``pred`` against ``y`` (label indices in ``[0, k)``)."""
    w = np.ones(len(y)) if weights is None else np.asarray(weights, float)
    cm = np.bincount(np.asarray(y) * k + np.asarray(pred), weights=w, minlength=k * k)
    return float(_scores(cm.reshape(1, k, k), metric)[0])


def compare(
    y: np.ndarray,
    pred_new: np.ndarray,
    pred_old: np.ndarray,
    k: int,
    metric: str = "macro_f1",
    weights: np.ndarray | None = None,
    confidence: float = 0.95,
    margin: float = 0.0,
    resamples: int = 1_000,
    seed: int = 0,
) -> Comparison:
    """Compare two models' predictions on the same rows (see the module docstring)."""
    if metric not in METRICS:
        raise TrainerError(f"promote_metric: expected one of {METRICS}, got {metric!r}")
    if not 0.0 <= confidence < 1.0:
        raise TrainerError(f"confidence: must be in [0, 1), got {confidence!r}")
    y = np.asarray(y, np.int64)
    n = y.shape[0]
    if n == 0:
        raise TrainerError("compare: no rows to compare the models on")
    w = np.ones(n) if weights is None else np.asarray(weights, float)
    new = metric_value(y, pred_new, k, metric, w)
    old = metric_value(y, pred_old, k, metric, w)
    diff = new - old
    low = high = diff
    if confidence > 0:
        rng = np.random.default_rng(seed)
        diffs = np.empty(resamples)
        step = max(1, 4_000_000 // max(1, n))  # resamples per chunk, bounded memory
        for lo in range(0, resamples, step):
            b = min(step, resamples - lo)
            idx = rng.integers(0, n, size=(b, n))
            base = np.repeat(np.arange(b) * k * k, n)
            yy, ww = y[idx].ravel(), w[idx].ravel()
            cells = []
            for pred in (np.asarray(pred_new)[idx].ravel(), np.asarray(pred_old)[idx].ravel()):
                cm = np.bincount(base + yy * k + pred, weights=ww, minlength=b * k * k)
                cells.append(_scores(cm.reshape(b, k, k), metric))
            diffs[lo : lo + b] = cells[0] - cells[1]
        low = float(np.quantile(diffs, 1.0 - confidence))
        high = float(np.quantile(diffs, confidence))
    promote = (low > margin) if confidence > 0 else (diff > margin)
    return Comparison(metric, new, old, diff, low, high, confidence, margin, n, bool(promote))
