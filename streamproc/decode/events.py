"""Event schema, decoding and validation: raw Kafka messages -> columns + rejects.

One JSON event per message::

    {"id": "evt-1",            # optional; else the key derives from topic/partition/offset
     "ts": 1732300000.25,      # seconds since the epoch (number, finite)
     "label": "login_error",   # or "labels": ["a", "b"] for multi-label events
     "features": [0.1, 2.0],   # numbers, exactly `feature_dim` of them, finite
     "payload": {...}}         # any JSON value, stored as-is (after PII scrubbing)

High-rate producers send *frames* instead: many events in one message, columnar
(:func:`encode_frame` writes them). A frame starts with the bytes ``b"\\x00SSF1"`` followed
by a msgpack map of columns; each of its rows is validated on its own, and a bad row is
dead-lettered with its row index while the good rows are kept.

A rejected message becomes a :class:`Reject` carrying the reason; nothing is dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import msgspec
import numpy as np

from streamproc.decode.columns import ChainColumn
from streamproc.decode.keys import event_keys

MAX_LABEL_CHARS = 128
FEATURE_MAX = 3.0e38  # features are stored as float32


class RawEvent(msgspec.Struct, forbid_unknown_fields=True):
    ts: float
    label: str | None = None
    labels: list[str] | None = None
    features: list[float] = []
    id: str | None = None
    payload: msgspec.Raw = msgspec.Raw(b"null")
    # a correction: the event's labels replace those of any retained event with its id
    relabel: bool = False


@dataclass(frozen=True)
class Limits:
    feature_dim: int = 4
    max_event_bytes: int = 65_536
    max_future_s: float = 3_600.0
    max_labels_per_event: int = 8
    max_message_bytes: int = 64 << 20  # any message, frames included
    # names of the features, for Arrow columns and wire-format fields named after them
    feature_names: tuple[str, ...] = ()
    # readers of Confluent wire-format (Avro, Protobuf) messages; None: not configured
    wire: object | None = field(default=None, compare=False)


@dataclass
class Reject:
    partition: int
    offset: int
    reason: str
    value: bytes


@dataclass
class DecodedBatch:
    """Accepted events of one partition batch, as columns (one row per event).

    Labels are stored as a vocabulary plus CSR codes (row i has the labels
    ``label_vocab[c]`` for ``c`` in ``label_codes[label_offsets[i]:label_offsets[i+1]]``,
    the first being its primary label), so a batch of a million events needs no
    per-event Python list.
    """

    partition: int
    offsets: np.ndarray  # int64 source offset per event
    ts: np.ndarray  # float64
    keys: np.ndarray  # uint64 event keys
    label_vocab: list[str]
    label_codes: np.ndarray  # int32, flat
    label_offsets: np.ndarray  # int64, n + 1
    features: np.ndarray  # float32 [n, feature_dim]
    payloads: list  # raw JSON payload per event (bytes-like; b"null" if absent)
    ids: list[str]  # event id per row (explicit, or derived from its coordinates)
    rejects: list[Reject] = field(default_factory=list)
    relabel: np.ndarray | None = None  # bool per row: corrections (None: none in the batch)
    reference_decoded: int = 0  # messages decoded by the reference path (not the fast path)

    def __len__(self) -> int:
        return int(self.offsets.shape[0])

    @property
    def labels(self) -> list[list[str]]:
        v, c, o = self.label_vocab, self.label_codes.tolist(), self.label_offsets.tolist()
        return [[v[x] for x in c[o[i] : o[i + 1]]] for i in range(len(self))]

    def labels_of(self, i: int) -> list[str]:
        o = self.label_offsets
        return [self.label_vocab[x] for x in self.label_codes[o[i] : o[i + 1]].tolist()]

    def labels_take(self, rows: list[int]) -> list[list[str]]:
        """Labels of many rows at once."""
        v, c, o = self.label_vocab, self.label_codes.tolist(), self.label_offsets
        lo, hi = o[rows].tolist(), o[np.asarray(rows, dtype=np.int64) + 1].tolist()
        return [[v[x] for x in c[a:b]] for a, b in zip(lo, hi, strict=True)]

    def primary_labels(self) -> list[str]:
        vocab = np.asarray(self.label_vocab, dtype=object)
        return vocab[self.label_codes[self.label_offsets[:-1]]].tolist() if len(self) else []

    @classmethod
    def empty(cls, partition: int, dim: int) -> DecodedBatch:
        return cls(
            partition,
            np.zeros(0, np.int64),
            np.zeros(0),
            np.zeros(0, np.uint64),
            [],
            np.zeros(0, np.int32),
            np.zeros(1, np.int64),
            np.zeros((0, dim), np.float32),
            [],
            [],
        )

    @classmethod
    def concat(cls, parts: list[DecodedBatch], partition: int, dim: int) -> DecodedBatch:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty(partition, dim)
        if len(parts) == 1:
            return parts[0]
        vocab: dict[str, int] = {}
        codes, offsets, base = [], [np.zeros(1, np.int64)], 0
        for p in parts:
            remap = np.array(
                [vocab.setdefault(x, len(vocab)) for x in p.label_vocab], dtype=np.int32
            )
            codes.append(remap[p.label_codes])
            offsets.append(p.label_offsets[1:] + base)
            base += p.label_codes.shape[0]
        relabel = None
        if any(p.relabel is not None for p in parts):
            relabel = np.concatenate(
                [p.relabel if p.relabel is not None else np.zeros(len(p), bool) for p in parts]
            )
        return cls(
            partition,
            np.concatenate([p.offsets for p in parts]),
            np.concatenate([p.ts for p in parts]),
            np.concatenate([p.keys for p in parts]),
            list(vocab),
            np.concatenate(codes),
            np.concatenate(offsets),
            np.concatenate([p.features for p in parts]),
            ChainColumn([p.payloads for p in parts]),
            ChainColumn([p.ids for p in parts]),
            relabel=relabel,
        )


def event_key(topic: str, partition: int, offset: int, event_id: str | None) -> int:
    """64-bit key of one event (see :mod:`streamproc.keys`)."""
    return int(event_keys(topic, partition, np.array([offset]), [event_id])[0])


def labels_of(ev: RawEvent, max_labels: int) -> list[str] | None:
    """The event's labels when they are well formed (quick path), else None."""
    if ev.labels is None:
        x = ev.label
        if x is not None and 0 < len(x) <= MAX_LABEL_CHARS and not x.isspace():
            return [x]
        return None
    if ev.label is not None or not 0 < len(ev.labels) <= max_labels:
        return None
    for x in ev.labels:
        if not 0 < len(x) <= MAX_LABEL_CHARS or x.isspace():
            return None
    return list(ev.labels)


def validate(ev: RawEvent, limits: Limits, msg_ts: float | None) -> str | None:
    """Reason the event is invalid, or None. The reason names the field."""
    if not math.isfinite(ev.ts):
        return f"ts: not a finite number ({ev.ts!r})"
    if msg_ts is not None and ev.ts > msg_ts + limits.max_future_s:
        return (
            f"ts: {ev.ts:.3f} is {ev.ts - msg_ts:.0f}s after the message timestamp or the "
            f"worker's clock, whichever is earlier (max_future_s={limits.max_future_s:g})"
        )
    if ev.label is not None and ev.labels is not None:
        return "label/labels: give one of them, not both"
    labels = [ev.label] if ev.label is not None else ev.labels
    if not labels:
        return "label: missing or empty (give 'label' or a non-empty 'labels')"
    if len(labels) > limits.max_labels_per_event:
        n, cap = len(labels), limits.max_labels_per_event
        return f"labels: {n} labels exceed max_labels_per_event={cap}"
    for x in labels:
        if not x.strip():
            return "label: empty string"
        if len(x) > MAX_LABEL_CHARS:
            return f"label: longer than {MAX_LABEL_CHARS} characters"
    if len(ev.features) != limits.feature_dim:
        return f"features: expected {limits.feature_dim} numbers, got {len(ev.features)}"
    for j, f in enumerate(ev.features):
        if not math.isfinite(f):
            return f"features[{j}]: not finite ({f!r})"
        if abs(f) > FEATURE_MAX:
            return f"features[{j}]: {f!r} is outside the float32 range"
    return None
