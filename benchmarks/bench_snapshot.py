"""Snapshot build time at 100k retained rows (50 labels x 2,000, the default global cap).

Four partitions are filled through :class:`PartitionProcessor` with frames of synthetic
events and checkpointed into real RocksDB stores; then the timed part runs what the worker
runs for a snapshot: export every partition's shard from its store, merge the shards and
write the Parquet snapshot. The baseline measured in the same run is the plain Parquet
write of a table of the same rows (pyarrow, zstd), the floor any snapshot build pays, so
the figure is a ratio against the machine's own speed.

    python -m benchmarks.bench_snapshot
"""

from __future__ import annotations

import io
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import write_result

LABELS = 50
PER_LABEL = 2_000
PARTITIONS = 4
EVENTS_PER_PARTITION = 60_000
DIM = 4


def _fill(root: Path):
    from sampler import QuotaPolicy
    from streamproc.decode.events import Limits
    from streamproc.decode.frames import encode_frame
    from streamproc.state.processor import PartitionProcessor, SamplerConfig
    from streamproc.state.store import RocksPartitionStore

    policy = QuotaPolicy(min_capacity=200, max_capacity=PER_LABEL, global_cap=LABELS * PER_LABEL)
    cfg = SamplerConfig(policy)
    rng = np.random.default_rng(0)
    procs = []
    now = time.time()
    for p in range(PARTITIONS):
        store = RocksPartitionStore(root / f"state-{p}")
        proc = PartitionProcessor("events", p, store, cfg, Limits(DIM, 1 << 20, 3600.0))
        rows = 2_000
        for m in range(EVENTS_PER_PARTITION // rows):
            labels = [f"label-{i:02d}" for i in rng.integers(0, LABELS, rows)]
            payloads = [{"msg": f"event {p}-{m}-{i}", "level": "info"} for i in range(rows)]
            frame = encode_frame(
                np.full(rows, now - 60.0),
                labels,
                rng.normal(size=(rows, DIM)).astype(np.float32),
                ids=[f"e-{p}-{m}-{i}" for i in range(rows)],
                payloads=payloads,
            )
            proc.process([(m, frame, now)])
        proc.checkpoint()
        procs.append(proc)
    return procs


def _snapshot(procs, shard_dir: Path, store: Path):
    from streamproc.snapshot.build import build_snapshot
    from streamproc.snapshot.shards import export_shard, write_shard

    for p in procs:
        write_shard(
            shard_dir, export_shard(p.partition, p.next_offset, p.counters, p.reservoirs, p.store)
        )
    return build_snapshot(shard_dir, store, retention=3, partitions=PARTITIONS)


def main(repeat: int = 3) -> dict:
    import pyarrow.parquet as pq

    root = Path(tempfile.mkdtemp(prefix="bench-snapshot-"))
    try:
        procs = _fill(root)
        retained = sum(len(p.reservoirs.items().keys) for p in procs)
        times = []
        manifest = None
        for _ in range(repeat):
            shutil.rmtree(root / "shards", ignore_errors=True)
            shutil.rmtree(root / "store", ignore_errors=True)
            t = time.perf_counter()
            manifest = _snapshot(procs, root / "shards", root / "store")
            times.append(time.perf_counter() - t)
        assert manifest is not None
        table = pq.read_table(root / "store" / manifest.version / "data.parquet")
        base = []
        for _ in range(repeat):
            t = time.perf_counter()
            pq.write_table(table, io.BytesIO(), compression="zstd")
            base.append(time.perf_counter() - t)
        for p in procs:
            p.store.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    out = {
        "retained_rows_in_partitions": retained,
        "snapshot_rows": manifest.rows,
        "build_seconds_best": min(times),
        "build_seconds_all": times,
        "parquet_write_baseline_seconds": min(base),
        "ratio_vs_parquet_write": min(times) / min(base),
    }
    print(
        f"snapshot of {manifest.rows:,} rows ({PARTITIONS} partitions): "
        f"{min(times) * 1000:.0f} ms best of {repeat}; plain Parquet write "
        f"{min(base) * 1000:.0f} ms; ratio {out['ratio_vs_parquet_write']:.1f}x"
    )
    write_result("snapshot", out)
    return out


if __name__ == "__main__":
    main()
