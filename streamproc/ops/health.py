"""Liveness of a worker judged by progress, not by the process being alive.

A worker is unhealthy when its ingest thread has stopped, when a partition holds processed
events that have not been committed for longer than ``stall_timeout_s`` (checkpoints are
failing or blocked), when messages are waiting (lag > 0) but nothing was consumed for
longer than that, when the lag grew through the whole of that time (the worker falls
behind, by at least 10% and 10,000 messages), or when a partition was stopped for a
reason an operator must see. An idle worker with nothing to read stays healthy.

>>> t = ProgressTracker(stall_timeout_s=10)
>>> t.mark_running(True); t.processed(0, now=100.0)
>>> t.check(now=105.0)
(True, [])
>>> t.check(now=111.0)
(False, ['partition 0: processed events not committed for 11s (> 10s)'])
>>> t.committed(0, now=111.0); t.check(now=112.0)
(True, [])
>>> for i in range(13):  # the lag grows through the whole window
...     t.set_lag(0, 50_000 + 5_000 * i); t.lag_sample(now=100.0 + i)
>>> t.check(now=112.0)[1]
['lag grew from 60000 to 110000 messages over the last 10s: ingestion is slower than production']
"""

from __future__ import annotations

import threading
import time
from collections import deque

LAG_GROWTH_MIN = 10_000  # messages: a smaller growth is noise, not falling behind


class ProgressTracker:
    def __init__(self, stall_timeout_s: float) -> None:
        self.stall_timeout_s = stall_timeout_s
        self._lock = threading.Lock()
        self._pending_since: dict[int, float] = {}  # partition -> first uncommitted processing
        self._lag: dict[int, int] = {}
        self._problems: dict[int | str, str] = {}  # partition (or part) -> why stopped
        self._lag_history: deque[tuple[float, int]] = deque()  # (time, total lag)
        self._consumed_at = time.time()
        self._running: bool | None = None  # None: not started yet (healthy, not ready)
        self.assigned_once = False

    def mark_running(self, running: bool) -> None:
        self._running = running

    @property
    def running(self) -> bool:
        return bool(self._running)

    def consumed(self, now: float | None = None) -> None:
        self._consumed_at = now or time.time()

    def processed(self, partition: int, now: float | None = None) -> None:
        with self._lock:
            self._pending_since.setdefault(partition, now or time.time())

    def committed(self, partition: int, now: float | None = None) -> None:
        with self._lock:
            self._pending_since.pop(partition, None)

    def forget(self, partition: int) -> None:
        with self._lock:
            self._pending_since.pop(partition, None)
            self._lag.pop(partition, None)

    def set_problem(self, partition: int | str, reason: str | None) -> None:
        """A partition (an int) or the worker's part named by a str stopped for a reason
        an operator must see (None: resolved)."""
        with self._lock:
            if reason is None:
                self._problems.pop(partition, None)
            else:
                self._problems[partition] = reason

    def set_lag(self, partition: int, lag: int) -> None:
        with self._lock:
            self._lag[partition] = lag

    def lag_sample(self, now: float | None = None) -> None:
        """Record the total lag (after the partitions' ``set_lag``) for the growth check."""
        now = now or time.time()
        with self._lock:
            total = sum(v for v in self._lag.values() if v > 0)
            h = self._lag_history
            h.append((now, total))
            while len(h) > 2 and h[1][0] <= now - self.stall_timeout_s:
                h.popleft()  # keep one sample at or before the window's start

    def _lag_growth(self, now: float) -> str | None:
        h = self._lag_history
        if len(h) < 3 or now - h[0][0] < self.stall_timeout_s:
            return None
        start, end = h[0][1], h[-1][1]
        lags = [v for _, v in h]
        rising = all(b >= a for a, b in zip(lags, lags[1:], strict=False))
        if rising and end - start >= max(LAG_GROWTH_MIN, 0.1 * start):
            return (
                f"lag grew from {start} to {end} messages over the last "
                f"{now - h[0][0]:.0f}s: ingestion is slower than production"
            )
        return None

    def check(self, now: float | None = None) -> tuple[bool, list[str]]:
        now = now or time.time()
        bound = self.stall_timeout_s
        reasons = []
        if self._running is False:
            reasons.append("ingest loop has stopped")
        with self._lock:
            for p, since in sorted(self._pending_since.items()):
                if now - since > bound:
                    reasons.append(
                        f"partition {p}: processed events not committed for "
                        f"{now - since:.0f}s (> {bound:g}s)"
                    )
            lag = sum(v for v in self._lag.values() if v > 0)
            reasons += [
                f"partition {p}: {why}" if isinstance(p, int) else f"{p}: {why}"
                for p, why in sorted(self._problems.items(), key=lambda kv: str(kv[0]))
            ]
            growth = self._lag_growth(now)
        if growth is not None:
            reasons.append(growth)
        if lag > 0 and now - self._consumed_at > bound:
            reasons.append(
                f"{lag} messages waiting but nothing consumed for "
                f"{now - self._consumed_at:.0f}s (> {bound:g}s)"
            )
        return not reasons, reasons
