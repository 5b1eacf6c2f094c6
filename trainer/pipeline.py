"""Train on a snapshot, compare with the promoted model on the same data, register,
and promote only when the new model is better by a margin."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import in_eval_split, load_eval_slice, load_snapshot, load_test_set
from .explain import global_importance
from .promotion import compare
from .registry import ModelEntry, ModelRegistry
from .report import training_png
from .train import TrainConfig, evaluate, predict_proba, train

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    entry: ModelEntry
    promoted: bool
    macro_f1: float
    previous_id: str | None
    previous_f1_same_data: float | None
    reason: str


def train_and_register(
    store: Path | str,
    registry: ModelRegistry,
    cfg: TrainConfig,
    version: str | None = None,
    margin: float = 0.0,
    trigger: str = "manual",
    progress: bool = True,
    test_set: Path | str | None = None,
    promote_metric: str = "macro_f1",
    confidence: float = 0.95,
    rollout: str = "direct",
    rollout_fraction: float = 0.1,
) -> Outcome:
    """One training run. Any failure raises before the registry is touched.

    Both the new and the promoted model are scored on one set, in this order of
    preference: ``test_set`` (an external natural-mix file, :func:`load_test_set`), the
    snapshot's evaluation slice (events the worker kept out of every training reservoir,
    natural mix, :func:`load_eval_slice`), or the hash-fixed held-out split of the
    training sample (Horvitz-Thompson weighted under the natural objective). Promotion
    compares ``promote_metric`` with a margin and a paired bootstrap interval
    (:mod:`trainer.promotion`). A model that passes is promoted (``rollout="direct"``), or
    put beside the champion in ``shadow`` or ``canary`` (``rollout_fraction`` of the
    requests) for the worker to decide on online feedback."""
    with registry.lock():
        data = load_snapshot(store, version)
        eval_slice = load_eval_slice(store, data.version, data.label_names)
        res = train(data, cfg, progress=progress)
        if test_set:
            test, compared_on = load_test_set(test_set, data.label_names), "external test set"
        elif eval_slice is not None:
            test, compared_on = eval_slice, "evaluation slice"
        else:
            test, compared_on = None, "held-out split"
        if test is not None:
            cmp_data, weights = test, None
        else:
            cmp_data = data.subset(in_eval_split(data.ids, cfg.eval_percent))
            weights = cmp_data.ht_weight if cfg.objective == "natural" else None
        new_model = res.model.cpu()
        new_rep = evaluate(
            new_model, cmp_data, "cpu", cfg.multilabel, weights=weights, thresholds=res.thresholds
        )
        slice_rep = (
            evaluate(new_model, eval_slice, "cpu", cfg.multilabel, thresholds=res.thresholds)
            if eval_slice is not None
            else None
        )
        test_report = new_rep if test_set else None
        current = registry.promoted()
        prev_f1 = None
        prev_per: dict[str, float] | None = None
        comparison = None
        if current is not None:
            model, _ = registry.load_model(current.id)
            index = {n: i for i, n in enumerate(data.label_names)}
            keep = [i for i, n in enumerate(current.label_names) if n in index]
            label_map = np.array([index[current.label_names[i]] for i in keep])
            sub = _OutputSubset(model, keep)
            rep = evaluate(
                sub, cmp_data, "cpu", cfg.multilabel, label_map=label_map, weights=weights,
                thresholds=_thresholds(current, keep),
            )  # fmt: skip
            prev_f1 = rep.macro_f1
            prev_per = {k: v["f1"] for k, v in rep.per_label.items()}
            if not cfg.multilabel and len(keep):
                k = len(data.label_names)
                old_pred = label_map[predict_proba(sub, cmp_data.features).argmax(1)]
                new_pred = predict_proba(new_model, cmp_data.features).argmax(1)
                comparison = compare(
                    cmp_data.labels, new_pred, old_pred, k, promote_metric, weights,
                    confidence, margin, seed=cfg.seed,
                )  # fmt: skip
        baseline = data.features.mean(0).astype(np.float32)
        importance = global_importance(new_model, cmp_data.features, baseline,
                                       multilabel=cfg.multilabel)  # fmt: skip
        f1 = new_rep.macro_f1
        if current is None:
            better, reason = True, "first model"
        elif comparison is not None:
            better, reason = comparison.promote, comparison.reason() + f" ({compared_on})"
        else:  # multi-label: point estimates of macro-F1
            better = f1 > prev_f1 + margin  # a tie keeps the promoted model
            reason = (
                f"macro-F1 {f1:.4f} vs promoted {prev_f1:.4f} on the {compared_on} "
                f"(margin {margin:g})"
            )
        meta = {
            "snapshot_version": data.version,
            "snapshot_source_offsets": data.manifest.get("source_offsets"),
            "label_names": data.label_names,
            "dim": data.dim,
            "feature_names": data.feature_names,
            # explanations: integrated gradients from this baseline (the training rows'
            # mean); global importance = mean |attribution| over the comparison rows
            "explain_baseline": baseline.tolist(),
            "feature_importance": dict(
                zip(data.feature_names, importance.tolist(), strict=True)
            ),  # fmt: skip
            "config": cfg.to_dict(),
            "seed": cfg.seed,
            "trigger": trigger,
            "metrics": res.report.to_dict(),  # on the training sample's held-out split
            "thresholds": res.thresholds,  # multi-label decision thresholds (None: argmax)
            "metrics_test": test_report.to_dict() if test_report else None,
            "metrics_eval_slice": slice_rep.to_dict() if slice_rep else None,
            "metrics_compared": new_rep.to_dict(),
            "compared_on": compared_on,
            "promotion": comparison.to_dict() if comparison else None,
            "objective": cfg.objective,
            "metrics_natural": res.report_natural.to_dict() if res.report_natural else None,
            "metrics_balanced": res.report_balanced.to_dict() if res.report_balanced else None,
            "event_balance": res.event_balance,
            "losses": res.losses,
            "timings": {
                "train_seconds": res.seconds,
                "samples_per_s": res.samples_per_s,
                "device": res.device,
                "on_device_batches": res.on_device_batches,
            },
            "rows": {
                "train": res.n_train,
                "eval": res.n_eval,
                "compared": cmp_data.n,
                "eval_slice": eval_slice.n if eval_slice is not None else 0,
            },
            "compared_with": current.id if current else None,
            "previous_f1_same_data": prev_f1,
            # what this training decided; whether the model *is* promoted is the
            # registry's history (a kill between the two is finished by recover())
            "decision": _decision(better, rollout, current is not None),
            "decision_reason": reason,
        }
        png = training_png(
            data.version[:8],
            res.losses,
            {k: v["f1"] for k, v in new_rep.per_label.items()},
            prev_per,
        )
        entry = registry.add(new_model, meta, png)
        decided = meta["decision"]
        if decided == "promote":
            registry.promote(entry.id, reason)
        elif decided == "rollout":
            if registry.candidate() is not None:  # a newer candidate replaces the running one
                registry.end_rollout("reject", f"replaced by {entry.id}")
            registry.start_rollout(entry.id, rollout, rollout_fraction, reason)
        log.info("model %s: %s -> %s", entry.id, reason,
                 {"promote": "promoted", "rollout": f"{rollout} rollout",
                  "keep": "kept previous"}[decided])  # fmt: skip
        return Outcome(entry, decided == "promote", f1, current.id if current else None,
                       prev_f1, reason)  # fmt: skip


def _decision(better: bool, rollout: str, has_champion: bool) -> str:
    """promote, rollout (shadow or canary beside the champion) or keep."""
    if not better:
        return "keep"
    return "rollout" if rollout != "direct" and has_champion else "promote"


def _thresholds(entry: ModelEntry, keep: list[int]) -> list[float] | None:
    t = entry.meta.get("thresholds")
    return [t[i] for i in keep] if t else None


class _OutputSubset:
    """A model whose outputs are restricted to some of its labels (callable like a Module)."""

    def __init__(self, model, keep: list[int]) -> None:
        import torch

        self.model = model
        self.keep = torch.tensor(keep, dtype=torch.long)

    def __call__(self, x):
        return self.model(x)[:, self.keep]

    def eval(self):
        self.model.eval()
        return self
