"""64-bit event keys, computed for a whole batch in numba.

An event with an ``id`` gets FNV-1a-64 of the id's UTF-8 bytes, finished by splitmix64;
an event without one gets splitmix64 of its coordinates (topic, partition, offset, frame
row). The same event therefore has the same key on every machine and every replay.

>>> import numpy as np
>>> a = event_keys("events", 0, np.array([5, 5]), ["x", None])
>>> b = event_keys("events", 0, np.array([9, 5]), ["x", None])
>>> bool(a[0] == b[0]), bool(a[1] == b[1]), bool(a[0] != a[1])
(True, True, True)
"""

from __future__ import annotations

import zlib

import numpy as np
from numba import njit

from sampler.hashing import mix64

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_ROW = np.uint64(0x9E3779B97F4A7C15)


@njit(cache=True)
def _hash_ids(buf, offsets, out, mask):
    for i in range(out.shape[0]):
        if not mask[i]:
            continue
        h = _FNV_OFFSET
        for j in range(offsets[i], offsets[i + 1]):
            h = (h ^ np.uint64(buf[j])) * _FNV_PRIME
        out[i] = mix64(h ^ np.uint64(offsets[i + 1] - offsets[i]))


@njit(cache=True)
def _hash_coords(base, offsets, rows, out, mask):
    for i in range(out.shape[0]):
        if mask[i]:
            continue
        h = mix64(base ^ np.uint64(offsets[i]))
        if rows[i] >= 0:
            h = mix64(h + np.uint64(rows[i] + 1) * _ROW)
        out[i] = h


@njit(cache=True, nogil=True)
def _hash_spans(buf, starts, ends, rows, out):
    for t in range(rows.shape[0]):
        i = rows[t]
        h = _FNV_OFFSET
        for j in range(starts[i], ends[i]):
            h = (h ^ np.uint64(buf[j])) * _FNV_PRIME
        out[t] = mix64(h ^ np.uint64(ends[i] - starts[i]))


def span_keys(
    buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, rows: np.ndarray
) -> np.ndarray:
    """Keys of the events ``rows`` whose ids are the UTF-8 bytes ``buf[starts[r]:ends[r]]``
    (the same keys as :func:`event_keys` gives for those ids as strings)."""
    out = np.empty(rows.shape[0], dtype=np.uint64)
    _hash_spans(buf, starts, ends, np.asarray(rows, dtype=np.int64), out)
    return out


def coordinate_keys(
    topic: str, partition: int, offsets: np.ndarray, rows: np.ndarray | None = None
) -> np.ndarray:
    """Keys of events without ids, from their coordinates (as :func:`event_keys`)."""
    n = offsets.shape[0]
    out = np.zeros(n, dtype=np.uint64)
    base = np.uint64((zlib.crc32(topic.encode()) << 32) ^ (partition << 16) ^ 0x5BD1E995)
    r = np.full(n, -1, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    _hash_coords(base, np.asarray(offsets, dtype=np.int64), r, out, np.zeros(n, dtype=np.bool_))
    return out


def event_keys(
    topic: str,
    partition: int,
    offsets: np.ndarray,
    ids: list[str | None],
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """Keys for events at ``offsets`` (and frame ``rows``, -1 for plain messages)."""
    n = len(ids)
    out = np.zeros(n, dtype=np.uint64)
    has_id = np.fromiter((i is not None for i in ids), dtype=np.bool_, count=n)
    if has_id.any():
        enc = [s.encode() if s is not None else b"" for s in ids]
        lens = np.fromiter((len(e) for e in enc), dtype=np.int64, count=n)
        bounds = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lens, out=bounds[1:])
        buf = np.frombuffer(b"".join(enc), dtype=np.uint8) if bounds[-1] else np.zeros(1, np.uint8)
        _hash_ids(buf, bounds, out, has_id)
    if not has_id.all():
        sel = np.flatnonzero(~has_id)
        r = None if rows is None else np.asarray(rows, dtype=np.int64)[sel]
        out[sel] = coordinate_keys(topic, partition, np.asarray(offsets)[sel], r)
    return out
