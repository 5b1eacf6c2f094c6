"""Run the twin comparison again with the JIT disabled (numba kernels as plain Python)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_twin_suite_with_jit_disabled() -> None:
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-W",
            "ignore::RuntimeWarning",
            "tests/sampler/test_reference_twin.py",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout


def test_jit_off_really_runs_plain_python() -> None:
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from sampler import kernels; print(type(kernels.update_kernel).__name__)",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out == "function"  # a plain Python function, not a numba CPUDispatcher
