"""Active learning: budgeted, uncertainty-weighted selection with known probabilities
(statistics with fixed seeds), and end to end: predictions selected onto the `annotate`
topic and GET /annotate/next, an annotation that becomes a labelled event carrying its
selection probability, and the trainer weighting it by 1 / q."""

from __future__ import annotations

import json
import random
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from streamproc.hitl.active import Selector, annotated_event, take, uncertainty
from tests.conftest import hitl_env, read_topic
from tests.streamproc.test_hitl import ANN, TOKEN, _call
from tests.trainer.conftest import make_snapshot
from trainer.data import selection_probabilities
from trainer.pipeline import train_and_register
from trainer.registry import ModelRegistry
from trainer.train import TrainConfig


def test_selection_keeps_the_budget_prefers_uncertain_items_and_is_unbiased() -> None:
    rng = random.Random(1)
    s = Selector(budget_per_hour=100)
    picked = []
    n = 40_000  # two hours of one label's traffic, uncertainty uniform on [0, 1)
    for i in range(n):
        now, u = i * 7_200 / n, rng.random()
        q = s.offer(f"item-{i}", "a", u, now)
        if q is not None:
            picked.append((now, u, q))
    second = [p for p in picked if p[0] >= 3_600]
    assert 55 <= len(second) <= 100  # aims at 80 of the hourly budget of 100, never over
    assert np.mean([u for _, u, _ in second]) > 0.6  # vs 0.5 for all items
    assert s.capped <= 0.03 * len(picked)  # the cap rarely binds
    # Horvitz-Thompson: the sum of 1/q over the selected estimates the number of items.
    # One estimate is noisy (confident items have small q, large weights); its mean over
    # independent runs must match the truth within 4 standard errors.
    ests, cut, chosen = [], 0, 0
    for run in range(30):
        sel, m = Selector(budget_per_hour=50), 6_000  # two hours; the second is measured
        qs = []
        for i in range(m):
            if i == m // 2:
                before = sel.capped
            qs.append(sel.offer(f"r{run}-{i}", "a", (i * 7919 % 1000) / 1000, i * 7_200 / m))
        cut += sel.capped - before
        chosen += sum(q is not None for q in qs[m // 2 :])
        ests.append(sum(1 / q for q in qs[m // 2 :] if q is not None))
    assert cut <= 0.02 * chosen  # in steady state the cap seldom cuts a draw (~1%)
    se = np.std(ests, ddof=1) / np.sqrt(len(ests))
    assert abs(np.mean(ests) - 3_000) < 4 * se, (np.mean(ests), se)
    # budgets are per label: a second label does not take the first one's
    s2 = Selector(budget_per_hour=5)
    got = {lab: sum(s2.offer(f"{lab}{i}", lab, 1.0, i * 1.0) is not None for i in range(7_200))
           for lab in ("x", "y")}  # fmt: skip
    assert all(3 <= v <= 10 for v in got.values())  # 0.8 x 5 per hour each, two hours


def test_annotations_carry_the_selection_probability_to_the_trainer() -> None:
    ev = annotated_event({"item_id": "p9", "features": [1.0], "ts": 1.0, "model": "m1",
                          "predicted": "a", "selection_probability": 0.2, "event_id": None},
                         {"label": "b", "annotator_id": "ann"})  # fmt: skip
    t = pa.table({"payload": [json.dumps(ev["payload"]), json.dumps({"x": 1}), None]})
    assert selection_probabilities(t).tolist() == [0.2, 1.0, 1.0]
    assert uncertainty([0.5, 0.5]) == 1.0 and uncertainty([1.0, 0.0]) == 0.0
    from collections import deque

    q = deque([{"predicted": "a", "i": 1}, {"predicted": "b", "i": 2}, {"predicted": "a", "i": 3}])
    assert [x["i"] for x in take(q, 5, "a")] == [1, 3] and [x["i"] for x in q] == [2]


def _get(w, path: str, token: str | None = TOKEN):
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(w.url + path, headers=auth)
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.integration
def test_selected_predictions_reach_annotators_and_come_back_as_events(
    deployment, tmp_path: Path
) -> None:
    v, _ = make_snapshot(tmp_path / "train", 2_000, 3, seed=1, sep=1.0)
    reg = tmp_path / "registry"
    train_and_register(tmp_path / "train" / "snapshots", ModelRegistry(reg),
                       TrainConfig(epochs=3, device="cpu"), v, progress=False)  # fmt: skip
    env = hitl_env(deployment, TOKEN, reg, STRATA_ANNOTATION_BUDGET_PER_HOUR="5000",
                   STRATA_HITL_TOKENS=",".join(f"{a}={t}" for a, t in ANN.items()))  # fmt: skip
    w = deployment.worker("al", **env)
    w.wait_ready(90)
    rng = np.random.default_rng(4)
    preds = []
    for _ in range(60):
        code, p = _call(w, "/predict", {"features": rng.normal(size=4).round(3).tolist()})
        assert code == 200
        preds.append(p)
    selected = read_topic(deployment.broker.bootstrap, env["STRATA_ANNOTATE_TOPIC"], timeout=8)
    items = [json.loads(m.value()) for m in selected]
    assert items, "a budget of 5,000/hour selects among 60 uncertain predictions"
    assert all(0 < it["selection_probability"] <= 1 and it["reason"] for it in items)
    assert {it["item_id"] for it in items} <= {p["prediction_id"] for p in preds}
    # the labelling tool's view: each item handed out once, bad parameters named
    assert _get(w, "/annotate/next?n=0")[0] == 400
    assert _get(w, "/annotate/next", token="wrong-token-xxxxxxxx")[0] == 401
    got = []
    for _ in range(20):
        code, body = _get(w, "/annotate/next?n=100")
        assert code == 200
        got += body["items"]
        if len(got) >= len(items):
            break
    assert sorted(i["item_id"] for i in got) == sorted(i["item_id"] for i in items)
    assert _get(w, "/annotate/next?n=100")[1]["items"] == []
    item = got[0]
    ann = next(iter(ANN))
    code, _ = _call(w, "/annotations", {"item_id": item["item_id"], "annotator_id": ann,
                                        "label": "L2"}, token=ANN[ann])  # fmt: skip
    assert code == 202
    got_events = read_topic(deployment.broker.bootstrap, deployment.events, expect=1, timeout=30)
    evs = [json.loads(m.value()) for m in got_events]
    assert len(evs) == 1 and evs[0]["id"] == f"al-{item['item_id']}" and evs[0]["label"] == "L2"
    assert evs[0]["payload"]["selection_probability"] == item["selection_probability"]
    assert w.stop() == 0
