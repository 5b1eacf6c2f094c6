from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from trainer.data import load_snapshot
from trainer.errors import TrainerError
from trainer.metrics import evaluate_predictions
from trainer.model import register_from_reference
from trainer.pipeline import train_and_register
from trainer.registry import ModelRegistry
from trainer.train import TrainConfig, predict_proba, train

from .conftest import make_snapshot

FAST = dict(epochs=12, batch_size=256, device="cpu")


def test_learnable_snapshot_trains_above_the_bar(learnable) -> None:
    store, version = learnable
    data = load_snapshot(store, version)
    assert data.n == sum(data.manifest["retained"].values())
    res = train(data, TrainConfig(**FAST), progress=False)
    # stated bar: macro-F1 >= 0.90 on the held-out split of a separable 6-label stream
    assert res.report.macro_f1 >= 0.90, res.report.per_label
    assert res.losses[-1] < res.losses[0]
    assert res.on_device_batches and res.device == "cpu"
    # seeded and reproducible
    again = train(data, TrainConfig(**FAST), progress=False)
    assert again.losses == res.losses


def test_promotion_margin_and_rollback(learnable, tmp_path: Path) -> None:
    store, version = learnable
    reg = ModelRegistry(tmp_path / "reg")
    first = train_and_register(store, reg, TrainConfig(**FAST), version, progress=False)
    assert first.promoted and reg.promoted().id == first.entry.id
    # a much worse model (one epoch, tiny lr) on the same data is registered, not promoted
    weak = TrainConfig(**{**FAST, "epochs": 1, "lr": 1e-5})
    second = train_and_register(store, reg, weak, version, margin=0.0, progress=False)
    assert not second.promoted
    assert second.previous_f1_same_data == pytest.approx(first.macro_f1, abs=1e-9)
    assert reg.promoted().id == first.entry.id
    assert (second.entry.path / "report.png").read_bytes()[:4] == b"\x89PNG"
    meta = second.entry.meta
    assert meta["snapshot_version"] == version and meta["snapshot_source_offsets"]
    # manual promotion, then rollback to the previous promoted model
    reg.promote(second.entry.id, "test")
    assert reg.promoted().id == second.entry.id
    assert reg.rollback().id == first.entry.id
    assert [h["action"] for h in reg.history()] == ["promote", "promote", "rollback"]
    model, entry = reg.load_model(first.entry.id)
    data = load_snapshot(store, version)
    probs = predict_proba(model, data.features)
    rep = evaluate_predictions(data.labels, probs.argmax(1), probs, data.label_names)
    assert rep.macro_f1 > 0.85


def test_corrupt_or_missing_snapshot_leaves_registry_unchanged(learnable, tmp_path: Path) -> None:
    store, version = learnable
    reg = ModelRegistry(tmp_path / "reg")
    train_and_register(store, reg, TrainConfig(**FAST), version, progress=False)
    before = ([e.id for e in reg.list()], reg.promoted().id)
    with pytest.raises(TrainerError, match="no manifest"):
        train_and_register(store, reg, TrainConfig(**FAST), "0000deadbeef0000", progress=False)
    data = store / version / "data.parquet"
    original = data.read_bytes()
    data.write_bytes(original[:200])
    with pytest.raises(TrainerError, match="does not match its version hash"):
        train_and_register(store, reg, TrainConfig(**FAST), version, progress=False)
    # a well-formed file with flipped labels is caught too: the content hash is checked
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pq.read_table(pa.BufferReader(original))
    flipped = t.set_column(0, "label", pa.array(t.column("label").to_pylist()[::-1]))
    pq.write_table(flipped, data, compression="zstd")
    with pytest.raises(TrainerError, match="does not match its version hash"):
        train_and_register(store, reg, TrainConfig(**FAST), version, progress=False)
    assert ([e.id for e in reg.list()], reg.promoted().id) == before
    assert not list((reg.root / "models").glob(".tmp-*"))


def test_prior_weighting_recovers_the_true_class_prior(tmp_path: Path) -> None:
    # uninformative features, skewed labels, quotas that balance the snapshot
    version, prior = make_snapshot(tmp_path, 20_000, 4, seed=3, sep=0.0, zipf_a=1.5, cap=300)
    data = load_snapshot(tmp_path / "snapshots", version)
    retained = np.bincount(data.labels) / data.n
    assert retained.max() - retained.min() < 0.05  # the snapshot itself is balanced
    cfg = dict(epochs=15, batch_size=256, device="cpu", lr=1e-3)
    weighted = train(data, TrainConfig(**cfg, weighting="prior", objective="balanced"),
                     progress=False)  # fmt: skip
    balanced = train(data, TrainConfig(**cfg, objective="balanced"), progress=False)
    adjusted = train(data, TrainConfig(**cfg), progress=False)  # objective "natural"
    names = [int(n[1:]) for n in data.label_names]
    true = prior[names]
    pw = predict_proba(weighted.model, data.features).mean(0)
    pb = predict_proba(balanced.model, data.features).mean(0)
    pa = predict_proba(adjusted.model, data.features).mean(0)
    # tolerance: 0.06 absolute per class (prior 0.54 / 0.19 / 0.10 / 0.07)
    assert np.abs(pw - true).max() < 0.06, (pw, true)
    assert np.abs(pb - 0.25).max() < 0.06, pb  # balanced training predicts the balanced mix
    # trained on the same balanced rows, the logit-adjusted model predicts the stream's mix
    assert np.abs(pa - true).max() < 0.06, (pa, true)


def test_user_model_factory_and_bad_specs(learnable) -> None:
    store, version = learnable
    data = load_snapshot(store, version)
    # a file never names code: an unregistered reference is refused, not imported
    with pytest.raises(TrainerError, match="is not registered"):
        train(data, TrainConfig(**{**FAST, "model": "tests.trainer.factories:tiny"}),
              progress=False)  # fmt: skip
    # the operator registers it (what `trainer train --model pkg.module:factory` does)
    name = register_from_reference("tests.trainer.factories:tiny")
    res = train(data, TrainConfig(**{**FAST, "model": name}), progress=False)
    assert res.report.macro_f1 > 0.8
    for spec, match in (
        ("nope", "expected 'mlp' or module:factory"),
        ("tests.trainer.factories:missing", "cannot load"),
    ):
        with pytest.raises(TrainerError, match=match):
            register_from_reference(spec)
    register_from_reference("tests.trainer.factories:not_a_module")
    with pytest.raises(TrainerError, match="not a torch Module"):
        spec = "tests.trainer.factories:not_a_module"
        train(data, TrainConfig(**{**FAST, "model": spec}), progress=False)
    with pytest.raises(TrainerError, match="weighting"):
        TrainConfig(weighting="inverse")


def test_metrics_agree_with_a_direct_computation() -> None:
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 5, 500), rng.integers(0, 5, 500)
    probs = rng.dirichlet(np.ones(5), 500)
    r = evaluate_predictions(y, p, probs, list("abcde"))
    f1s = []
    for k in range(5):
        tp = sum((y == k) & (p == k))
        prec, rec = tp / sum(p == k), tp / sum(y == k)
        f1s.append(2 * prec * rec / (prec + rec))
        assert r.confusion[k][k] == tp
    assert r.macro_f1 == pytest.approx(np.mean(f1s))
    assert 0.0 <= r.ece <= 1.0


def test_cli_train_predict_and_bad_input(learnable, tmp_path: Path) -> None:
    store, version = learnable
    reg = tmp_path / "reg"
    run = [sys.executable, "-m", "trainer.cli"]
    r = subprocess.run(
        [
            *run,
            "train",
            "--snapshot-dir",
            str(store),
            "--registry",
            str(reg),
            "--epochs",
            "5",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert "PROMOTED" in r.stdout
    data = load_snapshot(store, version)
    lines = "\n".join(json.dumps({"features": f.tolist()}) for f in data.features[:5])
    r = subprocess.run(
        [*run, "predict", "--registry", str(reg)], input=lines, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    out = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(out) == 5 and all(o["label"] in data.label_names for o in out)
    r = subprocess.run(
        [*run, "predict", "--registry", str(reg)],
        input='{"features": [1, 2]}\n',
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2
    assert "line 1: features: 2 numbers, the model expects 4 (f0, f1, f2, f3)" in r.stderr
    r = subprocess.run(
        [*run, "registry", "rollback", "--registry", str(reg)], capture_output=True, text=True
    )
    assert r.returncode == 2 and "nothing to roll back to" in r.stderr


def test_a_crafted_model_file_cannot_run_code(tmp_path: Path, learnable) -> None:
    """A model.pt naming ``module:factory`` (e.g. ``os:system``) is refused on load and
    nothing is imported or called; ids read from files must be model ids."""
    import torch

    from trainer.pipeline import train_and_register
    from trainer.registry import ModelRegistry

    store, version = learnable
    reg = ModelRegistry(tmp_path / "reg")
    out = train_and_register(store, reg, TrainConfig(**FAST), version, progress=False)
    mid = out.entry.id
    path = reg.get(mid).path / "model.pt"
    blob = torch.load(path, weights_only=True)
    for spec in ("os:system", "builtins:eval", "tests.trainer.factories:tiny_side_effect"):
        torch.save({**blob, "spec": spec}, path)
        with pytest.raises(TrainerError, match="is not registered"):
            reg.load_model(mid)
    torch.save({**blob, "dim": 10**9}, path)
    with pytest.raises(TrainerError, match="disagrees with meta.json"):
        reg.load_model(mid)
    (tmp_path / "reg" / "PROMOTED").write_text("../../etc")
    with pytest.raises(TrainerError, match="not a model id"):
        reg.promoted()


def test_multilabel_thresholds_are_chosen_on_half_the_split_and_scored_on_the_other() -> None:
    from trainer.data import SnapshotData

    rng = np.random.default_rng(4)
    n = 3_000
    x = rng.normal(size=(n, 4)).astype(np.float32)
    multi = (x[:, :3] > np.array([0.0, 0.8, -0.8])).astype(np.float32)  # 50% / 21% / 79%
    multi[multi.sum(1) == 0, 0] = 1.0
    primary = multi.argmax(1).astype(np.int64)
    data = SnapshotData("ml", ["a", "b", "c"], x, primary, multi, np.ones(n),
                        [f"e{i}" for i in range(n)], {})  # fmt: skip
    res = train(data, TrainConfig(**{**FAST, "multilabel": True}), progress=False)
    assert res.thresholds is not None and len(res.thresholds) == 3
    assert all(0.0 < t < 1.0 for t in res.thresholds)
    assert res.report.macro_f1 > 0.85
    # metrics on the half of the 20% split that did not choose the thresholds
    assert res.report.n == res.n_eval < 0.15 * n


def test_an_external_test_set_scores_both_models_and_decides(learnable, tmp_path: Path) -> None:
    import orjson

    store, version = learnable
    data = load_snapshot(store, version)
    test = tmp_path / "test.jsonl"
    test.write_bytes(b"".join(
        orjson.dumps({"label": data.label_names[y], "features": x.tolist()}) + b"\n"
        for x, y in zip(data.features[:400], data.labels[:400], strict=True)
    ))  # fmt: skip
    reg = ModelRegistry(tmp_path / "reg")
    first = train_and_register(store, reg, TrainConfig(**FAST), version, progress=False,
                               test_set=test)  # fmt: skip
    m = first.entry.meta
    assert m["compared_on"] == "external test set" and m["metrics_test"]["n"] == 400
    assert first.macro_f1 == m["metrics_test"]["macro_f1"]
    second = train_and_register(store, reg, TrainConfig(**FAST), version, progress=False,
                                test_set=test)  # fmt: skip
    assert second.previous_f1_same_data is not None  # the promoted model, on the test set
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"label": "no-such-label", "features": [1, 2, 3, 4]}\n')
    with pytest.raises(TrainerError, match="no-such-label"):
        train_and_register(store, reg, TrainConfig(**FAST), version, progress=False,
                           test_set=bad)  # fmt: skip


# ------------------------------------------------------- evaluation slice and promotion
def test_promotion_uses_the_evaluation_slice_with_an_interval(tmp_path: Path) -> None:
    """A snapshot with an evaluation slice: both models are scored on the slice (natural
    mix, never trained on); promotion needs the bootstrap lower bound above the margin."""
    from trainer.data import load_eval_slice
    from trainer.pipeline import train_and_register

    store = tmp_path / "snapshots"
    v, prior = make_snapshot(tmp_path, 20_000, 4, seed=2, zipf_a=1.2, eval_fraction=0.1)
    sl = load_eval_slice(store, v, ["L0", "L1", "L2", "L3"])
    assert sl is not None and sl.n == 1_000
    # natural mix: the slice's most common label is the stream's (a 4-way chi-square)
    from scipy import stats

    got = np.bincount(sl.labels, minlength=4)
    assert stats.chisquare(got, prior * sl.n).pvalue > 1e-3
    reg = ModelRegistry(tmp_path / "reg")
    cfg = TrainConfig(epochs=6, seed=0)
    first = train_and_register(store, reg, cfg, v, progress=False)
    assert first.promoted and first.entry.meta["compared_on"] == "evaluation slice"
    assert first.entry.meta["metrics_eval_slice"]["n"] == 1_000
    # the same recipe again: no real gain, so the interval keeps the promoted model
    again = train_and_register(store, reg, cfg, v, progress=False)
    p = again.entry.meta["promotion"]
    assert not again.promoted
    assert p["metric"] == "macro_f1" and p["rows"] == 1_000 and p["low"] <= 0.0 <= p["high"]


def test_bootstrap_comparison_needs_enough_rows() -> None:
    """The same 4-point accuracy gain: not enough on 50 rows, enough on 5,000 (fixed seeds;
    the small case's 95% lower bound is about -0.06, the large case's about +0.03)."""
    from trainer.promotion import compare

    rng = np.random.default_rng(0)
    for n, expect in ((50, False), (5_000, True)):
        y = rng.integers(0, 3, n)
        old = np.where(rng.random(n) < 0.80, y, (y + 1) % 3)
        new = np.where(rng.random(n) < 0.84, y, (y + 1) % 3)
        c = compare(y, new, old, 3, "accuracy", confidence=0.95, seed=1)
        assert c.promote is expect, (n, c)
    y = rng.integers(0, 3, 2_000)
    same = compare(y, y, y, 3, "macro_f1", confidence=0.95)
    assert not same.promote and same.diff == 0.0  # a tie never promotes


def test_event_weighting_balances_the_labels_a_multilabel_model_sees() -> None:
    """Rows whose labels co-occur unevenly: 'c' is on 79% of rows, 'b' on 21%. Raked
    weights bring the weighted counts of rows carrying each label within 20% of each
    other; both balances are reported."""
    from trainer.data import SnapshotData

    rng = np.random.default_rng(4)
    n = 3_000
    x = rng.normal(size=(n, 4)).astype(np.float32)
    multi = (x[:, :3] > np.array([0.0, 0.8, -0.8])).astype(np.float32)
    multi[multi.sum(1) == 0, 0] = 1.0
    data = SnapshotData("ml", ["a", "b", "c"], x, multi.argmax(1).astype(np.int64), multi,
                        np.ones(n), [f"e{i}" for i in range(n)], {})  # fmt: skip
    plain = train(data, TrainConfig(**{**FAST, "multilabel": True}), progress=False)
    raked = train(
        data, TrainConfig(**{**FAST, "multilabel": True, "weighting": "events"}), progress=False
    )
    assert plain.event_balance["weighted"] == plain.event_balance["rows_carrying_label"] < 0.35
    assert raked.event_balance["weighted"] > 0.8
    assert raked.report.macro_f1 > 0.8  # still a good model


def test_named_features_travel_from_settings_to_predictions(tmp_path: Path) -> None:
    """Names given to the features reach the manifest, the registry, and `trainer
    predict`, which then also takes an object by name and names a missing feature."""
    import subprocess
    import sys

    from streamproc.settings import Settings
    from trainer.pipeline import train_and_register

    names = ["cpu_load", "latency_ms", "error_rate", "queue_depth"]
    assert Settings(feature_names=names).snapshot.feature_names == tuple(names)
    assert Settings().features == ["f0", "f1", "f2", "f3"]
    v, _ = make_snapshot(tmp_path, 3_000, 3, seed=4, feature_names=names)
    store = tmp_path / "snapshots"
    assert json.loads((store / v / "manifest.json").read_text())["feature_names"] == names
    reg = ModelRegistry(tmp_path / "reg")
    out = train_and_register(store, reg, TrainConfig(epochs=2), v, progress=False)
    assert out.entry.meta["feature_names"] == names
    row = {"features": {"queue_depth": 1, "error_rate": 0, "latency_ms": 2, "cpu_load": 3}}
    bad = {"features": {"cpu_load": 3, "latency_ms": 2, "error_rate": 0}}

    def predict(line: dict):
        return subprocess.run(
            [sys.executable, "-m", "trainer.cli", "predict", "--registry", str(tmp_path / "reg")],
            input=json.dumps(line), capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    ok = predict(row)
    assert ok.returncode == 0 and json.loads(ok.stdout)["label"].startswith("L"), ok.stderr
    err = predict(bad)
    assert err.returncode != 0 and "missing ['queue_depth']" in err.stderr


def test_feature_names_are_validated() -> None:
    from stratastream.errors import ConfigError
    from streamproc.settings import Settings

    for names, needle in ((["a", "b"], "2 names for feature_dim=4"),
                          (["a", "b", "c", "a"], "appear more than once"),
                          (["a", "b", "c", "1x"], "is not a name")):  # fmt: skip
        with pytest.raises(ConfigError, match=needle):
            Settings(feature_names=names)


def test_a_kill_between_writing_and_promoting_is_finished_by_the_next_writer(
    learnable, tmp_path: Path, monkeypatch
) -> None:
    """The entry is written, then the process dies before promoting it: the entry records
    the decision (not a promotion that never happened), and the next process to take the
    registry's lock finishes it. History first, PROMOTED second: a pointer left behind is
    repaired from the history."""
    from trainer.pipeline import train_and_register

    store, version = learnable
    reg = ModelRegistry(tmp_path / "reg")

    def killed(*a, **k):
        raise SystemExit("killed")

    monkeypatch.setattr(ModelRegistry, "promote", killed)
    with pytest.raises(SystemExit):
        train_and_register(store, reg, TrainConfig(**FAST), version, progress=False)
    monkeypatch.undo()
    (entry,) = reg.list()
    assert entry.meta["decision"] == "promote" and reg.promoted() is None
    assert "promoted_on_creation" not in entry.meta
    with reg.lock():  # any writer: a training, `registry promote`, `registry rollback`
        pass
    assert reg.promoted().id == entry.id
    assert "finished after an interruption" in reg.history()[-1]["reason"]
    # a PROMOTED pointer that lags the history (killed between the two writes)
    (tmp_path / "reg" / "PROMOTED").unlink()
    assert ModelRegistry(tmp_path / "reg").recover() == [f"PROMOTED set to {entry.id} "
                                                          "(history's last)"]  # fmt: skip
    assert reg.promoted().id == entry.id


def test_attributions_find_the_features_the_answer_depends_on(tmp_path: Path) -> None:
    """The label depends on features 0 and 2 only: integrated gradients give them nearly
    all the attribution, per prediction and globally; the registry records the global
    importances; `trainer predict --explain` and the /predict predictor return them."""
    import subprocess
    import sys

    from streamproc.hitl.predictor import Predictor
    from trainer.data import SnapshotData
    from trainer.explain import global_importance, integrated_gradients

    rng = np.random.default_rng(8)
    n = 4_000
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = ((x[:, 0] + x[:, 2]) > 0).astype(np.int64)
    names = ["a", "b"]
    data = SnapshotData(
        "xg",
        names,
        x,
        y,
        np.eye(2, dtype=np.float32)[y],
        np.ones(n),
        [f"e{i}" for i in range(n)],
        {"feature_names": ["u", "v", "w", "z"]},
    )
    res = train(data, TrainConfig(epochs=8, seed=0), progress=False)  # fmt: skip
    base = x.mean(0)
    imp = global_importance(res.model.cpu(), x[:400], base)
    assert min(imp[0], imp[2]) > 5 * max(imp[1], imp[3]), imp
    a = integrated_gradients(res.model.cpu(), torch.from_numpy(x[:50]), torch.from_numpy(base))
    assert float(np.median(a.completeness_gap)) < 0.02  # attributions add up
    # through the registry, the CLI and the HTTP predictor
    from trainer.pipeline import train_and_register

    v, _ = make_snapshot(tmp_path, 3_000, 3, seed=5)
    reg = ModelRegistry(tmp_path / "reg")
    out = train_and_register(tmp_path / "snapshots", reg, TrainConfig(epochs=3), v,
                             progress=False)  # fmt: skip
    assert set(out.entry.meta["feature_importance"]) == {"f0", "f1", "f2", "f3"}
    r = subprocess.run(
        [sys.executable, "-m", "trainer.cli", "registry", "importance", "--registry",
         str(tmp_path / "reg")], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    head, row = r.stdout.splitlines()[:2]
    assert head.split()[1:] == ["f0", "f1", "f2", "f3"] and row.startswith(f"* {out.entry.id}")
    assert abs(sum(float(x) for x in row.split()[2:]) - 1.0) < 0.01  # shares
    r = subprocess.run(
        [sys.executable, "-m", "trainer.cli", "predict", "--registry", str(tmp_path / "reg"),
         "--explain"], input=json.dumps({"features": [1, 2, 3, 4]}),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert set(json.loads(r.stdout)["attributions"]) == {"f0", "f1", "f2", "f3"}
    res = Predictor(tmp_path / "reg").predict([1, 2, 3, 4], explain=True)
    model, attrs = res["model"], res["attributions"]
    assert model == out.entry.id and set(attrs) == {"f0", "f1", "f2", "f3"}


def test_registry_exports_to_a_real_local_mlflow_store(learnable, tmp_path: Path) -> None:
    """Runs with parameters, metrics, the model file and the snapshot as a dataset input
    with its Kafka lineage; one model version per entry; alias champion on the promoted
    model; exporting again adds nothing and moves the alias after a rollback."""
    import os
    import subprocess
    import sys

    pytest.importorskip("mlflow")  # the mlflow extra (make install has it)
    from mlflow import MlflowClient

    from trainer.pipeline import train_and_register

    store, version = learnable
    reg = ModelRegistry(tmp_path / "reg")
    a = train_and_register(store, reg, TrainConfig(**FAST), version, progress=False)
    b = train_and_register(store, reg, TrainConfig(**{**FAST, "seed": 3}), version,
                           progress=False, confidence=0.0, margin=-1.0)  # fmt: skip
    assert b.promoted  # margin -1: promoted, so the registry has a history to roll back
    uri = (tmp_path / "mlruns").as_uri()
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "MLFLOW_ALLOW_FILE_STORE": "true"}

    def export() -> str:
        r = subprocess.run(
            [sys.executable, "-m", "trainer.cli", "registry", "export-mlflow", "--registry",
             str(tmp_path / "reg"), "--tracking-uri", uri, "--snapshot-dir", str(store)],
            capture_output=True, text=True, timeout=300, env=env,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr[-2000:]
        return r.stdout

    assert "exported 2 model(s)" in export()
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        client = MlflowClient(uri, uri)
        runs = client.search_runs([client.get_experiment_by_name("stratastream").experiment_id])
        by_model = {r.data.tags["stratastream.model_id"]: r for r in runs}
        assert set(by_model) == {a.entry.id, b.entry.id}
        run = by_model[b.entry.id]
        assert run.data.metrics["metrics.macro_f1"] == pytest.approx(b.entry.macro_f1)
        (inp,) = run.inputs.dataset_inputs
        assert inp.dataset.name == f"snapshot {version}"
        tags = {t.key: t.value for t in inp.tags}
        assert json.loads(tags["kafka.source_offsets"]) == b.entry.meta["snapshot_source_offsets"]
        arts = {f.path for f in client.list_artifacts(run.info.run_id, "model")}
        assert "model/model.pt" in arts
        champion = client.get_model_version_by_alias("stratastream", "champion")
        assert champion.run_id == run.info.run_id
        assert "exported 0 model(s)" in export()  # idempotent
        with reg.lock():
            reg.rollback()
        export()
        champion = client.get_model_version_by_alias("stratastream", "champion")
        assert champion.run_id == by_model[a.entry.id].info.run_id
    finally:
        os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)
