"""A second worker on a state directory in use fails at once, naming the directory and
the owner, and leaves the first worker's live stores alone (a RocksDB lock refusal is
never taken for damage and quarantined). A kill -9 leaves no stale lock."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from devtools.produce import produce_synthetic
from devtools.supervise import processed_all

pytestmark = pytest.mark.integration


def test_second_worker_on_a_state_dir_in_use_fails_at_once(deployment, tmp_path) -> None:
    w = deployment.worker("first", state="state")
    w.wait_ready(90)
    rep = produce_synthetic(deployment.broker.bootstrap, deployment.events, n=3_000,
                            seed=1, progress=False)  # fmt: skip
    w.wait_until(lambda st: processed_all(rep.next_offsets)([st]), 120, "the events")
    state = tmp_path / "state"
    owner = json.loads((state / ".owner").read_text())
    assert owner["pid"] == w.proc.pid
    p = subprocess.run(
        [sys.executable, "-m", "streamproc.cli", "worker", "--broker",
         f"kafka://{deployment.broker.bootstrap}", "--state-dir", str(state),
         "--snapshot-dir", str(tmp_path / "other-snaps"), "--web-port", "0"],
        capture_output=True, text=True, timeout=60,
        env={**__import__("os").environ, **deployment.env("g")},
    )  # fmt: skip
    err = p.stderr.strip().splitlines()
    assert p.returncode == 2, p.stderr[-2000:]
    assert err[-1].startswith("error: state_dir: ") and str(state.resolve()) in err[-1]
    assert f"pid {w.proc.pid}" in err[-1]
    assert not (state / "quarantine").exists()  # the live stores were not touched
    st = w.status()
    assert st is not None and processed_all(rep.next_offsets)([st])
    # kill -9: the kernel drops the lock; a restarted worker takes the directory over
    w.kill9()
    w2 = deployment.worker("second", state="state")
    w2.wait_ready(90)
    w2.wait_until(lambda st: processed_all(rep.next_offsets)([st]), 120, "the events again")
    assert json.loads((state / ".owner").read_text())["pid"] == w2.proc.pid
    assert w2.stop() == 0
