"""Versioned, checksummed binary form of :class:`LabelReservoirs`.

Layout (little endian)::

    magic   16 bytes  b"STRATA-LRES\\0\\0\\0\\0\\0"
    version u16
    meta    u32 length + UTF-8 JSON (mode, half_life, seed, time_origin, policy, names, boosted)
    labels  L x (fill i64, tau f64, seen i64, seen_w f64)        L = policy.max_labels
    items   u64 count n, then label i32[n], key u64[n], prio f64[n], base f64[n], ts f64[n]
    crc32   u32 over everything before it

Items are written in canonical order, so equal states give equal bytes.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from typing import TYPE_CHECKING

import numpy as np

from .errors import StateError
from .hashing import draw_uniform_py
from .quota import QuotaPolicy

if TYPE_CHECKING:
    from .reservoirs import LabelReservoirs

MAGIC = b"STRATA-LRES\0\0\0\0\0"
# 2: draws salted by label name. 1: salted by label id (registration order); read and
# migrated (see _redraw), written no more.
VERSION = 2
READABLE = (1, 2)
_HEAD = struct.Struct("<16sHI")
# one retained item as a row (what :func:`split` and :func:`join` exchange)
ITEM_DTYPE = np.dtype(
    [("label", "<i4"), ("key", "<u8"), ("prio", "<f8"), ("base", "<f8"), ("ts", "<f8")]
)


def dump(r: LabelReservoirs) -> bytes:
    meta = {
        "mode": r.mode,
        "half_life": r.half_life,
        "seed": str(r.seed),
        "time_origin": r.time_origin,
        "policy": r.policy.to_dict(),
        "names": r.names,
        "boosted": sorted(r.boosted),
    }
    mb = json.dumps(meta, sort_keys=True).encode()
    head = b"".join(
        [
            _HEAD.pack(MAGIC, VERSION, len(mb)),
            mb,
            r._fill.astype("<i8").tobytes(),
            r._tau.astype("<f8").tobytes(),
            r._seen.astype("<i8").tobytes(),
            r._seen_w.astype("<f8").tobytes(),
        ]
    )
    return _join_columns(head, *r._raw_items())


def _join_columns(head: bytes, lab, key, prio, base, ts) -> bytes:
    order = np.lexsort((key, prio, lab))  # canonical: equal states give equal bytes
    body = b"".join(
        [
            head,
            struct.pack("<Q", order.shape[0]),
            lab[order].astype("<i4").tobytes(),
            key[order].astype("<u8").tobytes(),
            prio[order].astype("<f8").tobytes(),
            base[order].astype("<f8").tobytes(),
            ts[order].astype("<f8").tobytes(),
        ]
    )
    return body + struct.pack("<I", zlib.crc32(body))


def split(data: bytes) -> tuple[bytes, np.ndarray]:
    """A state's *head* (version, settings, label names and per-label counters) and its
    retained items as rows of :data:`ITEM_DTYPE`: what a checkpoint written as a delta
    needs (the head is small; the items change a little between checkpoints).
    :func:`join` puts them together again, byte for byte.

    >>> from sampler import LabelReservoirs, QuotaPolicy
    >>> r = LabelReservoirs(QuotaPolicy(min_capacity=2, max_capacity=2, global_cap=50,
    ...                                 max_labels=4))
    >>> _ = r.update(r.encode(["a", "b", "a"]), np.zeros(3), np.arange(3, dtype=np.uint64))
    >>> head, items = split(r.to_bytes())
    >>> len(items), join(head, items[::-1]) == r.to_bytes()
    (3, True)
    """
    data = bytes(data)
    if len(data) < _HEAD.size + 4 or data[:16] != MAGIC:
        raise StateError("LabelReservoirs state: bad magic")
    _, version, mlen = _HEAD.unpack_from(data, 0)
    (crc,) = struct.unpack_from("<I", data, len(data) - 4)
    if version != VERSION or zlib.crc32(data[:-4]) != crc:
        raise StateError("LabelReservoirs state: checksum mismatch or an older version")
    try:
        L = len(json.loads(data[_HEAD.size : _HEAD.size + mlen])["names"])
        pos = _HEAD.size + mlen + 32 * L
        (n,) = struct.unpack_from("<Q", data, pos)
    except (KeyError, TypeError, ValueError, struct.error) as e:
        raise StateError(f"LabelReservoirs state: malformed ({e})") from None
    if pos + 8 + ITEM_DTYPE.itemsize * n != len(data) - 4:
        raise StateError("LabelReservoirs state: item count does not match its size")
    items = np.empty(n, ITEM_DTYPE)
    at = pos + 8
    for name in ITEM_DTYPE.names:
        dt = ITEM_DTYPE.fields[name][0]
        items[name] = np.frombuffer(data, dt, n, at)
        at += dt.itemsize * n
    return data[:pos], items


def join(head: bytes, items: np.ndarray) -> bytes:
    """The state :func:`split` took apart (``items`` in any order)."""
    return _join_columns(
        head, items["label"], items["key"], items["prio"], items["base"], items["ts"]
    )


def load(data: bytes, cls: type[LabelReservoirs]) -> LabelReservoirs:
    """The reservoirs ``data`` holds, as an instance of ``cls`` (passed in, so this module
    never imports the class it serializes: no import cycle)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise StateError(f"LabelReservoirs.from_bytes: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < _HEAD.size + 4 or data[:16] != MAGIC:
        raise StateError("LabelReservoirs.from_bytes: not a LabelReservoirs state (bad magic)")
    _, version, mlen = _HEAD.unpack_from(data, 0)
    if version not in READABLE:
        raise StateError(
            f"LabelReservoirs.from_bytes: unsupported version {version} "
            f"(this build reads {list(READABLE)})"
        )
    (crc,) = struct.unpack_from("<I", data, len(data) - 4)
    if zlib.crc32(data[:-4]) != crc:
        raise StateError("LabelReservoirs.from_bytes: corrupt state (checksum mismatch)")
    pos = _HEAD.size
    try:
        meta = json.loads(data[pos : pos + mlen])
        pos += mlen
        r = cls(
            QuotaPolicy.from_dict(meta["policy"]),
            meta["mode"],
            meta["half_life"],
            int(meta["seed"]),
            meta["time_origin"],
        )
        L = r.policy.max_labels
        names = meta["names"]
        if len(names) != L:
            raise StateError(f"names has {len(names)} entries, policy.max_labels is {L}")

        def take(dtype: str, n: int) -> np.ndarray:
            nonlocal pos
            size = np.dtype(dtype).itemsize * n
            if pos + size > len(data) - 4:
                raise StateError("truncated")
            out = np.frombuffer(data, dtype=dtype, count=n, offset=pos).astype(dtype[1:])
            pos += size
            return out

        fill = take("<i8", L)
        r._tau = take("<f8", L).copy()
        r._seen = take("<i8", L).copy()
        r._seen_w = take("<f8", L).copy()
        (n,) = struct.unpack_from("<Q", data, pos)
        pos += 8
        lab, key = take("<i4", n), take("<u8", n)
        prio, base, ts = take("<f8", n), take("<f8", n), take("<f8", n)
        if pos != len(data) - 4:
            raise StateError(f"{len(data) - 4 - pos} unexpected trailing bytes")
    except StateError as e:
        raise StateError(f"LabelReservoirs.from_bytes: {e}") from None
    except (KeyError, TypeError, ValueError, struct.error) as e:
        raise StateError(f"LabelReservoirs.from_bytes: malformed state ({e})") from None
    for lid, name in enumerate(names):
        if name is not None:
            if not isinstance(name, str):
                raise StateError(f"LabelReservoirs.from_bytes: label name {name!r} is not text")
            r._set_name(lid, name)
    r.boosted = set(meta["boosted"])
    if n and (lab.min() < 0 or lab.max() >= L or any(r.names[i] is None for i in np.unique(lab))):
        raise StateError("LabelReservoirs.from_bytes: item labels outside the registered labels")
    if version == 1:
        prio = _redraw(r, lab, key, base)
    r._install_items(lab, key, prio, base, ts)
    if not np.array_equal(r._fill, fill):
        raise StateError("LabelReservoirs.from_bytes: per-label fill does not match the items")
    return r


def _redraw(r: LabelReservoirs, lab, key, base) -> np.ndarray:
    """Priorities of a version-1 state's items under name salts.

    The retained items of a label are those whose old draws exceeded its threshold
    ``tau`` (the largest priority rejected so far). Their new draws are taken
    *conditionally* on exceeding ``tau`` (uniform: ``tau + (1 - tau) u``; decayed: the
    Gumbel tail above ``tau``), so the state continues as a correct sample of the stream
    with the new salts. It is a valid sample, not the identical one a fresh run under the
    new salts would keep (the events it did not retain are gone).
    """
    out = np.empty(lab.shape[0])
    for i, (l, k, b) in enumerate(zip(lab.tolist(), key.tolist(), base.tolist(), strict=True)):
        u = draw_uniform_py(int(k), r.names[l], r.seed)
        tau = float(r._tau[l])
        if r.mode == "uniform":
            out[i] = tau + (1.0 - tau) * u
        else:
            if tau > -math.inf:
                cut = math.exp(-math.exp(-(tau - b)))
                u = cut + (1.0 - cut) * u
            out[i] = b - math.log(-math.log(u)) if u < 1.0 else b + 40.0
    return out
