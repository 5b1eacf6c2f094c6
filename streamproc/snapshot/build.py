"""Building a snapshot: merge the shards of all partitions into one balanced, versioned
training set in the store (:mod:`snapshot_format`).

The merge of the reservoirs is exact (:meth:`sampler.LabelReservoirs.merge`), so the
result does not depend on how partitions were spread over workers. The retained items'
records are found in the shards by (label, key) with sorted arrays, gathered column by
column and turned into Arrow columns (:mod:`.columnar`); no record is decoded on its own.

``version`` is a content hash of the data and the source offsets, ``parent`` the
previous version. The version's files are renamed into place before ``LATEST`` moves,
so readers never see a half snapshot; versions beyond ``retention`` are removed.
"""

from __future__ import annotations

import hashlib
import io
import logging
import time
from pathlib import Path

import numpy as np

from sampler import EVAL_LABEL, LabelReservoirs, balance_ratio, by_label, group_of
from snapshot_format import (
    SnapshotFormatError,
    SnapshotManifest,
    arrow_schema,
    content_version,
    data_path,
    install_version,
    latest_version,
    list_manifests,
    remove_version,
    write_latest,
)
from stratastream.errors import StateError
from streamproc.snapshot.columnar import record_arrays
from streamproc.snapshot.quality import QualityConfig, near_duplicates, outliers, source_codes
from streamproc.snapshot.shards import Shard, ShardStore
from streamproc.state.processor import split_counters
from streamproc.state.records import RecordColumns

log = logging.getLogger(__name__)


def _merge(shards: list[Shard]) -> tuple[LabelReservoirs, dict[str, int], list[list]]:
    """The merged reservoirs, the summed counters, and each shard's label names."""
    merged: LabelReservoirs | None = None
    counters: dict[str, int] = {}
    names: list[list] = []
    for s in shards:
        r = LabelReservoirs.from_bytes(s.reservoirs)
        names.append(list(r.names))
        merged = r if merged is None else merged.merge(r)
        for k, v in s.counters.items():
            if not k.startswith("_"):  # not a count (the log fingerprint)
                counters[k] = counters.get(k, 0) + int(v)  # eval_seen:<label> summed too
    assert merged is not None
    return merged, counters, names


def _by_label_name(merged: LabelReservoirs):
    """The retained items ordered by label *name* (then priority, as within a label), so
    a snapshot's rows do not depend on the order in which labels were registered."""
    it = merged.items()
    rank = np.zeros(len(merged.names), np.int64)
    for r, (_, lid) in enumerate(sorted((n, i) for i, n in enumerate(merged.names) if n)):
        rank[lid] = r
    order = np.argsort(rank[it.labels], kind="stable")
    return type(it)(
        it.labels[order], it.keys[order], it.timestamps[order], it.priorities[order],
        it.inclusion[order],
    )  # fmt: skip


def _gather(shards: list[Shard], shard_names: list[list], merged: LabelReservoirs, labels, keys):
    """The records of the items (merged label ids, keys), found in the shards."""
    ids = {name: i for i, name in enumerate(merged.names) if name is not None}
    cat_lab, cat_key, records = [], [], RecordColumns.empty()
    for s, names in zip(shards, shard_names, strict=True):
        # a label the merge folded into the overflow label (max_labels) is found there
        folded = ids.get(merged.policy.overflow_label, -1)
        remap = np.array([ids.get(n, folded) if n is not None else -1 for n in names] or [-1])
        cat_lab.append(remap[s.labels()])
        cat_key.append(s.keys())
        records.extend(s.records())
    cl = np.concatenate(cat_lab) if cat_lab else np.zeros(0, np.int64)
    ck = np.concatenate(cat_key) if cat_key else np.zeros(0, np.uint64)
    rows = np.full(keys.shape[0], -1, np.int64)
    for lid in np.unique(labels).tolist():  # one step per label, not per row
        in_cat = np.flatnonzero(cl == lid)
        order = in_cat[np.argsort(ck[in_cat], kind="stable")]
        sorted_keys = ck[order]
        want = np.flatnonzero(labels == lid)
        at = np.searchsorted(sorted_keys, keys[want])
        at = np.minimum(at, max(0, sorted_keys.shape[0] - 1))
        hit = sorted_keys.shape[0] > 0
        ok = hit & (sorted_keys[at] == keys[want]) if hit else np.zeros(want.shape[0], bool)
        rows[want[ok]] = order[at[ok]]
    if (rows < 0).any():
        i = int(np.flatnonzero(rows < 0)[0])
        raise StateError(
            f"snapshot: no payload record for label {merged.names[labels[i]]!r} key {keys[i]}"
        )
    return records.take(rows)


def build_snapshot(
    shards_dir: Path | ShardStore,
    store: Path,
    retention: int = 10,
    partitions: int | None = None,
    exclude_ids: frozenset[str] = frozenset(),
    feature_names: list[str] | tuple[str, ...] | None = None,
    drift_report: str | None = None,
    quality: QualityConfig | None = None,
) -> SnapshotManifest | None:
    """Merge all shards into a new snapshot version.

    Returns None when there is nothing new, or when ``partitions`` is given and some
    partition has no shard yet (a snapshot always covers the whole topic).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    source = shards_dir if isinstance(shards_dir, ShardStore) else ShardStore(shards_dir)
    shards = source.read_all()
    if not shards:
        return None
    if partitions is not None and {s.partition for s in shards} != set(range(partitions)):
        return None
    merged, counters, shard_names = _merge(shards)
    it = _by_label_name(merged)
    cols = record_arrays(_gather(shards, shard_names, merged, it.labels, it.keys))
    keep = np.ones(it.labels.shape[0], dtype=bool)
    if exclude_ids and len(cols["id"]):  # held for relabelling: out until resolved
        keep = ~pc.is_in(cols["id"], value_set=pa.array(sorted(exclude_ids))).to_numpy(
            zero_copy_only=False
        )
    # a stratum's rows carry its label (sub-strata: sampler.strata)
    names = pa.array([group_of(n) if n is not None else "" for n in merged.names], pa.string())
    dim = cols["features"].shape[1]
    eval_lid = merged.label_id(EVAL_LABEL) if EVAL_LABEL in merged.labels else -1
    is_eval = it.labels == eval_lid

    held = int((~keep).sum())
    qc = quality if quality is not None else QualityConfig()
    train_mask = keep & ~is_eval
    train_rows = np.flatnonzero(train_mask)
    dup = np.zeros(it.labels.shape[0], dtype=bool)
    out = np.zeros(it.labels.shape[0], dtype=bool)
    if train_rows.size:
        lab_t, feat_t = it.labels[train_rows], cols["features"][train_rows]
        src = None
        if qc.source_field and qc.tolerance > 0:
            pay = cols["payload"].filter(pa.array(train_mask)).to_pylist()
            src = source_codes([p.encode() if p else b"" for p in pay], qc.source_field)
        dup[train_rows] = near_duplicates(lab_t, feat_t, it.keys[train_rows], qc.tolerance, src)
        out[train_rows] = outliers(lab_t, feat_t, qc.z, qc.min_rows)
    flagged = dup | out
    per_label: dict[str, dict[str, int]] = {}
    for kind, mask in (("duplicates", dup), ("outliers", out)):
        ids, cnt = np.unique(it.labels[mask], return_counts=True)
        for i, c in zip(ids.tolist(), cnt.tolist(), strict=True):
            q = per_label.setdefault(group_of(merged.names[i]), {"duplicates": 0, "outliers": 0})
            q[kind] += c
    if qc.exclude:
        keep = keep & ~(flagged & ~is_eval)

    def table_of(sel: np.ndarray, label_column):
        k = pa.array(sel)
        return pa.Table.from_arrays(
            [
                label_column,
                cols["labels"].filter(k),
                pa.array(cols["ts"][sel]),
                pa.FixedSizeListArray.from_arrays(pa.array(cols["features"][sel].reshape(-1)), dim),
                cols["payload"].filter(k),
                cols["id"].filter(k),
                pa.array(cols["partition"][sel]),
                pa.array(cols["offset"][sel]),
                pa.array(it.inclusion[sel]),
                pa.array(it.ht_weights[sel]),
                pa.array(dup[sel]),
                pa.array(out[sel]),
            ],
            schema=arrow_schema(dim),
        )

    train_sel = keep & ~is_eval
    lab = it.labels[train_sel]
    table = table_of(train_sel, names.take(pa.array(lab.astype(np.int32))))
    data = _parquet(table)
    eval_sel = keep & is_eval
    eval_data = b""
    if eval_sel.any():  # an evaluation row's label is its event's first label
        first = pc.list_element(cols["labels"].filter(pa.array(eval_sel)), 0)
        eval_data = _parquet(table_of(eval_sel, first))
    offsets = {str(s.partition): s.next_offset for s in shards}
    version = content_version(data, offsets, eval_data)
    store.mkdir(parents=True, exist_ok=True)
    try:
        parent = latest_version(store)
    except SnapshotFormatError as e:  # a damaged LATEST is replaced by this version
        log.error("snapshot store %s: %s; the new version has no parent", store, e)
        parent = None
    if parent == version:
        return None
    counts = np.bincount(lab, minlength=len(merged.names)) if lab.size else []
    by_stratum = {n: 0 for n in merged.labels if n != EVAL_LABEL}
    for i, c in enumerate(np.asarray(counts).tolist()):
        if c:
            by_stratum[merged.names[i]] = int(c)
    retained = by_label(by_stratum)
    counters, eval_seen = split_counters(counters)
    seen_strata = {n: v for n, v in merged.seen_counts().items() if n != EVAL_LABEL}
    seen = by_label(seen_strata)
    overflow = merged.policy.overflow_label
    for n, v in eval_seen.items():
        # a label whose events all went to the evaluation slice has no reservoir; once
        # the label cap overflowed, it counts where its training events would have gone
        # (which labels overflow depends on the order labels arrive: the policy's rule)
        if n not in seen and overflow in seen:
            n = overflow
        seen[n] = seen.get(n, 0) + v
    manifest = SnapshotManifest(
        version=version,
        parent=parent,
        created_at=time.time(),
        rows=table.num_rows,
        seen=seen,
        retained=retained,
        balance_ratio=balance_ratio(retained),
        event_balance_ratio=_event_balance(table, list(retained)),
        source_offsets=offsets,
        counters=counters,
        stability_vs_parent=_stability(store, parent, table),
        held_for_relabel=held,
        feature_names=list(feature_names) if feature_names else None,
        drift_report=drift_report,
        eval_rows=int(eval_sel.sum()),
        eval_seen=eval_seen,
        quality={
            "tolerance": qc.tolerance,
            "source_field": qc.source_field,
            "z": qc.z,
            "min_rows": qc.min_rows,
            "exclude": qc.exclude,
            "flagged_rows": int(flagged.sum()),
            "per_label": per_label,
        },  # fmt: skip
        sampler={
            "mode": merged.mode,
            "half_life": merged.half_life,
            "seed": merged.seed,
            "policy": merged.policy.to_dict(),
            **({"strata": _strata(seen_strata, by_stratum)} if merged.policy.substrata else {}),
        },
    )
    install_version(store, version, data, manifest.to_json(), eval_data)
    write_latest(store, version)
    apply_retention(store, retention)
    return manifest


def _strata(seen: dict[str, int], retained: dict[str, int]) -> dict:
    """Per label and cell: events seen and rows retained (sub-strata)."""
    out: dict[str, dict] = {}
    for name, n in sorted(seen.items()):
        cell = name[len(group_of(name)) + 1 :] or "-"
        out.setdefault(group_of(name), {})[cell] = {"seen": n, "retained": retained.get(name, 0)}
    return out


def _event_balance(table, labels: list[str]) -> float:
    """Balance of the labels the retained *events* carry: one count per distinct event id
    and label (split mode keeps one row per label of an event)."""
    import pyarrow.compute as pc

    if table.num_rows == 0:
        return 1.0
    ids = table.column("id").to_numpy(zero_copy_only=False)
    _, first = np.unique(ids, return_index=True)
    events = table.column("labels").combine_chunks().take(np.sort(first))
    counts = pc.value_counts(pc.list_flatten(events)).to_pylist()
    per = {c["values"]: c["counts"] for c in counts}
    return balance_ratio({k: per.get(k, 0) for k in labels if per.get(k, 0)})


def _parquet(table) -> bytes:
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def _stability(store: Path, parent: str | None, table) -> float | None:
    """Jaccard similarity of the (label, id) rows with the parent version's."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if parent is None or not data_path(store, parent).exists():
        return None
    try:
        old = pq.read_table(data_path(store, parent), columns=["label", "id"])
    except Exception as e:  # a damaged parent must not stop the new snapshot
        log.error("snapshot %s: parent unreadable, no stability figure: %s", parent, e)
        return None

    def pairs(t):
        return pc.unique(pc.binary_join_element_wise(t.column("label"), t.column("id"), "\0"))

    a, b = pairs(old), pairs(table)
    inter = int(pc.sum(pc.is_in(b, value_set=a)).as_py() or 0)
    union = len(a) + len(b) - inter
    return inter / max(1, union)


def apply_retention(store: Path, retention: int) -> None:
    snaps = list_manifests(store)
    for m in snaps[: max(0, len(snaps) - retention)]:
        remove_version(store, m.version)


def spot_check_rows(labels: list[str], ids: list[str], fraction: float) -> list[int]:
    """A stratified review sample of snapshot rows: per label, the rows whose id hashes
    under ``fraction`` (deterministic, so a row stays in or out across versions), and at
    least one row of every label.

    >>> spot_check_rows(["a", "a", "b"], ["x", "y", "z"], 0.0)
    [0, 2]
    """
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
