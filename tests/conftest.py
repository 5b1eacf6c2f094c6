from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamproc.broker import EmbeddedBroker
from streamproc.supervise import WorkerProcess

_topic_ids = itertools.count()


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as b:
        yield b


class Deployment:
    """A fresh set of topics on the shared broker plus helpers to run workers on them."""

    def __init__(self, broker: EmbeddedBroker, root: Path, partitions: int = 4) -> None:
        n = next(_topic_ids)
        self.broker = broker
        self.root = root
        self.partitions = partitions
        self.events = f"events-{n}"
        self.dlq = f"events-{n}-dlq"
        self.snapshots = f"snapshots-{n}"
        self.drift = f"drift-{n}"
        broker.create_topics(
            {self.events: partitions, self.dlq: 1, self.snapshots: 1, self.drift: 1}
        )
        self.workers: list[WorkerProcess] = []

    def env(self, group: str) -> dict[str, str]:
        return {
            "STRATA_EVENTS_TOPIC": self.events,
            "STRATA_DLQ_TOPIC": self.dlq,
            "STRATA_SNAPSHOTS_TOPIC": self.snapshots,
            "STRATA_DRIFT_TOPIC": self.drift,
            "STRATA_GROUP_ID": group,
            "STRATA_SNAPSHOT_EVERY_S": "3600",
            "STRATA_CHECKPOINT_EVERY_S": "0.5",
            "STRATA_CHECKPOINT_EVERY_EVENTS": "2000",
            "STRATA_MIN_CAPACITY": "20",
            "STRATA_MAX_CAPACITY": "150",
            "STRATA_BOOST_CAPACITY": "300",
            "STRATA_GLOBAL_CAP": "20000",
            "STRATA_MAX_LABELS": "64",
        }

    def worker(
        self,
        name: str,
        group: str = "g",
        state: str | None = None,
        snaps: str | None = None,
        **env: str,
    ) -> WorkerProcess:
        w = WorkerProcess(
            self.broker.bootstrap,
            self.root / (state or f"state-{group}"),
            self.root / (snaps or f"snap-{group}"),
            self.root / f"{name}.log",
            env={**self.env(group), **env},
            partitions=self.partitions,
        )
        self.workers.append(w)
        return w

    def close(self) -> None:
        for w in self.workers:
            if w.proc.poll() is None:
                w.stop()


@pytest.fixture
def deployment(broker: EmbeddedBroker, tmp_path: Path) -> Iterator[Deployment]:
    d = Deployment(broker, tmp_path)
    yield d
    d.close()
