"""Change detection on series with known change points: Stratastream's drift monitor as
the worker runs it, side by side with River's ADWIN, KSWIN and Page-Hinkley.

Series (one feature; synthetic ones over 5 seeds):

* ``mean shift``: N(0, 1) then N(1, 1) from t = 2,000 (4,000 points);
* ``variance``: N(0, 1) then N(0, 3^2) from t = 2,000;
* ``gradual``: the mean ramps from 0 to 2 over t = 2,000..3,000;
* ``seasonal, no change``: a sine of period 200 plus N(0, 0.5) noise (every alarm is false);
* ``Nile``: annual flow of the Nile at Aswan, 1871-1970 (100 values; the dam at Aswan,
  1898, is the documented change point, index 27). Source: Cobb (1978), shipped with
  statsmodels as ``statsmodels.datasets.nile`` (no download).

Stratastream: a :class:`drift.monitor.DriftMonitor` with the first points as the
reference (as the worker's first snapshot would be), events one time unit apart, a
check every ``every`` events, its default alarm rule (KS, alpha 0.01) and its reference
rebase after an alarm. River: one ``update`` per point, ``drift_detected`` as the alarm.

Reported per detector and series: misses (no alarm within the horizon after the change),
mean detection delay (points), false alarms (alarms before the change; every alarm on the
no-change series) per 1,000 checks and per 1,000 points (River checks at every point,
the monitor every 50 points, every 2 on the Nile).

    python -m benchmarks.bench_drift_detection      (needs the bench extra: river, statsmodels)
"""

from __future__ import annotations

import numpy as np

from .common import write_result

SEEDS = (0, 1, 2, 3, 4)


def _series(seed: int) -> dict[str, tuple[np.ndarray, int | None]]:
    rng = np.random.default_rng(seed)
    n, cp = 4_000, 2_000
    base = rng.normal(size=n)
    mean = base.copy()
    mean[cp:] += 1.0
    var = base.copy()
    var[cp:] *= 3.0
    grad = base + np.clip((np.arange(n) - cp) / 1_000, 0, 1) * 2.0
    season = np.sin(np.arange(n) * 2 * np.pi / 200) + rng.normal(0, 0.5, n)
    return {"mean shift": (mean, cp), "variance": (var, cp), "gradual": (grad, cp),
            "seasonal, no change": (season, None)}  # fmt: skip


def _nile() -> tuple[np.ndarray, int]:
    import statsmodels.api as sm

    d = sm.datasets.nile.load_pandas().data
    return d["volume"].to_numpy(dtype=float), int((d["year"] == 1898).to_numpy().argmax())


def _ours(x: np.ndarray, ref_n: int, every: int, half_life: float, min_samples: int):
    """Alarm positions and the number of checks."""
    from drift.monitor import DriftConfig, DriftMonitor

    cfg = DriftConfig(alpha=0.01, min_samples=min_samples, window_capacity=1_000,
                      window_half_life_s=half_life, actions=("alert",))  # fmt: skip
    m = DriftMonitor(["x"], cfg)
    m.set_reference(["v"] * ref_n, x[:ref_n, None])
    alarms, checks = [], 0
    for lo in range(ref_n, len(x), every):
        hi = min(len(x), lo + every)
        m.update(["v"] * (hi - lo), np.arange(lo, hi, dtype=float),
                 np.arange(lo, hi, dtype=np.uint64), x[lo:hi, None])  # fmt: skip
        checks += 1
        if m.check().labels["v"].drifted:
            alarms.append(hi)
    return alarms, checks


def _river(name: str, x: np.ndarray, start: int, seed: int):
    from river import drift

    det = {"ADWIN": lambda: drift.ADWIN(),
           "KSWIN": lambda: drift.KSWIN(alpha=0.005, seed=seed),
           "PageHinkley": lambda: drift.PageHinkley()}[name]()  # fmt: skip
    alarms = []
    for i, v in enumerate(x):
        det.update(float(v))
        if i >= start and det.drift_detected:
            alarms.append(i)
    return alarms, len(x) - start


def _score(alarms, checks, points, cp, horizon):
    false = alarms if cp is None else [a for a in alarms if a < cp]
    base = {"false_per_1000": 1000 * len(false) / checks,
            "false_per_1000_points": 1000 * len(false) / points}  # fmt: skip
    if cp is None:
        return {**base, "miss": None, "delay": None}
    hits = [a for a in alarms if cp <= a < cp + horizon]
    return {**base, "miss": not hits, "delay": (hits[0] - cp) if hits else None}


def main() -> dict:
    detectors = ["Stratastream", "ADWIN", "KSWIN", "PageHinkley"]
    rows: dict[tuple[str, str], list[dict]] = {}
    for seed in SEEDS:
        for sname, (x, cp) in _series(seed).items():
            for d in detectors:
                if d == "Stratastream":
                    alarms, checks = _ours(x, 500, every=50, half_life=100.0, min_samples=30)
                else:
                    alarms, checks = _river(d, x, 500, seed)
                score = _score(alarms, checks, len(x) - 500, cp, 1_500)
                rows.setdefault((sname, d), []).append(score)
    x, cp = _nile()
    for d in detectors:
        if d == "Stratastream":
            alarms, checks = _ours(x, 20, every=2, half_life=5.0, min_samples=8)
        else:
            alarms, checks = _river(d, x, 20, 0)
        rows[("Nile", d)] = [_score(alarms, checks, len(x) - 20, cp, 30)]
    table = []
    for (sname, d), rs in rows.items():
        delays = [r["delay"] for r in rs if r["delay"] is not None]
        misses = [r["miss"] for r in rs if r["miss"] is not None]
        table.append({
            "series": sname, "detector": d, "runs": len(rs),
            "misses": int(sum(misses)) if misses else None,
            "mean_delay": float(np.mean(delays)) if delays else None,
            "false_per_1000_checks": float(np.mean([r["false_per_1000"] for r in rs])),
            "false_per_1000_points": float(np.mean([r["false_per_1000_points"] for r in rs])),
        })  # fmt: skip
    print(f"{'series':22} {'detector':13} {'misses':>8} {'delay':>8} {'false/1k checks':>16} "
          f"{'false/1k points':>16}")  # fmt: skip
    for t in table:
        miss = "-" if t["misses"] is None else f"{t['misses']}/{t['runs']}"
        delay = "-" if t["mean_delay"] is None else f"{t['mean_delay']:.0f}"
        fc, fp = t["false_per_1000_checks"], t["false_per_1000_points"]
        print(f"{t['series']:22} {t['detector']:13} {miss:>8} {delay:>8} {fc:>16.1f} {fp:>16.1f}")
    out = {"seeds": list(SEEDS), "table": table}
    write_result("drift_detection", out)
    return out


if __name__ == "__main__":
    main()
