"""``trainer``: train | follow | review | registry list|show|importance|promote|rollback |
predict."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path

import numpy as np

from stratastream.errors import StratastreamError

from .errors import TrainerError

# torch and the trainer's modules are imported by the commands, not here: `trainer
# --help` and argument errors answer at once


def _registry(path: str):
    from .registry import ModelRegistry

    return ModelRegistry(Path(path))


def _store(location: str) -> Path | str:
    """A local directory or an fsspec URL of a snapshot store."""
    return location if "://" in location else Path(location)


def _cfg(a: argparse.Namespace):
    from .model import register_from_reference
    from .train import TrainConfig

    return TrainConfig(
        model=register_from_reference(a.model),  # operator input, imported here only
        epochs=a.epochs,
        batch_size=a.batch_size,
        lr=a.lr,
        seed=a.seed,
        weighting=a.weighting,
        objective=a.objective,
        multilabel=a.multilabel,
        device=a.device,
    )


def cmd_train(a: argparse.Namespace) -> int:
    from .pipeline import train_and_register

    out = train_and_register(
        _store(a.snapshot_dir),
        _registry(a.registry),
        _cfg(a),
        a.version,
        a.margin,
        trigger="manual",
        progress=True,
        test_set=a.test_set,
        promote_metric=a.promote_metric,
        confidence=a.confidence,
        rollout=a.rollout,
        rollout_fraction=a.canary_fraction,
    )
    _print_outcome(out)
    return 0


def _print_outcome(out) -> None:
    from rich.console import Console
    from rich.table import Table

    m = out.entry.meta
    t = Table(title=f"model {out.entry.id}")
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_row("snapshot", m["snapshot_version"])
    t.add_row(f"macro-F1 ({m.get('compared_on', 'held-out split')})", f"{out.macro_f1:.4f}")
    t.add_row(
        "macro precision / recall",
        f"{m['metrics']['macro_precision']:.4f} / {m['metrics']['macro_recall']:.4f}",
    )
    t.add_row("calibration error (ECE)", f"{m['metrics']['ece']:.4f}")
    t.add_row(
        "previous promoted, same data",
        "-"
        if out.previous_f1_same_data is None
        else f"{out.previous_id}: {out.previous_f1_same_data:.4f}",
    )
    t.add_row("decision", ("PROMOTED" if out.promoted else "kept previous") + f" — {out.reason}")
    tm = m["timings"]
    t.add_row(
        "training",
        f"{tm['train_seconds']:.2f}s on {tm['device']}, {tm['samples_per_s']:,.0f} samples/s",
    )
    Console().print(t)


def _kafka_options(items: list[str]) -> dict[str, str]:
    """``["k=v", ...]`` -> dict; an entry without ``=`` is an error naming it."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise TrainerError(f"--kafka-option: expected key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def cmd_follow(a: argparse.Namespace) -> int:
    from stratastream.brokers import resolve_broker, wait_for_broker

    from .follow import Follower

    bootstrap = None
    kafka = _kafka_options(a.kafka_option)
    if a.broker:  # 'embedded' means what it means to every command: the local stack's
        bootstrap = resolve_broker(a.broker)
        wait_for_broker(bootstrap, a.broker_timeout, kafka)
    f = Follower(
        _store(a.snapshot_dir),
        _registry(a.registry),
        _cfg(a),
        bootstrap=bootstrap,
        snapshots_topic=a.snapshots_topic,
        drift_topic=a.drift_topic,
        min_new_events=a.min_new_events,
        margin=a.margin,
        test_set=a.test_set,
        promote_metric=a.promote_metric,
        confidence=a.confidence,
        kafka_config=kafka,
        rollout=a.rollout,
        rollout_fraction=a.canary_fraction,
    )
    if a.metrics_port:
        from prometheus_client import start_http_server

        from .telemetry import TrainerMetrics

        f.metrics = TrainerMetrics(Path(a.registry))
        start_http_server(a.metrics_port, addr=a.metrics_bind, registry=f.metrics.registry)
    signal.signal(signal.SIGTERM, lambda *_: f.stop_event.set())
    signal.signal(signal.SIGINT, lambda *_: f.stop_event.set())
    f.run()
    return 0


def cmd_registry(a: argparse.Namespace) -> int:
    if not (Path(a.registry) / "models").is_dir():  # reading must not create a registry
        raise TrainerError(f"registry: {a.registry} is not a model registry (no models/ in it)")
    reg = _registry(a.registry)
    if a.action == "list":
        cur, cand = reg.promoted(), reg.candidate()
        for e in reg.list():
            mark = "*" if cur and cur.id == e.id else " "
            roll = f"  rollout={cand['mode']}" if cand and cand["model"] == e.id else ""
            print(
                f"{mark} {e.id}  snapshot={e.meta['snapshot_version']}  "
                f"macro_f1={e.macro_f1:.4f}  trigger={e.meta['trigger']}{roll}"
            )
        return 0
    if a.action == "importance":
        print(importance_table(reg))
        return 0
    if a.action == "rollback":
        with reg.lock():
            e = reg.rollback()
        print(f"rolled back to {e.id}")
        return 0
    if a.action == "rollout":
        if not a.model_id:
            raise TrainerError("registry rollout: a model id is required")
        with reg.lock():
            reg.start_rollout(a.model_id, a.mode, a.fraction, "manual rollout")
        share = "" if a.mode == "shadow" else f" for {a.fraction:.0%} of the requests"
        print(f"{a.model_id} in {a.mode} beside the champion{share}")
        return 0
    if a.action == "rollout-end":
        with reg.lock():
            mid = reg.end_rollout(a.decision, "manual decision")
        print(f"rollout of {mid} ended: {a.decision}")
        return 0
    if a.action == "candidate":
        print(json.dumps(reg.candidate()))
        return 0
    if a.action == "export-mlflow":
        from .mlflow_export import export_registry

        if not a.tracking_uri:
            raise TrainerError("registry export-mlflow: --tracking-uri is required")
        with reg.lock():
            done = export_registry(reg, a.tracking_uri, a.mlflow_name,
                                   snapshot_dir=a.snapshot_dir)  # fmt: skip
        print(f"exported {len(done)} model(s) to {a.tracking_uri}: {', '.join(done) or '-'}; "
              f"alias champion on the promoted model")  # fmt: skip
        return 0
    if not a.model_id and a.action == "show":
        cur = reg.promoted()
        if cur is None:
            raise TrainerError("registry: no promoted model; give a model id")
        a.model_id = cur.id
    if not a.model_id:
        raise TrainerError(f"registry {a.action}: a model id is required")
    if a.action == "show":
        print(json.dumps(reg.get(a.model_id).meta, indent=2))
    else:
        with reg.lock():
            reg.promote(a.model_id, "manual promotion")
        print(f"promoted {a.model_id}")
    return 0


def cmd_review(a: argparse.Namespace) -> int:
    """A scoring pass: the promoted model scores a snapshot; the rows it is least sure of
    go to the annotate topic (:mod:`trainer.review`)."""
    import time

    from .data import load_snapshot
    from .review import review_items
    from .train import predict_proba

    if a.budget <= 0:
        raise TrainerError(f"review --budget: must be > 0, got {a.budget}")
    reg = _registry(a.registry)
    cur = reg.promoted()
    if cur is None:
        raise TrainerError(f"registry {a.registry}: no promoted model")
    model, e = reg.load_model(cur.id)
    data = load_snapshot(_store(a.snapshot_dir), a.version, label_names=list(e.label_names))
    probs = predict_proba(model, data.features, "cpu", e.meta["config"]["multilabel"])
    items = review_items(data, probs, e.id, a.budget, time.time())
    if a.dry_run or not a.broker:
        for it in items:
            print(json.dumps(it))
        return 0
    from confluent_kafka import Producer

    from stratastream.brokers import resolve_broker, wait_for_broker

    kafka = _kafka_options(a.kafka_option)
    bootstrap = resolve_broker(a.broker)
    wait_for_broker(bootstrap, a.broker_timeout, kafka)
    prod = Producer({**kafka, "bootstrap.servers": bootstrap})
    for it in items:
        prod.produce(a.topic, json.dumps(it).encode(), key=it["item_id"].encode())
        prod.poll(0)
    if prod.flush(60) > 0:
        raise TrainerError(f"review: some items were not delivered to topic {a.topic!r}")
    per_label: dict[str, int] = {}
    for it in items:
        per_label[it["label"]] = per_label.get(it["label"], 0) + 1
    print(f"review of snapshot {data.version} by {e.id}: {len(items)} of {len(data.ids)} rows "
          f"sent to {a.topic!r} {dict(sorted(per_label.items()))}")  # fmt: skip
    return 0


def importance_table(reg) -> str:
    """Each model's global feature importance (mean |attribution|, as shares of its total),
    one row per model, the promoted one marked with ``*``."""
    entries = [e for e in reg.list() if e.meta.get("feature_importance")]
    if not entries:
        return "no model records feature importances"
    names = list(dict.fromkeys(n for e in entries for n in e.meta["feature_importance"]))
    cur = reg.promoted()
    width = max(6, *(len(n) for n in names))
    lines = ["  model            " + " ".join(f"{n:>{width}}" for n in names)]
    for e in entries:
        imp = e.meta["feature_importance"]
        total = sum(imp.values()) or 1.0
        mark = "*" if cur is not None and cur.id == e.id else " "
        cells = " ".join(f"{imp.get(n, 0.0) / total:>{width}.3f}" for n in names)
        lines.append(f"{mark} {e.id:<16} {cells}")
    return "\n".join(lines)


def cmd_predict(a: argparse.Namespace) -> int:
    from .train import predict_proba

    reg = _registry(a.registry)
    cur = reg.promoted()
    if cur is None:
        raise TrainerError(f"registry {a.registry}: no promoted model")
    model, e = reg.load_model(cur.id)
    text = sys.stdin.read() if a.input == "-" else Path(a.input).read_text()
    rows = []
    for i, line in enumerate(text.splitlines()):
        if not line.strip():
            continue
        try:
            feats = json.loads(line)["features"]
        except (ValueError, KeyError, TypeError) as ex:
            raise TrainerError(
                f'predict input line {i + 1}: expected {{"features": [numbers] or '
                f"{{name: number}}}} ({ex})"
            ) from None
        names = e.meta.get("feature_names") or [f"f{j}" for j in range(e.meta["dim"])]
        from .data import feature_vector

        rows.append(feature_vector(feats, names, f"predict input line {i + 1}: features"))
    x = np.array(rows, dtype=np.float32)
    probs = predict_proba(model, x, "cpu", e.meta["config"]["multilabel"])
    attrs = None
    if a.explain:
        import torch

        from .explain import integrated_gradients

        base = np.asarray(e.meta.get("explain_baseline") or x.mean(0), dtype=np.float32)
        attrs = integrated_gradients(model, torch.from_numpy(x), torch.from_numpy(base),
                                     multilabel=e.meta["config"]["multilabel"])  # fmt: skip
        feat_names = e.meta.get("feature_names") or [f"f{j}" for j in range(x.shape[1])]
    multilabel = bool(e.meta["config"]["multilabel"])
    cut = np.asarray(e.meta.get("thresholds") or [0.5] * len(e.label_names))
    for r, p in enumerate(probs):
        top = int(p.argmax())
        out = {"model": e.id, "label": e.label_names[top], "probability": round(float(p[top]), 6)}
        if multilabel:  # every label above its threshold (chosen on the evaluation split)
            out["labels"] = [e.label_names[j] for j in np.flatnonzero(p >= cut).tolist()]
            out["probabilities"] = {n: round(float(v), 6) for n, v in zip(e.label_names, p,
                                                                          strict=True)}  # fmt: skip
        if attrs is not None:  # integrated gradients for the predicted label
            out["attributions"] = {n: round(float(v), 6) for n, v in zip(
                feat_names, attrs.attributions[r], strict=True)}  # fmt: skip
        print(json.dumps(out))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="trainer", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    env = os.environ.get

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--registry", default=env("STRATA_REGISTRY_DIR", "registry"))

    def training(sp: argparse.ArgumentParser) -> None:
        common(sp)
        sp.add_argument("--snapshot-dir", default=env("STRATA_SNAPSHOT_DIR", "snapshots"))
        sp.add_argument("--model", default="mlp", help="'mlp' or module:factory")
        sp.add_argument("--epochs", type=int, default=20)
        sp.add_argument("--batch-size", type=int, default=1024)
        sp.add_argument("--lr", type=float, default=3e-3)
        sp.add_argument("--seed", type=int, default=0)
        sp.add_argument(
            "--weighting",
            choices=["balanced", "prior", "events"],
            default="balanced",
            help="balanced: rows as sampled; prior: Horvitz-Thompson weights; events: "
            "multi-label rows raked so every label is carried equally (event balance)",
        )
        sp.add_argument(
            "--test-set",
            default=None,
            help="external test set (Parquet or JSON lines of label + features, natural "
            "mix): both models are scored on it and promotion compares on it",
        )
        sp.add_argument(
            "--objective",
            choices=["natural", "balanced"],
            default="natural",
            help="natural: predict and score under the stream's class mix (logit adjustment "
            "by the sampler's Horvitz-Thompson prior); balanced: every label equally",
        )
        sp.add_argument("--multilabel", action="store_true")
        sp.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
        sp.add_argument(
            "--margin",
            type=float,
            default=0.0,
            help="promote only if the promotion metric beats the promoted model by this much "
            "(at the --confidence lower bound)",
        )
        sp.add_argument(
            "--promote-metric",
            choices=["macro_f1", "accuracy", "balanced_accuracy"],
            default="macro_f1",
            help="what promotion compares, on the external test set, else the snapshot's "
            "evaluation slice, else the held-out split",
        )
        sp.add_argument(
            "--confidence",
            type=float,
            default=0.95,
            help="one-sided paired-bootstrap confidence that the gain exceeds --margin "
            "(0: compare point estimates)",
        )
        sp.add_argument(
            "--rollout",
            choices=["direct", "shadow", "canary"],
            default="direct",
            help="a model that passes: promote it at once (direct), or put it beside the "
            "champion in shadow or canary and let the worker decide on online feedback",
        )
        sp.add_argument("--canary-fraction", type=float, default=0.1,
                        help="canary: the share of requests the candidate answers")  # fmt: skip

    t = sub.add_parser("train", help="train on a snapshot and register the model")
    training(t)
    t.add_argument("--version", default=None, help="snapshot version (default: latest)")
    t.set_defaults(fn=cmd_train)

    f = sub.add_parser("follow", help="retrain on new snapshots and drift triggers")
    training(f)
    f.add_argument(
        "--broker",
        default=env("STRATA_BROKER"),
        help="kafka://host:port or 'embedded' (the local stack's broker) to follow "
        "topics; without it, watch the store",
    )
    f.add_argument(
        "--kafka-option",
        action="append",
        default=[x for x in env("STRATA_KAFKA_OPTIONS", "").split(";") if x.strip()],
        help="librdkafka setting key=value (repeatable; env STRATA_KAFKA_OPTIONS, ';'-"
        "separated), e.g. security.protocol=SSL, ssl.ca.location=ca.pem, sasl.username=u; "
        "a secret such as sasl.password is best given through the environment",
    )
    f.add_argument(
        "--broker-timeout",
        type=float,
        default=float(env("STRATA_BROKER_TIMEOUT_S", 15.0)),
        help="seconds to wait for the broker before failing",
    )
    f.add_argument("--snapshots-topic", default="snapshots")
    f.add_argument("--drift-topic", default="drift")
    f.add_argument("--min-new-events", type=int, default=0)
    f.add_argument(
        "--metrics-port",
        type=int,
        default=int(env("STRATA_TRAINER_METRICS_PORT", 0)),
        help="serve Prometheus /metrics on this port (0: off)",
    )
    f.add_argument("--metrics-bind", default=env("STRATA_WEB_BIND", "127.0.0.1"))
    f.set_defaults(fn=cmd_follow)

    rv = sub.add_parser("review", help="score a snapshot with the promoted model; send the "
                        "rows it is least sure of to annotators")  # fmt: skip
    common(rv)
    rv.add_argument("--snapshot-dir", default=env("STRATA_SNAPSHOT_DIR", "snapshots"))
    rv.add_argument("--version", default=None, help="snapshot version (default: LATEST)")
    rv.add_argument("--budget", type=float, default=20.0,
                    help="expected rows sent per label in this pass")  # fmt: skip
    rv.add_argument("--broker", default=env("STRATA_BROKER"),
                    help="kafka://host:port or 'embedded'; without: print the items")  # fmt: skip
    rv.add_argument("--topic", default=env("STRATA_ANNOTATE_TOPIC", "annotate"))
    rv.add_argument("--kafka-option", action="append",
                    default=[x for x in env("STRATA_KAFKA_OPTIONS", "").split(";") if x.strip()],
                    help="librdkafka setting key=value (repeatable)")  # fmt: skip
    rv.add_argument("--broker-timeout", type=float, default=30.0)
    rv.add_argument("--dry-run", action="store_true", help="print the items, send nothing")
    rv.set_defaults(fn=cmd_review)

    r = sub.add_parser("registry", help="list, show, promote, roll back or roll out models")
    common(r)
    r.add_argument("action", choices=["list", "show", "importance", "promote", "rollback",
                                      "rollout", "rollout-end", "candidate", "export-mlflow"],
                   help="importance: each model's feature importances, as shares")  # fmt: skip
    r.add_argument("model_id", nargs="?")
    r.add_argument("--mode", choices=["shadow", "canary"], default="canary",
                   help="rollout: shadow (answers recorded, never returned) or canary")  # fmt: skip
    r.add_argument("--fraction", type=float, default=0.1,
                   help="rollout: the share of requests the canary answers")  # fmt: skip
    r.add_argument("--decision", choices=["promote", "reject"], default="reject",
                   help="rollout-end: promote the candidate, or reject it")  # fmt: skip
    r.add_argument("--tracking-uri", default=env("MLFLOW_TRACKING_URI"),
                   help="export-mlflow: the MLflow tracking server or store")  # fmt: skip
    r.add_argument("--mlflow-name", default="stratastream", help="registered model name")
    r.add_argument("--snapshot-dir", default=env("STRATA_SNAPSHOT_DIR"),
                   help="export-mlflow: the snapshot store (dataset sources)")  # fmt: skip
    r.set_defaults(fn=cmd_registry)

    pr = sub.add_parser("predict", help="predict with the promoted model (JSON lines in)")
    common(pr)
    pr.add_argument("--input", default="-", help='JSON lines {"features": [...]}; - = stdin')
    pr.add_argument("--explain", action="store_true",
                    help="add per-feature attributions (integrated gradients)")  # fmt: skip
    pr.set_defaults(fn=cmd_predict)
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return a.fn(a)
    except StratastreamError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `trainer registry show | head`: the reader left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
