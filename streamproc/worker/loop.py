"""The worker's hot path: batch consume from Kafka (confluent-kafka) and dispatch each
partition's messages to its :class:`PartitionProcessor`. Runs in one thread; no Faust
event per message.

The loop only consumes and dispatches. The components it drives each own one job:
:class:`~streamproc.worker.partitions.PartitionSet` (assign, restore, revoke),
:class:`~streamproc.worker.checkpointer.Checkpointer` (when to checkpoint, and the
flush -> write -> commit order), :class:`~streamproc.worker.deadletters.DeadLetterSink`,
:class:`~streamproc.worker.publisher.SnapshotPublisher` and the drift watch.

The Kafka client is created through ``consumer_factory`` / ``producer_factory``, so the
loop runs in-process against fakes in the tests.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from sampler import EVAL_LABEL, group_of
from snapshot_format import clean_leftovers
from streamproc.decode.messages import by_partition
from streamproc.ops.health import ProgressTracker
from streamproc.ops.metrics import WorkerMetrics
from streamproc.settings import Settings
from streamproc.snapshot.shards import ShardStore
from streamproc.state.processor import PartitionProcessor, split_counters
from streamproc.worker.assembly import limits, sampler_config, scrubber
from streamproc.worker.checkpointer import Checkpointer
from streamproc.worker.deadletters import DeadLetterSink
from streamproc.worker.driftwatch import DriftWatch
from streamproc.worker.partitions import PartitionSet
from streamproc.worker.publisher import SnapshotPublisher
from streamproc.worker.warmup import warm_up

log = logging.getLogger(__name__)

DRIFT_REPORTS_DIR = "drift-reports"  # inside the snapshot store

_IDLE_S = 0.1  # no message for this long: checkpoint what was processed
_BUSY_TIMEOUT_S = 0.01  # consume timeout while messages flow


@dataclass
class IngestStats:
    consumed: int = 0
    rejected: int = 0


def consumer_config(bootstrap: str, group_id: str, max_message_bytes: int = 64 << 20) -> dict:
    """librdkafka settings of the worker's consumer. A record larger than
    ``receive.message.max.bytes`` can never be fetched (the partition would stall), so
    that limit is set well above ``max_message_bytes``: such records arrive and become
    dead letters."""
    return {
        # librdkafka's default is 100 MB, and it must exceed fetch.max.bytes (52 MB)
        "receive.message.max.bytes": min(2**31 - 1, max(100_000_000, 2 * max_message_bytes)),
        "bootstrap.servers": bootstrap,
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        # librdkafka's default (1000 ms) stalls a busy consumer on the embedded broker
        "fetch.queue.backoff.ms": 10,
        "enable.partition.eof": False,
        # a subscribed topic that is missing (deleted, or not yet re-created after a
        # broker restore) is looked for again this often; librdkafka's default is 5 min
        "topic.metadata.refresh.interval.ms": 10_000,
    }


def _kafka_consumer(bootstrap: str, group_id: str, max_message_bytes: int, extra: dict):
    from confluent_kafka import Consumer

    return Consumer({**extra, **consumer_config(bootstrap, group_id, max_message_bytes)})


def _kafka_producer(bootstrap: str, extra: dict):
    from confluent_kafka import Producer

    # message.timeout.ms 0: a queued record (a dead letter) never expires, however long
    # the broker is away; checkpoints wait for it (see deadletters)
    return Producer(
        {"linger.ms": 5, "message.timeout.ms": 0, **extra, "bootstrap.servers": bootstrap}
    )


class IngestLoop:
    def __init__(
        self,
        settings: Settings,
        bootstrap: str,
        batch_size: int = 5_000,
        chunk_bytes: int = 4 << 20,
        own_snapshot_timer: bool = True,
        consumer_factory: Callable[[], object] | None = None,
        producer_factory: Callable[[], object] | None = None,
        warm: bool = True,
    ) -> None:
        self.settings = settings
        self.own_snapshot_timer = own_snapshot_timer
        self.bootstrap = bootstrap
        self.batch_size = batch_size
        self.chunk_bytes = chunk_bytes
        self.warm = warm
        # what the worker is doing, for /status: warming_up (numba kernels compiled, or
        # loaded from numba's on-disk cache), connecting, running
        self.phase = "starting"
        self._unowned_since: float | None = time.monotonic()  # holding no partition since
        self._idle_check_at = 0.0
        self._consumer_factory = consumer_factory or (
            lambda: _kafka_consumer(
                bootstrap, settings.group_id, settings.max_message_bytes,
                settings.kafka_config("consumer"),
            )
        )  # fmt: skip
        self._producer_factory = producer_factory or (
            lambda: _kafka_producer(bootstrap, settings.kafka_config("producer"))
        )
        self.stats = IngestStats()
        self.stop_event = threading.Event()
        self.snapshot_requested = threading.Event()
        sampler, lim = sampler_config(settings.sampler), limits(settings.decode)
        scrub = scrubber(settings.decode)
        topic = settings.events_topic
        self.partitions = PartitionSet(
            topic,
            settings.state_dir,
            ShardStore.for_snapshots(settings.snapshot_dir, settings.snapshot_url),
            lambda p, store: PartitionProcessor(topic, p, store, sampler, lim, scrub),
            settings.state_sync,
            on_quarantine=lambda p, where, why: self.metrics.state_quarantined.labels(str(p)).inc(),
        )
        self.metrics = WorkerMetrics(settings.metrics_max_labels)
        self.drift = (
            DriftWatch(
                settings.drift,
                settings.features,
                topic,
                self.metrics,
                report_dir=settings.snapshot_dir / DRIFT_REPORTS_DIR,
            )  # fmt: skip
            if settings.drift_enabled
            else None
        )
        self.health = ProgressTracker(settings.stall_timeout_s)
        # item ids below the annotation-agreement bar, as every worker sees them (replaced
        # whole by the web side, read here: a frozenset is never changed under a reader)
        self.held_items: frozenset[str] = frozenset()
        self.summary: dict = {}  # per-label totals, replaced (not mutated) by the ingest thread
        self._summary_at = 0.0
        self._log_checks: dict[int, float] = {}  # partition -> when its first message is due
        self._build: threading.Thread | None = None  # the snapshot being built, if any
        self._writes_paused = False  # consumption paused while state writes fail
        self._rewind_paused: set[int] = set()  # partitions paused by on_log_rewind=fail
        self.snapshot_seconds = 0.0  # the last snapshot's export + build time
        self._published_manifests: queue.SimpleQueue = queue.SimpleQueue()
        self._consumer = None
        self._producer = None
        self.checkpointer: Checkpointer | None = None
        self.dead_letters: DeadLetterSink | None = None
        self.publisher: SnapshotPublisher | None = None

    @property
    def processors(self) -> dict[int, PartitionProcessor]:
        return self.partitions.processors

    # ------------------------------------------------------------ wiring
    def _connect(self) -> None:
        s = self.settings
        self._producer = self._producer_factory()
        self._consumer = self._consumer_factory()
        self.dead_letters = DeadLetterSink(
            self._producer,
            s.dlq_topic,
            s.events_topic,
            self.metrics.dead_lettered,
            scrubber(s.decode),
        )
        self.checkpointer = Checkpointer(
            s.checkpoint,
            s.events_topic,
            self._producer,
            self._consumer,
            on_committed=self._committed,
            observe_seconds=self.metrics.checkpoint_seconds.observe,
            on_failure=lambda stage: self.metrics.checkpoint_failures.labels(stage).inc(),
            dead_letters=self.dead_letters,
        )
        spot = (s.spot_check_topic, s.hitl_spot_check_fraction) if s.hitl_token else None
        self.publisher = SnapshotPublisher(
            s.snapshot,
            s.snapshots_topic,
            self._producer,
            self.metrics,
            spot,
            on_published=self._published,
        )

    def _committed(self, partition: int, offset: int) -> None:
        now = time.time()
        self.health.committed(partition, now)
        self.metrics.committed_at.labels(str(partition)).set(now)
        proc = self.partitions.get(partition)
        if proc is not None:
            proc.committed_offset = offset

    def _published(self, manifest) -> None:
        """Called by the publisher (possibly from the build thread): the ingest thread
        applies it (the drift reference belongs to it)."""
        self._published_manifests.put(manifest)

    def _apply_published(self, manifest) -> None:
        if self.drift is not None:
            self.drift.set_reference(self.settings.snapshot_dir, manifest)

    # ------------------------------------------------------------ partitions
    def _on_assign(self, consumer, partitions) -> None:
        from confluent_kafka import TopicPartition

        out = []
        fresh = []
        for tp in partitions:
            proc = self.partitions.open(tp.partition)
            if proc.next_offset == 0:
                fresh.append(proc)
            # one message early: the first message must be the last one processed
            out.append(TopicPartition(tp.topic, tp.partition, proc.resume_offset()))
            if not proc.log_checked:
                self._log_checks[tp.partition] = time.monotonic() + self.settings.log_check_s
            log.info("assigned partition %d, resuming at offset %d", tp.partition, proc.next_offset)
        consumer.assign(out)
        self.health.assigned_once = True
        self._unowned_since = None if out else time.monotonic()
        self.health.set_problem("assignment", None)
        if fresh:
            self._check_missing_state(consumer, fresh)

    def _check_missing_state(self, consumer, procs: list) -> None:
        """A partition with no state (no checkpoint, no shard) whose group has committed
        an offset had state that is gone (a deleted or wiped store, an empty MANIFEST or
        WAL). While the log still starts at 0 the rebuild from offset 0 is exact: say so.
        When it does not, the events before its start are lost: never silently."""
        from confluent_kafka import TopicPartition

        topic = self.settings.events_topic
        try:
            committed = consumer.committed(
                [TopicPartition(topic, p.partition) for p in procs], timeout=10
            )
        except Exception as e:  # noqa: BLE001 - no answer is no proof either way
            log.warning("could not read committed offsets to check for lost state: %s", e)
            return
        for proc, tp in zip(procs, committed, strict=True):
            if tp.offset is None or tp.offset <= 0:
                continue
            try:
                low, _ = consumer.get_watermark_offsets(tp, timeout=10)
            except Exception as e:  # noqa: BLE001
                log.warning("partition %d: log start unknown (%s)", proc.partition, e)
                continue
            self.metrics.state_rebuilt.labels(str(proc.partition)).inc()
            if low <= 0:
                log.warning(
                    "partition %d: no state here, but the group committed offset %d: the "
                    "state was lost (a wiped or damaged store); rebuilding it exactly from "
                    "the log start", proc.partition, tp.offset,
                )  # fmt: skip
                continue
            proc.log_checked = True
            self._log_rewound(
                proc,
                f"no state here, but the group committed offset {tp.offset} and the log "
                f"now starts at {low}: the state was lost and the events before {low} "
                "cannot be replayed",
                None,
            )

    def _on_revoke(self, consumer, partitions) -> None:
        for tp in partitions:
            proc = self.partitions.get(tp.partition)
            if proc is None:
                continue
            self.checkpointer.revoke(proc)  # checkpoint before release
            self.partitions.release(tp.partition)
            self.health.forget(tp.partition)
            log.info("revoked partition %d at offset %d", tp.partition, proc.next_offset)
        if not len(self.partitions):
            self._unowned_since = time.monotonic()

    def _subscribe(self) -> None:
        self._consumer.subscribe(
            [self.settings.events_topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )

    def _check_idle_assignment(self) -> None:
        """A worker that has held no partition for longer than the stall bound checks
        why: a missing events topic, or partitions that no member of the group owns
        (the group is stuck, e.g. after a broker restore), is unhealthy with the reason;
        partitions all owned by other members (a standby worker) are fine. A broker that
        does not report the group's members (the embedded one) cannot show the latter:
        the worker then says so and counts as unhealthy, the safe answer."""
        from confluent_kafka.admin import AdminClient

        s, since = self.settings, self._unowned_since
        now = time.monotonic()
        if since is None or now - since < s.stall_timeout_s or now < self._idle_check_at:
            return
        self._idle_check_at = now + 10.0
        idle = f"holding no partition for {now - since:.0f}s"
        try:
            md = self._consumer.list_topics(s.events_topic, timeout=5)
            topic = md.topics.get(s.events_topic)
            if topic is None or topic.error is not None or not topic.partitions:
                self.health.set_problem(
                    "assignment", f"{idle}: topic {s.events_topic!r} does not exist"
                )
                return
            n = len(topic.partitions)
            admin = AdminClient({**s.kafka_config(), "bootstrap.servers": self.bootstrap})
            group = admin.describe_consumer_groups([s.group_id], request_timeout=5)
            members = group[s.group_id].result(timeout=10).members
            owned = {tp.partition for m in members for tp in m.assignment.topic_partitions
                     if tp.topic == s.events_topic}  # fmt: skip
        except Exception as e:  # noqa: BLE001 - the broker may be down: say what is known
            self.health.set_problem("assignment", f"{idle}; the group could not be checked: {e}")
            return
        if len(owned) >= n:
            self.health.set_problem("assignment", None)  # standby: others own them all
            return
        self.health.set_problem(
            "assignment",
            f"{idle} while {n - len(owned)} of {n} partitions of {s.events_topic!r} have "
            f"no owner in group {s.group_id!r} (as the broker reports its members); "
            "restart the worker if this lasts",
        )

    # ------------------------------------------------------------ snapshots
    def snapshot_now(self) -> str | None:
        """Checkpoint owned partitions, export their shards, merge all shards."""
        procs = self.partitions.values()
        if not self.checkpointer.all(procs):
            log.error("snapshot skipped: the owned partitions could not be checkpointed")
            return None
        return self.publisher.publish(procs, frozenset(self.held_items))

    def _snapshot_safely(self) -> None:
        """Start a snapshot beside ingestion: the ingest thread checkpoints and exports
        the shards (what needs the partitions' state), a background thread writes them to
        the shard store, merges and publishes (what touches no partition state). One at a
        time: a tick while the previous build runs is skipped. A snapshot that fails (a
        damaged store, an unreachable remote store, a defect) is logged and counted; it
        never stops ingestion, and the next one tries again."""
        if self._build is not None and self._build.is_alive():
            self.metrics.snapshots_skipped.inc()
            return
        t = time.perf_counter()
        try:
            procs = self.partitions.values()
            if not self.checkpointer.all(procs):
                log.error("snapshot skipped: the owned partitions could not be checkpointed")
                return
            shards = self.publisher.export(procs)
        except Exception:  # noqa: BLE001 - the loop must go on
            self.metrics.snapshot_failures.inc()
            log.exception("snapshot failed; ingestion continues, the next snapshot retries")
            return
        export_s = time.perf_counter() - t
        self.metrics.snapshot_duration.labels("export").observe(export_s)
        held = frozenset(self.held_items)
        report = self.drift_report_path()

        def build() -> None:
            b = time.perf_counter()
            try:
                self.publisher.build(held, report, shards)
            except Exception:  # noqa: BLE001 - logged and counted; the next one retries
                self.metrics.snapshot_failures.inc()
                log.exception("snapshot build failed; ingestion continues, the next retries")
            finally:
                build_s = time.perf_counter() - b
                self.metrics.snapshot_duration.labels("build").observe(build_s)
                self.snapshot_seconds = export_s + build_s

        self._build = threading.Thread(target=build, name="snapshot-build", daemon=True)
        self._build.start()

    def drift_report_path(self) -> str | None:
        """The newest drift report, relative to the snapshot store (for manifests)."""
        if self.drift is None or self.drift.latest_report is None:
            return None
        return f"{DRIFT_REPORTS_DIR}/{self.drift.latest_report}"

    def _snapshot_interval(self) -> float:
        """The snapshot timer, stretched so a snapshot takes at most ``snapshot_max_share``
        of the time between two."""
        s = self.settings
        return max(s.snapshot_every_s, self.snapshot_seconds / s.snapshot_max_share)

    def _join_build(self, timeout: float = 120.0) -> None:
        if self._build is not None:
            self._build.join(timeout)

    def _drift_check(self) -> None:
        try:
            self.drift.check(self._producer, self.partitions.values(), self.snapshot_requested.set)
        except Exception:  # noqa: BLE001 - drift is advisory: never stop ingestion for it
            log.exception("drift check failed; ingestion continues")

    # ------------------------------------------------------------ loop
    def run(self) -> None:
        s = self.settings
        # what killed writers left (the shard directory too, when the shards are local)
        for d in {s.snapshot_dir, self.partitions.shards.path or s.snapshot_dir}:
            if d.is_dir() and (n := clean_leftovers(d)):
                log.info("removed %d leftover temporary file(s) from %s", n, d)
        if self.warm:
            self.phase = "warming_up"
            log.info(
                "warming up the hot path: numba kernels are compiled on the first run on a "
                "machine (about a minute) and loaded from numba's cache after"
            )
            seconds = warm_up(s.decode, s.sampler)
            log.info("hot path warmed up in %.2f s (numba kernels compiled or loaded)", seconds)
        self.phase = "connecting"
        self._connect()
        self._subscribe()
        last_snapshot = time.monotonic()
        # The hot path allocates many short-lived objects per batch; freezing what startup
        # allocated and collecting less often keeps the GC off the critical path.
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        self.health.mark_running(True)
        self.phase = "running"
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
                    self.checkpointer.idle(self.partitions.values())
                    timeout = _IDLE_S
                else:  # wake up when the idle mark is reached
                    timeout = max(_BUSY_TIMEOUT_S, _IDLE_S - (now - last_message))
                if time.monotonic() - self._summary_at > 0.5:
                    self._publish_summary()
                if self._log_checks:
                    self._overdue_log_checks()
                self.checkpointer.maybe(self.partitions.values())
                self._hold_while_writes_fail()
                if not len(self.partitions):
                    self._check_idle_assignment()
                if self.drift is not None and self.drift.due():
                    self._drift_check()
                since = time.monotonic() - last_snapshot
                while not self._published_manifests.empty():  # built beside: applied here
                    self._apply_published(self._published_manifests.get())
                if (self.snapshot_requested.is_set() and since >= s.snapshot_min_interval_s) or (
                    self.own_snapshot_timer and since >= self._snapshot_interval()
                ):
                    self.snapshot_requested.clear()
                    last_snapshot = time.monotonic()
                    self._snapshot_safely()
            self.checkpointer.all(self.partitions.values())
        finally:
            self._join_build()
            self.health.mark_running(False)
            self._consumer.close()  # revokes -> final checkpoints
            self._producer.flush(30)
            self.partitions.close_all()

    def _process(self, part: int, raw, now: float) -> bool:
        """One partition's messages; False when the partition is no longer ours."""
        proc = self.partitions.get(part)
        if proc is None:  # revoked meanwhile; the new owner replays from its checkpoint
            return False
        if not proc.log_checked:
            problem = proc.check_log(raw)
            if problem is not None:
                return self._log_rewound(proc, problem, raw)
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
            self.dead_letters.send(rejects)
        # bounds what a partition holds in memory within one large batch
        self.checkpointer.maybe([proc])
        return True

    def _hold_while_writes_fail(self) -> None:
        """While state writes fail (a full disk), consume nothing more: pause every owned
        partition, report unhealthy with the reason; resume once a write succeeds."""
        err = self.checkpointer.write_error
        if err is not None:
            owned = [tp for tp in self._consumer.assignment()]
            if owned:
                self._consumer.pause(owned)
            self._writes_paused = True
            self.health.set_problem(
                "checkpoints", f"checkpoints fail ({err}); consumption paused, retrying"
            )
        elif self._writes_paused:
            owned = [tp for tp in self._consumer.assignment()
                     if tp.partition not in self._rewind_paused]  # fmt: skip
            if owned:
                self._consumer.resume(owned)
            self._writes_paused = False
            self.health.set_problem("checkpoints", None)

    def _overdue_log_checks(self) -> None:
        """A partition assigned one message before its checkpoint gets that message at
        once when the log still holds it. When it has not come by ``log_check_s`` and the
        broker answers, the offset is not in the log: the log was truncated or recreated
        (a broker that resets out-of-range fetches shows it sooner, in ``check_log``)."""
        from confluent_kafka import KafkaException, TopicPartition

        now = time.monotonic()
        for part, due in list(self._log_checks.items()):
            proc = self.partitions.get(part)
            if proc is None or proc.log_checked:
                self._log_checks.pop(part, None)
                continue
            if now < due:
                continue
            tp = TopicPartition(self.settings.events_topic, part)
            try:
                low, high = self._consumer.get_watermark_offsets(tp, timeout=5)
            except KafkaException as e:  # the broker does not answer: that is not proof
                log.warning("partition %d: log check postponed, broker unreachable: %s", part, e)
                self._log_checks[part] = now + self.settings.log_check_s
                continue
            self._log_checks.pop(part, None)
            n = proc.next_offset
            if low > n:
                problem = (
                    f"the log now starts at offset {low}, after the checkpoint's {n}: the "
                    f"{low - n} events in [{n}, {low}) are gone (retention, deletion or a restore)"
                )
            else:
                problem = (
                    f"offset {n - 1}, the last one processed, is beyond the log's end: no "
                    f"message there after {self.settings.log_check_s:g}s (the broker reports "
                    f"offsets [{low}, {high})): the log was truncated or recreated"
                )
            proc.log_checked = True
            self._log_rewound(proc, problem, None)

    def _log_rewound(self, proc: PartitionProcessor, problem: str, raw) -> bool:
        """The partition's log is not the one its checkpoint was taken on: never skip
        silently. Apply ``on_log_rewind``, count it, log it, announce it on the drift
        topic. Returns False: this batch of the partition is not processed."""
        from confluent_kafka import TopicPartition

        s = self.settings
        part, policy = proc.partition, s.on_log_rewind
        checkpoint = proc.next_offset
        self.metrics.log_rewinds.labels(str(part), policy).inc()
        tp = TopicPartition(s.events_topic, part)
        first = int(raw.offsets.min()) if raw is not None else None
        if policy == "fail":
            self._consumer.pause([tp])
            self._rewind_paused.add(part)
            self.health.set_problem(
                part, f"log changed under the checkpoint ({problem}); partition paused "
                "(on_log_rewind=fail): inspect, then restart with on_log_rewind=reset or "
                "continue",
            )  # fmt: skip
            log.error("partition %d: %s; paused (on_log_rewind=fail)", part, problem)
        else:
            low, _ = self._consumer.get_watermark_offsets(tp, timeout=10)
            start = max(0, int(low))
            if policy == "reset":  # a new log: the old state goes to quarantine
                self.partitions.release(part)
                self.partitions.quarantine(part, problem)
                proc = self.partitions.open(part)
            proc.next_offset = start
            proc.log_checked = True
            self._consumer.seek(TopicPartition(s.events_topic, part, start))
            log.error(
                "partition %d: %s; %s from the log start (offset %d, on_log_rewind=%s)",
                part, problem, "state reset, rebuilding" if policy == "reset" else
                "state kept, consuming", start, policy,
            )  # fmt: skip
        self._producer.produce(
            s.drift_topic,
            orjson.dumps(
                {
                    "action": "log_rewind",
                    "partition": part,
                    "events_topic": s.events_topic,
                    "checkpoint_offset": checkpoint,
                    "first_offset": first,
                    "reason": problem,
                    "policy": policy,
                    "at": time.time(),
                }
            ),  # fmt: skip
            key=b"*",
        )
        return False

    def _publish_summary(self) -> None:
        """Per-label totals and lag, at most twice a second (not per batch)."""
        from confluent_kafka import TopicPartition

        seen: dict[str, int] = defaultdict(int)
        retained: dict[str, int] = defaultdict(int)
        capacity: dict[str, int] = defaultdict(int)
        eval_seen = eval_retained = 0
        for p in self.partitions.values():
            r = p.reservoirs
            for src, dst in (
                (r.seen_counts(), seen),
                (r.retained_counts(), retained),
                (r.capacities(), capacity),
            ):
                for k, v in src.items():
                    dst[group_of(k)] += v  # a label's strata add up to the label
            eval_retained += retained.pop(EVAL_LABEL, 0)
            capacity.pop(EVAL_LABEL, None)
            eval_seen += seen.pop(EVAL_LABEL, 0)
            for k, v in split_counters(p.counters)[1].items():  # the slice's, by label
                seen[k] += v
            # the high watermark cached from fetch responses (not the broker's end offsets)
            _, high = self._consumer.get_watermark_offsets(
                TopicPartition(self.settings.events_topic, p.partition), cached=True
            )
            if high is not None and high >= 0:
                lag = max(0, high - p.next_offset)
                self.metrics.lag.labels(str(p.partition)).set(lag)
                self.health.set_lag(p.partition, lag)
        self.health.lag_sample()
        self.metrics.set_labels(seen, retained, capacity, (eval_seen, eval_retained))
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
