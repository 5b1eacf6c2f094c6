"""The API reference builds from the docstrings (pdoc), with no warning: `make docs`
writes it to .run/apidocs/."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["stratastream", "sampler", "drift", "snapshot_format", "trainer", "streamproc"]


def test_api_reference_builds_without_warnings(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "pdoc", "-o", str(tmp_path), *PACKAGES],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PDOC_ALLOW_EXEC": "1"},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    warnings = [x for x in (r.stdout + r.stderr).splitlines() if x.strip()]
    assert not warnings, warnings[:10]
    # a package with __all__ documents its public names on its own page
    for page, name in (("sampler.html", "LabelReservoirs"),
                       ("snapshot_format.html", "SnapshotManifest"),
                       ("drift/monitor.html", "DriftMonitor"),
                       ("streamproc/worker/loop.html", "IngestLoop")):  # fmt: skip
        html = (tmp_path / page).read_text()
        assert "<html" in html and name in html, page
