"""``stratastream-dev broker`` stops its broker on SIGTERM and removes ``.run/broker``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.integration
def test_sigterm_stops_the_embedded_broker(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "devtools", "broker"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    run_file = tmp_path / ".run" / "broker"
    lines = []
    while not any("embedded broker listening" in x for x in lines):  # printed once it answers
        line = proc.stdout.readline().decode()
        assert line, f"broker command ended early: {lines}"
        lines.append(line)
    assert run_file.exists()
    children = subprocess.run(
        ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True
    ).stdout.split()
    assert children, "the broker runs as a child process"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert not run_file.exists()
    deadline = time.monotonic() + 10
    alive = children
    while alive and time.monotonic() < deadline:
        alive = [c for c in alive if Path(f"/proc/{c}").exists()]
        time.sleep(0.05)
    assert not alive, f"broker processes left behind: {alive}"
