"""Safe rollout: shadow and canary beside the champion, feedback attributed to the model
that answered, online accuracy with intervals, and automatic rollback or promotion --
the rules as pure functions, the registry's rollout state, and end to end with a real
worker, real models and scripted feedback where the candidate is worse, and better."""

from __future__ import annotations

import json
import random
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from stratastream.errors import StratastreamError
from streamproc.hitl.predictor import Predictor
from streamproc.hitl.rollout import ModelScore, decide, outcomes, route
from tests.conftest import hitl_env, read_topic
from tests.streamproc.test_hitl import TOKEN, _call
from tests.trainer.conftest import make_snapshot
from trainer.pipeline import train_and_register
from trainer.registry import ModelRegistry
from trainer.train import TrainConfig

N_LABELS, DIM = 3, 4
MEANS = np.random.default_rng(99).normal(0, 1, (N_LABELS, DIM)) * 4.0  # make_snapshot's


def test_routing_is_deterministic_and_takes_its_share() -> None:
    keys = [f"event-{i}" for i in range(20_000)]
    first = [route(k, 0.1) for k in keys]
    assert first == [route(k, 0.1) for k in keys]  # the same key, the same model
    share = sum(first) / len(keys)
    assert abs(share - 0.1) < 4 * (0.1 * 0.9 / len(keys)) ** 0.5  # binomial, 4 sigma
    assert not any(route(k, 0.0) for k in keys[:100]) and all(route(k, 1.0) for k in keys[:100])


def test_decisions_need_confidence_and_a_margin() -> None:
    good, bad = ModelScore(judged=300, correct=270), ModelScore(judged=300, correct=210)
    assert decide(good, bad, 0.02, 0.95, 200).decision == "rollback"
    assert decide(bad, good, 0.02, 0.95, 200).decision == "promote"
    assert decide(good, ModelScore(judged=300, correct=268), 0.02, 0.95, 200) is None  # a tie
    assert decide(good, bad, 0.02, 0.95, 400) is None  # not enough evidence yet
    # a small real gap is not enough on few judgements, and enough on many
    a, b = ModelScore(judged=250, correct=225), ModelScore(judged=250, correct=212)
    assert decide(a, b, 0.0, 0.95, 100) is None
    a, b = ModelScore(judged=5000, correct=4500), ModelScore(judged=5000, correct=4240)
    assert decide(a, b, 0.0, 0.95, 100).decision == "rollback"


def test_feedback_is_attributed_to_the_model_that_answered_and_the_shadow() -> None:
    pred = {"label": "a", "model": "m1", "shadow": {"model": "m2", "label": "a"}}
    up = outcomes(pred, "up-vote", {"vote": "up"})
    assert [(o["model"], o["correct"], o["answered"]) for o in up] == [
        ("m1", True, True), ("m2", True, False)]  # fmt: skip
    down = outcomes(pred, "down-vote", {"vote": "down"})
    assert [(o["model"], o["correct"], o["downvote"]) for o in down] == [
        ("m1", False, True), ("m2", False, False)]  # fmt: skip
    other = dict(pred, shadow={"model": "m2", "label": "b"})
    assert [o["correct"] for o in outcomes(other, "down-vote", {"vote": "down"})] == [False, None]


def _models(tmp_path: Path, champion_sep: float, candidate_sep: float, rollout: str):
    """Two models in a registry: the first (promoted) and a second one, which passes the
    offline comparison only when it is the informative one (margin 1.0 otherwise: an
    uninformative model can win on its own uninformative snapshot)."""
    reg = tmp_path / "registry"
    cfg = TrainConfig(epochs=4, device="cpu")
    for name, sep in (("a", champion_sep), ("b", candidate_sep)):
        v, _ = make_snapshot(tmp_path / name, 3_000, N_LABELS, seed=3, sep=sep,
                             eval_fraction=0.05)  # fmt: skip
        margin = 1.0 if name == "b" and sep == 0.0 else 0.0
        train_and_register(tmp_path / name / "snapshots", ModelRegistry(reg), cfg, v, margin,
                           progress=False, rollout=rollout, rollout_fraction=0.5)  # fmt: skip
    return reg


def test_registry_rollout_state_and_predictor_routing(tmp_path: Path) -> None:
    reg = _models(tmp_path, 4.0, 0.0, "direct")  # b is worse: kept, not promoted
    r = ModelRegistry(reg)
    champ, cand = (e.id for e in r.list())
    assert r.promoted().id == champ and r.candidate() is None
    with r.lock():
        r.start_rollout(cand, "canary", 0.5, "test")
    p = Predictor(reg)
    answers = [p.predict([0.0] * DIM, key=f"k{i}")["model"] for i in range(400)]
    assert {champ, cand} == set(answers)
    assert answers == [p.predict([0.0] * DIM, key=f"k{i}")["model"] for i in range(400)]
    with r.lock():
        r.end_rollout("reject", "test")
        r.start_rollout(cand, "shadow", 1.0, "test")
    out = p.predict([0.0] * DIM, key="x")
    assert out["model"] == champ and out["shadow"]["model"] == cand
    (reg / "CANDIDATE").write_text('{"model": "../../etc", "mode": "canary", "fraction": 1}')
    with pytest.raises(StratastreamError, match="CANDIDATE"):
        r.candidate()
    assert p.predict([0.0] * DIM, key="x")["model"] == champ  # a bad file: the champion
    actions = [h["action"] for h in r.history()]
    assert actions.count("rollout") == 2 and actions.count("rollout_end") == 1


def _scripted_feedback(w, n: int, seed: int) -> None:
    rng = random.Random(seed)
    for i in range(n):
        truth = rng.randrange(N_LABELS)
        x = (MEANS[truth] + np.array([rng.gauss(0, 1) for _ in range(DIM)])).round(4).tolist()
        code, pred = _call(w, "/predict", {"features": x, "event_id": f"s{seed}-{i}"})
        assert code == 200, pred
        assert "shadow" not in pred
        fb = {"vote": "up"} if pred["label"] == f"L{truth}" else {"label": f"L{truth}"}
        code, _ = _call(w, "/feedback", {"prediction_id": pred["prediction_id"], **fb})
        assert code == 202


@pytest.mark.integration
@pytest.mark.parametrize("case", ["candidate-worse", "candidate-better"])
def test_online_rollout_decides_on_scripted_feedback(deployment, tmp_path, case) -> None:
    worse = case == "candidate-worse"
    # worse: a good champion, an uninformative candidate put in canary by hand;
    # better: an uninformative champion, a good candidate the trainer puts in canary
    reg = _models(tmp_path, 4.0 if worse else 0.0, 0.0 if worse else 4.0, "canary")
    r = ModelRegistry(reg)
    champ, cand = (e.id for e in r.list())
    if worse:
        with r.lock():
            r.start_rollout(cand, "canary", 0.5, "test")
    assert r.candidate()["model"] == cand and r.promoted().id == champ
    env = hitl_env(deployment, TOKEN, reg, STRATA_ROLLOUT_MIN_JUDGED="40")
    w = deployment.worker("rollout", **env)
    w.wait_ready(90)
    _scripted_feedback(w, 160, seed=1)
    dep_topic = env["STRATA_DEPLOYMENTS_TOPIC"]
    deployed = read_topic(deployment.broker.bootstrap, dep_topic, expect=1, timeout=60)
    assert len(deployed) == 1
    d = json.loads(deployed[0].value())
    assert d["model"] == cand and d["champion"] == champ
    assert d["action"] == ("rollback" if worse else "promote")
    assert r.candidate() is None
    assert r.promoted().id == (champ if worse else cand)
    end = [h for h in r.history() if h["action"] == "rollout_end"][-1]
    assert end["decision"] == ("reject" if worse else "promote") and end["evidence"]["candidate"]
    with urllib.request.urlopen(w.url + "/metrics", timeout=5) as m:
        text = m.read().decode()
    assert f'strata_rollout_decisions_total{{decision="{d["action"]}"}} 1.0' in text
    assert f'strata_online_accuracy{{bound="estimate",model="{cand}"}}' in text
    # after the decision every request is the new champion's
    code, pred = _call(w, "/predict", {"features": [0.0] * DIM, "event_id": "after"})
    assert code == 200 and pred["model"] == r.promoted().id
    # explanations through the worker: attributions by feature name, for that model
    x = MEANS[1].round(4).tolist()
    code, pred = _call(w, "/predict", {"features": x, "event_id": "why", "explain": True})
    assert code == 200 and set(pred["attributions"]) == {f"f{j}" for j in range(DIM)}
    assert all(np.isfinite(v) for v in pred["attributions"].values())
    assert w.stop() == 0


def _judged(w, model: str) -> float:
    with urllib.request.urlopen(w.url + "/metrics", timeout=5) as m:
        for line in m.read().decode().splitlines():
            if line.startswith(f'strata_online_judged{{model="{model}"}}'):
                return float(line.split()[-1])
    return 0.0


@pytest.mark.integration
@pytest.mark.parametrize("how", [pytest.param("stop", marks=pytest.mark.long_fault), "kill9"])
def test_rollout_scores_survive_a_worker_restart(deployment, tmp_path, how) -> None:
    # a worse candidate in canary; feedback before a restart is not enough to decide,
    # feedback after it is only together with what came before
    reg = _models(tmp_path, 4.0, 0.0, "canary")
    r = ModelRegistry(reg)
    champ, cand = (e.id for e in r.list())
    with r.lock():
        r.start_rollout(cand, "canary", 0.5, "test")
    env = hitl_env(deployment, TOKEN, reg, STRATA_ROLLOUT_MIN_JUDGED="60")
    w = deployment.worker("rollout-a", **env)
    w.wait_ready(90)
    _scripted_feedback(w, 80, seed=2)  # ~40 judged per model: no decision yet
    before = w.wait_until(lambda _s: _judged(w, champ) + _judged(w, cand) >= 80, 60,
                          "the outcomes counted")  # fmt: skip
    assert before and r.candidate() is not None
    if how == "stop":
        assert w.stop() == 0
    else:
        w.kill9()
    w2 = deployment.worker("rollout-b", **env)
    w2.wait_ready(90)
    _scripted_feedback(w2, 80, seed=3)
    dep_topic = env["STRATA_DEPLOYMENTS_TOPIC"]
    deployed = read_topic(deployment.broker.bootstrap, dep_topic, expect=1, timeout=90)
    assert [json.loads(m.value())["action"] for m in deployed] == ["rollback"]
    assert r.candidate() is None
    end = [h for h in r.history() if h["action"] == "rollout_end"][-1]
    ev = end["evidence"]
    assert ev["champion"]["judged"] + ev["candidate"]["judged"] >= 120  # both runs counted
    assert w2.stop() == 0
