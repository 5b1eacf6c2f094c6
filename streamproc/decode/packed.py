"""Variable-length byte values stored back to back: one buffer and n + 1 offsets.

The worker keeps the ids and payloads of admitted events, and builds the columns of
record blocks, in this form: values are copied span by span in numba, never one Python
``bytes`` object per value, and a packed column keeps no consumed batch alive.

>>> p = Packed.of([b"ab", b"", b"cde"])
>>> len(p), p[2], p.nbytes
(3, b'cde', 5)
>>> p.take(np.array([2, 0])).values()
[b'cde', b'ab']
>>> Packed.concat([p, Packed.spans(b"xyz", np.array([1]), np.array([3]))]).values()
[b'ab', b'', b'cde', b'yz']
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _copy_spans(src, starts, ends, out, at):  # pragma: no cover - compiled
    """out[at[i]:at[i] + ends[i] - starts[i]] = src[starts[i]:ends[i]] for every i."""
    for i in range(starts.shape[0]):
        s, e, o = starts[i], ends[i], at[i]
        out[o : o + e - s] = src[s:e]


def _bytes_view(buf) -> np.ndarray:
    return np.frombuffer(buf, dtype=np.uint8) if len(buf) else np.zeros(1, np.uint8)


class Packed:
    """n byte values: value i is ``data[offsets[i]:offsets[i + 1]]``."""

    __slots__ = ("data", "offsets")

    def __init__(self, data: bytes, offsets: np.ndarray) -> None:
        self.data, self.offsets = data, offsets

    @classmethod
    def empty(cls) -> Packed:
        return cls(b"", np.zeros(1, np.int64))

    @classmethod
    def of(cls, values: list) -> Packed:
        """From a list of bytes-like values."""
        offsets = np.zeros(len(values) + 1, np.int64)
        np.cumsum(np.fromiter(map(len, values), np.int64, len(values)), out=offsets[1:])
        return cls(b"".join(values), offsets)

    @classmethod
    def spans(cls, buf: bytes, starts: np.ndarray, ends: np.ndarray) -> Packed:
        """The spans ``buf[starts[i]:ends[i]]``, copied out of ``buf``."""
        return cls.mixed(buf, starts, ends, np.ones(starts.shape[0], dtype=bool), [])

    @classmethod
    def mixed(
        cls, buf: bytes, starts: np.ndarray, ends: np.ndarray, direct: np.ndarray, extra: list
    ) -> Packed:
        """Value i is the span of ``buf`` where ``direct[i]``, else the next of ``extra``
        (bytes-like values, in row order)."""
        starts = np.asarray(starts, np.int64)
        ends = np.asarray(ends, np.int64)
        n = starts.shape[0]
        lengths = np.where(direct, ends - starts, 0)
        other = np.flatnonzero(~direct)
        if len(extra) != other.shape[0]:
            raise ValueError(f"extra: {len(extra)} values for {other.shape[0]} rows")
        more = Packed.of(extra)
        lengths[other] = np.diff(more.offsets)
        offsets = np.zeros(n + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        out = np.empty(int(offsets[-1]), np.uint8)
        sel = np.flatnonzero(direct)
        _copy_spans(_bytes_view(buf), starts[sel], ends[sel], out, offsets[sel])
        if other.shape[0]:
            src = _bytes_view(more.data)
            _copy_spans(src, more.offsets[:-1], more.offsets[1:], out, offsets[other])
        return cls(out.tobytes(), offsets)

    @classmethod
    def concat(cls, parts: list[Packed]) -> Packed:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        offsets = [np.zeros(1, np.int64)]
        base = 0
        for p in parts:
            offsets.append(p.offsets[1:] + base)
            base += int(p.offsets[-1])
        return cls(b"".join(p.data for p in parts), np.concatenate(offsets))

    def __len__(self) -> int:
        return int(self.offsets.shape[0]) - 1

    def __getitem__(self, i: int) -> bytes:
        return self.data[int(self.offsets[i]) : int(self.offsets[i + 1])]

    @property
    def nbytes(self) -> int:
        return len(self.data)

    def values(self) -> list[bytes]:
        d, o = self.data, self.offsets.tolist()
        return [d[o[i] : o[i + 1]] for i in range(len(o) - 1)]

    def take(self, rows: np.ndarray) -> Packed:
        """Values ``rows`` (any order, repeats allowed), copied."""
        rows = np.asarray(rows, np.int64)
        return Packed.spans(self.data, self.offsets[rows], self.offsets[rows + 1])
