"""Sub-strata inside a label: a coarse grid over some features, so that a label's sample
covers its feature space instead of its most common corner.

A *stratum* is a (label, cell) pair, named ``"<label>\\x1f<cell>"``; the reservoirs keep
one bottom-k sample per stratum, so every retained item's inclusion probability is exact
within its stratum (``k/n`` in uniform mode). With :attr:`QuotaPolicy.substrata`, a
label's capacity is set by the label-level policy (floors, ceilings, ``global_cap``,
boosts, all by label name) and water-filled over its cells by the events each has seen:
a rare cell keeps all of its events up to the level that the common cells share. Like
label capacities, cell capacities depend only on the strata seen and their counts, never
on arrival order, and only shrink as the stream goes on.

The grid is fixed by settings (never learnt from data, which would make a sample depend
on what came first): cut points shared by the chosen features.

>>> g = Grid(features=(0, 2), edges=(-1.0, 0.0, 1.0))
>>> g.cells(np.array([[-5.0, 9, 0.5], [0.2, 9, 3.0]])).tolist()
[2, 11]
>>> stratum_name("cat", 13), group_of("cat\\x1f13"), group_of("__eval__")
('cat\\x1f13', 'cat', '__eval__')
>>> water_fill(np.ones(3, np.int64), np.full(3, 10), np.array([1, 50, 50]), 12)
array([5, 5, 5])
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError

SEP = "\x1f"  # between a label and its cell in a stratum's name


def stratum_name(label: str, cell: int) -> str:
    return f"{label}{SEP}{cell}"


def group_of(name: str) -> str:
    """The label a stratum belongs to (a name without a cell is its own label)."""
    head, sep, _ = name.rpartition(SEP)
    return head if sep else name


def by_label(counts: Mapping[str, int | float]) -> dict[str, int | float]:
    """Per-stratum figures summed per label."""
    out: dict[str, int | float] = {}
    for name, v in counts.items():
        g = group_of(name)
        out[g] = out.get(g, 0) + v
    return out


@dataclass(frozen=True)
class Grid:
    """Cells over ``features`` (indexes) cut at ``edges`` (sorted): feature ``j``'s bin is
    the number of edges ``<= x[j]``, and the cell numbers the bins in mixed radix."""

    features: tuple[int, ...]
    edges: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.features or any(isinstance(f, bool) or not isinstance(f, int) or f < 0
                                     for f in self.features):  # fmt: skip
            raise ConfigError(f"substrata_features: feature indexes >= 0, got {self.features!r}")
        if len(set(self.features)) != len(self.features):
            raise ConfigError(f"substrata_features: repeated index in {self.features!r}")
        e = np.asarray(self.edges, float)
        if e.ndim != 1 or not e.size or not np.isfinite(e).all() or (np.diff(e) <= 0).any():
            raise ConfigError(
                f"substrata_edges: one or more finite, increasing cut points, got {self.edges!r}"
            )
        if self.n_cells > 4096:
            raise ConfigError(
                f"substrata: {len(self.edges) + 1} bins over {len(self.features)} features "
                f"make {self.n_cells} cells per label; at most 4096"
            )

    @property
    def spec(self) -> str:
        """The grid as text (kept in :attr:`QuotaPolicy.substrata`, so a state built on one
        grid is never continued on another)."""
        return (f"features={','.join(map(str, self.features))};"
                f"edges={','.join(repr(float(e)) for e in self.edges)}")  # fmt: skip

    @property
    def n_cells(self) -> int:
        return (len(self.edges) + 1) ** len(self.features)

    def cells(self, features: np.ndarray) -> np.ndarray:
        """The cell of each row of ``features`` (n x d)."""
        x = np.asarray(features, float)
        if x.ndim != 2 or (x.shape[0] and max(self.features) >= x.shape[1]):
            raise ConfigError(
                f"substrata_features: index {max(self.features)} is beyond the "
                f"{x.shape[1] if x.ndim == 2 else 0} features of an event"
            )
        edges = np.asarray(self.edges, float)
        cell = np.zeros(x.shape[0], np.int64)
        for j in self.features:
            cell = cell * (len(edges) + 1) + np.searchsorted(edges, x[:, j], side="right")
        return cell


def water_fill(
    low: np.ndarray, high: np.ndarray, demand: np.ndarray | None, cap: int
) -> np.ndarray:
    """Capacities ``clip(level, low, high)`` with the largest integer ``level`` whose
    demand-limited total ``sum(min(demand, capacity))`` stays within ``cap``."""
    need = high if demand is None else np.minimum(demand, high)

    def total(level: int) -> int:
        return int(np.minimum(need, np.clip(level, low, high)).sum())

    lo_level, hi_level = 0, int(high.max(initial=0))
    while lo_level < hi_level:
        mid = (lo_level + hi_level + 1) // 2
        if total(mid) <= cap:
            lo_level = mid
        else:
            hi_level = mid - 1
    return np.clip(lo_level, low, high).astype(np.int64)
