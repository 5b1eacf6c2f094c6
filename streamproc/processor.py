"""One source partition's processing: decode -> sample -> buffer payload changes -> checkpoint.

Kafka-free (the worker feeds it messages and does the I/O around it), so it is tested
directly. Checkpoint order, spelled out (the worker follows it):

1. flush the dead-letter producer (rejects of the offsets being checkpointed are durable),
2. write payload puts/deletes + reservoirs + next offset + counters in one atomic batch,
3. commit ``next_offset`` to Kafka.

A crash anywhere replays from the checkpoint's offset: the reservoirs and counters of the
checkpoint exclude those events, so the replay ends in the state of a run that never died.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import orjson

from sampler import LabelReservoirs, QuotaPolicy, expand_labels

from .decoding import decode_batch
from .events import DecodedBatch, Limits, Reject
from .state import Checkpoint, PartitionStore, payload_key


@dataclass(frozen=True)
class SamplerConfig:
    policy: QuotaPolicy
    mode: str = "uniform"
    half_life: float | None = None
    seed: int = 0
    multilabel: str = "primary"

    def new(self) -> LabelReservoirs:
        return LabelReservoirs(self.policy, self.mode, self.half_life, self.seed)


class PartitionProcessor:
    def __init__(
        self,
        topic: str,
        partition: int,
        store: PartitionStore,
        sampler: SamplerConfig,
        limits: Limits,
        scrub: Callable | None = None,
    ) -> None:
        self.topic, self.partition = topic, partition
        self.store, self.sampler, self.limits, self.scrub = store, sampler, limits, scrub
        ckpt = store.load_checkpoint()
        if ckpt is None:
            self.reservoirs = sampler.new()
            self.next_offset = 0
            self.counters = {"events": 0, "accepted": 0, "rejected": 0, "rows": 0}
        else:
            self.reservoirs = LabelReservoirs.from_bytes(ckpt.reservoirs)
            if not self.reservoirs.compatible_with(sampler.new()):
                from sampler.errors import StateError

                raise StateError(
                    f"partition {partition}: stored reservoirs were built with a "
                    "different sampler configuration; clear the state directory"
                )
            self.next_offset = ckpt.next_offset
            self.counters = dict(ckpt.counters)
        self._puts: dict[bytes, bytes] = {}
        self._deletes: set[bytes] = set()
        self.since_checkpoint = 0
        self.last_checkpoint = time.monotonic()
        self.last_batch: DecodedBatch | None = None

    def process(self, messages: list[tuple[int, bytes | None, float | None]]) -> list[Reject]:
        """Apply messages (offset, value, message ts); offsets below the checkpoint are skipped."""
        self.last_batch = None
        fresh = [m for m in messages if m[0] >= self.next_offset]
        if not fresh:
            return []
        batch = decode_batch(self.topic, self.partition, fresh, self.limits, self.scrub)
        self._apply(batch)
        self.last_batch = batch
        self.next_offset = max(m[0] for m in fresh) + 1
        self.counters["events"] += len(fresh)
        self.counters["accepted"] += len(batch)
        self.counters["rejected"] += len(batch.rejects)
        self.since_checkpoint += len(fresh)
        return batch.rejects

    def _apply(self, b: DecodedBatch) -> None:
        n = len(b)
        if n == 0:
            return
        vocab_ids = self.reservoirs.encode(b.label_vocab)  # a few labels, not n
        ids = vocab_ids[b.label_codes] if b.label_codes.size else np.zeros(0, np.int32)
        rows = expand_labels(b.label_offsets, ids, mode=self.sampler.multilabel)
        ev = rows.event_index
        out = self.reservoirs.update(rows.labels, b.ts[ev], b.keys[ev], rows.weights)
        self.counters["rows"] += int(ev.shape[0])
        self._evict(out)
        names = self.reservoirs.names
        for r in out.admitted.tolist():
            i = int(ev[r])
            pk = payload_key(names[int(rows.labels[r])], int(b.keys[i]))
            self._deletes.discard(pk)
            self._puts[pk] = (
                orjson.dumps(
                    {
                        "id": b.ids[i],
                        "ts": float(b.ts[i]),
                        "labels": b.labels_of(i),
                        "features": b.features[i].tolist(),
                        "offset": int(b.offsets[i]),
                        "partition": self.partition,
                    }
                )
                + b"\n"
                + bytes(b.payloads[i])
            )
        if b.relabel is not None and b.relabel.any():  # corrections replace old labels
            r = np.flatnonzero(b.relabel)
            self._evict(self.reservoirs.relabel(b.keys[r], ids[b.label_offsets[r]]))

    def _evict(self, out) -> None:
        names = self.reservoirs.names
        for lid, key in zip(out.evicted_labels.tolist(), out.evicted_keys.tolist(), strict=True):
            pk = payload_key(names[lid], key)
            if self._puts.pop(pk, None) is None:
                self._deletes.add(pk)

    def boost(self, labels: list[str]) -> None:
        """Raise the quota of scarce labels (known to this partition); other labels may
        shrink, and the payloads of what they evict are deleted at the next checkpoint."""
        known = [x for x in labels if x in self.reservoirs.labels]
        if known and not set(known) <= self.reservoirs.boosted:
            self._evict(self.reservoirs.boost(known))
            self.since_checkpoint += 1  # the new quotas must reach the next checkpoint

    def checkpoint(self) -> Checkpoint:
        ckpt = Checkpoint(self.reservoirs.to_bytes(), self.next_offset, dict(self.counters))
        self.store.write_checkpoint(ckpt, self._puts, self._deletes)
        self._puts, self._deletes = {}, set()
        self.since_checkpoint = 0
        self.last_checkpoint = time.monotonic()
        return ckpt

    def due(self, every_events: int, every_s: float) -> bool:
        return self.since_checkpoint > 0 and (
            self.since_checkpoint >= every_events
            or time.monotonic() - self.last_checkpoint >= every_s
        )
