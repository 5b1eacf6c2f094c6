"""``streamproc dlq replay``: send dead letters back to the events topic after a fix.

Reads the dead-letter topic from its start with a consumer of its own (no group, nothing
committed), keeps the letters that match the filters (reason, source partition, source
offsets), and produces their values to the events topic (or ``to_topic``). A letter whose
value was scrubbed under a PII policy is never replayed (it is not the original event);
it is counted. Replaying is idempotent for the sample: an event's draw is a hash of its
id, so a replayed event that is admitted is the same item however often it is replayed
(its seen count, though, counts every replay).

The end of the topic is where no letter arrives for ``idle_s`` seconds after the broker's
high watermark was reached (brokers that under-report end offsets are covered).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplayFilter:
    reasons: tuple[str, ...] = ()  # substrings of the reason; any matches (empty: all)
    partition: int | None = None  # source partition
    from_offset: int | None = None  # source offsets, inclusive
    to_offset: int | None = None

    def matches(self, headers: dict[str, bytes]) -> bool:
        reason = headers.get("reason", b"").decode(errors="replace")
        if self.reasons and not any(r in reason for r in self.reasons):
            return False
        try:
            part = int(headers.get("source_partition", b"-1"))
            off = int(headers.get("source_offset", b"-1"))
        except ValueError:
            return False
        if self.partition is not None and part != self.partition:
            return False
        if self.from_offset is not None and off < self.from_offset:
            return False
        return not (self.to_offset is not None and off > self.to_offset)


@dataclass
class ReplayReport:
    read: int = 0
    replayed: int = 0
    scrubbed_skipped: int = 0
    by_reason: Counter = field(default_factory=Counter)


def replay(
    bootstrap: str,
    dlq_topic: str,
    to_topic: str,
    flt: ReplayFilter,
    dry_run: bool = False,
    idle_s: float = 3.0,
    config: dict | None = None,
) -> ReplayReport:
    """Replay the matching dead letters (see the module docstring)."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    from streamproc.ops.metrics import reason_category

    c = Consumer({**(config or {}), "bootstrap.servers": bootstrap,
                  "group.id": f"stratastream-dlq-replay-{time.time_ns()}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "enable.partition.eof": False})  # fmt: skip
    prod = None if dry_run else Producer({**(config or {}), "bootstrap.servers": bootstrap})
    rep = ReplayReport()
    try:
        meta = c.list_topics(dlq_topic, timeout=10).topics.get(dlq_topic)
        if meta is None or meta.error is not None:
            from stratastream.errors import StratastreamError

            raise StratastreamError(f"dlq replay: topic {dlq_topic!r} does not exist")
        parts = [TopicPartition(dlq_topic, p, 0) for p in meta.partitions]
        c.assign(parts)
        high = {p.partition: c.get_watermark_offsets(p, timeout=10)[1] for p in parts}
        last: dict[int, int] = {}
        quiet_since = time.monotonic()
        while True:
            msgs = c.consume(1000, 0.5)
            if msgs:
                quiet_since = time.monotonic()
            for m in msgs:
                if m.error() is not None:
                    log.warning("dlq replay: %s", m.error())
                    continue
                last[m.partition()] = m.offset()
                rep.read += 1
                headers = {k: v or b"" for k, v in (m.headers() or [])}
                if not flt.matches(headers):
                    continue
                if headers.get("pii") == b"scrubbed":
                    rep.scrubbed_skipped += 1
                    continue
                rep.by_reason[reason_category(headers.get("reason", b"").decode())] += 1
                if prod is not None:
                    prod.produce(to_topic, m.value(), key=m.key())
                    prod.poll(0)
                rep.replayed += 1
            reached = all(last.get(p, -1) + 1 >= h for p, h in high.items())
            if reached and time.monotonic() - quiet_since >= idle_s:
                break
        if prod is not None and prod.flush(30) > 0:
            from stratastream.errors import StratastreamError

            raise StratastreamError("dlq replay: some letters were not delivered to the topic")
    finally:
        c.close()
    return rep
