"""Prometheus metrics of a worker. Names and labels are documented in the README.

Cardinality stays bounded: ``partition`` is bounded by the topic, ``reason`` by the set
of validation fields, and ``label`` by ``metrics_max_labels``: beyond it, labels are
aggregated under ``__other__``.
"""

from __future__ import annotations

import re
import time

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

_REASON = re.compile(r"^(frame row \d+: )?([a-z_/]+)")


def reason_category(reason: str) -> str:
    """``"features: expected 4"`` -> ``"features"``; frame rows -> ``"frame_row_<field>"``."""
    m = _REASON.match(reason)
    if not m:
        return "other"
    field = m.group(2).replace("/", "_")
    return f"frame_row_{field}" if m.group(1) else field


class WorkerMetrics:
    def __init__(self, max_labels: int = 100) -> None:
        self.registry = r = CollectorRegistry()
        self.max_labels = max_labels
        self._client_labels: set[str] = set()
        self.consumed = Counter(
            "strata_events_consumed",
            "Messages consumed from the events topic",
            ["partition"],
            registry=r,
        )
        self.accepted = Counter(
            "strata_events_accepted",
            "Events that passed validation (rows, for frames)",
            ["partition"],
            registry=r,
        )
        self.reference_decoded = Counter(
            "strata_events_reference_decoded",
            "JSON messages the numba fast path left to the reference decoder (msgspec per "
            "message): escapes, non-ASCII labels or ids, odd numbers, invalid events",
            ["partition"],
            registry=r,
        )
        self.dead_lettered = Counter(
            "strata_events_dead_lettered",
            "Rejected messages or frame rows sent to the dead-letter topic",
            ["reason"],
            registry=r,
        )
        self.label_seen = Gauge(
            "strata_label_seen", "Events seen per label (owned partitions)", ["label"], registry=r
        )
        self.label_retained = Gauge(
            "strata_label_retained",
            "Items retained per label, summed over owned partitions",
            ["label"],
            registry=r,
        )
        self.label_capacity = Gauge(
            "strata_label_capacity",
            "Reservoir capacity per label, summed over owned partitions",
            ["label"],
            registry=r,
        )
        self.eval_slice = Gauge(
            "strata_eval_slice_events",
            "Evaluation slice (kept out of training): events seen and retained, summed "
            "over owned partitions",
            ["kind"],
            registry=r,
        )
        self.balance_ratio = Gauge(
            "strata_balance_ratio",
            "Smallest over largest per-label count in the latest snapshot",
            registry=r,
        )
        self.stability = Gauge(
            "strata_snapshot_stability_jaccard",
            "Jaccard overlap of retained items between the two latest snapshots",
            registry=r,
        )
        self.remote_publish_failures = Counter(
            "strata_snapshot_remote_publish_failures",
            "Snapshots that could not be published to snapshot_url",
            registry=r,
        )
        self.checkpoint_failures = Counter(
            "strata_checkpoint_failures",
            "Checkpoints not completed: 'flush' (dead letters undelivered: nothing written, "
            "retried), 'write' (state write failed, e.g. a full disk: consumption paused, "
            "retried with backoff) or 'commit' (state written, offset commit retried)",
            ["stage"],
            registry=r,
        )
        self.log_rewinds = Counter(
            "strata_log_rewinds",
            "Partitions whose log was not the one their checkpoint was taken on (truncated, "
            "recreated, restored, or its start moved past the checkpoint), by policy applied",
            ["partition", "policy"],
            registry=r,
        )
        self.state_rebuilt = Counter(
            "strata_state_rebuilt",
            "Partitions found without state although the group had committed an offset "
            "(state lost), rebuilt from the log start",
            ["partition"],
            registry=r,
        )
        self.state_quarantined = Counter(
            "strata_state_quarantined",
            "Partition state stores found unreadable at open, moved to "
            "<state_dir>/quarantine/ and rebuilt from the latest shard and the log",
            ["partition"],
            registry=r,
        )
        self.snapshot_duration = Histogram(
            "strata_snapshot_duration_seconds",
            "Snapshot work: 'export' (checkpoint and shards, on the ingest thread) and "
            "'build' (merge, Parquet, publish, beside ingestion)",
            ["stage"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=r,
        )
        self.snapshots_skipped = Counter(
            "strata_snapshots_skipped",
            "Snapshot ticks skipped because the previous snapshot was still being built",
            registry=r,
        )
        self.snapshot_failures = Counter(
            "strata_snapshot_failures",
            "Snapshot builds that failed (logged with the reason; ingestion goes on)",
            registry=r,
        )
        self.snapshots = Counter("strata_snapshots", "Snapshots published", registry=r)
        self.snapshot_rows = Gauge(
            "strata_snapshot_rows", "Rows of the latest snapshot", registry=r
        )
        self.snapshot_bytes = Gauge(
            "strata_snapshot_bytes", "Parquet size of the latest snapshot", registry=r
        )
        self.snapshot_created = Gauge(
            "strata_snapshot_created_timestamp_seconds",
            "Creation time of the latest snapshot",
            registry=r,
        )
        self.snapshot_version = Gauge(
            "strata_snapshot_version_info",
            "Latest snapshot version (value 1)",
            ["version"],
            registry=r,
        )
        self.checkpoint_seconds = Histogram(
            "strata_checkpoint_duration_seconds",
            "Checkpoint duration (flush DLQ, RocksDB batch, offset commit)",
            registry=r,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.lag = Gauge(
            "strata_partition_lag_events",
            "High watermark minus the next offset to process",
            ["partition"],
            registry=r,
        )
        self.committed_at = Gauge(
            "strata_partition_last_commit_timestamp_seconds",
            "When the partition's offset was last committed",
            ["partition"],
            registry=r,
        )
        self.latency = Histogram(
            "strata_processing_latency_seconds",
            "Kafka message timestamp to processed, one "
            "observation per partition batch (its newest message)",
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
        )
        self.batch_seconds = Histogram(
            "strata_batch_duration_seconds",
            "Decode + validate + sample time of one partition batch",
            registry=r,
            buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5),
        )
        self.progress_at = Gauge(
            "strata_last_progress_timestamp_seconds",
            "When the worker last consumed a message",
            registry=r,
        )
        self.drift_checks = Counter("strata_drift_checks", "Drift checks run", registry=r)
        self.drift_score = Gauge(
            "strata_drift_score",
            "Per-label drift score: -log10 of the smallest adjusted KS p-value",
            ["label"],
            registry=r,
        )
        self.drift_ks_pvalue = Gauge(
            "strata_drift_ks_pvalue_adjusted",
            "KS p-value after multiple-testing correction",
            ["label", "feature"],
            registry=r,
        )
        self.drift_wasserstein = Gauge(
            "strata_drift_wasserstein",
            "Wasserstein-1 distance, window vs reference",
            ["label", "feature"],
            registry=r,
        )
        self.drift_psi = Gauge(
            "strata_drift_psi",
            "Population Stability Index, window vs reference",
            ["label", "feature"],
            registry=r,
        )
        self.drift_mix_js = Gauge(
            "strata_drift_label_mix_js",
            "Jensen-Shannon divergence of the window's label mix vs the reference",
            registry=r,
        )
        self.drift_mix_pvalue = Gauge(
            "strata_drift_label_mix_pvalue", "Chi-square p-value of the label mix", registry=r
        )
        self.drift_actions = Counter(
            "strata_drift_actions", "Drift actions taken", ["action"], registry=r
        )
        self.hitl_requests = Counter(
            "strata_hitl_requests",
            "Human-in-the-loop requests by endpoint and HTTP status",
            ["endpoint", "status"],
            registry=r,
        )
        self.predictions = Counter("strata_predictions", "Predictions served", registry=r)
        self.votes = Counter("strata_feedback_votes", "Votes on predictions", ["vote"], registry=r)
        self.downvotes = Counter(
            "strata_feedback_downvotes",
            "Down-votes without a correction, by predicted label",
            ["label"],
            registry=r,
        )
        self.corrections = Counter(
            "strata_feedback_corrections",
            "Corrected labels turned into events, by corrected label",
            ["label"],
            registry=r,
        )
        self.online_judged = Gauge(
            "strata_online_judged",
            "Predictions whose true label feedback told, per model (the rollout's evidence)",
            ["model"],
            registry=r,
        )
        self.online_accuracy = Gauge(
            "strata_online_accuracy",
            "Online accuracy per model from feedback, with its Wilson interval bounds",
            ["model", "bound"],
            registry=r,
        )
        self.online_downvote_rate = Gauge(
            "strata_online_downvote_rate",
            "Down-votes per answered prediction with feedback, per model",
            ["model"],
            registry=r,
        )
        self.rollout_decisions = Counter(
            "strata_rollout_decisions",
            "Online rollout decisions (promote, rollback)",
            ["decision"],
            registry=r,
        )
        self.annotate_selected = Counter(
            "strata_annotate_selected",
            "Predictions selected for labelling (active learning), by predicted label",
            ["label"],
            registry=r,
        )
        self.annotate_capped = Counter(
            "strata_annotate_capped",
            "Predictions drawn for labelling but over the label's hourly budget",
            registry=r,
        )
        self.annotate_labelled = Counter(
            "strata_annotate_labelled",
            "Selected items whose annotation became a labelled event, by label",
            ["label"],
            registry=r,
        )
        self.quality_flagged = Gauge(
            "strata_quality_flagged",
            "Rows of the latest snapshot flagged as near-duplicates or outliers, per label",
            ["label", "kind"],
            registry=r,
        )
        self.substrata_cells = Gauge(
            "strata_substrata_cells",
            "Sub-strata (feature-grid cells) of a label in the latest snapshot: with events "
            "(kind=seen) and with retained rows (kind=retained)",
            ["label", "kind"],
            registry=r,
        )
        self.relabel_queued = Counter(
            "strata_relabel_queued", "Items sent to the relabel topic", ["reason"], registry=r
        )
        self.spot_checks = Counter(
            "strata_spot_check_published", "Snapshot rows published for review", registry=r
        )
        self.annotation_kappa = Gauge(
            "strata_annotation_kappa",
            "Annotator agreement per label (Cohen's or Fleiss' kappa)",
            ["label"],
            registry=r,
        )
        self.healthy = Gauge("strata_worker_healthy", "1 when /health answers 200", registry=r)
        self._labels_shown: set[str] = set()

    def bounded(self, label: str) -> str:
        """``label`` as a metric label value, for client-supplied labels: the first
        ``max_labels`` distinct values keep their own series, later ones share
        ``__other__`` (and overlong values are never series names)."""
        if label in self._client_labels:
            return label
        if len(self._client_labels) < self.max_labels and len(label) <= 128:
            self._client_labels.add(label)
            return label
        return "__other__"

    def set_labels(
        self,
        seen: dict[str, int],
        retained: dict[str, int],
        capacity: dict[str, int],
        eval_slice: tuple[int, int] = (0, 0),
    ) -> None:
        """Per-label gauges, the ``max_labels`` most frequent by name, the rest as __other__.
        The evaluation slice (events seen, retained) has its own gauge, not a label series;
        ``seen`` counts every event of a label, the slice's included."""
        self.eval_slice.labels("seen").set(eval_slice[0])
        self.eval_slice.labels("retained").set(eval_slice[1])
        top = sorted(seen, key=lambda k: (-seen[k], k))[: self.max_labels]
        shown = set(top)
        agg = {"seen": {}, "retained": {}, "capacity": {}}
        for name, src in (("seen", seen), ("retained", retained), ("capacity", capacity)):
            for lab, v in src.items():
                key = lab if lab in shown else "__other__"
                agg[name][key] = agg[name].get(key, 0) + v
        for lab in self._labels_shown - set(agg["seen"]):
            for g in (self.label_seen, self.label_retained, self.label_capacity):
                g.remove(lab)
        for lab in agg["seen"]:
            self.label_seen.labels(lab).set(agg["seen"][lab])
            self.label_retained.labels(lab).set(agg["retained"].get(lab, 0))
            self.label_capacity.labels(lab).set(agg["capacity"].get(lab, 0))
        self._labels_shown = set(agg["seen"])

    def set_snapshot(
        self,
        version: str,
        rows: int,
        size: int,
        created: float,
        balance: float,
        stability: float | None,
    ) -> None:
        self.snapshot_version.clear()
        self.snapshot_version.labels(version).set(1)
        self.snapshots.inc()
        self.snapshot_rows.set(rows)
        self.snapshot_bytes.set(size)
        self.snapshot_created.set(created)
        self.balance_ratio.set(balance)
        if stability is not None:
            self.stability.set(stability)

    def set_quality(self, per_label: dict[str, dict[str, int]]) -> None:
        """Near-duplicates and outliers flagged in the latest snapshot, per label."""
        self.quality_flagged.clear()
        for label, kinds in per_label.items():
            for kind, n in kinds.items():
                self.quality_flagged.labels(self.bounded(label), kind).inc(n)

    def set_substrata(self, strata: dict[str, dict[str, dict[str, int]]]) -> None:
        """Cells per label in the latest snapshot (manifest ``sampler["strata"]``)."""
        self.substrata_cells.clear()
        for label, cells in strata.items():
            lab = self.bounded(label)
            self.substrata_cells.labels(lab, "seen").inc(len(cells))
            self.substrata_cells.labels(lab, "retained").inc(
                sum(1 for c in cells.values() if c.get("retained", 0) > 0)
            )

    def mark_progress(self) -> None:
        self.progress_at.set(time.time())

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
