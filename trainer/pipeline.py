"""Train on a snapshot, compare with the promoted model on the same data, register,
and promote only when the new model is better by a margin."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import in_eval_split, load_snapshot, load_test_set
from .registry import ModelEntry, ModelRegistry
from .report import training_png
from .train import TrainConfig, evaluate, train

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
) -> Outcome:
    """One training run. Any failure raises before the registry is touched.

    With ``test_set`` (an external, natural-mix test file, see :func:`load_test_set`), the
    new and the promoted model are both scored on it, and promotion compares on it."""
    with registry.lock():
        data = load_snapshot(store, version)
        test = load_test_set(test_set, data.label_names) if test_set else None
        res = train(data, cfg, progress=progress)
        current = registry.promoted()
        prev_f1 = None
        prev_per: dict[str, float] | None = None
        if current is not None:
            model, _ = registry.load_model(current.id)
            ev = data.subset(in_eval_split(data.ids, cfg.eval_percent))
            index = {n: i for i, n in enumerate(data.label_names)}
            keep = [i for i, n in enumerate(current.label_names) if n in index]
            label_map = np.array([index[current.label_names[i]] for i in keep])
            sub = _OutputSubset(model, keep)
            weights = ev.ht_weight if cfg.objective == "natural" else None
            if test is not None:  # the external test set decides
                ev, weights = test, None
            rep = evaluate(sub, ev, "cpu", cfg.multilabel, label_map=label_map, weights=weights)
            prev_f1 = rep.macro_f1
            prev_per = {k: v["f1"] for k, v in rep.per_label.items()}
        test_report = (
            evaluate(res.model.cpu(), test, "cpu", cfg.multilabel, thresholds=res.thresholds)
            if test is not None
            else None
        )
        f1 = test_report.macro_f1 if test_report is not None else res.report.macro_f1
        better = prev_f1 is None or f1 > prev_f1 + margin  # a tie keeps the promoted model
        reason = (
            "first model"
            if prev_f1 is None
            else f"macro-F1 {f1:.4f} vs promoted {prev_f1:.4f} on the same data (margin {margin:g})"
        )
        meta = {
            "snapshot_version": data.version,
            "snapshot_source_offsets": data.manifest.get("source_offsets"),
            "label_names": data.label_names,
            "dim": data.dim,
            "config": cfg.to_dict(),
            "seed": cfg.seed,
            "trigger": trigger,
            "metrics": res.report.to_dict(),  # on the objective's terms (what promotion uses)
            "thresholds": res.thresholds,  # multi-label decision thresholds (None: argmax)
            "metrics_test": test_report.to_dict() if test_report else None,
            "compared_on": "external test set" if test is not None else "held-out split",
            "objective": cfg.objective,
            "metrics_natural": res.report_natural.to_dict() if res.report_natural else None,
            "metrics_balanced": res.report_balanced.to_dict() if res.report_balanced else None,
            "losses": res.losses,
            "timings": {
                "train_seconds": res.seconds,
                "samples_per_s": res.samples_per_s,
                "device": res.device,
                "on_device_batches": res.on_device_batches,
            },
            "rows": {"train": res.n_train, "eval": res.n_eval},
            "compared_with": current.id if current else None,
            "previous_f1_same_data": prev_f1,
            "promoted_on_creation": better,
        }
        png = training_png(
            data.version[:8],
            res.losses,
            {k: v["f1"] for k, v in res.report.per_label.items()},
            prev_per,
        )
        entry = registry.add(res.model.cpu(), meta, png)
        if better:
            registry.promote(entry.id, reason)
        log.info("model %s: %s -> %s", entry.id, reason, "promoted" if better else "kept previous")
        return Outcome(entry, better, f1, current.id if current else None, prev_f1, reason)


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
