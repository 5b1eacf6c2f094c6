"""The snapshot format: the one contract between the worker that writes training sets
and the trainer (or anyone) that reads them.

A store is a directory or an fsspec URL holding::

    <store>/<version>/data.parquet    one row per retained event (:mod:`.schema`)
    <store>/<version>/eval.parquet    the evaluation slice, same schema (optional)
    <store>/<version>/manifest.json   :class:`~snapshot_format.manifest.SnapshotManifest`
    <store>/LATEST                    the newest complete version id
    <store>/shards/                   the worker's per-partition shards (not read here)

A version is visible once its manifest exists and ``LATEST`` names it; writers write the
data first, the manifest second and ``LATEST`` last (:mod:`.layout`). Only this package
spells the file names; it imports nothing of ours but the error root.

>>> import tempfile, pathlib
>>> store = pathlib.Path(tempfile.mkdtemp())
>>> latest_version(store) is None
True
>>> write_latest(store, "0123456789abcdef")
>>> latest_version(store)
'0123456789abcdef'
"""

from .errors import SnapshotFormatError
from .layout import (
    DATA_FILE,
    EVAL_FILE,
    LATEST_FILE,
    MANIFEST_FILE,
    SHARDS_DIR,
    atomic_write,
    check_version,
    clean_leftovers,
    content_version,
    data_path,
    install_version,
    manifest_path,
    remove_version,
    write_latest,
    writer_tag,
)
from .manifest import SnapshotManifest
from .read import (
    latest_version,
    list_manifests,
    read_eval_table,
    read_manifest,
    read_store_file,
    read_table,
)
from .schema import COLUMNS, FORMAT_VERSION, REQUIRED_COLUMNS, arrow_schema, check_table

__all__ = [
    "COLUMNS",
    "DATA_FILE",
    "EVAL_FILE",
    "FORMAT_VERSION",
    "LATEST_FILE",
    "MANIFEST_FILE",
    "REQUIRED_COLUMNS",
    "SHARDS_DIR",
    "SnapshotFormatError",
    "SnapshotManifest",
    "arrow_schema",
    "atomic_write",
    "check_table",
    "check_version",
    "clean_leftovers",
    "content_version",
    "data_path",
    "install_version",
    "latest_version",
    "list_manifests",
    "manifest_path",
    "read_eval_table",
    "read_manifest",
    "read_store_file",
    "read_table",
    "remove_version",
    "write_latest",
    "writer_tag",
]
