"""Shards: one source partition's share of a snapshot, exported by whichever worker owns it.

A shard holds the partition's serialized reservoirs, the next source offset they reflect,
its counters and the payload records of the retained items, kept columnar: the items'
label ids (in the shard's own reservoirs) and keys as arrays, their records as one record
block (:meth:`~streamproc.state.records.RecordColumns.to_block`, row i = item i). Nothing
is split into one object per event on the way from RocksDB to the snapshot.

>>> import numpy as np
>>> from streamproc.state.records import RecordColumns
>>> s = Shard.of(0, 7, {"events": 7}, b"R", np.array([1]), np.array([9], np.uint64),
...              RecordColumns.empty())
>>> decode_shard(encode_shard(s), "p0").next_offset
7
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np

from snapshot_format import SHARDS_DIR, atomic_write
from stratastream.errors import StateError
from streamproc.state.records import RecordColumns
from streamproc.state.store import RecordChanges

SHARD_FORMAT = 2  # 1: one msgpack map entry per record (never read any more)


class Shard(msgspec.Struct):
    partition: int
    next_offset: int
    counters: dict
    reservoirs: bytes
    item_labels: bytes  # little-endian int64: label id in ``reservoirs``
    item_keys: bytes  # little-endian uint64
    block: bytes  # the items' payload records, one block
    format: int = SHARD_FORMAT

    @classmethod
    def of(cls, partition, next_offset, counters, reservoirs, labels, keys, records) -> Shard:
        return cls(
            int(partition),
            int(next_offset),
            dict(counters),
            bytes(reservoirs),
            np.ascontiguousarray(labels, "<i8").tobytes(),
            np.ascontiguousarray(keys, "<u8").tobytes(),
            records.to_block(),
        )

    def labels(self) -> np.ndarray:
        return np.frombuffer(self.item_labels, "<i8")

    def keys(self) -> np.ndarray:
        return np.frombuffer(self.item_keys, "<u8")

    def records(self) -> RecordColumns:
        n = len(self.item_keys) // 8
        return RecordColumns.from_block(self.block, np.arange(n, dtype=np.int64))


def encode_shard(shard: Shard) -> bytes:
    return msgspec.msgpack.encode(shard)


def decode_shard(data: bytes, where: str) -> Shard:
    try:
        s = msgspec.msgpack.decode(data, type=Shard)
    except msgspec.DecodeError as e:
        raise StateError(f"shard {where}: corrupt or of an older format ({e})") from None
    if s.format != SHARD_FORMAT:
        raise StateError(f"shard {where}: format {s.format}, expected {SHARD_FORMAT}")
    if len(s.item_labels) != len(s.item_keys) or len(s.item_keys) % 8:
        raise StateError(f"shard {where}: item arrays disagree")
    return s


def shard_dir(store: Path) -> Path:
    return Path(store) / SHARDS_DIR


def shard_path(shards: Path, partition: int) -> Path:
    return shards / f"p{partition:05d}.shard"


def write_shard(shards: Path, shard: Shard) -> Path:
    shards.mkdir(parents=True, exist_ok=True)
    path = shard_path(shards, shard.partition)
    atomic_write(path, encode_shard(shard))
    return path


def read_shard(shards: Path, partition: int) -> Shard | None:
    p = shard_path(shards, partition)
    if not p.exists():
        return None
    return decode_shard(p.read_bytes(), str(p))


def read_shards(shards: Path) -> list[Shard]:
    return [decode_shard(p.read_bytes(), str(p)) for p in sorted(shards.glob("p*.shard"))]


def export_shard(partition: int, next_offset: int, counters: dict, reservoirs, store) -> Shard:
    """The shard of a partition from its reservoirs and its store's record blocks."""
    it = reservoirs.items()
    records = store.get_record_columns(it.labels, it.keys)
    return Shard.of(partition, next_offset, counters, reservoirs.to_bytes(), it.labels, it.keys,
                    records)  # fmt: skip


def shard_changes(shard: Shard) -> RecordChanges:
    """A shard's records as the changes that load them into an empty partition store."""
    changes = RecordChanges.none()
    keys = shard.keys()
    if keys.size:
        changes.put_labels = shard.labels().astype(np.int64)
        changes.put_keys = keys.astype(np.uint64)
        changes.records = shard.records()
    return changes
