"""One source partition's processing: decode -> sample -> buffer payload changes -> checkpoint.

Kafka-free (the worker feeds it messages and does the I/O around it), so it is tested
directly. When to checkpoint and the order around it (flush the dead letters, write,
commit) belong to :class:`streamproc.worker.checkpointer.Checkpointer`; this class writes
payload puts/deletes + reservoirs + next offset + counters in one atomic batch.

A crash anywhere replays from the checkpoint's offset: the reservoirs and counters of the
checkpoint exclude those events, so the replay ends in the state of a run that never died.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import orjson

from sampler import (
    EVAL_LABEL,
    Grid,
    LabelReservoirs,
    LabelRows,
    QuotaPolicy,
    eval_mask,
    expand_labels,
    group_of,
    stratum_name,
)
from stratastream.errors import ConfigError, LabelOverflowError
from streamproc.decode.columns import pack
from streamproc.decode.decoding import decode_batch
from streamproc.decode.events import DecodedBatch, Limits, Reject
from streamproc.decode.messages import RawMessages
from streamproc.decode.packed import Packed
from streamproc.state.changes import RetainedChanges
from streamproc.state.records import RecordColumns, label_blob
from streamproc.state.store import Checkpoint, PartitionStore, RecordChanges


@dataclass(frozen=True)
class SamplerConfig:
    policy: QuotaPolicy
    mode: str = "uniform"
    half_life: float | None = None
    seed: int = 0
    multilabel: str = "primary"
    # share of events kept out of training in the evaluation reservoir (label EVAL_LABEL,
    # whose capacity the policy sets with a per_label override); 0 turns it off
    eval_fraction: float = 0.0
    # sub-strata inside a label (sampler.strata): the policy must say substrata=True
    substrata: Grid | None = None

    def __post_init__(self) -> None:
        if (self.substrata.spec if self.substrata else "") != self.policy.substrata:
            raise ConfigError("substrata: the grid and QuotaPolicy.substrata (its spec) must agree")

    def new(self) -> LabelReservoirs:
        return LabelReservoirs(self.policy, self.mode, self.half_life, self.seed)


log = logging.getLogger(__name__)

# A fingerprint of the last message a partition processed (a hash of its bytes, at
# ``next_offset - 1``), kept with the checkpoint's counters so that a restarted worker can
# tell whether the log under it is still the one it read (see ``check_log``). Not a count:
# snapshots leave it out of their summed counters.
LOG_FINGERPRINT = "_log_fingerprint"
# events of the evaluation slice per label, kept as counters "eval_seen:<label>"
EVAL_SEEN_PREFIX = "eval_seen:"


def split_counters(counters: dict[str, int]) -> tuple[dict[str, int], dict[str, int]]:
    """(the plain counts, the evaluation slice's events per label) of a partition's
    counters; entries that are not counts (the log fingerprint) are left out.

    >>> split_counters({"events": 3, "eval_seen:a": 1, LOG_FINGERPRINT: 99})
    ({'events': 3}, {'a': 1})
    """
    plain, eval_seen = {}, {}
    for k, v in counters.items():
        if k.startswith(EVAL_SEEN_PREFIX):
            eval_seen[k[len(EVAL_SEEN_PREFIX) :]] = v
        elif not k.startswith("_"):
            plain[k] = v
    return plain, eval_seen


def message_fingerprint(value: bytes | None) -> int:
    """A signed 63-bit hash of a message's bytes (a tombstone has its own value).

    >>> message_fingerprint(b"x") == message_fingerprint(b"x") != message_fingerprint(None)
    True
    """
    data = b"\x00tombstone" if value is None else bytes(value)
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") >> 1


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
            fresh = sampler.new()
            if not self.reservoirs.compatible_with(fresh):
                from stratastream.errors import ConfigError

                raise ConfigError(
                    f"partition {partition}: stored reservoirs were built with a "
                    f"different sampler configuration ({_differences(self.reservoirs, fresh)}); "
                    "restore the settings, or clear the state directory and the shards to "
                    "rebuild from the log"
                )
            self.next_offset = ckpt.next_offset
            self.counters = dict(ckpt.counters)
        if sampler.eval_fraction > 0:  # its slot is taken before labels can fill the space
            self.reservoirs.encode([EVAL_LABEL])
        # retained-set changes since the checkpoint; admissions point into _pending
        self._changes = RetainedChanges()
        self._pending = RecordColumns.empty()  # records of the admitted events
        self.pending_bytes = 0  # memory the pending admissions keep alive
        self.since_checkpoint = 0
        self.checkpointed_offset = self.next_offset  # durable in the store
        self.committed_offset = self.next_offset  # committed to Kafka (set by the worker)
        self.last_checkpoint = time.monotonic()
        self.last_batch: DecodedBatch | None = None
        # the first messages after opening must show that the log is the one checkpointed
        self.log_checked = self.next_offset == 0

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
        batch = self._decode(raw)
        dropped = self._apply(batch)
        self.last_batch = batch
        last = int(np.argmax(raw.offsets))
        self.next_offset = int(raw.offsets[last]) + 1
        self.counters[LOG_FINGERPRINT] = message_fingerprint(raw.value(last))
        self.counters["events"] += len(raw)
        self.counters["accepted"] += len(batch) - dropped
        self.counters["rejected"] += len(batch.rejects)
        self.since_checkpoint += len(batch) + len(batch.rejects) - dropped  # frame rows too
        return batch.rejects

    def resume_offset(self) -> int:
        """Where the consumer should start: one message before the checkpoint, so that
        :meth:`check_log` sees the last message processed again (it is skipped)."""
        return self.next_offset - 1 if not self.log_checked else self.next_offset

    def check_log(self, raw: RawMessages) -> str | None:
        """On the first messages after opening, whether the log is still the one this
        partition's checkpoint was taken on: the message at ``next_offset - 1`` must come
        first, with the bytes processed then. None when it is (or cannot be told: the
        log start moved exactly to ``next_offset``, nothing lost); otherwise what changed.
        """
        if self.log_checked or len(raw) == 0:
            return None
        self.log_checked = True
        n = self.next_offset
        first = int(np.argmin(raw.offsets))
        at = int(raw.offsets[first])
        if at == n:
            return None  # the log starts at our position: nothing is missing
        if at > n:
            return (
                f"the log now starts at offset {at}, after the checkpoint's {n}: the "
                f"{at - n} events in [{n}, {at}) are gone (retention, deletion or a restore)"
            )
        if at < n - 1:
            return (
                f"offset {n - 1}, the last one processed, is beyond the log's end: the log "
                f"was truncated or recreated (consuming restarted at offset {at})"
            )
        want = self.counters.get(LOG_FINGERPRINT)
        if want is not None and message_fingerprint(raw.value(first)) != want:
            return (
                f"the message at offset {n - 1} is not the one processed: the topic was "
                "recreated or restored under the same name"
            )
        return None

    def _decode(self, raw: RawMessages) -> DecodedBatch:
        """Decode a batch; should the decoder raise (a defect, not bad input: bad input is
        a reject), decode message by message so that only the message that raises is
        dead-lettered and the partition moves on."""
        args = (self.topic, self.partition)
        try:
            return decode_batch(*args, raw, self.limits, self.scrub)
        except Exception:  # noqa: BLE001 - isolate the message, never stop the partition
            log.exception("partition %d: batch decode failed; decoding one by one", self.partition)
        parts, rejects = [], []
        for i in range(len(raw)):
            one = raw.select(np.array([i]))
            try:
                b = decode_batch(*args, one, self.limits, self.scrub)
            except Exception as e:  # noqa: BLE001
                offset = int(raw.offsets[i])
                why = f"internal: {type(e).__name__}: {e}"[:500]
                rejects.append(Reject(self.partition, offset, why, (raw.value(i) or b"")[:4096]))
                continue
            parts.append(b)
            rejects += b.rejects
        out = DecodedBatch.concat(parts, self.partition, self.limits.feature_dim)
        out.rejects = rejects
        return out

    def _label_ids(self, b: DecodedBatch) -> np.ndarray:
        """Label id per vocabulary entry, registering only labels that rows use (a frame
        may list names no row has); -1 for a label the ``error`` overflow policy refuses."""
        vocab_ids = np.full(len(b.label_vocab), -1, np.int32)
        used = np.unique(b.label_codes)
        used = used[[b.label_vocab[i] != EVAL_LABEL for i in used.tolist()]]  # reserved
        names = [b.label_vocab[i] for i in used.tolist()]
        try:
            vocab_ids[used] = self.reservoirs.encode(names)  # a few labels, not n
        except LabelOverflowError:  # on_label_overflow=error: only the rows that overflow
            for i, name in zip(used.tolist(), names, strict=True):
                with contextlib.suppress(LabelOverflowError):
                    vocab_ids[i] = self.reservoirs.encode([name])[0]
        return vocab_ids

    def _stratum_ids(self, b: DecodedBatch) -> np.ndarray:
        """Per label entry: the id of its stratum (the label and the event's cell), -1
        where refused (the reserved label, or beyond max_labels under ``error``)."""
        grid = self.sampler.substrata
        if not b.label_codes.size:
            return np.zeros(0, np.int32)
        row_of = np.repeat(np.arange(len(b)), np.diff(b.label_offsets))
        pair = b.label_codes.astype(np.int64) * grid.n_cells + grid.cells(b.features)[row_of]
        uniq, inv = np.unique(pair, return_inverse=True)  # a few strata, not n
        out = np.full(uniq.shape[0], -1, np.int32)
        for i, u in enumerate(uniq.tolist()):
            label = b.label_vocab[u // grid.n_cells]
            if label != EVAL_LABEL:
                with contextlib.suppress(LabelOverflowError):
                    out[i] = self.reservoirs.encode([stratum_name(label, u % grid.n_cells)])[0]
        return out[inv.reshape(-1)]

    def _apply(self, b: DecodedBatch) -> int:
        """Sample the batch; the number of its rows refused (label overflow)."""
        n = len(b)
        if n == 0:
            return 0
        if self.sampler.substrata is not None:
            ids = self._stratum_ids(b)
        else:
            vocab_ids = self._label_ids(b)
            ids = vocab_ids[b.label_codes] if b.label_codes.size else np.zeros(0, np.int32)
        refused = np.zeros(n, bool)
        if (ids < 0).any():
            row_of = np.repeat(np.arange(n), np.diff(b.label_offsets))
            refused[row_of[ids < 0]] = True
            cap = self.reservoirs.policy.max_labels
            for i in np.flatnonzero(refused).tolist():
                what = "(label, cell) strata" if self.sampler.substrata else "distinct labels"
                why = f"label: more than max_labels={cap} {what} (on_label_overflow=error)"
                if EVAL_LABEL in b.labels_of(i):
                    why = f"label: {EVAL_LABEL!r} is reserved for the evaluation slice"
                row = orjson.dumps({"id": b.ids[i], "labels": b.labels_of(i)})
                b.rejects.append(Reject(self.partition, int(b.offsets[i]), why, row))
        rows = expand_labels(b.label_offsets, np.maximum(ids, 0), mode=self.sampler.multilabel)
        if refused.any():
            keep = np.flatnonzero(~refused[rows.event_index])
            rows = type(rows)(
                event_index=rows.event_index[keep], labels=rows.labels[keep],
                weights=rows.weights[keep],
            )  # fmt: skip
        sel = eval_mask(b.keys, self.sampler.seed, self.sampler.eval_fraction)  # per event
        rows = self._eval_slice(b, rows, sel)
        ev = rows.event_index
        out = self.reservoirs.update(rows.labels, b.ts[ev], b.keys[ev], rows.weights)
        self.counters["rows"] += int(ev.shape[0])
        self._evict(out)
        if out.admitted.size:
            # An admitted event's payload record is built now, for the batch at once, and
            # kept pending (the consumed batch's buffer is freed); the checkpoint writes
            # the pending records of the items still retained then. The change log points
            # each admission at its pending record.
            r = out.admitted
            kept, row = np.unique(ev[r], return_inverse=True)
            self._changes.admit(rows.labels[r], b.keys[ev[r]], len(self._pending) + row)
            recs = self._record_columns(b, kept)
            self._pending.extend(recs)
            self.pending_bytes += recs.nbytes
        if b.relabel is not None and b.relabel.any():  # corrections replace old labels
            r = np.flatnonzero(b.relabel & ~refused & ~sel)
            self._evict(self.reservoirs.relabel(b.keys[r], ids[b.label_offsets[r]]))
        return int(refused.sum())

    def _eval_slice(self, b: DecodedBatch, rows: LabelRows, sel: np.ndarray) -> LabelRows:
        """Rows of the evaluation slice's events go to the evaluation reservoir instead:
        one row per event (weight 1) under EVAL_LABEL; their label rows are only counted
        (``eval_seen:<label>`` counters), so seen counts still cover every event."""
        if not sel.any() or rows.event_index.shape[0] == 0:
            return rows
        in_eval = sel[rows.event_index]
        if not in_eval.any():
            return rows
        names = self.reservoirs.names
        counts = np.bincount(rows.labels[in_eval], minlength=len(names))
        for lid in np.flatnonzero(counts).tolist():
            key = f"{EVAL_SEEN_PREFIX}{group_of(names[lid])}"  # counted per label
            self.counters[key] = self.counters.get(key, 0) + int(counts[lid])
        events = np.unique(rows.event_index[in_eval])
        eval_id = int(self.reservoirs.encode([EVAL_LABEL])[0])
        if b.relabel is not None and b.relabel[events].any():
            # a corrected event of the slice replaces its copy (new labels in its record)
            r = events[b.relabel[events]]
            self._evict(self.reservoirs.relabel(b.keys[r], np.full(r.shape[0], -1)))
        keep = ~in_eval
        return LabelRows(
            np.concatenate([rows.event_index[keep], events]),
            np.concatenate([rows.labels[keep], np.full(events.shape[0], eval_id, np.int32)]),
            np.concatenate([rows.weights[keep], np.ones(events.shape[0])]),
        )

    def _evict(self, out) -> None:
        self._changes.evict(out.evicted_labels, out.evicted_keys)

    def _record_columns(self, b: DecodedBatch, idx: np.ndarray) -> RecordColumns:
        """Payload records of rows ``idx`` of a batch, column by column."""
        lo, hi = b.label_offsets[idx], b.label_offsets[idx + 1]
        if ((hi - lo) == 1).all():  # one label per row: one blob per vocabulary entry
            vocab = Packed.of([label_blob([x]) for x in b.label_vocab])
            blobs = vocab.take(b.label_codes[lo])
        else:
            blobs = Packed.of([label_blob(x) for x in b.labels_take(idx.tolist())])
        return RecordColumns.pack(
            b.ts[idx],
            b.offsets[idx],
            self.partition,
            b.features[idx],
            hi - lo,
            blobs,
            self._ids(b, idx),
            pack(b.payloads, idx),
        )

    def _ids(self, b: DecodedBatch, idx: np.ndarray) -> Packed:
        """Ids of admitted rows as stored: pseudonyms when the PII policy hashes ids."""
        ids = pack(b.ids, idx)
        if self.scrub is not None and getattr(self.scrub, "hash_ids", False):
            ids = Packed.of([self.scrub.pseudonym(v.decode()).encode() for v in ids.values()])
        return ids

    def boost(self, labels: list[str]) -> None:
        """Raise the quota of scarce labels (known to this partition); other labels may
        shrink, and the payloads of what they evict are deleted at the next checkpoint."""
        present = {group_of(n) for n in self.reservoirs.labels}  # labels, not strata
        known = [x for x in labels if x in present]
        if known and not set(known) <= self.reservoirs.boosted:
            self._evict(self.reservoirs.boost(known))
            self.since_checkpoint += 1  # the new quotas must reach the next checkpoint

    def checkpoint(self) -> Checkpoint:
        ckpt = Checkpoint(self.reservoirs.to_bytes(), self.next_offset, dict(self.counters))
        puts, gone = self._changes.resolve()
        changes = RecordChanges(
            puts.labels, puts.keys, self._pending.take(puts.rows), gone.labels, gone.keys
        )
        self.store.write_checkpoint(ckpt, changes)
        self._changes.clear()
        self._pending = RecordColumns.empty()
        self.pending_bytes = 0
        self.checkpointed_offset = self.next_offset
        self.since_checkpoint = 0
        self.last_checkpoint = time.monotonic()
        return ckpt


def _differences(stored: LabelReservoirs, wanted: LabelReservoirs) -> str:
    """Which sampler settings differ, as ``name: stored -> configured``."""
    out = []
    for name in ("mode", "half_life", "seed", "time_origin"):
        a, b = getattr(stored, name), getattr(wanted, name)
        if a != b:
            out.append(f"{name}: {a!r} -> {b!r}")
    pa, pb = stored.policy.to_dict(), wanted.policy.to_dict()
    out += [f"policy.{k}: {pa[k]!r} -> {pb[k]!r}" for k in pa if pa[k] != pb.get(k)]
    return ", ".join(out) or "unknown difference"
