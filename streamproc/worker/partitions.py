"""The partitions a worker owns: open (restore) on assignment, checkpoint and close on
revocation.

On assignment a partition resumes at the offset of its own checkpoint (never at a
broker end offset or a committed offset). Its state is the local RocksDB store, or the
partition's shard in the shared snapshot store when that is newer (the partition last
ran on another machine).

A store that cannot be read (a garbled, truncated or missing SST file, a deleted
``CURRENT``, a checkpoint that does not decode) is never a crash loop: it is moved to
``<state_dir>/quarantine/`` for inspection, and the partition is rebuilt from its latest
shard plus a replay of the log after it, or from the log start when there is no shard.
The sampler is a pure function of the events, so the rebuilt state is the one an
uninterrupted run would have.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from sampler import LabelReservoirs
from stratastream.errors import ConfigError, StateError
from streamproc.snapshot.shards import Shard, ShardStore, ShardStoreError, shard_changes
from streamproc.state.dirlock import is_lock_error
from streamproc.state.processor import PartitionProcessor
from streamproc.state.store import Checkpoint, RecordChanges, RocksPartitionStore

log = logging.getLogger(__name__)


class PartitionSet:
    """``partition -> PartitionProcessor`` for the partitions this worker owns."""

    def __init__(
        self,
        topic: str,
        state_dir: Path,
        shards: ShardStore,
        open_processor: Callable[[int, RocksPartitionStore], PartitionProcessor],
        sync: bool = False,
        on_quarantine: Callable[[int, Path, str], None] | None = None,
    ) -> None:
        self.topic = topic
        self.state_dir, self.shards = state_dir, shards
        self.open_processor = open_processor
        self.sync = sync
        self.on_quarantine = on_quarantine  # (partition, where it went, why): metrics
        self.processors: dict[int, PartitionProcessor] = {}

    def __len__(self) -> int:
        return len(self.processors)

    def get(self, p: int) -> PartitionProcessor | None:
        return self.processors.get(p)

    def values(self) -> list[PartitionProcessor]:
        return list(self.processors.values())

    def store_path(self, p: int) -> Path:
        return self.state_dir / f"{self.topic}-{p:05d}"

    def open(self, p: int) -> PartitionProcessor:
        """Open partition ``p`` (restoring from its shard when that is newer); an
        unreadable store is quarantined and the partition rebuilt (module docstring)."""
        try:
            return self._open(p)
        except ConfigError:  # the state is fine; the settings changed: say so, loudly
            raise
        except Exception as e:  # noqa: BLE001 - any failure to read the state is handled
            if is_lock_error(e):  # held by another process: not damage, never quarantine
                raise StateError(
                    f"partition {p}: state store {self.store_path(p)} is locked by another "
                    f"process ({e}); each worker needs a state directory of its own"
                ) from None
            moved = self._quarantine(p, e)
        log.error(
            "partition %d: state store unreadable (%s); moved to %s for inspection, "
            "rebuilding from the latest shard and the log",
            p, _short(moved[1]), moved[0],
        )  # fmt: skip
        if self.on_quarantine is not None:
            self.on_quarantine(p, moved[0], moved[1])
        return self._open(p)

    def quarantine(self, p: int, reason: str) -> Path:
        """Move a released partition's state and its shard aside (the log they were built
        on is gone); the next :meth:`open` starts it empty."""
        dest, _ = self._quarantine(p, RuntimeError(reason))
        self.shards.move_aside(p, dest)
        return dest

    def _quarantine(self, p: int, error: BaseException) -> tuple[Path, str]:
        path = self.store_path(p)
        dest = self.state_dir / "quarantine" / f"{path.name}-{time.strftime('%Y%m%dT%H%M%S')}"
        n = 0
        while dest.exists():
            n += 1
            dest = dest.with_name(f"{dest.name.split('.')[0]}.{n}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            path.rename(dest)
        return dest, f"{type(error).__name__}: {error}"

    def _open(self, p: int) -> PartitionProcessor:
        path = self.store_path(p)
        store = RocksPartitionStore(path, self.sync)
        try:
            store.verify()
            ckpt = store.load_checkpoint()
        except BaseException:
            store.close()
            raise
        newer = self._newer_shard(p, ckpt.next_offset if ckpt else 0)
        if newer is not None:
            shard, changes = newer
            log.info("partition %d: restoring from shard at offset %d", p, shard.next_offset)
            store.close()
            shutil.rmtree(path)
            store = RocksPartitionStore(path, self.sync)
            store.write_checkpoint(
                Checkpoint(shard.reservoirs, shard.next_offset, dict(shard.counters)), changes
            )
        try:
            proc = self.open_processor(p, store)
        except BaseException:
            store.close()
            raise
        self.processors[p] = proc
        return proc

    def _newer_shard(self, p: int, local_offset: int) -> tuple[Shard, RecordChanges] | None:
        """The partition's shard, and the record changes that load it, when it is newer
        than the local state and whole. A shard
        store that cannot be reached leaves the local state (exact at its own offset); a
        shard that does not decode is set aside (quarantine), never a crash loop, and the
        partition goes on from the local state or the log."""
        try:
            shard = self.shards.read(p)
            if shard is None or shard.next_offset <= local_offset:
                return None
            LabelReservoirs.from_bytes(shard.reservoirs)  # checked before anything moves
            return shard, shard_changes(shard)
        except ShardStoreError as e:
            log.warning("partition %d: %s; resuming from the local state", p, e)
            return None
        except Exception as e:  # noqa: BLE001 - a damaged or tampered shard: set it aside
            dest = self.state_dir / "quarantine" / f"shard-{p:05d}-{time.strftime('%Y%m%dT%H%M%S')}"
            why = f"{type(e).__name__}: {e}"
            try:
                self.shards.move_aside(p, dest)
            except ShardStoreError as moved:
                log.error("partition %d: could not set the shard aside: %s", p, moved)
            log.error(
                "partition %d: shard in %s unreadable (%s); set aside in %s, going on from "
                "the local state and the log", p, self.shards, _short(why), dest,
            )  # fmt: skip
            if self.on_quarantine is not None:
                self.on_quarantine(p, dest, why)
            return None

    def release(self, p: int) -> PartitionProcessor | None:
        """Forget partition ``p`` and close its store (checkpoint it before)."""
        proc = self.processors.pop(p, None)
        if proc is not None:
            proc.store.close()
        return proc

    def close_all(self) -> None:
        for p in list(self.processors):
            self.release(p)


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
