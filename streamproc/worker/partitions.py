"""The partitions a worker owns: open (restore) on assignment, checkpoint and close on
revocation.

On assignment a partition resumes at the offset of its own checkpoint (never at a
broker end offset or a committed offset). Its state is the local RocksDB store, or the
partition's shard in the shared snapshot store when that is newer (the partition last
ran on another machine).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from streamproc.snapshot.shards import read_shard, shard_changes, shard_dir
from streamproc.state.processor import PartitionProcessor
from streamproc.state.store import Checkpoint, RocksPartitionStore

log = logging.getLogger(__name__)


class PartitionSet:
    """``partition -> PartitionProcessor`` for the partitions this worker owns."""

    def __init__(
        self,
        topic: str,
        state_dir: Path,
        snapshot_store: Path,
        open_processor: Callable[[int, RocksPartitionStore], PartitionProcessor],
        sync: bool = False,
    ) -> None:
        self.topic = topic
        self.state_dir, self.snapshot_store = state_dir, snapshot_store
        self.open_processor = open_processor
        self.sync = sync
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
        """Open partition ``p`` (restoring from its shard when that is newer)."""
        path = self.store_path(p)
        store = RocksPartitionStore(path, self.sync)
        ckpt = store.load_checkpoint()
        shard = read_shard(shard_dir(self.snapshot_store), p)
        if shard is not None and shard.next_offset > (ckpt.next_offset if ckpt else 0):
            log.info("partition %d: restoring from shard at offset %d", p, shard.next_offset)
            store.close()
            shutil.rmtree(path)
            store = RocksPartitionStore(path, self.sync)
            store.write_checkpoint(
                Checkpoint(shard.reservoirs, shard.next_offset, dict(shard.counters)),
                shard_changes(shard),
            )
        proc = self.open_processor(p, store)
        self.processors[p] = proc
        return proc

    def release(self, p: int) -> PartitionProcessor | None:
        """Forget partition ``p`` and close its store (checkpoint it before)."""
        proc = self.processors.pop(p, None)
        if proc is not None:
            proc.store.close()
        return proc

    def close_all(self) -> None:
        for p in list(self.processors):
            self.release(p)
