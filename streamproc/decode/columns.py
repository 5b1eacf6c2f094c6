"""Per-event text columns read lazily from the consumed batch's buffer.

Only a few events of a batch are admitted to a reservoir; their ids and payloads are the
only ones turned into Python objects. A row without a span in the buffer (decoded by the
reference decoder, or scrubbed) takes its value from ``overrides``.

>>> buf = b'{"id":"e1","payload":[1]}'
>>> ids = IdColumn(buf, np.array([7, -1]), np.array([9, -1]), {}, "events/0/", np.array([3, 4]))
>>> list(ids)
['e1', 'events/0/4']
>>> pay = PayloadColumn(buf, np.array([21, -1]), np.array([24, -1]), {})
>>> list(pay)
[b'[1]', b'null']
>>> ChainColumn([ids, ["x"]]).take([2, 0])
['x', 'e1']
>>> pack(ids, np.array([1, 0])).values()  # copied out of ``buf``
[b'events/0/4', b'e1']
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from streamproc.decode.packed import Packed


class _Column(Sequence):
    """Index checks and list equality shared by the lazy columns; ``_get`` reads row i."""

    def _get(self, i: int):  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(i)
        return self._get(i)

    def __eq__(self, other: object) -> bool:  # compares as the list of its values
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes)):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


class _SpanColumn(_Column):
    def __init__(
        self, buf: bytes, starts: np.ndarray, ends: np.ndarray, overrides: dict[int, object]
    ) -> None:
        self.buf, self.starts, self.ends, self.overrides = buf, starts, ends, overrides

    def __len__(self) -> int:
        return int(self.starts.shape[0])

    def _missing(self, i: int):  # pragma: no cover - abstract
        raise NotImplementedError

    def _decode(self, raw: bytes):
        return raw

    def _get(self, i: int):
        if i in self.overrides:
            return self.overrides[i]
        s = int(self.starts[i])
        if s < 0:
            return self._missing(i)
        return self._decode(self.buf[s : int(self.ends[i])])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self)!r})"

    def take(self, rows: list[int]) -> list:
        """Values of many rows at once."""
        buf, over, dec, miss = self.buf, self.overrides, self._decode, self._missing
        starts, ends = self.starts[rows].tolist(), self.ends[rows].tolist()
        return [
            over[i] if i in over else (dec(buf[s:e]) if s >= 0 else miss(i))
            for i, s, e in zip(rows, starts, ends, strict=True)
        ]


def take_bytes(column, rows: list[int]) -> list[bytes]:
    """Values of ``rows`` as bytes (ids as UTF-8) without decoding what is already bytes."""
    if isinstance(column, IdColumn) and not column.overrides:
        buf, prefix, offs = column.buf, column.prefix, column.offsets
        starts, ends = column.starts[rows].tolist(), column.ends[rows].tolist()
        return [
            buf[s:e] if s >= 0 else f"{prefix}{int(offs[i])}".encode()
            for i, s, e in zip(rows, starts, ends, strict=True)
        ]
    if isinstance(column, PayloadColumn) and not column.overrides:
        buf = column.buf
        starts, ends = column.starts[rows].tolist(), column.ends[rows].tolist()
        return [buf[s:e] if s >= 0 else b"null" for s, e in zip(starts, ends, strict=True)]
    if isinstance(column, ChainColumn):
        r = np.asarray(rows, dtype=np.int64)
        part = np.searchsorted(column.bounds, r, side="right") - 1
        if r.shape[0] and (np.diff(part) >= 0).all():  # parts in order: concatenate
            cut = np.flatnonzero(np.diff(part)) + 1
            res: list = []
            for seg in np.split(np.arange(r.shape[0]), cut):
                k = int(part[seg[0]])
                res += take_bytes(column.parts[k], (r[seg] - int(column.bounds[k])).tolist())
            return res
        out: list = [None] * len(rows)
        for k in np.unique(part).tolist():
            at = np.flatnonzero(part == k)
            vals = take_bytes(column.parts[k], (r[at] - int(column.bounds[k])).tolist())
            for j, v in zip(at.tolist(), vals, strict=True):
                out[j] = v
        return out
    vals = take(column, rows)
    return [v.encode() if isinstance(v, str) else bytes(v) for v in vals]


def pack(column, rows: np.ndarray) -> Packed:
    """The values of ``rows`` as bytes (ids as UTF-8), copied back to back: spans of a
    batch buffer in one numba pass, only overridden or derived values one by one."""
    rows = np.asarray(rows, dtype=np.int64)
    if isinstance(column, _SpanColumn):
        starts, ends = column.starts[rows], column.ends[rows]
        direct = starts >= 0
        if column.overrides:
            direct &= ~np.isin(rows, np.fromiter(column.overrides, np.int64))
        if direct.all():
            return Packed.spans(column.buf, starts, ends)
        extra = take_bytes(column, rows[~direct].tolist())
        return Packed.mixed(column.buf, starts, ends, direct, extra)
    if isinstance(column, ChainColumn):
        part = np.searchsorted(column.bounds, rows, side="right") - 1
        if (np.diff(part) >= 0).all():  # rows in part order: pack part by part
            return Packed.concat(
                [
                    pack(column.parts[k], rows[part == k] - int(column.bounds[k]))
                    for k in np.unique(part).tolist()
                ]
            )
    return Packed.of(take_bytes(column, rows.tolist()))


def take(column, rows: list[int]) -> list:
    """``[column[i] for i in rows]``, in bulk where the column supports it."""
    return column.take(rows) if hasattr(column, "take") else [column[i] for i in rows]


class PayloadColumn(_SpanColumn):
    """Raw JSON payload bytes per event (``b"null"`` when absent)."""

    def _missing(self, i: int) -> bytes:
        return b"null"


class IdColumn(_SpanColumn):
    """Event id per event: explicit, or ``{topic}/{partition}/{offset}``."""

    def __init__(self, buf, starts, ends, overrides, prefix: str, offsets: np.ndarray) -> None:
        super().__init__(buf, starts, ends, overrides)
        self.prefix, self.offsets = prefix, offsets

    def _missing(self, i: int) -> str:
        return f"{self.prefix}{int(self.offsets[i])}"

    def _decode(self, raw: bytes) -> str:
        return raw.decode()  # UTF-8, checked when the batch was decoded


class ChainColumn(_Column):
    """Several columns read as one (the parts of a batch: JSON messages, frames)."""

    def __init__(self, parts: list[Sequence]) -> None:
        self.parts = [p for p in parts if len(p)]
        self.bounds = np.cumsum([0] + [len(p) for p in self.parts])

    def __len__(self) -> int:
        return int(self.bounds[-1])

    def _get(self, i: int):
        k = int(np.searchsorted(self.bounds, i, side="right")) - 1
        return self.parts[k][i - int(self.bounds[k])]

    def take(self, rows: list[int]) -> list:
        r = np.asarray(rows, dtype=np.int64)
        part = np.searchsorted(self.bounds, r, side="right") - 1
        out: list = [None] * len(rows)
        for k in np.unique(part).tolist():
            at = np.flatnonzero(part == k)
            vals = take(self.parts[k], (r[at] - int(self.bounds[k])).tolist())
            for j, v in zip(at.tolist(), vals, strict=True):
                out[j] = v
        return out
