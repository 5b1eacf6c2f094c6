"""Dead letters: every message the worker cannot process goes to the dead-letter topic
with why (``reason``) and where it came from (``source_topic``, ``source_partition``,
``source_offset``), as Kafka headers, keyed by the source partition. The same facts go in
Kafka Connect's error-context headers too (``__connect.errors.topic``, ``.partition``,
``.offset``, ``.connector.name``, ``.stage``, ``.exception.class.name``,
``.exception.message``), so tools built for Connect's dead-letter queues read them.
Under a PII policy the value and the reason are scrubbed like stored events
(:meth:`~streamproc.decode.pii.PiiScrubber.dead_letter`) and a ``pii: scrubbed`` header
says so: personal data does not reach the dead-letter topic in clear.

No dead letter is lost to a broker outage: the worker's producer never expires a queued
record (``message.timeout.ms = 0``), a full local queue makes :meth:`send` wait for room
(ingestion waits with it) instead of failing, and a record the broker refuses is kept in
:attr:`DeadLetterSink.failed` with the error: the checkpointer re-sends those before it
flushes, and writes no checkpoint (so commits no offset) while any remain, which keeps
the partitions' work in memory, pauses consumption and reports why.

>>> class Producer:
...     def __init__(self): self.sent = []
...     def produce(self, topic, value, key, headers, on_delivery):
...         self.sent.append((topic, dict(headers)))
...     def poll(self, timeout): pass
>>> from streamproc.decode.events import Reject
>>> p = Producer()
>>> sink = DeadLetterSink(p, "events-dlq", "events")
>>> sink.send([Reject(2, 41, "json: unexpected end", b"{")])
>>> p.sent[0][1]["source_offset"], sink.by_reason["json"]
(b'41', 1)
>>> p.sent[0][1]["__connect.errors.offset"], p.sent[0][1]["__connect.errors.exception.class.name"]
(b'41', b'json')
"""

from __future__ import annotations

import logging
from collections import defaultdict

from streamproc.decode.events import Reject
from streamproc.decode.pii import redact
from streamproc.ops.metrics import reason_category

log = logging.getLogger(__name__)


class DeadLetterSink:
    def __init__(
        self, producer, dlq_topic: str, source_topic: str, counter=None, scrub=None
    ) -> None:
        self.producer = producer
        self.scrub = scrub  # a PiiScrubber, or None
        self.dlq_topic, self.source_topic = dlq_topic, source_topic
        self.counter = counter  # a labelled Prometheus counter (by reason category), or None
        self.by_reason: dict[str, int] = defaultdict(int)
        self.failed: list[tuple] = []  # (value, key, headers) the broker refused
        self.error: str | None = None  # the latest refusal

    def _delivered(self, err, msg) -> None:
        """Delivery report: a refused record is kept for :meth:`retry_failed`."""
        if err is None:
            return
        self.failed.append((msg.value(), msg.key(), msg.headers()))
        self.error = f"{err.name() if hasattr(err, 'name') else err}: {err}"
        log.error("dead letter to %s not delivered (%s); kept, will be sent again",
                  self.dlq_topic, self.error)  # fmt: skip

    def _produce(self, value, key, headers) -> None:
        waited = False
        while True:
            try:
                self.producer.produce(self.dlq_topic, value, key=key, headers=headers,
                                      on_delivery=self._delivered)  # fmt: skip
                return
            except BufferError:  # the local queue is full: the broker is slow or gone
                if not waited:
                    log.warning("dead-letter queue full; waiting for the broker")
                    waited = True
                self.producer.poll(0.5)

    def retry_failed(self) -> int:
        """Send again what the broker refused; the number re-sent."""
        again, self.failed = self.failed, []
        for value, key, headers in again:
            self._produce(value, key, headers)
        return len(again)

    def send(self, rejects: list[Reject]) -> None:
        topic = self.source_topic.encode()
        for r in rejects:
            value, reason = r.value, r.reason
            part, off = str(r.partition).encode(), str(r.offset).encode()
            category = reason_category(r.reason)
            headers = [
                ("source_topic", topic),
                ("source_partition", part),
                ("source_offset", off),
            ]
            if self.scrub is not None:
                value, reason = self.scrub.dead_letter(value), redact(reason)
                headers.append(("pii", b"scrubbed"))
            headers += [  # Kafka Connect's error context, for tools that expect it
                ("__connect.errors.topic", topic),
                ("__connect.errors.partition", part),
                ("__connect.errors.offset", off),
                ("__connect.errors.connector.name", b"stratastream"),
                ("__connect.errors.stage", b"VALUE_CONVERTER"),
                ("__connect.errors.exception.class.name", category.encode()),
                ("__connect.errors.exception.message", reason.encode()),
            ]
            self._produce(value, part, [("reason", reason.encode()), *headers])
            self.by_reason[category] += 1
            if self.counter is not None:
                self.counter.labels(category).inc()
            log.debug(
                "dead-lettered %s[%d]@%d: %s", self.source_topic, r.partition, r.offset, r.reason
            )
        self.producer.poll(0)
