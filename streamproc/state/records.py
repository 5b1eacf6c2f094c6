"""Payload records: what the state store keeps for every retained event.

A record is binary, built in bulk at checkpoints (:class:`RecordColumns`)::

    b"R1" | ts f8 | offset i8 | partition i4 | dim u2 | labels u2 | id bytes u4
          | features f4 x dim | (label length u2, label UTF-8) x labels | id UTF-8 | payload

all little endian; the payload is the event's raw JSON.

>>> import numpy as np
>>> recs = encode_records(np.array([1.5]), np.array([7]), 3, np.ones((1, 2), np.float32),
...                       [["a", "b"]], ["e1"], [b'{"x":1}'])
>>> decode_record(recs[0])["labels"], decode_record(recs[0])["payload"]
(['a', 'b'], b'{"x":1}')
"""

from __future__ import annotations

import struct

import numpy as np

from stratastream.errors import StateError
from streamproc.decode.packed import Packed

MAGIC = b"R1"
_HEAD = struct.Struct("<2sdqiHHI")


def label_blob(labels: list[str]) -> bytes:
    """The labels part of a record."""
    return b"".join(struct.pack("<H", len(e)) + e for e in (x.encode() for x in labels))


def encode_records(
    ts: np.ndarray,
    offsets: np.ndarray,
    partition: int,
    features: np.ndarray,
    labels: list[list[str]],
    ids: list[str],
    payloads: list,
) -> list[bytes]:
    """Records of k events from their columns."""
    blobs: dict[tuple, bytes] = {}
    lbs = []
    for labs in labels:
        t = tuple(labs)
        lb = blobs.get(t)
        lbs.append(lb if lb is not None else blobs.setdefault(t, label_blob(labs)))
    cols = RecordColumns.pack(
        ts,
        offsets,
        partition,
        features,
        np.array([len(x) for x in labels], dtype=np.int64),
        Packed.of(lbs),
        Packed.of([x.encode() for x in ids]),
        Packed.of([bytes(p) for p in payloads]),
    )
    return cols.records(list(range(len(cols))))


class RecordColumns:
    """Records kept as four packed columns (fixed head, labels, id, payload), so that
    many are built without a Python operation per record: heads in one numpy pass, the
    variable parts copied span by span (:class:`~streamproc.packed.Packed`). A record is
    ``head + labels + id + payload``.

    Blocks (see :mod:`streamproc.recordblocks`) store exactly these columns::

        u32 n | 4 x (u32 offsets[n + 1]) | heads | labels | ids | payloads
    """

    def __init__(self, heads: Packed, labels: Packed, ids: Packed, payloads: Packed) -> None:
        self._parts = [(heads, labels, ids, payloads)]

    def columns(self) -> tuple[Packed, Packed, Packed, Packed]:
        """(heads, labels, ids, payloads); parts appended by :meth:`extend` are joined once."""
        if len(self._parts) > 1:
            self._parts = [tuple(Packed.concat(list(c)) for c in zip(*self._parts, strict=True))]
        return self._parts[0]

    def __len__(self) -> int:
        return sum(len(p[0]) for p in self._parts)

    @classmethod
    def empty(cls) -> RecordColumns:
        return cls(Packed.empty(), Packed.empty(), Packed.empty(), Packed.empty())

    @classmethod
    def pack(
        cls,
        ts: np.ndarray,
        offsets: np.ndarray,
        partition: int,
        features: np.ndarray,
        label_counts: np.ndarray,
        label_blobs: Packed,
        ids: Packed,
        payloads: Packed,
    ) -> RecordColumns:
        """From event columns whose variable parts are packed bytes already
        (:func:`label_blob` per record, UTF-8 ids, raw payloads)."""
        k, dim = features.shape
        fixed = np.zeros(k, dtype=fixed_dtype(dim))
        fixed["magic"] = MAGIC
        fixed["ts"] = ts
        fixed["offset"] = offsets
        fixed["partition"] = partition
        fixed["dim"] = dim
        fixed["labels"] = label_counts
        fixed["id"] = np.diff(ids.offsets)
        fixed["features"] = features
        heads = Packed(fixed.tobytes(), np.arange(k + 1, dtype=np.int64) * fixed.dtype.itemsize)
        return cls(heads, label_blobs, ids, payloads)

    @classmethod
    def from_records(cls, records: list[bytes]) -> RecordColumns:
        """Split whole records (e.g. read back from a store) into columns."""
        heads, labels, ids, payloads = [], [], [], []
        for rec in records:
            _, _, _, _, dim, nl, nid = _HEAD.unpack_from(rec)
            p = _HEAD.size + 4 * dim
            q = p
            for _ in range(nl):
                q += 2 + struct.unpack_from("<H", rec, q)[0]
            heads.append(rec[:p])
            labels.append(rec[p:q])
            ids.append(rec[q : q + nid])
            payloads.append(rec[q + nid :])
        return cls(*(Packed.of(c) for c in (heads, labels, ids, payloads)))

    @classmethod
    def from_block(cls, block: bytes, index: np.ndarray) -> RecordColumns:
        """Records ``index`` of a block written by :meth:`to_block`, column by column."""
        cols = _block_columns(block)
        index = np.asarray(index, dtype=np.int64)
        return cls(*(c.take(index) for c in cols))

    @property
    def nbytes(self) -> int:
        """Memory the records hold (values and offsets)."""
        return sum(c.nbytes + c.offsets.nbytes for part in self._parts for c in part)

    def take(self, index: np.ndarray) -> RecordColumns:
        """Records ``index`` (any order, repeats allowed), copied."""
        return RecordColumns(*(c.take(index) for c in self.columns()))

    def extend(self, other: RecordColumns) -> None:
        """Append ``other``'s records (in place; cheap until the columns are read)."""
        self._parts.extend(other._parts)

    def records(self, index: list[int]) -> list[bytes]:
        cols = self.columns()
        return [b"".join(c[i] for c in cols) for i in index]

    def to_block(self) -> bytes:
        cols = self.columns()
        return b"".join(
            [
                struct.pack("<I", len(self)),
                *(c.offsets.astype("<u4").tobytes() for c in cols),
                *(c.data for c in cols),
            ]
        )


def _block_columns(block: bytes) -> list[Packed]:
    """The four packed columns of a block (their data still inside ``block``)."""
    (n,) = struct.unpack_from("<I", block)
    offs = [
        np.frombuffer(block, "<u4", n + 1, 4 + 4 * (n + 1) * c).astype(np.int64) for c in range(4)
    ]
    base = 4 + 16 * (n + 1)
    out = []
    mv = memoryview(block)
    for o in offs:
        out.append(Packed(mv[base : base + int(o[-1])], o))
        base += int(o[-1])
    return out


def block_records(block: bytes, index: list[int]) -> list[bytes]:
    """Records ``index`` of a block written by :meth:`RecordColumns.to_block`."""
    cols = _block_columns(block)
    return [b"".join(bytes(c[i]) for c in cols) for i in index]


def fixed_dtype(dim: int) -> np.dtype:
    return np.dtype(
        [
            ("magic", "S2"),
            ("ts", "<f8"),
            ("offset", "<i8"),
            ("partition", "<i4"),
            ("dim", "<u2"),
            ("labels", "<u2"),
            ("id", "<u4"),
            ("features", "<f4", (dim,)),
        ]
    )


def decode_record(rec: bytes) -> dict:
    """id, ts, labels, features, offset, partition and payload (raw JSON bytes)."""
    if rec[:2] != MAGIC:
        raise StateError(f"payload record: unknown format (starts with {rec[:8]!r})")
    _, ts, offset, partition, dim, nl, nid = _HEAD.unpack_from(rec)
    p = _HEAD.size
    features = np.frombuffer(rec, dtype="<f4", count=dim, offset=p).tolist()
    p += 4 * dim
    labels = []
    for _ in range(nl):
        (n,) = struct.unpack_from("<H", rec, p)
        labels.append(rec[p + 2 : p + 2 + n].decode())
        p += 2 + n
    eid = rec[p : p + nid].decode()
    return {
        "id": eid,
        "ts": ts,
        "labels": labels,
        "features": features,
        "offset": offset,
        "partition": partition,
        "payload": rec[p + nid :],
    }
