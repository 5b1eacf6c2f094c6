"""Reading a snapshot store: a local directory or an fsspec URL (``s3://``, ``file://``...).

Every reader goes through these helpers, so a missing or tampered entry is a
:class:`SnapshotFormatError` naming it, and a version name is checked before it becomes
a path.

>>> import tempfile, pathlib
>>> store = pathlib.Path(tempfile.mkdtemp())
>>> read_manifest(store, "0123456789abcdef")
Traceback (most recent call last):
...
snapshot_format.errors.SnapshotFormatError: snapshot 0123456789abcdef: no manifest.json in the store
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

from .errors import SnapshotFormatError
from .layout import (
    DATA_FILE,
    EVAL_FILE,
    LATEST_FILE,
    MANIFEST_FILE,
    TMP_PREFIX,
    check_version,
    content_version,
)
from .manifest import SnapshotManifest
from .schema import check_table

log = logging.getLogger(__name__)


def _is_url(store) -> bool:
    return "://" in str(store)


def read_store_file(store: Path | str, relpath: str) -> bytes:
    """A file of the store; ``FileNotFoundError`` when it is absent."""
    if _is_url(store):
        import fsspec

        fs, root = fsspec.core.url_to_fs(str(store))
        return fs.cat_file(f"{root.rstrip('/')}/{relpath}")
    return (Path(store) / relpath).read_bytes()


def latest_version(store: Path | str) -> str | None:
    """The version ``LATEST`` names, or None when the store has no snapshot yet."""
    try:
        raw = read_store_file(store, LATEST_FILE)
    except FileNotFoundError:
        return None
    try:
        return check_version(raw.decode().strip())
    except (UnicodeDecodeError, SnapshotFormatError) as e:
        raise SnapshotFormatError(f"snapshot store {store}: LATEST is corrupt ({e})") from None


def read_manifest(store: Path | str, version: str) -> SnapshotManifest:
    check_version(version)
    try:
        raw = read_store_file(store, f"{version}/{MANIFEST_FILE}")
    except FileNotFoundError:
        raise SnapshotFormatError(f"snapshot {version}: no {MANIFEST_FILE} in the store") from None
    return SnapshotManifest.from_json(raw, f"snapshot {version}: {MANIFEST_FILE}")


def read_table(
    store: Path | str,
    version: str | None = None,
    columns: list[str] | None = None,
    verify: bool = True,
):
    """The data of ``version`` (default: ``LATEST``) as a pyarrow Table.

    ``verify`` (the default) checks the bytes against the version id (a content hash, see
    :func:`~snapshot_format.layout.content_version`) and the row count against the
    manifest: a changed ``data.parquet`` is a :class:`SnapshotFormatError`, never data."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    version = version or latest_version(store)
    if version is None:
        raise SnapshotFormatError(f"snapshot store {store}: no snapshots yet")
    check_version(version)
    try:
        raw = read_store_file(store, f"{version}/{DATA_FILE}")
    except FileNotFoundError:
        raise SnapshotFormatError(f"snapshot {version}: no {DATA_FILE} in {store}") from None
    manifest = read_manifest(store, version) if verify else None
    if manifest is not None:
        _verify(store, version, manifest, raw)
    try:
        table = pq.read_table(io.BytesIO(raw), columns=columns)
    except (pa.ArrowException, OSError, ValueError) as e:
        raise SnapshotFormatError(f"snapshot {version}: {DATA_FILE} is unreadable ({e})") from None
    if columns is None:
        check_table(table, f"snapshot {version}")
    if manifest is not None and table.num_rows != manifest.rows:
        raise SnapshotFormatError(
            f"snapshot {version}: {table.num_rows} rows, the manifest says {manifest.rows}"
        )
    return table


def _eval_bytes(store, version: str, manifest: SnapshotManifest) -> bytes:
    if manifest.eval_rows == 0:
        return b""
    try:
        return read_store_file(store, f"{version}/{EVAL_FILE}")
    except FileNotFoundError:
        raise SnapshotFormatError(
            f"snapshot {version}: the manifest lists {manifest.eval_rows} evaluation rows "
            f"but {EVAL_FILE} is missing"
        ) from None


def _verify(store, version: str, manifest: SnapshotManifest, raw: bytes) -> bytes:
    """The evaluation slice's bytes, after checking the version hash over everything."""
    extra = _eval_bytes(store, version, manifest)
    if content_version(raw, manifest.source_offsets, extra) != version:
        raise SnapshotFormatError(
            f"snapshot {version}: {DATA_FILE} or {EVAL_FILE} does not match its version "
            "hash (changed or damaged since it was written)"
        )
    return extra


def read_eval_table(store: Path | str, version: str | None = None):
    """The evaluation slice of ``version`` (default: ``LATEST``) as a pyarrow Table, or
    None when the snapshot has none. Verified like :func:`read_table`: rows drawn
    uniformly from a hash-selected share of the stream that training never saw, in the
    stream's natural class mix; ``label`` is each event's first label."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    version = version or latest_version(store)
    if version is None:
        raise SnapshotFormatError(f"snapshot store {store}: no snapshots yet")
    check_version(version)
    manifest = read_manifest(store, version)
    if manifest.eval_rows == 0:
        return None
    try:
        raw = read_store_file(store, f"{version}/{DATA_FILE}")
    except FileNotFoundError:
        raise SnapshotFormatError(f"snapshot {version}: no {DATA_FILE} in {store}") from None
    extra = _verify(store, version, manifest, raw)
    try:
        table = pq.read_table(io.BytesIO(extra))
    except (pa.ArrowException, OSError, ValueError) as e:
        raise SnapshotFormatError(f"snapshot {version}: {EVAL_FILE} is unreadable ({e})") from None
    check_table(table, f"snapshot {version} ({EVAL_FILE})")
    if table.num_rows != manifest.eval_rows:
        raise SnapshotFormatError(
            f"snapshot {version}: {table.num_rows} evaluation rows, the manifest says "
            f"{manifest.eval_rows}"
        )
    return table


def list_manifests(store: Path) -> list[SnapshotManifest]:
    """Manifests of a local store's versions, oldest first. An unreadable entry is logged
    and skipped (it must not stop the listing, retention or later snapshots)."""
    out = []
    for m in Path(store).glob(f"*/{MANIFEST_FILE}"):
        if m.parent.name.startswith((".", TMP_PREFIX)):
            continue
        try:
            manifest = SnapshotManifest.from_json(m.read_bytes(), str(m))
            if manifest.version != m.parent.name:
                raise SnapshotFormatError(
                    f"{m}: names version {manifest.version!r}, lives in {m.parent.name!r}"
                )
            out.append(manifest)
        except (OSError, SnapshotFormatError) as e:
            log.error(
                "snapshot store %s: skipping unreadable entry %s: %s", store, m.parent.name, e
            )
    return sorted(out, key=lambda x: x.created_at)
