from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.broker import EmbeddedBroker
from devtools.supervise import WorkerProcess

_topic_ids = itertools.count()


def read_topic(
    bootstrap: str, topic: str, expect: int | None = None, timeout: float = 10.0
) -> list:
    """Messages of every partition of a topic, read from the start by a fresh consumer.

    With ``expect``, stops once that many arrived (plus one more second, so that extra
    records would show); without, reads for ``timeout`` seconds.
    """
    import time

    from confluent_kafka import Consumer, TopicPartition

    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{time.time_ns()}",
            "enable.auto.commit": False,
            "fetch.queue.backoff.ms": 10,
        }
    )
    parts = c.list_topics(topic, timeout=10).topics[topic].partitions
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    out: list = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (expect is None or len(out) < expect):
        out += [m for m in c.consume(1000, 0.5) if m.error() is None]
    if expect is not None:
        out += [m for m in c.consume(1000, 1.0) if m.error() is None]
    c.close()
    return out


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
            "STRATA_GROUP_ID": f"{group}-{self.events}",  # one group per test (see README)
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


def health(w) -> tuple[int, dict]:
    """(HTTP status, body) of a worker's /health; (0, {}) when it does not answer."""
    import json
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(w.url + "/health", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
    except (urllib.error.URLError, OSError):
        return 0, {}


HITL_TOPICS = ("predictions", "feedback", "annotations", "relabel", "spot_check", "outcomes",
               "deployments", "annotate", "holds")  # fmt: skip


def hitl_env(deployment: Deployment, token: str, registry: Path, **extra: str) -> dict[str, str]:
    """Environment of a worker with the human-in-the-loop endpoints on, its topics made
    for this deployment (two partitions, one for the single-decider ones)."""
    n = deployment.events
    names = {t: f"{n}-{t}" for t in HITL_TOPICS}
    one = {"relabel", "spot_check", "outcomes", "deployments", "holds"}
    deployment.broker.create_topics({v: 1 if t in one else 2 for t, v in names.items()})
    env = {f"STRATA_{t.upper()}_TOPIC": v for t, v in names.items()}
    return {**env, "STRATA_HITL_TOKEN": token, "STRATA_HITL_REGISTRY_DIR": str(registry),
            "STRATA_HITL_RATE_PER_S": "1000", "STRATA_HITL_BURST": "1000",
            "STRATA_HITL_PARTITIONS": "2", **extra}  # fmt: skip
