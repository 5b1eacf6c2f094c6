"""A worker that cannot start says why in one line and exits non-zero (no traceback)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(args: list[str], cwd: Path, module: str = "streamproc.cli", **env: str):
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
    )  # fmt: skip
    return proc.returncode, proc.stderr.strip().splitlines()


def _worker(tmp_path: Path, *extra: str, **env: str):
    args = ["worker", "--state-dir", str(tmp_path / "state"),
            "--snapshot-dir", str(tmp_path / "snaps"), *extra]  # fmt: skip
    return _run(args, tmp_path, **env)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once closed


def test_unreachable_broker(tmp_path: Path) -> None:
    url = f"kafka://127.0.0.1:{_closed_port()}"
    rc, err = _worker(tmp_path, "--broker", url, "--web-port", "0", "--broker-timeout-s", "2")
    assert rc == 2 and err[-1].startswith("error: broker at 127.0.0.1:") and "Traceback" not in err
    assert "within 2s" in err[-1]
    assert len(err) <= 3, err  # one clear line, not librdkafka's retry spam


@pytest.mark.parametrize(
    ("module", "args"),
    [
        ("devtools", ["produce", "--events", "10"]),
        ("trainer.cli", ["follow", "--registry", "reg", "--snapshot-dir", "snaps"]),
    ],
)
def test_every_command_fails_fast_on_a_broker_it_cannot_reach(tmp_path, module, args) -> None:
    url = f"kafka://127.0.0.1:{_closed_port()}"
    timeout_flag = "--broker-timeout" if module == "trainer.cli" else "--broker-timeout-s"
    rc, err = _run([*args, "--broker", url, timeout_flag, "2"], tmp_path, module=module)
    assert rc != 0 and err and err[-1].startswith("error: broker at 127.0.0.1:"), err
    assert "Traceback" not in "\n".join(err) and len(err) <= 3, err


@pytest.mark.parametrize(
    ("module", "args"),
    [
        ("streamproc.cli", ["worker", "--web-port", "0"]),
        ("devtools", ["produce", "--events", "10"]),
        ("trainer.cli", ["follow", "--registry", "reg", "--snapshot-dir", "snaps"]),
    ],
)
def test_embedded_means_the_same_to_every_command(tmp_path, module, args) -> None:
    """No embedded broker runs here (no .run/broker): the same one-line error everywhere,
    at once (never a resolver loop on 'embedded:9092')."""
    rc, err = _run([*args, "--broker", "embedded"], tmp_path, module=module)
    assert rc != 0 and err[-1].startswith("error: broker: 'embedded' but no embedded broker")
    assert "Traceback" not in "\n".join(err)


def test_unusable_state_dir(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("a file, not a directory")
    rc, err = _worker(tmp_path, "--broker", "kafka://127.0.0.1:9")
    assert rc == 2 and err == [err[-1]] and err[-1].startswith("error: state_dir:")


def test_busy_web_port(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        rc, err = _worker(tmp_path, "--broker", "kafka://127.0.0.1:9", "--web-port", str(port))
    assert rc == 2 and err[-1].startswith(f"error: web port: 127.0.0.1:{port} is not free")


@pytest.mark.parametrize(
    "env,needle",
    [({"STRATA_MAX_FUTURE_S": "nan"}, "max_future_s"),
     ({"STRATA_HITL_AGREEMENT_BAR": "7"}, "hitl_agreement_bar"),
     ({"STRATA_GLOBAL_CAP": "10"}, "global_cap (10) cannot hold"),
     ({"STRATA_MIN_CAPACITY": "0"}, "min_capacity must be")],
)  # fmt: skip
def test_bad_settings(tmp_path: Path, env: dict, needle: str) -> None:
    rc, err = _worker(tmp_path, "--broker", "kafka://127.0.0.1:9", **env)
    assert rc == 2 and err == [err[-1]] and err[-1].startswith(f"error: {needle}")
    assert "QuotaPolicy" not in err[-1]  # the setting is named, not the sampler's class


def test_malformed_snapshot_and_registry_entries(tmp_path: Path) -> None:
    store = tmp_path / "snaps"
    (store / "0123456789abcdef").mkdir(parents=True)
    (store / "0123456789abcdef" / "manifest.json").write_text("{not json")
    (store / "LATEST").write_text("0123456789abcdef")
    rc, err = _run(["snapshot", "show", "--snapshot-dir", str(store)], tmp_path)
    assert rc == 2 and err[-1].startswith("error: snapshot 0123456789abcdef: manifest.json")
    reg = tmp_path / "reg" / "models" / "m0001-01234567"
    reg.mkdir(parents=True)
    (reg / "meta.json").write_text(json.dumps([1, 2]))
    rc, err = _run(["registry", "show", "m0001-01234567", "--registry", str(tmp_path / "reg")],
                   tmp_path, module="trainer.cli")  # fmt: skip
    assert rc == 2 and err[-1] == "error: model m0001-01234567: meta.json is not a model entry"


def test_a_missing_store_or_registry_is_an_error_not_empty_output(tmp_path: Path) -> None:
    rc, err = _run(["snapshot", "list", "--snapshot-dir", str(tmp_path / "nope")], tmp_path)
    assert rc == 2 and err[-1].startswith("error: snapshot_dir:")
    rc, err = _run(["registry", "list", "--registry", str(tmp_path / "typo")], tmp_path,
                   module="trainer.cli")  # fmt: skip
    assert rc == 2 and err[-1].startswith("error: registry:")
    assert not (tmp_path / "typo").exists()  # reading created nothing


def test_a_second_worker_on_the_same_state_dir_fails_at_once(tmp_path: Path) -> None:
    import fcntl

    state = tmp_path / "state"
    state.mkdir()
    with open(state / ".worker.lock", "a+") as f:  # as a running worker holds it
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write("pid 4242 on host-a")
        f.flush()
        rc, err = _worker(tmp_path, "--broker", "kafka://127.0.0.1:9")
    assert rc == 2
    assert err[-1] == (f"error: state_dir: {state} is in use by pid 4242 on host-a; give each "
                       "worker its own --state-dir")  # fmt: skip


def test_every_setting_flag_says_its_default_and_environment_variable() -> None:
    import argparse

    from streamproc.settings import add_flags

    p = argparse.ArgumentParser()
    add_flags(p)
    flags = [a for a in p._actions if a.dest.startswith("setting_")]
    assert len(flags) > 60
    for a in flags:
        name = a.dest.removeprefix("setting_")
        assert f"env STRATA_{name.upper()}" in a.help, a.help
        assert "default " in a.help or "secret" in a.help or "required" in a.help, a.help
    helps = {a.dest: a.help for a in flags}
    assert "pauses the partition" in helps["setting_on_log_rewind"]
    assert "secret" in helps["setting_kafka_sasl_password"]
