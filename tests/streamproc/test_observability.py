"""Metrics, health, dashboards and alert rules, checked with real Prometheus tools."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from devtools.broker import EmbeddedBroker, free_port
from devtools.produce import produce_synthetic
from devtools.supervise import processed_all
from streamproc.ops.metrics import WorkerMetrics, reason_category
from trainer.telemetry import TrainerMetrics

ROOT = Path(__file__).resolve().parents[2]
MON = ROOT / "deploy" / "monitoring"


def _exported_names(tmp_path: Path) -> set[str]:
    names: set[str] = set()
    registries = [WorkerMetrics().registry, TrainerMetrics(tmp_path / "reg").registry]
    for reg in registries:
        for fam in reg.collect():
            base = fam.name
            if fam.type == "counter":
                names |= {base + "_total", base + "_created"}
            elif fam.type == "histogram":
                names |= {base + s for s in ("_bucket", "_sum", "_count", "_created")}
            else:
                names.add(base)
    return names


def _expressions() -> list[str]:
    rules = yaml.safe_load((MON / "rules.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    dash = json.loads((MON / "grafana" / "dashboards" / "stratastream.json").read_text())
    exprs += [t["expr"] for p in dash["panels"] for t in p["targets"]]
    return exprs


def test_dashboard_and_rules_name_only_exported_metrics(tmp_path: Path) -> None:
    exported = _exported_names(tmp_path)
    exprs = _expressions()
    assert len(exprs) > 20
    used = {m for e in exprs for m in re.findall(r"\bstrata_[a-z0-9_]+", e)}
    assert used, "no metric names found"
    assert used <= exported, f"not exported: {sorted(used - exported)}"


def test_promtool_accepts_the_rules() -> None:
    r = subprocess.run(
        ["promtool", "check", "rules", str(MON / "rules.yml")], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 11 rules found" in r.stdout


def test_every_alert_has_a_runbook_and_a_promtool_unit_test() -> None:
    rules = yaml.safe_load((MON / "rules.yml").read_text())["groups"][0]["rules"]
    readme = (MON.parent.parent / "README.md").read_text()
    tests = yaml.safe_load((MON / "rules.test.yml").read_text())["tests"]
    tested = {c["alertname"] for t in tests for c in t["alert_rule_test"] if c["exp_alerts"]}
    quiet = {c["alertname"] for t in tests for c in t["alert_rule_test"] if not c["exp_alerts"]}
    for r in rules:
        url = r["annotations"]["runbook_url"]
        assert url == f"README.md#runbook-{r['alert'].lower()}", url
        assert f"### Runbook: {r['alert']}\n" in readme
        assert r["alert"] in tested and r["alert"] in quiet, r["alert"]
    r = subprocess.run(
        ["promtool", "test", "rules", str(MON / "rules.test.yml")], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_reason_categories_are_bounded() -> None:
    assert reason_category("features: expected 4 numbers, got 3") == "features"
    assert reason_category("frame row 17: ts: nan is not finite") == "frame_row_ts"
    assert reason_category("label/labels: give one of them") == "label_labels"
    assert reason_category("???") == "other"


def test_label_series_stay_bounded() -> None:
    m = WorkerMetrics(max_labels=3)
    seen = {f"l{i}": 100 - i for i in range(10)}
    m.set_labels(seen, seen, {k: 50 for k in seen})
    text = m.exposition().decode()
    series = re.findall(r'^strata_label_seen\{label="([^"]+)"\}', text, re.M)
    assert sorted(series) == ["__other__", "l0", "l1", "l2"]
    other = float(sum(100 - i for i in range(3, 10)))
    assert f'strata_label_seen{{label="__other__"}} {other}' in text


def _query(port: int, q: str) -> list:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": q})
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())["data"]["result"]


def _scalar(port: int, q: str) -> float | None:
    res = _query(port, q)
    return float(res[0]["value"][1]) if res else None


@pytest.mark.integration
def test_real_prometheus_scrapes_a_worker(deployment, tmp_path: Path) -> None:
    w = deployment.worker("w1")
    w.wait_ready()
    rep = produce_synthetic(
        deployment.broker.bootstrap,
        deployment.events,
        n=8_000,
        n_labels=6,
        malformed_frac=0.03,
        seed=5,
        progress=False,
    )
    w.wait_until(lambda s: processed_all(rep.next_offsets)([s]), 120, "catch-up")
    w.request_snapshot()
    w.wait_until(lambda s: s["snapshots"], 60, "a snapshot")

    # promtool lints a live scrape
    with urllib.request.urlopen(w.url + "/metrics", timeout=5) as r:
        text = r.read()
    chk = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True)
    assert chk.returncode == 0, chk.stdout + chk.stderr

    port = free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(MON / "rules.yml")],
                "scrape_configs": [
                    {"job_name": "worker", "static_configs": [{"targets": [f"127.0.0.1:{w.port}"]}]}
                ],
            }
        )
    )
    prom = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={cfg}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        consumed = None
        while time.monotonic() < deadline:
            try:
                consumed = _scalar(port, "sum(strata_events_consumed_total)")
            except OSError:
                consumed = None
            if consumed == rep.messages:
                break
            time.sleep(0.5)
        assert consumed == rep.messages
        dead = _scalar(port, "sum(strata_events_dead_lettered_total)")
        assert dead == sum(rep.malformed.values())
        assert _scalar(port, "sum(strata_events_accepted_total)") == rep.events
        assert _scalar(port, "count(strata_label_seen)") == 6
        assert _scalar(port, "sum(strata_label_seen)") == rep.events
        assert _scalar(port, "max(strata_snapshot_rows)") > 0
        assert 0 < _scalar(port, "max(strata_balance_ratio)") <= 1
        assert _scalar(port, "min(strata_worker_healthy)") == 1
        assert _scalar(port, "sum(strata_partition_lag_events)") == 0
        up = _query(port, "up")
        assert up and up[0]["value"][1] == "1"
        rules = json.loads(
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/rules", timeout=5).read()
        )
        assert len(rules["data"]["groups"][0]["rules"]) == 11
        # every dashboard query runs as Grafana sends it (template variables at "All")
        dash = json.loads((MON / "grafana" / "dashboards" / "stratastream.json").read_text())
        names = {v["name"] for v in dash["templating"]["list"]}
        assert {"datasource", "job", "instance", "label"} <= names
        for panel in dash["panels"]:
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            for t in panel["targets"]:
                q = t["expr"]
                for var in ("$job", "$instance", "$label"):
                    q = q.replace(var, ".*")
                _query(port, q)  # raises (HTTP 400) on a query Prometheus rejects
        seen = _scalar(port, 'sum(strata_label_seen{job=~".*",instance=~".*",label=~".*"})')
        assert seen == rep.events
    finally:
        prom.terminate()
        prom.wait(30)


@pytest.mark.integration
def test_health_turns_unhealthy_when_the_worker_stalls(tmp_path: Path) -> None:
    """Freeze the broker mid-stream: checkpoints cannot commit, /health must say so."""
    from tests.conftest import Deployment
    from tests.conftest import health as _health

    with EmbeddedBroker() as broker:
        d = Deployment(broker, tmp_path)
        w = d.worker("w", STRATA_STALL_TIMEOUT_S="2", STRATA_CHECKPOINT_EVERY_S="0.2")
        try:
            w.wait_ready()
            assert _health(w)[0] == 200

            def produce() -> None:  # a steady stream, so events are in flight at the freeze
                # deliveries may time out while the broker is frozen
                with contextlib.suppress(RuntimeError):
                    produce_synthetic(
                        broker.bootstrap, d.events, n=40_000, progress=False, rate=4_000
                    )

            threading.Thread(target=produce, daemon=True).start()
            w.wait_until(lambda s: s["consumed"] > 4_000, 60, "some progress")
            os.kill(broker._proc.pid, signal.SIGSTOP)
            try:
                deadline = time.monotonic() + 60
                code, body = _health(w)
                while code == 200 and time.monotonic() < deadline:
                    time.sleep(0.2)
                    code, body = _health(w)
                assert code == 503, body
                stalled = ("not committed", "nothing consumed", "lag grew")
                assert any(x in r for r in body["reasons"] for x in stalled), body
            finally:
                os.kill(broker._proc.pid, signal.SIGCONT)
            deadline = time.monotonic() + 90
            while _health(w)[0] != 200 and time.monotonic() < deadline:
                time.sleep(0.3)
            assert _health(w)[0] == 200
        finally:
            d.close()
