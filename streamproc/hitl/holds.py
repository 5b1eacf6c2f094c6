"""Items held out of snapshots (low annotator agreement), known to every worker.

The worker that owns an item's annotations decides whether the item is held (its
annotation book, a Faust table partitioned like the annotations). Any worker builds
snapshots, so the decision is broadcast: each change is one record ``{"item_id",
"held"}`` on the one-partition ``holds_topic``, and every worker reads that topic from
its start with a consumer of its own (assigned, no group: each worker reads it all) and
keeps the latest state per item. Faust's ``GlobalTable`` would do this job but does not
replicate updates across workers (faust-streaming issue #283).

>>> h = Holds()
>>> h.apply([b'{"item_id": "i1", "held": true}', b'{"item_id": "i2", "held": true}',
...          b'{"item_id": "i1", "held": false}', b'not json'])
True
>>> sorted(h.items), h.bad
(['i2'], 1)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import orjson

log = logging.getLogger(__name__)


def hold_record(item_id: str, held: bool) -> bytes:
    return orjson.dumps({"item_id": item_id, "held": bool(held)})


class Holds:
    """The latest hold state per item, from the records of the holds topic in order."""

    def __init__(self) -> None:
        self.items: frozenset[str] = frozenset()
        self.bad = 0  # records that were not hold records (skipped, counted)

    def apply(self, values: list[bytes]) -> bool:
        """Apply records in order; whether the held set changed."""
        held = set(self.items)
        for v in values:
            try:
                rec = orjson.loads(v)
                item, on = rec["item_id"], rec["held"]
                if not isinstance(item, str) or not isinstance(on, bool):
                    raise TypeError
            except (orjson.JSONDecodeError, KeyError, TypeError):
                self.bad += 1
                continue
            (held.add if on else held.discard)(item)
        changed = held != self.items
        self.items = frozenset(held)
        return changed


class HoldsReader(threading.Thread):
    """Reads the holds topic from its start, for the life of the worker, and hands each
    new held set to ``publish`` (a frozenset: never changed under a reader)."""

    def __init__(self, bootstrap: str, topic: str, config: dict,
                 publish: Callable[[frozenset[str]], None]) -> None:  # fmt: skip
        super().__init__(name="holds-reader", daemon=True)
        self.bootstrap, self.topic, self.config = bootstrap, topic, config
        self.publish = publish
        self.holds = Holds()
        self.stop_event = threading.Event()

    def run(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        c = Consumer({
            **self.config,
            "bootstrap.servers": self.bootstrap,
            "group.id": "stratastream-holds-reader",  # required by librdkafka; never used
            "enable.auto.commit": False,
            "fetch.queue.backoff.ms": 10,
        })  # fmt: skip
        c.assign([TopicPartition(self.topic, 0, OFFSET_BEGINNING)])
        try:
            while not self.stop_event.is_set():
                msgs = c.consume(500, 0.5)
                values = [m.value() for m in msgs if m.error() is None and m.value()]
                if values and self.holds.apply(values):
                    self.publish(self.holds.items)
                if self.holds.bad:
                    log.warning("holds topic %s: %d records that are not holds skipped",
                                self.topic, self.holds.bad)  # fmt: skip
                    self.holds.bad = 0
        finally:
            c.close()
