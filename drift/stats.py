"""Two-sample distribution distances on sorted arrays, in numba, with scipy's conventions.

* :func:`ks_2samp` — Kolmogorov-Smirnov statistic (one merge walk) and two-sided p-value:
  exact for equal sizes up to 10,000 (an O(n) alternating sum, scipy's threshold) and,
  for unequal sizes, when ``n1 * n2 <= EXACT_MAX_CELLS`` (lattice-path probabilities);
  else Smirnov's asymptotic distribution ``kstwo.sf(D, round(n1 n2 / (n1 + n2)))`` as scipy does.
* :func:`wasserstein_1` — integral of |F1 - F2| (equals ``scipy.stats.wasserstein_distance``).
* :func:`psi` — Population Stability Index on quantile bins of the reference.
* :func:`js_divergence`, :func:`chi2_homogeneity` — for categorical (label) counts.

Too little data gives ``insufficient=True``, never a silent "no drift". Non-finite
values (NaN, ±inf) have no place in a distribution distance: every statistic raises
:class:`~stratastream.errors.InputError` naming the sample and the count (the merge walks
would otherwise never advance past a NaN). A constant reference column is binned by PSI
as below / at / above the constant, so a shift away from it is seen.

>>> import numpy as np
>>> r = ks_2samp(np.arange(10.0), np.arange(5.0, 15.0))
>>> round(r.statistic, 2), r.method
(0.5, 'exact')
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit
from scipy import stats as sps

from stratastream.errors import InputError

EXACT_MAX_CELLS = 1_000_000
EXACT_MAX_N = 10_000
MIN_SAMPLES = 8


def _finite(x, name: str, sample: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    bad = int((~np.isfinite(x)).sum())
    if bad:
        raise InputError(
            f"{name}: {sample} has {bad} non-finite value(s) (NaN or inf); drop or impute "
            "them before comparing distributions"
        )
    return x


@dataclass(frozen=True)
class TestResult:
    statistic: float
    pvalue: float
    method: str
    insufficient: bool = False
    n1: int = 0
    n2: int = 0


@njit(cache=True)
def ks_statistic_sorted(a, b):
    """max |F_a - F_b| over the pooled values (ties: both CDFs past the tie)."""
    n1, n2 = a.shape[0], b.shape[0]
    i = j = 0
    d = 0.0
    while i < n1 and j < n2:
        x = a[i] if a[i] <= b[j] else b[j]
        while i < n1 and a[i] <= x:
            i += 1
        while j < n2 and b[j] <= x:
            j += 1
        diff = abs(i / n1 - j / n2)
        if diff > d:
            d = diff
    return d


@njit(cache=True)
def wasserstein_sorted(a, b):
    """Integral over x of |F_a(x) - F_b(x)| for sorted a, b."""
    n1, n2 = a.shape[0], b.shape[0]
    i = j = 0
    total = 0.0
    prev = a[0] if a[0] <= b[0] else b[0]
    while i < n1 or j < n2:
        take_a = j >= n2 or (i < n1 and a[i] <= b[j])
        x = a[i] if take_a else b[j]
        total += abs(i / n1 - j / n2) * (x - prev)
        prev = x
        while i < n1 and a[i] <= x:
            i += 1
        while j < n2 and b[j] <= x:
            j += 1
    return total


@njit(cache=True)
def _prob_inside(n1, n2, h, lcm):
    """P(a uniformly random lattice path keeps |i*lcm/n1 - j*lcm/n2| < h everywhere)."""
    a, b = lcm // n1, lcm // n2
    row = np.zeros(n2 + 1)
    row[0] = 1.0
    for j in range(1, n2 + 1):  # i = 0
        row[j] = row[j - 1] * (n2 - j + 1) / (n1 + n2 - j + 1) if abs(j * b) < h else 0.0
    for i in range(1, n1 + 1):
        new = np.zeros(n2 + 1)
        for j in range(0, n2 + 1):
            if abs(i * a - j * b) >= h:
                continue
            rem = n1 + n2 - (i - 1) - j  # items left before the step from (i-1, j)
            v = row[j] * (n1 - i + 1) / rem if rem > 0 else 0.0
            if j > 0:
                rem2 = n1 + n2 - i - (j - 1)
                v += new[j - 1] * (n2 - j + 1) / rem2 if rem2 > 0 else 0.0
            new[j] = v
        row = new
    return row[n2]


@njit(cache=True)
def _prob_outside_equal(n, h):
    """P(D_{n,n} >= h/n) in O(n): the Gnedenko-Korolyuk alternating sum
    2 * sum_k (-1)^(k+1) C(2n, n-kh) / C(2n, n), evaluated inside out (Horner form,
    r_{k+1} = r_k * q_k) so that no large binomial is ever formed."""
    if h <= 0:
        return 1.0
    p = 0.0
    for k in range(n // h, 0, -1):
        q = 1.0
        for j in range((k - 1) * h, k * h):
            q *= (n - j) / (n + 1 + j)
        p = q * (1.0 - p)
    return 2.0 * p


def ks_2samp(
    a: np.ndarray, b: np.ndarray, presorted: bool = False, min_samples: int = MIN_SAMPLES
) -> TestResult:
    """Two-sided two-sample KS test."""
    a = _finite(a, "ks_2samp", "a")
    b = _finite(b, "ks_2samp", "b")
    n1, n2 = a.shape[0], b.shape[0]
    if min(n1, n2) < min_samples:
        return TestResult(math.nan, math.nan, "none", True, n1, n2)
    if not presorted:
        a, b = np.sort(a), np.sort(b)
    d = float(ks_statistic_sorted(a, b))
    if n1 == n2 and n1 <= EXACT_MAX_N:  # scipy's exact threshold; O(n) for equal sizes
        p = _prob_outside_equal(n1, int(round(d * n1)))
        return TestResult(d, float(min(1.0, max(0.0, p))), "exact", False, n1, n2)
    if n1 * n2 <= EXACT_MAX_CELLS:
        g = math.gcd(n1, n2)
        lcm = n1 // g * n2
        h = int(round(d * lcm))
        p = 1.0 - _prob_inside(n1, n2, h, lcm)
        return TestResult(d, float(min(1.0, max(0.0, p))), "exact", False, n1, n2)
    m, n = sorted([float(n1), float(n2)], reverse=True)
    p = float(sps.kstwo.sf(d, np.round(m * n / (m + n))))
    return TestResult(d, float(np.clip(p, 0, 1)), "asymp", False, n1, n2)


def wasserstein_1(a: np.ndarray, b: np.ndarray, presorted: bool = False) -> float:
    """Wasserstein-1 distance; :class:`InputError` on NaN or inf (never a hang).

    >>> wasserstein_1(np.array([0.0, 1.0]), np.array([1.0, 2.0]))
    1.0
    >>> wasserstein_1(np.array([0.0, np.nan]), np.array([1.0]))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stratastream.errors.InputError: wasserstein_1: a has 1 non-finite value(s) (NaN or inf); ...
    """
    a = _finite(a, "wasserstein_1", "a")
    b = _finite(b, "wasserstein_1", "b")
    if a.shape[0] == 0 or b.shape[0] == 0:
        return math.nan
    if not presorted:
        a, b = np.sort(a), np.sort(b)
    return float(wasserstein_sorted(a, b))


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10, eps: float = 1e-4) -> float:
    """Population Stability Index over (at most) ``bins`` quantile bins of the reference.

    A constant reference (all values ``v``) uses three bins: below, at and above ``v``.

    >>> round(psi(np.zeros(100), np.ones(100)), 2)
    18.42
    >>> psi(np.zeros(100), np.zeros(50))
    0.0
    """
    reference = _finite(reference, "psi", "reference")
    current = _finite(current, "psi", "current")
    if reference.shape[0] == 0 or current.shape[0] == 0:
        return math.nan
    if reference.min() == reference.max():
        v = reference[0]
        r = np.array([0, reference.shape[0], 0])
        c = np.array([(current < v).sum(), (current == v).sum(), (current > v).sum()])
    else:
        edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
        r = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=edges.size + 1)
        c = np.bincount(np.searchsorted(edges, current, side="right"), minlength=edges.size + 1)
    rp = np.maximum(r / r.sum(), eps)
    cp = np.maximum(c / c.sum(), eps)
    return float(np.sum((cp - rp) * np.log(cp / rp)))


def js_divergence(p_counts: np.ndarray, q_counts: np.ndarray) -> float:
    """Jensen-Shannon divergence (natural log) of two count vectors; 0 = identical mix.

    Equals ``scipy.spatial.distance.jensenshannon(p, q) ** 2``.
    """
    p = np.asarray(p_counts, dtype=np.float64)
    q = np.asarray(q_counts, dtype=np.float64)
    if p.sum() <= 0 or q.sum() <= 0:
        return math.nan
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(x: np.ndarray) -> float:
        nz = x > 0
        return float(np.sum(x[nz] * np.log(x[nz] / m[nz])))

    return 0.5 * kl(p) + 0.5 * kl(q)


def chi2_homogeneity(
    ref_counts: np.ndarray, cur_counts: np.ndarray, min_total: int = 20
) -> TestResult:
    """Chi-square test that two count vectors come from the same category mix."""
    r = np.asarray(ref_counts, dtype=np.float64)
    c = np.asarray(cur_counts, dtype=np.float64)
    if r.sum() < min_total or c.sum() < min_total:
        return TestResult(math.nan, math.nan, "none", True, int(r.sum()), int(c.sum()))
    keep = (r + c) > 0
    table = np.vstack([r[keep], c[keep]])
    if table.shape[1] < 2:
        return TestResult(0.0, 1.0, "chi2", False, int(r.sum()), int(c.sum()))
    res = sps.chi2_contingency(table, correction=False)
    return TestResult(
        float(res.statistic), float(res.pvalue), "chi2", False, int(r.sum()), int(c.sum())
    )


def adjust_pvalues(p: np.ndarray, method: str = "bh") -> np.ndarray:
    """Multiple-testing control: Benjamini-Hochberg (``bh``) or Bonferroni; NaNs stay NaN."""
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    q = p[ok]
    m = q.size
    if m == 0:
        return out
    if method == "bonferroni":
        out[ok] = np.minimum(1.0, q * m)
    elif method == "bh":
        order = np.argsort(q)
        ranked = q[order] * m / np.arange(1, m + 1)
        ranked = np.minimum.accumulate(ranked[::-1])[::-1]
        adj = np.empty(m)
        adj[order] = np.minimum(1.0, ranked)
        out[ok] = adj
    else:
        raise ValueError(f"correction: expected 'bh' or 'bonferroni', got {method!r}")
    return out
