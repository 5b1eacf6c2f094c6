"""Topic administration on any Kafka-compatible broker (confluent-kafka's AdminClient):
wait until a broker answers, create the worker's topics when they are missing.

Example (needs a running broker)::

    create_topics("127.0.0.1:9092", {"events": 4, "events-dlq": 1})
"""

from __future__ import annotations

import time

from stratastream.brokers import BrokerError, wait_for_broker

__all__ = ["BrokerError", "create_topics", "wait_for_broker"]


def create_topics(
    bootstrap: str, topics: dict[str, int], timeout: float = 30.0, config: dict | None = None
) -> None:
    """Create topics (name -> partitions); existing topics are left as they are.
    ``config``: extra librdkafka settings (security)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({**(config or {}), "bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=timeout).topics)
    new = [
        NewTopic(t, num_partitions=p, replication_factor=1)
        for t, p in topics.items()
        if t not in existing
    ]
    if not new:
        return
    for name, fut in admin.create_topics(new, operation_timeout=timeout).items():
        try:
            fut.result(timeout=timeout)
        except Exception as e:
            if "TOPIC_ALREADY_EXISTS" not in str(e):
                raise BrokerError(f"creating topic {name!r} failed: {e}") from e
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # metadata is eventually consistent
        md = admin.list_topics(timeout=timeout).topics
        if all(t in md and len(md[t].partitions) == p for t, p in topics.items()):
            return
        time.sleep(0.05)
    raise BrokerError(f"topics {sorted(topics)} did not appear in metadata within {timeout}s")


def check_single_partition(bootstrap: str, topic: str, setting: str, config: dict | None = None,
                           timeout: float = 30.0) -> None:  # fmt: skip
    """Fail fast when ``topic`` (named by ``setting``) exists with more than one
    partition: its single consumer and the table keyed on it need exactly one."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({**(config or {}), "bootstrap.servers": bootstrap})
    md = admin.list_topics(topic, timeout=timeout).topics.get(topic)
    n = len(md.partitions) if md is not None and md.error is None else 0
    if n > 1:
        raise BrokerError(
            f"{setting}: topic {topic!r} has {n} partitions; it needs exactly 1 (one "
            "consumer decides rollouts): delete it or name another topic"
        )
