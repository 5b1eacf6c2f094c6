"""Payload records: what the state store keeps for every retained event.

A record is binary, built in bulk at checkpoints (:class:`RecordColumns`)::

    b"R1" | ts f8 | offset i8 | partition i4 | dim u2 | labels u2 | id bytes u4
          | features f4 x dim | (label length u2, label UTF-8) x labels | id UTF-8 | payload

all little endian; the payload is the event's raw JSON. Records written by earlier
versions (a JSON header line, then the payload) are still read.

>>> import numpy as np
>>> recs = encode_records(np.array([1.5]), np.array([7]), 3, np.ones((1, 2), np.float32),
...                       [["a", "b"]], ["e1"], [b'{"x":1}'])
>>> decode_record(recs[0])["labels"], decode_record(recs[0])["payload"]
(['a', 'b'], b'{"x":1}')
"""

from __future__ import annotations

import struct

import numpy as np
import orjson

from sampler.errors import StateError

MAGIC = b"R1"
_HEAD = struct.Struct("<2sdqiHHI")


def payload_key(label: str, key: int) -> bytes:
    """Store key of one retained item: ``b"p:" + label + b"\\0" + key (u64 big endian)``."""
    return b"p:" + label.encode() + b"\0" + struct.pack(">Q", key)


def parse_payload_key(pk: bytes) -> tuple[str, int]:
    """(label, key) of a :func:`payload_key`."""
    if not pk.startswith(b"p:") or len(pk) < 12 or pk[-9:-8] != b"\0":
        raise StateError(f"payload key: not a payload key ({pk[:40]!r})")
    return pk[2:-9].decode(), struct.unpack(">Q", pk[-8:])[0]


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
        lbs,
        [x.encode() for x in ids],
        [bytes(p) for p in payloads],
    )
    return cols.records(list(range(len(cols))))


class RecordColumns:
    """Records kept as four columns (fixed head, labels, id, payload), so that many are
    built without a Python operation per record: heads in one numpy pass, the variable
    parts joined once each. A record is ``head + labels + id + payload``.

    Blocks (see :mod:`streamproc.recordblocks`) store exactly these columns::

        u32 n | 4 x (u32 offsets[n + 1]) | heads | labels | ids | payloads
    """

    def __init__(self, heads: bytes, head_offsets: np.ndarray, labels, ids, payloads) -> None:
        self._heads, self._offsets = [heads], [head_offsets]
        self._end = int(head_offsets[-1])
        self.labels, self.ids, self.payloads = labels, ids, payloads

    @property
    def heads(self) -> bytes:
        if len(self._heads) > 1:
            self._heads = [b"".join(self._heads)]
        return self._heads[0]

    @property
    def head_offsets(self) -> np.ndarray:
        if len(self._offsets) > 1:
            self._offsets = [np.concatenate(self._offsets)]
        return self._offsets[0]

    def __len__(self) -> int:
        return sum(int(o.shape[0]) for o in self._offsets) - 1

    @classmethod
    def empty(cls) -> RecordColumns:
        return cls(b"", np.zeros(1, np.int64), [], [], [])

    @classmethod
    def pack(
        cls,
        ts: np.ndarray,
        offsets: np.ndarray,
        partition: int,
        features: np.ndarray,
        label_counts: np.ndarray,
        label_blobs: list[bytes],
        ids: list[bytes],
        payloads: list[bytes],
    ) -> RecordColumns:
        """From event columns whose variable parts are bytes already (:func:`label_blob`
        per record, UTF-8 ids, raw payloads)."""
        k, dim = features.shape
        fixed = np.zeros(k, dtype=_fixed_dtype(dim))
        fixed["magic"] = MAGIC
        fixed["ts"] = ts
        fixed["offset"] = offsets
        fixed["partition"] = partition
        fixed["dim"] = dim
        fixed["labels"] = label_counts
        fixed["id"] = np.fromiter(map(len, ids), dtype=np.int64, count=k)
        fixed["features"] = features
        w = fixed.dtype.itemsize
        return cls(
            fixed.tobytes(), np.arange(k + 1, dtype=np.int64) * w, label_blobs, ids, payloads
        )

    @classmethod
    def from_records(cls, records: list[bytes]) -> RecordColumns:
        """Split whole records (e.g. read back from a block) into columns."""
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
        offs = np.zeros(len(records) + 1, np.int64)
        np.cumsum(np.fromiter(map(len, heads), np.int64, len(heads)), out=offs[1:])
        return cls(b"".join(heads), offs, labels, ids, payloads)

    def extend(self, other: RecordColumns) -> None:
        """Append ``other``'s records (in place; cheap until the columns are read)."""
        self._offsets.append(other.head_offsets[1:] + self._end)
        self._end += int(other.head_offsets[-1])
        self._heads.append(other.heads)
        self.labels.extend(other.labels)
        self.ids.extend(other.ids)
        self.payloads.extend(other.payloads)

    def records(self, index: list[int]) -> list[bytes]:
        h = self.head_offsets
        return [
            b"".join((self.heads[h[i] : h[i + 1]], self.labels[i], self.ids[i], self.payloads[i]))
            for i in index
        ]

    def to_block(self) -> bytes:
        n = len(self)
        parts, offsets = [], []
        for col in (self.labels, self.ids, self.payloads):
            o = np.zeros(n + 1, dtype="<u4")
            np.cumsum(np.fromiter(map(len, col), np.int64, n), out=o[1:])
            offsets.append(o)
            parts.append(b"".join(col))
        return b"".join(
            [
                struct.pack("<I", n),
                self.head_offsets.astype("<u4").tobytes(),
                *(o.tobytes() for o in offsets),
                self.heads,
                *parts,
            ]
        )


def block_records(block: bytes, index: list[int]) -> list[bytes]:
    """Records ``index`` of a block written by :meth:`RecordColumns.to_block`."""
    (n,) = struct.unpack_from("<I", block)
    offs = [np.frombuffer(block, "<u4", n + 1, 4 + 4 * (n + 1) * c).tolist() for c in range(4)]
    base = 4 + 16 * (n + 1)
    starts = []
    for c in range(4):
        starts.append(base)
        base += offs[c][-1]
    out = []
    for i in index:
        out.append(
            b"".join(block[starts[c] + offs[c][i] : starts[c] + offs[c][i + 1]] for c in range(4))
        )
    return out


def _fixed_dtype(dim: int) -> np.dtype:
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
        if rec[:1] == b"{":  # written by an earlier version: JSON header line + payload
            head, _, payload = rec.partition(b"\n")
            return {**orjson.loads(head), "payload": payload}
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
