"""Consumed Kafka messages as columns: offsets, message timestamps and one shared buffer
of values, so the decoder works on arrays instead of one Python tuple per message.

>>> raw = RawMessages.from_tuples([(7, b'{"a":1}', 1.5), (8, None, None)])
>>> raw.value(0), raw.value(1), raw.offsets.tolist()
(b'{"a":1}', None, [7, 8])
>>> [c.offsets.tolist() for c in raw.chunks(max_bytes=4)]
[[7], [8]]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamproc.decode.frames import COLUMNAR

_ASIDE_BYTES = 4_096  # frames at least this large are not copied into the shared buffer


@dataclass
class RawMessages:
    """Messages of one partition: ``buf[starts[i]:ends[i]]`` is message i's value, except
    for large frames (``aside``), which stay as they are in ``side[pos[i]]`` -- they are
    decoded column by column and copying them into the buffer cost a second copy of
    every frame byte."""

    offsets: np.ndarray  # int64
    msg_ts: np.ndarray  # float64 seconds; NaN when the message carries no timestamp
    buf: bytes
    starts: np.ndarray  # int64
    ends: np.ndarray  # int64
    tomb: np.ndarray  # bool: the value is null (a tombstone)
    aside: np.ndarray | None = None  # bool: a large frame kept out of ``buf``
    pos: np.ndarray | None = None  # int64: position in the consumed batch (key of side)
    side: dict[int, bytes] | None = None
    sizes: np.ndarray | None = None  # int64 value sizes (aside frames included)

    def __len__(self) -> int:
        return int(self.offsets.shape[0])

    @property
    def array(self) -> np.ndarray:
        return np.frombuffer(self.buf, dtype=np.uint8) if self.buf else np.zeros(1, np.uint8)

    def value(self, i: int) -> bytes | None:
        if self.tomb[i]:
            return None
        if self.aside is not None and self.aside[i]:
            return self.side[int(self.pos[i])]
        return self.buf[int(self.starts[i]) : int(self.ends[i])]

    def kept_aside(self) -> np.ndarray:
        return self.aside if self.aside is not None else np.zeros(len(self), dtype=bool)

    def timestamp(self, i: int) -> float | None:
        t = float(self.msg_ts[i])
        return None if t != t else t

    def select(self, idx: np.ndarray) -> RawMessages:
        """The messages at ``idx`` (indexes or a boolean mask); the buffer is shared."""
        some = self.aside is not None
        return RawMessages(
            self.offsets[idx],
            self.msg_ts[idx],
            self.buf,
            self.starts[idx],
            self.ends[idx],
            self.tomb[idx],
            self.aside[idx] if some else None,
            self.pos[idx] if some else None,
            self.side,
            self.sizes[idx] if some else None,
        )

    def chunks(self, max_bytes: int) -> list[RawMessages]:
        """Consecutive slices of at most ``max_bytes`` of values each (at least one
        message per slice), so that a batch of large frames is decoded in cache-sized
        pieces rather than as one multi-gigabyte set of columns."""
        sizes = np.cumsum(self.sizes if self.sizes is not None else self.ends - self.starts)
        if not sizes.shape[0] or sizes[-1] <= max_bytes:
            return [self]
        out, lo = [], 0
        while lo < sizes.shape[0]:
            base = sizes[lo - 1] if lo else 0
            hi = max(lo + 1, int(np.searchsorted(sizes, base + max_bytes, side="right")))
            out.append(self.select(np.arange(lo, hi)))
            lo = hi
        return out

    @classmethod
    def from_values(
        cls, offsets: list[int], values: list[bytes | None], msg_ts: np.ndarray
    ) -> RawMessages:
        n = len(values)
        tomb = np.zeros(n, dtype=bool)
        if None in values:
            tomb = np.fromiter((v is None for v in values), dtype=bool, count=n)
            values = [b"" if v is None else v for v in values]
        lens = np.fromiter(map(len, values), dtype=np.int64, count=n)
        big = np.flatnonzero(lens >= _ASIDE_BYTES).tolist()
        side = {i: values[i] for i in big if values[i].startswith(COLUMNAR)}
        if side:
            values = list(values)
            aside = np.zeros(n, dtype=bool)
            aside[list(side)] = True
            sizes = lens.copy()
            for i in side:
                values[i] = b""
            lens[aside] = 0
        ends = np.cumsum(lens)
        raw = cls(
            np.array(offsets, dtype=np.int64), msg_ts, b"".join(values), ends - lens, ends, tomb
        )
        if side:
            raw.aside, raw.pos, raw.side, raw.sizes = (
                aside,
                np.arange(n, dtype=np.int64),
                side,
                sizes,
            )
        return raw

    @classmethod
    def from_tuples(cls, msgs: list[tuple[int, bytes | None, float | None]]) -> RawMessages:
        """From (offset, value, message timestamp in seconds or None) triples."""
        ts = np.array([np.nan if t is None else t for _, _, t in msgs], dtype=np.float64)
        return cls.from_values([o for o, _, _ in msgs], [v for _, v, _ in msgs], ts)


def by_partition(msgs: list) -> dict[int, RawMessages]:
    """Group confluent-kafka messages (errors already removed) by partition."""
    if not msgs:
        return {}
    parts = np.array([m.partition() for m in msgs], dtype=np.int32)
    # (type, ms) tuples would be converted to an array pair by pair; the milliseconds
    # alone convert in one pass (librdkafka reports -1 where no timestamp is available)
    ms = np.array([m.timestamp()[1] for m in msgs], dtype=np.float64)
    msg_ts = np.where(ms >= 0, ms / 1e3, np.nan)
    raw = RawMessages.from_values([m.offset() for m in msgs], [m.value() for m in msgs], msg_ts)
    first, last = int(parts.min()), int(parts.max())
    if first == last:
        return {first: raw}
    return {int(p): raw.select(np.flatnonzero(parts == p)) for p in np.unique(parts)}
