"""Load the hot path's compiled kernels before the first real batch.

numba compiles (or loads from its on-disk cache) each kernel on its first call. Left to
the first consumed batches, that costs 50-100 ms of a partition's first-event latency
and stalls the consumer just when a restarted worker has the most lag to catch up.
:func:`warm_up` runs every path of the worker once on a few synthetic events -- JSON
events with exact and hard numbers, a reject, a columnar frame, a checkpoint into a
throw-away RocksDB store -- with the worker's own settings, then deletes the store.
The worker calls it before it joins the consumer group.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

from streamproc.decode.frames import encode_frame
from streamproc.decode.messages import RawMessages
from streamproc.settings import DecodeSection, SamplerSection
from streamproc.state.processor import PartitionProcessor
from streamproc.state.store import RocksPartitionStore
from streamproc.worker.assembly import limits, sampler_config, scrubber


def _json_events(dim: int, now: float, n: int) -> list[bytes]:
    """Events whose numbers take both conversions: the exact fast path (short decimals)
    and the batch fallback (17 significant digits); one with an escaped id (reference
    decoder), one without an id (key from its coordinates) and one malformed event."""
    out = []
    for i in range(n):
        ev = {
            "id": f"warm-{i}",
            "ts": now - 1.0 + i * 1e-3 + (1e-13 if i % 2 else 0.0),
            "label": f"warm_{i % 3}",
            "features": [0.25 * (i % 7) + (1e-11 if i % 3 else 0.0)] * dim,
            "payload": {"i": i},
        }
        out.append(orjson.dumps(ev))
    ref = {**orjson.loads(out[0]), "id": "warm-\u00e9"}  # an escape: the reference decoder
    out.append(orjson.dumps(ref).replace(b"\xc3\xa9", b"\\u00e9"))
    out.append(orjson.dumps({k: v for k, v in ref.items() if k != "id"}))  # key from coordinates
    out.append(b'{"id": "warm-bad", "ts": "not a number"}')
    return out


def warm_up(decode: DecodeSection, sampler: SamplerSection, events: int = 64) -> float:
    """Run decode, sampling and a checkpoint once; returns the seconds it took."""
    t = time.perf_counter()
    dim, now = decode.feature_dim, time.time()
    values: list[bytes | None] = list(_json_events(dim, now, events))
    rows = 8
    values.append(
        encode_frame(
            now - 1.0 + np.arange(rows) * 1e-3,
            [f"warm_{i % 3}" for i in range(rows)],
            np.full((rows, dim), 0.5, np.float32),
            ids=[f"warm-frame-{i}" for i in range(rows)],
        )
    )
    values.append(None)  # a tombstone
    raw = RawMessages.from_values(
        list(range(len(values))), values, np.full(len(values), now, np.float64)
    )
    root = Path(tempfile.mkdtemp(prefix="strata-warmup-"))
    try:
        store = RocksPartitionStore(root / "state")
        try:
            proc = PartitionProcessor(
                "warm-up", 0, store, sampler_config(sampler), limits(decode),
                scrubber(decode),
            )  # fmt: skip
            proc.process(raw)
            proc.checkpoint()
            proc.reservoirs.to_bytes()
        finally:
            store.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return time.perf_counter() - t
