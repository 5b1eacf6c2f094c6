"""Sub-strata inside a label: coverage of the feature space, exact inclusion within a
stratum, the label-level budget, order independence and exact merges. Fixed seeds,
stated tolerances."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from sampler import ConfigError, Grid, LabelReservoirs, QuotaPolicy, group_of, stratum_name

GRID = Grid(features=(0, 1), edges=(-1.0, 0.0, 1.0))  # 16 cells over two features


def _policy(**kw) -> QuotaPolicy:
    base = dict(min_capacity=20, max_capacity=200, boost_capacity=400, global_cap=2_000,
                max_labels=64, substrata=GRID.spec)  # fmt: skip
    return QuotaPolicy(**{**base, **kw})


def _skewed(n: int, rng: np.random.Generator) -> np.ndarray:
    """A label's features: 95% in one corner cell, 5% over the whole grid."""
    x = rng.normal(-2.0, 0.3, size=(n, 2))
    rare = rng.random(n) < 0.05
    x[rare] = rng.uniform(-3, 3, size=(int(rare.sum()), 2))
    return x


def _feed(res: LabelReservoirs, labels: list[str], x: np.ndarray, keys: np.ndarray,
          strata: bool = True, batch: int = 1_000) -> None:  # fmt: skip
    cells = GRID.cells(x)
    names = [stratum_name(a, c) if strata else a for a, c in zip(labels, cells.tolist(),
                                                                  strict=True)]  # fmt: skip
    for lo in range(0, len(names), batch):
        ids = res.encode(names[lo : lo + batch])
        res.update(ids, np.zeros(len(ids)), keys[lo : lo + batch])


def _cells_of_retained(res: LabelReservoirs, keys: np.ndarray, x: np.ndarray) -> np.ndarray:
    pos = {int(k): i for i, k in enumerate(keys.tolist())}
    it = res.items()
    return GRID.cells(x[[pos[int(k)] for k in it.keys.tolist()]])


def test_a_label_sample_covers_its_feature_space() -> None:
    rng = np.random.default_rng(4)
    n = 20_000
    x = _skewed(n, rng)
    keys = np.arange(n, dtype=np.uint64) * np.uint64(2654435761) + np.uint64(3)
    cells_seen = np.bincount(GRID.cells(x), minlength=16)
    flat = LabelReservoirs(_policy(substrata=""), seed=1)
    _feed(flat, ["a"] * n, x, keys, strata=False)
    strat = LabelReservoirs(_policy(), seed=1)
    _feed(strat, ["a"] * n, x, keys)
    got_flat = np.bincount(_cells_of_retained(flat, keys, x), minlength=16)
    got = np.bincount(_cells_of_retained(strat, keys, x), minlength=16)
    assert got_flat.sum() == 200 and got.sum() <= 200 + 16  # the label's capacity holds
    corner = int(np.argmax(cells_seen))
    # flat: the corner takes ~96% of the sample (binomial, 200 draws; stated: > 85%)
    assert got_flat[corner] > 0.85 * got_flat.sum()
    # strata: every cell with events is represented, the rare ones fully up to the level
    level = int(strat.capacities()[stratum_name("a", corner)])
    assert (got[cells_seen > 0] >= np.minimum(cells_seen[cells_seen > 0], level)).all()
    assert got[corner] < 0.5 * got.sum()
    assert (got > 0).sum() == (cells_seen > 0).sum() > (got_flat > 0).sum()


def test_inclusion_within_a_stratum_is_exact_over_seeds() -> None:
    # one label, 4 cells of 200, 50, 20 and 5 events; capacity 60 over the label
    sizes = [200, 50, 20, 5]
    x = np.concatenate([np.full((s, 2), v) for s, v in zip(sizes, [-2.0, -0.5, 0.5, 2.0],
                                                                strict=True)])  # fmt: skip
    n = x.shape[0]
    keys = np.arange(n, dtype=np.uint64) + np.uint64(1)
    trials = 600
    counts = np.zeros(n)
    stated = np.zeros(n)
    for seed in range(trials):
        res = LabelReservoirs(_policy(min_capacity=60, max_capacity=60, boost_capacity=60,
                                      global_cap=60 + 64 + 63 * 60), seed=seed)  # fmt: skip
        _feed(res, ["a"] * n, x, keys, batch=97)
        it = res.items()
        counts[(it.keys - 1).astype(np.int64)] += 1
        stated[(it.keys - 1).astype(np.int64)] += it.inclusion
        if seed == 0:
            caps = res.capacities()
    # within a stratum all events are alike: the observed inclusion of each stratum's
    # events is binomial with p = capacity / size (bottom-k), compared at alpha = 0.001
    start = 0
    for size, cell in zip(sizes, GRID.cells(x[np.cumsum([0, *sizes[:-1]])]).tolist(),
                          strict=True):  # fmt: skip
        k = min(size, caps[stratum_name("a", cell)])
        got = counts[start : start + size].sum()
        p = stats.binomtest(int(got), trials * size, k / size).pvalue
        assert p > 1e-3, (size, k, got / (trials * size))
        start += size
    assert caps[stratum_name("a", GRID.cells(x[:1])[0])] < 60  # the label's 60 are shared


def _content(r: LabelReservoirs) -> tuple:
    return (
        r.seen_counts(), r.capacities(), r.thresholds(),
        {n: r.retained_keys(n).tolist() for n in r.labels},
    )  # fmt: skip


def test_capacities_are_order_independent_and_merge_exactly() -> None:
    rng = np.random.default_rng(9)
    n = 12_000
    labels = [f"l{i}" for i in rng.choice(6, n, p=[0.5, 0.2, 0.1, 0.1, 0.05, 0.05])]
    x = rng.normal(0, 1.5, size=(n, 2))
    keys = rng.permutation(np.arange(n, dtype=np.uint64) * np.uint64(7919) + np.uint64(5))
    pol = _policy(min_capacity=5, max_labels=128)  # 6 labels x 16 cells
    one = LabelReservoirs(pol, seed=3)
    _feed(one, labels, x, keys, batch=n)
    perm = rng.permutation(n)
    other = LabelReservoirs(pol, seed=3)
    _feed(other, [labels[i] for i in perm], x[perm], keys[perm], batch=333)
    assert _content(other) == _content(one)  # label ids follow arrival; contents not
    halves = []
    for part in (perm[: n // 3], perm[n // 3 :]):
        r = LabelReservoirs(pol, seed=3)
        _feed(r, [labels[i] for i in part], x[part], keys[part], batch=500)
        halves.append(r)
    assert _content(halves[0].merge(halves[1])) == _content(one)
    caps = one.capacities()
    total = sum(caps.values())
    retained = sum(one.retained_counts().values())
    assert retained <= 2_000  # global_cap holds with strata
    per_label: dict[str, int] = {}
    for name, c in one.retained_counts().items():
        per_label[group_of(name)] = per_label.get(group_of(name), 0) + c
    assert max(per_label.values()) <= 200 + 16  # a label's ceiling (+1 per stratum)
    assert total > 0


def test_capacities_only_shrink_as_the_stream_goes_on() -> None:
    rng = np.random.default_rng(2)
    res = LabelReservoirs(_policy(), seed=0)
    before: dict[str, int] = {}
    for step in range(30):
        n = 500
        labels = [f"l{i}" for i in rng.choice(4, n)]
        x = rng.normal(0, 1 + step / 10, size=(n, 2))  # the cells widen as it goes
        keys = np.arange(step * n, (step + 1) * n, dtype=np.uint64) + np.uint64(11)
        _feed(res, labels, x, keys, batch=n)
        caps = res.capacities()
        assert all(caps[k] <= v for k, v in before.items()), step
        before = caps


def test_the_grid_and_the_budget_are_checked() -> None:
    with pytest.raises(ConfigError, match="substrata_edges"):
        Grid((0,), (1.0, 0.0))
    with pytest.raises(ConfigError, match="4096"):
        Grid((0, 1, 2, 3, 4), tuple(float(i) for i in range(9)))
    with pytest.raises(ConfigError, match="global_cap"):
        QuotaPolicy(min_capacity=10, global_cap=640, max_labels=64, substrata=GRID.spec)
    QuotaPolicy(min_capacity=10, global_cap=640 + 64, max_labels=64, substrata=GRID.spec)
