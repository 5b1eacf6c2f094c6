"""Snapshots for trainer tests, built through the real path: PartitionProcessor on RocksDB,
shards, build_snapshot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest

from sampler import EVAL_LABEL, QuotaPolicy
from streamproc.decode.events import Limits
from streamproc.snapshot.build import build_snapshot
from streamproc.snapshot.shards import export_shard, write_shard
from streamproc.state.processor import PartitionProcessor, SamplerConfig
from streamproc.state.store import RocksPartitionStore


def make_snapshot(
    root: Path,
    n: int,
    n_labels: int,
    seed: int = 0,
    sep: float = 4.0,
    zipf_a: float = 0.0,
    cap: int = 400,
    dim: int = 4,
    id_prefix: str = "e",
    partitions: int = 2,
    store: Path | None = None,
    eval_fraction: float = 0.0,
    eval_capacity: int = 1_000,
    feature_names: list[str] | None = None,
) -> tuple[str, np.ndarray]:
    """Events with label-dependent feature means (``sep`` = 0: uninformative features).

    ``eval_fraction`` > 0 keeps an evaluation slice (``eval_capacity`` rows) as the
    worker does. Returns the snapshot version and the true label frequencies of the stream.
    """
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, n_labels + 1) ** zipf_a
    p /= p.sum()
    labels = rng.choice(n_labels, size=n, p=p)
    means = np.random.default_rng(99).normal(0, 1, (n_labels, dim)) * sep
    x = means[labels] + rng.normal(size=(n, dim))
    cfg = SamplerConfig(
        QuotaPolicy(
            min_capacity=10,
            max_capacity=cap,
            boost_capacity=cap,
            global_cap=cap * max(n_labels, 8) + eval_capacity,
            max_labels=max(n_labels, 8) + 1,
            per_label={EVAL_LABEL: (eval_capacity, eval_capacity)} if eval_fraction else {},
        ),
        seed=seed,
        eval_fraction=eval_fraction,
    )
    shard_dir = root / "shards"
    for part in range(partitions):
        proc = PartitionProcessor(
            "events",
            part,
            RocksPartitionStore(root / f"state-{part}"),
            cfg,
            Limits(feature_dim=dim),
        )
        msgs = []
        for i in range(part, n, partitions):
            ev = {
                "id": f"{id_prefix}{i}",
                "ts": float(i),
                "label": f"L{labels[i]}",
                "features": x[i].round(5).tolist(),
            }
            msgs.append((i // partitions, orjson.dumps(ev), 1e12))
        proc.process(msgs)
        proc.checkpoint()
        write_shard(
            shard_dir,
            export_shard(part, proc.next_offset, proc.counters, proc.reservoirs, proc.store),
        )
        proc.store.close()
    m = build_snapshot(shard_dir, store or root / "snapshots", partitions=partitions,
                       feature_names=feature_names)  # fmt: skip
    assert m is not None
    return m.version, np.bincount(labels, minlength=n_labels) / n


@pytest.fixture
def learnable(tmp_path: Path) -> tuple[Path, str]:
    v, _ = make_snapshot(tmp_path, 6_000, 6, seed=1)
    return tmp_path / "snapshots", v
