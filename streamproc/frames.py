"""Batched frames: many events in one message, columnar, for high-rate producers.

A frame is ``b"\\x00SSF1"`` followed by a msgpack map: ``ts`` (float64 bytes), ``labels``
(a list of label lists), ``features`` (float32 bytes, row-major), ``dim``, and optional
``ids`` and ``payloads`` (JSON texts). Rows are validated with numpy masks; a bad row is
dead-lettered with its row index, the good rows are kept.

>>> import numpy as np
>>> f = encode_frame([1.0, 2.0], ["a", ["b", "c"]], np.ones((2, 3)))
>>> f[:5] == FRAME_MAGIC
True
"""

from __future__ import annotations

import msgspec
import numpy as np

from .events import FEATURE_MAX, MAX_LABEL_CHARS, DecodedBatch, Limits, Reject
from .keys import event_keys

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


def decode_frame(
    topic: str,
    partition: int,
    offset: int,
    value: bytes,
    msg_ts: float | None,
    limits: Limits,
    scrub,
    rejects: list[Reject],
) -> DecodedBatch:
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
        return DecodedBatch.empty(partition, limits.feature_dim)
    reasons: dict[int, str] = {}
    bad_ts = ~np.isfinite(ts)
    if msg_ts is not None:
        bad_ts |= ts > msg_ts + limits.max_future_s
    for i in np.flatnonzero(bad_ts).tolist():
        reasons[i] = f"ts: {float(ts[i])!r} is not finite or too far in the future"
    bad_feat = ~(np.isfinite(feats) & (np.abs(feats) <= FEATURE_MAX)).all(axis=1)
    for i in np.flatnonzero(bad_feat).tolist():
        reasons.setdefault(i, "features: not all finite")
    cap = limits.max_labels_per_event
    for i, labs in enumerate(fr.labels):
        if not 0 < len(labs) <= cap or any(
            not 0 < len(x) <= MAX_LABEL_CHARS or x.isspace() for x in labs
        ):
            reasons.setdefault(i, f"label: missing, empty, too long, or more than {cap} labels")
    payloads = fr.payloads if fr.payloads is not None else [b"null"] * n
    if fr.payloads is not None:
        for i, p in enumerate(payloads):
            if i not in reasons:
                try:
                    msgspec.json.decode(p)
                except msgspec.DecodeError as e:
                    reasons[i] = f"payload: not JSON ({e})"
    if scrub is not None:
        payloads = list(payloads)
        for i in range(n):
            if i not in reasons:
                payloads[i], why = scrub(payloads[i])
                if why is not None:
                    reasons[i] = why
    for i in sorted(reasons):
        row = msgspec.json.encode(
            {"ts": float(ts[i]) if np.isfinite(ts[i]) else None, "labels": fr.labels[i], "row": i}
        )
        rejects.append(Reject(partition, offset, f"frame row {i}: {reasons[i]}", row))
    good = np.ones(n, dtype=bool)
    good[list(reasons)] = False
    idx = np.flatnonzero(good)
    rows = idx.astype(np.int64)
    ids = [fr.ids[i] for i in idx] if fr.ids is not None else [None] * idx.shape[0]
    keys = event_keys(topic, partition, np.full(idx.shape[0], offset), ids, rows)
    return DecodedBatch(
        partition,
        np.full(idx.shape[0], offset, dtype=np.int64),
        ts[idx].astype(np.float64),
        keys,
        [list(fr.labels[i]) for i in idx],
        feats[idx].astype(np.float32),
        [payloads[i] for i in idx],
        [
            e if e is not None else f"{topic}/{partition}/{offset}#{i}"
            for e, i in zip(ids, idx.tolist(), strict=True)
        ],
    )
