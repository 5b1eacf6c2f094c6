"""Drift detection on streams: alarm rate under no drift, detection of a small shift."""

from __future__ import annotations

import numpy as np

from drift.monitor import DriftConfig, DriftMonitor

FEATURES = ["f0", "f1", "f2", "f3"]
LABELS = ["a", "b", "c", "d"]


def _stream(rng, n, shift_label=None, shift=0.0, t0=0.0, key0=0, probs=None):
    lab = rng.choice(LABELS, size=n, p=probs)
    x = rng.normal(size=(n, len(FEATURES)))
    if shift_label is not None:
        x[lab == shift_label, 0] += shift
    return list(lab), t0 + np.arange(n) * 0.1, np.arange(key0, key0 + n, dtype=np.uint64), x


def test_alarm_rate_under_no_drift_is_at_most_alpha() -> None:
    alpha, trials = 0.05, 200
    alarms = 0
    for seed in range(trials):
        rng = np.random.default_rng(seed)
        m = DriftMonitor(
            FEATURES,
            DriftConfig(alpha=alpha, window_capacity=300, window_half_life_s=1e6, seed=seed),
        )
        lab, _, _, x = _stream(rng, 4_000)
        m.set_reference(lab, x)
        m.update(*_stream(rng, 2_000, t0=1_000, key0=10**6))
        alarms += sum(ld.drifted for ld in m.check().labels.values())
    rate = alarms / (trials * len(LABELS))
    # tolerance: alpha plus three binomial standard errors over 800 label checks
    assert rate <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / (trials * len(LABELS))), rate


def test_quarter_sigma_shift_in_one_feature_of_one_label_is_found() -> None:
    rng = np.random.default_rng(123)
    m = DriftMonitor(
        FEATURES, DriftConfig(alpha=0.001, window_capacity=1_000, window_half_life_s=300)
    )
    lab, _, _, x = _stream(rng, 8_000)
    m.set_reference(lab, x)
    first = None
    key0, t0 = 10**6, 1_000.0
    for step in range(20):  # 400 events per step, ~100 of label b
        m.update(*_stream(rng, 400, "b", 0.25, t0=t0, key0=key0))
        key0, t0 = key0 + 400, t0 + 40
        r = m.check()
        assert not any(r.labels[n].drifted for n in ("a", "c", "d")), step
        if r.labels["b"].drifted and first is None:
            first = step
            drifted = [f.feature for f in r.labels["b"].features if f.drifted]
            assert drifted == ["f0"]
            assert {a.action for a in r.actions} >= {"alert", "request_snapshot", "retrain"}
    # stated bound: found within 1,000 events of the shifted label (10 steps)
    assert first is not None and first < 10, first


def test_scarce_label_asks_for_a_quota_boost() -> None:
    rng = np.random.default_rng(7)
    m = DriftMonitor(FEATURES, DriftConfig(window_half_life_s=120, min_samples=30))
    lab, _, _, x = _stream(rng, 8_000)
    m.set_reference(lab, x)
    m.update(*_stream(rng, 4_000, t0=1_000, key0=10**6, probs=[0.32, 0.32, 0.32, 0.04]))
    r = m.check()
    assert r.mix.scarce == ["d"]
    boosts = [a for a in r.actions if a.action == "boost_quota"]
    assert [a.label for a in boosts] == ["d"] and boosts[0].value < 0.5
    assert r.mix.drifted and r.mix.js > 0


def test_too_little_data_is_reported_not_silenced() -> None:
    m = DriftMonitor(FEATURES, DriftConfig(min_samples=50))
    rng = np.random.default_rng(0)
    lab, _, _, x = _stream(rng, 40)
    m.set_reference(lab, x)
    m.update(*_stream(rng, 40, key0=100))
    r = m.check()
    assert all(ld.insufficient and not ld.drifted for ld in r.labels.values())
    assert r.actions == []


def test_actions_serialize_to_json() -> None:
    import json

    from drift.monitor import DriftAction

    a = DriftAction("alert", "b", "f0", "ks_p_adjusted", np.float64(1e-5), 0.01)
    assert json.loads(json.dumps(a.to_dict()))["value"] == 1e-5
    assert DriftAction("retrain", None, None, "x", float("nan"), 1.0).to_dict()["value"] is None


def _rare_label_run(window_span_s):
    """A label with far fewer events than the window's capacity: 300 events of the old
    regime over 1,000 s, then 40 shifted by 1.5 sigma in the last 100 s."""
    rng = np.random.default_rng(11)
    cfg = DriftConfig(alpha=0.01, min_samples=20, window_capacity=1_000,
                      window_half_life_s=100.0, window_span_s=window_span_s)  # fmt: skip
    m = DriftMonitor(["f0"], cfg)
    m.set_reference(["rare"] * 200, rng.normal(size=(200, 1)))
    m.update(["rare"] * 300, np.linspace(0, 999, 300), np.arange(300, dtype=np.uint64),
             rng.normal(size=(300, 1)))  # fmt: skip
    m.update(["rare"] * 40, np.linspace(1_000, 1_100, 40), np.arange(300, 340, dtype=np.uint64),
             rng.normal(1.5, 1.0, size=(40, 1)))  # fmt: skip
    return m, rng


def test_a_rare_label_has_a_recent_window_and_its_change_is_found() -> None:
    whole_history, _ = _rare_label_run(window_span_s=1e9)  # the window as it was
    assert not whole_history.check().labels["rare"].drifted
    m, rng = _rare_label_run(window_span_s=None)  # default: two half-lives
    report = m.check()
    assert report.labels["rare"].drifted
    assert report.labels["rare"].n_window < 340  # recent events only
    # the alarm moved the reference to the new regime: more of it raises no new alarm
    m.update(["rare"] * 40, np.linspace(1_100, 1_200, 40), np.arange(340, 380, dtype=np.uint64),
             rng.normal(1.5, 1.0, size=(40, 1)))  # fmt: skip
    assert not m.check().labels["rare"].drifted
    assert "rare" in m.rebased
    m.set_reference(["rare"] * 10, np.zeros((10, 1)))  # a snapshot does not undo it
    assert m.reference["rare"].shape[0] >= 20


def test_update_with_label_codes_equals_update_with_names() -> None:
    """The worker hands the window label codes of a batch vocabulary (names looked up once
    per batch); the window ends the same as with names, and labels no row uses are not
    registered."""
    rng = np.random.default_rng(3)
    feats = [f"f{j}" for j in range(3)]
    a, b = DriftMonitor(feats), DriftMonitor(feats)
    vocab = ["x", "y", "z", "unused"]
    for lo in range(0, 20_000, 2_000):
        codes = rng.integers(0, 3, 2_000)
        ts = 1e9 + lo + np.arange(2_000.0)
        keys = rng.integers(0, 2**62, 2_000).astype(np.uint64)
        x = rng.normal(size=(2_000, 3)).astype(np.float32)
        a.update([vocab[c] for c in codes], ts, keys, x)
        b.update_codes(vocab, codes, ts, keys, x)
    # the same sample (draws are salted by label names, so ids may differ in order)
    for name in ("x", "y", "z"):
        assert np.array_equal(a.window.retained_keys(name), b.window.retained_keys(name))
    assert a.window.seen_counts() == b.window.seen_counts()
    assert "unused" not in b.window.labels
    for name in ("x", "y", "z"):
        assert np.array_equal(a.window_features(name), b.window_features(name))
