"""Statistical properties, with fixed seeds and stated tolerances."""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy import stats

from sampler import LabelReservoirs, QuotaPolicy

TRIALS = 3_000


def _trial_policy(k: int) -> QuotaPolicy:
    # each trial is its own label, so the draws of different trials are independent
    return QuotaPolicy(
        min_capacity=k, max_capacity=k, boost_capacity=k, global_cap=k * TRIALS, max_labels=TRIALS
    )


def _inclusion_counts(n: int, k: int, mode: str, ts: np.ndarray, half_life=None) -> np.ndarray:
    res = LabelReservoirs(_trial_policy(k), mode=mode, half_life=half_life, seed=2024)
    labels = np.repeat(np.arange(TRIALS, dtype=np.int32), n)
    keys = np.tile(np.arange(n, dtype=np.uint64), TRIALS)
    res.update(labels, np.tile(ts, TRIALS), keys)
    it = res.items()
    assert (np.bincount(it.labels, minlength=TRIALS) == k).all()
    return np.bincount(it.keys.astype(np.int64), minlength=n)


def test_uniform_inclusion_is_k_over_n_chi_square() -> None:
    n, k = 40, 8
    counts = _inclusion_counts(n, k, "uniform", np.arange(n, dtype=float))
    expected = np.full(n, TRIALS * k / n)
    # each event's inclusion count ~ Binomial(TRIALS, k/n); the sum is fixed, so the
    # Pearson statistic scaled by 1/(1 - k/n) is ~ chi2(n - 1). Reject at alpha = 0.001.
    chi2 = float(((counts - expected) ** 2 / expected).sum()) / (1 - k / n)
    p = stats.chi2.sf(chi2, df=n - 1)
    assert p > 1e-3, (chi2, p, counts)


def _exact_wswor_inclusion(w: np.ndarray, k: int) -> np.ndarray:
    """Inclusion probabilities of successive weighted sampling without replacement."""
    n = w.shape[0]
    incl = np.zeros(n)
    for seq in itertools.permutations(range(n), k):
        p, rest = 1.0, w.sum()
        for i in seq:
            p *= w[i] / rest
            rest -= w[i]
        incl[list(seq)] += p
    return incl


def test_decayed_matches_exact_weighted_sampling() -> None:
    n, k, half_life = 6, 2, 1.0
    ts = np.array([0.0, 0.3, 0.9, 1.4, 2.2, 3.0])
    w = np.exp(math.log(2.0) / half_life * ts)
    exact = _exact_wswor_inclusion(w, k)
    counts = _inclusion_counts(n, k, "decayed", ts, half_life=half_life)
    freq = counts / TRIALS
    # per-event binomial standard error; all within 4.5 sigma (family-wise ~ 1e-4)
    se = np.sqrt(exact * (1 - exact) / TRIALS)
    assert np.all(np.abs(freq - exact) <= 4.5 * se), (freq, exact)
    # and a joint goodness-of-fit test
    chi2 = float((((counts - TRIALS * exact) ** 2) / (TRIALS * exact)).sum())
    assert stats.chi2.sf(chi2, df=n - 1) > 1e-3


def test_decay_prefers_recent_events() -> None:
    n, k = 200, 20
    ts = np.arange(n, dtype=float)
    counts = _inclusion_counts(n, k, "decayed", ts, half_life=20.0)
    # events in the last half-life are retained far more often than the oldest ones
    assert counts[-20:].mean() > 10 * max(1.0, counts[:20].mean())


def test_horvitz_thompson_recovers_counts() -> None:
    """Sum of 1/inclusion per label estimates the label's seen count without bias."""
    rng = np.random.default_rng(5)
    policy = QuotaPolicy(
        min_capacity=50, max_capacity=50, boost_capacity=50, global_cap=50 * 8, max_labels=8
    )
    true = np.array([5_000, 1_500, 400, 120])
    rel_err = {"uniform": [], "decayed": []}
    for trial in range(60):
        labels = np.repeat(np.arange(4, dtype=np.int32), true)
        rng.shuffle(labels)
        ts = np.sort(rng.uniform(0, 1_000, labels.shape[0]))
        keys = np.arange(labels.shape[0], dtype=np.uint64) + np.uint64(trial * 10**6)
        for mode, hl in (("uniform", None), ("decayed", 300.0)):
            res = LabelReservoirs(policy, mode=mode, half_life=hl, seed=trial)
            res.update(labels, ts, keys)
            it = res.items()
            est = np.bincount(it.labels, weights=it.ht_weights, minlength=4)
            rel_err[mode].append(est / true - 1)
    for mode, errs in rel_err.items():
        mean = np.mean(errs, axis=0)
        # the mean of 60 estimates is within 5% of the truth for every label
        assert np.all(np.abs(mean) < 0.05), (mode, mean)


def test_algorithm_l_inclusion_is_uniform() -> None:
    from sampler.skip import SkipReservoirs

    n, k = 40, 8
    r = SkipReservoirs(k=k, n_labels=TRIALS, seed=3)
    # trial t is label t; each label sees n events in turn
    r.update(np.tile(np.arange(TRIALS, dtype=np.int32), n))
    pos = r.positions.reshape(TRIALS, k)
    event_index = pos // TRIALS  # which of the label's n events
    counts = np.bincount(event_index.ravel(), minlength=n)
    expected = TRIALS * k / n
    chi2 = float(((counts - expected) ** 2 / expected).sum()) / (1 - k / n)
    assert stats.chi2.sf(chi2, df=n - 1) > 1e-3, counts
