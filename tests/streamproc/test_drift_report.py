"""The drift report people read: a real worker checks drift on a stream that shifts,
writes an HTML + JSON report per check, links it from /status and the next snapshot's
manifest, serves it on GET /drift/report; a real headless browser (Chromium from Debian)
renders the page with no console errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from devtools.broker import EmbeddedBroker
from devtools.produce import produce_synthetic
from devtools.supervise import WorkerProcess, processed_all
from snapshot_format import latest_version, read_manifest

pytestmark = pytest.mark.integration


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_drift_report_is_linked_served_and_renders(tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium: `make system-deps` installs Debian's")
    env = {"STRATA_GROUP_ID": "report", "STRATA_SNAPSHOT_EVERY_S": "3600",
           "STRATA_DRIFT_EVERY_S": "1", "STRATA_DRIFT_MIN_SAMPLES": "30",
           "STRATA_DRIFT_WINDOW_HALF_LIFE_S": "3600"}  # fmt: skip
    snaps = tmp_path / "snaps"
    with EmbeddedBroker() as b:
        b.create_topics({"events": 2})
        w = WorkerProcess(b.bootstrap, tmp_path / "state", snaps, tmp_path / "w.log",
                          env=env, partitions=2)  # fmt: skip
        try:
            w.wait_ready(90)
            first = produce_synthetic(b.bootstrap, "events", n=3_000, n_labels=3, seed=1,
                                      progress=False)  # fmt: skip
            w.wait_until(lambda s: processed_all(first.next_offsets)([s]), 120, "events")
            w.request_snapshot()  # the drift reference
            w.wait_until(lambda s: len(s["snapshots"]) == 1, 60, "a snapshot")
            # the same labels, shifted features
            produce_synthetic(b.bootstrap, "events", n=3_000, n_labels=3, seed=2,
                              drift_at=0.0, drift_shift=3.0, progress=False,
                              start_ts=None)  # fmt: skip
            st = w.wait_until(
                lambda s: s["drift_report"] is not None and s["drift"].get("alert", 0) > 0,
                120, "a drift alert and its report",
            )  # fmt: skip
            report = snaps / st["drift_report"]
            assert report.is_file() and report.with_suffix(".json").is_file()
            with urllib.request.urlopen(w.url + "/drift/report", timeout=5) as r:
                assert r.headers["Content-Type"].startswith("text/html")
                page = r.read().decode()
            with urllib.request.urlopen(w.url + "/drift/report?format=json", timeout=5) as r:
                doc = json.loads(r.read())
            drifted = [n for n, ld in doc["labels"].items() if ld["drifted"]]
            assert drifted, doc["labels"].keys()
            f0 = doc["labels"][drifted[0]]["features"][0]
            assert {"ks", "pvalue", "p_adjusted", "threshold", "psi", "histogram"} <= set(f0)
            w.request_snapshot()
            w.wait_until(lambda s: len(s["snapshots"]) == 2, 60, "a second snapshot")
            m = read_manifest(snaps, latest_version(snaps))
            assert m.drift_report is not None and (snaps / m.drift_report).is_file()
        finally:
            assert w.stop() == 0
    html_file = tmp_path / "report.html"
    html_file.write_text(page)
    shot = tmp_path / "report.png"
    r = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
         "--v=0", "--virtual-time-budget=2000", f"--screenshot={shot}",
         "--window-size=1200,2000", html_file.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert shot.is_file() and shot.stat().st_size > 10_000  # a page was painted
    console = [x for x in r.stderr.splitlines() if "CONSOLE" in x]
    assert not console, console
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
         html_file.as_uri()],
        capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    assert "Stratastream drift report" in dom and dom.count("<svg") >= 4
    assert "drift" in dom and "threshold" in dom
