"""Sub-strata inside a label through the settings, the processor and a real worker: the
snapshot's rows carry labels (not strata), counts add up per label, every cell of a label
is represented, and the manifest reports the strata."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from confluent_kafka import Producer

from snapshot_format import data_path, latest_version, read_manifest
from stratastream.errors import ConfigError
from streamproc.settings import Settings


def test_settings_name_the_bad_value() -> None:
    ok = Settings.load(env={"STRATA_SUBSTRATA_FEATURES": "f1,0", "STRATA_SUBSTRATA_EDGES": "0"})
    assert ok.substrata_grid.features == (1, 0) and ok.sampler.policy.substrata
    bad = [
        ({"STRATA_SUBSTRATA_FEATURES": "f9", "STRATA_SUBSTRATA_EDGES": "0"}, "'f9'"),
        ({"STRATA_SUBSTRATA_FEATURES": "f0", "STRATA_SUBSTRATA_EDGES": "x"}, "substrata_edges"),
        ({"STRATA_SUBSTRATA_FEATURES": "f0"}, "give both"),
        ({"STRATA_SUBSTRATA_FEATURES": "f0", "STRATA_SUBSTRATA_EDGES": "1,0"}, "increasing"),
    ]
    for env, match in bad:
        with pytest.raises(ConfigError, match=match):
            Settings.load(env=env)
    assert Settings.load(env={}).sampler.policy.substrata == ""


def _events(n: int, seed: int = 8) -> list[dict]:
    """Two labels whose features sit in one corner 95% of the time."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        x = rng.normal(-2.0, 0.3, 4)
        if rng.random() < 0.05:
            x[:2] = rng.uniform(-3, 3, 2)
        out.append({"id": f"s{i}", "ts": 1.7e9 + i, "label": f"L{i % 2}",
                    "features": x.round(4).tolist()})  # fmt: skip
    return out


@pytest.mark.integration
def test_worker_samples_every_cell_of_a_label(deployment, tmp_path) -> None:
    evs = _events(12_000)
    p = Producer({"bootstrap.servers": deployment.broker.bootstrap, "linger.ms": 20})
    for ev in evs:
        p.produce(deployment.events, json.dumps(ev).encode(), key=ev["id"].encode())
    assert p.flush(30) == 0
    w = deployment.worker(
        "strata",
        STRATA_SUBSTRATA_FEATURES="f0,f1",
        STRATA_SUBSTRATA_EDGES="-1,0,1",  # 16 cells per label
        STRATA_MIN_CAPACITY="20", STRATA_MAX_CAPACITY="200", STRATA_BOOST_CAPACITY="400",
        STRATA_MAX_LABELS="64", STRATA_GLOBAL_CAP="4000", STRATA_EVAL_FRACTION="0.05",
        STRATA_EVAL_CAPACITY="100",
    )  # fmt: skip
    w.wait_ready(90)
    w.wait_until(lambda st: sum(v["accepted"] for v in st["partitions"].values()) == len(evs),
                 120, "every event")  # fmt: skip
    snaps = tmp_path / "snap-g"
    w.request_snapshot()
    w.wait_until(lambda st: latest_version(snaps) is not None, 60, "a snapshot")
    m = read_manifest(snaps, latest_version(snaps))
    assert set(m.seen) == {"L0", "L1"} and sum(m.seen.values()) == len(evs)
    assert set(m.retained) == {"L0", "L1"}
    strata = m.sampler["strata"]
    t = pq.read_table(data_path(snaps, m.version))
    assert set(t.column("label").to_pylist()) == {"L0", "L1"}  # labels, never strata
    x = np.array(t.column("features").to_pylist())
    for label in ("L0", "L1"):
        cells = strata[label]
        assert sum(c["seen"] for c in cells.values()) + m.eval_seen.get(label, 0) == m.seen[label]
        assert sum(c["retained"] for c in cells.values()) == m.retained[label] <= 200 + 16
        # every cell with events is in the sample, the rare ones with all they saw up
        # to the level the common corner is held to
        level = max(c["retained"] for c in cells.values())
        for c in cells.values():
            assert c["retained"] >= min(c["seen"], level), (label, c)
        corner = int(np.sum(t.column("label").to_numpy(zero_copy_only=False) == label))
        rows = x[t.column("label").to_numpy(zero_copy_only=False) == label]
        in_corner = ((rows[:, 0] < -1) & (rows[:, 1] < -1)).sum()
        assert in_corner < 0.6 * corner  # without strata: ~96% of the label's rows
    # inclusion probabilities are per stratum: a rare cell's rows were all kept
    incl = np.array(t.column("inclusion").to_pylist())
    assert incl.max() == 1.0 and incl.min() < 0.2
    assert w.stop() == 0


def test_a_state_built_on_another_grid_is_refused(tmp_path) -> None:
    from sampler import Grid, QuotaPolicy
    from streamproc.decode.events import Limits
    from streamproc.state.processor import PartitionProcessor, SamplerConfig
    from streamproc.state.store import RocksPartitionStore

    def proc(edges):
        g = Grid((0,), edges)
        pol = QuotaPolicy(min_capacity=5, max_capacity=50, global_cap=500, max_labels=16,
                          substrata=g.spec)  # fmt: skip
        cfg = SamplerConfig(pol, substrata=g)
        return PartitionProcessor("events", 0, RocksPartitionStore(tmp_path / "p"), cfg,
                                  Limits(feature_dim=2))  # fmt: skip

    first = proc((0.0,))
    evs = [{"id": f"e{i}", "ts": 1.0 * i, "label": "a", "features": [i % 3 - 1, 0]}
           for i in range(50)]  # fmt: skip
    msgs = [(i, json.dumps(ev).encode(), 1e9) for i, ev in enumerate(evs)]
    first.process(msgs)
    first.checkpoint()
    assert len(first.reservoirs.labels) == 2  # cells 0 and 1 of label "a"
    first.store.close()
    with pytest.raises(ConfigError, match="substrata"):
        proc((0.0, 1.0))
