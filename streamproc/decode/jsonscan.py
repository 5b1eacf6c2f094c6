"""The JSON fast path: one numba pass over a whole batch of event messages.

The worker joins the values of a consumed batch into one buffer; :func:`scan_events`
walks it once and writes columns (timestamps, features, label/id/payload byte spans,
relabel flags) without creating a Python object per event. It only *accepts* what it is
sure of and flags everything else ``SLOW``: any message it flags is decoded again by
msgspec on its own (:mod:`streamproc.decoding`), which gives the exact reject reason.
So the fast path can only be stricter than the reference decoder, never looser, and
both produce the same values (tests compare them on generated and fuzzed messages).

What the fast path accepts:

* an object with the keys of :class:`~streamproc.events.RawEvent`, each at most once;
* ``label``/``labels``/``id`` strings of printable ASCII without escapes;
* numbers in JSON grammar; a number with at most 19 significant digits and a decimal
  exponent within ±22 whose digits fit in 53 bits is converted exactly (one correctly
  rounded IEEE multiply or divide of two exact doubles, Clinger's fast path); any other
  number is flagged ``HARD`` and converted by msgspec for the whole batch in one call;
* a ``payload`` that is valid JSON (UTF-8 checked in strings, at most 64 levels deep).
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

OK, SLOW, FRAME, OVERSIZED, TOMBSTONE = 0, 1, 2, 3, 4
MAX_DEPTH = 64

_POW10 = np.array([10.0**k for k in range(23)], dtype=np.float64)
_TWO53 = 1 << 53
_K_LABEL = tuple(b"label")
_K_LABELS = tuple(b"labels")
_K_FEATURES = tuple(b"features")
_K_PAYLOAD = tuple(b"payload")
_K_RELABEL = tuple(b"relabel")
_MAGIC = tuple(b"\x00SSF1")
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


def _pointer_to(kind):
    @intrinsic
    def cast(typingctx, addr):
        sig = types.CPointer(kind)(types.uintp)

        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], context.get_value_type(types.CPointer(kind)))

        return sig, codegen

    return cast


# Raw pointers for the scanners' inner helpers: numba reference-counts every array
# passed to a function (~10 ns of atomics per call), which dominated the scan when the
# helpers took arrays. Callers keep the arrays alive for the duration of the call.
u8_ptr = _pointer_to(types.uint8)
i64_ptr = _pointer_to(types.int64)

# keys, as bit positions in the "seen" mask
K_TS, K_LABEL, K_LABELS, K_FEATURES, K_ID, K_PAYLOAD, K_RELABEL = range(7)


@njit(cache=True)
def _ws(buf, i, end):
    while i < end:
        c = buf[i]
        if c == 32 or c == 10 or c == 13 or c == 9:
            i += 1
        else:
            break
    return i


@njit(cache=True)
def _same(buf, s, name):
    for k in range(len(name)):
        if buf[s + k] != name[k]:
            return False
    return True


@njit(cache=True)
def _key_id(buf, s, e):
    n = e - s
    if n == 2:
        if buf[s] == 116 and buf[s + 1] == 115:  # ts
            return K_TS
        if buf[s] == 105 and buf[s + 1] == 100:  # id
            return K_ID
    elif n == 5 and _same(buf, s, _K_LABEL):
        return K_LABEL
    elif n == 6 and _same(buf, s, _K_LABELS):
        return K_LABELS
    elif n == 8 and _same(buf, s, _K_FEATURES):
        return K_FEATURES
    elif n == 7:
        if _same(buf, s, _K_PAYLOAD):
            return K_PAYLOAD
        if _same(buf, s, _K_RELABEL):
            return K_RELABEL
    return -1


@njit(cache=True)
def _plain_string(buf, i, end):
    """At an opening quote: index of the closing quote of a printable-ASCII string
    without escapes, or -1."""
    j = i + 1
    while j < end:
        c = buf[j]
        if c == 34:
            return j
        if c < 32 or c > 126 or c == 92:
            return -1
        j += 1
    return -1


@njit(cache=True)
def _hex(c):
    return (48 <= c <= 57) or (65 <= c <= 70) or (97 <= c <= 102)


@njit(cache=True)
def _string(buf, i, end):
    """At an opening quote: index after the closing quote of any valid JSON string
    (escapes checked, UTF-8 checked, no surrogate escapes), or -1."""
    j = i + 1
    while j < end:
        c = buf[j]
        if c == 34:
            return j + 1
        if c == 92:
            if j + 1 >= end:
                return -1
            d = buf[j + 1]
            if d == 117:  # \uXXXX, surrogates left to the reference decoder
                if j + 5 >= end:
                    return -1
                for k in range(2, 6):
                    if not _hex(buf[j + k]):
                        return -1
                if buf[j + 2] in (68, 100) and buf[j + 3] in (56, 57, 65, 66, 97, 98, 67, 99):
                    return -1  # \uD8xx..\uDFxx
                if buf[j + 2] in (68, 100) and buf[j + 3] in (68, 69, 70, 100, 101, 102):
                    return -1
                j += 6
            elif d in (34, 92, 47, 98, 102, 110, 114, 116):
                j += 2
            else:
                return -1
        elif c < 32:
            return -1
        elif c < 128:
            j += 1
        else:  # UTF-8: well formed, shortest form, no surrogates, <= U+10FFFF
            if 0xC2 <= c <= 0xDF:
                n, lo, hi = 1, 0x80, 0xBF
            elif c == 0xE0:
                n, lo, hi = 2, 0xA0, 0xBF
            elif c == 0xED:
                n, lo, hi = 2, 0x80, 0x9F
            elif 0xE1 <= c <= 0xEF:
                n, lo, hi = 2, 0x80, 0xBF
            elif c == 0xF0:
                n, lo, hi = 3, 0x90, 0xBF
            elif 0xF1 <= c <= 0xF3:
                n, lo, hi = 3, 0x80, 0xBF
            elif c == 0xF4:
                n, lo, hi = 3, 0x80, 0x8F
            else:
                return -1
            if j + n >= end:
                return -1
            if not lo <= buf[j + 1] <= hi:
                return -1
            for k in range(2, n + 1):
                if not 0x80 <= buf[j + k] <= 0xBF:
                    return -1
            j += n + 1
    return -1


@njit(cache=True)
def _number(buf, i, end):
    """Parse a JSON number at ``i``: (index after it, state, mantissa, decimal exponent).
    state 0: the value is exactly ``mantissa * 10**exponent`` with a signed mantissa of at
    most 53 bits and ``|exponent| <= 22`` (see :func:`exact_values`); 1: valid, left to
    msgspec (HARD); -1: not a JSON number."""
    j = i
    neg = False
    if j < end and buf[j] == 45:
        neg = True
        j += 1
    if j >= end or not 48 <= buf[j] <= 57:
        return j, -1, 0, 0
    mant = 0
    nd = 0
    dexp = 0
    hard = False
    if buf[j] == 48:
        j += 1
        if j < end and 48 <= buf[j] <= 57:
            return j, -1, 0, 0  # leading zero
    else:
        while j < end:
            d = np.int64(buf[j]) - 48
            if d < 0 or d > 9:
                break
            if nd < 18:
                mant = mant * 10 + d
                nd += 1
            else:
                hard = True
            j += 1
    if j < end and buf[j] == 46:
        j += 1
        if j >= end or not 48 <= buf[j] <= 57:
            return j, -1, 0, 0
        while j < end:
            d = np.int64(buf[j]) - 48
            if d < 0 or d > 9:
                break
            if nd == 0 and d == 0:
                dexp -= 1
            elif nd < 18:
                mant = mant * 10 + d
                nd += 1
                dexp -= 1
            else:
                hard = True
            j += 1
    if j < end and (buf[j] == 101 or buf[j] == 69):
        j += 1
        eneg = False
        if j < end and (buf[j] == 43 or buf[j] == 45):
            eneg = buf[j] == 45
            j += 1
        if j >= end or not 48 <= buf[j] <= 57:
            return j, -1, 0, 0
        ev = 0
        while j < end and 48 <= buf[j] <= 57:
            if ev < 100_000:
                ev = ev * 10 + (np.int64(buf[j]) - 48)
            j += 1
        dexp += -ev if eneg else ev
    if hard or mant > _TWO53 or dexp < -22 or dexp > 22 or (mant == 0 and neg):
        return j, 1, 0, 0
    return j, 0, -mant if neg else mant, dexp


def exact_values(mant: np.ndarray, dexp: np.ndarray) -> np.ndarray:
    """float64 of ``mant * 10**dexp`` for the state-0 numbers of :func:`_number`: one
    correctly rounded multiply or divide of two exactly representable doubles (Clinger's
    fast path), so the result is the correctly rounded value, as msgspec's."""
    v = mant.astype(np.float64)
    up = dexp >= 0
    return np.where(up, v * _POW10[np.where(up, dexp, 0)], v / _POW10[np.where(up, 0, -dexp)])


@njit(cache=True)
def _literal(buf, i, end, a, b, c, d):
    return i + 3 < end and buf[i] == a and buf[i + 1] == b and buf[i + 2] == c and buf[i + 3] == d


@njit(cache=True)
def _member_key(buf, i, end):
    """At an object member: index after its ``"key" :``, or -1."""
    if i >= end or buf[i] != 34:
        return -1
    i = _string(buf, i, end)
    if i < 0:
        return -1
    i = _ws(buf, i, end)
    if i >= end or buf[i] != 58:
        return -1
    return i + 1


@njit(cache=True)
def skip_value(buf, i, end, stack):
    """Index after the JSON value at ``buf[i]`` (any kind, validated), or -1. ``buf`` and
    ``stack`` (MAX_DEPTH bytes of scratch) are pointers (:data:`u8_ptr`)."""
    depth = 0
    while True:
        i = _ws(buf, i, end)
        if i >= end:
            return -1
        c = buf[i]
        opened = False
        if c == 123 or c == 91:  # { [
            close = 125 if c == 123 else 93
            i = _ws(buf, i + 1, end)
            if i < end and buf[i] == close:
                i += 1
            else:
                if depth == MAX_DEPTH:
                    return -1
                stack[depth] = c
                depth += 1
                opened = True
                if c == 123:  # first key
                    i = _member_key(buf, i, end)
                    if i < 0:
                        return -1
        elif c == 34:
            i = _string(buf, i, end)
            if i < 0:
                return -1
        elif c == 45 or 48 <= c <= 57:
            i, state, _, _ = _number(buf, i, end)
            if state < 0:
                return -1
        elif _literal(buf, i, end, 116, 114, 117, 101):  # true
            i += 4
        elif _literal(buf, i, end, 110, 117, 108, 108):  # null
            i += 4
        elif i + 4 < end and _literal(buf, i, end, 102, 97, 108, 115) and buf[i + 4] == 101:
            i += 5
        else:
            return -1
        if opened:
            continue
        while True:  # a value is complete: close containers, or find the next value
            if depth == 0:
                return i
            i = _ws(buf, i, end)
            if i >= end:
                return -1
            c = buf[i]
            top = stack[depth - 1]
            if c == 44:  # ,
                i = _ws(buf, i + 1, end)
                if top == 123:
                    i = _member_key(buf, i, end)
                    if i < 0:
                        return -1
                break
            if (c == 125 and top == 123) or (c == 93 and top == 91):
                depth -= 1
                i += 1
            else:
                return -1
