"""Bytes a checkpoint writes: deltas against rewriting the state whole, same run.

One partition on real RocksDB, 20 labels filling 10k retained rows (500 each), then a
steady stream with ``--between`` events between checkpoints. For each steady checkpoint
it records what the write batch held (keys and values, ``store.last_write_bytes``), the
part of it that was the delta of the locator table and reservoirs, and what a whole
rewrite would have written instead (the same records and small parts, plus the whole
table and reservoirs): the baseline, measured on the same checkpoints.

    python -m benchmarks.bench_checkpoint
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import orjson

from sampler import QuotaPolicy
from streamproc.decode.events import Limits
from streamproc.state.processor import PartitionProcessor, SamplerConfig
from streamproc.state.store import RocksPartitionStore

from .common import write_result


def _msgs(n: int, start: int) -> list:
    return [
        (i, orjson.dumps({"id": f"e{i}", "ts": float(i), "label": f"l{(i * 7919) % 20}",
                          "features": [i % 5, i % 11], "payload": {"i": i}}), 1e9)
        for i in range(start, start + n)
    ]  # fmt: skip


def run(checkpoints: int = 60, between: int = 2_000) -> dict:
    cfg = SamplerConfig(
        QuotaPolicy(min_capacity=50, max_capacity=500, global_cap=10_000, max_labels=32), seed=3
    )
    with tempfile.TemporaryDirectory() as d:
        store = RocksPartitionStore(Path(d) / "p")
        proc = PartitionProcessor("events", 0, store, cfg, Limits(feature_dim=2))
        proc.process(_msgs(20_000, 0))
        proc.checkpoint()
        first = store.last_write_bytes
        rows = []
        offset = 20_000
        for _ in range(checkpoints):
            before = store.deltas[1]
            proc.process(_msgs(between, offset))
            offset += between
            proc.checkpoint()
            state = len(store.table.to_bytes()) + len(proc.reservoirs.to_bytes())
            delta = store.deltas[1] - before if store.deltas[0] else None
            rows.append((store.last_write_bytes, delta, state))
        store.close()
    written = np.array([r[0] for r in rows], float)
    deltas = np.array([r[1] for r in rows if r[1] is not None], float)
    state = np.array([r[2] for r in rows], float)
    whole = written - np.median(deltas) + state  # records and small parts + whole state
    return {
        "retained_rows": 10_000,
        "events_between_checkpoints": between,
        "checkpoints": checkpoints,
        "first_checkpoint_bytes": first,
        "delta_median_bytes": float(np.median(written)),
        "delta_mean_bytes": float(written.mean()),
        "whole_rewrite_median_bytes": float(np.median(whole)),
        "ratio_whole_over_delta_mean": float(whole.mean() / written.mean()),
        "bases_rewritten": int(sum(r[1] is None for r in rows)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", type=int, default=60)
    ap.add_argument("--between", type=int, default=2_000)
    a = ap.parse_args([] if __name__ != "__main__" else None)
    res = run(a.checkpoints, a.between)
    for k, v in res.items():
        print(f"{k:32s} {v:,.0f}" if isinstance(v, float) and v > 10 else f"{k:32s} {v}")
    write_result("checkpoint", res)


if __name__ == "__main__":
    main()
