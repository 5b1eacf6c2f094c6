"""A broker that freezes (SIGSTOP) for longer than a checkpoint waits for its dead letters,
and dead letters the broker refuses: the worker waits, never exits, loses no dead letter,
and ends in the snapshot of a run that never saw the fault."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from devtools.broker import EmbeddedBroker
from devtools.produce import produce_synthetic
from devtools.supervise import processed_all
from snapshot_format import latest_version
from streamproc.settings import CheckpointSection
from streamproc.worker.checkpointer import Checkpointer
from streamproc.worker.deadletters import DeadLetterSink
from tests.conftest import Deployment, health, read_topic


class _Err:
    def __init__(self, text: str) -> None:
        self.text = text

    def name(self) -> str:
        return "TOPIC_AUTHORIZATION_FAILED"

    def __str__(self) -> str:
        return self.text


class _Msg:
    def __init__(self, value, key, headers) -> None:
        self._v, self._k, self._h = value, key, headers

    def value(self):
        return self._v

    def key(self):
        return self._k

    def headers(self):
        return self._h


class _RefusingProducer:
    """A producer whose broker refuses the dead-letter topic until ``accept`` is set (a
    fake of the broker's answer: the delivery report; the checkpointer is what is tested)."""

    def __init__(self) -> None:
        self.accept, self.delivered, self.queue = False, [], []

    def produce(self, topic, value, key, headers, on_delivery):
        self.queue.append((value, key, headers, on_delivery))

    def poll(self, timeout):
        self.flush(timeout)

    def flush(self, timeout):
        queue, self.queue = self.queue, []
        for value, key, headers, cb in queue:
            if self.accept:
                self.delivered.append(value)
                cb(None, _Msg(value, key, headers))
            else:
                cb(_Err("not authorized"), _Msg(value, key, headers))
        return 0


class _Consumer:
    def __init__(self) -> None:
        self.commits = []

    def commit(self, offsets, asynchronous):
        self.commits.append(offsets)


class _Proc:
    partition, next_offset, last_checkpoint, pending_bytes = 0, 10, 0.0, 0

    def __init__(self) -> None:
        self.since_checkpoint, self.written, self.checkpointed_offset = 4, 0, 0

    def checkpoint(self):
        self.written += 1
        self.since_checkpoint, self.checkpointed_offset = 0, self.next_offset


def test_refused_dead_letters_block_checkpoints_until_delivered() -> None:
    from streamproc.decode.events import Reject

    prod, cons, now = _RefusingProducer(), _Consumer(), [0.0]
    sink = DeadLetterSink(prod, "events-dlq", "events")
    c = Checkpointer(CheckpointSection(None, False, 1000, 5.0, 1e9), "events", prod, cons,
                     clock=lambda: now[0], dead_letters=sink)  # fmt: skip
    sink.send([Reject(0, 3, "json: bad", b"{"), Reject(0, 7, "json: bad", b"[")])
    proc = _Proc()
    assert c.checkpoint([proc]) is False  # refused: nothing written, nothing committed
    assert proc.written == 0 and not cons.commits and len(sink.failed) == 2
    assert "dead letter" in c.write_error and "not authorized" in c.write_error
    assert c.backing_off()
    now[0] += 120  # past the backoff; the broker accepts again
    prod.accept = True
    assert c.maybe([proc]) is True
    assert sorted(prod.delivered) == [b"[", b"{"]  # both re-sent, none lost
    assert proc.written == 1 and cons.commits and c.write_error is None


@pytest.mark.integration
@pytest.mark.long_fault
def test_a_broker_frozen_past_the_flush_timeout_loses_nothing(tmp_path: Path) -> None:
    with EmbeddedBroker() as broker:
        d = Deployment(broker, tmp_path)
        ref_dlq = f"{d.dlq}-ref"
        broker.create_topics({ref_dlq: 1})
        w = d.worker("w", STRATA_CHECKPOINT_EVERY_S="0.5", STRATA_STALL_TIMEOUT_S="5")
        try:
            w.wait_until(lambda s: bool(s["partitions"]), 120, "its partitions")
            out: dict = {}

            def produce() -> None:  # rejects in flight when the broker stops
                out["rep"] = produce_synthetic(broker.bootstrap, d.events, n=60_000,
                                               n_labels=8, malformed_frac=0.03, seed=21,
                                               progress=False, rate=5_000)  # fmt: skip

            t = threading.Thread(target=produce)
            t.start()
            w.wait_until(lambda s: s["consumed"] > 10_000, 120, "some progress")
            os.kill(broker._proc.pid, signal.SIGSTOP)
            seen = []
            try:  # the fault itself: longer than a checkpoint's 30 s flush
                end = time.monotonic() + 35
                while time.monotonic() < end:
                    assert w.proc.poll() is None, "the worker exited during the freeze"
                    seen.append(health(w))
                    time.sleep(0.5)
            finally:
                os.kill(broker._proc.pid, signal.SIGCONT)
            unhealthy = [body for code, body in seen if code == 503]
            assert unhealthy, seen[-3:]  # it said so while the broker was away
            t.join(300)
            rep = out["rep"]
            done = processed_all(rep.next_offsets, "committed_offset")
            w.wait_until(lambda s: done([s]), 300, "every event committed after the freeze")
            w.request_snapshot()
            w.wait_until(lambda s: s["snapshots"], 120, "a snapshot")
            version = latest_version(tmp_path / "snap-g")
            malformed = sum(rep.malformed.values())
            letters = read_topic(broker.bootstrap, d.dlq, expect=malformed, timeout=60)
            where = {(dict(m.headers())["source_partition"], dict(m.headers())["source_offset"])
                     for m in letters}  # fmt: skip
            assert len(where) == malformed  # every one, at least once
            assert w.stop() == 0

            ref = d.worker("ref", group="ref", STRATA_DLQ_TOPIC=ref_dlq)
            ref.wait_until(lambda s: processed_all(rep.next_offsets)([s]), 300, "reference")
            ref.request_snapshot()
            ref.wait_until(lambda s: s["snapshots"], 120, "the reference snapshot")
            assert latest_version(tmp_path / "snap-ref") == version
            assert ref.stop() == 0
        finally:
            d.close()
