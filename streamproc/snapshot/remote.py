"""Publishing snapshots to a remote store through fsspec (``s3://``, ``gs://``, ``abfs://``,
``file://``, ``memory://`` ...), when ``snapshot_url`` is configured.

Object stores have no atomic directory rename, so visibility is ordered instead: a
version's ``data.parquet`` is written first, its ``manifest.json`` second, and ``LATEST``
last. Readers (``streamproc snapshot``, the trainer) only consider versions that have a
manifest and follow ``LATEST``, so they never see a half-written snapshot. Old versions
beyond the retention are removed after ``LATEST`` moved on.
"""

from __future__ import annotations

import logging
from pathlib import Path

from snapshot_format import (
    DATA_FILE,
    EVAL_FILE,
    LATEST_FILE,
    MANIFEST_FILE,
    SnapshotFormatError,
    SnapshotManifest,
    check_version,
)
from stratastream.errors import ConfigError, StratastreamError

log = logging.getLogger(__name__)


class RemoteStoreError(StratastreamError):
    """The remote snapshot store could not be reached or written."""


def _fs(url: str):
    try:
        import fsspec
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise ConfigError("snapshot_url: fsspec is not installed") from e
    try:
        return fsspec.core.url_to_fs(url)
    except (ValueError, ImportError) as e:
        raise ConfigError(f"snapshot_url: cannot use {url!r} ({e})") from e


def publish(url: str, local_store: Path, version: str, retention: int) -> None:
    """Copy one local snapshot version to the remote store, then move ``LATEST``."""
    check_version(version)
    fs, root = _fs(url)
    root = root.rstrip("/")
    try:
        fs.makedirs(f"{root}/{version}", exist_ok=True)
        # the data files first, the manifest last: it makes the version visible
        for name in (DATA_FILE, EVAL_FILE, MANIFEST_FILE):
            path = local_store / version / name
            if name == EVAL_FILE and not path.exists():
                continue  # no evaluation slice (eval_fraction 0)
            fs.pipe_file(f"{root}/{version}/{name}", path.read_bytes())
        if _newer_than_latest(fs, root, local_store, version):
            fs.pipe_file(f"{root}/{LATEST_FILE}", version.encode())
        manifests = []
        fs.invalidate_cache(root)  # other workers publish here too
        for p in fs.glob(f"{root}/*/{MANIFEST_FILE}"):
            try:
                m = SnapshotManifest.from_json(fs.cat_file(p), p)
            except SnapshotFormatError as e:  # a bad entry must not stop publishing
                log.error("remote snapshot store: skipping unreadable entry %s: %s", p, e)
                continue
            manifests.append((m.created_at, m.version))
        for _, old in sorted(manifests)[: max(0, len(manifests) - retention)]:
            if old != version:
                fs.rm(f"{root}/{old}", recursive=True)
    except OSError as e:
        raise RemoteStoreError(f"snapshot_url {url!r}: publishing {version} failed: {e}") from e


def _newer_than_latest(fs, root: str, local_store: Path, version: str) -> bool:
    """Whether ``LATEST`` should move to ``version``: not when the version it names
    already covers as much of every partition, and more of one (workers on several hosts
    publish to one store, and the slower of two must not move ``LATEST`` back)."""
    try:
        current = fs.cat_file(f"{root}/{LATEST_FILE}").decode().strip()
        check_version(current)
        theirs = SnapshotManifest.from_json(
            fs.cat_file(f"{root}/{current}/{MANIFEST_FILE}"), current
        ).source_offsets
    except (OSError, UnicodeDecodeError, SnapshotFormatError):
        return True  # no LATEST, or an unreadable one: this version replaces it
    if current == version:
        return False
    ours = SnapshotManifest.from_json(
        (local_store / version / MANIFEST_FILE).read_bytes(), version
    ).source_offsets
    ahead = [int(theirs.get(p, -1)) - int(o) for p, o in ours.items()]
    covered = all(d >= 0 for d in ahead) and any(d > 0 for d in ahead)  # equal: newest wins
    if covered:
        log.info("remote LATEST stays at %s: it covers %s already", current, version)
    return not covered
