"""The numba statistics agree with scipy, ties and tiny samples included."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from drift.stats import (
    adjust_pvalues,
    chi2_homogeneity,
    js_divergence,
    ks_2samp,
    psi,
    wasserstein_1,
)

SIZES = [
    (8, 8),
    (9, 13),
    (30, 70),
    (200, 150),
    (1000, 1000),
    (5000, 5000),
    (3000, 5000),
    (20_000, 500),
]


@pytest.mark.parametrize("n1,n2", SIZES)
@pytest.mark.parametrize("kind", ["continuous", "ties", "shifted"])
def test_ks_and_wasserstein_match_scipy(n1: int, n2: int, kind: str) -> None:
    rng = np.random.default_rng(n1 * 7 + n2)
    if kind == "ties":
        a, b = rng.integers(0, 6, n1).astype(float), rng.integers(0, 7, n2).astype(float)
    else:
        a = rng.normal(size=n1)
        b = rng.normal(0.3 if kind == "shifted" else 0.0, 1.0, size=n2)
    ours = ks_2samp(a, b)
    ref = stats.ks_2samp(a, b, method="exact" if ours.method == "exact" else "asymp")
    assert ours.statistic == pytest.approx(ref.statistic, abs=1e-12)
    assert ours.pvalue == pytest.approx(ref.pvalue, rel=1e-6, abs=1e-12)
    assert wasserstein_1(a, b) == pytest.approx(
        stats.wasserstein_distance(a, b), rel=1e-10, abs=1e-12
    )


def test_exact_is_used_for_small_samples_and_asymptotic_beyond() -> None:
    rng = np.random.default_rng(0)
    assert ks_2samp(rng.normal(size=100), rng.normal(size=100)).method == "exact"
    assert ks_2samp(rng.normal(size=2_000), rng.normal(size=1_000)).method == "asymp"


def test_insufficient_data_is_explicit() -> None:
    r = ks_2samp(np.arange(5.0), np.arange(100.0))
    assert r.insufficient and math.isnan(r.pvalue)
    assert chi2_homogeneity(np.array([3, 2]), np.array([1, 1])).insufficient
    assert math.isnan(wasserstein_1(np.array([]), np.array([1.0])))


def test_categorical_statistics_match_scipy() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        p, q = rng.integers(0, 50, 6).astype(float), rng.integers(0, 50, 6).astype(float)
        assert js_divergence(p, q) == pytest.approx(jensenshannon(p, q) ** 2, abs=1e-12)
        r = chi2_homogeneity(p, q)
        keep = (p + q) > 0
        ref = stats.chi2_contingency(np.vstack([p[keep], q[keep]]), correction=False)
        assert r.pvalue == pytest.approx(ref.pvalue, rel=1e-9)


def test_pvalue_adjustment_matches_scipy() -> None:
    rng = np.random.default_rng(1)
    p = rng.uniform(size=40) ** 2
    np.testing.assert_allclose(
        adjust_pvalues(p, "bh"), stats.false_discovery_control(p), rtol=1e-12
    )
    np.testing.assert_allclose(adjust_pvalues(p, "bonferroni"), np.minimum(1, p * 40))
    with pytest.raises(ValueError, match="correction"):
        adjust_pvalues(p, "holm")


def test_psi_reference_values() -> None:
    rng = np.random.default_rng(2)
    ref = rng.normal(size=20_000)
    assert psi(ref, rng.normal(size=20_000)) < 0.01  # same distribution
    assert psi(ref, rng.normal(1.0, 1.0, size=20_000)) > 0.25  # the usual "major shift" bar


def test_non_finite_values_are_a_clear_error_never_a_hang() -> None:
    """NaN made the numba merge walks loop forever; every statistic now refuses it."""
    from stratastream.errors import InputError

    good = np.arange(20.0)
    for bad in (np.array([1.0, np.nan] * 10), np.array([1.0, np.inf] * 10),
                np.array([-np.inf] * 20)):  # fmt: skip
        for fn in (ks_2samp, wasserstein_1, psi):
            with pytest.raises(InputError, match="non-finite"):
                fn(good, bad)
            with pytest.raises(InputError, match="non-finite"):
                fn(bad, good)


def test_psi_sees_a_shift_away_from_a_constant_reference() -> None:
    ref = np.full(200, 3.0)
    assert psi(ref, np.full(100, 3.0)) == 0.0
    assert psi(ref, np.full(100, 4.0)) > 1.0 and psi(ref, np.full(100, 2.0)) > 1.0
    assert ks_2samp(ref, np.full(100, 4.0)).statistic == 1.0  # both agree: a change
