"""Loading a snapshot (Parquet + manifest) into tensors, and the fixed evaluation split.

The held-out split is decided per event by a hash of its id: an event is in the
evaluation set of every snapshot that contains it, whatever the version, so two models
trained on different snapshots are compared on data neither trained on.

>>> in_eval_split(["a", "b", "c"], eval_percent=50).tolist()
[True, False, False]
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

import snapshot_format
from snapshot_format import SnapshotFormatError

from .errors import TrainerError


@dataclass
class SnapshotData:
    version: str
    label_names: list[str]
    features: np.ndarray  # float32 [n, d]
    labels: np.ndarray  # int64 [n] primary label id
    multi_hot: np.ndarray  # float32 [n, L]
    ht_weight: np.ndarray  # float64 [n]
    ids: list[str]
    manifest: dict

    @property
    def feature_names(self) -> list[str]:
        """The features' names from the manifest (f0..f<dim-1> for older snapshots)."""
        names = self.manifest.get("feature_names") if self.manifest else None
        return list(names) if names else [f"f{j}" for j in range(self.dim)]

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    def subset(self, mask: np.ndarray) -> SnapshotData:
        return SnapshotData(
            self.version,
            self.label_names,
            self.features[mask],
            self.labels[mask],
            self.multi_hot[mask],
            self.ht_weight[mask],
            [i for i, m in zip(self.ids, mask, strict=True) if m],
            self.manifest,
        )


def latest_version(store: Path | str) -> str:
    """The version ``LATEST`` names; :class:`TrainerError` when there is none or it is bad."""
    try:
        v = snapshot_format.latest_version(store)
    except SnapshotFormatError as e:
        raise TrainerError(str(e)) from None
    if v is None:
        raise TrainerError(f"snapshot store {store}: no LATEST file (no snapshot yet)")
    return v


def read_manifest(store: Path | str, version: str) -> dict:
    try:
        return asdict(snapshot_format.read_manifest(store, version))
    except SnapshotFormatError as e:
        raise TrainerError(str(e)) from None


def load_snapshot(
    store: Path | str, version: str | None = None, label_names: list[str] | None = None
) -> SnapshotData:
    """Read one snapshot; ``label_names`` fixes the label order (e.g. a model's)."""
    version = version or latest_version(store)
    manifest = read_manifest(store, version)
    try:
        table = snapshot_format.read_table(store, version)
    except SnapshotFormatError as e:
        raise TrainerError(str(e)) from None
    if table.num_rows == 0:
        raise TrainerError(f"snapshot {version!r}: no rows")
    if manifest.get("rows") != table.num_rows:
        raise TrainerError(
            f"snapshot {version!r}: manifest says {manifest.get('rows')} rows, "
            f"data has {table.num_rows}"
        )
    feats = table.column("features").combine_chunks()
    dim = feats.type.list_size
    x = feats.values.to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, dim)
    names = list(label_names) if label_names else sorted(manifest["seen"])
    index = {n: i for i, n in enumerate(names)}
    primary = table.column("label").to_pylist()
    unknown = sorted(set(primary) - set(index))
    if unknown:
        raise TrainerError(
            f"snapshot {version!r}: labels {unknown[:5]} are not in the model's label set"
        )
    y = np.array([index[p] for p in primary], dtype=np.int64)
    multi = np.zeros((len(primary), len(names)), dtype=np.float32)
    for r, labs in enumerate(table.column("labels").to_pylist()):
        for lab in labs:
            if lab in index:
                multi[r, index[lab]] = 1.0
    w = table.column("ht_weight").to_numpy().astype(np.float64)
    w = w / selection_probabilities(table)
    if not np.isfinite(x).all() or not (np.isfinite(w).all() and (w > 0).all()):
        raise TrainerError(f"snapshot {version!r}: non-finite features or weights")
    return SnapshotData(version, names, x, y, multi, w, table.column("id").to_pylist(), manifest)


def selection_probabilities(table) -> np.ndarray:
    """Per row, the probability it was selected for labelling (active learning: the
    payload's ``selection_probability``), 1 for rows that were sampled, not selected: a
    selected row's weight is its Horvitz-Thompson weight divided by it.

    >>> import pyarrow as pa
    >>> t = pa.table({"payload": ['{"selection_probability": 0.25}', "null", None]})
    >>> selection_probabilities(t).tolist()
    [0.25, 1.0, 1.0]
    """
    import pyarrow.compute as pc

    q = np.ones(table.num_rows)
    if "payload" not in table.column_names or table.num_rows == 0:
        return q
    pay = table.column("payload")
    hit = pc.fill_null(pc.match_substring(pay, '"selection_probability"'), False)
    for r in np.flatnonzero(hit.to_numpy(zero_copy_only=False)).tolist():
        try:
            v = json.loads(pay[r].as_py()).get("selection_probability")
        except (ValueError, AttributeError):
            continue
        if isinstance(v, int | float) and 0 < v <= 1:
            q[r] = float(v)
    return q


def load_eval_slice(store: Path | str, version: str, label_names: list[str]) -> SnapshotData | None:
    """The snapshot's evaluation slice (``eval.parquet``): events the worker kept out of
    every training reservoir, drawn uniformly, in the stream's natural class mix; rows of
    labels outside ``label_names`` are left out. None when the snapshot has no slice."""
    try:
        table = snapshot_format.read_eval_table(store, version)
    except SnapshotFormatError as e:
        raise TrainerError(str(e)) from None
    if table is None:
        return None
    index = {n: i for i, n in enumerate(label_names)}
    labels = table.column("label").to_pylist()
    keep = np.array([lab in index for lab in labels], dtype=bool)
    if not keep.any():
        return None
    feats = table.column("features").combine_chunks()
    dim = feats.type.list_size
    x = feats.values.to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, dim)[keep]
    if not np.isfinite(x).all():
        raise TrainerError(f"snapshot {version!r}: non-finite features in the evaluation slice")
    y = np.array([index[v] for v, k in zip(labels, keep, strict=True) if k], dtype=np.int64)
    multi = np.zeros((y.shape[0], len(label_names)), dtype=np.float32)
    rows = [labs for labs, k in zip(table.column("labels").to_pylist(), keep, strict=True) if k]
    for r, labs in enumerate(rows):
        for lab in labs:
            if lab in index:
                multi[r, index[lab]] = 1.0
    ids = [i for i, k in zip(table.column("id").to_pylist(), keep, strict=True) if k]
    return SnapshotData(f"eval:{version}", list(label_names), x, y, multi, np.ones(y.shape[0]),
                        ids, {})  # fmt: skip


def load_test_set(path: Path | str, label_names: list[str]) -> SnapshotData:
    """An external test set: a Parquet file or JSON lines with ``label`` (a name) and
    ``features`` (numbers) per row, drawn from the stream's natural mix by the user.
    Every row weighs 1; labels the model does not know are an error naming them.

    >>> import tempfile, json, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "t.jsonl"
    >>> _ = f.write_text(json.dumps({"label": "b", "features": [1.0, 2.0]}))
    >>> load_test_set(f, ["a", "b"]).labels.tolist()
    [1]
    """
    import orjson

    path = Path(path)
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            rows = pq.read_table(path, columns=["label", "features"]).to_pylist()
        else:
            rows = [orjson.loads(x) for x in path.read_bytes().splitlines() if x.strip()]
        labels = [r["label"] for r in rows]
        x = np.array([r["features"] for r in rows], dtype=np.float32)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise TrainerError(f"test set {path}: unreadable ({e})") from None
    if not rows or x.ndim != 2 or not np.isfinite(x).all():
        raise TrainerError(f"test set {path}: needs rows of finite 'features' of one length")
    index = {n: i for i, n in enumerate(label_names)}
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise TrainerError(f"test set {path}: labels {unknown[:5]} are not in the label set")
    y = np.array([index[v] for v in labels], dtype=np.int64)
    multi = np.eye(len(label_names), dtype=np.float32)[y]
    ids = [f"test-{i}" for i in range(len(y))]
    return SnapshotData(f"test:{path.name}", list(label_names), x, y, multi, np.ones(len(y)),
                        ids, {})  # fmt: skip


def in_eval_split(ids: list[str], eval_percent: int = 20) -> np.ndarray:
    """True for the events of the fixed held-out split (by a hash of the event id)."""
    if not 0 < eval_percent < 100:
        raise TrainerError(f"eval_percent: must be in (0, 100), got {eval_percent}")
    out = np.empty(len(ids), dtype=bool)
    for i, s in enumerate(ids):
        h = int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little")
        out[i] = h % 100 < eval_percent
    return out


def in_tuning_half(ids: list[str]) -> np.ndarray:
    """Half of an evaluation split, fixed by another hash of the id: where decision
    thresholds are chosen, so the other half still scores them honestly.

    >>> in_tuning_half(["a", "b", "c", "d"]).tolist()
    [True, False, False, False]
    """
    out = np.empty(len(ids), dtype=bool)
    for i, s in enumerate(ids):
        h = hashlib.blake2b(s.encode(), digest_size=8, person=b"tune").digest()
        out[i] = h[0] & 1 == 1
    return out


def feature_vector(value, names: list[str], where: str = "features") -> list[float]:
    """A model's input from a list of numbers (in order) or an object by feature name;
    an error names the missing, unknown or bad feature.

    >>> feature_vector({"b": 2, "a": 1}, ["a", "b"])
    [1.0, 2.0]
    >>> feature_vector([1, 2, 3], ["a", "b"])
    Traceback (most recent call last):
    ...
    trainer.errors.TrainerError: features: 3 numbers, the model expects 2 (a, b)
    """
    if isinstance(value, dict):
        missing = [n for n in names if n not in value]
        unknown = sorted(set(value) - set(names))
        if missing or unknown:
            raise TrainerError(f"{where}: missing {missing}, unknown {unknown} (the model's "
                               f"features: {', '.join(names)})")  # fmt: skip
        value = [value[n] for n in names]
    if not isinstance(value, list):
        raise TrainerError(f"{where}: expected a list of numbers or an object by name")
    if len(value) != len(names):
        raise TrainerError(
            f"{where}: {len(value)} numbers, the model expects {len(names)} ({', '.join(names)})"
        )
    out = []
    for n, v in zip(names, value, strict=True):
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise TrainerError(f"{where}: {n} = {v!r} is not a number")
        out.append(float(v))
    return out
