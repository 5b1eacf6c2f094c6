"""Training-set quality on a real, skewed stream: what a model learns from each sample.

Data: scikit-learn's bundled handwritten digits (UCI "Optical Recognition of Handwritten
Digits", 1,797 images of 8x8 pixels, 10 classes; shipped inside scikit-learn, no
download). A skewed stream is drawn from it with a Zipf class prior (a = 1.2: the most
frequent digit ~37%, the rarest ~2.4%), with replacement and small pixel noise so that
it is long enough for reservoirs; a test split of *held-out images* is drawn with the
same natural prior.

Training sets of (about) equal size, the same model (the trainer's MLP) and settings:

* ``quotas``: Stratastream's per-label reservoirs (equal quotas), objective ``balanced``;
* ``quotas+prior``: the same rows, objective ``natural`` (post-hoc logit adjustment by
  the Horvitz-Thompson prior the sampler estimates);
* ``uniform``: one uniform reservoir of the same size;
* ``window``: the last events of the stream (a sliding window of the same size);
* ``stream``: every event (the ceiling; many times the size).

Metrics on the natural-prior test split: macro-F1, balanced accuracy (macro recall) and
the recall of the two rarest classes, mean and spread over seeds.

    python -m benchmarks.bench_quality
"""

from __future__ import annotations

import numpy as np

from .common import write_result

SEEDS = (0, 1, 2, 3, 4)
STREAM = 30_000
PER_LABEL = 120  # quota per digit: 1,200 rows


def _data(seed: int):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(seed)
    test_idx = rng.permutation(len(y))[: len(y) // 3]
    train_pool = np.setdiff1d(np.arange(len(y)), test_idx)
    order = rng.permutation(10)  # which digit is frequent changes with the seed
    prior = np.empty(10)
    prior[order] = 1.0 / np.arange(1, 11) ** 1.2
    prior /= prior.sum()

    def draw(pool, n):
        labels = rng.choice(10, size=n, p=prior)
        by = {c: pool[y[pool] == c] for c in range(10)}
        rows = np.array([rng.choice(by[c]) for c in labels])
        return x[rows] + rng.normal(0, 0.5, size=(n, x.shape[1])), labels

    xs, ys = draw(train_pool, STREAM)
    test_rows = np.concatenate([rng.choice(test_idx[y[test_idx] == c], size=max(
        5, int(round(prior[c] * 3_000)))) for c in range(10)])  # fmt: skip
    return xs, ys, x[test_rows], y[test_rows], prior


def _snapshot(x, y, w, name: str):
    from trainer.data import SnapshotData

    names = [str(c) for c in range(10)]
    multi = np.eye(10, dtype=np.float32)[y]
    ids = [f"{name}-{i}" for i in range(len(y))]
    return SnapshotData(name, names, x.astype(np.float32), y.astype(np.int64), multi,
                        w.astype(np.float64), ids, {})  # fmt: skip


def _samples(xs, ys, seed: int) -> dict:
    from sampler import LabelReservoirs, QuotaPolicy

    keys = np.arange(len(ys), dtype=np.uint64) + np.uint64(seed * 10**9)
    ts = np.arange(len(ys), dtype=np.float64)
    q = LabelReservoirs(
        QuotaPolicy(
            min_capacity=PER_LABEL, max_capacity=PER_LABEL, global_cap=10 * PER_LABEL, max_labels=10
        ),
        seed=seed,
    )
    q.update(q.encode([str(c) for c in ys]), ts, keys)  # fmt: skip
    it = q.items()
    rows = keys_to_rows(it.keys, seed)
    n = len(rows)
    u = LabelReservoirs(QuotaPolicy(min_capacity=n, max_capacity=n, global_cap=n,
                                    max_labels=1), seed=seed)  # fmt: skip
    u.update(u.encode(["all"] * len(ys)), ts, keys)
    urows = keys_to_rows(u.items().keys, seed)
    wrows = np.arange(len(ys) - n, len(ys))
    ones = np.ones(n)
    return {
        "quotas": (_snapshot(xs[rows], ys[rows], it.ht_weights, "q"), "balanced"),
        "quotas+prior": (_snapshot(xs[rows], ys[rows], it.ht_weights, "q"), "natural"),
        "uniform": (_snapshot(xs[urows], ys[urows], ones, "u"), "balanced"),
        "window": (_snapshot(xs[wrows], ys[wrows], ones, "w"), "balanced"),
        "stream": (_snapshot(xs, ys, np.ones(len(ys)), "s"), "balanced"),
    }


def keys_to_rows(keys: np.ndarray, seed: int) -> np.ndarray:
    return (keys - np.uint64(seed * 10**9)).astype(np.int64)


def _score(model, xt, yt, prior) -> dict:
    from trainer.train import predict_proba

    pred = predict_proba(model, xt.astype(np.float32)).argmax(1)
    rec = np.array([(pred[yt == c] == c).mean() for c in range(10)])
    prec = np.array([(yt[pred == c] == c).mean() if (pred == c).any() else 0.0
                     for c in range(10)])  # fmt: skip
    f1 = np.where(prec + rec > 0, 2 * prec * rec / np.maximum(prec + rec, 1e-12), 0.0)
    rare = np.argsort(prior)[:2]
    return {
        "macro_f1": float(f1.mean()),
        "balanced_accuracy": float(rec.mean()),
        "accuracy": float((pred == yt).mean()),
        "rare_recall": float(rec[rare].mean()),
    }


def main() -> dict:
    from trainer.train import TrainConfig, train

    results: dict[str, list[dict]] = {}
    sizes: dict[str, int] = {}
    for seed in SEEDS:
        xs, ys, xt, yt, prior = _data(seed)
        for name, (snap, objective) in _samples(xs, ys, seed).items():
            cfg = TrainConfig(epochs=30 if name != "stream" else 4, batch_size=256, lr=3e-3,
                              device="cpu", seed=seed, objective=objective)  # fmt: skip
            res = train(snap, cfg, progress=False)
            results.setdefault(name, []).append(_score(res.model, xt, yt, prior))
            sizes[name] = snap.n
    table = {}
    for name, rows in results.items():
        table[name] = {"rows": sizes[name]}
        for m in rows[0]:
            v = np.array([r[m] for r in rows])
            table[name][m] = {"mean": float(v.mean()), "std": float(v.std(ddof=1))}
    print(f"{'sample':14} {'rows':>6} {'macro-F1':>16} {'bal. acc.':>16} {'rare recall':>16}")
    for name, t in table.items():
        cells = [f"{t[m]['mean']:.3f} ± {t[m]['std']:.3f}"
                 for m in ("macro_f1", "balanced_accuracy", "rare_recall")]  # fmt: skip
        print(f"{name:14} {t['rows']:>6} " + " ".join(f"{c:>16}" for c in cells))
    out = {"data": "sklearn load_digits, Zipf(1.2) class prior, 30k-event stream",
           "seeds": list(SEEDS), "table": table}  # fmt: skip
    write_result("quality", out)
    return out


if __name__ == "__main__":
    main()
