"""Per-label capacities under one global memory cap.

>>> from sampler import QuotaPolicy
>>> policy = QuotaPolicy(global_cap=5_000, max_capacity=2_000, min_capacity=200, max_labels=8)
>>> policy.allocate(["a", "b", "c"])
{'a': 1666, 'b': 1666, 'c': 1666}
>>> policy.allocate(["a", "b"], boosted={"b"})
{'a': 2000, 'b': 3000}

With demand (events seen so far), capacity a label cannot fill goes to those that can:

>>> small = QuotaPolicy(global_cap=600, max_capacity=600, min_capacity=10, max_labels=8)
>>> small.allocate(["a", "b", "c"])
{'a': 200, 'b': 200, 'c': 200}
>>> small.allocate(["a", "b", "c"], demand={"a": 20, "b": 5_000, "c": 5_000})
{'a': 290, 'b': 290, 'c': 290}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from .errors import ConfigError
from .strata import water_fill


@dataclass(frozen=True)
class QuotaPolicy:
    """How many items each label may retain.

    Capacities are water-filled: every label gets ``min(ceiling, level)``, clamped up to
    its floor, with the largest integer ``level`` that keeps the total within
    ``global_cap``. With ``demand`` (the events each label has seen), a label counts
    against ``global_cap`` only for what it can hold, ``min(demand, capacity)``: the
    budget a label cannot fill goes to labels that can, never beyond their ceilings.
    Demand only grows, so capacities only shrink as a stream goes on, which keeps
    bottom-k samples exact (a shrunk bottom-k sample is the bottom-k sample). A boosted
    label (rare, high-variance, or flagged scarce by drift detection) has its ceiling
    raised to ``boost_capacity``. Capacities depend only on the set of registered labels,
    their counts and the boosts, never on arrival order, which is what makes merged
    reservoirs equal to one pass over the whole stream.

    Attributes:
        min_capacity: floor for every label (the seed design: a few hundred).
        max_capacity: ceiling for an ordinary label (the seed design: 2,000).
        boost_capacity: ceiling for a boosted label (the seed design: up to ~5,000).
        global_cap: hard bound on the total number of retained items.
        max_labels: most distinct labels ever admitted; bounds memory.
        on_overflow: ``"error"`` raises :class:`LabelOverflowError` for a label beyond
            ``max_labels``; ``"label"`` maps it to ``overflow_label``.
        overflow_label: name of the catch-all label used by ``on_overflow="label"``.
        per_label: optional ``{label: (min, max)}`` overrides.
        substrata: the sub-strata grid's :attr:`~sampler.strata.Grid.spec` (``""``: off).
            Labels are then split into sub-strata (:mod:`sampler.strata`): every
            bound above applies to a label, whose capacity is water-filled over its
            cells; ``max_labels`` then counts strata (label, cell), and ``global_cap``
            must hold ``max_labels`` more items than the floors (one per stratum).
    """

    min_capacity: int = 200
    max_capacity: int = 2_000
    boost_capacity: int = 5_000
    global_cap: int = 100_000
    max_labels: int = 256
    on_overflow: Literal["error", "label"] = "error"
    overflow_label: str = "__overflow__"
    per_label: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    substrata: str = ""

    def __post_init__(self) -> None:
        def need(name: str, value: object, low: int) -> None:
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"QuotaPolicy.{name} must be an integer >= {low}, got {value!r}")

        need("min_capacity", self.min_capacity, 1)
        need("max_capacity", self.max_capacity, 1)
        need("boost_capacity", self.boost_capacity, 1)
        need("global_cap", self.global_cap, 1)
        need("max_labels", self.max_labels, 1)
        if self.min_capacity > self.max_capacity:
            raise ConfigError(
                f"QuotaPolicy.min_capacity ({self.min_capacity}) exceeds "
                f"max_capacity ({self.max_capacity})"
            )
        if self.boost_capacity < self.max_capacity:
            raise ConfigError(
                f"QuotaPolicy.boost_capacity ({self.boost_capacity}) is below "
                f"max_capacity ({self.max_capacity})"
            )
        if not isinstance(self.substrata, str):
            raise ConfigError(
                f"QuotaPolicy.substrata must be a grid spec ('' = off), got {self.substrata!r}"
            )
        if self.on_overflow not in ("error", "label"):
            raise ConfigError(
                f"QuotaPolicy.on_overflow must be 'error' or 'label', got {self.on_overflow!r}"
            )
        for name, bounds in self.per_label.items():
            if (
                not isinstance(bounds, tuple | list)
                or len(bounds) != 2
                or not all(isinstance(b, int) and b >= 1 for b in bounds)
                or bounds[0] > bounds[1]
            ):
                raise ConfigError(
                    f"QuotaPolicy.per_label[{name!r}] must be (min, max) with 1 <= min <= max, "
                    f"got {bounds!r}"
                )
        floors = sum(b[0] for b in self.per_label.values())
        floors += (self.max_labels - len(self.per_label)) * self.min_capacity
        if self.substrata:  # one item per stratum besides its label's floor
            floors += self.max_labels
        if floors > self.global_cap:
            raise ConfigError(
                f"QuotaPolicy.global_cap ({self.global_cap}) cannot hold the floors of "
                f"max_labels={self.max_labels} labels ({floors}); raise global_cap or lower "
                f"min_capacity / max_labels"
            )

    def bounds(self, label: str, boosted: bool = False) -> tuple[int, int]:
        """(floor, ceiling) of one label."""
        low, high = self.per_label.get(label, (self.min_capacity, self.max_capacity))
        if boosted:
            high = max(high, self.boost_capacity)
        return low, high

    def allocate(
        self,
        labels: Iterable[str],
        boosted: Iterable[str] = (),
        demand: Mapping[str, int] | None = None,
    ) -> dict[str, int]:
        """Capacities for the given labels.

        Without ``demand``, capacities total at most ``global_cap``. With it, the
        retained total ``sum(min(demand, capacity))`` stays within ``global_cap``.
        """
        names = list(labels)
        if not names:
            return {}
        boost = set(boosted)
        b = np.array([self.bounds(n, n in boost) for n in names], dtype=np.int64)
        need = None if demand is None else np.array([demand.get(n, 0) for n in names], np.int64)
        caps = self.allocate_arrays(b[:, 0], b[:, 1], need)
        return dict(zip(names, caps.tolist(), strict=True))

    def allocate_arrays(
        self, low: np.ndarray, high: np.ndarray, demand: np.ndarray | None = None
    ) -> np.ndarray:
        """:meth:`allocate` on aligned arrays of floors, ceilings and demands."""
        return water_fill(low, high, demand, self.global_cap)

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "per_label"}
        d["per_label"] = {k: list(v) for k, v in self.per_label.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> QuotaPolicy:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"QuotaPolicy: unknown field(s) {sorted(unknown)}")
        d = dict(d)
        if "per_label" in d:
            d["per_label"] = {k: tuple(v) for k, v in d["per_label"].items()}
        return cls(**d)
