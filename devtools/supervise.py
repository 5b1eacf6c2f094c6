"""Running a worker as a child process and watching it through its web API.

Used by ``streamproc demo`` and by the integration tests: progress is read from the
worker's ``/status`` (the offsets it has processed), never from broker end offsets.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from devtools.broker import free_port
from stratastream.errors import StratastreamError


class WorkerProcess:
    def __init__(
        self,
        bootstrap: str,
        state_dir: Path,
        snapshot_dir: Path,
        log_path: Path,
        env: dict[str, str] | None = None,
        partitions: int = 4,
    ) -> None:
        self.port = free_port()
        self.log_path = log_path
        env = dict(env or {})
        # the harness may ask for snapshots: an admin token of its own unless given one
        self.admin_token = env.setdefault("STRATA_ADMIN_TOKEN", secrets.token_hex(16))
        cmd = [
            sys.executable,
            "-m",
            "streamproc.cli",
            "worker",
            "--broker",
            f"kafka://{bootstrap}",
            "--state-dir",
            str(state_dir),
            "--snapshot-dir",
            str(snapshot_dir),
            "--partitions",
            str(partitions),
            "--web-port",
            str(self.port),
            "--loglevel",
            "info",
        ]
        self._log = open(log_path, "ab")  # noqa: SIM115 - kept for the child's lifetime
        self.proc = subprocess.Popen(
            cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def status(self) -> dict | None:
        try:
            with urllib.request.urlopen(self.url + "/status", timeout=2) as r:
                return json.loads(r.read())
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
            return None

    def request_snapshot(self) -> None:
        req = urllib.request.Request(
            self.url + "/snapshot",
            method="POST",
            data=b"",
            headers={"Authorization": f"Bearer {self.admin_token}"},
        )
        with urllib.request.urlopen(req, timeout=5) as r:
            if r.status != 202:
                raise StratastreamError(f"POST /snapshot answered {r.status}")

    def _check_alive(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise StratastreamError(f"worker exited with code {self.proc.returncode}:\n{tail}")

    def wait_until(self, pred, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        st = None
        while time.monotonic() < deadline:
            self._check_alive()
            st = self.status()
            if st is not None and pred(st):
                return st
            time.sleep(0.2)
        raise StratastreamError(
            f"worker: timed out after {timeout:.0f}s waiting for {what}; last status {st}"
        )

    def wait_ready(self, timeout: float = 60.0) -> dict:
        return self.wait_until(lambda s: True, timeout, "its web server")

    def stop(self, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def kill9(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._log.close()


def processed_all(next_offsets: dict[int, int], field: str = "next_offset"):
    """Predicate on merged statuses: every partition processed up to the given offsets
    (``field="checkpointed_offset"``: and checkpointed; ``"committed_offset"``: and
    committed to Kafka)."""

    def pred(statuses: list[dict]) -> bool:
        seen: dict[str, int] = {}
        for st in statuses:
            for p, info in st["partitions"].items():
                seen[p] = max(seen.get(p, 0), info[field])
        return all(seen.get(str(p), 0) >= o for p, o in next_offsets.items())

    return pred
