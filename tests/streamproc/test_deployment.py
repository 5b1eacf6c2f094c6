"""docker-compose.yml and real Apache Kafka (testcontainers; skipped without a Docker engine)."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from streamproc.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_compose_file_is_consistent_with_the_code() -> None:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = doc["services"]
    assert {"kafka", "worker"} <= set(services)
    fields = {f.name for f in dataclasses.fields(Settings)}
    for name, svc in services.items():
        for var in svc.get("environment") or {}:
            if var.startswith("STRATA_"):
                assert var[7:].lower() in fields, f"{name}: {var} is not a setting"
    # the settings given to the containers are valid (required secrets filled in as a
    # user does before `docker compose up`)
    env = {k: str(v) for k, v in services["worker"]["environment"].items()}
    for k in ("STRATA_HITL_TOKEN", "STRATA_ADMIN_TOKEN"):
        assert env[k].startswith("${" + k + ":?"), f"{k} must be required, not defaulted"
        env[k] = "x" * 32
    s = Settings.load(env=env)
    assert s.bootstrap == "kafka:9092" and s.web_bind == "0.0.0.0"
    assert services["worker"]["command"][0] == "streamproc"
    # /predict reads the registry the trainer writes
    trainer = services["trainer"]["command"]
    assert str(s.hitl_registry_dir) == trainer[trainer.index("--registry") + 1]
    # the worker has a healthcheck on its /health page
    hc = " ".join(services["worker"]["healthcheck"]["test"])
    assert "/health" in hc and "6066" in hc


def test_image_has_every_package_and_a_small_context() -> None:
    import tomllib

    docker = (ROOT / "deploy" / "docker" / "Dockerfile").read_text()
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"]["find"]["include"]  # fmt: skip
    for pkg in {p.rstrip("*") for p in include}:
        assert f"COPY {pkg} {pkg}" in docker, f"the image lacks package {pkg}"
    assert "warm_up" in docker  # numba kernels compiled into the image
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".run", ".git"} <= set(ignored)
    readme = (ROOT / "README.md").read_text()
    for port in ("29092", "6066", "9090", "3000"):
        assert port in readme


def _docker_engine() -> str | None:
    """Why there is no usable Docker engine, or None when there is one."""
    if shutil.which("docker") is None:
        return "no docker client installed"
    r = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        return "no Docker engine is running (`docker info` failed)"
    return None


@pytest.mark.integration
def test_end_to_end_on_real_kafka(tmp_path: Path) -> None:
    reason = _docker_engine()
    if reason:
        pytest.skip(f"real-Kafka test needs Docker: {reason}")
    from testcontainers.kafka import KafkaContainer

    from devtools.broker import create_topics
    from devtools.produce import produce_synthetic
    from devtools.supervise import WorkerProcess, processed_all

    with KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft() as kafka:
        bootstrap = kafka.get_bootstrap_server()
        create_topics(bootstrap, {"events": 4, "events-dlq": 1, "snapshots": 1})
        w = WorkerProcess(bootstrap, tmp_path / "state", tmp_path / "snap", tmp_path / "worker.log")
        try:
            w.wait_ready(120)
            rep = produce_synthetic(
                bootstrap, "events", n=5_000, malformed_frac=0.02, progress=False
            )
            w.wait_until(lambda s: processed_all(rep.next_offsets)([s]), 180, "catch-up")
            w.request_snapshot()
            st = w.wait_until(lambda s: s["snapshots"], 60, "a snapshot")
            assert st["rejected"] == sum(rep.malformed.values())
        finally:
            w.stop()
