"""Agreement statistics against reference computations."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from streamproc.hitl.agreement import AnnotationBook, cohen_kappa, fleiss_kappa


def test_cohen_kappa_matches_scikit_learn_on_random_annotations() -> None:
    rng = np.random.default_rng(4)
    for _ in range(50):
        k = int(rng.integers(2, 6))
        cats = [f"c{i}" for i in range(k)]
        a = rng.choice(cats, int(rng.integers(5, 200)))
        noise = rng.choice(cats, a.shape[0])
        b = np.where(rng.random(a.shape[0]) < rng.random(), a, noise)
        ours = cohen_kappa(list(a), list(b))
        ref = cohen_kappa_score(a, b)
        assert ours == pytest.approx(ref, abs=1e-12) or (np.isnan(ours) and np.isnan(ref))


def test_fleiss_kappa_reference_example() -> None:
    # Fleiss (1971) as reproduced in many texts: 10 items, 14 raters, 5 categories
    table = np.array(
        [
            [0, 0, 0, 0, 14],
            [0, 2, 6, 4, 2],
            [0, 0, 3, 5, 6],
            [0, 3, 9, 2, 0],
            [2, 2, 8, 1, 1],
            [7, 7, 0, 0, 0],
            [3, 2, 6, 3, 0],
            [2, 5, 3, 2, 2],
            [6, 5, 2, 1, 0],
            [0, 2, 2, 3, 7],
        ]
    )
    assert fleiss_kappa(table) == pytest.approx(0.20993, abs=1e-5)


def test_fleiss_with_two_raters_is_scotts_pi() -> None:
    rng = np.random.default_rng(1)
    a = rng.choice(list("xyz"), 300)
    b = np.where(rng.random(300) < 0.7, a, rng.choice(list("xyz"), 300))
    cats = sorted(set(a) | set(b))
    table = np.array([[(x == c) + (y == c) for c in cats] for x, y in zip(a, b, strict=True)])
    po = np.mean(a == b)
    pooled = np.array([(np.sum(a == c) + np.sum(b == c)) / 600 for c in cats])
    scott = (po - (pooled**2).sum()) / (1 - (pooled**2).sum())
    assert fleiss_kappa(table) == pytest.approx(scott, abs=1e-12)


def test_annotation_book_per_label_and_per_item() -> None:
    book = AnnotationBook()
    rng = np.random.default_rng(2)
    truth = rng.choice(["spam", "ham"], 200)
    for i, t in enumerate(truth):
        book.update(f"i{i}", "ann1", str(t))
        book.update(f"i{i}", "ann2", str(t) if rng.random() < 0.9 else "spam")
    k = book.label_kappas()
    a1 = [book.items[f"i{i}"]["ann1"] for i in range(200)]
    a2 = [book.items[f"i{i}"]["ann2"] for i in range(200)]
    ref = cohen_kappa_score([x == "spam" for x in a1], [x == "spam" for x in a2])
    assert k["spam"] == pytest.approx(ref, abs=1e-12)
    book.update("x", "ann1", "spam")
    book.update("x", "ann2", "ham")
    book.update("x", "ann3", "spam")
    assert book.item_agreement("x") == pytest.approx(1 / 3)
