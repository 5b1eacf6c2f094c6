"""Sampler throughput: numba kernels against baselines measured in the same run.

10M events, 50 Zipf-skewed labels, k = 1,000 per label. Baselines: a pure-Python
Algorithm R (on a 1M-event slice; rate reported per event), Apache DataSketches'
``var_opt_sketch`` through its Python binding (one sketch per label, per-event
``update`` calls, 1M-event slice), and a memory-bandwidth reference (one pass of
numpy reductions over the same input columns).

The keyed rows are measured twice: one call over the whole stream from an empty state
(every admission of a bottom-k sample, about ``k * (1 + ln(n_label / k))`` per label,
costs a hash-set and heap update), and in steady state (warmed on the first 20%, then
65,536-event batches as the worker sends them).
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np

from sampler import LabelReservoirs, QuotaPolicy
from sampler.skip import SkipReservoirs

from .common import best_of, print_table, write_result


def make_stream(n: int, n_labels: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, n_labels + 1) ** 1.1
    labels = rng.choice(n_labels, size=n, p=p / p.sum()).astype(np.int32)
    ts = np.linspace(0.0, 86_400.0, n)
    keys = rng.integers(0, 2**63, size=n, dtype=np.int64).astype(np.uint64)
    return labels, ts, keys


def algorithm_r_python(labels: list[int], k: int, n_labels: int, seed: int) -> list[list[int]]:
    rnd = random.Random(seed)
    res: list[list[int]] = [[] for _ in range(n_labels)]
    seen = [0] * n_labels
    for i, l in enumerate(labels):
        seen[l] += 1
        r = res[l]
        if len(r) < k:
            r.append(i)
        else:
            j = rnd.randrange(seen[l])
            if j < k:
                r[j] = i
    return res


def main(n: int = 10_000_000, n_labels: int = 50, k: int = 1_000, slice_n: int = 1_000_000):
    labels, ts, keys = make_stream(n, n_labels)
    policy = QuotaPolicy(
        min_capacity=k,
        max_capacity=k,
        boost_capacity=k,
        global_cap=k * n_labels,
        max_labels=n_labels,
    )
    rows = []

    def add(name: str, events: int, seconds: float, **extra) -> None:
        rows.append(
            {
                "name": name,
                "events": events,
                "seconds": seconds,
                "events_per_s": events / seconds,
                **extra,
            }
        )

    # memory-bandwidth reference: touch every input byte once
    add(
        "memory bandwidth (numpy reductions)",
        n,
        best_of(lambda: (labels.sum(), keys.sum(), ts.sum())),
    )

    for mode, hl, name in (
        ("uniform", None, "numba keyed uniform (bottom-k)"),
        ("decayed", 3_600.0, "numba decayed (Efraimidis-Spirakis, log space)"),
    ):
        LabelReservoirs(policy, mode=mode, half_life=hl).update(
            labels[:1000], ts[:1000], keys[:1000]
        )  # JIT warm-up

        def run(mode=mode, hl=hl):
            LabelReservoirs(policy, mode=mode, half_life=hl, seed=1).update(labels, ts, keys)

        add(name, n, best_of(run))

        # steady state, the worker's shape: a reservoir warmed on the first 20% of the
        # stream takes the rest in 65,536-event batches (admissions are rarer; this is
        # the rate of the threshold-rejection path plus the admissions that remain)
        warm_n = n // 5

        def steady(mode=mode, hl=hl, warm_n=warm_n):
            r = LabelReservoirs(policy, mode=mode, half_life=hl, seed=1)
            r.update(labels[:warm_n], ts[:warm_n], keys[:warm_n])
            t = time.perf_counter()
            for lo in range(warm_n, n, 65_536):
                hi = min(n, lo + 65_536)
                r.update(labels[lo:hi], ts[lo:hi], keys[lo:hi])
            return time.perf_counter() - t

        add(f"{name}, steady state", n - warm_n, min(steady() for _ in range(3)))

    SkipReservoirs(k, n_labels).update(labels[:1000])

    add(
        "numba Algorithm L (keyless, geometric skips)",
        n,
        best_of(lambda: SkipReservoirs(k, n_labels, seed=1).update(labels)),
    )

    lab_list = labels[:slice_n].tolist()
    t = time.perf_counter()
    algorithm_r_python(lab_list, k, n_labels, 1)
    add("pure-Python Algorithm R (baseline)", slice_n, time.perf_counter() - t)

    try:
        from datasketches import var_opt_sketch

        sk = [var_opt_sketch(k) for _ in range(n_labels)]
        ups = [s.update for s in sk]
        t = time.perf_counter()
        for i, l in enumerate(lab_list):
            ups[l](i)
        add("DataSketches var_opt_sketch (Python binding)", slice_n, time.perf_counter() - t)
    except ImportError as e:  # pragma: no cover - the bench extra installs it
        print(f"skipping DataSketches: {e}")

    baseline = "pure-Python Algorithm R (baseline)"
    base = next(r["events_per_s"] for r in rows if r["name"] == baseline)
    for r in rows:
        r["ratio_vs_python_algorithm_r"] = r["events_per_s"] / base
    print_table(f"sampler: {n:,} events, {n_labels} Zipf labels, k={k}", rows, baseline)
    path = write_result(
        "sampler", {"events": n, "labels": n_labels, "k": k, "baseline": baseline, "rows": rows}
    )
    print(f"wrote {path}")
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--labels", type=int, default=50)
    ap.add_argument("--k", type=int, default=1_000)
    a = ap.parse_args()
    main(a.events, a.labels, a.k)
