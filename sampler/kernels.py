"""Numba kernels behind :class:`sampler.LabelReservoirs`.

State layout (flat arrays, one segment per label)::

    per label l:  cap[l], off[l], fill[l], thr[l], tau[l], seen[l], seen_w[l], salt[l]
    per slot s:   prio[s], base[s], key[s], lab[s], ts[s], src[s]
    heap:         hp[off[l] : off[l] + fill[l]] is a min-heap of slot ids ordered by prio
    table:        open-addressing hash set of (label, key) -> slot + 1 (0 = empty),
                  linear probing with backward-shift deletion, size a power of two

``thr[l]`` is the priority of the heap root when the reservoir is full (else -inf), so a
rejected event costs one hash and one comparison. ``tau[l]`` is the largest priority
ever seen but not retained: it is the threshold that makes inclusion probabilities
(and Horvitz-Thompson weights) exact.

Every kernel has a pure-Python twin in :mod:`sampler.reference`; the test suite also
runs these kernels with ``NUMBA_DISABLE_JIT=1``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .hashing import _GOLDEN, draw_uniform, mix64

MODE_UNIFORM = 0
MODE_DECAYED = 1

STATUS_DONE = 0
STATUS_NEW_LABEL = 1
STATUS_BAD_LABEL = 2
STATUS_BAD_WEIGHT = 3
STATUS_BAD_TIMESTAMP = 4


@njit(cache=True, inline="always")
def _slot_hash(label, key):
    return mix64(key ^ (np.uint64(label) * _GOLDEN))


@njit(cache=True)
def table_find(tab, lab, key, label, k):
    """Table position holding (label, k), or -1."""
    mask = tab.shape[0] - 1
    i = np.int64(_slot_hash(label, k) & np.uint64(mask))
    while tab[i] != 0:
        s = tab[i] - 1
        if key[s] == k and lab[s] == label:
            return i
        i = (i + 1) & mask
    return -1


@njit(cache=True)
def table_insert(tab, lab, key, s):
    mask = tab.shape[0] - 1
    i = np.int64(_slot_hash(lab[s], key[s]) & np.uint64(mask))
    while tab[i] != 0:
        i = (i + 1) & mask
    tab[i] = s + 1


@njit(cache=True)
def table_delete(tab, lab, key, i):
    """Remove table position i, shifting back the entries of its probe run."""
    mask = tab.shape[0] - 1
    j = i
    while True:
        j = (j + 1) & mask
        if tab[j] == 0:
            break
        s = tab[j] - 1
        h = np.int64(_slot_hash(lab[s], key[s]) & np.uint64(mask))
        # entry j may move to hole i unless its home h lies cyclically in (i, j]
        stays = (i < h <= j) if i <= j else (h > i or h <= j)
        if stays:
            continue
        tab[i] = tab[j]
        i = j
    tab[i] = 0


@njit(cache=True, inline="always")
def _sift_up(hp, prio, o, pos):
    while pos > 0:
        parent = (pos - 1) >> 1
        a = hp[o + pos]
        b = hp[o + parent]
        if prio[a] < prio[b]:
            hp[o + pos] = b
            hp[o + parent] = a
            pos = parent
        else:
            break


@njit(cache=True, inline="always")
def _sift_down(hp, prio, o, n, pos):
    while True:
        left = 2 * pos + 1
        if left >= n:
            break
        child = left
        right = left + 1
        if right < n and prio[hp[o + right]] < prio[hp[o + left]]:
            child = right
        a = hp[o + pos]
        b = hp[o + child]
        if prio[b] < prio[a]:
            hp[o + pos] = b
            hp[o + child] = a
            pos = child
        else:
            break


# Decayed mode rejects most events without logarithms: for a label with threshold tau,
# an event is rejected when u <= U(x) = exp(-exp(-x)), x = tau - base. U(x) is cached per
# label at xcut = x - CUT_MARGIN and reused while xcut <= x <= xcut + CUT_REFRESH (tau
# grows; base grows with time, so the cache lasts CUT_MARGIN / lam seconds of stream
# time). The margin keeps the shortcut conservative under rounding: it never rejects an
# event the exact test keeps.
CUT_MARGIN = 1e-3
# ...and refreshed once tau has grown by more than this, so the cut stays tight.
CUT_REFRESH = 0.02


@njit(cache=True)
def update_kernel(
    labels, ts, ekeys, weights, has_w, start, mode, lam, t0,
    cap, off, fill, thr, tau, xcut, ucut, seen, seen_w, salt,
    hp, prio, base, key, lab, its, src, tab,
    ev_key, ev_lab, n_ev,
):  # fmt: skip
    """Process events ``start..n``; stop early with a status when the caller must act.

    Returns ``(position, status)``; on ``STATUS_DONE`` position is ``n``. On any other
    status, nothing of event ``position`` has been applied, so the caller fixes the
    cause (registers the label) and calls again from ``position``.
    """
    n = labels.shape[0]
    L = cap.shape[0]
    ne = n_ev[0]
    for i in range(start, n):
        l = labels[i]
        if l < 0 or l >= L:
            n_ev[0] = ne
            return i, STATUS_BAD_LABEL
        c = cap[l]
        if c == 0:
            n_ev[0] = ne
            return i, STATUS_NEW_LABEL
        w = 1.0
        if has_w:
            w = weights[i]
            if not (w > 0.0 and w < np.inf):
                n_ev[0] = ne
                return i, STATUS_BAD_WEIGHT
        t = ts[i]
        if not (np.abs(t) < np.inf):
            n_ev[0] = ne
            return i, STATUS_BAD_TIMESTAMP
        k = ekeys[i]
        u = draw_uniform(k, salt[l])
        seen[l] += 1
        if has_w:
            seen_w[l] += w  # unweighted: the caller adds the seen-count delta once
        tl = tau[l]
        if mode == MODE_UNIFORM:
            if u <= tl:
                continue  # below a rejected priority, so below the threshold too
            p = u
            b = 0.0
        else:
            b = lam * (t - t0)
            if has_w:
                b += np.log(w)
            if tl > -np.inf:
                x = tl - b
                if x < xcut[l] or x > xcut[l] + CUT_REFRESH:
                    xcut[l] = x - CUT_MARGIN
                    ucut[l] = np.exp(-np.exp(-xcut[l]))
                if u <= ucut[l]:
                    continue
            p = b - np.log(-np.log(u))
        if p <= thr[l]:
            if p > tl:
                tau[l] = p
            continue
        if table_find(tab, lab, key, l, k) >= 0:
            continue  # replay of a retained event: idempotent
        o = off[l]
        f = fill[l]
        if f < c:
            s = o + f
        else:
            s = hp[o]
            if src[s] < 0:
                ev_key[ne] = key[s]
                ev_lab[ne] = l
                ne += 1
            if prio[s] > tau[l]:
                tau[l] = prio[s]
            table_delete(tab, lab, key, table_find(tab, lab, key, l, key[s]))
        prio[s] = p
        base[s] = b
        key[s] = k
        lab[s] = l
        its[s] = t
        src[s] = i
        table_insert(tab, lab, key, s)
        if f < c:
            hp[o + f] = s
            _sift_up(hp, prio, o, f)
            fill[l] = f + 1
            if f + 1 == c:
                thr[l] = prio[hp[o]]
        else:
            _sift_down(hp, prio, o, c, 0)
            thr[l] = prio[hp[o]]
    n_ev[0] = ne
    return n, STATUS_DONE


@njit(cache=True)
def unregistered_labels(labels, start, cap):
    """Distinct in-range label ids of ``labels[start:]`` whose capacity is still 0."""
    L = cap.shape[0]
    hit = np.zeros(L, dtype=np.bool_)
    for i in range(start, labels.shape[0]):
        l = labels[i]
        if 0 <= l < L and cap[l] == 0:
            hit[l] = True
    return np.flatnonzero(hit)


@njit(cache=True)
def build_table(lab, key, used, size):
    """A fresh hash table over the slots where ``used`` is true."""
    tab = np.zeros(size, dtype=np.int64)
    for s in range(lab.shape[0]):
        if used[s]:
            table_insert(tab, lab, key, s)
    return tab


@njit(cache=True)
def relayout_kernel(
    new_cap, off, fill, tau, prio, base, key, lab, its, src, ev_key, ev_lab, n_ev,
):  # fmt: skip
    """Move every label's items into a fresh layout with capacities ``new_cap``.

    Each segment comes out sorted by ascending priority (a valid min-heap). A label
    whose new capacity is below its fill keeps its top keys; the dropped pre-existing
    items are reported in ``ev_*`` and raise ``tau``.
    """
    L = new_cap.shape[0]
    new_off = np.zeros(L, dtype=np.int64)
    total = 0
    for l in range(L):
        new_off[l] = total
        total += new_cap[l]
    n_prio = np.empty(total, dtype=np.float64)
    n_base = np.empty(total, dtype=np.float64)
    n_key = np.zeros(total, dtype=np.uint64)
    n_lab = np.zeros(total, dtype=np.int32)
    n_ts = np.empty(total, dtype=np.float64)
    n_src = np.full(total, -1, dtype=np.int64)
    n_fill = np.zeros(L, dtype=np.int64)
    n_thr = np.full(L, -np.inf)
    ne = n_ev[0]
    for l in range(L):
        f = fill[l]
        o = off[l]
        if f == 0:
            continue
        order = np.argsort(prio[o : o + f], kind="mergesort")
        drop = f - new_cap[l]
        if drop < 0:
            drop = 0
        for j in range(drop):
            s = o + order[j]
            if src[s] < 0:
                ev_key[ne] = key[s]
                ev_lab[ne] = l
                ne += 1
            if prio[s] > tau[l]:
                tau[l] = prio[s]
        no = new_off[l]
        for j in range(drop, f):
            s = o + order[j]
            d = no + j - drop
            n_prio[d] = prio[s]
            n_base[d] = base[s]
            n_key[d] = key[s]
            n_lab[d] = lab[s]
            n_ts[d] = its[s]
            n_src[d] = src[s]
        n_fill[l] = f - drop
        if n_fill[l] == new_cap[l] and new_cap[l] > 0:
            n_thr[l] = n_prio[no]
    n_ev[0] = ne
    n_hp = np.arange(total).astype(np.int64)
    return new_off, n_fill, n_thr, n_hp, n_prio, n_base, n_key, n_lab, n_ts, n_src


@njit(cache=True)
def inclusion_kernel(mode, lab, base, tau):
    """P(item retained | threshold tau of its label) for every slot given."""
    out = np.empty(lab.shape[0], dtype=np.float64)
    for j in range(lab.shape[0]):
        t = tau[lab[j]]
        if mode == MODE_UNIFORM:
            out[j] = 1.0 - t if t > 0.0 else 1.0
        else:
            if t == -np.inf:
                out[j] = 1.0
            else:
                # P(base + Gumbel > tau) = 1 - exp(-exp(base - tau))
                out[j] = -np.expm1(-np.exp(base[j] - t))
    return out
