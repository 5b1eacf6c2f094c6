"""Rows of a JSON-lines, CSV or Parquet file → events on the events topic.

The file is read with pyarrow (columnar: no per-row parsing in Python), columns are
mapped to the event's fields by a :class:`ColumnMap`, and rows are sent as frames (the
columnar message format, :func:`streamproc.decode.frames.encode_frame`) or as JSON
events. Every mapping error names the column.

>>> import pyarrow as pa
>>> t = pa.table({"y": ["a", "b"], "x1": [1.0, 2.0], "x2": [3, 4], "when": [10.0, 11.0]})
>>> cols = ColumnMap(label="y", ts="when").resolve(t, feature_dim=2)
>>> cols.features
['x1', 'x2']
>>> rows = columns_of(t, cols, source="t.csv")
>>> rows.labels, rows.features.tolist(), rows.ids
(['a', 'b'], [[1.0, 3.0], [2.0, 4.0]], ['t.csv:0', 't.csv:1'])
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stratastream.errors import ConfigError

FORMATS = ("jsonl", "csv", "parquet")


def read_table(path: Path, fmt: str = "auto"):
    """The whole file as a pyarrow Table; ``fmt`` ``auto`` goes by the file's suffix."""
    import pyarrow as pa

    path = Path(path)
    if fmt == "auto":
        suffix = path.suffix.lower().lstrip(".")
        fmt = {"json": "jsonl", "ndjson": "jsonl", "pq": "parquet"}.get(suffix, suffix)
    if fmt not in FORMATS:
        raise ConfigError(f"--format: expected one of {FORMATS} (or a file ending in one), "
                          f"got {fmt!r} for {path.name}")  # fmt: skip
    if not path.is_file():
        raise ConfigError(f"--from: {path} is not a file")
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path)
        if fmt == "csv":
            import pyarrow.csv as pcsv

            return pcsv.read_csv(path)
        import pyarrow.json as pjson

        return pjson.read_json(path)
    except (pa.ArrowException, OSError, ValueError) as e:
        raise ConfigError(f"--from: {path} is not readable as {fmt}: {e}") from None


@dataclass(frozen=True)
class ColumnMap:
    """Which columns are the label(s), timestamp, id, features and payload.

    ``features`` empty: every numeric column not mapped to something else, in file order.
    ``labels_sep``: the label column holds several labels joined by this separator (a
    list column holds several labels as it is)."""

    label: str = "label"
    ts: str | None = None  # None: the time of sending
    id: str | None = None  # None: "<file name>:<row>"
    features: tuple[str, ...] = ()
    payload: tuple[str, ...] = ()
    labels_sep: str | None = None

    def resolve(self, table, feature_dim: int) -> ResolvedColumns:
        import pyarrow.types as pt

        names = table.column_names

        def need(col: str, role: str) -> str:
            if col not in names:
                raise ConfigError(f"{role}: column {col!r} is not in the file (columns: "
                                  f"{', '.join(names[:20])})")  # fmt: skip
            return col

        need(self.label, "--label-column")
        if self.ts:
            need(self.ts, "--ts-column")
        if self.id:
            need(self.id, "--id-column")
        for c in self.payload:
            need(c, "--payload-columns")
        used = {self.label, self.ts, self.id, *self.payload}
        if self.features:
            feats = [need(c, "--feature-columns") for c in self.features]
        else:
            feats = [c for c in names if c not in used and _numeric(table.schema.field(c).type)]
        for c in feats:
            t = table.schema.field(c).type
            if not (_numeric(t) or pt.is_null(t)):
                raise ConfigError(f"--feature-columns: column {c!r} is {t}, not numbers")
        if len(feats) != feature_dim:
            raise ConfigError(
                f"--feature-columns: {len(feats)} feature columns ({', '.join(feats)}) but "
                f"feature_dim is {feature_dim}; pass --feature-columns or --feature-dim"
            )
        return ResolvedColumns(self, feats)


def _numeric(t) -> bool:
    import pyarrow.types as pt

    return pt.is_integer(t) or pt.is_floating(t) or pt.is_boolean(t) or pt.is_decimal(t)


@dataclass(frozen=True)
class ResolvedColumns:
    spec: ColumnMap
    features: list[str]


@dataclass
class Rows:
    ts: np.ndarray
    labels: list
    features: np.ndarray
    ids: list[str]
    payloads: list | None = field(default=None)


def columns_of(table, cols: ResolvedColumns, source: str, start: int = 0) -> Rows:
    """A slice of the table as event columns (one conversion per column)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    spec, n = cols.spec, table.num_rows
    x = np.column_stack(
        [table.column(c).cast(pa.float64()).to_numpy(zero_copy_only=False) for c in cols.features]
    ) if cols.features else np.zeros((n, 0))  # fmt: skip
    if not np.isfinite(x).all():
        r, c = np.argwhere(~np.isfinite(x))[0]
        raise ConfigError(f"row {start + r}: feature column {cols.features[c]!r} is empty or "
                          "not a finite number")  # fmt: skip
    lab = table.column(spec.label)
    if pa.types.is_list(lab.type) or pa.types.is_large_list(lab.type):
        labels = [[str(v) for v in row] if row else [] for row in lab.to_pylist()]
    else:
        labels = [None if v is None else str(v) for v in lab.cast(pa.string()).to_pylist()]
        if spec.labels_sep:
            labels = [None if v is None else v.split(spec.labels_sep) for v in labels]
    for i, v in enumerate(labels):
        if not v:
            raise ConfigError(f"row {start + i}: label column {spec.label!r} is empty")
    if spec.ts:
        col = table.column(spec.ts)
        if pa.types.is_timestamp(col.type):
            col = pc.divide(pc.cast(col.cast(pa.timestamp("us")), pa.int64()), 1e6)
        ts = col.cast(pa.float64()).to_numpy(zero_copy_only=False)
        if not np.isfinite(ts).all():
            raise ConfigError(f"row {start + int(np.argmax(~np.isfinite(ts)))}: timestamp "
                              f"column {spec.ts!r} is empty or not a number")  # fmt: skip
    else:
        ts = np.full(n, time.time())
    if spec.id:
        ids = [
            None if v is None else str(v)
            for v in table.column(spec.id).cast(pa.string()).to_pylist()
        ]
        if None in ids:
            raise ConfigError(f"row {start + ids.index(None)}: id column {spec.id!r} is empty")
    else:
        ids = [f"{source}:{start + i}" for i in range(n)]
    payloads = None
    if spec.payload:
        payloads = table.select(list(spec.payload)).to_pylist()
    return Rows(ts, labels, x, ids, payloads)


def batches(table, size: int) -> Iterator[tuple[int, object]]:
    for lo in range(0, table.num_rows, size):
        yield lo, table.slice(lo, size)
