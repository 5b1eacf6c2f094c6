"""Raw Kafka messages of one partition -> a :class:`DecodedBatch` of columns + rejects.

Two paths, one result:

1. **Fast path** (:mod:`streamproc.eventscan`): one numba pass over the batch's buffer
   writes timestamps, features, label codes, relabel flags and the byte spans of ids and
   payloads; numbers it cannot convert exactly are converted by one msgspec call for the
   whole batch; the numeric limits are checked on whole columns.
2. **Reference path**: every message the fast path is not sure of (escapes, non-ASCII
   labels, odd numbers, anything invalid) is decoded on its own by msgspec into a
   :class:`RawEvent`; :func:`validate` gives the exact reason of a reject.

Event keys are hashed straight from the id bytes in numba. Ids and payloads stay in the
buffer until read (only admitted events are). Frames go to :mod:`streamproc.frames`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import msgspec
import numpy as np

from streamproc.decode.arrowframes import decode_arrow
from streamproc.decode.columns import IdColumn, PayloadColumn
from streamproc.decode.events import (
    FEATURE_MAX,
    DecodedBatch,
    Limits,
    RawEvent,
    Reject,
    labels_of,
    validate,
)
from streamproc.decode.eventscan import (
    C_FIXED,
    C_ID_E,
    C_ID_S,
    C_LAB_N,
    C_PAY_E,
    C_PAY_S,
    C_RELABEL,
    C_TS_E,
    C_TS_M,
    FRAME,
    OK,
    OVERSIZED,
    SLOW,
    TOMBSTONE,
    gather_numbers,
    label_codes,
    out_width,
    scan_events,
)
from streamproc.decode.frames import FRAME_MAGIC, decode_frame
from streamproc.decode.jsonscan import exact_values
from streamproc.decode.keys import event_keys, span_keys
from streamproc.decode.messages import RawMessages
from streamproc.decode.wire import WIRE_MAGIC

_one = msgspec.json.Decoder(RawEvent)
_floats = msgspec.json.Decoder(list[float])
_event_json = msgspec.json.Encoder(decimal_format="number")
_INF = float("inf")


def decode_batch(
    topic: str,
    partition: int,
    messages: RawMessages | list[tuple[int, bytes | None, float | None]],
    limits: Limits,
    scrub: Callable | None = None,
    reference_only: bool = False,
    now: float | None = None,
) -> DecodedBatch:
    """Decode the messages of one partition (columns, or (offset, value, ts) triples).
    ``reference_only`` sends every message through msgspec (for tests and comparisons).

    ``max_future_s`` is checked against the message timestamp *or* ``now`` (the worker's
    clock), whichever is earlier: a producer cannot move the bound by setting its
    CreateTime ahead, and messages without a timestamp are checked too."""
    raw = messages if isinstance(messages, RawMessages) else RawMessages.from_tuples(messages)
    now = time.time() if now is None else now
    n, dim, cap = len(raw), limits.feature_dim, limits.max_labels_per_event
    if n == 0:
        return DecodedBatch.empty(partition, dim)
    buf = raw.array
    status = np.empty(n, np.int8)
    out = np.zeros((n, out_width(dim, cap)), np.int64)
    hard = np.empty((n * (1 + dim), 4), np.int64)
    aside, max_bytes = raw.kept_aside(), limits.max_event_bytes
    nhard = scan_events(
        buf, raw.starts, raw.ends, raw.tomb, aside, max_bytes, dim, cap, status, out, hard
    )
    if reference_only:
        status[status == OK] = SLOW
        nhard = 0
    sizes = raw.sizes if raw.sizes is not None else raw.ends - raw.starts
    huge = sizes > limits.max_message_bytes
    if huge.any():  # frames too: no message may exceed max_message_bytes
        status[huge & (status != TOMBSTONE)] = OVERSIZED
    fm, ls = C_FIXED, C_FIXED + 2 * dim
    ts = exact_values(out[:, C_TS_M], out[:, C_TS_E])
    feats = exact_values(out[:, fm : fm + dim], out[:, fm + dim : fm + 2 * dim])
    if nhard:
        _convert_hard(buf, status, ts, feats, hard[:nhard])
    lab_s, lab_e = out[:, ls : ls + cap], out[:, ls + cap : ls + 2 * cap]
    lab_n = out[:, C_LAB_N]
    id_s, id_e = out[:, C_ID_S], out[:, C_ID_E]
    pay_s, pay_e = out[:, C_PAY_S], out[:, C_PAY_E]
    relabel = out[:, C_RELABEL]
    ok = status == OK
    # numeric limits on whole columns (NaN message timestamps compare False)
    ref = np.fmin(raw.msg_ts, now)  # NaN (no message timestamp) -> now
    late = ts > ref + limits.max_future_s
    status[ok & (late | ~(np.abs(feats) <= FEATURE_MAX).all(axis=1))] = SLOW
    codes = np.zeros((n, cap), np.int32)
    ex_s, ex_e = np.zeros(n * cap + 1, np.int64), np.zeros(n * cap + 1, np.int64)
    nv = label_codes(buf, status, lab_s, lab_e, lab_n, codes, ex_s, ex_e)
    vocab = {raw.buf[ex_s[c] : ex_e[c]].decode("ascii"): c for c in range(nv)}

    reference = int((status == SLOW).sum())
    rejects: list[Reject] = []
    frames: list[DecodedBatch] = []
    ids: dict[int, str | None] = {}
    payloads: dict[int, bytes] = {}
    for m in np.flatnonzero(status != OK).tolist():
        st, offset = status[m], int(raw.offsets[m])
        if st == TOMBSTONE:
            rejects.append(Reject(partition, offset, "value: empty message (tombstone)", b""))
        elif st == FRAME:
            v = raw.value(m)
            before = len(rejects)
            try:
                args = (topic, partition, offset, v, float(ref[m]), limits, scrub, rejects)
                if v.startswith(FRAME_MAGIC):
                    frames.append(decode_frame(*args))
                else:  # an Arrow IPC stream or file
                    frames.append(decode_arrow(*args, limits.feature_names))
            except Exception as e:  # noqa: BLE001 - whatever a frame raises, it is a reject
                del rejects[before:]
                why = f"frame: {type(e).__name__}: {e}"
                rejects.append(Reject(partition, offset, why, v[:4096]))
        elif st == OVERSIZED:
            size = int(sizes[m])
            if size > limits.max_message_bytes:
                reason = f"value: {size} bytes exceed max_message_bytes={limits.max_message_bytes}"
            else:
                reason = f"value: {size} bytes exceed max_event_bytes={limits.max_event_bytes}"
            rejects.append(Reject(partition, offset, reason, raw.value(m)[:1024]))
        else:
            v = orig = raw.value(m)
            if v[:1] == WIRE_MAGIC:  # Confluent wire format: Avro or Protobuf
                v = _from_wire(v, partition, offset, limits, rejects)
                if v is None:
                    continue
            ev = _reference(v, partition, offset, float(ref[m]), limits, rejects, orig)
            if ev is None:
                continue
            labs, ts[m], feats[m] = ev[0], ev[1].ts, ev[1].features
            id_s[m] = pay_s[m] = -1  # spans a partial fast scan may have left
            lab_n[m] = len(labs)
            codes[m, : len(labs)] = [vocab.setdefault(x, len(vocab)) for x in labs]
            relabel[m] = int(ev[1].relabel)
            ids[m] = ev[1].id
            payloads[m] = bytes(ev[1].payload)
            status[m] = OK
    if scrub is not None:
        _scrub(raw, status, pay_s, pay_e, payloads, scrub, partition, rejects)

    rows = np.flatnonzero(status == OK)
    out = _assemble(topic, partition, raw, rows, ts, feats, codes, lab_n, list(vocab), id_s,
                    id_e, ids, pay_s, pay_e, payloads, relabel)  # fmt: skip
    out = DecodedBatch.concat([out, *frames], partition, dim) if frames else out
    out.rejects = rejects
    out.reference_decoded = reference
    return out


def _convert_hard(buf, status, ts, feats, hard) -> None:
    """Numbers the fast path left to msgspec, converted in one call for the batch."""
    row, slot, s, e = hard[:, 0], hard[:, 1], hard[:, 2], hard[:, 3]
    out = np.empty(int((e - s).sum()) + row.shape[0] + 2, np.uint8)
    size = gather_numbers(buf, s, e, row.shape[0], out)
    try:
        vals = np.array(_floats.decode(out[:size].tobytes()), dtype=np.float64)
    except (msgspec.DecodeError, msgspec.ValidationError):  # e.g. out of range
        status[np.unique(row)] = SLOW
        return
    at_ts = slot == 0
    ts[row[at_ts]] = vals[at_ts]
    feats[row[~at_ts], slot[~at_ts] - 1] = vals[~at_ts]


def _from_wire(value: bytes, partition: int, offset: int, limits: Limits, rejects):
    """A wire-format record as JSON event text, or None (a reject naming the reason)."""
    sid = int.from_bytes(value[1:5], "big") if len(value) >= 5 else None
    if limits.wire is None:
        why = (
            f"value: Confluent wire format (schema id {sid}) but neither schema_registry_url "
            "nor schema_dir is set"
        )
        rejects.append(Reject(partition, offset, why, value[:4096]))
        return None
    try:
        return _event_json.encode(limits.wire.event(value))
    except Exception as e:  # noqa: BLE001 - WireError, or a value msgspec cannot encode
        why = str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}"
        rejects.append(Reject(partition, offset, f"wire: {why}"[:1000], value[:4096]))
        return None


def _reference(
    value: bytes, partition: int, offset: int, msg_ts, limits: Limits, rejects, dead=None
):
    """(labels, event) of a message the fast path left over, or None (rejected).
    ``dead``: what a reject carries, when not ``value`` (the original wire bytes)."""
    letter = value if dead is None else dead
    try:
        ev = _one.decode(value)
    except msgspec.ValidationError as e:
        rejects.append(Reject(partition, offset, f"schema: {e}", letter))
        return None
    except (msgspec.DecodeError, UnicodeDecodeError) as e:  # msgspec raises the latter
        rejects.append(Reject(partition, offset, f"decode: {e}", letter))  # for bad UTF-8 keys
        return None
    except Exception as e:  # noqa: BLE001 - e.g. RecursionError on deep nesting: a reject
        rejects.append(Reject(partition, offset, f"decode: {type(e).__name__}: {e}", letter))
        return None
    labs = labels_of(ev, limits.max_labels_per_event)
    f, x = ev.features, ev.ts
    if (
        labs is None
        or len(f) != limits.feature_dim
        or not (-_INF < x < _INF)
        or (msg_ts is not None and x > msg_ts + limits.max_future_s)
        or not all(-FEATURE_MAX <= v <= FEATURE_MAX for v in f)
    ):
        rejects.append(Reject(partition, offset, validate(ev, limits, msg_ts) or "event", letter))
        return None
    return labs, ev


def _scrub(raw, status, pay_s, pay_e, payloads, scrub, partition, rejects) -> None:
    """PII scrubbing: per accepted event (configured fields must be looked at)."""
    for m in np.flatnonzero(status == OK).tolist():
        p = payloads.get(m)
        if p is None:
            p = raw.buf[int(pay_s[m]) : int(pay_e[m])] if pay_s[m] >= 0 else b"null"
        clean, why = scrub(p)
        if why is not None:
            rejects.append(Reject(partition, int(raw.offsets[m]), why, raw.value(m)))
            status[m] = SLOW
        else:
            payloads[m] = clean


def _assemble(topic, partition, raw, rows, ts, feats, codes, lab_n, vocab, id_s, id_e, ids,
              pay_s, pay_e, payloads, relabel) -> DecodedBatch:  # fmt: skip
    """The accepted rows, compacted into a DecodedBatch (offset order)."""
    k = rows.shape[0]
    offsets = raw.offsets[rows]
    counts = lab_n[rows]
    label_offsets = np.zeros(k + 1, np.int64)
    np.cumsum(counts, out=label_offsets[1:])
    take = np.arange(codes.shape[1])[None, :] < counts[:, None]
    keys = np.empty(k, np.uint64)
    pos = {int(m): t for t, m in enumerate(rows.tolist())} if ids or payloads else {}
    fast_id = id_s[rows] >= 0
    if fast_id.any():
        sel = np.flatnonzero(fast_id)
        keys[sel] = span_keys(raw.array, id_s, id_e, rows[sel])
    if not fast_id.all():
        sel = np.flatnonzero(~fast_id)
        keys[sel] = event_keys(
            topic, partition, offsets[sel], [ids.get(int(rows[t])) for t in sel.tolist()]
        )
    id_over = {pos[m]: v for m, v in ids.items() if v is not None and m in pos}
    pay_over = {pos[m]: v for m, v in payloads.items() if m in pos}
    out = DecodedBatch(
        partition,
        offsets,
        ts[rows],
        keys,
        vocab,
        codes[rows][take],
        label_offsets,
        feats[rows].astype(np.float32),
        PayloadColumn(raw.buf, pay_s[rows], pay_e[rows], pay_over),
        IdColumn(raw.buf, id_s[rows], id_e[rows], id_over, f"{topic}/{partition}/", offsets),
    )
    rel = relabel[rows] != 0
    if rel.any():
        out.relabel = rel
    return out
