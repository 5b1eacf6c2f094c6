"""Durable per-partition state: a small store interface and its RocksDB implementation.

One store per source partition holds the payload records of the events its reservoirs
retain, plus the checkpoint: the serialized reservoirs, the next source offset they
reflect and the partition's counters. :meth:`PartitionStore.write_checkpoint` applies
record changes and the checkpoint in one atomic RocksDB write batch (WAL written,
fsynced when ``state_sync`` is on), so state and offsets can never disagree. Nothing is
written per event.

Checkpoints are written as **deltas**: the reservoirs' retained items and the record
locator table (the parts that grow with the retained rows) are written whole once, as a
*base*, and after that each checkpoint writes only the items and locator entries that
changed (:mod:`.deltas`), plus the small parts whole. When the deltas written since the
base add up to the base's size, the next checkpoint writes a new base and deletes them
in the same batch, so a checkpoint costs about twice its changes and a load reads at
most twice the base. A loaded state is checked against the checksum of the state each
delta was made from.
"""

from __future__ import annotations

import contextlib
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import msgspec
import numpy as np
import orjson

from sampler.serialization import ITEM_DTYPE, join, split
from stratastream.errors import StateError
from streamproc.state.deltas import diff, identity_dtype, patch
from streamproc.state.recordblocks import RecordTable
from streamproc.state.records import RecordColumns, block_records

# Stored keys. ``m:`` keys hold one value each; ``b:`` + u64 big endian holds a record block.
KEY_FORMAT = b"m:format"  # STORE_FORMAT, written with every checkpoint
KEY_RESERVOIRS = b"m:reservoirs"  # serialized LabelReservoirs (sampler.serialization)
KEY_NEXT_OFFSET = b"m:next_offset"  # i64 big endian: first source offset not reflected
KEY_COUNTERS = b"m:counters"  # JSON object of the partition's counters
KEY_RECORD_TABLE = b"m:record-table"  # locator: (label id, key) -> (block, row)
BLOCK_PREFIX = b"b:"
DELTA_PREFIX = b"d:"  # + u64 big endian sequence: a CheckpointDelta since the base
STORE_FORMAT = b"2"  # 2: checkpoints as base + deltas
READABLE_FORMATS = (b"1", b"2")  # 1: every checkpoint whole (read; rewritten as 2)
MAX_DELTAS = 1_000


class CheckpointDelta(msgspec.Struct, array_like=True):
    """What one checkpoint changed since the previous one (module docstring)."""

    res_head: bytes  # the reservoirs' small part, whole (sampler.serialization.split)
    res_crc: int  # crc32 of the whole serialized reservoirs this delta gives
    res_upserts: bytes  # ITEM_DTYPE rows
    res_removed: bytes  # (label, key) rows
    blocks: bytes  # RecordTable.blocks_bytes
    table_upserts: bytes  # RecordTable.ROW rows
    table_removed: bytes  # (label, key) rows


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
    def verify(self) -> int: ...

    def load_checkpoint(self) -> Checkpoint | None: ...

    def write_checkpoint(self, ckpt: Checkpoint, changes: RecordChanges) -> None: ...

    def get_records(self, labels: np.ndarray, keys: np.ndarray) -> list[bytes | None]: ...

    def get_record_columns(self, labels: np.ndarray, keys: np.ndarray) -> RecordColumns: ...

    def close(self) -> None: ...


class RocksPartitionStore:
    """:class:`PartitionStore` on RocksDB (rocksdict), one database per partition.

    Payload records live in blocks with a locator table (:mod:`streamproc.recordblocks`);
    a checkpoint is one atomic write batch: its block (new records plus compacted ones),
    deletions of dead blocks, the locator table, the reservoirs, the offset, the counters.
    """

    def __init__(self, path: Path, sync: bool = False) -> None:
        from rocksdict import Options, WriteOptions

        path.mkdir(parents=True, exist_ok=True)
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        # bounded disk besides the data: RocksDB's info logs (one LOG.old.* per restart
        # otherwise, never trimmed) and the write-ahead log (a checkpoint rewrites the
        # reservoirs and locator table; past this size the memtable is flushed and the
        # old WAL files dropped)
        opts.set_keep_log_file_num(2)
        opts.set_max_log_file_size(4 << 20)
        opts.set_max_total_wal_size(64 << 20)
        self._opts, self._db = opts, None
        self.path = path
        self.last_write_bytes = 0
        self._open()
        self._wopts = WriteOptions()
        # The WAL is always written (a killed process loses nothing); ``sync`` also fsyncs
        # it per checkpoint. Without, an OS crash may lose the latest checkpoints, never
        # part of one (write batches recover atomically), and the worker resumes from the
        # checkpoint it finds -- it never resumes from a committed Kafka offset.
        self._wopts.sync = sync
        fmt = self._db.get(KEY_FORMAT)
        if fmt is not None and bytes(fmt) not in READABLE_FORMATS:
            raise StateError(
                f"state store {path}: format {bytes(fmt)!r}, this version reads "
                f"{[f.decode() for f in READABLE_FORMATS]}"
            )
        self._load()

    def _open(self) -> None:
        from rocksdict import Rdict

        try:
            self._db = Rdict(str(self.path), options=self._opts)
        except Exception as e:
            raise StateError(f"cannot open state store at {self.path}: {e}") from e

    def _ensure_open(self) -> None:
        """After a failed write RocksDB keeps refusing writes (its background error, e.g.
        a full disk) until reopened: the store was closed then, and opens again here,
        from what is on disk (the last checkpoint that was written whole)."""
        if self._db is None:
            self._open()
            self._load()

    def _load(self) -> None:
        """The state on disk: the base, then every delta in order."""
        table = self._db.get(KEY_RECORD_TABLE)
        self.table = RecordTable.empty() if table is None else RecordTable.from_bytes(bytes(table))
        res = self._db.get(KEY_RESERVOIRS)
        self._reservoirs = None if res is None else bytes(res)
        self._items = None  # the reservoirs' items by identity, when they split
        self._deltas: list[int] = []
        self._delta_bytes = 0
        self._base_bytes = len(table or b"") + len(res or b"")
        if self._reservoirs is not None:
            with contextlib.suppress(StateError):  # an older serialization: the next
                self._items = split(self._reservoirs)[1]  # checkpoint writes a base
        seqs = []
        it = self._db.iter()
        it.seek(DELTA_PREFIX)
        while it.valid() and bytes(it.key()).startswith(DELTA_PREFIX):
            seqs.append((struct.unpack(">Q", bytes(it.key())[2:])[0], bytes(it.value())))
            it.next()
        del it
        for seq, data in seqs:
            self._apply_delta(seq, data)

    def _apply_delta(self, seq: int, data: bytes) -> None:
        where = f"state store {self.path}: checkpoint delta {seq}"
        if self._items is None:
            raise StateError(f"{where} has no base to apply to")
        if len(data) < 4 or zlib.crc32(data[:-4]) != struct.unpack("<I", data[-4:])[0]:
            raise StateError(f"{where} is corrupt (checksum mismatch)")
        try:
            d = msgspec.msgpack.decode(data[:-4], type=CheckpointDelta)
            items = patch(
                self._items,
                np.frombuffer(d.res_upserts, ITEM_DTYPE),
                np.frombuffer(d.res_removed, identity_dtype(ITEM_DTYPE)),
            )
            rows = patch(
                self.table.rows(),
                np.frombuffer(d.table_upserts, RecordTable.ROW),
                np.frombuffer(d.table_removed, identity_dtype(RecordTable.ROW)),
            )
            sizes, nxt = RecordTable.parse_blocks(d.blocks)
        except (msgspec.DecodeError, ValueError) as e:
            raise StateError(f"{where} is corrupt ({e})") from None
        res = join(d.res_head, items)
        if zlib.crc32(res) != d.res_crc:
            raise StateError(f"{where} does not give the state it was made from")
        self._items, self._reservoirs = items, res
        self.table = RecordTable.from_rows(rows, sizes, nxt)
        self._deltas.append(seq)
        self._delta_bytes += len(data)

    def verify(self) -> int:
        """Read every entry once (RocksDB checks each block's checksum on the way);
        raises :class:`StateError` on any damage. Returns the number of entries."""
        n = 0
        self._ensure_open()
        try:
            it = self._db.iter()
            it.seek_to_first()
            while it.valid():
                it.value()
                n += 1
                it.next()
            it.status()  # an iterator stops at a damaged block: this raises its error
            del it
        except Exception as e:
            raise StateError(f"state store {self.path}: unreadable ({e})") from e
        return n

    def load_checkpoint(self) -> Checkpoint | None:
        self._ensure_open()
        if self._reservoirs is None:
            return None
        off = self._db.get(KEY_NEXT_OFFSET)
        cnt = self._db.get(KEY_COUNTERS)
        if off is None or cnt is None:
            raise StateError(f"state store {self.path}: checkpoint is incomplete")
        return Checkpoint(self._reservoirs, struct.unpack(">q", off)[0], orjson.loads(cnt))

    def write_checkpoint(self, ckpt: Checkpoint, changes: RecordChanges) -> None:
        from rocksdict import WriteBatch

        self._ensure_open()
        n = len(changes.records)
        # on a copy: a write that fails (a full disk) must leave the table as on disk
        table = self.table.copy()
        plan = table.apply(
            changes.put_labels, changes.put_keys, n, changes.del_labels, changes.del_keys
        )
        wb = _SizedBatch(WriteBatch(raw_mode=True))
        if plan.new_block is not None:
            block = RecordColumns.empty()
            block.extend(changes.records)
            for old, index in plan.moved.items():  # compaction: live records move here
                block.extend(RecordColumns.from_block(self._block(old), index))
            wb.put(_block_key(plan.new_block), block.to_block())
        for b in plan.dead:
            wb.delete(_block_key(b))
        try:
            head, items = split(ckpt.reservoirs)
        except StateError:
            head, items = b"", None  # not splittable (an older serialization): whole
        deltas, delta_bytes = list(self._deltas), self._delta_bytes
        if (
            items is None
            or self._items is None
            or delta_bytes >= self._base_bytes
            or len(deltas) >= MAX_DELTAS
        ):  # a new base; the deltas before it go
            base = table.to_bytes()
            wb.put(KEY_RECORD_TABLE, base)
            wb.put(KEY_RESERVOIRS, ckpt.reservoirs)
            for seq in deltas:
                wb.delete(_delta_key(seq))
            deltas, delta_bytes = [], 0
            base_bytes = len(base) + len(ckpt.reservoirs)
        else:
            res_up, res_gone = diff(self._items, items)
            tab_up, tab_gone = diff(self.table.rows(), table.rows())
            data = msgspec.msgpack.encode(
                CheckpointDelta(
                    head,
                    zlib.crc32(ckpt.reservoirs),
                    res_up.tobytes(),
                    res_gone.tobytes(),
                    table.blocks_bytes(),
                    tab_up.tobytes(),
                    tab_gone.tobytes(),
                )
            )
            data += struct.pack("<I", zlib.crc32(data))
            seq = deltas[-1] + 1 if deltas else 0
            wb.put(_delta_key(seq), data)
            deltas, delta_bytes = [*deltas, seq], delta_bytes + len(data)
            base_bytes = self._base_bytes
        wb.put(KEY_NEXT_OFFSET, struct.pack(">q", ckpt.next_offset))
        wb.put(KEY_COUNTERS, orjson.dumps(ckpt.counters))
        wb.put(KEY_FORMAT, STORE_FORMAT)
        try:
            self._db.write(wb.batch, self._wopts)
        except Exception:
            # RocksDB refuses every later write after this (until reopened): close now,
            # reopen at the next attempt (_ensure_open); the batch is all or nothing
            self._close_quietly()
            raise
        self.table, self._reservoirs, self._items = table, ckpt.reservoirs, items
        self._deltas, self._delta_bytes, self._base_bytes = deltas, delta_bytes, base_bytes
        self.last_write_bytes = wb.size  # what this checkpoint wrote (keys and values)

    def _close_quietly(self) -> None:
        db, self._db = self._db, None
        try:
            db.close()
        except Exception as e:  # noqa: BLE001 - closing after a failure: log, go on
            import logging

            logging.getLogger(__name__).warning("state store %s: close: %s", self.path, e)

    def _block(self, b: int) -> bytes:
        self._ensure_open()
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

    def get_record_columns(self, labels: np.ndarray, keys: np.ndarray) -> RecordColumns:
        """Records of the items (label ids, keys), in that order, gathered column by column
        from their blocks; :class:`StateError` when an item has no record."""
        where = self.table.locate(np.asarray(labels, np.int64), np.asarray(keys, np.uint64))
        if where.shape[0] and (where[:, 0] < 0).any():
            missing = int((where[:, 0] < 0).sum())
            raise StateError(f"state store {self.path}: {missing} retained items lack records")
        out = RecordColumns.empty()
        order = []
        for b in np.unique(where[:, 0]).tolist():
            rows = np.flatnonzero(where[:, 0] == b)
            out.extend(RecordColumns.from_block(self._block(b), where[rows, 1]))
            order.append(rows)
        if not order:
            return out
        pos = np.empty(where.shape[0], np.int64)
        pos[np.concatenate(order)] = np.arange(where.shape[0])
        return out.take(pos)

    @property
    def deltas(self) -> tuple[int, int]:
        """(deltas written since the last base, their bytes)."""
        return len(self._deltas), self._delta_bytes

    def count_payloads(self) -> int:
        return len(self.table)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


class _SizedBatch:
    """A RocksDB write batch that counts the bytes put into it."""

    def __init__(self, batch) -> None:
        self.batch, self.size = batch, 0

    def put(self, key: bytes, value: bytes) -> None:
        self.batch.put(key, value)
        self.size += len(key) + len(value)

    def delete(self, key: bytes) -> None:
        self.batch.delete(key)
        self.size += len(key)


def _block_key(b: int) -> bytes:
    return BLOCK_PREFIX + struct.pack(">Q", b)


def _delta_key(seq: int) -> bytes:
    return DELTA_PREFIX + struct.pack(">Q", seq)
