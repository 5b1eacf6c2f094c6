"""Data quality of a snapshot's rows: near-duplicates and outliers, per label.

Both are functions of the snapshot's rows alone (the merged reservoirs' content), never of
the order or batching in which events arrived, so a replay, a restart or another
partitioning gives the same flags -- the snapshot's version hash covers them.

* **Near-duplicates**: rows of the same label, from the same source (a payload field
  named by ``dq_source_field``, or one source for all), whose features fall in the same
  cell of a grid of width ``tolerance`` (each feature floored to a multiple of it: rows
  closer than ``tolerance`` but on two sides of a cell edge are not merged). Of each
  group the row with the smallest sampling key stays unflagged -- an order-free choice.
* **Outliers**: rows whose robust z-score ``|x - median| / (1.4826 * MAD)`` exceeds
  ``z`` on some feature, against the median and MAD of the label's own retained rows
  (a label with fewer than ``min_rows`` rows is not judged; a feature whose MAD is 0 is
  skipped).

With ``exclude``, flagged rows are left out of the published training rows (they stay
in the reservoirs, so the other rows' inclusion probabilities stay exact); without, they
are published with their flags (columns ``dq_duplicate``, ``dq_outlier``).

>>> import numpy as np
>>> labels = np.array([0, 0, 0, 1])
>>> feats = np.array([[1.0, 2.0], [1.00001, 2.0], [5.0, 5.0], [1.0, 2.0]])
>>> keys = np.array([9, 3, 4, 1], dtype=np.uint64)
>>> near_duplicates(labels, feats, keys, tolerance=1e-3).tolist()
[True, False, False, False]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAD_SCALE = 1.4826  # MAD of a normal distribution -> its standard deviation


@dataclass(frozen=True)
class QualityConfig:
    """``tolerance`` 0 turns near-duplicates off, ``z`` 0 outliers."""

    tolerance: float = 1e-4
    source_field: str = ""
    z: float = 8.0
    min_rows: int = 30
    exclude: bool = False


def near_duplicates(
    labels: np.ndarray,
    features: np.ndarray,
    keys: np.ndarray,
    tolerance: float,
    sources: np.ndarray | None = None,
) -> np.ndarray:
    """True for every row that has a near-duplicate with a smaller key (see module)."""
    n = labels.shape[0]
    if n == 0 or tolerance <= 0:
        return np.zeros(n, dtype=bool)
    with np.errstate(over="ignore", invalid="ignore"):
        cells = np.floor(np.asarray(features, dtype=np.float64) / tolerance)
    cells = np.nan_to_num(cells, nan=0.0, posinf=2.0**62, neginf=-(2.0**62))
    cells = np.clip(cells, -(2.0**62), 2.0**62).astype(np.int64)
    src = np.zeros(n, np.int64) if sources is None else np.asarray(sources, np.int64)
    cols = np.column_stack([np.asarray(labels, np.int64), src, cells])
    # order by group, then by key: the first row of each group is its keeper
    order = np.lexsort((np.asarray(keys, np.uint64), *cols.T[::-1]))
    g = cols[order]
    first = np.ones(n, dtype=bool)
    first[1:] = (g[1:] != g[:-1]).any(axis=1)
    out = np.zeros(n, dtype=bool)
    out[order] = ~first
    return out


def outliers(labels: np.ndarray, features: np.ndarray, z: float, min_rows: int = 30) -> np.ndarray:
    """True for rows whose robust z-score exceeds ``z`` on some feature (see module)."""
    n = labels.shape[0]
    out = np.zeros(n, dtype=bool)
    if n == 0 or z <= 0:
        return out
    x = np.asarray(features, dtype=np.float64)
    for lab in np.unique(labels).tolist():
        rows = np.flatnonzero(labels == lab)
        if rows.shape[0] < min_rows:
            continue
        xs = x[rows]
        med = np.median(xs, axis=0)
        scale = MAD_SCALE * np.median(np.abs(xs - med), axis=0)
        ok = scale > 0
        if not ok.any():
            continue
        score = np.abs(xs[:, ok] - med[ok]) / scale[ok]
        out[rows] = (score > z).any(axis=1)
    return out


def source_codes(payloads: list, field: str) -> np.ndarray:
    """Per row, a code of the payload's ``field`` value (rows without it share one code).
    One JSON decode per row: this runs in the snapshot build, off the ingest path."""
    import msgspec

    dec = msgspec.json.Decoder()
    codes: dict[str, int] = {}
    out = np.zeros(len(payloads), np.int64)
    for i, p in enumerate(payloads):
        try:
            doc = dec.decode(p) if p else None
        except msgspec.DecodeError:
            doc = None
        v = doc.get(field) if isinstance(doc, dict) else None
        out[i] = codes.setdefault(msgspec.json.encode(v).decode(), len(codes))
    return out
