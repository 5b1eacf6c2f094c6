"""A worker left without partitions is not silently healthy: the broker under a running
worker is replaced by an empty one (an in-memory broker restarted, a cluster restored),
its topics re-created only later. While the events topic is missing /health answers 503
naming it; once the topic is back, either the worker takes its partitions again (real
Kafka) or, where the broker leaves its group join stuck (the embedded broker, see the
README), /health keeps answering 503 naming the unowned partitions -- never 200 -- and a
restarted worker (what an orchestrator does on a failing health check) consumes the new
log."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.broker import EmbeddedBroker, free_port
from devtools.produce import produce_synthetic
from devtools.supervise import WorkerProcess, processed_all
from tests.conftest import health

pytestmark = [pytest.mark.integration, pytest.mark.long_fault]


def test_a_worker_without_partitions_says_why_and_recovers(tmp_path: Path) -> None:
    port = free_port()
    env = {"STRATA_GROUP_ID": "idle", "STRATA_STALL_TIMEOUT_S": "10",
           "STRATA_SNAPSHOT_EVERY_S": "3600"}  # fmt: skip
    w = None
    try:
        with EmbeddedBroker(port=port) as first:
            w = WorkerProcess(first.bootstrap, tmp_path / "state", tmp_path / "snaps",
                              tmp_path / "w.log", env=env, partitions=2)  # fmt: skip
            w.wait_until(lambda st: len(st["partitions"]) == 2, 120, "its partitions")
        # the first broker is gone; an empty one on the same address, topics come later
        with EmbeddedBroker(port=port) as second:
            w.wait_until(lambda _st: (h := health(w))[0] == 503
                         and any("does not exist" in r for r in h[1].get("reasons", [])), 120,
                         "503 naming the missing topic")  # fmt: skip
            second.create_topics({"events": 2})
            rep = produce_synthetic(second.bootstrap, "events", n=1_000, seed=5, progress=False)

            def consumed_or_says_why(st) -> bool:
                code, body = health(w)
                reasons = body.get("reasons", [])
                unowned = code == 503 and any("no owner in group" in r for r in reasons)
                return processed_all(rep.next_offsets)([st]) or unowned

            st = w.wait_until(consumed_or_says_why, 90, "the new events, or 503 saying why")
            if not processed_all(rep.next_offsets)([st]):
                assert w.stop() == 0
                w = WorkerProcess(second.bootstrap, tmp_path / "state", tmp_path / "snaps",
                                  tmp_path / "w2.log", env=env, partitions=2)  # fmt: skip
                w.wait_until(lambda st: processed_all(rep.next_offsets)([st]), 120,
                             "the re-created topic's events after a restart")  # fmt: skip
            w.wait_until(lambda _st: health(w)[0] == 200, 60, "healthy")
            assert w.stop() == 0
    finally:
        if w is not None and w.proc.poll() is None:
            w.kill9()
