"""Balanced, versioned training snapshots: Parquet data + a JSON manifest.

Workers export one *shard* per source partition (its serialized reservoirs, the next
source offset, counters, and the payload records of the retained events). A snapshot
merges the shards of all partitions exactly (see :func:`sampler.merge`), so the result
does not depend on how partitions were spread over workers, and writes::

    <store>/<version>/data.parquet      label, labels, ts, features, payload, id,
                                        partition, offset, inclusion, ht_weight
    <store>/<version>/manifest.json     SnapshotManifest
    <store>/LATEST                      the newest version id

``version`` is a content hash of the data, ``parent`` the previous version. Files are
written to a temporary directory and renamed into place, so readers never see a half
snapshot. The oldest versions beyond ``retention`` are removed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import msgspec
import numpy as np
import orjson

from sampler import LabelReservoirs, balance_ratio
from sampler.errors import StateError

from .records import RecordColumns, decode_record, parse_payload_key, payload_key
from .state import RecordChanges


class Shard(msgspec.Struct):
    partition: int
    next_offset: int
    counters: dict
    reservoirs: bytes
    records: dict[bytes, bytes]


@dataclass
class SnapshotManifest:
    version: str
    parent: str | None
    created_at: float
    rows: int
    seen: dict[str, int]
    retained: dict[str, int]
    balance_ratio: float
    source_offsets: dict[str, int]  # partition -> next offset reflected
    counters: dict[str, int]
    sampler: dict
    stability_vs_parent: float | None = None  # Jaccard of (label, id) rows with the parent
    held_for_relabel: int = 0  # retained rows left out until their labels are resolved

    @classmethod
    def read(cls, path: Path) -> SnapshotManifest:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, TypeError, ValueError) as e:
            raise StateError(f"snapshot manifest {path}: unreadable ({e})") from e


def write_shard(shard_dir: Path, shard: Shard) -> Path:
    shard_dir.mkdir(parents=True, exist_ok=True)
    path = shard_dir / f"p{shard.partition:05d}.shard"
    _atomic_write(path, msgspec.msgpack.encode(shard))
    return path


def read_shard(shard_dir: Path, partition: int) -> Shard | None:
    p = shard_dir / f"p{partition:05d}.shard"
    if not p.exists():
        return None
    try:
        return msgspec.msgpack.decode(p.read_bytes(), type=Shard)
    except msgspec.DecodeError as e:
        raise StateError(f"shard {p}: corrupt ({e})") from e


def read_shards(shard_dir: Path) -> list[Shard]:
    out = []
    for p in sorted(shard_dir.glob("p*.shard")):
        try:
            out.append(msgspec.msgpack.decode(p.read_bytes(), type=Shard))
        except msgspec.DecodeError as e:
            raise StateError(f"shard {p}: corrupt ({e})") from e
    return out


def build_snapshot(
    shard_dir: Path,
    store: Path,
    retention: int = 10,
    partitions: int | None = None,
    exclude_ids: frozenset[str] = frozenset(),
) -> SnapshotManifest | None:
    """Merge all shards into a new snapshot version.

    Returns None when there is nothing new, or when ``partitions`` is given and some
    partition has no shard yet (a snapshot always covers the whole topic).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    shards = read_shards(shard_dir)
    if not shards:
        return None
    if partitions is not None and {s.partition for s in shards} != set(range(partitions)):
        return None
    merged: LabelReservoirs | None = None
    records: dict[bytes, bytes] = {}
    counters: dict[str, int] = {}
    for s in shards:
        r = LabelReservoirs.from_bytes(s.reservoirs)
        merged = r if merged is None else merged.merge(r)
        records.update(s.records)
        for k, v in s.counters.items():
            counters[k] = counters.get(k, 0) + int(v)
    assert merged is not None
    it = merged.items()
    names = merged.names
    cols: dict[str, list] = {
        k: [] for k in ("label", "labels", "ts", "features", "payload", "id", "partition", "offset")
    }
    keep = np.ones(it.labels.shape[0], dtype=bool)
    for row, (lid, key) in enumerate(zip(it.labels.tolist(), it.keys.tolist(), strict=True)):
        rec = records.get(payload_key(names[lid], key))
        if rec is None:
            raise StateError(f"snapshot: no payload record for label {names[lid]!r} key {key}")
        h = decode_record(rec)
        if h["id"] in exclude_ids:  # held for relabelling: out of snapshots until resolved
            keep[row] = False
            continue
        cols["label"].append(names[lid])
        cols["labels"].append(h["labels"])
        cols["ts"].append(h["ts"])
        cols["features"].append(h["features"])
        cols["payload"].append(h["payload"].decode())
        cols["id"].append(h["id"])
        cols["partition"].append(h["partition"])
        cols["offset"].append(h["offset"])
    dim = len(cols["features"][0]) if cols["features"] else 0
    table = pa.table(
        {
            **{k: cols[k] for k in ("label", "labels", "ts")},
            "features": pa.array(cols["features"], type=pa.list_(pa.float32(), dim)),
            **{k: cols[k] for k in ("payload", "id")},
            "partition": pa.array(cols["partition"], pa.int32()),
            "offset": pa.array(cols["offset"], pa.int64()),
            "inclusion": it.inclusion[keep],
            "ht_weight": it.ht_weights[keep],
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    data = buf.getvalue()
    offsets = {str(s.partition): s.next_offset for s in shards}
    version = hashlib.sha256(data + orjson.dumps(offsets, option=orjson.OPT_SORT_KEYS)).hexdigest()[
        :16
    ]
    store.mkdir(parents=True, exist_ok=True)
    parent = latest_version(store)
    if parent == version:
        return None
    stability = None
    if parent is not None and (store / parent / "data.parquet").exists():
        old = pq.read_table(store / parent / "data.parquet", columns=["label", "id"])
        a = set(zip(old.column("label").to_pylist(), old.column("id").to_pylist(), strict=True))
        b = set(zip(cols["label"], cols["id"], strict=True))
        stability = len(a & b) / max(1, len(a | b))
    retained = {n: 0 for n in merged.labels}
    for lab in cols["label"]:
        retained[lab] += 1
    manifest = SnapshotManifest(
        version=version,
        parent=parent,
        created_at=time.time(),
        rows=table.num_rows,
        seen=merged.seen_counts(),
        retained=retained,
        balance_ratio=balance_ratio(retained),
        source_offsets=offsets,
        counters=counters,
        stability_vs_parent=stability,
        held_for_relabel=int((~keep).sum()),
        sampler={
            "mode": merged.mode,
            "half_life": merged.half_life,
            "seed": merged.seed,
            "policy": merged.policy.to_dict(),
        },
    )
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=store))
    (tmp / "data.parquet").write_bytes(data)
    (tmp / "manifest.json").write_text(json.dumps(asdict(manifest), indent=2))
    final = store / version
    if final.exists():
        shutil.rmtree(tmp)
    else:
        os.replace(tmp, final)
    _atomic_write(store / "LATEST", version.encode())
    _apply_retention(store, retention)
    return manifest


def spot_check_rows(labels: list[str], ids: list[str], fraction: float) -> list[int]:
    """A stratified review sample of snapshot rows: per label, the rows whose id hashes
    under ``fraction`` (deterministic, so a row stays in or out across versions), and at
    least one row of every label."""
    cut = int(fraction * 10_000)
    picked: list[int] = []
    best: dict[str, tuple[int, int]] = {}
    for i, (lab, eid) in enumerate(zip(labels, ids, strict=True)):
        h = int.from_bytes(hashlib.blake2b(eid.encode(), digest_size=8).digest(), "little")
        if h % 10_000 < cut:
            picked.append(i)
        if lab not in best or h < best[lab][0]:
            best[lab] = (h, i)
    have = {labels[i] for i in picked}
    picked += [i for lab, (_, i) in best.items() if lab not in have]
    return sorted(picked)


def latest_version(store: Path) -> str | None:
    p = store / "LATEST"
    return p.read_text().strip() if p.exists() else None


def list_snapshots(store: Path) -> list[SnapshotManifest]:
    out = [
        SnapshotManifest.read(m)
        for m in store.glob("*/manifest.json")
        if not m.parent.name.startswith(".")
    ]
    return sorted(out, key=lambda m: m.created_at)


def load_table(store: Path, version: str | None = None):
    import pyarrow.parquet as pq

    version = version or latest_version(store)
    if version is None:
        raise StateError(f"snapshot store {store}: no snapshots yet")
    path = store / version / "data.parquet"
    if not path.exists():
        raise StateError(f"snapshot store {store}: no version {version!r}")
    return pq.read_table(path)


def _apply_retention(store: Path, retention: int) -> None:
    snaps = list_snapshots(store)
    for m in snaps[: max(0, len(snaps) - retention)]:
        shutil.rmtree(store / m.version, ignore_errors=True)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def shard_records(store, reservoirs: LabelReservoirs) -> dict[bytes, bytes]:
    """Payload records of every retained item, read from a partition store."""
    it = reservoirs.items()
    vals = store.get_records(it.labels, it.keys)
    missing = sum(v is None for v in vals)
    if missing:
        raise StateError(f"partition store: {missing} retained items lack payload records")
    keys = [
        payload_key(reservoirs.names[l], k)
        for l, k in zip(it.labels.tolist(), it.keys.tolist(), strict=True)
    ]
    return dict(zip(keys, vals, strict=True))


def shard_changes(shard: Shard) -> RecordChanges:
    """A shard's records as the changes that load them into an empty partition store."""
    names = LabelReservoirs.from_bytes(shard.reservoirs).names
    ids = {name: i for i, name in enumerate(names) if name is not None}
    labels, keys = [], []
    for pk in shard.records:
        name, key = parse_payload_key(pk)
        labels.append(ids[name])
        keys.append(key)
    changes = RecordChanges.none()
    if keys:
        changes.put_labels = np.array(labels, dtype=np.int64)
        changes.put_keys = np.array(keys, dtype=np.uint64)
        changes.records = RecordColumns.from_records(list(shard.records.values()))
    return changes
