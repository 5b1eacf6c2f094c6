"""Scale-out across machines: workers that share nothing but the broker and a remote
snapshot store (S3 over HTTP on loopback), with partitions moved between them by kill -9
and restarts on fresh machines, end in the snapshot of one uninterrupted worker.

Every restarted worker gets a new, empty state directory and a new local snapshot
directory (a new host: nothing local survives), so the partitions it is given are
restored from their shards in the remote store and replayed from the log after them.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import fsspec
import pytest

from devtools.produce import produce_synthetic
from devtools.supervise import processed_all
from snapshot_format import SnapshotManifest, latest_version
from tests.conftest import Deployment

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.long_fault]

PARTITIONS, WORKERS, KILLS = 8, 4, 4


def _statuses(workers) -> list[dict]:
    return [st for w in workers if (st := w.status()) is not None]


def _wait(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (got := pred()) is not None and got is not False:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _remote_latest(url: str) -> SnapshotManifest | None:
    fs, root = fsspec.core.url_to_fs(url)
    try:
        v = fs.cat_file(f"{root}/LATEST").decode().strip()
        return SnapshotManifest.from_json(fs.cat_file(f"{root}/{v}/manifest.json"), v)
    except FileNotFoundError:
        return None


def test_workers_on_separate_hosts_end_in_the_single_worker_snapshot(
    broker, tmp_path: Path, s3_server: dict[str, str], monkeypatch
) -> None:
    d = Deployment(broker, tmp_path, partitions=PARTITIONS)
    aws = {k: v for k, v in s3_server.items() if k != "url"}
    for k, v in aws.items():  # this process reads the remote store too
        monkeypatch.setenv(k, v)
    url = s3_server["url"]
    remote = {**aws, "STRATA_SNAPSHOT_URL": url, "STRATA_SNAPSHOT_EVERY_S": "1.5"}
    rng = random.Random(11)
    hosts = 0

    def new_host():
        nonlocal hosts
        hosts += 1  # its own state and snapshot directories: nothing shared on disk
        return d.worker(f"host{hosts}", group="scale", state=f"host{hosts}-state",
                        snaps=f"host{hosts}-snaps", **remote)  # fmt: skip

    try:
        workers = [new_host() for _ in range(WORKERS)]

        def all_own_some() -> bool:
            sts = _statuses(workers)
            return len(sts) == len(workers) and all(st["partitions"] for st in sts)

        _wait(all_own_some, 180, "every worker to own partitions")
        produced: dict = {}

        def produce() -> None:
            produced["rep"] = produce_synthetic(
                broker.bootstrap, d.events, n=120_000, n_labels=12, malformed_frac=0.01,
                seed=5, progress=False, rate=8_000,
            )  # fmt: skip

        producer = threading.Thread(target=produce)
        producer.start()
        moved = 0
        for _ in range(KILLS):  # kill -9 a worker that owns partitions, start a new host
            time.sleep(rng.uniform(1.5, 3.5))
            owners = [w for w in workers if (st := w.status()) and st["partitions"]]
            victim = rng.choice(owners or workers)
            moved += len((victim.status() or {}).get("partitions", {}))
            victim.kill9()
            workers.remove(victim)
            workers.append(new_host())
        producer.join(300)
        rep = produced["rep"]
        assert moved > 0

        done = processed_all(rep.next_offsets)
        _wait(lambda: done(_statuses(workers)), 300, f"all workers to reach {rep.next_offsets}")
        for w in workers:  # each exports the shards of the partitions it owns now
            w.request_snapshot()
        want = {str(p): o for p, o in rep.next_offsets.items()}
        final = _wait(
            lambda: (m := _remote_latest(url)) is not None and m.source_offsets == want
            and m, 180, "a remote snapshot covering every event",
        )  # fmt: skip
        restored = sum(
            (tmp_path / f"host{i}.log").read_text(errors="replace").count("restoring from shard")
            for i in range(WORKERS + 1, hosts + 1)
        )
        assert restored > 0, "no partition was restored from a remote shard"
        for w in workers:
            w.stop()

        ref = d.worker("ref", group="ref")  # one worker, local store only, never killed
        ref.wait_until(lambda s: done([s]), 300, "the reference run")
        ref.request_snapshot()
        ref.wait_until(lambda s: s["snapshots"], 120, "the reference snapshot")
        ref_version = _wait(lambda: latest_version(tmp_path / "snap-ref"), 60, "LATEST")
        ref.stop()

        assert final.version == ref_version  # same content hash: same rows, same offsets
        assert sum(final.seen.values()) == rep.events
        assert final.counters["rejected"] == sum(rep.malformed.values())
    finally:
        d.close()
