"""Payload records: what the state store keeps for every retained event.

A record is binary, built in bulk at checkpoints (one numpy pass for the fixed part)::

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


def payload_keys(names: list[str], label_ids: np.ndarray, keys: np.ndarray) -> list[bytes]:
    """:func:`payload_key` of many items."""
    lids = np.asarray(label_ids).tolist()
    prefix = {lid: b"p:" + names[lid].encode() + b"\0" for lid in set(lids)}
    kb = np.asarray(keys, dtype=">u8").tobytes()
    return [prefix[lid] + kb[8 * i : 8 * i + 8] for i, lid in enumerate(lids)]


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
    return pack_records(
        ts,
        offsets,
        partition,
        features,
        np.array([len(x) for x in labels], dtype=np.int64),
        lbs,
        [x.encode() for x in ids],
        [bytes(p) for p in payloads],
    )


def pack_records(
    ts: np.ndarray,
    offsets: np.ndarray,
    partition: int,
    features: np.ndarray,
    label_counts: np.ndarray,
    label_blobs: list[bytes],
    ids: list[bytes],
    payloads: list[bytes],
) -> list[bytes]:
    """Records from columns whose variable parts are already bytes (:func:`label_blob`
    per record, UTF-8 ids, raw payloads): one numpy pass and one join per record."""
    k, dim = features.shape
    fixed = np.zeros(
        k,
        dtype=np.dtype(
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
        ),
    )
    fixed["magic"] = MAGIC
    fixed["ts"] = ts
    fixed["offset"] = offsets
    fixed["partition"] = partition
    fixed["dim"] = dim
    fixed["labels"] = label_counts
    fixed["id"] = np.fromiter(map(len, ids), dtype=np.int64, count=k)
    fixed["features"] = features
    fb, w = fixed.tobytes(), fixed.dtype.itemsize
    join = b"".join
    return [
        join((fb[i * w : i * w + w], lb, eid, pay))
        for i, lb, eid, pay in zip(range(k), label_blobs, ids, payloads, strict=True)
    ]


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
