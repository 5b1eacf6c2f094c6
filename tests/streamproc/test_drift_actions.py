"""Drift actions end to end on the embedded broker: a label becomes scarce, its quota is
raised, and the next snapshot holds more of it."""

from __future__ import annotations

import json
import time

import pytest

from devtools.produce import produce_synthetic
from devtools.supervise import processed_all
from snapshot_format import read_manifest
from tests.conftest import read_topic

pytestmark = pytest.mark.integration


def _read_topic(bootstrap: str, topic: str, timeout: float = 10.0) -> list[dict]:
    return [json.loads(m.value()) for m in read_topic(bootstrap, topic, timeout=timeout)]


def test_scarce_label_gets_a_bigger_quota_and_more_rows(deployment) -> None:
    w = deployment.worker(
        "w",
        STRATA_DRIFT_ACTIONS="alert,boost_quota,request_snapshot",
        STRATA_DRIFT_EVERY_S="1",
        STRATA_DRIFT_MIN_SAMPLES="30",
        STRATA_DRIFT_WINDOW_HALF_LIFE_S="20",
    )
    w.wait_ready()
    b = deployment.broker.bootstrap
    # phase 1: label_00 is the most frequent label; its reservoirs fill up (cap 150)
    rep1 = produce_synthetic(
        b, deployment.events, n=12_000, n_labels=6, zipf_a=1.0, seed=11, progress=False
    )
    w.wait_until(lambda s: processed_all(rep1.next_offsets)([s]), 120, "phase 1")
    before = len(w.status()["snapshots"])
    w.request_snapshot()  # becomes the drift reference
    st = w.wait_until(lambda s: len(s["snapshots"]) > before, 60, "the reference snapshot")
    m1 = read_manifest(deployment.root / "snap-g", st["snapshots"][-1])
    assert m1.retained["label_00"] == 150

    # phase 2: the label mix flips, label_00 becomes rare
    t2 = time.time()  # after every phase-1 event time
    rep2 = produce_synthetic(
        b,
        deployment.events,
        n=12_000,
        n_labels=6,
        zipf_a=1.0,
        seed=12,
        drift_at=0.0,
        drift_shift=0.0,
        progress=False,
        start_ts=t2,
    )
    offsets = {p: max(rep1.next_offsets.get(p, 0), o) for p, o in rep2.next_offsets.items()}
    w.wait_until(lambda s: processed_all(offsets)([s]), 120, "phase 2")
    actions = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(
        a["action"] == "boost_quota" and a["label"] == "label_00" for a in actions
    ):
        actions = _read_topic(b, deployment.drift, timeout=2.0)
    boost = [a for a in actions if a["action"] == "boost_quota"]
    assert boost and boost[0]["label"] == "label_00", actions
    assert boost[0]["value"] < boost[0]["threshold"] and boost[0]["statistic"] == "share_ratio"
    assert {"label", "feature", "statistic", "value", "threshold", "action"} <= set(boost[0])

    # more label_00 events arrive; the boosted quota (300) lets the snapshot keep them
    rep3 = produce_synthetic(
        b,
        deployment.events,
        n=6_000,
        n_labels=6,
        zipf_a=1.0,
        seed=13,
        drift_at=0.0,
        drift_shift=0.0,
        progress=False,
        start_ts=t2 + 12_000 * 0.01,
    )
    offsets = {p: max(offsets.get(p, 0), o) for p, o in rep3.next_offsets.items()}
    w.wait_until(lambda s: processed_all(offsets)([s]), 120, "phase 3")
    store = deployment.root / "snap-g"

    def covers_phase_3(s: dict) -> bool:  # drift may have asked for this snapshot already
        if not s["snapshots"]:
            return False
        m = read_manifest(store, s["snapshots"][-1])
        return all(m.source_offsets.get(str(p), 0) >= o for p, o in offsets.items())

    w.request_snapshot()
    st = w.wait_until(covers_phase_3, 60, "a snapshot covering phase 3")
    m2 = read_manifest(store, st["snapshots"][-1])
    assert m2.retained["label_00"] > m1.retained["label_00"], (m1.retained, m2.retained)
    assert m2.sampler["policy"]["boost_capacity"] == 300
