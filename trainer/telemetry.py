"""Prometheus metrics (telemetry) of the trainer (``trainer follow --metrics-port``).

Run counters come from this process; promotion state comes from the registry itself at
scrape time, so promotions and rollbacks made with the CLI are counted too.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .registry import ModelRegistry


class RegistryCollector:
    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    def collect(self):
        promoted = self.registry.promoted()
        f1 = GaugeMetricFamily(
            "strata_trainer_promoted_macro_f1", "Held-out macro-F1 of the promoted model"
        )
        info = GaugeMetricFamily(
            "strata_trainer_model_version_info",
            "Promoted model and its snapshot (value 1)",
            labels=["model", "snapshot"],
        )
        if promoted is not None:
            f1.add_metric([], promoted.macro_f1)
            info.add_metric([promoted.id, promoted.meta["snapshot_version"]], 1)
        yield f1
        yield info
        hist = self.registry.history()
        for action in ("promote", "rollback"):
            c = CounterMetricFamily(
                f"strata_trainer_{action}s", f"Model {action}s recorded in the registry history"
            )
            c.add_metric([], sum(1 for h in hist if h["action"] == action))
            yield c
        models = GaugeMetricFamily("strata_trainer_models", "Models in the registry")
        models.add_metric([], len(self.registry.list()))
        yield models


class TrainerMetrics:
    def __init__(self, registry_dir: Path) -> None:
        self.registry = r = CollectorRegistry()
        self.runs = Counter(
            "strata_trainer_runs",
            "Training runs by outcome (promoted, kept, failed)",
            ["outcome"],
            registry=r,
        )
        self.duration = Histogram(
            "strata_trainer_run_duration_seconds",
            "Training run duration",
            registry=r,
            buckets=(1, 5, 10, 30, 60, 120, 300, 600, 1800),
        )
        r.register(RegistryCollector(ModelRegistry(registry_dir)))
