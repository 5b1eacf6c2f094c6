"""Shards: one source partition's share of a snapshot, exported by whichever worker owns it.

A shard holds the partition's serialized reservoirs, the next source offset they reflect,
its counters and the payload records of the retained items, kept columnar: the items'
label ids (in the shard's own reservoirs) and keys as arrays, their records as one record
block (:meth:`~streamproc.state.records.RecordColumns.to_block`, row i = item i). Nothing
is split into one object per event on the way from RocksDB to the snapshot.

>>> import numpy as np
>>> from streamproc.state.records import RecordColumns
>>> s = Shard.of(0, 7, {"events": 7}, b"R", np.array([1]), np.array([9], np.uint64),
...              RecordColumns.empty())
>>> decode_shard(encode_shard(s), "p0").next_offset
7
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np

from snapshot_format import SHARDS_DIR, atomic_write, writer_tag
from stratastream.errors import ConfigError, StateError
from streamproc.state.records import RecordColumns
from streamproc.state.store import RecordChanges

SHARD_FORMAT = 2  # 1: one msgpack map entry per record (never read any more)


class Shard(msgspec.Struct):
    partition: int
    next_offset: int
    counters: dict
    reservoirs: bytes
    item_labels: bytes  # little-endian int64: label id in ``reservoirs``
    item_keys: bytes  # little-endian uint64
    block: bytes  # the items' payload records, one block
    format: int = SHARD_FORMAT

    @classmethod
    def of(cls, partition, next_offset, counters, reservoirs, labels, keys, records) -> Shard:
        return cls(
            int(partition),
            int(next_offset),
            dict(counters),
            bytes(reservoirs),
            np.ascontiguousarray(labels, "<i8").tobytes(),
            np.ascontiguousarray(keys, "<u8").tobytes(),
            records.to_block(),
        )

    def labels(self) -> np.ndarray:
        return np.frombuffer(self.item_labels, "<i8")

    def keys(self) -> np.ndarray:
        return np.frombuffer(self.item_keys, "<u8")

    def records(self) -> RecordColumns:
        n = len(self.item_keys) // 8
        return RecordColumns.from_block(self.block, np.arange(n, dtype=np.int64))


def encode_shard(shard: Shard) -> bytes:
    return msgspec.msgpack.encode(shard)


def decode_shard(data: bytes, where: str) -> Shard:
    try:
        s = msgspec.msgpack.decode(data, type=Shard)
    except msgspec.DecodeError as e:
        raise StateError(f"shard {where}: corrupt or of an older format ({e})") from None
    if s.format != SHARD_FORMAT:
        raise StateError(f"shard {where}: format {s.format}, expected {SHARD_FORMAT}")
    if len(s.item_labels) != len(s.item_keys) or len(s.item_keys) % 8:
        raise StateError(f"shard {where}: item arrays disagree")
    return s


def shard_dir(store: Path) -> Path:
    return Path(store) / SHARDS_DIR


def shard_path(shards: Path, partition: int) -> Path:
    return shards / shard_name(partition)


def shard_name(partition: int) -> str:
    return f"p{partition:05d}.shard"


def write_shard(shards: Path, shard: Shard) -> Path:
    shards.mkdir(parents=True, exist_ok=True)
    path = shard_path(shards, shard.partition)
    atomic_write(path, encode_shard(shard))
    return path


def read_shard(shards: Path, partition: int) -> Shard | None:
    p = shard_path(shards, partition)
    if not p.exists():
        return None
    return decode_shard(p.read_bytes(), str(p))


def read_shards(shards: Path) -> list[Shard]:
    return [decode_shard(p.read_bytes(), str(p)) for p in sorted(shards.glob("p*.shard"))]


class ShardStoreError(StateError):
    """A remote shard store could not be read or written (the network, the server, the
    credentials); the local state is not in question."""


class ShardStore:
    """Where the partitions' shards live, shared by every worker of a group.

    A local directory (``<snapshot_dir>/shards``) serves workers on one host. Workers on
    several hosts share nothing but the broker and a remote store, so with ``snapshot_url``
    the shards live at ``<snapshot_url>/shards`` through fsspec (``s3://``, ``gs://``,
    ``abfs://``, ``file://`` ...): a partition that moves to another host is restored from
    there. An object store writes an object whole or not at all; other fsspec file systems
    write a temporary name and move it into place.

    >>> import tempfile
    >>> from streamproc.state.records import RecordColumns
    >>> d = Path(tempfile.mkdtemp())
    >>> s = Shard.of(3, 7, {}, b"R", np.array([1]), np.array([9], np.uint64),
    ...              RecordColumns.empty())
    >>> for store in (ShardStore(d / "shards"), ShardStore(f"file://{d}/remote")):
    ...     store.write(s)
    ...     print(store.read(3).next_offset, store.read(4), len(store.read_all()))
    7 None 1
    7 None 1
    """

    _OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "abfs", "az", "memory"})

    def __init__(self, where: Path | str) -> None:
        self.url = where if isinstance(where, str) and "://" in where else None
        self.path = None if self.url is not None else Path(where)
        self._fs = self._root = None

    @classmethod
    def for_snapshots(cls, snapshot_dir: Path, snapshot_url: str = "") -> ShardStore:
        """The shard store of a snapshot store: the remote one when there is one."""
        if snapshot_url:
            return cls(f"{snapshot_url.rstrip('/')}/{SHARDS_DIR}")
        return cls(shard_dir(snapshot_dir))

    @property
    def remote(self) -> bool:
        return self.url is not None

    def __str__(self) -> str:
        return self.url if self.url is not None else str(self.path)

    def _remote(self):
        if self._fs is None:
            import fsspec

            try:
                self._fs, root = fsspec.core.url_to_fs(self.url)
            except (ValueError, ImportError) as e:
                raise ConfigError(f"snapshot_url: cannot use {self.url!r} ({e})") from e
            self._root = root.rstrip("/")
        return self._fs, self._root

    def _call(self, what: str, fn):
        try:
            return fn()
        except (StateError, ConfigError):
            raise
        except FileNotFoundError:
            raise
        except Exception as e:  # noqa: BLE001 - fsspec backends raise their own types
            raise ShardStoreError(f"shard store {self}: {what} failed: {e!r}") from e

    def write(self, shard: Shard) -> None:
        data = encode_shard(shard)
        if self.path is not None:
            write_shard(self.path, shard)
            return
        fs, root = self._remote()
        name = f"{root}/{shard_name(shard.partition)}"

        def put() -> None:
            if fs.protocol and set(_protocols(fs)) & self._OBJECT_STORES:
                fs.pipe_file(name, data)  # an object appears whole or not at all
                return
            fs.makedirs(root, exist_ok=True)
            tmp = f"{root}/.{shard_name(shard.partition)}.{writer_tag()}.tmp"
            fs.pipe_file(tmp, data)
            fs.mv(tmp, name)

        self._call(f"writing {name}", put)

    def _get(self, name: str) -> bytes | None:
        """A remote object's bytes; None when it does not exist."""
        fs, _ = self._remote()
        try:
            return self._call(f"reading {name}", lambda: fs.cat_file(name))
        except FileNotFoundError:
            return None

    def read(self, partition: int) -> Shard | None:
        if self.path is not None:
            return read_shard(self.path, partition)
        _, root = self._remote()
        data = self._get(f"{root}/{shard_name(partition)}")
        return None if data is None else decode_shard(data, f"{self.url}/{shard_name(partition)}")

    def read_all(self) -> list[Shard]:
        if self.path is not None:
            return read_shards(self.path) if self.path.is_dir() else []
        fs, root = self._remote()
        fs.invalidate_cache(root)  # other hosts wrote since: no cached listing
        try:
            names = self._call(f"listing {root}", lambda: sorted(fs.glob(f"{root}/p*.shard")))
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            data = self._get(name)
            if data is not None:  # else removed since the listing (quarantined)
                out.append(decode_shard(data, name))
        return out

    def move_aside(self, partition: int, dest: Path) -> bool:
        """Move a partition's shard into ``dest`` (a local quarantine directory)."""
        if self.path is not None:
            src = shard_path(self.path, partition)
            if not src.exists():
                return False
            dest.mkdir(parents=True, exist_ok=True)
            src.rename(dest / src.name)
            return True
        fs, root = self._remote()
        name = f"{root}/{shard_name(partition)}"
        data = self._get(name)
        if data is None:
            return False
        dest.mkdir(parents=True, exist_ok=True)
        (dest / shard_name(partition)).write_bytes(data)
        self._call(f"removing {name}", lambda: fs.rm_file(name))
        return True


def _protocols(fs) -> tuple[str, ...]:
    p = fs.protocol
    return (p,) if isinstance(p, str) else tuple(p)


def export_shard(partition: int, next_offset: int, counters: dict, reservoirs, store) -> Shard:
    """The shard of a partition from its reservoirs and its store's record blocks."""
    it = reservoirs.items()
    records = store.get_record_columns(it.labels, it.keys)
    return Shard.of(partition, next_offset, counters, reservoirs.to_bytes(), it.labels, it.keys,
                    records)  # fmt: skip


def shard_changes(shard: Shard) -> RecordChanges:
    """A shard's records as the changes that load them into an empty partition store."""
    changes = RecordChanges.none()
    keys = shard.keys()
    if keys.size:
        changes.put_labels = shard.labels().astype(np.int64)
        changes.put_keys = keys.astype(np.uint64)
        changes.records = shard.records()
    return changes
