"""`make run`'s demo, end to end at a small size: the story it tells must be what happened.

The demo runs in phases that do not depend on timing (stable stream, reference snapshot,
drifted stream, a drift check over all of it, final snapshot, model), so its summary must
show seen == produced and a drift detected after the drift began, read back from the
drift topic, and a model trained on the final snapshot.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_demo_summary_shows_what_happened(tmp_path: Path) -> None:
    p = subprocess.run(
        [sys.executable, "-m", "devtools", "demo", "--events", "20000", "--rate", "0"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={**os.environ, "COLUMNS": "200", "TERM": "dumb"},
    )  # fmt: skip
    out = p.stdout
    assert p.returncode == 0, out[-3000:] + p.stderr[-3000:]
    assert re.search(r"seen == produced, per label\s*│\s*True", out), out[-3000:]
    after = re.search(r"first alert after the drift began\s*│\s*([0-9.]+)s", out)
    assert after is not None, out[-3000:]  # detected, and after the drift began
    assert re.search(r"features flagged\s*│\s*f\d", out)
    models = re.findall(r"│ (m\d{4}-[0-9a-f]+) │ (\w+)", out)
    assert models and models[-1][1] in ("drift", "snapshot")
    assert (tmp_path / ".run" / "demo" / "snapshots" / "drift-reports" / "latest.html").is_file()
