"""One worker per state directory: an exclusive lock, held for the process's lifetime.

Two workers on one state directory would write the same RocksDB stores; RocksDB refuses
the second open, and a refusal must never be taken for damage (that would quarantine a
live store). The worker takes ``<state_dir>/.owner`` with ``flock`` before anything else
and writes who holds it; a second worker fails at once naming the directory and the
owner. The kernel drops the lock when the process ends, kill -9 included, so a crash
leaves no stale lock behind.

>>> import tempfile
>>> d = tempfile.mkdtemp()
>>> first = StateDirLock(d).acquire()
>>> try:
...     StateDirLock(d).acquire()
... except StateError as e:
...     print(str(e).split(":")[0])
state_dir
>>> first.release()
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from stratastream.errors import StateError

OWNER_FILE = ".owner"


class StateDirLock:
    def __init__(self, state_dir: str | Path) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / OWNER_FILE
        self._fd: int | None = None

    def acquire(self) -> StateDirLock:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = self.owner() or "another process"
            os.close(fd)
            raise StateError(
                f"state_dir: {self.state_dir.resolve()} is in use by {owner}; each worker "
                "needs a state directory of its own"
            ) from None
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        self._fd = fd
        return self

    def owner(self) -> str | None:
        """Who holds the directory, as written by the holder (None if unreadable)."""
        try:
            o = json.loads(self.path.read_text())
            return f"pid {o['pid']} on {o['host']} (since {o['since']})"
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def is_lock_error(e: BaseException) -> bool:
    """A RocksDB open refused because another process holds the store (not damage)."""
    text = str(e)
    return "LOCK" in text and ("Resource temporarily unavailable" in text
                               or "lock hold by current process" in text
                               or "No locks available" in text)  # fmt: skip
