"""Drift on the stream: a reference (the last snapshot) against a recent window.

The window is, per label, a short-half-life decayed reservoir (a
:class:`sampler.LabelReservoirs` in decayed mode), so drift detection costs bounded
memory however fast events arrive. A :meth:`DriftMonitor.check` computes, per label and
feature, the KS test, Wasserstein-1 and PSI against the reference, controls multiple
testing across features (Benjamini-Hochberg or Bonferroni), combines them into a label
score (-log10 of the smallest adjusted p-value), compares the label mix of the window
(exponentially decayed counts) with the reference's (Jensen-Shannon, chi-square), and
turns what it finds into actions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from sampler import LabelReservoirs, QuotaPolicy

from .stats import adjust_pvalues, chi2_homogeneity, js_divergence, ks_2samp, psi, wasserstein_1

ACTIONS = ("alert", "boost_quota", "shorten_half_life", "request_snapshot", "retrain")


@dataclass(frozen=True)
class DriftConfig:
    alpha: float = 0.01  # per label, after multiple-testing correction across features
    correction: str = "bh"  # or "bonferroni"
    min_samples: int = 50  # per label, in the window and in the reference
    window_half_life_s: float = 600.0
    window_capacity: int = 1_000  # per label
    max_labels: int = 256
    psi_bins: int = 10
    scarce_ratio: float = 0.5  # window share < ratio x reference share -> scarce
    mix_alpha: float = 0.01
    actions: tuple[str, ...] = ("alert", "boost_quota", "request_snapshot", "retrain")
    seed: int = 0
    # the window holds events no older than this before the newest one (default: two
    # half-lives), so a label with few events still has a *recent* window, not its history
    window_span_s: float | None = None
    rebase_after_alarm: bool = True  # an alarm's new regime becomes that label's reference

    @property
    def span_s(self) -> float:
        return self.window_span_s if self.window_span_s is not None else 2 * self.window_half_life_s

    def __post_init__(self) -> None:
        from stratastream.errors import ConfigError

        if not 0 < self.alpha < 1:
            raise ConfigError(f"drift alpha: must be in (0, 1), got {self.alpha}")
        if self.correction not in ("bh", "bonferroni"):
            raise ConfigError(f"drift correction: 'bh' or 'bonferroni', got {self.correction!r}")
        unknown = set(self.actions) - set(ACTIONS)
        if unknown:
            raise ConfigError(f"drift actions: unknown {sorted(unknown)}; known: {list(ACTIONS)}")
        if self.min_samples < 8 or self.window_capacity < self.min_samples:
            raise ConfigError("drift min_samples: must be >= 8 and <= window_capacity")
        if self.window_span_s is not None and not self.window_span_s > 0:
            raise ConfigError(f"drift window_span_s: must be > 0, got {self.window_span_s}")


@dataclass
class FeatureDrift:
    feature: str
    ks: float
    pvalue: float
    p_adjusted: float
    wasserstein: float
    psi: float
    drifted: bool
    # both distributions on common bins, for reports: (edges, reference, window) counts
    histogram: tuple[list[float], list[int], list[int]] | None = None


@dataclass
class LabelDrift:
    label: str
    insufficient: bool
    score: float = 0.0
    drifted: bool = False
    n_window: int = 0
    n_reference: int = 0
    features: list[FeatureDrift] = field(default_factory=list)


@dataclass
class MixDrift:
    js: float
    chi2_pvalue: float
    insufficient: bool
    drifted: bool
    scarce: list[str]
    shares: dict[str, tuple[float, float]]  # label -> (reference share, window share)


@dataclass
class DriftAction:
    action: str
    label: str | None
    feature: str | None
    statistic: str
    value: float
    threshold: float

    def to_dict(self) -> dict:
        """JSON-ready: numbers as Python floats, NaN as None."""
        out: dict = {}
        for k, v in self.__dict__.items():
            if isinstance(v, float | np.floating):
                v = None if math.isnan(v) else float(v)
            out[k] = v
        return out


@dataclass
class DriftReport:
    labels: dict[str, LabelDrift]
    mix: MixDrift
    actions: list[DriftAction]


def _histogram(ref: np.ndarray, cur: np.ndarray, bins: int = 24):
    """Counts of both samples on common bins over their pooled 0.5-99.5% range (the tails
    go to the end bins), for a report's small plots."""
    pooled = np.concatenate([ref, cur])
    lo, hi = np.quantile(pooled, [0.005, 0.995])
    if not hi > lo:
        lo, hi = float(pooled.min()) - 0.5, float(pooled.max()) + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    r = np.histogram(np.clip(ref, lo, hi), edges)[0]
    w = np.histogram(np.clip(cur, lo, hi), edges)[0]
    return edges.tolist(), r.tolist(), w.tolist()


class DriftMonitor:
    def __init__(self, feature_names: list[str], config: DriftConfig | None = None) -> None:
        self.cfg = config or DriftConfig()
        self.features = list(feature_names)
        c = self.cfg
        policy = QuotaPolicy(
            min_capacity=c.window_capacity,
            max_capacity=c.window_capacity,
            boost_capacity=c.window_capacity,
            global_cap=c.window_capacity * c.max_labels,
            max_labels=c.max_labels,
            on_overflow="label",
        )
        self.window = LabelReservoirs(
            policy, mode="decayed", half_life=c.window_half_life_s, seed=c.seed
        )
        # the admitted rows, as column chunks appended per batch (ids, keys, ts,
        # features): no per-row Python on the hot path; rows the window evicted since are
        # dropped in bulk when the chunks outgrow what the window holds (_compact)
        self._chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self._chunk_rows = 0
        self._compact_at = 65_536
        self.rebased: set[str] = set()  # labels whose reference is a post-alarm window
        self._mix = np.zeros(c.max_labels)
        self._mix_t: float | None = None
        self._lam = math.log(2.0) / c.window_half_life_s
        self.reference: dict[str, np.ndarray] = {}  # label -> sorted [n, d] (column-wise)
        self.reference_counts: dict[str, float] = {}

    # ------------------------------------------------------------------ input
    def set_reference(
        self, labels: list[str], features: np.ndarray, counts: dict[str, float] | None = None
    ) -> None:
        """Reference data per label (e.g. a snapshot's rows) and its label mix."""
        features = np.asarray(features, dtype=np.float64)
        ref: dict[str, np.ndarray] = {}
        labs = np.asarray(labels, dtype=object)
        for name in set(labels):
            ref[name] = np.sort(features[labs == name], axis=0)
        for name in self.rebased:  # post-alarm references stay until cleared
            if name in self.reference:
                ref[name] = self.reference[name]
        self.reference = ref
        self.reference_counts = (
            dict(counts) if counts is not None else {k: float(v.shape[0]) for k, v in ref.items()}
        )

    def update(
        self, labels: list[str], timestamps: np.ndarray, keys: np.ndarray, features: np.ndarray
    ) -> None:
        """Offer a batch of accepted events (primary label each) to the window."""
        if len(labels) == 0:
            return
        self._update_ids(self.window.encode(list(labels)), timestamps, keys, features)

    def update_codes(
        self, vocab: list[str], codes: np.ndarray, timestamps: np.ndarray, keys: np.ndarray,
        features: np.ndarray,
    ) -> None:  # fmt: skip
        """:meth:`update` with labels as ``vocab[codes]``: the names are looked up once per
        batch, not once per event (the worker's decoded batches are coded this way)."""
        codes = np.asarray(codes)
        if codes.shape[0] == 0:
            return
        used = np.unique(codes)  # only the labels rows use (a frame may list others)
        lookup = np.zeros(len(vocab), dtype=np.int32)
        lookup[used] = self.window.encode([vocab[int(u)] for u in used])
        self._update_ids(lookup[codes], timestamps, keys, features)

    def _update_ids(self, ids: np.ndarray, timestamps, keys, features) -> None:
        ts = np.asarray(timestamps, dtype=np.float64)
        keys = np.asarray(keys, dtype=np.uint64)
        out = self.window.update(ids, ts, keys)
        # copies of the admitted rows only (fancy indexing copies): a view into the batch
        # would keep the whole batch's features alive while one of its rows stays
        adm = out.admitted
        if adm.size:
            feats = np.asarray(features)[adm].astype(np.float64)
            self._chunks.append((np.asarray(ids)[adm].astype(np.int32), keys[adm], ts[adm], feats))
            self._chunk_rows += int(adm.size)
            if self._chunk_rows > self._compact_at:
                self._compact()
        # exponentially decayed label counts of the window, brought to the batch's end time
        t_end = float(ts.max())
        if self._mix_t is not None and t_end > self._mix_t:
            self._mix *= math.exp(-self._lam * (t_end - self._mix_t))
        self._mix_t = t_end if self._mix_t is None else max(self._mix_t, t_end)
        w = np.exp(-self._lam * np.clip(self._mix_t - ts, 0, None))
        self._mix += np.bincount(ids, weights=w, minlength=self._mix.shape[0])  # not add.at: slow

    def _flat(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The chunks as one (ids, keys, ts, features), kept as the only chunk."""
        d = len(self.features)
        if not self._chunks:
            return (np.zeros(0, np.int32), np.zeros(0, np.uint64), np.zeros(0),
                    np.zeros((0, d)))  # fmt: skip
        if len(self._chunks) > 1:
            self._chunks = [tuple(np.concatenate(c) for c in zip(*self._chunks, strict=True))]
        return self._chunks[0]

    def _compact(self) -> None:
        """Keep only the rows the window still retains (the last copy of each)."""
        ids, keys, ts, feats = self._flat()
        keep = np.zeros(ids.shape[0], dtype=bool)
        for lid in np.unique(ids).tolist():
            rows = np.flatnonzero(ids == lid)
            name = self.window.names[lid]
            live = self.window.retained_keys(name) if name is not None else np.zeros(0, np.uint64)
            rows = rows[np.isin(keys[rows], live)]
            # a key seen twice (a replayed event): its last copy
            _, last = np.unique(keys[rows][::-1], return_index=True)
            keep[rows[::-1][last]] = True
        self._chunks = [(ids[keep], keys[keep], ts[keep], feats[keep])]
        self._chunk_rows = int(keep.sum())
        self._compact_at = max(65_536, 4 * self._chunk_rows)

    def window_features(self, label: str) -> np.ndarray:
        """The label's recent events: retained by the window and no older than
        ``window_span_s`` before the newest event seen."""
        lid = self.window.label_id(label)
        start = (self._mix_t if self._mix_t is not None else math.inf) - self.cfg.span_s
        ids, keys, ts, feats = self._flat()
        rows = np.flatnonzero(ids == lid)
        rows = rows[np.isin(keys[rows], self.window.retained_keys(label))]
        _, last = np.unique(keys[rows][::-1], return_index=True)
        rows = np.sort(rows[::-1][last])
        rows = rows[ts[rows] >= start]
        # in key order, as the window lists its keys
        return feats[rows[np.argsort(keys[rows], kind="stable")]].reshape(-1, len(self.features))

    def rebase(self, label: str) -> None:
        """The label's current window becomes its reference: after an alarm the new regime
        is what later checks compare with, so an alarm marks a change instead of repeating
        on every check. Kept across :meth:`set_reference` until :meth:`clear_rebased`."""
        cur = self.window_features(label) if label in self.window.labels else None
        if cur is not None and cur.shape[0] >= self.cfg.min_samples:
            self.reference[label] = np.sort(cur, axis=0)
            self.rebased.add(label)

    def clear_rebased(self) -> None:
        """Forget post-alarm references (e.g. once a model was retrained on a snapshot):
        the next :meth:`set_reference` sets every label."""
        self.rebased.clear()

    # ------------------------------------------------------------------ check
    def check(self) -> DriftReport:
        c = self.cfg
        labels: dict[str, LabelDrift] = {}
        actions: list[DriftAction] = []
        for name in self.window.labels:
            labels[name] = ld = self._check_label(name)
            if ld.drifted and "alert" in c.actions:
                for f in ld.features:
                    if f.drifted:
                        actions.append(
                            DriftAction(
                                "alert", name, f.feature, "ks_p_adjusted", f.p_adjusted, c.alpha
                            )
                        )
        if c.rebase_after_alarm:
            for name, ld in labels.items():
                if ld.drifted:
                    self.rebase(name)
        mix = self._check_mix()
        if "alert" in c.actions and mix.drifted:
            actions.append(
                DriftAction("alert", None, None, "label_mix_chi2_p", mix.chi2_pvalue, c.mix_alpha)
            )
        if "boost_quota" in c.actions:
            for name in mix.scarce:
                ref, cur = mix.shares[name]
                actions.append(
                    DriftAction(
                        "boost_quota",
                        name,
                        None,
                        "share_ratio",
                        cur / ref if ref else math.nan,
                        c.scarce_ratio,
                    )
                )
        any_drift = any(ld.drifted for ld in labels.values()) or mix.drifted
        if any_drift:
            score = max([ld.score for ld in labels.values()] + [0.0])
            for a in ("shorten_half_life", "request_snapshot", "retrain"):
                if a in c.actions:
                    actions.append(
                        DriftAction(a, None, None, "max_label_score", score, -math.log10(c.alpha))
                    )
        return DriftReport(labels, mix, actions)

    def _check_label(self, name: str) -> LabelDrift:
        c = self.cfg
        ref = self.reference.get(name)
        cur = self.window_features(name)
        n_ref = 0 if ref is None else ref.shape[0]
        if ref is None or n_ref < c.min_samples or cur.shape[0] < c.min_samples:
            return LabelDrift(name, True, n_window=cur.shape[0], n_reference=n_ref)
        cur = np.sort(cur, axis=0)
        tests = [ks_2samp(ref[:, j], cur[:, j], presorted=True) for j in range(len(self.features))]
        p = np.array([t.pvalue for t in tests])
        adj = adjust_pvalues(p, c.correction)
        feats = [
            FeatureDrift(
                self.features[j],
                tests[j].statistic,
                p[j],
                adj[j],
                wasserstein_1(ref[:, j], cur[:, j], presorted=True),
                psi(ref[:, j], cur[:, j], c.psi_bins),
                bool(adj[j] < c.alpha),
                _histogram(ref[:, j], cur[:, j]),
            )
            for j in range(len(self.features))
        ]
        min_adj = float(np.nanmin(adj))
        score = -math.log10(max(min_adj, 1e-300))
        return LabelDrift(name, False, score, min_adj < c.alpha, cur.shape[0], n_ref, feats)

    def _check_mix(self) -> MixDrift:
        c = self.cfg
        names = sorted(set(self.reference_counts) | set(self.window.labels))
        ref = np.array([self.reference_counts.get(n, 0.0) for n in names])
        cur = np.array(
            [self._mix[self.window.label_id(n)] if n in self.window.labels else 0.0 for n in names]
        )
        if ref.sum() <= 0 or cur.sum() < c.min_samples:
            return MixDrift(math.nan, math.nan, True, False, [], {})
        rs, cs = ref / ref.sum(), cur / cur.sum()
        shares = {n: (float(rs[i]), float(cs[i])) for i, n in enumerate(names)}
        # the window's effective sample size is its decayed count; scale the reference to it
        test = chi2_homogeneity(rs * cur.sum(), cur)
        scarce = [n for n, (r, s) in shares.items() if r > 0 and s < c.scarce_ratio * r]
        drifted = (not test.insufficient) and test.pvalue < c.mix_alpha
        return MixDrift(
            js_divergence(ref, cur), test.pvalue, test.insufficient, drifted, scarce, shares
        )
