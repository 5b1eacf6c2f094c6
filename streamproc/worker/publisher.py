"""Publishing a snapshot: export the owned partitions' shards, merge all shards into a new
version of the store, copy it to the remote store when one is configured, announce it on
the ``snapshots`` topic (and a review sample on the spot-check topic).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from snapshot_format import SnapshotManifest, data_path, read_table
from streamproc.settings import SnapshotSection
from streamproc.snapshot.build import build_snapshot, spot_check_rows
from streamproc.snapshot.shards import Shard, ShardStore, export_shard
from streamproc.worker.assembly import quality_config

log = logging.getLogger(__name__)


@dataclass
class PublishStats:
    shards: int = 0  # partition shards exported to the snapshot store
    snapshots: list[str] = field(default_factory=list)


class SnapshotPublisher:
    def __init__(
        self,
        section: SnapshotSection,
        snapshots_topic: str,
        producer,
        metrics=None,
        spot_check: tuple[str, float] | None = None,  # (topic, fraction per label)
        on_published: Callable[[SnapshotManifest], None] | None = None,
    ) -> None:
        self.section = section
        self.snapshots_topic = snapshots_topic
        self.producer = producer
        self.metrics = metrics
        self.spot_check = spot_check
        self.on_published = on_published
        self.stats = PublishStats()
        self.shards = ShardStore.for_snapshots(section.store, section.url)

    def export(self, procs: list) -> list[Shard]:
        """The shards of ``procs`` (checkpointed before): what needs the partitions'
        state, taken on the thread that owns it. :meth:`build` writes them."""
        return [export_shard(p.partition, p.next_offset, p.counters, p.reservoirs, p.store)
                for p in procs]  # fmt: skip

    def publish(self, procs: list, held_ids: frozenset[str] = frozenset()) -> str | None:
        """Export, build, publish; the new version, or None when nothing changed."""
        return self.build(held_ids, shards=self.export(procs))

    def build(
        self,
        held_ids: frozenset[str] = frozenset(),
        drift_report: str | None = None,
        shards: list[Shard] = (),
    ) -> str | None:
        """Write ``shards`` into the shard store, merge every partition's shard into a new
        version, publish and announce it. Touches no partition state, so it may run beside
        ingestion, in another thread."""
        s = self.section
        for shard in shards:
            self.shards.write(shard)
        self.stats.shards += len(shards)
        manifest = build_snapshot(
            self.shards, s.store, s.retention, s.partitions, held_ids, s.feature_names,
            drift_report, quality_config(s),
        )  # fmt: skip
        if manifest is None:
            return None
        path = str(s.store / manifest.version)
        if s.url:
            from streamproc.snapshot.remote import RemoteStoreError, publish

            try:
                publish(s.url, s.store, manifest.version, s.retention)
                path = f"{s.url.rstrip('/')}/{manifest.version}"
            except RemoteStoreError as e:  # the local snapshot stands; the next one retries
                log.error("snapshot %s kept locally only: %s", manifest.version, e)
                if self.metrics is not None:
                    self.metrics.remote_publish_failures.inc()
        self.producer.produce(
            self.snapshots_topic,
            orjson.dumps(
                {
                    "version": manifest.version,
                    "parent": manifest.parent,
                    "rows": manifest.rows,
                    "created_at": manifest.created_at,
                    "source_offsets": manifest.source_offsets,
                    "path": path,
                }
            ),
            key=manifest.version.encode(),
        )
        if self.spot_check is not None and self.spot_check[1] > 0:
            self._spot_check(manifest.version, *self.spot_check)
        self.producer.flush(30)
        self.stats.snapshots.append(manifest.version)
        if self.metrics is not None:
            self.metrics.set_snapshot(
                manifest.version,
                manifest.rows,
                data_path(s.store, manifest.version).stat().st_size,
                manifest.created_at,
                manifest.balance_ratio,
                manifest.stability_vs_parent,
            )
            self.metrics.set_quality((manifest.quality or {}).get("per_label", {}))
            self.metrics.set_substrata(manifest.sampler.get("strata", {}))
        if self.on_published is not None:
            self.on_published(manifest)
        log.info(
            "snapshot %s: %d rows, balance %.2f",
            manifest.version,
            manifest.rows,
            manifest.balance_ratio,
        )
        return manifest.version

    def _spot_check(self, version: str, topic: str, fraction: float) -> None:
        """Publish a stratified review sample of the new snapshot on the spot-check topic."""
        t = read_table(
            self.section.store, version, columns=["label", "id", "features", "payload"]
        ).to_pylist()
        rows = spot_check_rows([r["label"] for r in t], [r["id"] for r in t], fraction)
        for i in rows:
            self.producer.produce(
                topic, orjson.dumps({"snapshot": version, **t[i]}), key=t[i]["id"].encode()
            )
        if self.metrics is not None:
            self.metrics.spot_checks.inc(len(rows))
