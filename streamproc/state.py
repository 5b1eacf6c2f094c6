"""Durable per-partition state: a small store interface and its RocksDB implementation.

One store per source partition holds the payload records of the events its reservoirs
retain, plus the checkpoint: the serialized reservoirs, the next source offset they
reflect and the partition's counters. :meth:`PartitionStore.write_checkpoint` applies
payload puts/deletes and the checkpoint in one atomic RocksDB write batch (WAL written,
fsynced when ``state_sync`` is on), so state and offsets can never disagree. Nothing is
written per event.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import orjson

from sampler.errors import StateError

_META_RES = b"m:reservoirs"
_META_OFFSET = b"m:next_offset"
_META_COUNTERS = b"m:counters"


@dataclass
class Checkpoint:
    reservoirs: bytes
    next_offset: int
    counters: dict = field(default_factory=dict)


class PartitionStore(Protocol):
    def load_checkpoint(self) -> Checkpoint | None: ...

    def write_checkpoint(
        self, ckpt: Checkpoint, puts: dict[bytes, bytes], deletes: set[bytes]
    ) -> None: ...

    def get_many(self, keys: list[bytes]) -> list[bytes | None]: ...

    def close(self) -> None: ...


class RocksPartitionStore:
    """:class:`PartitionStore` on RocksDB (rocksdict), one database per partition."""

    def __init__(self, path: Path, sync: bool = False) -> None:
        from rocksdict import Options, Rdict, WriteOptions

        path.mkdir(parents=True, exist_ok=True)
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        try:
            self._db = Rdict(str(path), options=opts)
        except Exception as e:
            raise StateError(f"cannot open state store at {path}: {e}") from e
        self._wopts = WriteOptions()
        # The WAL is always written (a killed process loses nothing); ``sync`` also fsyncs
        # it per checkpoint. Without, an OS crash may lose the latest checkpoints, never
        # part of one (write batches recover atomically), and the worker resumes from the
        # checkpoint it finds -- it never resumes from a committed Kafka offset.
        self._wopts.sync = sync
        self.path = path

    def load_checkpoint(self) -> Checkpoint | None:
        res = self._db.get(_META_RES)
        if res is None:
            return None
        off = self._db.get(_META_OFFSET)
        cnt = self._db.get(_META_COUNTERS)
        if off is None or cnt is None:
            raise StateError(f"state store {self.path}: checkpoint is incomplete")
        return Checkpoint(bytes(res), struct.unpack(">q", off)[0], orjson.loads(cnt))

    def write_checkpoint(
        self, ckpt: Checkpoint, puts: dict[bytes, bytes], deletes: set[bytes]
    ) -> None:
        from rocksdict import WriteBatch

        wb = WriteBatch(raw_mode=True)
        for k in deletes:
            wb.delete(k)
        for k, v in puts.items():
            wb.put(k, v)
        wb.put(_META_RES, ckpt.reservoirs)
        wb.put(_META_OFFSET, struct.pack(">q", ckpt.next_offset))
        wb.put(_META_COUNTERS, orjson.dumps(ckpt.counters))
        self._db.write(wb, self._wopts)

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        return [None if v is None else bytes(v) for v in self._db[keys]] if keys else []

    def count_payloads(self) -> int:
        it = self._db.iter()
        it.seek(b"p:")
        n = 0
        while it.valid() and bytes(it.key()).startswith(b"p:"):
            n += 1
            it.next()
        return n

    def close(self) -> None:
        self._db.close()
