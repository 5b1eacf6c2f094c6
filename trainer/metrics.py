"""Classification metrics: macro precision / recall / F1, per label, confusion matrix,
expected calibration error.

>>> import numpy as np
>>> r = evaluate_predictions(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]),
...                          np.eye(3)[[0, 1, 2, 2]], ["a", "b", "c"])
>>> round(r.macro_f1, 3), r.per_label["b"]["recall"]
(0.778, 0.5)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class EvalReport:
    macro_precision: float
    macro_recall: float
    macro_f1: float
    accuracy: float
    ece: float
    per_label: dict[str, dict[str, float]]
    confusion: list[list[int]]  # rows: true label, columns: predicted
    n: int

    def to_dict(self) -> dict:
        return asdict(self)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, bins: int = 15) -> float:
    """Top-label ECE: sum over confidence bins of |accuracy - confidence| x bin weight."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y_true
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def evaluate_predictions(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    probs: np.ndarray,
    label_names: list[str],
    weights: np.ndarray | None = None,
) -> EvalReport:
    """Metrics of single-label predictions; labels absent from ``y_true`` are left out of
    the macro averages (their precision still counts false positives in ``per_label``).

    ``weights`` (e.g. Horvitz-Thompson weights of a sample's rows) turn every count into a
    weighted count, so the metrics estimate those of the population the sample was drawn
    from (the stream's natural class mix) rather than of the sample itself. Supports and
    the confusion matrix stay counts of rows."""
    k = len(label_names)
    cm = confusion_matrix(y_true, y_pred, k)
    wcm = cm.astype(float)
    if weights is not None:
        wcm = np.bincount(y_true * k + y_pred, weights=weights, minlength=k * k).reshape(k, k)
    tp = np.diag(wcm)
    support = cm.sum(axis=1)
    predicted = wcm.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = np.where(predicted > 0, tp / predicted, 0.0)
        rec = np.where(support > 0, tp / wcm.sum(axis=1), 0.0)
        f1 = np.where(prec + rec > 0, 2 * prec * rec / (prec + rec), 0.0)
    present = support > 0
    per = {
        label_names[i]: {
            "precision": float(prec[i]),
            "recall": float(rec[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i in range(k)
    }
    return EvalReport(
        macro_precision=float(prec[present].mean()),
        macro_recall=float(rec[present].mean()),
        macro_f1=float(f1[present].mean()),
        accuracy=float(tp.sum() / max(1e-300, wcm.sum())) if wcm.sum() else 0.0,
        ece=expected_calibration_error(probs, y_true),
        per_label=per,
        confusion=cm.tolist(),
        n=int(y_true.shape[0]),
    )
