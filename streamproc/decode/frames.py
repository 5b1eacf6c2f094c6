"""Batched frames: many events in one message, columnar, for high-rate producers.

A frame is ``b"\\x00SSF1"`` followed by a msgpack map of columns, n rows:

==================  ==================================================================
``ts``              float64 little endian, n values (seconds)
``features``        float32 little endian, n x ``dim`` values, row-major
``dim``             features per row
``label_vocab``     the distinct label names of the frame
``label_codes``     int32: indexes into ``label_vocab``, flat over the rows
``label_offsets``   optional int64, n + 1 (CSR) for multi-label rows; absent = 1 per row
``id_bytes``        optional event ids, UTF-8, concatenated (else keys derive from
                    topic/partition/offset/row) ...
``id_offsets``      ... and their uint32 bounds, n + 1 (row i: ``id_bytes[o[i]:o[i+1]]``)
``ids``             optional, older form of the ids: a list of strings
``payloads``        optional: one JSON array text with n elements
==================  ==================================================================

Every check runs on whole columns (numpy masks, one msgspec call for all payloads, one
UTF-8 check for all ids) and event keys are hashed from the id bytes in numba, so a frame
costs no per-row Python; a bad row is dead-lettered with its row index while the good
rows are kept.

>>> import numpy as np
>>> f = encode_frame([1.0, 2.0], ["a", ["b", "c"]], np.ones((2, 3)))
>>> f[:5] == FRAME_MAGIC
True
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec
import numpy as np

from streamproc.decode.columns import IdColumn, PayloadColumn
from streamproc.decode.events import FEATURE_MAX, MAX_LABEL_CHARS, DecodedBatch, Limits, Reject
from streamproc.decode.keys import coordinate_keys, span_keys

FRAME_MAGIC = b"\x00SSF1"
ARROW_STREAM = b"\xff\xff\xff\xff"  # an Arrow IPC stream (continuation marker)
ARROW_FILE = b"ARROW1"  # an Arrow IPC file
COLUMNAR = (FRAME_MAGIC, ARROW_STREAM, ARROW_FILE)  # what a columnar message starts with


class Frame(msgspec.Struct, forbid_unknown_fields=True):
    ts: bytes
    features: bytes
    dim: int
    label_vocab: list[str]
    label_codes: bytes
    label_offsets: bytes | None = None
    ids: list[str] | None = None
    payloads: bytes | None = None
    id_bytes: bytes | None = None
    id_offsets: bytes | None = None


_frame_decoder = msgspec.msgpack.Decoder(Frame)
_raw_list = msgspec.json.Decoder(list[msgspec.Raw])


def encode_frame(ts, labels, features, ids=None, payloads=None) -> bytes:
    """One message holding many events, columnar.

    ``labels``: per row a label string or a list of labels; ``features``: an [n, dim]
    array; ``payloads``: optional JSON-serialisable values, one per row.
    """
    ts = np.ascontiguousarray(ts, dtype="<f8")
    feats = np.ascontiguousarray(features, dtype="<f4")
    n = ts.shape[0]
    if feats.ndim != 2 or feats.shape[0] != n:
        raise ValueError(f"features: expected shape ({n}, dim), got {feats.shape}")
    if len(labels) != n:
        raise ValueError(f"labels: expected {n} rows, got {len(labels)}")
    vocab: dict[str, int] = {}
    codes, counts = [], []
    for row in labels:
        row = [row] if isinstance(row, str) else list(row)
        codes += [vocab.setdefault(x, len(vocab)) for x in row]
        counts.append(len(row))
    multi = any(c != 1 for c in counts)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype("<i8") if multi else None
    id_bytes = id_offsets = None
    if ids is not None:
        if len(ids) != n:
            raise ValueError(f"ids: expected {n} rows, got {len(ids)}")
        enc = [x.encode() for x in ids]
        id_bytes = b"".join(enc)
        id_offsets = np.concatenate([[0], np.cumsum([len(e) for e in enc])]).astype("<u4")
    frame = Frame(
        ts.tobytes(),
        feats.tobytes(),
        int(feats.shape[1]),
        list(vocab),
        np.asarray(codes, dtype="<i4").tobytes(),
        None if offsets is None else offsets.tobytes(),
        None,
        None if payloads is None else msgspec.json.encode(list(payloads)),
        id_bytes,
        None if id_offsets is None else id_offsets.tobytes(),
    )
    return FRAME_MAGIC + msgspec.msgpack.encode(frame)


def _columns(fr: Frame, limits: Limits):
    ts = np.frombuffer(fr.ts, dtype="<f8")
    n = ts.shape[0]
    if fr.dim != limits.feature_dim:
        raise ValueError(f"dim: expected {limits.feature_dim}, got {fr.dim}")
    feats = np.frombuffer(fr.features, dtype="<f4")
    if feats.shape[0] != n * fr.dim:
        raise ValueError(f"features: {feats.shape[0]} values for {n} rows of dim {fr.dim}")
    codes = np.frombuffer(fr.label_codes, dtype="<i4")
    if fr.label_offsets is None:
        offsets = np.arange(n + 1, dtype=np.int64)
    else:
        offsets = np.frombuffer(fr.label_offsets, dtype="<i8").astype(np.int64)
        if offsets.shape[0] != n + 1 or offsets[0] != 0 or (np.diff(offsets) < 0).any():
            raise ValueError("label_offsets: not n + 1 non-decreasing offsets from 0")
    if offsets[-1] != codes.shape[0]:
        raise ValueError(f"label_codes: {codes.shape[0]} codes for {offsets[-1]} labels")
    if codes.size and (codes.min() < 0 or codes.max() >= len(fr.label_vocab)):
        raise ValueError("label_codes: code outside label_vocab")
    payloads = None
    if fr.payloads is not None:
        payloads = _raw_list.decode(fr.payloads)  # one call checks every payload's JSON
        if len(payloads) != n:
            raise ValueError(f"payloads: {len(payloads)} entries for {n} rows")
    return ts, feats.reshape(n, fr.dim), codes.astype(np.int32), offsets, payloads


def _id_spans(fr: Frame, n: int):
    """(UTF-8 id bytes, start per row, end per row) or None when the frame has no ids."""
    if fr.ids is not None:
        if fr.id_bytes is not None or fr.id_offsets is not None:
            raise ValueError("ids: give either ids or id_bytes/id_offsets, not both")
        if len(fr.ids) != n:
            raise ValueError(f"ids: {len(fr.ids)} entries for {n} rows")
        enc = [x.encode() for x in fr.ids]
        bounds = np.concatenate([[0], np.cumsum([len(e) for e in enc])]).astype(np.int64)
        return b"".join(enc), bounds[:-1], bounds[1:]
    if fr.id_bytes is None and fr.id_offsets is None:
        return None
    if fr.id_bytes is None or fr.id_offsets is None:
        raise ValueError("id_bytes/id_offsets: give both")
    bounds = np.frombuffer(fr.id_offsets, dtype="<u4").astype(np.int64)
    if (
        bounds.shape[0] != n + 1
        or bounds[0] != 0
        or bounds[-1] != len(fr.id_bytes)
        or (np.diff(bounds) < 0).any()
    ):
        raise ValueError(f"id_offsets: not n + 1 = {n + 1} non-decreasing bounds of id_bytes")
    try:
        fr.id_bytes.decode()
    except UnicodeDecodeError as e:
        raise ValueError(f"id_bytes: not UTF-8 ({e.reason} at byte {e.start})") from None
    raw = np.frombuffer(fr.id_bytes, dtype=np.uint8)
    starts, ends = bounds[:-1], bounds[1:]
    inner = starts[(starts < ends)]
    if inner.size and ((raw[inner] & 0xC0) == 0x80).any():
        raise ValueError("id_offsets: a bound splits a UTF-8 character")
    return fr.id_bytes, starts, ends


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
        ts, feats, codes, loffs, payloads = _columns(fr, limits)
        id_spans = _id_spans(fr, ts.shape[0])
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as e:
        rejects.append(Reject(partition, offset, f"frame: {e}", value[:4096]))
        return DecodedBatch.empty(partition, limits.feature_dim)
    except RecursionError:  # a payload nested deeper than the decoder's stack
        why = "frame: payloads: nested too deeply"
        rejects.append(Reject(partition, offset, why, value[:4096]))
        return DecodedBatch.empty(partition, limits.feature_dim)
    cols = FrameColumns(ts, feats, list(fr.label_vocab), codes, loffs, payloads, id_spans)
    return frame_batch(topic, partition, offset, msg_ts, limits, scrub, rejects, cols)


@dataclass
class FrameColumns:
    """The columns of one columnar message (a frame, an Arrow record batch), before the
    per-row checks: ``codes``/``loffs`` are the label CSR into ``vocab``; ``id_spans`` is
    (UTF-8 bytes, starts, ends) or None; ``reasons`` holds rows the reader already found
    bad (row index -> reason)."""

    ts: np.ndarray
    feats: np.ndarray
    vocab: list[str]
    codes: np.ndarray
    loffs: np.ndarray
    payloads: list | None
    id_spans: tuple | None
    reasons: dict[int, str] = field(default_factory=dict)


def frame_batch(
    topic: str,
    partition: int,
    offset: int,
    msg_ts: float | None,
    limits: Limits,
    scrub,
    rejects: list[Reject],
    cols: FrameColumns,
) -> DecodedBatch:
    """Check every row of a columnar message on whole columns, dead-letter the bad rows
    with their row index and return the good ones."""
    ts, feats, codes, loffs = cols.ts, cols.feats, cols.codes, cols.loffs
    payloads, id_spans = cols.payloads, cols.id_spans
    n = ts.shape[0]
    reasons: dict[int, str] = dict(cols.reasons)
    bad_ts = ~np.isfinite(ts)
    if msg_ts is not None:
        bad_ts |= ts > msg_ts + limits.max_future_s
    for i in np.flatnonzero(bad_ts).tolist():
        reasons.setdefault(i, f"ts: {float(ts[i])!r} is not finite or too far in the future")
    bad_feat = ~(np.isfinite(feats) & (np.abs(feats) <= FEATURE_MAX)).all(axis=1)
    for i in np.flatnonzero(bad_feat).tolist():
        reasons.setdefault(i, "features: not all finite")
    bad_vocab = np.array(
        [not 0 < len(x) <= MAX_LABEL_CHARS or x.isspace() for x in cols.vocab] + [False],
        dtype=bool,
    )
    per_row = np.diff(loffs)
    row_of_code = np.repeat(np.arange(n), per_row)
    bad_label = (per_row < 1) | (per_row > limits.max_labels_per_event)
    if bad_vocab.any() and codes.size:
        bad_label[row_of_code[bad_vocab[codes]]] = True
    for i in np.flatnonzero(bad_label).tolist():
        reasons.setdefault(
            i, f"label: missing, empty, too long, or more than {limits.max_labels_per_event} labels"
        )
    if payloads is None and scrub is not None:
        payloads = [b"null"] * n
    if scrub is not None:
        payloads = [bytes(p) for p in payloads]
        for i in range(n):
            if i not in reasons:
                payloads[i], why = scrub(payloads[i])
                if why is not None:
                    reasons[i] = why
    keep = np.ones(n, dtype=bool)
    for i in sorted(reasons):
        labs = [cols.vocab[c] for c in codes[loffs[i] : loffs[i + 1]].tolist()]
        row = msgspec.json.encode(
            {"ts": float(ts[i]) if np.isfinite(ts[i]) else None, "labels": labs, "row": i}
        )
        rejects.append(Reject(partition, offset, f"frame row {i}: {reasons[i]}", row))
        keep[i] = False
    idx = np.flatnonzero(keep)
    base = f"{topic}/{partition}/{offset}#"
    if id_spans is None:
        keys = coordinate_keys(topic, partition, np.full(idx.shape[0], offset), idx)
        none = np.full(idx.shape[0], -1, dtype=np.int64)
        ids = IdColumn(b"", none, none, {}, base, idx)
    else:
        id_buf, starts, ends = id_spans
        arr = np.frombuffer(id_buf, dtype=np.uint8) if id_buf else np.zeros(1, np.uint8)
        keys = span_keys(arr, starts, ends, idx)
        ids = IdColumn(id_buf, starts[idx], ends[idx], {}, base, idx)
    if reasons:  # re-pack the label CSR for the kept rows
        counts = per_row[idx]
        codes = codes[keep[row_of_code]]
        loffs = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        if payloads is not None:
            payloads = [payloads[i] for i in idx.tolist()]
    if payloads is None:  # no payload column: every row's payload is null
        none = np.full(idx.shape[0], -1, dtype=np.int64)
        payloads = PayloadColumn(b"", none, none, {})
    return DecodedBatch(
        partition,
        np.full(idx.shape[0], offset, dtype=np.int64),
        ts[idx].astype(np.float64),
        keys,
        list(cols.vocab),
        codes,
        loffs,
        feats[idx].astype(np.float32),
        payloads,
        ids,
    )
