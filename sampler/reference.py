"""Pure-Python twin of the numba kernels: slow, obvious, and used as the tests' oracle.

:class:`ReferenceReservoirs` keeps, per label, a dict of retained items and applies the
same rules as :mod:`sampler.kernels` one event at a time with ``heapq``: the same
priorities (from :func:`sampler.hashing.draw_uniform_py`), the same threshold ``tau``,
the same capacities (from :class:`QuotaPolicy`, water-filled on the counts seen by the
end of each batch), the same idempotent replays.
"""

from __future__ import annotations

import heapq
import math

from .hashing import draw_uniform_py
from .quota import QuotaPolicy


class ReferenceReservoirs:
    def __init__(
        self,
        policy: QuotaPolicy,
        mode: str = "uniform",
        half_life: float | None = None,
        seed: int = 0,
        time_origin: float = 0.0,
    ) -> None:
        self.policy = policy
        self.mode = mode
        self.lam = math.log(2.0) / half_life if half_life else 0.0
        self.seed = seed
        self.t0 = time_origin
        self.items: dict[int, dict[int, tuple[float, float, float]]] = {}  # l -> key -> (p, b, t)
        self.seen: dict[int, int] = {}
        self.tau: dict[int, float] = {}
        self.cap: dict[int, int] = {}

    def _register(self, l: int) -> None:
        self.items[l] = {}
        self.seen[l] = 0
        self.tau[l] = 0.0 if self.mode == "uniform" else -math.inf
        self._reallocate()

    def _reallocate(self) -> None:
        """Capacities water-filled on the counts seen so far; over-full labels shrink."""
        names = [str(x) for x in sorted(self.items)]
        alloc = self.policy.allocate(names, demand={str(x): n for x, n in self.seen.items()})
        for x in self.items:
            self.cap[x] = alloc[str(x)]
            self._shrink(x)

    def _shrink(self, l: int) -> None:
        its = self.items[l]
        while len(its) > self.cap[l]:
            k = min(its, key=lambda q: (its[q][0], q))
            self.tau[l] = max(self.tau[l], its[k][0])
            del its[k]

    def priority(self, key: int, label: int, t: float, w: float = 1.0) -> tuple[float, float]:
        u = draw_uniform_py(key, str(label), self.seed)  # ids are named str(id)
        if self.mode == "uniform":
            return u, 0.0
        b = self.lam * (t - self.t0) + (math.log(w) if w != 1.0 else 0.0)
        return b - math.log(-math.log(u)), b

    def update(self, labels, timestamps, keys, weights=None) -> None:
        for i, (l, t, k) in enumerate(zip(labels, timestamps, keys, strict=True)):
            l, k, t = int(l), int(k), float(t)
            if l not in self.items:
                self._register(l)
            w = 1.0 if weights is None else float(weights[i])
            p, b = self.priority(k, l, t, w)
            self.seen[l] += 1
            its = self.items[l]
            if len(its) >= self.cap[l]:
                root = min(v[0] for v in its.values())
                if p <= root:
                    self.tau[l] = max(self.tau[l], p)
                    continue
            if k in its:
                continue
            if len(its) >= self.cap[l]:
                kmin = min(its, key=lambda q: its[q][0])
                self.tau[l] = max(self.tau[l], its[kmin][0])
                del its[kmin]
            its[k] = (p, b, t)
        self._reallocate()

    def inclusion(self, l: int, key: int) -> float:
        p, b, _ = self.items[l][key]
        tau = self.tau[l]
        if self.mode == "uniform":
            return 1.0 - tau
        return 1.0 if tau == -math.inf else -math.expm1(-math.exp(b - tau))


def top_k_reference(priorities: dict[int, float], k: int) -> set[int]:
    """The k keys of largest priority (heapq), the definition of a bottom-k sample."""
    return {q for q, _ in heapq.nlargest(k, priorities.items(), key=lambda kv: kv[1])}
