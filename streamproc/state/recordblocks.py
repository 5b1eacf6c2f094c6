"""Payload records stored in blocks: one block per checkpoint, plus a locator table.

Writing one RocksDB entry per retained event cost ~1 µs of memtable and log work per
record on top of building it, and a fresh stream admits tens of thousands of events
between checkpoints. Instead, a checkpoint writes the records it adds as **one block**
(columns, see :class:`streamproc.records.RecordColumns`) and the **locator table** maps every
retained item (label id, key) to (block, index). An evicted item only leaves the table.
A block nobody points to is deleted; a block less than half alive is *compacted*: its
live records move into the checkpoint's new block, so storage stays within about twice
the live records.

>>> t = RecordTable.empty()
>>> plan = t.apply(np.array([0, 0]), np.array([5, 6], np.uint64), 2, np.zeros(0, np.int64),
...                np.zeros(0, np.uint64))
>>> plan.new_block, len(t), t.locate(np.array([0]), np.array([6], np.uint64)).tolist()
(0, 2, [[0, 1]])
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from stratastream.errors import StateError


def _find(
    keys: np.ndarray, labels: np.ndarray, q_keys: np.ndarray, q_labels: np.ndarray
) -> np.ndarray:
    """Row of each (label, key) query in columns sorted by (key, label); -1 if absent.
    (Integer searches only: a key has one row, or a few in multi-label "split" mode.)"""
    n = keys.shape[0]
    out = np.full(q_keys.shape[0], -1, dtype=np.int64)
    if not n or not q_keys.shape[0]:
        return out
    lo = np.searchsorted(keys, q_keys, side="left")
    hi = np.searchsorted(keys, q_keys, side="right")
    for k in range(int((hi - lo).max())):
        p = lo + k
        hit = (p < hi) & (out < 0)
        hit &= labels[np.minimum(p, n - 1)] == q_labels
        out[hit] = p[hit]
    return out


@dataclass
class CompactionPlan:
    """What a checkpoint must write besides its own records."""

    new_block: int | None  # id of the block this checkpoint writes (None: nothing to add)
    moved: dict[int, list[int]] = field(default_factory=dict)  # old block -> indexes moved
    dead: list[int] = field(default_factory=list)  # blocks to delete


@dataclass
class RecordTable:
    """Where each retained item's record is: columns sorted by (key, label)."""

    labels: np.ndarray
    keys: np.ndarray
    blocks: np.ndarray
    index: np.ndarray
    block_sizes: dict[int, int]  # records written to each block that still exists
    next_block: int = 0

    @classmethod
    def empty(cls) -> RecordTable:
        z = np.zeros(0, np.int64)
        return cls(z, z.astype(np.uint64), z, z, {}, 0)

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    def copy(self) -> RecordTable:
        """An independent copy (:meth:`apply` changes a table in place)."""
        return RecordTable(self.labels, self.keys, self.blocks, self.index,
                           dict(self.block_sizes), self.next_block)  # fmt: skip

    def locate(self, labels: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """[block, index] per item; [-1, -1] for items the table does not hold."""
        pos = _find(self.keys, self.labels, np.asarray(keys, np.uint64), np.asarray(labels))
        out = np.full((pos.shape[0], 2), -1, dtype=np.int64)
        found = pos >= 0
        out[found, 0] = self.blocks[pos[found]]
        out[found, 1] = self.index[pos[found]]
        return out

    def apply(
        self,
        put_labels: np.ndarray,
        put_keys: np.ndarray,
        n_put: int,
        del_labels: np.ndarray,
        del_keys: np.ndarray,
        compact_below: float = 0.5,
    ) -> CompactionPlan:
        """Drop deleted and re-put items, add the put items as a new block (index i for
        put item i), then plan compaction: live records of blocks under ``compact_below``
        alive are appended to the new block (indexes n_put, n_put + 1, ...)."""
        keep = np.ones(len(self), dtype=bool)
        for q_labels, q_keys in ((del_labels, del_keys), (put_labels, put_keys)):
            pos = _find(self.keys, self.labels, q_keys.astype(np.uint64), q_labels)
            keep[pos[pos >= 0]] = False
        lab, key = self.labels[keep], self.keys[keep]
        blk, idx = self.blocks[keep], self.index[keep]
        ids, live = np.unique(blk, return_counts=True)
        alive = dict(zip(ids.tolist(), live.tolist(), strict=True))
        plan = CompactionPlan(None)
        sparse = [
            b for b, size in self.block_sizes.items() if 0 < alive.get(b, 0) < compact_below * size
        ]
        if n_put or sparse:
            plan.new_block = nb = self.next_block
            self.next_block += 1
            at = n_put
            for b in sorted(sparse):
                rows = np.flatnonzero(blk == b)
                rows = rows[np.argsort(idx[rows], kind="stable")]
                plan.moved[b] = idx[rows].tolist()
                blk[rows] = nb
                idx[rows] = np.arange(at, at + rows.shape[0])
                at += rows.shape[0]
            self.block_sizes[nb] = at
            lab = np.concatenate([lab, put_labels.astype(np.int64)])
            key = np.concatenate([key, put_keys.astype(np.uint64)])
            blk = np.concatenate([blk, np.full(n_put, nb, dtype=np.int64)])
            idx = np.concatenate([idx, np.arange(n_put, dtype=np.int64)])
        referenced = set(np.unique(blk).tolist())
        plan.dead = sorted(b for b in self.block_sizes if b not in referenced)
        for b in plan.dead:
            del self.block_sizes[b]
        order = np.lexsort((lab, key))
        self.labels, self.keys = lab[order], key[order]
        self.blocks, self.index = blk[order], idx[order]
        return plan

    ROW = np.dtype([("label", "<i8"), ("key", "<u8"), ("block", "<i8"), ("index", "<i8")])

    def rows(self) -> np.ndarray:
        """The table's entries as rows of :attr:`ROW` (for checkpoints written as deltas)."""
        out = np.empty(len(self), self.ROW)
        out["label"], out["key"] = self.labels, self.keys
        out["block"], out["index"] = self.blocks, self.index
        return out

    @classmethod
    def from_rows(cls, rows: np.ndarray, block_sizes: dict[int, int], next_block: int):
        """The table holding ``rows`` (in any order)."""
        order = np.lexsort((rows["label"], rows["key"]))
        r = rows[order]
        return cls(
            r["label"].astype(np.int64), r["key"].astype(np.uint64),
            r["block"].astype(np.int64), r["index"].astype(np.int64),
            dict(block_sizes), int(next_block),
        )  # fmt: skip

    def blocks_bytes(self) -> bytes:
        """The block sizes and the next block id (the small part of the table)."""
        ids = np.array(sorted(self.block_sizes), dtype="<u8")
        sizes = np.array([self.block_sizes[b] for b in ids.tolist()], dtype="<u4")
        return struct.pack("<QQ", ids.shape[0], self.next_block) + ids.tobytes() + sizes.tobytes()

    @staticmethod
    def parse_blocks(data: bytes) -> tuple[dict[int, int], int]:
        try:
            m, nxt = struct.unpack_from("<QQ", data)
            ids = np.frombuffer(data, dtype="<u8", count=m, offset=16)
            sizes = np.frombuffer(data, dtype="<u4", count=m, offset=16 + 8 * m)
        except (struct.error, ValueError) as e:
            raise StateError(f"record locator table is corrupt: {e}") from e
        return dict(zip(ids.tolist(), sizes.tolist(), strict=True)), int(nxt)

    def to_bytes(self) -> bytes:
        n, m = len(self), len(self.block_sizes)
        ids = np.array(sorted(self.block_sizes), dtype="<u8")
        sizes = np.array([self.block_sizes[b] for b in ids.tolist()], dtype="<u4")
        return b"".join(
            [
                struct.pack("<QQQ", n, m, self.next_block),
                self.labels.astype("<i8").tobytes(),
                self.keys.astype("<u8").tobytes(),
                self.blocks.astype("<i8").tobytes(),
                self.index.astype("<i8").tobytes(),
                ids.tobytes(),
                sizes.tobytes(),
            ]
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> RecordTable:
        try:
            n, m, nxt = struct.unpack_from("<QQQ", data)
            p = 24
            cols = []
            for dt in ("<i8", "<u8", "<i8", "<i8"):
                cols.append(np.frombuffer(data, dtype=dt, count=n, offset=p).copy())
                p += 8 * n
            ids = np.frombuffer(data, dtype="<u8", count=m, offset=p)
            sizes = np.frombuffer(data, dtype="<u4", count=m, offset=p + 8 * m)
        except (struct.error, ValueError) as e:
            raise StateError(f"record locator table is corrupt: {e}") from e
        return cls(
            cols[0].astype(np.int64),
            cols[1].astype(np.uint64),
            cols[2],
            cols[3],
            dict(zip(ids.tolist(), sizes.tolist(), strict=True)),
            int(nxt),
        )
