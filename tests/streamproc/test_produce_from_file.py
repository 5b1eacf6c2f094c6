"""``streamproc produce --from FILE`` on a real data set (UCI Wine, 178 rows, 13
features, shipped with scikit-learn), written as CSV, Parquet and JSON lines, sent to the
embedded broker and decoded back by the worker's own decoder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from devtools.broker import EmbeddedBroker
from sampler import QuotaPolicy
from streamproc.decode.events import Limits
from streamproc.decode.messages import RawMessages
from streamproc.state.processor import PartitionProcessor, SamplerConfig
from streamproc.state.store import RocksPartitionStore
from tests.conftest import read_topic

ROOT = Path(__file__).resolve().parents[2]


def _wine() -> pa.Table:
    from sklearn.datasets import load_wine

    d = load_wine()
    cols = {n.replace("/", "_"): d.data[:, i] for i, n in enumerate(d.feature_names)}
    return pa.table({"cultivar": [f"class_{y}" for y in d.target], **cols,
                     "sample": [f"wine-{i}" for i in range(len(d.target))]})  # fmt: skip


def _write(t: pa.Table, path: Path) -> None:
    if path.suffix == ".csv":
        pcsv.write_csv(t, path)
    elif path.suffix == ".parquet":
        pq.write_table(t, path)
    else:
        path.write_text("".join(__import__("json").dumps(r) + "\n" for r in t.to_pylist()))


def _cli(bootstrap: str, *args: str, cwd: Path) -> tuple[int, str]:
    p = subprocess.run(
        [sys.executable, "-m", "streamproc.cli", "produce", "--broker", f"kafka://{bootstrap}",
         "--events-topic", "events", "--feature-dim", "13", *args],
        cwd=cwd, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    return p.returncode, p.stdout + p.stderr


@pytest.mark.integration
@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
@pytest.mark.parametrize("as_json", [False, True])
def test_a_real_file_arrives_as_the_events_it_holds(tmp_path: Path, suffix, as_json) -> None:
    t = _wine()
    path = tmp_path / f"wine{suffix}"
    _write(t, path)
    with EmbeddedBroker() as b:
        b.create_topics({"events": 1})
        extra = ["--json"] if as_json else ["--frame-rows", "50"]
        rc, out = _cli(b.bootstrap, "--from", str(path), "--label-column", "cultivar",
                       "--id-column", "sample", *extra, cwd=tmp_path)  # fmt: skip
        assert rc == 0 and "produced 178 events" in out, out
        msgs = read_topic(b.bootstrap, "events", expect=178 if as_json else 4, timeout=30)
    # the worker's decoder accepts every row, with the file's labels, features and ids
    proc = PartitionProcessor(
        "events", 0, RocksPartitionStore(tmp_path / "state"),
        SamplerConfig(QuotaPolicy(min_capacity=5, max_capacity=100, global_cap=1_000,
                                  max_labels=8)),
        Limits(feature_dim=13),
    )  # fmt: skip
    rejects = proc.process(RawMessages.from_tuples([(m.offset(), m.value(), 1e12) for m in msgs]))
    assert rejects == []
    assert proc.counters["accepted"] == 178
    want = {k: int(v) for k, v in zip(*np.unique(t.column("cultivar").to_pylist(),
                                                 return_counts=True), strict=True)}  # fmt: skip
    assert proc.reservoirs.seen_counts() == want
    proc.store.close()


def test_mapping_errors_name_the_column(tmp_path: Path) -> None:
    t = _wine()
    path = tmp_path / "wine.csv"
    _write(t, path)
    rc, out = _cli("127.0.0.1:1", "--from", str(path), "--label-column", "nope",
                   "--broker-timeout-s", "1", cwd=tmp_path)  # fmt: skip
    assert rc == 2  # the broker is checked first: a closed port fails fast
    from stratastream.errors import ConfigError
    from streamproc.feed.fromfile import ColumnMap, read_table

    table = read_table(path)
    with pytest.raises(ConfigError, match="column 'nope' is not in the file"):
        ColumnMap(label="nope").resolve(table, 13)
    with pytest.raises(ConfigError, match="13 feature columns .* feature_dim is 4"):
        ColumnMap(label="cultivar", id="sample").resolve(table, 4)
    with pytest.raises(ConfigError, match="column 'sample' is string, not numbers"):
        ColumnMap(label="cultivar", features=("alcohol", "sample")).resolve(table, 2)
