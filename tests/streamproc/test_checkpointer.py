"""The checkpointer, in-process: real partition processors on real RocksDB stores, a fake
Kafka producer and consumer (the part under test is the order and the cadence, not the
client), and the worker loop's revoke path without a broker."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from sampler import QuotaPolicy
from streamproc.decode.events import Limits
from streamproc.settings import CheckpointSection, Settings
from streamproc.state.processor import PartitionProcessor, SamplerConfig
from streamproc.state.store import RocksPartitionStore
from streamproc.worker.checkpointer import Checkpointer
from streamproc.worker.loop import IngestLoop

CFG = SamplerConfig(QuotaPolicy(min_capacity=5, max_capacity=20, global_cap=200, max_labels=8))


class FakeProducer:
    """Records calls in a shared journal; ``undelivered`` records stay after a flush."""

    def __init__(self, journal: list, undelivered: int = 0) -> None:
        self.journal, self.undelivered = journal, undelivered
        self.produced: list[tuple] = []

    def flush(self, timeout: float) -> int:
        self.journal.append(("flush", self.undelivered))
        return self.undelivered

    def produce(self, topic, value, key=None, headers=None) -> None:
        self.produced.append((topic, value, key, headers))

    def poll(self, timeout: float) -> int:
        return 0


class FakeConsumer:
    """Commits succeed unless ``fail_commits`` > 0 (each failure uses one up)."""

    def __init__(self, journal: list, fail_commits: int = 0) -> None:
        self.journal, self.fail_commits = journal, fail_commits
        self.committed: dict[int, int] = {}
        self.assigned: list = []

    def commit(self, offsets, asynchronous: bool) -> None:
        assert asynchronous is False
        if self.fail_commits:
            self.fail_commits -= 1
            self.journal.append(("commit-failed", {tp.partition: tp.offset for tp in offsets}))
            raise RuntimeError("KafkaError{code=REQUEST_TIMED_OUT}")
        for tp in offsets:
            self.committed[tp.partition] = tp.offset
        self.journal.append(("commit", {tp.partition: tp.offset for tp in offsets}))

    def assign(self, tps) -> None:
        self.assigned = list(tps)


class JournalingStore(RocksPartitionStore):
    def __init__(self, path: Path, journal: list) -> None:
        super().__init__(path)
        self.journal = journal

    def write_checkpoint(self, ckpt, changes) -> None:
        super().write_checkpoint(ckpt, changes)
        self.journal.append(("write", ckpt.next_offset))

    def close(self) -> None:
        self.journal.append(("close",))
        super().close()


def _events(start: int, n: int) -> list[tuple[int, bytes, float]]:
    return [
        (
            i,
            orjson.dumps(
                {"id": f"e{i}", "ts": 1_000.0 + i, "label": f"L{i % 3}", "features": [i, 0, 0, 1]}
            ),
            2_000.0,
        )
        for i in range(start, start + n)
    ]


def _proc(tmp_path: Path, journal: list, p: int = 0) -> PartitionProcessor:
    store = JournalingStore(tmp_path / f"p{p}", journal)
    return PartitionProcessor("events", p, store, CFG, Limits())


def _policy(**kw) -> CheckpointSection:
    d = {"state_dir": None, "state_sync": False, "every_events": 1_000, "every_s": 60.0,
         "max_pending_bytes": 1e12}  # fmt: skip
    d.update(kw)
    return CheckpointSection(**d)


def test_order_is_flush_write_commit(tmp_path: Path) -> None:
    journal: list = []
    proc = _proc(tmp_path, journal)
    proc.process(_events(0, 50))
    ck = Checkpointer(_policy(), "events", FakeProducer(journal), FakeConsumer(journal))
    assert ck.checkpoint([proc])
    assert journal == [("flush", 0), ("write", 50), ("commit", {0: 50})]
    assert proc.committed_offset == proc.checkpointed_offset == 50


def test_flush_failed_means_no_write_and_no_commit(tmp_path: Path) -> None:
    journal: list = []
    proc = _proc(tmp_path, journal)
    proc.process(_events(0, 50))
    producer = FakeProducer(journal, undelivered=2)
    consumer = FakeConsumer(journal)
    ck = Checkpointer(_policy(), "events", producer, consumer)
    assert ck.checkpoint([proc]) is False
    assert journal == [("flush", 2)]
    assert consumer.committed == {} and proc.checkpointed_offset == 0
    assert proc.since_checkpoint == 50  # the work is kept for the next try
    assert proc.store.load_checkpoint() is None
    producer.undelivered = 0  # delivery recovers: the next checkpoint writes everything
    assert ck.checkpoint([proc])
    assert consumer.committed == {0: 50} and proc.store.load_checkpoint().next_offset == 50
    assert ck.stats.flush_failures == 1


def test_commit_failed_keeps_state_and_retries(tmp_path: Path) -> None:
    journal: list = []
    proc = _proc(tmp_path, journal)
    proc.process(_events(0, 50))
    consumer = FakeConsumer(journal, fail_commits=1)
    ck = Checkpointer(_policy(), "events", FakeProducer(journal), consumer)
    assert ck.checkpoint([proc])  # written, even though the commit failed
    assert proc.store.load_checkpoint().next_offset == 50
    assert consumer.committed == {} and ck.uncommitted == {0: 50}
    assert proc.committed_offset == 0
    # nothing new to checkpoint: the failed commit is retried anyway
    assert ck.maybe([proc])
    assert consumer.committed == {0: 50} and ck.uncommitted == {}
    assert journal[-1] == ("commit", {0: 50})
    assert ck.stats.commit_failures == 1


def test_a_failed_commit_rides_along_with_the_next_checkpoint(tmp_path: Path) -> None:
    journal: list = []
    a, b = _proc(tmp_path, journal, 0), _proc(tmp_path, journal, 1)
    a.process(_events(0, 10))
    consumer = FakeConsumer(journal, fail_commits=1)
    ck = Checkpointer(_policy(), "events", FakeProducer(journal), consumer)
    ck.checkpoint([a])
    b.process(_events(0, 20))
    ck.checkpoint([b])
    assert journal[-1] == ("commit", {0: 10, 1: 20})


def test_cadence_events_seconds_memory(tmp_path: Path) -> None:
    journal: list = []
    proc = _proc(tmp_path, journal)
    now = [proc.last_checkpoint]
    ck = Checkpointer(
        _policy(every_events=100, every_s=5.0, max_pending_bytes=1e12),
        "events", FakeProducer(journal), FakeConsumer(journal), clock=lambda: now[0],
    )  # fmt: skip
    assert not ck.due(proc)  # nothing processed
    proc.process(_events(0, 99))
    assert not ck.due(proc)
    proc.process(_events(99, 1))
    assert ck.due(proc)  # 100 events
    ck.maybe([proc])
    assert not ck.due(proc)
    proc.process(_events(100, 1))
    now[0] = proc.last_checkpoint + 5.0
    assert ck.due(proc)  # 5 seconds
    ck.maybe([proc])
    proc.process(_events(101, 1))
    now[0] = proc.last_checkpoint
    assert not ck.due(proc)
    ck.policy = _policy(every_events=100, every_s=5.0, max_pending_bytes=1)
    assert ck.due(proc)  # pending memory


def test_revoke_checkpoints_before_release(tmp_path: Path) -> None:
    """The worker loop's revoke path, without a broker: the partition's work is written and
    committed before its store is closed and the partition released."""
    journal: list = []
    settings = Settings(state_dir=tmp_path / "state", snapshot_dir=tmp_path / "snaps",
                        drift_enabled=False)  # fmt: skip
    loop = IngestLoop(
        settings,
        "fake:9092",
        consumer_factory=lambda: FakeConsumer(journal),
        producer_factory=lambda: FakeProducer(journal),
        warm=False,
    )
    loop._connect()

    from confluent_kafka import TopicPartition

    # open through the partition set, with a journaling store
    def open_processor(p, store):
        store.close()
        js = JournalingStore(loop.partitions.store_path(p), journal)
        return PartitionProcessor("events", p, js, CFG, Limits())

    loop.partitions.open_processor = open_processor
    loop._on_assign(loop._consumer, [TopicPartition("events", 3)])
    assert [tp.offset for tp in loop._consumer.assigned] == [0]
    loop._process(3, _raw(_events(0, 40)), 2_000.0)
    journal.clear()
    loop._on_revoke(loop._consumer, [TopicPartition("events", 3)])
    assert journal == [("flush", 0), ("write", 40), ("commit", {3: 40}), ("close",)]
    assert loop.processors == {}
    # a new owner resumes at the checkpoint
    loop._on_assign(loop._consumer, [TopicPartition("events", 3)])
    # one message early: the first message must be the last one processed (check_log)
    assert [tp.offset for tp in loop._consumer.assigned] == [39]
    loop.partitions.close_all()


def _raw(events):
    from streamproc.decode.messages import RawMessages

    return RawMessages.from_tuples(events)


@pytest.mark.parametrize("undelivered", [1, 5])
def test_snapshot_is_skipped_when_partitions_cannot_be_checkpointed(
    tmp_path: Path, undelivered: int
) -> None:
    journal: list = []
    settings = Settings(state_dir=tmp_path / "state", snapshot_dir=tmp_path / "snaps",
                        drift_enabled=False, partitions=1)  # fmt: skip
    loop = IngestLoop(
        settings,
        "fake:9092",
        consumer_factory=lambda: FakeConsumer(journal),
        producer_factory=lambda: FakeProducer(journal, undelivered),
        warm=False,
    )
    loop._connect()
    from confluent_kafka import TopicPartition

    loop._on_assign(loop._consumer, [TopicPartition("events", 0)])
    loop._process(0, _raw(_events(0, 40)), 2_000.0)
    assert loop.snapshot_now() is None
    assert not (tmp_path / "snaps" / "LATEST").exists()
    loop._producer.undelivered = 0
    version = loop.snapshot_now()
    assert version is not None and (tmp_path / "snaps" / "LATEST").read_text() == version
    loop.partitions.close_all()


class _Msg:
    def __init__(self, partition: int, offset: int, value: bytes) -> None:
        self._p, self._o, self._v = partition, offset, value

    def error(self):
        return None

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def value(self) -> bytes:
        return self._v

    def timestamp(self):
        return (1, int(time.time() * 1000))


class StreamingConsumer(FakeConsumer):
    """A consumer that owns partition 0 and hands out a fixed list of messages."""

    def __init__(self, journal: list, msgs: list) -> None:
        super().__init__(journal)
        self.msgs = msgs
        self.served = 0

    def subscribe(self, topics, on_assign, on_revoke, on_lost) -> None:
        from confluent_kafka import TopicPartition

        self.on_revoke = on_revoke
        on_assign(self, [TopicPartition(topics[0], 0)])

    def consume(self, n: int, timeout: float) -> list:
        out = self.msgs[self.served : self.served + n]
        self.served += len(out)
        if not out:
            time.sleep(timeout)  # what librdkafka does: wait up to the timeout
        return out

    def get_watermark_offsets(self, tp, cached: bool):
        return 0, len(self.msgs)

    def close(self) -> None:
        from confluent_kafka import TopicPartition

        self.on_revoke(self, [TopicPartition("events", 0)])


def test_requested_snapshots_coalesce_and_ingestion_goes_on(tmp_path: Path) -> None:
    """The worker loop in-process (fake client): a storm of snapshot requests makes at
    most one snapshot per snapshot_min_interval_s, and every event is still processed."""
    import threading

    journal: list = []
    n = 20_000
    msgs = [_Msg(0, i, v) for i, (_, v, _) in enumerate(_events(0, n))]
    settings = Settings(state_dir=tmp_path / "state", snapshot_dir=tmp_path / "snaps",
                        drift_enabled=False, partitions=1, snapshot_min_interval_s=0.5,
                        snapshot_every_s=3600)  # fmt: skip
    loop = IngestLoop(
        settings, "fake:9092", batch_size=500,
        consumer_factory=lambda: StreamingConsumer(journal, msgs),
        producer_factory=lambda: FakeProducer(journal), warm=False,
    )  # fmt: skip
    t = threading.Thread(target=loop.run)
    t.start()
    start = time.monotonic()
    requests = 0
    while (loop.stats.consumed < n or not loop.publisher.stats.snapshots) and (
        time.monotonic() - start < 60
    ):
        loop.snapshot_requested.set()  # as fast as an HTTP client could ask
        requests += 1
    elapsed = time.monotonic() - start
    loop.stop_event.set()
    t.join(30)
    assert loop.stats.consumed == n  # ingestion went on
    snapshots = len(loop.publisher.stats.snapshots)
    assert requests > 1_000 and 1 <= snapshots <= elapsed / 0.5 + 2


def test_snapshots_build_beside_ingestion_one_at_a_time(tmp_path: Path) -> None:
    """The ingest thread checkpoints and exports; the build runs in its own thread, and a
    tick while it runs is skipped (counted), never queued behind it."""
    import threading

    journal: list = []
    settings = Settings(state_dir=tmp_path / "state", snapshot_dir=tmp_path / "snaps",
                        drift_enabled=False, partitions=1)  # fmt: skip
    loop = IngestLoop(
        settings,
        "fake:9092",
        consumer_factory=lambda: FakeConsumer(journal),
        producer_factory=lambda: FakeProducer(journal),
        warm=False,
    )
    loop._connect()
    from confluent_kafka import TopicPartition

    loop._on_assign(loop._consumer, [TopicPartition("events", 0)])
    loop._process(0, _raw(_events(0, 40)), 2_000.0)
    release, entered = threading.Event(), threading.Event()
    real_build = loop.publisher.build

    exported = []

    def slow_build(held, drift_report=None, shards=()):
        exported.append(len(shards))  # taken on the calling (ingest) thread
        entered.set()
        assert release.wait(30)  # the test decides when the build may finish
        return real_build(held, drift_report, shards)

    loop.publisher.build = slow_build
    loop._snapshot_safely()
    assert entered.wait(30)
    assert exported == [1]
    loop._process(0, _raw(_events(40, 20)), 2_001.0)  # ingestion goes on meanwhile
    assert loop.processors[0].next_offset == 60
    loop._snapshot_safely()  # the previous build still runs: skipped
    assert loop.metrics.snapshots_skipped._value.get() == 1
    assert exported == [1]
    release.set()
    loop._join_build()
    assert loop.publisher.stats.shards == 1  # written by the build thread
    assert len(loop.publisher.stats.snapshots) == 1
    # the manifest reaches the ingest thread through a queue (drift reference)
    assert not loop._published_manifests.empty()
    assert loop.snapshot_seconds > 0
    loop.partitions.close_all()


class FullDiskStore(JournalingStore):
    """A store whose writes fail while ``full`` is set, as RocksDB's do on a full disk."""

    full = True

    def write_checkpoint(self, ckpt, changes) -> None:
        if self.full:
            raise OSError("IO error: No space left on device: While appending to file")
        super().write_checkpoint(ckpt, changes)


def test_a_full_disk_waits_with_backoff_and_resumes_without_loss(tmp_path: Path) -> None:
    now = [100.0]
    journal: list = []
    fails: list = []
    c = Checkpointer(_policy(every_events=10), "events", FakeProducer(journal),
                     FakeConsumer(journal), clock=lambda: now[0],
                     on_failure=fails.append)  # fmt: skip
    store = FullDiskStore(tmp_path / "p0", journal)
    proc = PartitionProcessor("events", 0, store, CFG, Limits())
    proc.process(_events(0, 40))
    assert c.maybe([proc]) is False  # no exception: the write failed, the work is kept
    assert c.write_error is not None and "No space left" in c.write_error
    assert fails == ["write"] and proc.since_checkpoint == 40 and proc.next_offset == 40
    assert c.backing_off()
    assert c.maybe([proc]) is False and fails == ["write"]  # within the backoff: no attempt
    now[0] += 1.0
    assert c.maybe([proc]) is False and fails == ["write", "write"]  # retried, failed again
    assert c._backoff_s == 2.0  # doubled
    FullDiskStore.full = False  # space was freed
    now[0] += 2.0
    assert c.maybe([proc]) is True
    assert c.write_error is None and proc.since_checkpoint == 0
    assert ("write", 40) in journal and ("commit", {0: 40}) in journal
    # the state is the state of a run whose disk never filled
    ref = PartitionProcessor("events", 0, JournalingStore(tmp_path / "ref", []), CFG, Limits())
    ref.process(_events(0, 40))
    ref.checkpoint()
    assert proc.reservoirs.to_bytes() == ref.reservoirs.to_bytes()
    proc.store.close()
    ref.store.close()
