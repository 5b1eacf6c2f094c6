"""Record columns -> Arrow columns, without one Python object per record.

A record's fixed head is read for all rows in one ``np.frombuffer``; ids and payloads
become Arrow strings over their packed buffers and offsets; the label lists
(``(u16 length, UTF-8) x n`` per record) are split by one numba pass.

>>> import numpy as np
>>> from streamproc.state.records import RecordColumns, encode_records
>>> recs = encode_records(np.array([1.0, 2.0]), np.array([5, 6]), 3,
...                       np.ones((2, 2), np.float32), [["a"], ["b", "c"]], ["e1", "e2"],
...                       [b"{}", b"[1]"])
>>> cols = record_arrays(RecordColumns.from_records(recs))
>>> cols["labels"].to_pylist(), cols["offset"].tolist(), cols["payload"].to_pylist()
([['a'], ['b', 'c']], [5, 6], ['{}', '[1]'])
"""

from __future__ import annotations

import numpy as np
from numba import njit

from stratastream.errors import StateError
from streamproc.state.records import RecordColumns, fixed_dtype


@njit(cache=True, nogil=True)
def _split_labels(data, offsets, counts, out, str_offsets, list_offsets):  # pragma: no cover
    """Strip the u16 length prefixes of every label: ``out`` gets the UTF-8 bytes back to
    back, ``str_offsets`` their bounds, ``list_offsets`` each record's first label.
    Returns the number of bytes written, or -1 - i when record i is malformed."""
    w = 0
    s = 0
    str_offsets[0] = 0
    for i in range(counts.shape[0]):
        list_offsets[i] = s
        p, end = offsets[i], offsets[i + 1]
        for _ in range(counts[i]):
            if p + 2 > end:
                return -1 - i
            n = data[p] | (np.int64(data[p + 1]) << 8)
            p += 2
            if p + n > end:
                return -1 - i
            out[w : w + n] = data[p : p + n]
            w += n
            p += n
            s += 1
            str_offsets[s] = w
        if p != end:
            return -1 - i
    list_offsets[counts.shape[0]] = s
    return w


def _u8(buf) -> np.ndarray:
    return np.frombuffer(buf, np.uint8) if len(buf) else np.zeros(1, np.uint8)


def _strings(packed, name: str):
    import pyarrow as pa

    n = len(packed.offsets) - 1
    if packed.offsets[-1] >= 2**31:
        raise StateError(f"snapshot: {name} column over 2 GiB")
    arr = pa.StringArray.from_buffers(
        n, pa.py_buffer(packed.offsets.astype(np.int32)), pa.py_buffer(bytes(packed.data))
    )
    try:
        arr.validate(full=True)  # UTF-8
    except pa.ArrowInvalid as e:
        raise StateError(f"snapshot: {name} column is not UTF-8 ({e})") from None
    return arr


def record_arrays(records: RecordColumns) -> dict:
    """The columns of ``records``: numpy arrays for the fixed fields, Arrow arrays for
    the variable ones (``labels`` list<string>, ``id`` and ``payload`` strings)."""
    import pyarrow as pa

    heads, labels, ids, payloads = records.columns()
    n = len(heads.offsets) - 1
    if n == 0:
        dim = 0
        fixed = np.zeros(0, fixed_dtype(0))
    else:
        width = int(heads.offsets[1] - heads.offsets[0])
        dim = (width - fixed_dtype(0).itemsize) // 4
        if width <= 0 or heads.offsets[-1] != n * width:
            raise StateError("snapshot: records of different feature widths in one snapshot")
        fixed = np.frombuffer(bytes(heads.data), fixed_dtype(dim), n)
        if (fixed["magic"] != b"R1").any():
            raise StateError("snapshot: a payload record has an unknown format")
    counts = fixed["labels"].astype(np.int64)
    out = np.empty(max(1, len(labels.data)), np.uint8)
    str_offsets = np.zeros(int(counts.sum()) + 1, np.int32)
    list_offsets = np.zeros(n + 1, np.int32)
    w = _split_labels(_u8(labels.data), labels.offsets, counts, out, str_offsets, list_offsets)
    if w < 0:
        raise StateError(f"snapshot: label list of record {-1 - w} is malformed")
    strs = pa.StringArray.from_buffers(
        len(str_offsets) - 1, pa.py_buffer(str_offsets), pa.py_buffer(out[:w].tobytes())
    )
    strs.validate(full=True)
    return {
        "ts": fixed["ts"].astype(np.float64),
        "offset": fixed["offset"].astype(np.int64),
        "partition": fixed["partition"].astype(np.int32),
        "features": np.ascontiguousarray(fixed["features"], np.float32).reshape(n, dim),
        "labels": pa.ListArray.from_arrays(pa.array(list_offsets), strs),
        "id": _strings(ids, "id"),
        "payload": _strings(payloads, "payload"),
    }
