"""Per-label reservoirs: independent bottom-k samples per label under a quota policy.

Every event draws a deterministic priority from ``hash(event key, label, seed)``:

* ``mode="uniform"``: priority ``u ~ U(0, 1)``; each label keeps its top-``k`` priorities,
  a uniform sample without replacement (a keyed form of reservoir sampling).
* ``mode="decayed"``: Efraimidis-Spirakis weighted sampling with weight
  ``w * exp(lam * t)``, ``lam = ln 2 / half_life``, in log space: the top-``k`` of
  ``u ** (1 / w)`` is the top-``k`` of ``lam * t + log w + Gumbel(u)``, which never
  overflows however large ``t`` grows.

Because priorities are pure functions of the input, replays are idempotent, results are
identical on any machine, and reservoirs built on disjoint parts of a stream merge into
exactly the reservoir of the whole stream.

>>> import numpy as np
>>> from sampler import LabelReservoirs, QuotaPolicy
>>> res = LabelReservoirs(QuotaPolicy(min_capacity=10, max_capacity=100, global_cap=5_000,
...                                   max_labels=8), seed=7)
>>> labels = res.encode(["cat", "dog", "dog", "eel"] * 1_000)
>>> out = res.update(labels, np.arange(4_000.0), np.arange(4_000, dtype=np.uint64))
>>> res.seen_counts()
{'cat': 1000, 'dog': 2000, 'eel': 1000}
>>> res.retained_counts()
{'cat': 100, 'dog': 100, 'eel': 100}
>>> again = res.update(labels, np.arange(4_000.0), np.arange(4_000, dtype=np.uint64))
>>> len(again.admitted)   # replaying the batch admits nothing new
0
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from . import kernels as K
from .errors import ConfigError, InputError, LabelOverflowError
from .hashing import name_salt
from .merge import merge_reservoirs
from .quota import QuotaPolicy
from .serialization import dump, load
from .strata import group_of, water_fill


@dataclass(frozen=True)
class UpdateResult:
    """What one ``update`` changed, net of items admitted and evicted in the same batch.

    ``admitted`` holds batch indices (ascending) of events now retained. ``evicted_labels``
    / ``evicted_keys`` name items retained *before* the batch that are gone now. A payload
    store applies the evictions first, then stores the admitted events.
    """

    admitted: np.ndarray
    evicted_labels: np.ndarray
    evicted_keys: np.ndarray


@dataclass(frozen=True)
class RetainedItems:
    """Columns of all retained items, ordered by label id then ascending priority."""

    labels: np.ndarray  # int32 label ids
    keys: np.ndarray  # uint64 event keys
    timestamps: np.ndarray  # float64
    priorities: np.ndarray  # float64
    inclusion: np.ndarray  # float64 inclusion probability given the label's threshold

    @property
    def ht_weights(self) -> np.ndarray:
        """Horvitz-Thompson weights ``1 / inclusion``: sum per label estimates its count."""
        return 1.0 / self.inclusion


class LabelReservoirs:
    """Per-label bottom-k reservoirs with quotas, time decay and exact merging."""

    def __init__(
        self,
        policy: QuotaPolicy | None = None,
        mode: Literal["uniform", "decayed"] = "uniform",
        half_life: float | None = None,
        seed: int = 0,
        time_origin: float = 0.0,
    ) -> None:
        self.policy = policy or QuotaPolicy()
        if mode not in ("uniform", "decayed"):
            raise ConfigError(f"LabelReservoirs.mode must be 'uniform' or 'decayed', got {mode!r}")
        if mode == "decayed":
            if half_life is None or not (half_life > 0 and math.isfinite(half_life)):
                raise ConfigError(
                    f"LabelReservoirs.half_life must be a positive number of seconds in "
                    f"decayed mode, got {half_life!r}"
                )
        elif half_life is not None:
            raise ConfigError("LabelReservoirs.half_life applies only to mode='decayed'")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
            raise ConfigError(
                f"LabelReservoirs.seed must be an integer in [0, 2**64), got {seed!r}"
            )
        if not math.isfinite(time_origin):
            raise ConfigError(f"LabelReservoirs.time_origin must be finite, got {time_origin!r}")
        self.mode = mode
        self.half_life = half_life
        self.seed = seed
        self.time_origin = float(time_origin)
        self._mode_code = K.MODE_UNIFORM if mode == "uniform" else K.MODE_DECAYED
        self._lam = math.log(2.0) / half_life if half_life else 0.0
        self.names: list[str | None] = [None] * self.policy.max_labels
        self._ids: dict[str, int] = {}
        self.boosted: set[str] = set()
        L = self.policy.max_labels
        self._cap = np.zeros(L, dtype=np.int64)
        self._fill = np.zeros(L, dtype=np.int64)
        self._tau = np.full(L, 0.0 if mode == "uniform" else -np.inf)
        self._seen = np.zeros(L, dtype=np.int64)
        self._seen_w = np.zeros(L, dtype=np.float64)
        self._salt = np.zeros(L, dtype=np.uint64)  # per label id, from its name (_set_name)
        self._off = np.zeros(L, dtype=np.int64)
        self._thr = np.full(L, -np.inf)
        self._xcut = np.full(L, np.inf)  # decayed-mode rejection cache (see kernels)
        self._ucut = np.zeros(L)
        self._hp = np.zeros(0, dtype=np.int64)
        self._prio = np.zeros(0)
        self._base = np.zeros(0)
        self._key = np.zeros(0, dtype=np.uint64)
        self._lab = np.zeros(0, dtype=np.int32)
        self._ts = np.zeros(0)
        self._src = np.zeros(0, dtype=np.int64)
        self._tab = np.zeros(8, dtype=np.int64)
        self._pending = _Evictions(0)

    # ------------------------------------------------------------------ labels
    def compatible_with(self, other: LabelReservoirs) -> bool:
        return (self.mode, self.half_life, self.seed, self.time_origin, self.policy) == (
            other.mode, other.half_life, other.seed, other.time_origin, other.policy,
        )  # fmt: skip

    @property
    def labels(self) -> list[str]:
        """Registered label names in id order."""
        return [n for n in self.names if n is not None]

    def label_id(self, name: str) -> int:
        """Id of a registered label; raises ``KeyError`` naming it otherwise."""
        try:
            return self._ids[name]
        except KeyError:
            raise KeyError(f"label {name!r} is not registered") from None

    def encode(self, names: Sequence[str]) -> np.ndarray:
        """Label ids (int32) for label names, registering unseen labels.

        Beyond ``policy.max_labels`` distinct labels, raises :class:`LabelOverflowError`
        or maps to ``policy.overflow_label``, as the policy says.
        """
        known = self._ids
        ids = [known.get(n, -1) for n in names]  # one dict lookup per name
        if -1 in ids:  # register unseen labels in order of first appearance
            for k, n in enumerate(names):
                if ids[k] == -1:
                    ids[k] = known.get(n, -1) if n in known else self._register(str(n))
        return np.array(ids, dtype=np.int32)

    def _register(self, name: str) -> int:
        if name in self._ids:
            return self._ids[name]
        free = [i for i, n in enumerate(self.names) if n is None]
        reserve = (
            1
            if self.policy.on_overflow == "label" and self.policy.overflow_label not in self._ids
            else 0
        )
        if len(free) <= reserve and name != self.policy.overflow_label:
            if self.policy.on_overflow == "error":
                raise LabelOverflowError(
                    f"label {name!r} would exceed QuotaPolicy.max_labels={self.policy.max_labels}"
                )
            return self._register(self.policy.overflow_label)
        return self._activate(free[0], name)

    def _set_name(self, lid: int, name: str) -> None:
        """Label id ``lid`` is ``name``; its draws are salted by the name, not the id."""
        self.names[lid] = name
        self._ids[name] = lid
        self._salt[lid] = np.uint64(name_salt(name, self.seed))

    def _activate(self, lid: int, name: str) -> int:
        self._set_name(lid, name)
        self._relayout(self._allocation())
        return lid

    def _activate_many(self, labels: np.ndarray) -> None:
        """Register every unseen label id of the rest of a batch with one relayout."""
        new = [int(i) for i in K.unregistered_labels(labels, 0, self._cap)]
        for lid in new:
            name = str(lid)
            if name in self._ids:
                raise InputError(
                    f"labels: id {lid} would be named {name!r}, already label id "
                    f"{self._ids[name]}; use encode() for named labels"
                )
            self._set_name(lid, name)
        self._relayout(self._allocation())

    def _allocation(self) -> np.ndarray:
        """Capacities water-filled on demand: the events each label has seen so far (with
        sub-strata: per label, then over the label's cells, :mod:`sampler.strata`)."""
        caps = np.zeros(self.policy.max_labels, dtype=np.int64)
        ids = np.array([i for i, n in enumerate(self.names) if n is not None], np.int64)
        if not ids.shape[0]:
            return caps
        if not self.policy.substrata:
            b = np.array(
                [self.policy.bounds(self.names[i], self.names[i] in self.boosted) for i in ids],
                dtype=np.int64,
            )
            caps[ids] = self.policy.allocate_arrays(b[:, 0], b[:, 1], self._seen[ids])
            return caps
        groups = sorted({group_of(self.names[i]) for i in ids})
        gi = np.searchsorted(groups, [group_of(self.names[i]) for i in ids])
        b = np.array([self.policy.bounds(g, g in self.boosted) for g in groups], np.int64)
        demand = np.bincount(gi, weights=self._seen[ids], minlength=len(groups)).astype(np.int64)
        # every stratum keeps at least one item: that headroom comes off the labels' share,
        # so the total stays within global_cap (QuotaPolicy checks that it fits)
        gcap = water_fill(b[:, 0], b[:, 1], demand, self.policy.global_cap - ids.shape[0])
        for g in range(len(groups)):
            m = ids[gi == g]
            total = int(gcap[g])
            one = np.ones(m.shape[0], np.int64)
            caps[m] = water_fill(one, np.full(m.shape[0], total), self._seen[m], total)
        return caps

    def _shrink_to_demand(self) -> None:
        """Apply the capacities of the counts seen so far (they only shrink: demand grows).

        A label holding no more than its new capacity keeps its slots (its items are
        contiguous, since it was never full); only when some label must give up items
        does the layout move (the evictions join the pending result).
        """
        used = int(np.minimum(self._seen, self._cap).sum())
        if used <= self.policy.global_cap and not self.policy.substrata:
            return  # the current level still fits, and a level never rises with demand
        new = self._allocation()
        if np.array_equal(new, self._cap):
            return
        if (self._fill > new).any() or (new > self._cap).any():
            self._relayout(new)
            return
        self._cap = new
        for lid in np.flatnonzero((self._fill == new) & (new > 0)):
            self._thr[lid] = self._prio[self._hp[self._off[lid]]]

    def boost(self, names: Iterable[str]) -> UpdateResult:
        """Raise the ceiling of labels that became scarce to ``policy.boost_capacity``.

        Other labels may shrink (keeping their top keys) to respect ``global_cap``; the
        returned result lists what that evicted. A raised capacity fills from new events.
        """
        return self._set_boost(set(self.boosted) | set(names))

    def unboost(self, names: Iterable[str]) -> UpdateResult:
        """Return labels to their ordinary ceiling (keeping their top keys)."""
        return self._set_boost(set(self.boosted) - set(names))

    def _set_boost(self, boosted: set[str]) -> UpdateResult:
        self.boosted = boosted
        self._relayout(self._allocation())
        return UpdateResult(np.zeros(0, np.int64), *self._take_evictions())

    def _take_evictions(self) -> tuple[np.ndarray, np.ndarray]:
        out = self._pending.result()
        self._pending.count[0] = 0  # the buffer is kept for the next batch
        return out

    # ------------------------------------------------------------------ layout
    def _relayout(self, new_cap: np.ndarray) -> None:
        """Apply new capacities; evictions accumulate until the next result reports them."""
        ev = self._pending
        ev.grow(int(self._fill.sum()))
        (self._off, self._fill, self._thr, self._hp, self._prio, self._base, self._key,
         self._lab, self._ts, self._src) = K.relayout_kernel(
            new_cap, self._off, self._fill, self._tau, self._prio, self._base, self._key,
            self._lab, self._ts, self._src, ev.keys, ev.labels, ev.count,
        )  # fmt: skip
        self._cap = new_cap.astype(np.int64)
        self._xcut[:] = np.inf
        self._rebuild_table()

    def _used_mask(self) -> np.ndarray:
        used = np.zeros(self._prio.shape[0], dtype=np.bool_)
        for l in np.flatnonzero(self._fill):
            used[self._off[l] : self._off[l] + self._fill[l]] = True
        return used

    def _rebuild_table(self) -> None:
        size = 8
        while size < 2 * max(1, self._prio.shape[0]) + 1:
            size *= 2
        self._tab = K.build_table(self._lab, self._key, self._used_mask(), size)

    # ------------------------------------------------------------------ update
    def update(
        self,
        labels: np.ndarray,
        timestamps: np.ndarray,
        event_keys: np.ndarray,
        weights: np.ndarray | None = None,
    ) -> UpdateResult:
        """Offer a batch of events; one numba call processes the whole batch.

        Args:
            labels: int label ids in ``[0, policy.max_labels)`` (see :meth:`encode`);
                unseen ids are registered on first sight.
            timestamps: event times in seconds (float64, finite).
            event_keys: 64-bit event keys (uint64); the event's random draw is a hash
                of (key, label, seed).
            weights: optional positive finite weights (multi-label splits, importance).
        """
        labels = _column("labels", labels, np.int32)
        n = labels.shape[0]
        timestamps = _column("timestamps", timestamps, np.float64, n)
        event_keys = _column("event_keys", event_keys, np.uint64, n)
        has_w = weights is not None
        w = _column("weights", weights, np.float64, n) if has_w else np.zeros(1)
        ev = self._pending
        seen_before = self._seen.copy()
        try:
            return self._run_update(labels, timestamps, event_keys, w, has_w, ev)
        finally:
            if not has_w:  # the kernel counts weights only for weighted batches
                self._seen_w += self._seen - seen_before

    def _run_update(self, labels, timestamps, event_keys, w, has_w, ev) -> UpdateResult:
        pos = 0
        while True:
            ev.grow(int(self._fill.sum()))
            pos, status = K.update_kernel(
                labels, timestamps, event_keys, w, has_w, pos, self._mode_code, self._lam,
                self.time_origin, self._cap, self._off, self._fill, self._thr, self._tau,
                self._xcut, self._ucut, self._seen, self._seen_w, self._salt, self._hp,
                self._prio, self._base, self._key, self._lab, self._ts, self._src, self._tab,
                ev.keys, ev.labels, ev.count,
            )  # fmt: skip
            if status == K.STATUS_DONE:
                break
            if status == K.STATUS_NEW_LABEL:
                self._activate_many(labels[pos:])
                continue
            # events before `pos` stay applied; the error carries what they changed
            self._shrink_to_demand()
            err = InputError(_status_message(status, pos, labels, timestamps, w))
            err.partial = UpdateResult(self._finish_batch(), *self._take_evictions())
            raise err
        # capacities follow the demand seen by the end of the batch (they only shrink)
        self._shrink_to_demand()
        admitted = self._finish_batch()
        return UpdateResult(admitted, *self._take_evictions())

    def _finish_batch(self) -> np.ndarray:
        mask = self._src >= 0
        admitted = np.sort(self._src[mask])
        self._src[mask] = -1
        return admitted

    def _raw_items(self) -> tuple[np.ndarray, ...]:
        """(label, key, prio, base, ts) of every retained item, in slot order."""
        used = self._used_mask()
        return self._lab[used], self._key[used], self._prio[used], self._base[used], self._ts[used]

    def _install_items(self, lab, key, prio, base, ts) -> None:
        """Replace all items (unique (label, key) pairs); capacities follow the policy."""
        order = np.lexsort((key, lab))
        lab, key = lab[order].astype(np.int32), key[order].astype(np.uint64)
        prio, base, ts = prio[order], base[order], ts[order]
        counts = np.bincount(lab, minlength=self.policy.max_labels).astype(np.int64)
        self._off = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        self._fill = counts
        self._lab, self._key, self._prio, self._base, self._ts = lab, key, prio, base, ts
        self._src = np.full(lab.shape[0], -1, dtype=np.int64)
        self._relayout(self._allocation())
        self._pending = _Evictions(0)

    def relabel(self, keys: np.ndarray, keep_labels: np.ndarray) -> UpdateResult:
        """Drop the retained copies of events ``keys`` under any label other than
        ``keep_labels`` (aligned with ``keys``): a corrected label replaces the old one.

        Returns the removed items as evictions. Rare by design (one relayout per call).
        """
        keep = dict(
            zip(
                np.asarray(keys, np.uint64).tolist(),
                np.asarray(keep_labels, np.int64).tolist(),
                strict=True,
            )
        )
        lab, key, prio, base, ts = self._raw_items()
        drop = np.fromiter(
            ((k in keep and keep[k] != l) for l, k in zip(lab.tolist(), key.tolist(), strict=True)),
            bool,
            lab.shape[0],
        )
        if not drop.any():
            return UpdateResult(
                np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.uint64)
            )
        removed = (lab[drop].copy(), key[drop].copy())
        k = ~drop
        self._install_items(lab[k], key[k], prio[k], base[k], ts[k])
        return UpdateResult(np.zeros(0, np.int64), *removed)

    # ------------------------------------------------------------------ queries
    def seen_counts(self) -> dict[str, int]:
        return {n: int(self._seen[i]) for i, n in enumerate(self.names) if n is not None}

    def seen_weights(self) -> dict[str, float]:
        return {n: float(self._seen_w[i]) for i, n in enumerate(self.names) if n is not None}

    def retained_counts(self) -> dict[str, int]:
        return {n: int(self._fill[i]) for i, n in enumerate(self.names) if n is not None}

    def capacities(self) -> dict[str, int]:
        return {n: int(self._cap[i]) for i, n in enumerate(self.names) if n is not None}

    def thresholds(self) -> dict[str, float]:
        """Per label, the largest priority seen but not retained (``tau``)."""
        return {n: float(self._tau[i]) for i, n in enumerate(self.names) if n is not None}

    def items(self) -> RetainedItems:
        """All retained items in canonical order (label id, then ascending priority)."""
        used = self._used_mask()
        lab, key, pr = self._lab[used], self._key[used], self._prio[used]
        order = np.lexsort((key, pr, lab))
        lab, key, pr = lab[order], key[order], pr[order]
        base, ts = self._base[used][order], self._ts[used][order]
        incl = K.inclusion_kernel(self._mode_code, lab, base, self._tau)
        return RetainedItems(lab, key, ts, pr, incl)

    def retained_keys(self, name: str) -> np.ndarray:
        """Sorted event keys retained for one label."""
        lid = self.label_id(name)
        o, f = self._off[lid], self._fill[lid]
        return np.sort(self._key[o : o + f])

    def inclusion_probabilities(self) -> dict[str, np.ndarray]:
        """Per label, inclusion probabilities aligned with :meth:`retained_keys`."""
        it = self.items()
        out = {}
        for name in self.labels:
            m = it.labels == self._ids[name]
            order = np.argsort(it.keys[m], kind="stable")
            out[name] = it.inclusion[m][order]
        return out

    # ------------------------------------------------------------------ merge
    def merge(self, other: LabelReservoirs) -> LabelReservoirs:
        """Reservoir of the union of two disjoint streams (exactly, key for key)."""
        return merge_reservoirs(self, other)

    # ------------------------------------------------------------------ bytes
    def to_bytes(self) -> bytes:
        return dump(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> LabelReservoirs:
        return load(data, cls)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelReservoirs) and self.to_bytes() == other.to_bytes()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"LabelReservoirs(mode={self.mode!r}, labels={len(self._ids)}, "
            f"retained={int(self._fill.sum())}, seen={int(self._seen.sum())})"
        )


class _Evictions:
    """Growable output buffer for evicted (label, key) pairs."""

    def __init__(self, size: int) -> None:
        self.keys = np.zeros(max(1, size), dtype=np.uint64)
        self.labels = np.zeros(max(1, size), dtype=np.int32)
        self.count = np.zeros(1, dtype=np.int64)

    def grow(self, need: int) -> None:
        n = int(self.count[0])
        if self.keys.shape[0] - n < need + 1:
            size = 2 * (n + need + 1)
            keys, labels = np.empty(size, np.uint64), np.empty(size, np.int32)
            keys[:n], labels[:n] = self.keys[:n], self.labels[:n]
            self.keys, self.labels = keys, labels

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        n = int(self.count[0])
        return self.labels[:n].copy(), self.keys[:n].copy()


def _column(name: str, a: object, dtype: type, n: int | None = None) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise InputError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise InputError(f"{name}: length {arr.shape[0]} differs from labels' length {n}")
    if arr.dtype != dtype:
        kind = np.dtype(dtype).kind
        if kind in "iu" and arr.size and arr.dtype.kind not in "iu":
            raise InputError(f"{name}: expected integers, got dtype {arr.dtype}")
        if kind in "iu" and arr.dtype.kind == "i" and arr.size and arr.min() < 0 and kind == "u":
            raise InputError(f"{name}: negative value at index {int(np.argmin(arr))}")
        arr = arr.astype(dtype)
    return np.ascontiguousarray(arr)


def _status_message(status: int, i: int, labels, ts, w) -> str:
    if status == K.STATUS_BAD_LABEL:
        return f"labels[{i}] = {int(labels[i])} is outside [0, max_labels)"
    if status == K.STATUS_BAD_WEIGHT:
        return f"weights[{i}] = {float(w[i])!r} is not a positive finite number"
    return f"timestamps[{i}] = {float(ts[i])!r} is not finite"
