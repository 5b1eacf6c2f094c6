"""Durable per-partition state: a small store interface and its RocksDB implementation.

One store per source partition holds the payload records of the events its reservoirs
retain, plus the checkpoint: the serialized reservoirs, the next source offset they
reflect and the partition's counters. :meth:`PartitionStore.write_checkpoint` applies
record changes and the checkpoint in one atomic RocksDB write batch (WAL written,
fsynced when ``state_sync`` is on), so state and offsets can never disagree. Nothing is
written per event.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import orjson

from sampler.errors import StateError

from .recordblocks import RecordTable
from .records import (
    RecordColumns,
    block_records,
    decode_record,
    encode_records,
    parse_payload_key,
)

_META_RES = b"m:reservoirs"
_META_OFFSET = b"m:next_offset"
_META_COUNTERS = b"m:counters"
_META_TABLE = b"m:record-table"


@dataclass
class Checkpoint:
    reservoirs: bytes
    next_offset: int
    counters: dict = field(default_factory=dict)


@dataclass
class RecordChanges:
    """What a checkpoint changes among the payload records: records of items now
    retained (row i of ``records`` for item (put_labels[i], put_keys[i])) and items gone."""

    put_labels: np.ndarray
    put_keys: np.ndarray
    records: RecordColumns
    del_labels: np.ndarray
    del_keys: np.ndarray

    @classmethod
    def none(cls) -> RecordChanges:
        z = np.zeros(0, np.int64)
        return cls(z, z.astype(np.uint64), RecordColumns.empty(), z, z.astype(np.uint64))


class PartitionStore(Protocol):
    def load_checkpoint(self) -> Checkpoint | None: ...

    def write_checkpoint(self, ckpt: Checkpoint, changes: RecordChanges) -> None: ...

    def get_records(self, labels: np.ndarray, keys: np.ndarray) -> list[bytes | None]: ...

    def close(self) -> None: ...


class RocksPartitionStore:
    """:class:`PartitionStore` on RocksDB (rocksdict), one database per partition.

    Payload records live in blocks with a locator table (:mod:`streamproc.recordblocks`);
    a checkpoint is one atomic write batch: its block (new records plus compacted ones),
    deletions of dead blocks, the locator table, the reservoirs, the offset, the counters.
    """

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
        table = self._db.get(_META_TABLE)
        self.table = RecordTable.empty() if table is None else RecordTable.from_bytes(bytes(table))
        if table is None:
            self._migrate_per_record_payloads()

    def _migrate_per_record_payloads(self) -> None:
        """Stores written by earlier versions kept one ``p:<label>\0<key>`` entry per
        retained item; move them into a record block, in one atomic write batch."""
        from rocksdict import WriteBatch

        from sampler import LabelReservoirs

        legacy = {}
        it = self._db.iter()
        it.seek(b"p:")
        while it.valid() and bytes(it.key()).startswith(b"p:"):
            legacy[bytes(it.key())] = bytes(it.value())
            it.next()
        res = self._db.get(_META_RES)
        if not legacy or res is None:
            return
        ids = {n: i for i, n in enumerate(LabelReservoirs.from_bytes(bytes(res)).names)}
        labels, keys, records = [], [], []
        for pk, rec in legacy.items():
            name, key = parse_payload_key(pk)
            d = decode_record(rec)
            labels.append(ids[name])
            keys.append(key)
            records += encode_records(
                np.array([d["ts"]]),
                np.array([d["offset"]]),
                int(d["partition"]),
                np.array([d["features"]], dtype=np.float32),
                [d["labels"]],
                [d["id"]],
                [d["payload"]],
            )
        plan = self.table.apply(
            np.array(labels, np.int64), np.array(keys, np.uint64), len(records),
            np.zeros(0, np.int64), np.zeros(0, np.uint64),
        )  # fmt: skip
        wb = WriteBatch(raw_mode=True)
        wb.put(_block_key(plan.new_block), RecordColumns.from_records(records).to_block())
        wb.put(_META_TABLE, self.table.to_bytes())
        for pk in legacy:
            wb.delete(pk)
        self._db.write(wb, self._wopts)

    def load_checkpoint(self) -> Checkpoint | None:
        res = self._db.get(_META_RES)
        if res is None:
            return None
        off = self._db.get(_META_OFFSET)
        cnt = self._db.get(_META_COUNTERS)
        if off is None or cnt is None:
            raise StateError(f"state store {self.path}: checkpoint is incomplete")
        return Checkpoint(bytes(res), struct.unpack(">q", off)[0], orjson.loads(cnt))

    def write_checkpoint(self, ckpt: Checkpoint, changes: RecordChanges) -> None:
        from rocksdict import WriteBatch

        n = len(changes.records)
        plan = self.table.apply(
            changes.put_labels, changes.put_keys, n, changes.del_labels, changes.del_keys
        )
        wb = WriteBatch(raw_mode=True)
        if plan.new_block is not None:
            block = RecordColumns.empty()
            block.extend(changes.records)
            for old, index in plan.moved.items():  # compaction: live records move here
                block.extend(RecordColumns.from_block(self._block(old), index))
            wb.put(_block_key(plan.new_block), block.to_block())
        for b in plan.dead:
            wb.delete(_block_key(b))
        wb.put(_META_TABLE, self.table.to_bytes())
        wb.put(_META_RES, ckpt.reservoirs)
        wb.put(_META_OFFSET, struct.pack(">q", ckpt.next_offset))
        wb.put(_META_COUNTERS, orjson.dumps(ckpt.counters))
        self._db.write(wb, self._wopts)

    def _block(self, b: int) -> bytes:
        data = self._db.get(_block_key(b))
        if data is None:
            raise StateError(f"state store {self.path}: record block {b} is missing")
        return bytes(data)

    def get_records(self, labels: np.ndarray, keys: np.ndarray) -> list[bytes | None]:
        """Records of the items (label ids, keys); None for items without one."""
        where = self.table.locate(np.asarray(labels, np.int64), np.asarray(keys, np.uint64))
        out: list[bytes | None] = [None] * where.shape[0]
        for b in np.unique(where[:, 0]).tolist():
            if b < 0:
                continue
            rows = np.flatnonzero(where[:, 0] == b)
            recs = block_records(self._block(b), where[rows, 1].tolist())
            for r, rec in zip(rows.tolist(), recs, strict=True):
                out[r] = rec
        return out

    def count_payloads(self) -> int:
        return len(self.table)

    def close(self) -> None:
        self._db.close()


def _block_key(b: int) -> bytes:
    return b"b:" + struct.pack(">Q", b)
