"""The checkpointer: the one object that decides when a partition is checkpointed and in
which order a checkpoint is made durable.

When (:meth:`Checkpointer.due`), whichever comes first for a partition with unsaved work:
``every_events`` events processed, ``every_s`` seconds since its last checkpoint, or
``max_pending_bytes`` of admitted records kept in memory; and always when the stream goes
idle (:meth:`Checkpointer.idle`), when a partition is revoked (:meth:`Checkpointer.revoke`)
and at shutdown (:meth:`Checkpointer.all`).

How (:meth:`Checkpointer.checkpoint`), for the partitions at hand:

1. flush the producer: the dead letters of the offsets being checkpointed are durable.
   If records remain undelivered, stop here: nothing is written, nothing is committed,
   the partitions keep their unsaved work and are tried again later. Dead letters the
   broker refused are sent again first; while any stay refused, nothing is written
   either, and the worker pauses and reports it like a failing disk (below).
2. write each partition's RocksDB checkpoint (one atomic write batch each). A write that
   fails (a full or failing disk) is not a crash: the partitions written so far are
   committed, the others keep their work in memory, :attr:`Checkpointer.write_error`
   says why, and the next attempt waits for a backoff (1 s doubling to 60 s); the worker
   pauses consumption meanwhile and resumes once a write succeeds.
3. commit the next offsets to Kafka. The checkpoint is the truth (a partition resumes at
   its checkpointed offset, never at a committed one), so a failed commit loses nothing:
   the offsets are kept and committed again at the next opportunity.

The producer and consumer are duck-typed (``flush(timeout) -> int``,
``commit(offsets=..., asynchronous=False)``), so the checkpointer is tested in-process
with fakes. Example, with a producer that cannot deliver:

>>> class Producer:
...     def flush(self, timeout): return 3  # three records not delivered
>>> class Consumer:
...     def commit(self, offsets, asynchronous): raise AssertionError("must not commit")
>>> from streamproc.settings import CheckpointSection
>>> c = Checkpointer(CheckpointSection(None, False, 1000, 5.0, 1e9), "events",
...                  Producer(), Consumer())
>>> class Proc:
...     partition, next_offset, since_checkpoint = 0, 10, 4
...     def checkpoint(self): raise AssertionError("must not write")
>>> c.checkpoint([Proc()])
False
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from streamproc.settings import CheckpointSection

log = logging.getLogger(__name__)

FLUSH_TIMEOUT_S = 30.0


@dataclass
class CheckpointStats:
    checkpoints: int = 0  # partition checkpoints written
    seconds: float = 0.0
    flush_failures: int = 0  # checkpoints not written: dead letters undelivered
    commit_failures: int = 0  # offset commits that failed (retried later)
    write_failures: int = 0  # state writes that failed (disk full...): retried with backoff


class Checkpointer:
    def __init__(
        self,
        policy: CheckpointSection,
        topic: str,
        producer,
        consumer,
        on_committed: Callable[[int, int], None] | None = None,
        observe_seconds: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_failure: Callable[[str], None] | None = None,
        dead_letters=None,  # a DeadLetterSink: refused dead letters block checkpoints
    ) -> None:
        self.policy = policy
        self.topic = topic
        self.producer, self.consumer = producer, consumer
        self.on_committed = on_committed  # (partition, offset) after a successful commit
        self.observe_seconds = observe_seconds
        self.on_failure = on_failure  # called with "flush" or "commit"
        self.clock = clock
        self.stats = CheckpointStats()
        self.uncommitted: dict[int, int] = {}  # partition -> offset whose commit failed
        self.write_error: str | None = None  # why the last state write failed (None: fine)
        self._backoff_s = 0.0
        self._retry_at = 0.0
        self.dead_letters = dead_letters

    # ------------------------------------------------------------ when
    def due(self, proc) -> bool:
        """Does ``proc`` need a checkpoint now (events, seconds or pending memory)?"""
        p = self.policy
        return proc.since_checkpoint > 0 and (
            proc.since_checkpoint >= p.every_events
            or self.clock() - proc.last_checkpoint >= p.every_s
            or proc.pending_bytes >= p.max_pending_bytes
        )

    def backing_off(self) -> bool:
        """A state write failed and its retry time has not come yet."""
        return self.write_error is not None and self.clock() < self._retry_at

    def maybe(self, procs: Iterable) -> bool:
        """Checkpoint those of ``procs`` that are due; retry failed commits."""
        if self.backing_off():
            return False
        due = [p for p in procs if self.due(p) or (self.write_error and p.since_checkpoint)]
        if due:
            return self.checkpoint(due)
        self.retry_commits()
        return True

    def idle(self, procs: Iterable) -> bool:
        """The stream went quiet: make everything processed durable."""
        if self.backing_off():
            return False
        return self.all(procs)

    def all(self, procs: Iterable) -> bool:
        """Checkpoint every partition with unsaved work (idle, shutdown)."""
        pending = [p for p in procs if p.since_checkpoint]
        if pending:
            return self.checkpoint(pending)
        self.retry_commits()
        return True

    def revoke(self, proc) -> bool:
        """``proc`` is being released: checkpoint it first. On failure the next owner
        replays from its last checkpoint, which ends in the same state."""
        self.uncommitted.pop(proc.partition, None)
        if not proc.since_checkpoint:
            return self._commit([proc])
        return self.checkpoint([proc])

    # ------------------------------------------------------------ how
    def checkpoint(self, procs: list) -> bool:
        """Flush, write, commit (in that order). False when nothing was written."""
        if not procs:
            return True
        t = time.perf_counter()
        sink = self.dead_letters
        try:
            if sink is not None and sink.failed:
                log.info("sending %d refused dead letter(s) again", sink.retry_failed())
            remaining = self.producer.flush(FLUSH_TIMEOUT_S)  # (1)
        except Exception as e:  # noqa: BLE001 - any producer failure means "not durable"
            log.error("producer flush failed, not checkpointing: %s", e)
            remaining = -1
        if remaining:
            self.stats.flush_failures += 1
            if self.on_failure is not None:
                self.on_failure("flush")
            log.error(
                "%s dead-letter record(s) not delivered; partitions %s not checkpointed "
                "(their work stays in memory and is retried)",
                "some" if remaining < 0 else remaining,
                sorted(p.partition for p in procs),
            )
            return False
        if sink is not None and sink.failed:  # refused, not just late: wait, say why
            self._write_failed(
                RuntimeError(f"{len(sink.failed)} dead letter(s) refused by the broker: "
                             f"{sink.error}"), procs, [], stage="dead_letters",
            )  # fmt: skip
            return False
        written = []
        try:
            for proc in procs:
                proc.checkpoint()  # (2)
                written.append(proc)
        except Exception as e:  # noqa: BLE001 - a full or failing disk: wait, never crash
            self._write_failed(e, procs, written)
            if written:
                self._commit(written)
            return False
        if self.write_error is not None:
            log.warning("state writes work again (%s); resuming", self.write_error)
        self.write_error, self._backoff_s = None, 0.0
        self.stats.checkpoints += len(procs)
        self._commit(procs)  # (3)
        dt = time.perf_counter() - t
        self.stats.seconds += dt
        if self.observe_seconds is not None:
            self.observe_seconds(dt)
        return True

    def _write_failed(
        self, e: BaseException, procs: list, written: list, stage: str = "write"
    ) -> None:
        self.stats.write_failures += 1
        self.stats.checkpoints += len(written)
        if self.on_failure is not None:
            self.on_failure(stage)
        self._backoff_s = min(60.0, max(1.0, 2 * self._backoff_s))
        self._retry_at = self.clock() + self._backoff_s
        self.write_error = f"{type(e).__name__}: {e}"[:300]
        failed = sorted(p.partition for p in procs if p not in written)
        log.error(
            "checkpoint failed for partitions %s (%s); their work stays in memory, "
            "consumption pauses, retrying in %.0fs", failed, self.write_error, self._backoff_s,
        )  # fmt: skip

    def retry_commits(self) -> bool:
        """Commit again the offsets whose commit failed (the state is checkpointed)."""
        if not self.uncommitted:
            return True
        return self._commit_offsets(dict(self.uncommitted))

    def _commit(self, procs: list) -> bool:
        offsets = dict(self.uncommitted)
        offsets.update({p.partition: p.checkpointed_offset for p in procs})
        ok = self._commit_offsets(offsets)
        if ok:
            for p in procs:
                p.committed_offset = p.checkpointed_offset
        return ok

    def _commit_offsets(self, offsets: dict[int, int]) -> bool:
        from confluent_kafka import TopicPartition

        tps = [TopicPartition(self.topic, p, o) for p, o in sorted(offsets.items())]
        try:
            self.consumer.commit(offsets=tps, asynchronous=False)
        except Exception as e:  # noqa: BLE001 - the checkpoint is the truth; retried later
            self.stats.commit_failures += 1
            if self.on_failure is not None:
                self.on_failure("commit")
            self.uncommitted.update(offsets)
            log.warning("offset commit failed (state is checkpointed, will retry): %s", e)
            return False
        for p, o in offsets.items():
            if self.uncommitted.get(p) == o:
                del self.uncommitted[p]
            if self.on_committed is not None:
                self.on_committed(p, o)
        return True
