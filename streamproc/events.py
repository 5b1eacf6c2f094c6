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

from sampler.hashing import mix64_py

MAX_LABEL_CHARS = 128


class RawEvent(msgspec.Struct, forbid_unknown_fields=True):
    ts: float
    label: str | None = None
    labels: list[str] | None = None
    features: list[float] = []
    id: str | None = None
    payload: msgspec.Raw = msgspec.Raw(b"null")


_decoder = msgspec.json.Decoder(RawEvent)


@dataclass(frozen=True)
class Limits:
    feature_dim: int = 4
    max_event_bytes: int = 65_536
    max_future_s: float = 3_600.0
    max_labels_per_event: int = 8


FRAME_MAGIC = b"\x00SSF1"


class Frame(msgspec.Struct, forbid_unknown_fields=True):
    ts: bytes  # float64 little endian, n values
    labels: list[list[str]]  # labels per row
    features: bytes  # float32 little endian, n * dim values
    dim: int
    ids: list[str] | None = None
    payloads: list[bytes] | None = None  # JSON text per row


_frame_decoder = msgspec.msgpack.Decoder(Frame)


def encode_frame(ts, labels, features, ids=None, payloads=None) -> bytes:
    """One message holding many events, columnar.

    ``labels`` is a list of label strings or of label lists; ``features`` an [n, dim]
    array; ``payloads`` optional JSON-serialisable values, one per row.
    """
    ts = np.ascontiguousarray(ts, dtype="<f8")
    feats = np.ascontiguousarray(features, dtype="<f4")
    n = ts.shape[0]
    if feats.ndim != 2 or feats.shape[0] != n:
        raise ValueError(f"features: expected shape ({n}, dim), got {feats.shape}")
    labs = [[x] if isinstance(x, str) else list(x) for x in labels]
    if len(labs) != n:
        raise ValueError(f"labels: expected {n} rows, got {len(labs)}")
    raw = None if payloads is None else [msgspec.json.encode(p) for p in payloads]
    frame = Frame(ts.tobytes(), labs, feats.tobytes(), int(feats.shape[1]), ids, raw)
    return FRAME_MAGIC + msgspec.msgpack.encode(frame)


@dataclass
class Reject:
    partition: int
    offset: int
    reason: str
    value: bytes


@dataclass
class DecodedBatch:
    """Accepted events of one partition batch, as columns (one row per event)."""

    partition: int
    offsets: np.ndarray  # int64 source offset per event
    ts: np.ndarray  # float64
    keys: np.ndarray  # uint64 event keys
    labels: list[list[str]]  # labels per event (first = primary)
    features: np.ndarray  # float32 [n, feature_dim]
    payloads: list[bytes]  # raw JSON payload per event (b"null" if absent)
    ids: list[str]
    rejects: list[Reject] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.offsets.shape[0])


def event_key(topic: str, partition: int, offset: int, event_id: str | None) -> int:
    """64-bit event key: from the event id if given, else from the message's coordinates."""
    if event_id is not None:
        import hashlib

        return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "little")
    import zlib

    t = zlib.crc32(topic.encode())
    return mix64_py((t << 40) ^ (partition << 48) ^ offset ^ 0x5BD1E995)


def validate(ev: RawEvent, limits: Limits, msg_ts: float | None) -> str | None:
    """Reason the event is invalid, or None. The reason names the field."""
    if not math.isfinite(ev.ts):
        return f"ts: not a finite number ({ev.ts!r})"
    if msg_ts is not None and ev.ts > msg_ts + limits.max_future_s:
        return (
            f"ts: {ev.ts:.3f} is {ev.ts - msg_ts:.0f}s after the message timestamp "
            f"(max_future_s={limits.max_future_s:g})"
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
    return None


def decode_batch(
    topic: str,
    partition: int,
    messages: list[tuple[int, bytes | None, float | None]],
    limits: Limits,
    scrub=None,
) -> DecodedBatch:
    """Decode (offset, value, message timestamp in s) triples of one partition."""
    cols = _Columns()
    offs, ts, keys, labels, feats = cols.offs, cols.ts, cols.keys, cols.labels, cols.feats
    payloads, ids = cols.payloads, cols.ids
    rejects: list[Reject] = []
    for offset, value, msg_ts in messages:
        if value is None:
            rejects.append(Reject(partition, offset, "value: empty message (tombstone)", b""))
            continue
        if value.startswith(FRAME_MAGIC):
            _decode_frame(topic, partition, offset, value, msg_ts, limits, scrub, cols, rejects)
            continue
        if len(value) > limits.max_event_bytes:
            rejects.append(
                Reject(
                    partition,
                    offset,
                    f"value: {len(value)} bytes exceed max_event_bytes={limits.max_event_bytes}",
                    value[:1024],
                )
            )
            continue
        try:
            ev = _decoder.decode(value)
        except msgspec.ValidationError as e:
            rejects.append(Reject(partition, offset, f"schema: {e}", value))
            continue
        except msgspec.DecodeError as e:
            rejects.append(Reject(partition, offset, f"decode: {e}", value))
            continue
        reason = validate(ev, limits, msg_ts)
        payload = bytes(ev.payload)
        if reason is None and scrub is not None:
            payload, reason = scrub(payload)
        if reason is not None:
            rejects.append(Reject(partition, offset, reason, value))
            continue
        offs.append(offset)
        ts.append(ev.ts)
        keys.append(event_key(topic, partition, offset, ev.id))
        labels.append([ev.label] if ev.label is not None else list(ev.labels))
        feats.append(ev.features)
        payloads.append(payload)
        ids.append(ev.id if ev.id is not None else f"{topic}/{partition}/{offset}")
    n = len(offs)
    return DecodedBatch(
        partition=partition,
        offsets=np.array(offs, dtype=np.int64),
        ts=np.array(ts, dtype=np.float64),
        keys=np.array(keys, dtype=np.uint64),
        labels=labels,
        features=np.array(feats, dtype=np.float32).reshape(n, limits.feature_dim),
        payloads=payloads,
        ids=ids,
        rejects=rejects,
    )


@dataclass
class _Columns:
    offs: list = field(default_factory=list)
    ts: list = field(default_factory=list)
    keys: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    feats: list = field(default_factory=list)
    payloads: list = field(default_factory=list)
    ids: list = field(default_factory=list)


def _decode_frame(topic, partition, offset, value, msg_ts, limits, scrub, cols, rejects) -> None:
    try:
        fr = _frame_decoder.decode(value[len(FRAME_MAGIC) :])
        ts = np.frombuffer(fr.ts, dtype="<f8")
        n = ts.shape[0]
        if fr.dim != limits.feature_dim:
            raise ValueError(f"dim: expected {limits.feature_dim}, got {fr.dim}")
        feats = np.frombuffer(fr.features, dtype="<f4")
        if feats.shape[0] != n * fr.dim:
            raise ValueError(f"features: {feats.shape[0]} values for {n} rows of dim {fr.dim}")
        feats = feats.reshape(n, fr.dim)
        for name, col in (("labels", fr.labels), ("ids", fr.ids), ("payloads", fr.payloads)):
            if col is not None and len(col) != n:
                raise ValueError(f"{name}: {len(col)} entries for {n} rows")
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as e:
        rejects.append(Reject(partition, offset, f"frame: {e}", value[:4096]))
        return
    bad_ts = ~np.isfinite(ts)
    if msg_ts is not None:
        bad_ts |= ts > msg_ts + limits.max_future_s
    bad_feat = ~np.isfinite(feats).all(axis=1)
    base = event_key(topic, partition, offset, None)
    for i in range(n):
        reason = None
        labs = fr.labels[i]
        if bad_ts[i]:
            reason = f"ts: {float(ts[i])!r} is not finite or too far in the future"
        elif bad_feat[i]:
            reason = "features: not all finite"
        elif not labs or any(not x.strip() or len(x) > MAX_LABEL_CHARS for x in labs):
            reason = "label: missing, empty or too long"
        elif len(labs) > limits.max_labels_per_event:
            reason = f"labels: {len(labs)} labels exceed max_labels_per_event"
        payload = fr.payloads[i] if fr.payloads is not None else b"null"
        if reason is None and fr.payloads is not None:
            try:
                msgspec.json.decode(payload)
            except msgspec.DecodeError as e:
                reason = f"payload: not JSON ({e})"
        if reason is None and scrub is not None:
            payload, reason = scrub(payload)
        if reason is not None:
            row = msgspec.json.encode(
                {"ts": float(ts[i]) if np.isfinite(ts[i]) else None, "labels": labs, "row": i}
            )
            rejects.append(Reject(partition, offset, f"frame row {i}: {reason}", row))
            continue
        eid = fr.ids[i] if fr.ids is not None else None
        cols.offs.append(offset)
        cols.ts.append(float(ts[i]))
        cols.keys.append(
            event_key(topic, partition, offset, eid)
            if eid is not None
            else mix64_py(base + (i + 1) * 0x9E3779B97F4A7C15)
        )
        cols.labels.append(list(labs))
        cols.feats.append(feats[i])
        cols.payloads.append(payload)
        cols.ids.append(eid if eid is not None else f"{topic}/{partition}/{offset}#{i}")
