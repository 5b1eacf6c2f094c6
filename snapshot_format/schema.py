"""The Arrow schema of ``data.parquet``: one row per retained event.

========== ======================== ==================================================
column     type                     meaning
========== ======================== ==================================================
label      string                   the label whose reservoir retained the row
labels     list<string>             every label of the event
ts         float64                  event time (s since the epoch)
features   fixed_size_list<f32, d>  the event's feature vector
payload    string                   the event's payload (raw JSON, scrubbed per policy)
id         string                   the event id
partition  int32                    source partition
offset     int64                    source offset
inclusion  float64                  inclusion probability of the row
ht_weight  float64                  Horvitz-Thompson weight (1 / inclusion)
dq_dup..   bool                     ``dq_duplicate``: a near-duplicate of a row with a
                                    smaller sampling key (same label, source, grid cell)
dq_outlier bool                     robust z-score above the threshold on some feature
========== ======================== ==================================================

The two ``dq_`` columns are optional (snapshots written before them lack them).

>>> arrow_schema(2).field("features").type
FixedSizeListType(fixed_size_list<item: float>[2])
"""

from __future__ import annotations

from .errors import SnapshotFormatError

FORMAT_VERSION = 1  # recorded in every manifest; bumped on incompatible changes
COLUMNS = (
    "label", "labels", "ts", "features", "payload", "id", "partition", "offset",
    "inclusion", "ht_weight", "dq_duplicate", "dq_outlier",
)  # fmt: skip
REQUIRED_COLUMNS = ("label", "labels", "features", "id", "ht_weight")  # what a reader needs


def arrow_schema(dim: int):
    import pyarrow as pa

    return pa.schema(
        [
            ("label", pa.string()),
            ("labels", pa.list_(pa.string())),
            ("ts", pa.float64()),
            ("features", pa.list_(pa.float32(), dim)),
            ("payload", pa.string()),
            ("id", pa.string()),
            ("partition", pa.int32()),
            ("offset", pa.int64()),
            ("inclusion", pa.float64()),
            ("ht_weight", pa.float64()),
            ("dq_duplicate", pa.bool_()),
            ("dq_outlier", pa.bool_()),
        ]
    )


def check_table(table, where: str) -> None:
    """Raise :class:`SnapshotFormatError` when ``table`` lacks a column readers need."""
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise SnapshotFormatError(f"{where}: data lacks column(s) {missing}")
