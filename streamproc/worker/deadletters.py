"""Dead letters: every message the worker cannot process goes to the dead-letter topic
with why (``reason``) and where it came from (``source_topic``, ``source_partition``,
``source_offset``), as Kafka headers, keyed by the source partition.

>>> class Producer:
...     def __init__(self): self.sent = []
...     def produce(self, topic, value, key, headers): self.sent.append((topic, dict(headers)))
...     def poll(self, timeout): pass
>>> from streamproc.decode.events import Reject
>>> p = Producer()
>>> sink = DeadLetterSink(p, "events-dlq", "events")
>>> sink.send([Reject(2, 41, "json: unexpected end", b"{")])
>>> p.sent[0][1]["source_offset"], sink.by_reason["json"]
(b'41', 1)
"""

from __future__ import annotations

import logging
from collections import defaultdict

from streamproc.decode.events import Reject
from streamproc.ops.metrics import reason_category

log = logging.getLogger(__name__)


class DeadLetterSink:
    def __init__(self, producer, dlq_topic: str, source_topic: str, counter=None) -> None:
        self.producer = producer
        self.dlq_topic, self.source_topic = dlq_topic, source_topic
        self.counter = counter  # a labelled Prometheus counter (by reason category), or None
        self.by_reason: dict[str, int] = defaultdict(int)

    def send(self, rejects: list[Reject]) -> None:
        topic = self.source_topic.encode()
        for r in rejects:
            self.producer.produce(
                self.dlq_topic,
                r.value,
                key=str(r.partition).encode(),
                headers=[
                    ("reason", r.reason.encode()),
                    ("source_topic", topic),
                    ("source_partition", str(r.partition).encode()),
                    ("source_offset", str(r.offset).encode()),
                ],
            )
            category = reason_category(r.reason)
            self.by_reason[category] += 1
            if self.counter is not None:
                self.counter.labels(category).inc()
            log.debug(
                "dead-lettered %s[%d]@%d: %s", self.source_topic, r.partition, r.offset, r.reason
            )
        self.producer.poll(0)
