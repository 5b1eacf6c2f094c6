"""Exact merge of two :class:`LabelReservoirs` built on disjoint parts of a stream.

Each label's merged reservoir is the top-``k`` (by priority) of the union of the two
inputs' items, where ``k`` is the policy's capacity for the merged label set. Since every
input retained its own top keys with a capacity at least as large (fewer labels, never a
smaller share), this equals one pass over the whole stream, key for key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .errors import LabelOverflowError, StateError

if TYPE_CHECKING:
    from .reservoirs import LabelReservoirs


def merge_reservoirs(a: LabelReservoirs, b: LabelReservoirs) -> LabelReservoirs:
    if not a.compatible_with(b):
        raise StateError(
            "merge: reservoirs differ in mode, half_life, seed, time_origin or policy "
            f"({a.mode}/{a.half_life}/{a.seed} vs {b.mode}/{b.half_life}/{b.seed})"
        )
    out = type(a)(a.policy, a.mode, a.half_life, a.seed, a.time_origin)  # no import cycle
    L = a.policy.max_labels
    for lid, name in enumerate(a.names):
        if name is not None:
            out._set_name(lid, name)
    remap = np.zeros(L, dtype=np.int32)
    for lid, name in enumerate(b.names):
        if name is not None:
            remap[lid] = _slot(out, name)
    out.boosted = set(a.boosted) | set(b.boosted)
    bl = np.array([lid for lid, n in enumerate(b.names) if n is not None], dtype=np.int64)
    out._seen[:] = a._seen
    out._seen_w[:] = a._seen_w
    out._tau[:] = a._tau
    np.add.at(out._seen, remap[bl], b._seen[bl])
    np.add.at(out._seen_w, remap[bl], b._seen_w[bl])
    out._tau[remap[bl]] = np.maximum(out._tau[remap[bl]], b._tau[bl])

    la, ka, pa, ba, ta = a._raw_items()
    lb, kb, pb, bb, tb = b._raw_items()
    lab = np.concatenate([la, remap[lb]])
    key = np.concatenate([ka, kb])
    prio, base, ts = np.concatenate([pa, pb]), np.concatenate([ba, bb]), np.concatenate([ta, tb])
    # an item in both inputs (same label and key) has the same priority: keep one
    order = np.lexsort((key, lab))
    keep = np.ones(order.shape[0], dtype=bool)
    keep[1:] = (lab[order][1:] != lab[order][:-1]) | (key[order][1:] != key[order][:-1])
    sel = order[keep]
    out._install_items(lab[sel], key[sel], prio[sel], base[sel], ts[sel])
    return out


def _slot(out: LabelReservoirs, name: str) -> int:
    """The label id of ``name`` in the merged reservoirs, registering it; beyond
    ``max_labels`` the overflow policy applies, as it does in one pass: ``label`` folds the
    label into ``policy.overflow_label`` (its items and seen counts join that label's; their
    draws keep the priorities they had, so within the overflow label the sample is
    approximate), ``error`` raises :class:`LabelOverflowError`."""
    if name in out._ids:
        return out._ids[name]
    policy = out.policy
    free = [i for i, n in enumerate(out.names) if n is None]
    overflow = policy.overflow_label
    reserve = 1 if policy.on_overflow == "label" and overflow not in out._ids else 0
    if len(free) <= reserve and name != overflow:
        if policy.on_overflow == "error":
            raise LabelOverflowError(
                f"merge: label {name!r} exceeds QuotaPolicy.max_labels={policy.max_labels} "
                "in the union"
            )
        return _slot(out, overflow)
    out._set_name(free[0], name)
    return free[0]
