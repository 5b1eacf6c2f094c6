"""Annotator agreement: Cohen's kappa (two annotators), Fleiss' kappa (any number), per
label (one label against the rest), and per item.

>>> round(cohen_kappa(["a", "a", "b", "b"], ["a", "b", "b", "b"]), 4)
0.5
>>> book = AnnotationBook()
>>> for ann, lab in (("ann1", "cat"), ("ann2", "dog")):
...     book.update("item-1", ann, lab)
>>> book.item_agreement("item-1")
0.0
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float:
    """Cohen's kappa of two annotators' labels over the same items (nan if undefined)."""
    if len(a) != len(b) or not a:
        raise ValueError(
            f"cohen_kappa: need two equally long, non-empty label lists, got {len(a)} and {len(b)}"
        )
    cats = {c: i for i, c in enumerate(sorted(set(a) | set(b)))}
    k = len(cats)
    m = np.zeros((k, k))
    for x, y in zip(a, b, strict=True):
        m[cats[x], cats[y]] += 1
    n = m.sum()
    po = np.trace(m) / n
    pe = float((m.sum(0) * m.sum(1)).sum()) / n**2
    return float("nan") if pe == 1.0 else float((po - pe) / (1 - pe))


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa from an items x categories table of rating counts.

    Items may have different numbers of ratings (at least 2 each); with equal numbers this
    is the classic statistic.
    """
    c = np.asarray(counts, dtype=np.float64)
    n_i = c.sum(1)
    c = c[n_i >= 2]
    n_i = n_i[n_i >= 2]
    if c.shape[0] == 0:
        return float("nan")
    p_i = ((c * c).sum(1) - n_i) / (n_i * (n_i - 1))
    p_bar = p_i.mean()
    p_j = c.sum(0) / n_i.sum()
    p_e = float((p_j * p_j).sum())
    return float("nan") if p_e == 1.0 else float((p_bar - p_e) / (1 - p_e))


class AnnotationBook:
    """Latest label per (item, annotator); agreement per item and kappas per label."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, str]] = {}

    def update(self, item: str, annotator: str, label: str) -> None:
        self.items.setdefault(item, {})[annotator] = label

    def item_agreement(self, item: str) -> float:
        """Share of annotator pairs that agree on the item (1.0 with fewer than 2)."""
        labels = list(self.items.get(item, {}).values())
        n = len(labels)
        if n < 2:
            return 1.0
        _, counts = np.unique(labels, return_counts=True)
        return float((counts * (counts - 1)).sum() / (n * (n - 1)))

    def label_kappas(self) -> dict[str, float]:
        """Per label: kappa of "this label or not" over items with 2+ annotators — Cohen's
        when exactly two annotators rated every such item, Fleiss' otherwise."""
        rated = {i: a for i, a in self.items.items() if len(a) >= 2}
        labels = sorted({lab for a in rated.values() for lab in a.values()})
        annotators = {frozenset(a) for a in rated.values()}
        two = len(annotators) == 1 and len(next(iter(annotators), ())) == 2
        out = {}
        for lab in labels:
            if two:
                (x, y) = sorted(next(iter(annotators)))
                out[lab] = cohen_kappa(
                    [str(rated[i][x] == lab) for i in rated],
                    [str(rated[i][y] == lab) for i in rated],
                )
            else:
                table = np.array(
                    [
                        [sum(v == lab for v in a.values()), sum(v != lab for v in a.values())]
                        for a in rated.values()
                    ]
                )
                out[lab] = fleiss_kappa(table)
        return out
