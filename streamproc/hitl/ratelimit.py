"""Per-client token buckets for the human-in-the-loop endpoints.

>>> b = TokenBucket(rate=1.0, burst=2.0)
>>> [b.allow("c", now=0.0) for _ in range(3)]
[True, True, False]
>>> b.allow("c", now=1.0)
True
"""

from __future__ import annotations

import time


class TokenBucket:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens: dict[str, tuple[float, float]] = {}

    def allow(self, client: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        level, at = self.tokens.get(client, (self.burst, now))
        level = min(self.burst, level + (now - at) * self.rate)
        if level < 1.0:
            self.tokens[client] = (level, now)
            return False
        self.tokens[client] = (level - 1.0, now)
        return True
