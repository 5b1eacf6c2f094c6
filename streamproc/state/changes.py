"""What changed in a partition's retained set since its last checkpoint, as an op log.

Every reservoir update appends two arrays, never one Python object per event: the items
it admitted (label id, key, and the row of the event's pending record) and the items it
evicted.
At the checkpoint :meth:`RetainedChanges.resolve` sorts the log once by item and keeps
each item's last operation: an item last admitted gets a payload record; an item last
evicted that was retained before the interval (its first operation is an eviction) gets
its record deleted; an item admitted and evicted within the interval costs nothing.

>>> import numpy as np
>>> log = RetainedChanges()
>>> log.admit(np.array([0, 0]), np.array([7, 8], np.uint64), np.array([3, 4]))
>>> log.evict(np.array([0, 1]), np.array([8, 9], np.uint64))
>>> puts, deletes = log.resolve()
>>> puts.keys.tolist(), puts.rows.tolist(), deletes.labels.tolist(), deletes.keys.tolist()
([7], [3], [1], [9])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Items:
    labels: np.ndarray  # int64 label ids
    keys: np.ndarray  # uint64 event keys
    rows: np.ndarray  # int64 row of the pending record (-1 for deletions)

    def __len__(self) -> int:
        return int(self.keys.shape[0])


class RetainedChanges:
    def __init__(self) -> None:
        self._ops: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def __len__(self) -> int:
        return sum(int(k.shape[0]) for _, k, _ in self._ops)

    def admit(self, labels: np.ndarray, keys: np.ndarray, rows: np.ndarray) -> None:
        if keys.shape[0]:
            self._ops.append((labels.astype(np.int64), keys, rows.astype(np.int64)))

    def evict(self, labels: np.ndarray, keys: np.ndarray) -> None:
        if keys.shape[0]:
            none = np.full(keys.shape[0], -1, dtype=np.int64)
            self._ops.append((labels.astype(np.int64), keys.astype(np.uint64), none))

    def resolve(self) -> tuple[Items, Items]:
        """(items to store, items to delete); the log is left as it is."""
        if not self._ops:
            e = np.zeros(0, np.int64)
            return Items(e, e.astype(np.uint64), e), Items(e, e.astype(np.uint64), e)
        labels = np.concatenate([o[0] for o in self._ops])
        keys = np.concatenate([o[1] for o in self._ops]).astype(np.uint64)
        rows = np.concatenate([o[2] for o in self._ops])
        m = keys.shape[0]
        # by item, then in log order: a stable sort by key is enough unless one key has
        # several labels (multi-label "split" mode), then sort by (label, key)
        order = np.argsort(keys, kind="stable")
        lo, ko = labels[order], keys[order]
        if ((ko[1:] == ko[:-1]) & (lo[1:] != lo[:-1])).any():
            order = np.lexsort((np.arange(m), keys, labels))
            lo, ko = labels[order], keys[order]
        start = np.ones(m, dtype=bool)
        start[1:] = (lo[1:] != lo[:-1]) | (ko[1:] != ko[:-1])
        first = order[np.flatnonzero(start)]
        last = order[np.r_[np.flatnonzero(start)[1:] - 1, m - 1]]
        admitted = rows >= 0
        put = last[admitted[last]]
        gone = last[~admitted[last] & ~admitted[first]]
        return (
            Items(labels[put], keys[put], rows[put]),
            Items(labels[gone], keys[gone], rows[gone]),
        )

    def clear(self) -> None:
        self._ops = []
