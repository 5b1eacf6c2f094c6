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

from sampler import LabelReservoirs, QuotaPolicy, expand_labels

from .columns import take
from .decoding import decode_batch
from .events import DecodedBatch, Limits, Reject
from .messages import RawMessages
from .records import encode_records, payload_keys
from .state import Checkpoint, PartitionStore


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
        # changes since the checkpoint, keyed by (label id, event key)
        self._pending: dict[tuple[int, int], tuple[int, int]] = {}  # -> (batch, row)
        self._deletes: set[tuple[int, int]] = set()
        self._batches: list[DecodedBatch] = []
        self.since_checkpoint = 0
        self.last_checkpoint = time.monotonic()
        self.last_batch: DecodedBatch | None = None

    def process(
        self, messages: RawMessages | list[tuple[int, bytes | None, float | None]]
    ) -> list[Reject]:
        """Apply messages (columns, or (offset, value, message ts) triples); offsets below
        the checkpoint are skipped."""
        self.last_batch = None
        raw = messages if isinstance(messages, RawMessages) else RawMessages.from_tuples(messages)
        if len(raw) == 0:
            return []
        fresh = raw.offsets >= self.next_offset
        if not fresh.all():
            if not fresh.any():
                return []
            raw = raw.select(fresh)
        batch = decode_batch(self.topic, self.partition, raw, self.limits, self.scrub)
        self._apply(batch)
        self.last_batch = batch
        self.next_offset = int(raw.offsets.max()) + 1
        self.counters["events"] += len(raw)
        self.counters["accepted"] += len(batch)
        self.counters["rejected"] += len(batch.rejects)
        self.since_checkpoint += len(raw)
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
        if out.admitted.size:
            # Records are written at the checkpoint, for the admitted events still retained
            # then: until then an admission is a (label id, key) -> (batch, row) entry.
            r = out.admitted
            at = len(self._batches)
            self._batches.append(b)
            discard = self._deletes.discard
            for item, i in zip(
                zip(rows.labels[r].tolist(), b.keys[ev[r]].tolist(), strict=True),
                ev[r].tolist(),
                strict=True,
            ):
                discard(item)
                self._pending[item] = (at, i)
        if b.relabel is not None and b.relabel.any():  # corrections replace old labels
            r = np.flatnonzero(b.relabel)
            self._evict(self.reservoirs.relabel(b.keys[r], ids[b.label_offsets[r]]))

    def _evict(self, out) -> None:
        pop, add = self._pending.pop, self._deletes.add
        for item in zip(out.evicted_labels.tolist(), out.evicted_keys.tolist(), strict=True):
            if pop(item, None) is None:
                add(item)

    def _records(self) -> dict[bytes, bytes]:
        """Payload records of the pending admissions, built in bulk batch by batch."""
        names = self.reservoirs.names
        by_batch: dict[int, list] = {}
        for item, (at, i) in self._pending.items():
            by_batch.setdefault(at, []).append((item, i))
        puts: dict[bytes, bytes] = {}
        for at, entries in by_batch.items():
            b = self._batches[at]
            idx = [i for _, i in entries]
            recs = encode_records(
                b.ts[idx],
                b.offsets[idx],
                self.partition,
                b.features[idx],
                b.labels_take(idx),
                take(b.ids, idx),
                [bytes(p) for p in take(b.payloads, idx)],
            )
            keys = payload_keys(
                names,
                np.array([lid for (lid, _), _ in entries], dtype=np.int64),
                np.array([key for (_, key), _ in entries], dtype=np.uint64),
            )
            puts.update(zip(keys, recs, strict=True))
        return puts

    def boost(self, labels: list[str]) -> None:
        """Raise the quota of scarce labels (known to this partition); other labels may
        shrink, and the payloads of what they evict are deleted at the next checkpoint."""
        known = [x for x in labels if x in self.reservoirs.labels]
        if known and not set(known) <= self.reservoirs.boosted:
            self._evict(self.reservoirs.boost(known))
            self.since_checkpoint += 1  # the new quotas must reach the next checkpoint

    def checkpoint(self) -> Checkpoint:
        ckpt = Checkpoint(self.reservoirs.to_bytes(), self.next_offset, dict(self.counters))
        deletes = set(
            payload_keys(
                self.reservoirs.names,
                np.array([lid for lid, _ in self._deletes], dtype=np.int64),
                np.array([key for _, key in self._deletes], dtype=np.uint64),
            )
        )
        self.store.write_checkpoint(ckpt, self._records(), deletes)
        self._pending, self._deletes, self._batches = {}, set(), []
        self.since_checkpoint = 0
        self.last_checkpoint = time.monotonic()
        return ckpt

    def due(self, every_events: int, every_s: float) -> bool:
        return self.since_checkpoint > 0 and (
            self.since_checkpoint >= every_events
            or time.monotonic() - self.last_checkpoint >= every_s
        )
