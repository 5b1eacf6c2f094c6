"""Active learning at equal annotation budgets: uncertainty-selected labels (the worker's
own :class:`streamproc.hitl.active.Selector`) against randomly selected ones, macro-F1 of
the trainer's model on held-out data, several seeds.

Data: scikit-learn's handwritten digits (UCI "Optical Recognition of Handwritten
Digits", 1,797 images of 8x8 pixels, 10 classes; shipped inside scikit-learn, no
download). Per seed: 30% held out (stratified) for scoring, 20 labelled items to start,
the rest an unlabelled pool. Each round is one "hour": the pool's items arrive in a
random order, the current model scores each (uncertainty = 1 - margin), the selector
picks under a budget per hour and predicted label, the oracle labels what was picked;
the random arm labels as many items, drawn uniformly from the same pool. Both arms then
train the trainer's MLP (same config and seed) and are scored on the held-out data.

    python -m benchmarks.bench_active [--seeds 5] [--rounds 6] [--budget 3]
"""

from __future__ import annotations

import argparse

import numpy as np

from .common import write_result

FOCUS = 1.0


def _data():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    return d.data.astype(np.float32) / 16.0, d.target.astype(np.int64), train_test_split


def _fit(x, y, k, seed, w=None):
    from trainer.data import SnapshotData
    from trainer.train import TrainConfig, train

    n = y.shape[0]
    names = [str(i) for i in range(k)]
    multi = np.zeros((n, k), np.float32)
    multi[np.arange(n), y] = 1.0
    w = np.ones(n) if w is None else np.asarray(w, np.float64)
    data = SnapshotData("bench", names, x, y, multi, w, [f"r{i}" for i in range(n)],
                        {"seen": {nm: 1 for nm in names}})  # fmt: skip
    weighting = "balanced" if np.all(w == 1) else "prior"
    cfg = TrainConfig(
        epochs=60,
        batch_size=64,
        seed=seed,
        device="cpu",
        eval_percent=10,
        weighting=weighting,
        objective="balanced",
    )
    return train(data, cfg, progress=False).model


def _macro_f1(model, x, y, k) -> float:
    from sklearn.metrics import f1_score

    from trainer.train import predict_proba

    pred = predict_proba(model, x).argmax(axis=1)
    return float(f1_score(y, pred, average="macro", labels=list(range(k))))


def run_seed(seed: int, rounds: int, budget: float, weighted: bool = False) -> dict:
    from streamproc.hitl.active import Selector, uncertainty
    from trainer.train import predict_proba

    x, y, split = _data()
    k = 10
    xp, xt, yp, yt = split(x, y, test_size=0.3, stratify=y, random_state=seed)
    rng = np.random.default_rng(seed)
    start = rng.choice(yp.shape[0], 20, replace=False)
    arms = {"uncertainty": set(start.tolist()), "random": set(start.tolist())}
    q_of = dict.fromkeys(start.tolist(), 1.0)  # selection probability of each labelled item

    def fit(a):
        rows = sorted(arms[a])
        w = [1.0 / q_of[i] for i in rows] if a == "uncertainty" and weighted else None
        return _fit(xp[rows], yp[rows], k, seed, w)

    curves = {a: [] for a in arms}
    for r in range(rounds):
        models = {a: fit(a) for a in arms}
        for a in arms:
            curves[a].append(_macro_f1(models[a], xt, yt, k))
        # one hour of traffic: the unlabelled pool in a random order, scored by the model
        sel = Selector(budget, focus=FOCUS)
        pool = [i for i in rng.permutation(yp.shape[0]).tolist() if i not in arms["uncertainty"]]
        probs = predict_proba(models["uncertainty"], xp[pool])
        picked = []
        for j, i in enumerate(pool):
            p = probs[j]
            q = sel.offer(f"s{seed}r{r}i{i}", str(int(p.argmax())), uncertainty(p),
                          now=r * 3600.0 + j * 3600.0 / len(pool))  # fmt: skip
            if q is not None:
                picked.append(i)
                q_of[i] = q
        arms["uncertainty"] |= set(picked)
        rest = [i for i in range(yp.shape[0]) if i not in arms["random"]]
        arms["random"] |= set(rng.choice(rest, min(len(picked), len(rest)), replace=False).tolist())
    models = {a: fit(a) for a in arms}
    for a in arms:
        curves[a].append(_macro_f1(models[a], xt, yt, k))
    return {"labelled": len(arms["uncertainty"]), "curves": curves}


def main(seeds: int = 5, rounds: int = 6, budget: float = 3.0) -> dict:
    from rich.console import Console
    from rich.table import Table

    runs = [run_seed(s, rounds, budget) for s in range(seeds)]
    unc = np.array([r["curves"]["uncertainty"] for r in runs])
    rnd = np.array([r["curves"]["random"] for r in runs])
    labelled = [r["labelled"] for r in runs]
    t = Table(title=f"active learning on UCI digits: macro-F1 after each round "
                    f"({seeds} seeds, budget {budget:g}/hour/label)")  # fmt: skip
    for c in ("round", "uncertainty (mean ± sd)", "random (mean ± sd)", "difference"):
        t.add_column(c, justify="right")
    for i in range(unc.shape[1]):
        t.add_row(str(i), f"{unc[:, i].mean():.3f} ± {unc[:, i].std():.3f}",
                  f"{rnd[:, i].mean():.3f} ± {rnd[:, i].std():.3f}",
                  f"{(unc[:, i] - rnd[:, i]).mean():+.3f}")  # fmt: skip
    Console().print(t)
    wins = int((unc[:, -1] > rnd[:, -1]).sum())
    print(f"labelled items at the end: {labelled}; uncertainty ahead of random at the end "
          f"in {wins} of {seeds} seeds")  # fmt: skip
    res = {"dataset": "sklearn digits (UCI optdigits)", "seeds": seeds, "rounds": rounds,
           "budget_per_hour_per_label": budget, "labelled": labelled,
           "uncertainty": unc.tolist(), "random": rnd.tolist(),
           "final_mean": {"uncertainty": float(unc[:, -1].mean()),
                          "random": float(rnd[:, -1].mean())},
           "seeds_won": wins}  # fmt: skip
    print(f"wrote {write_result('active', res)}")
    return res


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--budget", type=float, default=3.0)
    a = ap.parse_args()
    main(a.seeds, a.rounds, a.budget)
