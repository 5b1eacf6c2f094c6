"""Batch kernels of the JSON fast path: event messages -> columns (see :mod:`.jsonscan`).

:func:`scan_events` fills per-message columns and a status (``OK``, ``SLOW``, ``FRAME``,
``OVERSIZED``, ``TOMBSTONE``); :func:`label_codes` turns label byte spans into codes of a
batch vocabulary; :func:`gather_numbers` writes the numbers left to msgspec (``HARD``)
as one JSON array.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.typed import Dict

from streamproc.decode.jsonscan import (
    _FNV_OFFSET,
    _FNV_PRIME,
    _MAGIC,
    FRAME,
    K_FEATURES,
    K_ID,
    K_LABEL,
    K_LABELS,
    K_PAYLOAD,
    K_RELABEL,
    K_TS,
    MAX_DEPTH,
    OK,
    OVERSIZED,
    SLOW,
    TOMBSTONE,
    _key_id,
    _literal,
    _number,
    _plain_string,
    _ws,
    i64_ptr,
    skip_value,
    u8_ptr,
)


@njit(cache=True)
def _is_frame(buf, s, e):
    """A columnar message: our frame (``\\x00SSF1``) or an Arrow IPC stream (a 0xFFFFFFFF
    continuation marker) or file (``ARROW1``); JSON never starts with these bytes."""
    if e - s >= 4 and buf[s] == 0xFF and buf[s + 1] == 0xFF and buf[s + 2] == 0xFF:
        return buf[s + 3] == 0xFF
    if e - s >= 6 and buf[s] == 65 and buf[s + 1] == 82 and buf[s + 2] == 82:  # "ARR"
        return buf[s + 3] == 79 and buf[s + 4] == 87 and buf[s + 5] == 49  # "OW1"
    if e - s < len(_MAGIC):
        return False
    for k in range(len(_MAGIC)):
        if buf[s + k] != _MAGIC[k]:
            return False
    return True


# columns of the per-message output of scan_events (then f_m, f_e, lab_s, lab_e blocks)
C_TS_M, C_TS_E, C_LAB_N, C_ID_S, C_ID_E, C_PAY_S, C_PAY_E, C_RELABEL, C_FIXED = range(9)


def out_width(dim: int, cap: int) -> int:
    return C_FIXED + 2 * dim + 2 * cap


@njit(cache=True, nogil=True)
def scan_events(buf, starts, ends, tomb, aside, max_bytes, dim, cap, status, out, hard):
    """Scan messages ``buf[starts[m]:ends[m]]`` into ``out[m]`` (see the C_* columns) and
    ``status[m]`` (``aside``: frames kept out of ``buf``); HARD numbers go to ``hard``
    rows (message, slot, start, end), slot 0 = ts, 1 + j = feature j. Returns the number
    of HARD numbers. ``out`` and ``hard`` must be C-contiguous int64."""
    stack_arr = np.zeros(MAX_DEPTH, np.uint8)
    # raw pointers into arrays this frame keeps alive (see jsonscan.u8_ptr)
    p = u8_ptr(buf.ctypes.data)
    stack = u8_ptr(stack_arr.ctypes.data)
    hard_p = i64_ptr(hard.ctypes.data)
    width = out.shape[1]
    nhard = 0
    for m in range(starts.shape[0]):
        s, end = starts[m], ends[m]
        if tomb[m]:
            status[m] = TOMBSTONE
            continue
        if aside[m] or _is_frame(p, s, end):
            status[m] = FRAME
            continue
        if end - s > max_bytes:
            status[m] = OVERSIZED
            continue
        row = i64_ptr(out.ctypes.data + 8 * width * m)
        row[C_ID_S] = -1
        row[C_PAY_S] = -1
        row[C_LAB_N] = 0
        row[C_RELABEL] = 0
        st = _event(p, s, end, dim, cap, m, row, stack, hard_p, nhard)
        if st < 0:
            status[m] = SLOW
        else:
            status[m] = OK
            nhard = st
    return nhard


@njit(cache=True)
def _event(buf, i, end, dim, cap, m, row, stack, hard, nhard):
    """One message into ``row`` (a pointer to its out row); returns the new HARD count,
    or -1 when the message needs msgspec."""
    fm, fe = C_FIXED, C_FIXED + dim
    ls, le = C_FIXED + 2 * dim, C_FIXED + 2 * dim + cap
    i = _ws(buf, i, end)
    if i >= end or buf[i] != 123:
        return -1
    i = _ws(buf, i + 1, end)
    seen = 0
    nfeat = 0
    labels_null = True
    label_null = True
    while True:
        if i >= end or buf[i] != 34:
            return -1
        q = _plain_string(buf, i, end)
        if q < 0:
            return -1
        k = _key_id(buf, i + 1, q)
        if k < 0 or seen & (1 << k):
            return -1
        seen |= 1 << k
        i = _ws(buf, q + 1, end)
        if i >= end or buf[i] != 58:
            return -1
        i = _ws(buf, i + 1, end)
        if i >= end:
            return -1
        c = buf[i]
        if k == K_TS:
            j, state, mant, dexp = _number(buf, i, end)
            if state < 0:
                return -1
            row[C_TS_M], row[C_TS_E] = mant, dexp
            if state == 1:
                _hard(hard, nhard, m, 0, i, j)
                nhard += 1
            i = j
        elif k == K_FEATURES:
            if c != 91:
                return -1
            i = _ws(buf, i + 1, end)
            if i < end and buf[i] == 93:
                i += 1
            else:
                while True:
                    if nfeat >= dim:
                        return -1
                    j, state, mant, dexp = _number(buf, i, end)
                    if state < 0:
                        return -1
                    row[fm + nfeat], row[fe + nfeat] = mant, dexp
                    if state == 1:
                        _hard(hard, nhard, m, 1 + nfeat, i, j)
                        nhard += 1
                    nfeat += 1
                    i = _ws(buf, j, end)
                    if i < end and buf[i] == 44:
                        i = _ws(buf, i + 1, end)
                    elif i < end and buf[i] == 93:
                        i += 1
                        break
                    else:
                        return -1
        elif k == K_LABEL or k == K_ID:
            if _literal(buf, i, end, 110, 117, 108, 108):
                i += 4
            else:
                if c != 34:
                    return -1
                q = _plain_string(buf, i, end)
                if q < 0:
                    return -1
                if k == K_ID:
                    row[C_ID_S], row[C_ID_E] = i + 1, q
                else:
                    label_null = False
                    row[ls], row[le] = i + 1, q
                i = q + 1
        elif k == K_LABELS:
            if _literal(buf, i, end, 110, 117, 108, 108):
                i += 4
            else:
                if c != 91:
                    return -1
                labels_null = False
                n = 0
                i = _ws(buf, i + 1, end)
                if i < end and buf[i] == 93:
                    i += 1
                else:
                    while True:
                        if n >= cap or i >= end or buf[i] != 34:
                            return -1
                        q = _plain_string(buf, i, end)
                        if q < 0:
                            return -1
                        row[ls + n], row[le + n] = i + 1, q
                        n += 1
                        i = _ws(buf, q + 1, end)
                        if i < end and buf[i] == 44:
                            i = _ws(buf, i + 1, end)
                        elif i < end and buf[i] == 93:
                            i += 1
                            break
                        else:
                            return -1
                row[C_LAB_N] = n
        elif k == K_PAYLOAD:
            j = skip_value(buf, i, end, stack)
            if j < 0:
                return -1
            if not _literal(buf, i, end, 110, 117, 108, 108):  # null is the default
                row[C_PAY_S], row[C_PAY_E] = i, j
            i = j
        elif k == K_RELABEL:
            if _literal(buf, i, end, 116, 114, 117, 101):
                row[C_RELABEL] = 1
                i += 4
            elif i + 4 < end and _literal(buf, i, end, 102, 97, 108, 115) and buf[i + 4] == 101:
                i += 5
            else:
                return -1
        i = _ws(buf, i, end)
        if i < end and buf[i] == 44:
            i = _ws(buf, i + 1, end)
        elif i < end and buf[i] == 125:
            i = _ws(buf, i + 1, end)
            break
        else:
            return -1
    if i != end or not seen & (1 << K_TS) or nfeat != dim:
        return -1
    # the label rules of events.labels_of: label xor labels, 1..cap labels of 1..128
    # characters, not all blank (printable ASCII: blank means all spaces)
    if labels_null:
        if label_null:
            return -1
        row[C_LAB_N] = 1
    elif not label_null or row[C_LAB_N] == 0:
        return -1
    for k in range(row[C_LAB_N]):
        a, b = row[ls + k], row[le + k]
        if b - a < 1 or b - a > 128:
            return -1
        blank = True
        for j in range(a, b):
            if buf[j] != 32:
                blank = False
                break
        if blank:
            return -1
    return nhard


@njit(cache=True)
def _hard(hard, k, m, slot, s, e):
    hard[4 * k], hard[4 * k + 1], hard[4 * k + 2], hard[4 * k + 3] = m, slot, s, e


@njit(cache=True, nogil=True)
def label_codes(buf, status, lab_s, lab_e, lab_n, codes, ex_s, ex_e):
    """Codes of a batch vocabulary for the labels of OK rows; ``ex_s/ex_e`` receive one
    exemplar span per code. Returns the vocabulary size. A 64-bit hash collision between
    different labels (never seen in practice) sends the row to msgspec."""
    vocab = Dict.empty(key_type=types.uint64, value_type=types.int64)
    nv = 0
    for m in range(status.shape[0]):
        if status[m] != OK:
            continue
        for k in range(lab_n[m]):
            a, b = lab_s[m, k], lab_e[m, k]
            h = _FNV_OFFSET
            for j in range(a, b):
                h = (h ^ np.uint64(buf[j])) * _FNV_PRIME
            c = -1
            if h in vocab:
                c = vocab[h]
            if c < 0:
                c = nv
                vocab[h] = c
                ex_s[c], ex_e[c] = a, b
                nv += 1
            elif ex_e[c] - ex_s[c] != b - a or not _eq(buf, a, ex_s[c], b - a):
                status[m] = SLOW
                break
            codes[m, k] = c
    return nv


@njit(cache=True)
def _eq(buf, a, b, n):
    for j in range(n):
        if buf[a + j] != buf[b + j]:
            return False
    return True


@njit(cache=True)
def gather_numbers(buf, hard_s, hard_e, n, out):
    """``[n1,n2,...]`` of the HARD numbers' bytes into ``out``; returns its length."""
    p = 0
    out[p] = 91
    p += 1
    for k in range(n):
        if k:
            out[p] = 44
            p += 1
        for j in range(hard_s[k], hard_e[k]):
            out[p] = buf[j]
            p += 1
    out[p] = 93
    return p + 1
