"""Exporting the registry to MLflow: one run per model (parameters, metrics, the model
file, its report), the snapshot it was trained on as the run's dataset input with its
Kafka lineage (source offsets) as tags, a version of one registered model per entry,
and the alias ``champion`` on the promoted one.

Idempotent: a run is tagged with the model id and an entry already exported is skipped;
the alias follows the registry's current promotion on every export. MLflow is an
optional dependency (``pip install "stratastream[mlflow]"``), imported only here.

Example (needs ``mlflow-skinny``)::

    export_registry(ModelRegistry(Path("registry")), "http://mlflow:5000",
                    snapshot_dir="snapshots")
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import TrainerError
from .registry import ModelRegistry

MODEL_TAG = "stratastream.model_id"


def _flat(prefix: str, value, out: dict) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif value is not None:
        out[prefix] = value


def export_registry(
    registry: ModelRegistry,
    tracking_uri: str,
    name: str = "stratastream",
    experiment: str = "stratastream",
    snapshot_dir: Path | str | None = None,
) -> list[str]:
    """Export every entry not exported yet; returns the model ids exported now."""
    try:
        import mlflow
        from mlflow import MlflowClient
        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.data.meta_dataset import MetaDataset
    except ImportError as e:
        raise TrainerError(
            f"MLflow export needs mlflow (pip install 'stratastream[mlflow]'): {e}"
        ) from None
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    client = MlflowClient(tracking_uri, tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    done = {
        r.data.tags[MODEL_TAG]: r.info.run_id
        for r in client.search_runs([exp_id], max_results=50_000)
        if MODEL_TAG in r.data.tags
    }
    try:
        client.get_registered_model(name)
    except Exception:  # noqa: BLE001 - MlflowException RESOURCE_DOES_NOT_EXIST
        client.create_registered_model(name, description="Stratastream models (registry export)")
    versions = {v.run_id: v.version for v in client.search_model_versions(f"name='{name}'")}
    exported = []
    for e in registry.list():
        m = e.meta
        if e.id not in done:
            with mlflow.start_run(experiment_id=exp_id, run_name=e.id) as run:
                params: dict = {}
                _flat("", m.get("config", {}), params)
                params.update({"seed": m.get("seed"), "objective": m.get("objective"),
                               "trigger": m.get("trigger"), "dim": m.get("dim")})  # fmt: skip
                mlflow.log_params({k: str(v)[:500] for k, v in params.items() if v is not None})
                metrics: dict = {}
                for key in ("metrics", "metrics_compared", "metrics_eval_slice", "metrics_test"):
                    rep = m.get(key) or {}
                    for stat in ("macro_f1", "macro_precision", "macro_recall", "accuracy",
                                 "ece"):  # fmt: skip
                        if isinstance(rep.get(stat), int | float):
                            metrics[f"{key}.{stat}"] = float(rep[stat])
                mlflow.log_metrics(metrics)
                version = m.get("snapshot_version", "unknown")
                where = Path(snapshot_dir) / version if snapshot_dir else e.path
                ds = MetaDataset(source=resolve_dataset_source(str(where)),
                                 name=f"snapshot {version}", digest=version[:36])  # fmt: skip
                lineage = json.dumps(m.get("snapshot_source_offsets") or {}, sort_keys=True)
                mlflow.log_input(ds, context="training",
                                 tags={"kafka.source_offsets": lineage})  # fmt: skip
                for f in ("model.pt", "meta.json", "report.png"):
                    if (e.path / f).exists():
                        mlflow.log_artifact(str(e.path / f), artifact_path="model")
                mlflow.set_tags({MODEL_TAG: e.id, "stratastream.snapshot": version,
                                 "stratastream.decision": m.get("decision", "")})  # fmt: skip
                done[e.id] = run.info.run_id
            exported.append(e.id)
        run_id = done[e.id]
        if run_id not in versions:
            mv = client.create_model_version(name, f"runs:/{run_id}/model", run_id,
                                             tags={MODEL_TAG: e.id})  # fmt: skip
            versions[run_id] = mv.version
    current = registry.promoted()
    if current is not None and current.id in done:
        client.set_registered_model_alias(name, "champion", versions[done[current.id]])
    return exported
