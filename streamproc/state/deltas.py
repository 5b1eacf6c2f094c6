"""Row sets keyed by (label, key), written as deltas: what changed between two versions.

A checkpoint's retained items and its record locator table are row sets keyed by
(label id, key) that change a little between checkpoints: rewriting them whole each time
made the write-ahead log grow with the retained rows times the checkpoint rate. A delta
holds the rows added or changed (*upserts*) and the keys of the rows removed, and
:func:`patch` applies it, so ``patch(a, *diff(a, b))`` holds the rows of ``b``.

>>> dt = np.dtype([("label", "<i8"), ("key", "<u8"), ("v", "<f8")])
>>> a = np.array([(0, 1, 1.0), (0, 2, 2.0), (1, 1, 3.0)], dt)
>>> b = np.array([(0, 2, 2.5), (1, 1, 3.0), (1, 7, 4.0)], dt)
>>> up, gone = diff(a, b)
>>> up.tolist(), gone.tolist()
([(0, 2, 2.5), (1, 7, 4.0)], [(0, 1)])
>>> same(patch(a, up, gone), b)
True
"""

from __future__ import annotations

import numpy as np


def by_identity(rows: np.ndarray) -> np.ndarray:
    """``rows`` ordered by (label, key)."""
    return rows[np.lexsort((rows["key"], rows["label"]))]


def _pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions (in ``a``, in ``b``) of the rows whose (label, key) is in both; the
    identities are unique within each."""
    lab = np.concatenate([a["label"].astype(np.int64), b["label"].astype(np.int64)])
    key = np.concatenate([a["key"].astype(np.uint64), b["key"].astype(np.uint64)])
    side = np.concatenate([np.zeros(len(a), np.int8), np.ones(len(b), np.int8)])
    order = np.lexsort((side, key, lab))
    lab, key, side = lab[order], key[order], side[order]
    hit = (lab[:-1] == lab[1:]) & (key[:-1] == key[1:]) & (side[:-1] == 0) & (side[1:] == 1)
    first = np.flatnonzero(hit)
    return order[first], order[first + 1] - len(a)


def _void(rows: np.ndarray) -> np.ndarray:
    packed = np.ascontiguousarray(rows)
    return packed.view(np.dtype((np.void, packed.dtype.itemsize)))


def diff(prev: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(upserts, removed): the rows of ``cur`` that are new or changed, and the
    (label, key) of the rows of ``prev`` that ``cur`` lacks, both by identity."""
    ia, ib = _pairs(prev, cur)
    changed = _void(prev[ia]) != _void(cur[ib])
    keep_b = np.ones(len(cur), bool)
    keep_b[ib[~changed]] = False
    gone = np.ones(len(prev), bool)
    gone[ia] = False
    old = prev[gone]
    removed = np.empty(len(old), identity_dtype(prev.dtype))
    removed["label"], removed["key"] = old["label"], old["key"]
    return by_identity(cur[keep_b]), by_identity(removed)


def identity_dtype(rows: np.dtype) -> np.dtype:
    """The packed (label, key) part of a row type."""
    return np.dtype([("label", rows["label"]), ("key", rows["key"])])


def patch(base: np.ndarray, upserts: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """``base`` with ``removed`` dropped and ``upserts`` put (by identity), ordered by
    (label, key)."""
    drop = np.zeros(len(base), bool)
    for q in (removed, upserts):
        ia, _ = _pairs(base, q)
        drop[ia] = True
    return by_identity(np.concatenate([base[~drop], upserts.astype(base.dtype)]))


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two row sets hold the same rows (in any order)."""
    return len(a) == len(b) and bool((_void(by_identity(a)) == _void(by_identity(b))).all())
