from __future__ import annotations

import struct

import numpy as np
import pytest

from sampler import LabelReservoirs, QuotaPolicy, StateError
from sampler.serialization import MAGIC

from .conftest import zipf_stream


def _state() -> LabelReservoirs:
    r = LabelReservoirs(
        QuotaPolicy(min_capacity=5, max_capacity=50, global_cap=400, max_labels=8),
        mode="decayed",
        half_life=100.0,
        seed=3,
    )
    labels, ts, keys = zipf_stream(5_000, 6, np.random.default_rng(1))
    r.update(labels, ts, keys)
    r.boost(["2"])
    return r


def test_round_trip_is_exact() -> None:
    r = _state()
    b = r.to_bytes()
    back = LabelReservoirs.from_bytes(b)
    assert back.to_bytes() == b
    assert back.seen_counts() == r.seen_counts()
    assert back.capacities() == r.capacities()
    assert back.boosted == {"2"}
    it1, it2 = r.items(), back.items()
    for f in ("labels", "keys", "timestamps", "priorities", "inclusion"):
        np.testing.assert_array_equal(getattr(it1, f), getattr(it2, f))


def test_round_trip_empty() -> None:
    r = LabelReservoirs(QuotaPolicy(max_labels=4, global_cap=1000))
    assert LabelReservoirs.from_bytes(r.to_bytes()) == r


@pytest.mark.parametrize("pos", [20, 100, -20, -2])
def test_corrupt_byte_is_rejected(pos: int) -> None:
    b = bytearray(_state().to_bytes())
    b[pos] ^= 0x40
    with pytest.raises(StateError, match="checksum"):
        LabelReservoirs.from_bytes(bytes(b))


def test_foreign_and_truncated_bytes_are_rejected() -> None:
    with pytest.raises(StateError, match="bad magic"):
        LabelReservoirs.from_bytes(b"PK\x03\x04 a zip file, not a state" * 4)
    with pytest.raises(StateError, match="bad magic"):
        LabelReservoirs.from_bytes(b"")
    with pytest.raises(StateError, match="expected bytes"):
        LabelReservoirs.from_bytes("text")  # type: ignore[arg-type]
    b = _state().to_bytes()
    with pytest.raises(StateError):
        LabelReservoirs.from_bytes(b[: len(b) // 2])


def test_unsupported_version_is_named() -> None:
    import zlib

    b = bytearray(_state().to_bytes()[:-4])
    struct.pack_into("<H", b, len(MAGIC), 99)
    b += struct.pack("<I", zlib.crc32(bytes(b)))
    with pytest.raises(StateError, match="unsupported version 99"):
        LabelReservoirs.from_bytes(bytes(b))
