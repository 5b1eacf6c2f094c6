"""The worker's drift loop: feed accepted events to a :class:`drift.DriftMonitor`, take
the reference from each new snapshot, check on a timer, publish every action on the
``drift`` topic, export metrics, and apply the actions the worker can apply.

Actions: ``alert`` (published, counted), ``boost_quota`` (raises the label's quota in every
partition this worker owns — opt-in, because it changes sampler state at a wall-clock
moment, which a replay after a crash cannot reproduce), ``request_snapshot`` (a fresh
snapshot now), ``retrain`` (published; the trainer listens), ``shorten_half_life``
(published as a recommendation: changing a live reservoir's half-life would break its
deterministic priorities).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import orjson

from drift.monitor import DriftMonitor, DriftReport
from snapshot_format import read_table
from streamproc.ops.metrics import WorkerMetrics
from streamproc.settings import DriftSection
from streamproc.worker.assembly import drift_config

log = logging.getLogger(__name__)


class DriftWatch:
    def __init__(
        self,
        section: DriftSection,
        features: int | list[str],
        events_topic: str,
        metrics: WorkerMetrics,
        report_dir: Path | None = None,
        report_retention: int = 20,
    ) -> None:
        self.section = section
        self.events_topic = events_topic
        self.metrics = metrics
        # the features' names (an int: f0..f<n-1>): drift messages and metrics use them
        self.features = (
            [f"f{j}" for j in range(features)] if isinstance(features, int) else list(features)
        )
        self.monitor = DriftMonitor(self.features, drift_config(section))
        self.last_check = time.monotonic()
        self.last_report: DriftReport | None = None
        # each check's report: <report_dir>/<time>.html and .json, and latest.html/.json
        self.report_dir, self.report_retention = report_dir, report_retention
        self.latest_report: str | None = None  # file name of the newest HTML report
        self.reference_version: str | None = None
        self.action_counts: dict[str, int] = {}
        self.checks = 0  # drift checks run (their reports: latest_report)
        self._last_action: dict[tuple[str, str | None, str | None], float] = {}
        self.cooldown_s = section.action_cooldown_s

    def feed(self, batch) -> None:
        if batch is None or len(batch) == 0:
            return
        primary = batch.label_codes[batch.label_offsets[:-1]]  # codes, not names
        self.monitor.update_codes(batch.label_vocab, primary, batch.ts, batch.keys,
                                  batch.features)  # fmt: skip

    def set_reference(self, snapshot_dir, manifest) -> None:
        t = read_table(snapshot_dir, manifest.version, columns=["label", "features"])
        feats = t.column("features").combine_chunks()
        x = feats.values.to_numpy(zero_copy_only=False).reshape(-1, len(self.features))
        self.monitor.set_reference(
            t.column("label").to_pylist(), x, {k: float(v) for k, v in manifest.seen.items()}
        )
        self.reference_version = manifest.version

    def due(self) -> bool:
        return time.monotonic() - self.last_check >= self.section.every_s

    def check(self, producer, processors, request_snapshot) -> DriftReport:
        self.last_check = time.monotonic()
        report = self.monitor.check()
        self.checks += 1
        self.last_report = report
        self._export(report)
        now = time.monotonic()
        for a in report.actions:
            # every action, alerts included, at most once per cooldown per (action, label,
            # feature): persistent drift neither floods the log nor retrains in a loop
            key = (a.action, a.label, a.feature)
            if now - self._last_action.get(key, -math.inf) < self.cooldown_s:
                continue
            self._last_action[key] = now
            producer.produce(
                self.section.topic,
                orjson.dumps({**a.to_dict(), "at": time.time(), "events_topic": self.events_topic}),
                key=(a.label or "*").encode(),
            )
            self.metrics.drift_actions.labels(a.action).inc()
            self.action_counts[a.action] = self.action_counts.get(a.action, 0) + 1
            if a.action == "boost_quota" and a.label is not None:
                for proc in processors:
                    proc.boost([a.label])
                log.warning(
                    "drift: label %r became scarce (share ratio %.2f); quota boosted",
                    a.label,
                    a.value,
                )
            elif a.action == "request_snapshot":
                request_snapshot()
            elif a.action == "alert":
                log.warning(
                    "drift alert: label=%s feature=%s %s=%.3g (threshold %.3g)",
                    a.label,
                    a.feature,
                    a.statistic,
                    a.value,
                    a.threshold,
                )
        if report.actions:
            producer.poll(0)
        self._write_report(report)
        return report

    def _write_report(self, report: DriftReport) -> None:
        """Write the check's HTML and JSON report (a failure is logged, never raised)."""
        if self.report_dir is None:
            return
        from drift.report import render_html, report_dict
        from snapshot_format import atomic_write

        now = time.time()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{now % 1:.3f}"[1:]
        context = {"checked at (UTC)": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now)),
                   "events topic": self.events_topic,
                   "reference": self.reference_version or "none yet"}  # fmt: skip
        alpha = self.monitor.cfg.alpha
        try:
            self.report_dir.mkdir(parents=True, exist_ok=True)
            page = render_html(report, "Stratastream drift report", alpha, context).encode()
            doc = orjson.dumps(report_dict(report, alpha, context))
            for name, data in ((f"{stamp}.html", page), (f"{stamp}.json", doc),
                               ("latest.html", page), ("latest.json", doc)):  # fmt: skip
                atomic_write(self.report_dir / name, data)
            self.latest_report = f"{stamp}.html"
            old = sorted(p for p in self.report_dir.glob("2*.html"))
            for p in old[: max(0, len(old) - self.report_retention)]:
                p.unlink(missing_ok=True)
                p.with_suffix(".json").unlink(missing_ok=True)
        except OSError as e:  # a full disk must not stop drift checks or ingestion
            log.error("drift report not written to %s: %s", self.report_dir, e)

    def _export(self, r: DriftReport) -> None:
        m = self.metrics
        m.drift_checks.inc()
        for name, ld in r.labels.items():
            if ld.insufficient:
                continue
            m.drift_score.labels(name).set(ld.score)
            for f in ld.features:
                m.drift_ks_pvalue.labels(name, f.feature).set(f.p_adjusted)
                m.drift_wasserstein.labels(name, f.feature).set(f.wasserstein)
                m.drift_psi.labels(name, f.feature).set(f.psi)
        if not r.mix.insufficient:
            m.drift_mix_js.set(r.mix.js)
            if not math.isnan(r.mix.chi2_pvalue):
                m.drift_mix_pvalue.set(r.mix.chi2_pvalue)
