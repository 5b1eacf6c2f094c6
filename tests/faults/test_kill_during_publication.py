"""kill -9, again and again, in the middle of snapshot publication and of training and
registry writes. Readers (the snapshot store's reader, `streamproc snapshot list`, the
registry, `trainer registry list`) must never see a partial snapshot or model; the
restarted process cleans what the killed one left (at once: the writer's host and pid
are in the temporary names) and ends where an uninterrupted run ends."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from devtools.produce import produce_synthetic
from devtools.supervise import processed_all
from snapshot_format import latest_version, list_manifests, read_manifest, read_table
from snapshot_format.layout import SHARDS_DIR
from tests.trainer.conftest import make_snapshot
from trainer.registry import ModelRegistry

pytestmark = pytest.mark.integration
KILLS = 4


def leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.glob(".*") if p.name.endswith(".tmp") or
                  p.name.startswith(".tmp-")) if d.is_dir() else []  # fmt: skip


def readers_see_whole_snapshots(snaps: Path) -> int:
    """Every listed version reads in full (content hash verified); LATEST names one."""
    versions = [m.version for m in list_manifests(snaps)]
    for v in versions:
        read_table(snaps, v)  # raises on a partial or damaged version
    latest = latest_version(snaps)
    assert latest is None or latest in versions
    p = subprocess.run([sys.executable, "-m", "streamproc.cli", "snapshot", "list",
                        "--snapshot-dir", str(snaps)], capture_output=True, text=True,
                       timeout=60)  # fmt: skip
    assert p.returncode in (0, 2), p.stderr  # 2: no snapshot yet, said in one line
    if versions:
        assert p.returncode == 0 and all(v in p.stdout for v in versions)
    return len(versions)


def covers(store: Path, offsets: dict[int, int]) -> bool:
    v = latest_version(store)
    if v is None:
        return False
    got = read_manifest(store, v).source_offsets
    return all(got.get(str(p), 0) >= o for p, o in offsets.items())


def final_snapshot(w, store: Path, offsets: dict[int, int]) -> str:
    """Ask for a snapshot until the latest one covers ``offsets`` (content-addressed: a
    snapshot of unchanged content is the version already there)."""
    w.wait_until(lambda st: processed_all(offsets, "checkpointed_offset")([st]), 180,
                 "every event checkpointed")  # fmt: skip
    w.request_snapshot()
    w.wait_until(lambda st: covers(store, offsets), 60, "a snapshot of every event")
    return latest_version(store)


def test_kill_loops_during_snapshot_publication(deployment, tmp_path) -> None:
    rng = random.Random(7)
    boot = deployment.broker.bootstrap
    reps = []
    # a paced stream for the whole kill loop: each worker publishes new content
    feed = threading.Thread(target=lambda: reps.append(produce_synthetic(
        boot, deployment.events, n=100_000, seed=3, progress=False, rate=4_000)))  # fmt: skip
    feed.start()
    snaps = tmp_path / "snap-g"
    fast = {"STRATA_SNAPSHOT_EVERY_S": "0.2", "STRATA_CHECKPOINT_EVERY_S": "0.2",
            "STRATA_CHECKPOINT_EVERY_EVENTS": "1500"}  # fmt: skip
    published = 0
    for k in range(KILLS):
        w = deployment.worker(f"kill{k}", **fast)
        w.wait_until(lambda st: st["consumed"] > 0, 120, "consuming")
        time.sleep(rng.uniform(0.3, 3.0))  # a random moment: the fault, not a sync point
        w.kill9()
        published = readers_see_whole_snapshots(snaps)
    assert published > 0  # publications happened between the kills
    feed.join(120)
    rep = reps[0]
    w = deployment.worker("last", **fast)
    w.wait_until(lambda st: st["consumed"] > 0 or covers(snaps, rep.next_offsets), 120,
                 "running")  # fmt: skip
    # what the killed writers left was removed at start-up (their pids are gone)
    assert leftovers(snaps) == [] and leftovers(snaps / SHARDS_DIR) == []
    version = final_snapshot(w, snaps, rep.next_offsets)
    assert w.stop() == 0
    final = read_manifest(snaps, version)
    assert sum(final.seen.values()) == rep.events
    # an uninterrupted run over the same log ends in the same content (same version hash)
    ref = deployment.worker("reference", group="ref")
    ref_version = final_snapshot(ref, tmp_path / "snap-ref", rep.next_offsets)
    assert ref.stop() == 0
    assert ref_version == version
    readers_see_whole_snapshots(snaps)


def registry_is_whole(reg: Path) -> list[str]:
    r = ModelRegistry(reg)
    ids = [e.id for e in r.list()]  # each entry's meta.json parses and is an entry
    promoted = (reg / "PROMOTED").read_text().strip() if (reg / "PROMOTED").exists() else None
    assert promoted is None or promoted in ids
    p = subprocess.run([sys.executable, "-m", "trainer.cli", "registry", "list",
                        "--registry", str(reg)], capture_output=True, text=True,
                       timeout=60)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert all(i in p.stdout for i in ids)
    return ids


@pytest.mark.long_fault
def test_kill_loops_during_training_and_registry_writes(tmp_path: Path) -> None:
    store = tmp_path / "snaps"
    make_snapshot(store, 6_000, 4, seed=1, store=store, eval_fraction=0.05)
    reg = tmp_path / "registry"
    rng = random.Random(11)
    cmd = [sys.executable, "-m", "trainer.cli", "train", "--registry", str(reg),
           "--snapshot-dir", str(store), "--epochs", "3", "--device", "cpu"]  # fmt: skip
    t = time.monotonic()
    assert subprocess.run(cmd, capture_output=True, timeout=300).returncode == 0
    took = time.monotonic() - t  # one whole training, to aim the kills inside one
    assert len(registry_is_whole(reg)) == 1
    for _ in range(KILLS):
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3 * took, 1.1 * took))
        p.kill()
        p.wait()
        registry_is_whole(reg)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    ids = registry_is_whole(reg)
    assert leftovers(reg / "models") == [] and not (reg / ".PROMOTED.tmp").exists()
    assert len(ids) >= 2
