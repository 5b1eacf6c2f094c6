"""A real full disk (a small tmpfs holding the state and the snapshot store), not a fake
store: the worker stops consuming, answers 503 naming the reason, stays up, and once
space is free resumes by itself and ends with every event counted."""

from __future__ import annotations

import pytest

from devtools.produce import produce_synthetic
from devtools.supervise import processed_all
from snapshot_format import latest_version, read_manifest
from tests.conftest import health
from tests.faults.conftest import fill

pytestmark = pytest.mark.integration


def test_a_full_disk_pauses_reports_and_resumes_without_loss(deployment, small_disk) -> None:
    w = deployment.worker("disk", state=str(small_disk / "state"),
                          snaps=str(small_disk / "snaps"),
                          STRATA_CHECKPOINT_EVERY_S="0.3")  # fmt: skip
    w.wait_ready(90)
    boot = deployment.broker.bootstrap
    rep1 = produce_synthetic(boot, deployment.events, n=4_000, seed=1, progress=False)
    w.wait_until(lambda st: processed_all(rep1.next_offsets, "checkpointed_offset")([st]),
                 120, "a first checkpoint")  # fmt: skip
    ballast = fill(small_disk)
    rep2 = produce_synthetic(boot, deployment.events, n=20_000, seed=2, progress=False)
    last = {}

    def unhealthy_with_reason(_st) -> bool:
        code, body = health(w)
        last.update(code=code, body=body)
        return code == 503 and any("checkpoints fail" in r for r in body["reasons"])

    w.wait_until(unhealthy_with_reason, 120, "503 naming the failing state writes")
    assert "No space left" in " ".join(last["body"]["reasons"]) or "space" in str(last)
    assert w.proc.poll() is None  # no crash, no crash loop
    ballast.unlink()
    want = {p: max(rep1.next_offsets.get(p, 0), o) for p, o in rep2.next_offsets.items()}
    w.wait_until(lambda st: processed_all(want, "checkpointed_offset")([st]), 180,
                 "every event checkpointed after space came back")  # fmt: skip
    w.wait_until(lambda _st: health(w)[0] == 200, 60, "healthy again")
    snaps = small_disk / "snaps"
    before = latest_version(snaps)
    w.request_snapshot()
    w.wait_until(lambda st: latest_version(snaps) != before, 60, "a snapshot")
    m = read_manifest(snaps, latest_version(snaps))
    assert sum(m.seen.values()) == rep1.events + rep2.events
    assert w.stop() == 0
