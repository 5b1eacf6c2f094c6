"""Drift statistics: numba merge walks against scipy, in the same run, and the per-tick
cost of a drift check for 50 labels x 16 features.

Rates are tests per second on presorted inputs for ours (the monitor keeps the reference
sorted and sorts each window column once) and on the same arrays for scipy (which sorts
internally); both include the p-value.
"""

from __future__ import annotations

import time

import numpy as np
from scipy import stats

from drift.monitor import DriftConfig, DriftMonitor
from drift.stats import ks_2samp, wasserstein_1

from .common import write_result


def _rate(fn, min_time: float = 0.3) -> float:
    fn()  # warm-up (JIT)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_time:
        fn()
        n += 1
    return n / (time.perf_counter() - t0)


def main(sizes=(1_000, 10_000, 100_000, 1_000_000)) -> dict:
    from rich.console import Console
    from rich.table import Table

    rng = np.random.default_rng(0)
    rows = []
    for n in sizes:
        a, b = rng.normal(size=n), rng.normal(0.05, 1, size=n)
        sa, sb = np.sort(a), np.sort(b)
        r_ks = _rate(lambda sa=sa, sb=sb: ks_2samp(sa, sb, presorted=True))
        s_ks = _rate(lambda a=a, b=b: stats.ks_2samp(a, b))
        r_w = _rate(lambda sa=sa, sb=sb: wasserstein_1(sa, sb, presorted=True))
        s_w = _rate(lambda a=a, b=b: stats.wasserstein_distance(a, b))
        ours = ks_2samp(sa, sb, presorted=True)
        ref = stats.ks_2samp(a, b, method="exact" if ours.method == "exact" else "asymp")
        rows.append(
            {
                "n": n,
                "ks_method": ours.method,
                "ks_per_s": r_ks,
                "scipy_ks_per_s": s_ks,
                "ks_ratio": r_ks / s_ks,
                "wasserstein_per_s": r_w,
                "scipy_wasserstein_per_s": s_w,
                "wasserstein_ratio": r_w / s_w,
                "max_abs_diff_pvalue": abs(ours.pvalue - ref.pvalue),
            }
        )

    # one drift tick: 50 labels x 16 features, window 1,000 and reference 2,000 per label
    labels, d = 50, 16
    m = DriftMonitor(
        [f"f{j}" for j in range(d)],
        DriftConfig(window_capacity=1_000, window_half_life_s=1e9, max_labels=64),
    )
    lab = [f"l{i}" for i in rng.integers(0, labels, 100_000)]
    m.set_reference(lab, rng.normal(size=(100_000, d)))
    ls = [f"l{i}" for i in rng.integers(0, labels, 60_000)]
    m.update(
        ls, np.arange(60_000.0), np.arange(60_000, dtype=np.uint64), rng.normal(size=(60_000, d))
    )
    m.check()
    t = time.perf_counter()
    ticks = 5
    for _ in range(ticks):
        m.check()
    tick = (time.perf_counter() - t) / ticks

    # the worker's per-batch cost: the window update, 12 labels x 4 features, 1M events in
    # 5,000-event batches, labels as codes of a batch vocabulary (as the worker sends them)
    w = DriftMonitor([f"f{j}" for j in range(4)], DriftConfig())
    n_up = 1_000_000
    codes = rng.integers(0, 12, n_up)
    vocab = [f"l{i}" for i in range(12)]
    ts_up = 1e9 + np.arange(n_up) * 1e-3
    keys_up = rng.integers(0, 2**63, n_up).astype(np.uint64)
    x_up = rng.normal(size=(n_up, 4)).astype(np.float32)
    t = time.perf_counter()
    for lo in range(0, n_up, 5_000):
        hi = lo + 5_000
        w.update_codes(vocab, codes[lo:hi], ts_up[lo:hi], keys_up[lo:hi], x_up[lo:hi])
    update_rate = n_up / (time.perf_counter() - t)

    table = Table(title="drift statistics: tests per second (same run, same data)")
    for c in ("n", "KS (ours)", "KS (scipy)", "×", "W1 (ours)", "W1 (scipy)", "×", "KS method"):
        table.add_column(c, justify="right")
    for r in rows:
        table.add_row(
            f"{r['n']:,}",
            f"{r['ks_per_s']:,.0f}",
            f"{r['scipy_ks_per_s']:,.0f}",
            f"{r['ks_ratio']:.1f}",
            f"{r['wasserstein_per_s']:,.0f}",
            f"{r['scipy_wasserstein_per_s']:,.0f}",
            f"{r['wasserstein_ratio']:.1f}",
            r["ks_method"],
        )
    Console().print(table)
    Console().print(
        f"drift tick, {labels} labels x {d} features (KS + W1 + PSI, window 1,000, "
        f"BH correction, label mix): {tick * 1e3:.0f} ms; window update "
        f"{update_rate:,.0f} events/s (12 labels x 4 features, 5,000-event batches)"
    )
    out = {"rows": rows, "tick_seconds_50x16": tick, "window_update_events_per_s": update_rate}
    print(f"wrote {write_result('drift', out)}")
    return out


if __name__ == "__main__":
    main()
