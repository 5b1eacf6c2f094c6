"""Event-driven retraining: follow the ``snapshots`` topic (or watch the store), listen for
retrain triggers on the ``drift`` topic, and retrain when enough new events arrived.

Trainings run one at a time in this loop (and under the registry's lock, so two
followers never train at once); a failed training is logged with its snapshot version
and leaves the promoted model untouched.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .data import latest_version, read_manifest
from .errors import TrainerError
from .pipeline import Outcome, train_and_register
from .registry import ModelRegistry
from .train import TrainConfig

log = logging.getLogger(__name__)


@dataclass
class FollowState:
    trained_versions: list[str] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    last_seen_total: int = 0


def _seen_total(store: Path | str, version: str) -> int:
    m = read_manifest(store, version)
    return int(sum(m["seen"].values()))


class Follower:
    def __init__(
        self,
        store: Path,
        registry: ModelRegistry,
        cfg: TrainConfig,
        bootstrap: str | None = None,
        snapshots_topic: str = "snapshots",
        drift_topic: str = "drift",
        min_new_events: int = 0,
        margin: float = 0.0,
        group_id: str = "stratastream-trainer",
        test_set: Path | str | None = None,
        promote_metric: str = "macro_f1",
        confidence: float = 0.95,
        kafka_config: dict | None = None,
        rollout: str = "direct",
        rollout_fraction: float = 0.1,
    ) -> None:
        self.rollout, self.rollout_fraction = rollout, rollout_fraction
        self.test_set = test_set  # an external natural-mix test set that promotion uses
        self.promote_metric, self.confidence = promote_metric, confidence
        self.kafka_config = dict(kafka_config or {})  # librdkafka settings (security)
        self.store = store if "://" in str(store) else Path(store)
        self.registry, self.cfg = registry, cfg
        self.bootstrap = bootstrap
        self.topics = [snapshots_topic, drift_topic]
        self.drift_topic = drift_topic
        self.min_new_events, self.margin, self.group_id = min_new_events, margin, group_id
        self.state = FollowState()
        self.metrics = None  # a TrainerMetrics, when serving /metrics
        self.stop_event = threading.Event()

    def handle(self, version: str, trigger: str) -> Outcome | None:
        if version in self.state.trained_versions and trigger != "drift":
            return None
        try:
            total = _seen_total(self.store, version)
        except (OSError, ValueError, KeyError, TrainerError) as e:
            self._fail(version, f"manifest unreadable: {e}")
            return None
        if trigger == "snapshot" and total - self.state.last_seen_total < self.min_new_events:
            log.info(
                "snapshot %s: %d new events < min_new_events=%d, not retraining",
                version,
                total - self.state.last_seen_total,
                self.min_new_events,
            )
            return None
        t = time.perf_counter()
        try:
            out = train_and_register(
                self.store,
                self.registry,
                self.cfg,
                version,
                self.margin,
                trigger=trigger,
                progress=False,
                test_set=self.test_set,
                promote_metric=self.promote_metric,
                confidence=self.confidence,
                rollout=self.rollout,
                rollout_fraction=self.rollout_fraction,
            )
        except TrainerError as e:
            self._fail(version, str(e))
            return None
        finally:
            if self.metrics is not None:
                self.metrics.duration.observe(time.perf_counter() - t)
        if self.metrics is not None:
            self.metrics.runs.labels("promoted" if out.promoted else "kept").inc()
        self.state.trained_versions.append(version)
        self.state.outcomes.append(out)
        self.state.last_seen_total = total
        return out

    def _fail(self, version: str, why: str) -> None:
        log.error("training on snapshot %s failed; promoted model unchanged: %s", version, why)
        if self.metrics is not None:
            self.metrics.runs.labels("failed").inc()
        self.state.failures.append(f"{version}: {why}")

    def run(self, poll_s: float = 1.0) -> None:
        if self.bootstrap:
            self._run_kafka()
        else:
            self._run_watch(poll_s)

    def _run_watch(self, poll_s: float) -> None:
        while not self.stop_event.is_set():
            try:
                v = latest_version(self.store)
            except TrainerError:
                v = None
            if v is not None:
                self.handle(v, "snapshot")
            self.stop_event.wait(poll_s)

    def _run_kafka(self) -> None:
        from confluent_kafka import Consumer

        c = Consumer(
            {
                **self.kafka_config,
                "bootstrap.servers": self.bootstrap,
                "group.id": self.group_id,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": True,
                "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 500,
                "fetch.queue.backoff.ms": 10,
            }
        )
        c.subscribe(self.topics)
        try:
            while not self.stop_event.is_set():
                msgs = [m for m in c.consume(100, 0.5) if m.error() is None]
                if not msgs:
                    continue
                retrain = any(
                    m.topic() == self.drift_topic and _is_retrain(m.value()) for m in msgs
                )
                versions = [_version_of(m.value()) for m in msgs if m.topic() != self.drift_topic]
                versions = [v for v in versions if v]
                if versions:  # only the newest snapshot of a burst is worth training
                    self.handle(versions[-1], "snapshot")
                if retrain:
                    try:
                        self.handle(latest_version(self.store), "drift")
                    except TrainerError as e:
                        self._fail("latest", str(e))
        finally:
            c.close()


def _version_of(value: bytes | None) -> str | None:
    try:
        return json.loads(value)["version"]
    except (TypeError, ValueError, KeyError):
        log.warning("ignoring a malformed snapshots-topic message: %r", (value or b"")[:200])
        return None


def _is_retrain(value: bytes | None) -> bool:
    try:
        return json.loads(value).get("action") == "retrain"
    except (TypeError, ValueError, AttributeError):
        log.warning("ignoring a malformed drift-topic message: %r", (value or b"")[:200])
        return False
