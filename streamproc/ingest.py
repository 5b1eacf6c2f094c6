"""The worker's hot path: batch consume from Kafka (confluent-kafka), decode, validate,
sample, checkpoint, export shards. Runs in one thread; no Faust event per message.

Per consumed batch: messages are grouped by partition and handed to that partition's
:class:`PartitionProcessor`; rejects go to the dead-letter topic with headers
``reason``, ``source_topic``, ``source_partition``, ``source_offset``. When a partition's
checkpoint is due: (1) flush the producer (DLQ records durable), (2) write the RocksDB
checkpoint atomically, (3) commit the next offset to Kafka.

On assignment a partition resumes at the offset of its own checkpoint (never at a broker
end offset); on revocation it is checkpointed and closed, so another worker takes over.
"""

from __future__ import annotations

import gc
import logging
import shutil
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from .driftwatch import DriftWatch
from .events import Reject
from .health import ProgressTracker
from .messages import by_partition
from .metrics import WorkerMetrics, reason_category
from .processor import PartitionProcessor
from .settings import Settings
from .snapshot import (
    Shard,
    build_snapshot,
    read_shard,
    shard_changes,
    shard_records,
    write_shard,
)
from .state import Checkpoint, RocksPartitionStore
from .warmup import warm_up

log = logging.getLogger(__name__)

_IDLE_S = 0.1  # no message for this long: checkpoint what was processed
_BUSY_TIMEOUT_S = 0.01  # consume timeout while messages flow


@dataclass
class IngestStats:
    consumed: int = 0
    rejected: int = 0
    checkpoints: int = 0
    checkpoint_seconds: float = 0.0
    shards: int = 0  # partition shards exported to the snapshot store
    snapshots: list[str] = field(default_factory=list)
    dlq_by_reason: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def consumer_config(bootstrap: str, group_id: str) -> dict:
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        # librdkafka's default (1000 ms) stalls a busy consumer on the embedded broker
        "fetch.queue.backoff.ms": 10,
        "enable.partition.eof": False,
    }


class IngestLoop:
    def __init__(
        self,
        settings: Settings,
        bootstrap: str,
        batch_size: int = 5_000,
        chunk_bytes: int = 4 << 20,
        own_snapshot_timer: bool = True,
    ) -> None:
        self.settings = settings
        self.own_snapshot_timer = own_snapshot_timer
        self.bootstrap = bootstrap
        self.batch_size = batch_size
        self.chunk_bytes = chunk_bytes
        self.processors: dict[int, PartitionProcessor] = {}
        self.stats = IngestStats()
        self.stop_event = threading.Event()
        self.snapshot_requested = threading.Event()
        self._limits = settings.limits()
        self._sampler = settings.sampler_config()
        self._scrub = settings.scrubber()
        self._consumer = None
        self._producer = None
        self.metrics = WorkerMetrics(settings.metrics_max_labels)
        self.drift = DriftWatch(settings, self.metrics) if settings.drift_enabled else None
        self.health = ProgressTracker(settings.stall_timeout_s)
        self.held_items: set[str] = set()  # item ids below the annotation-agreement bar
        self.summary: dict = {}  # per-label totals, replaced (not mutated) by the ingest thread
        self._summary_at = 0.0

    # ------------------------------------------------------------ partitions
    def _store_path(self, p: int) -> Path:
        return self.settings.state_dir / f"{self.settings.events_topic}-{p:05d}"

    def _on_assign(self, consumer, partitions) -> None:
        from confluent_kafka import TopicPartition

        out = []
        for tp in partitions:
            proc = self._open_partition(tp.partition)
            self.processors[tp.partition] = proc
            out.append(TopicPartition(tp.topic, tp.partition, proc.next_offset))
            log.info("assigned partition %d, resuming at offset %d", tp.partition, proc.next_offset)
        consumer.assign(out)
        self.health.assigned_once = True

    def _open_partition(self, p: int) -> PartitionProcessor:
        """Local RocksDB state, or the partition's shard from the shared snapshot store when
        that is newer (the partition last ran on another machine)."""
        store = RocksPartitionStore(self._store_path(p), self.settings.state_sync)
        ckpt = store.load_checkpoint()
        shard = read_shard(self.settings.snapshot_dir / "shards", p)
        if shard is not None and shard.next_offset > (ckpt.next_offset if ckpt else 0):
            log.info("partition %d: restoring from shard at offset %d", p, shard.next_offset)
            store.close()
            shutil.rmtree(self._store_path(p))
            store = RocksPartitionStore(self._store_path(p), self.settings.state_sync)
            store.write_checkpoint(
                Checkpoint(shard.reservoirs, shard.next_offset, dict(shard.counters)),
                shard_changes(shard),
            )
        return PartitionProcessor(
            self.settings.events_topic, p, store, self._sampler, self._limits, self._scrub
        )

    def _on_revoke(self, consumer, partitions) -> None:
        for tp in partitions:
            proc = self.processors.pop(tp.partition, None)
            if proc is not None:
                self._checkpoint([proc])
                proc.store.close()
                self.health.forget(tp.partition)
                log.info("revoked partition %d at offset %d", tp.partition, proc.next_offset)

    # ------------------------------------------------------------ checkpoint
    def _checkpoint(self, procs: list[PartitionProcessor]) -> None:
        from confluent_kafka import TopicPartition

        if not procs:
            return
        t = time.perf_counter()
        remaining = self._producer.flush(30)  # (1) DLQ records are durable
        if remaining:
            raise RuntimeError(f"{remaining} dead-letter records not delivered; not committing")
        tps = []
        for proc in procs:
            proc.checkpoint()  # (2) atomic RocksDB write batch
            tps.append(TopicPartition(self.settings.events_topic, proc.partition, proc.next_offset))
        try:
            self._consumer.commit(offsets=tps, asynchronous=False)  # (3)
        except Exception as e:  # the checkpoint is the truth; a failed commit only costs a replay
            log.warning("offset commit failed (state is checkpointed, replay is safe): %s", e)
            committed = False
        else:
            committed = True
        self.stats.checkpoints += len(procs)
        dt = time.perf_counter() - t
        self.stats.checkpoint_seconds += dt
        self.metrics.checkpoint_seconds.observe(dt)
        if committed:
            now = time.time()
            for proc, tp in zip(procs, tps, strict=True):
                self.health.committed(proc.partition, now)
                self.metrics.committed_at.labels(str(proc.partition)).set(now)
                proc.committed_offset = tp.offset

    def _dead_letter(self, rejects: list[Reject]) -> None:
        topic = self.settings.events_topic
        for r in rejects:
            self._producer.produce(
                self.settings.dlq_topic,
                r.value,
                key=str(r.partition).encode(),
                headers=[
                    ("reason", r.reason.encode()),
                    ("source_topic", topic.encode()),
                    ("source_partition", str(r.partition).encode()),
                    ("source_offset", str(r.offset).encode()),
                ],
            )
            category = reason_category(r.reason)
            self.stats.dlq_by_reason[category] += 1
            self.metrics.dead_lettered.labels(category).inc()
            log.debug("dead-lettered %s[%d]@%d: %s", topic, r.partition, r.offset, r.reason)
        self._producer.poll(0)

    # ------------------------------------------------------------ snapshots
    def snapshot_now(self) -> str | None:
        """Checkpoint owned partitions, export their shards, merge all shards."""
        procs = list(self.processors.values())
        self._checkpoint([p for p in procs if p.since_checkpoint])
        shard_dir = self.settings.snapshot_dir / "shards"
        for p in procs:
            write_shard(
                shard_dir,
                Shard(
                    p.partition,
                    p.next_offset,
                    p.counters,
                    p.reservoirs.to_bytes(),
                    shard_records(p.store, p.reservoirs),
                ),
            )
        self.stats.shards += len(procs)
        manifest = build_snapshot(
            shard_dir,
            self.settings.snapshot_dir,
            self.settings.snapshot_retention,
            self.settings.partitions,
            frozenset(self.held_items),
        )
        if manifest is None:
            return None
        import orjson

        path = str(self.settings.snapshot_dir / manifest.version)
        if self.settings.snapshot_url:
            from .remote import RemoteStoreError, publish

            try:
                publish(
                    self.settings.snapshot_url,
                    self.settings.snapshot_dir,
                    manifest.version,
                    self.settings.snapshot_retention,
                )
                path = f"{self.settings.snapshot_url.rstrip('/')}/{manifest.version}"
            except RemoteStoreError as e:  # the local snapshot stands; the next one retries
                log.error("snapshot %s kept locally only: %s", manifest.version, e)
                self.metrics.remote_publish_failures.inc()

        self._producer.produce(
            self.settings.snapshots_topic,
            orjson.dumps(
                {
                    "version": manifest.version,
                    "parent": manifest.parent,
                    "rows": manifest.rows,
                    "created_at": manifest.created_at,
                    "source_offsets": manifest.source_offsets,
                    "path": path,
                }
            ),
            key=manifest.version.encode(),
        )
        if self.settings.hitl_token and self.settings.hitl_spot_check_fraction > 0:
            self._publish_spot_check(manifest.version)
        self._producer.flush(30)
        self.stats.snapshots.append(manifest.version)
        if self.drift is not None:
            self.drift.set_reference(self.settings.snapshot_dir, manifest)
        data = self.settings.snapshot_dir / manifest.version / "data.parquet"
        self.metrics.set_snapshot(
            manifest.version,
            manifest.rows,
            data.stat().st_size,
            manifest.created_at,
            manifest.balance_ratio,
            manifest.stability_vs_parent,
        )
        log.info(
            "snapshot %s: %d rows, balance %.2f",
            manifest.version,
            manifest.rows,
            manifest.balance_ratio,
        )
        return manifest.version

    def _publish_spot_check(self, version: str) -> None:
        """Publish a stratified review sample of the new snapshot on the spot-check topic."""
        import orjson
        import pyarrow.parquet as pq

        from .snapshot import spot_check_rows

        t = pq.read_table(
            self.settings.snapshot_dir / version / "data.parquet",
            columns=["label", "id", "features", "payload"],
        ).to_pylist()
        rows = spot_check_rows(
            [r["label"] for r in t], [r["id"] for r in t], self.settings.hitl_spot_check_fraction
        )
        for i in rows:
            self._producer.produce(
                self.settings.spot_check_topic,
                orjson.dumps({"snapshot": version, **t[i]}),
                key=t[i]["id"].encode(),
            )
        self.metrics.spot_checks.inc(len(rows))

    # ------------------------------------------------------------ loop
    def run(self) -> None:
        from confluent_kafka import Consumer, Producer

        s = self.settings
        log.info("hot path warmed up in %.2f s (compiled kernels loaded)", warm_up(s))
        self._producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5})
        self._consumer = Consumer(consumer_config(self.bootstrap, s.group_id))
        self._consumer.subscribe(
            [s.events_topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        last_snapshot = time.monotonic()
        # The hot path allocates many short-lived objects per batch; freezing what startup
        # allocated and collecting less often keeps the GC off the critical path.
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        self.health.mark_running(True)
        last_message, timeout = time.monotonic(), _IDLE_S
        try:
            while not self.stop_event.is_set():
                # librdkafka waits the whole timeout for a batch to fill: short while messages
                # flow (a partial batch is not held back), up to the idle mark otherwise
                msgs = self._consumer.consume(self.batch_size, timeout)
                self._handle(msgs)
                now = time.monotonic()
                if msgs:
                    last_message, timeout = now, _BUSY_TIMEOUT_S
                elif now - last_message >= _IDLE_S:  # idle: make what was processed durable
                    self._checkpoint([p for p in self.processors.values() if p.since_checkpoint])
                    timeout = _IDLE_S
                else:  # wake up when the idle mark is reached
                    timeout = max(_BUSY_TIMEOUT_S, _IDLE_S - (now - last_message))
                if time.monotonic() - self._summary_at > 0.5:
                    self._publish_summary()
                due = [
                    p
                    for p in self.processors.values()
                    if p.due(s.checkpoint_every_events, s.checkpoint_every_s, s.max_pending_bytes)
                ]
                self._checkpoint(due)
                if self.drift is not None and self.drift.due():
                    self.drift.check(
                        self._producer, list(self.processors.values()), self.snapshot_requested.set
                    )
                if self.snapshot_requested.is_set() or (
                    self.own_snapshot_timer
                    and time.monotonic() - last_snapshot >= s.snapshot_every_s
                ):
                    self.snapshot_requested.clear()
                    last_snapshot = time.monotonic()
                    self.snapshot_now()
            self._checkpoint(list(self.processors.values()))
        finally:
            self.health.mark_running(False)
            self._consumer.close()  # revokes -> final checkpoints
            self._producer.flush(30)
            for p in self.processors.values():
                p.store.close()
            self.processors.clear()

    def _process(self, part: int, raw, now: float) -> bool:
        """One partition's messages; False when the partition is no longer ours."""
        proc = self.processors.get(part)
        if proc is None:  # revoked meanwhile; the new owner replays from its checkpoint
            return False
        t = time.perf_counter()
        accepted = proc.counters["accepted"]
        rejects = proc.process(raw)
        self.metrics.batch_seconds.observe(time.perf_counter() - t)
        label, n = str(part), len(raw)
        self.metrics.consumed.labels(label).inc(n)
        self.metrics.accepted.labels(label).inc(proc.counters["accepted"] - accepted)
        if proc.last_batch is not None and proc.last_batch.reference_decoded:
            self.metrics.reference_decoded.labels(label).inc(proc.last_batch.reference_decoded)
        last_ts = raw.timestamp(n - 1)
        if last_ts is not None:
            self.metrics.latency.observe(max(0.0, now - last_ts))
        if proc.since_checkpoint:
            self.health.processed(part, now)
        if self.drift is not None:
            self.drift.feed(proc.last_batch)
        self.stats.consumed += n
        if rejects:
            self.stats.rejected += len(rejects)
            self._dead_letter(rejects)
        s = self.settings
        if proc.due(
            s.checkpoint_every_events, s.checkpoint_every_s, s.max_pending_bytes
        ):  # bounds what a
            self._checkpoint([proc])  # partition holds in memory within one large batch
        return True

    def _publish_summary(self) -> None:
        """Per-label totals and lag, at most twice a second (not per batch)."""
        from confluent_kafka import TopicPartition

        seen: dict[str, int] = defaultdict(int)
        retained: dict[str, int] = defaultdict(int)
        capacity: dict[str, int] = defaultdict(int)
        for p in self.processors.values():
            r = p.reservoirs
            for src, dst in (
                (r.seen_counts(), seen),
                (r.retained_counts(), retained),
                (r.capacities(), capacity),
            ):
                for k, v in src.items():
                    dst[k] += v
            # the high watermark cached from fetch responses (not the broker's end offsets)
            _, high = self._consumer.get_watermark_offsets(
                TopicPartition(self.settings.events_topic, p.partition), cached=True
            )
            if high is not None and high >= 0:
                lag = max(0, high - p.next_offset)
                self.metrics.lag.labels(str(p.partition)).set(lag)
                self.health.set_lag(p.partition, lag)
        self.metrics.set_labels(seen, retained, capacity)
        self.summary = {"seen": dict(seen), "retained_per_partition_sum": dict(retained)}
        self._summary_at = time.monotonic()

    def _handle(self, msgs) -> None:
        if msgs and any(m.error() is not None for m in msgs):
            for m in msgs:
                if m.error() is not None:
                    log.warning("consumer error: %s", m.error())
            msgs = [m for m in msgs if m.error() is None]
        now = time.time()
        for part, raw in by_partition(msgs).items():
            for chunk in raw.chunks(self.chunk_bytes):
                if not self._process(part, chunk, now):
                    break
        if msgs:
            self.health.consumed(now)
            self.metrics.mark_progress()
