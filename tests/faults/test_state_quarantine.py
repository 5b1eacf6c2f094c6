"""An unreadable state store is quarantined and the partition rebuilt from its shard plus
the log (or from the log start), ending in the state of an uninterrupted run: real
RocksDB, damaged the ways disks and operators damage it."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from sampler import QuotaPolicy
from stratastream.errors import ConfigError
from streamproc.decode.events import Limits
from streamproc.snapshot.shards import ShardStore, export_shard, shard_dir, write_shard
from streamproc.state.processor import PartitionProcessor, SamplerConfig
from streamproc.state.store import RocksPartitionStore
from streamproc.worker.partitions import PartitionSet

CFG = SamplerConfig(
    QuotaPolicy(min_capacity=5, max_capacity=40, global_cap=800, max_labels=16), seed=3
)
LIM = Limits(feature_dim=2)


def _msgs(n: int):
    out = []
    for i in range(n):
        ev = {"id": f"e{i}", "ts": float(i), "label": f"l{i % 7}", "features": [i % 5, i % 3],
              "payload": {"text": "x" * (i % 50)}}  # fmt: skip
        out.append((i, orjson.dumps(ev), 1e9))
    return out


MSGS = _msgs(6_000)


def _feed(proc: PartitionProcessor, msgs) -> None:
    for lo in range(0, len(msgs), 500):
        proc.process(msgs[lo : lo + 500])


def _reference(tmp: Path) -> tuple[bytes, dict]:
    proc = PartitionProcessor("events", 0, RocksPartitionStore(tmp / "ref"), CFG, LIM)
    _feed(proc, MSGS)
    proc.checkpoint()
    out = proc.reservoirs.to_bytes(), dict(proc.counters)
    proc.store.close()
    return out


def _damage(path: Path, how: str) -> None:
    ssts = sorted(path.glob("*.sst"))
    if how == "current":
        (path / "CURRENT").unlink()
    elif how == "manifest":
        for m in path.glob("MANIFEST-*"):
            m.write_bytes(b"\x00garbage" * 10)
    elif how == "sst_garbled":
        assert ssts, "the test needs flushed SST files"
        for f in ssts:
            b = bytearray(f.read_bytes())
            for i in range(16, len(b) // 2):  # data blocks come first in an SST
                b[i] ^= 0x5A
            f.write_bytes(bytes(b))
    elif how == "sst_truncated":
        assert ssts
        for f in ssts:
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    elif how == "sst_deleted":
        assert ssts
        ssts[0].unlink()
    else:
        raise AssertionError(how)


def _started(tmp_path: Path):
    """(quarantine events, the partition set, partition 0 fed 2,000 events, checkpointed)."""
    events: list = []
    parts = PartitionSet(
        "events", tmp_path / "state", ShardStore.for_snapshots(tmp_path / "snaps"),
        lambda p, store: PartitionProcessor("events", p, store, CFG, LIM),
        on_quarantine=lambda p, where, why: events.append((p, where, why)),
    )  # fmt: skip
    proc = parts.open(0)
    _feed(proc, MSGS[:2_000])
    proc.checkpoint()
    return events, parts, proc


@pytest.mark.parametrize(
    "how", ["current", "manifest", "sst_garbled", "sst_truncated", "sst_deleted"]
)
@pytest.mark.parametrize("with_shard", [False, True])
def test_damaged_store_is_quarantined_and_rebuilt_identically(
    tmp_path: Path, how: str, with_shard: bool
) -> None:
    ref_bytes, ref_counters = _reference(tmp_path)
    events, parts, proc = _started(tmp_path)
    if with_shard:  # what the worker publishes with every snapshot
        write_shard(
            shard_dir(tmp_path / "snaps"),
            export_shard(0, proc.next_offset, proc.counters, proc.reservoirs, proc.store),
        )
    _feed(proc, MSGS[2_000:4_000])
    proc.checkpoint()
    proc.store._db.flush()  # SST files on disk, as after any long run
    parts.release(0)
    _damage(parts.store_path(0), how)

    proc = parts.open(0)  # no exception: quarantined and rebuilt
    assert len(events) == 1 and events[0][0] == 0
    where = events[0][1]
    assert where.parent == tmp_path / "state" / "quarantine" and where.exists()
    assert proc.next_offset == (2_000 if with_shard else 0)
    _feed(proc, MSGS)  # the log from where the rebuilt state stands (older ones skipped)
    proc.checkpoint()
    assert proc.reservoirs.to_bytes() == ref_bytes
    assert proc.counters == ref_counters
    assert proc.store.count_payloads() == sum(proc.reservoirs.retained_counts().values())
    parts.release(0)


def test_a_changed_sampler_configuration_is_not_quarantined(tmp_path: Path) -> None:
    parts = PartitionSet(
        "events", tmp_path / "state", ShardStore.for_snapshots(tmp_path / "snaps"),
        lambda p, store: PartitionProcessor("events", p, store, CFG, LIM),
    )  # fmt: skip
    proc = parts.open(0)
    _feed(proc, MSGS[:500])
    proc.checkpoint()
    parts.release(0)
    other = SamplerConfig(CFG.policy, seed=4)
    parts.open_processor = lambda p, store: PartitionProcessor("events", p, store, other, LIM)
    with pytest.raises(ConfigError, match="different sampler configuration"):
        parts.open(0)
    assert not (tmp_path / "state" / "quarantine").exists()
    assert parts.store_path(0).exists()


@pytest.mark.parametrize("how", ["garbage", "reservoirs"])
def test_a_damaged_shard_is_set_aside_not_a_crash_loop(tmp_path: Path, how: str) -> None:
    """A shard newer than the local state that does not decode (garbage bytes, or a
    well-formed shard whose reservoirs fail their checksum) is moved to the quarantine;
    the partition goes on from its local checkpoint, which then ends in the reference."""
    import msgspec

    from streamproc.snapshot.shards import decode_shard, encode_shard, shard_path

    ref_bytes, ref_counters = _reference(tmp_path)
    events, parts, proc = _started(tmp_path)
    shard = export_shard(0, proc.next_offset + 1_000, proc.counters, proc.reservoirs, proc.store)
    parts.release(0)
    path = shard_path(shard_dir(tmp_path / "snaps"), 0)
    path.parent.mkdir(parents=True)
    if how == "garbage":
        path.write_bytes(b"\x93not a shard" * 50)
    else:
        bad = bytearray(shard.reservoirs)
        bad[len(bad) // 2] ^= 0xFF
        path.write_bytes(encode_shard(msgspec.structs.replace(shard, reservoirs=bytes(bad))))
        with pytest.raises(Exception):  # noqa: B017 - the shard decodes; its state does not
            from sampler import LabelReservoirs

            LabelReservoirs.from_bytes(decode_shard(path.read_bytes(), "x").reservoirs)
    proc = parts.open(0)  # no exception, no loop: the shard is set aside
    assert proc.next_offset == 2_000  # the local checkpoint
    assert not path.exists() and len(events) == 1
    assert (events[0][1] / path.name).exists()  # kept for inspection
    _feed(proc, MSGS)
    proc.checkpoint()
    assert proc.reservoirs.to_bytes() == ref_bytes and proc.counters == ref_counters
    parts.release(0)
