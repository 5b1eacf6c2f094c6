"""Where things live in a local snapshot store, and how a writer makes a version visible.

File names are spelled here and nowhere else. Versions are hex content hashes
(:func:`check_version`), so a name read from ``LATEST`` or a topic can never leave the
store (no ``..``, no ``/``).

>>> check_version("0123456789abcdef")
'0123456789abcdef'
>>> check_version("../../etc")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
snapshot_format.errors.SnapshotFormatError: snapshot version: expected 16 hex digits, got ...
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from .errors import SnapshotFormatError

DATA_FILE = "data.parquet"
EVAL_FILE = "eval.parquet"  # the evaluation slice, natural class mix (optional)
MANIFEST_FILE = "manifest.json"
LATEST_FILE = "LATEST"
SHARDS_DIR = "shards"  # the worker's per-partition shards, inside the store
TMP_PREFIX = ".tmp-"  # versions being written; never read

_VERSION = re.compile(r"[0-9a-f]{16}")
_TAG = re.compile(r"(?:^|[.-])w([A-Za-z0-9_]+)~(\d+)[.-]")


def writer_tag() -> str:
    """``w<host>~<pid>``: put in temporary names, so that a writer on the same host can
    tell at start-up that the one which left them is dead."""
    import socket

    host = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:64] or "host"
    return f"w{host}~{os.getpid()}"


def _dead_writer(name: str) -> bool:
    """Whether the temporary entry ``name`` was left by a process of this host that is
    no longer running (False when it cannot tell: another host, an old-style name)."""
    m = _TAG.search(name)
    if m is None or f"w{m.group(1)}~" != writer_tag().rsplit("~", 1)[0] + "~":
        return False
    pid = int(m.group(2))
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def check_version(version: str) -> str:
    """``version`` when it is a well-formed version id, else :class:`SnapshotFormatError`."""
    if not isinstance(version, str) or not _VERSION.fullmatch(version):
        raise SnapshotFormatError(f"snapshot version: expected 16 hex digits, got {version!r}")
    return version


def content_version(data: bytes, source_offsets: dict[str, int], eval_data: bytes = b"") -> str:
    """The version id of a snapshot: a hash of its Parquet bytes, the source offsets it
    reflects and its evaluation slice's bytes (if any), so a reader can tell a version's
    content was not changed.

    >>> content_version(b"x", {"0": 5})
    '21e8d4cef2dc988d'
    """
    offsets = json.dumps(source_offsets, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(data + offsets + eval_data).hexdigest()[:16]


def data_path(store: Path, version: str) -> Path:
    return Path(store) / check_version(version) / DATA_FILE


def manifest_path(store: Path, version: str) -> Path:
    return Path(store) / check_version(version) / MANIFEST_FILE


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``path`` so that readers see the old or the new content, never a part."""
    tmp = path.with_name(f".{path.name}.{writer_tag()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_latest(store: Path, version: str) -> None:
    """Point ``LATEST`` at ``version`` (atomically)."""
    Path(store).mkdir(parents=True, exist_ok=True)
    atomic_write(Path(store) / LATEST_FILE, check_version(version).encode())


def install_version(
    store: Path, version: str, data: bytes, manifest_json: bytes, eval_data: bytes = b""
) -> bool:
    """Write one version's files into a temporary directory and rename it into place.

    Returns False when the version exists already (content-addressed: same data).
    ``LATEST`` is not moved; call :func:`write_latest` after.
    """
    store = Path(store)
    store.mkdir(parents=True, exist_ok=True)
    final = store / check_version(version)
    if final.exists():
        return False
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{writer_tag()}-", dir=store))
    (tmp / DATA_FILE).write_bytes(data)
    if eval_data:
        (tmp / EVAL_FILE).write_bytes(eval_data)
    (tmp / MANIFEST_FILE).write_bytes(manifest_json)
    try:
        os.replace(tmp, final)
    except OSError:  # a concurrent writer installed it first
        shutil.rmtree(tmp, ignore_errors=True)
        return False
    return True


def clean_leftovers(
    directory: Path, older_than_s: float = 3_600.0, now: float | None = None
) -> int:
    """Remove what writers killed mid-write left in ``directory``: temporary files
    (``.<name>.w<host>~<pid>.tmp``) and temporary version directories (``.tmp-*``), at
    once when their writer ran on this host and is gone, else once older than
    ``older_than_s`` (no writer takes that long, so a live writer's files are never
    touched, even one on another host sharing the store). Returns how many were removed.

    >>> import tempfile, pathlib, os
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / ".LATEST.42.tmp").write_text("x")
    >>> clean_leftovers(d, older_than_s=3600), clean_leftovers(d, older_than_s=0, now=4e9)
    (0, 1)
    """
    import time

    now = time.time() if now is None else now
    removed = 0
    for entry in Path(directory).glob(".*"):
        stale = entry.name.endswith(".tmp") or entry.name.startswith(TMP_PREFIX)
        try:
            if not stale:
                continue
            if not _dead_writer(entry.name) and now - entry.stat().st_mtime < older_than_s:
                continue
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed += 1
        except FileNotFoundError:  # another process cleaned it first
            continue
    return removed


def remove_version(store: Path, version: str) -> None:
    shutil.rmtree(Path(store) / check_version(version), ignore_errors=True)
