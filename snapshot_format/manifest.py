"""The manifest of one snapshot version: lineage, counts and how the sample was drawn.

Read back with type checks, so a tampered or truncated ``manifest.json`` is a
:class:`SnapshotFormatError` naming the field, never a crash further on.

>>> m = SnapshotManifest("0123456789abcdef", None, 1.0, 2, {"a": 5}, {"a": 2}, 1.0,
...                      {"0": 5}, {"events": 5}, {"mode": "uniform"})
>>> SnapshotManifest.from_json(m.to_json()) == m
True
>>> SnapshotManifest.from_json(b'{"version": 3}')
Traceback (most recent call last):
...
snapshot_format.errors.SnapshotFormatError: manifest: field 'version': expected str, got 3
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields

from .errors import SnapshotFormatError
from .layout import check_version
from .schema import FORMAT_VERSION


@dataclass
class SnapshotManifest:
    version: str
    parent: str | None
    created_at: float
    rows: int
    seen: dict[str, int]
    retained: dict[str, int]
    balance_ratio: float
    source_offsets: dict[str, int]  # partition -> next offset reflected
    counters: dict[str, int]
    sampler: dict
    stability_vs_parent: float | None = None  # Jaccard of (label, id) rows with the parent
    held_for_relabel: int = 0  # retained rows left out until their labels are resolved
    # the evaluation slice (eval.parquet): its rows, and per label the events it saw
    # (``seen`` counts them too; ``retained`` counts training rows only)
    # smallest over largest number of retained events *carrying* each label (all of an
    # event's labels, as a multi-label model sees them); balance_ratio counts label rows
    event_balance_ratio: float | None = None
    # the features' names, in order (None: written before names existed; f0..f<dim-1>)
    feature_names: list[str] | None = None
    # the newest drift report when the snapshot was built, relative to the store
    drift_report: str | None = None
    eval_rows: int = 0
    eval_seen: dict[str, int] = field(default_factory=dict)
    # data quality of the training rows, per label: near-duplicates and outliers flagged
    # (and left out of data.parquet when quality["exclude"]); None: not computed
    quality: dict | None = None
    format_version: int = FORMAT_VERSION

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2).encode()

    @classmethod
    def from_json(cls, data: bytes | str, where: str = "manifest") -> SnapshotManifest:
        try:
            doc = json.loads(data)
        except (TypeError, ValueError) as e:
            raise SnapshotFormatError(f"{where}: not JSON ({e})") from None
        if not isinstance(doc, dict):
            raise SnapshotFormatError(f"{where}: expected an object, got {type(doc).__name__}")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(doc) - set(known))
        if unknown:
            raise SnapshotFormatError(f"{where}: unknown field(s) {unknown}")
        for name, f in known.items():
            if name in doc:
                _check(where, name, str(f.type), doc[name])
            elif f.default is MISSING and f.default_factory is MISSING:
                raise SnapshotFormatError(f"{where}: field {name!r} is missing")
        m = cls(**doc)
        check_version(m.version)
        if m.parent is not None:
            check_version(m.parent)
        if m.format_version > FORMAT_VERSION:
            raise SnapshotFormatError(
                f"{where}: format_version {m.format_version} is newer than this reader "
                f"({FORMAT_VERSION})"
            )
        return m


_SCALARS = {
    "str": (str,), "int": (int,), "float": (int, float), "dict": (dict,), "list": (list,),
}  # fmt: skip


def _check(where: str, name: str, typ: str, value) -> None:
    optional = typ.endswith(" | None")
    base = typ.removesuffix(" | None")
    if value is None and optional:
        return
    kind = base.split("[")[0]
    ok = isinstance(value, _SCALARS[kind]) and not isinstance(value, bool)
    if ok and base.startswith("dict[str, int]"):
        ok = all(isinstance(k, str) and isinstance(v, int) for k, v in value.items())
    if ok and base.startswith("list[str]"):
        ok = all(isinstance(v, str) for v in value)
    if not ok:
        raise SnapshotFormatError(f"{where}: field {name!r}: expected {typ}, got {value!r:.80}")
