"""Raw Kafka messages of one partition -> a :class:`DecodedBatch` of columns + rejects.

Plain JSON messages go through one tight loop: msgspec decodes each into a typed struct,
quick checks accept it, and only a failing event goes through :func:`validate` for the
exact reason. Event keys are hashed for the whole batch in numba. Frames are decoded by
:mod:`streamproc.frames`.
"""

from __future__ import annotations

import msgspec
import numpy as np

from .events import (
    FEATURE_MAX,
    DecodedBatch,
    Limits,
    RawEvent,
    Reject,
    labels_of,
    validate,
)
from .frames import FRAME_MAGIC, decode_frame
from .keys import event_keys

_one = msgspec.json.Decoder(RawEvent)


def decode_batch(
    topic: str,
    partition: int,
    messages: list[tuple[int, bytes | None, float | None]],
    limits: Limits,
    scrub=None,
) -> DecodedBatch:
    """Decode (offset, value, message timestamp in s) triples of one partition."""
    rejects: list[Reject] = []
    plain: list[tuple[int, bytes, float | None]] = []
    parts: list[DecodedBatch] = []
    for offset, value, msg_ts in messages:
        if value is None:
            rejects.append(Reject(partition, offset, "value: empty message (tombstone)", b""))
        elif value.startswith(FRAME_MAGIC):
            parts.append(
                decode_frame(topic, partition, offset, value, msg_ts, limits, scrub, rejects)
            )
        elif len(value) > limits.max_event_bytes:
            rejects.append(
                Reject(
                    partition,
                    offset,
                    f"value: {len(value)} bytes exceed max_event_bytes={limits.max_event_bytes}",
                    value[:1024],
                )
            )
        else:
            plain.append((offset, value, msg_ts))
    if plain:
        parts.insert(0, _decode_json(topic, partition, plain, limits, scrub, rejects))
    out = DecodedBatch.concat(parts, partition, limits.feature_dim)
    out.rejects = rejects
    return out


def _decode_json(topic, partition, plain, limits: Limits, scrub, rejects) -> DecodedBatch:
    """One pass over the messages: decode, quick checks, exact reason only on failure.

    (Measured: one Python loop beats several vectorised passes over msgspec objects.)
    """
    dim, cap = limits.feature_dim, limits.max_labels_per_event
    max_future = limits.max_future_s
    offs, ts, codes, counts, feats, payloads, ids = [], [], [], [], [], [], []
    vocab: dict[str, int] = {}
    relabel: list[int] = []
    decode = _one.decode
    for o, v, t in plain:
        try:
            ev = decode(v)
        except msgspec.ValidationError as e:
            rejects.append(Reject(partition, o, f"schema: {e}", v))
            continue
        except msgspec.DecodeError as e:
            rejects.append(Reject(partition, o, f"decode: {e}", v))
            continue
        labs = labels_of(ev, cap)
        f = ev.features
        x = ev.ts
        if (
            labs is None
            or len(f) != dim
            or not (-_INF < x < _INF)
            or (t is not None and x > t + max_future)
            or not _finite(f)
        ):
            rejects.append(Reject(partition, o, validate(ev, limits, t) or "event: invalid", v))
            continue
        payload = bytes(ev.payload)
        if scrub is not None:
            payload, why = scrub(payload)
            if why is not None:
                rejects.append(Reject(partition, o, why, v))
                continue
        offs.append(o)
        ts.append(x)
        for x in labs:
            codes.append(vocab.setdefault(x, len(vocab)))
        counts.append(len(labs))
        feats.append(f)
        payloads.append(payload)
        ids.append(ev.id)
        if ev.relabel:
            relabel.append(len(offs) - 1)
    n = len(offs)
    offsets = np.array(offs, dtype=np.int64)
    out = DecodedBatch(
        partition,
        offsets,
        np.array(ts, dtype=np.float64),
        event_keys(topic, partition, offsets, ids),
        list(vocab),
        np.array(codes, dtype=np.int32),
        np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64),
        np.array(feats, dtype=np.float32).reshape(n, dim),
        payloads,
        [
            e if e is not None else f"{topic}/{partition}/{o}"
            for e, o in zip(ids, offs, strict=True)
        ],
    )
    if relabel:
        out.relabel = np.zeros(n, dtype=bool)
        out.relabel[relabel] = True
    return out


_INF = float("inf")


def _finite(values: list[float]) -> bool:
    for x in values:  # noqa: SIM110 - a plain loop beats all(generator) on this hot path
        if not -FEATURE_MAX <= x <= FEATURE_MAX:  # False for NaN and infinities too
            return False
    return True
