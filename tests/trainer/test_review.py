"""The scoring pass over recent events (`trainer review`): selection probabilities that
spend the budget per label and favour uncertain rows, draws that follow them (fixed
seeds, stated tolerances), and end to end: a real worker's snapshot scored by the
promoted model, the items on the annotate topic and behind GET /annotate/next, and an
annotation that corrects the event in the next snapshot."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from scipy import stats

from snapshot_format import data_path, latest_version, read_manifest
from tests.conftest import hitl_env, read_topic
from tests.streamproc.test_active import _get
from tests.streamproc.test_hitl import ANN, TOKEN, _call
from trainer.pipeline import train_and_register
from trainer.registry import ModelRegistry
from trainer.review import draws, review_probabilities, uncertainty
from trainer.train import TrainConfig


def test_probabilities_spend_the_budget_per_label_and_favour_uncertain_rows() -> None:
    rng = np.random.default_rng(3)
    n = 3_000
    p1 = rng.uniform(0.5, 1.0, n)
    probs = np.stack([p1, 1 - p1], 1)
    labels = rng.integers(0, 3, n)
    q = review_probabilities(probs, labels, budget=25.0)
    for lab in range(3):
        assert abs(q[labels == lab].sum() - 25.0) < 1e-6  # expected picks = the budget
    u = uncertainty(probs)
    assert np.corrcoef(u, q)[0, 1] > 0.99  # proportional to uncertainty below the cap
    assert (review_probabilities(probs[:5], labels[:5], budget=50.0) <= 1).all()
    # the draws follow q: over 200 passes each row's count is Binomial(200, q_i); the
    # rows grouped by q decile, chi-square at alpha = 0.001
    ids = [f"e{i}" for i in range(n)]
    counts = sum((draws(ids, f"pass{k}") < q).astype(int) for k in range(200))
    order = np.argsort(q)
    groups = np.array_split(order, 10)
    obs = np.array([counts[g].sum() for g in groups])
    exp = np.array([200 * q[g].sum() for g in groups])
    chi2 = float(((obs - exp) ** 2 / exp).sum())
    assert stats.chi2.sf(chi2, df=10) > 1e-3, (obs, exp)
    assert (draws(ids[:3], "x") == draws(ids[:3], "x")).all()  # reproducible


@pytest.mark.integration
def test_review_pass_reaches_annotators_and_corrects_the_event(deployment, tmp_path) -> None:
    from devtools.produce import produce_synthetic
    from devtools.supervise import processed_all

    reg = tmp_path / "registry"
    # reservoirs large enough for every event: a corrected event is then always kept
    # under its new label (with full ones it is kept when its draw passes that label's
    # threshold, as any event of the label would be)
    env = hitl_env(deployment, TOKEN, reg,
                   STRATA_HITL_TOKENS=",".join(f"{a}={t}" for a, t in ANN.items()),
                   STRATA_EVAL_FRACTION="0", STRATA_MAX_CAPACITY="5000",
                   STRATA_BOOST_CAPACITY="5000")  # fmt: skip
    w = deployment.worker("review", **env)
    rep = produce_synthetic(deployment.broker.bootstrap, deployment.events, n=4_000,
                            n_labels=4, seed=6, progress=False)  # fmt: skip
    w.wait_until(lambda s: processed_all(rep.next_offsets)([s]), 120, "every event")
    snaps = tmp_path / "snap-g"
    w.request_snapshot()
    w.wait_until(lambda s: latest_version(snaps) is not None, 60, "a snapshot")
    v = latest_version(snaps)
    train_and_register(snaps, ModelRegistry(reg), TrainConfig(epochs=3, device="cpu"), v,
                       progress=False)  # fmt: skip
    topic = env["STRATA_ANNOTATE_TOPIC"]
    r = subprocess.run(
        [sys.executable, "-m", "trainer.cli", "review", "--registry", str(reg),
         "--snapshot-dir", str(snaps), "--broker", f"kafka://{deployment.broker.bootstrap}",
         "--topic", topic, "--budget", "5"], capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "sent to" in r.stdout
    items = [json.loads(m.value()) for m in read_topic(deployment.broker.bootstrap, topic,
                                                       timeout=8)]  # fmt: skip
    assert 4 <= len(items) <= 40  # 5 expected per label, 4 labels
    assert read_manifest(snaps, v).retained == read_manifest(snaps, v).seen  # none full
    t = pq.read_table(data_path(snaps, v)).to_pylist()
    rows = {row["id"]: row for row in t}
    assert all(it["source"] == "review" and it["event_id"] in rows for it in items)
    assert all(it["label"] == rows[it["event_id"]]["label"] for it in items)
    got = []
    for _ in range(20):
        got += _get(w, "/annotate/next?n=100")[1]["items"]
        if len(got) >= len(items):
            break
    assert sorted(i["item_id"] for i in got) == sorted(i["item_id"] for i in items)
    item = got[0]
    new = next(n for n in ("label_00", "label_01", "label_02", "label_03") if n != item["label"])
    ann = next(iter(ANN))
    code, _ = _call(w, "/annotations", {"item_id": item["item_id"], "annotator_id": ann,
                                        "label": new}, token=ANN[ann])  # fmt: skip
    assert code == 202

    def corrected(_st) -> bool:
        w.request_snapshot()
        v2 = latest_version(snaps)
        if v2 == v:
            return False
        rows2 = {row["id"]: row for row in pq.read_table(data_path(snaps, v2)).to_pylist()}
        row = rows2.get(item["event_id"])
        return row is not None and row["label"] == new

    w.wait_until(corrected, 90, "the correction in a snapshot")
    v2 = latest_version(snaps)
    mine = [x for x in pq.read_table(data_path(snaps, v2)).to_pylist()
            if x["id"] == item["event_id"]]  # fmt: skip
    assert [x["label"] for x in mine] == [new]  # moved, not copied
    row = mine[0]
    assert json.loads(row["payload"])["source"] == "review"
    assert "selection_probability" not in json.loads(row["payload"])  # the weight stands
    assert w.stop() == 0
