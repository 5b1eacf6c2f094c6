"""Apache Arrow IPC record batches as frames: many events in one message, from any language.

A message that starts like an Arrow IPC stream (the ``0xFFFFFFFF`` continuation marker) or
an Arrow IPC file (``ARROW1``) is read with pyarrow, fully validated (untrusted buffers
never reach a kernel unchecked), and its columns become events:

=================  ===================================================================
``ts``             required: float or integer seconds, or an Arrow ``timestamp``
``label``          a string (or dictionary of strings) per row, or ...
``labels``         ... a list of strings per row (multi-label); exactly one of the two
``features``       a list (or fixed-size list) of ``feature_dim`` numbers per row, or
                   one numeric column per feature, named as ``feature_names`` (else
                   ``f0`` .. ``f<dim-1>``)
``id``             optional string: the event id (else the key derives from the
                   message's coordinates and the row index)
``payload``        optional string: the row's payload as JSON text
=================  ===================================================================

Any other column makes the whole message a dead letter that names it. Every check runs on
whole columns; a bad row (null label, wrong number of features, non-finite value, ...)
is dead-lettered with its row index while the good rows are kept, as for frames.

>>> import pyarrow as pa
>>> t = pa.table({"ts": [1.0, 2.0], "label": ["a", "b"], "features": [[0.0, 1.0], [2.0, 3.0]]})
>>> msg = arrow_message(t)
>>> msg[:4] == ARROW_STREAM
True
>>> from streamproc.decode.events import Limits
>>> rejects = []
>>> b = decode_arrow("events", 0, 7, msg, 10.0, Limits(feature_dim=2), None, rejects)
>>> b.primary_labels(), b.features.tolist(), rejects
(['a', 'b'], [[0.0, 1.0], [2.0, 3.0]], [])
"""

from __future__ import annotations

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from streamproc.decode.events import DecodedBatch, Limits, Reject
from streamproc.decode.frames import ARROW_FILE, ARROW_STREAM, FrameColumns, frame_batch

_KNOWN = {"ts", "label", "labels", "features", "id", "payload"}
_raw_list = msgspec.json.Decoder(list[msgspec.Raw])
_UNIT = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


def arrow_message(table: pa.Table | pa.RecordBatch) -> bytes:
    """One Kafka message holding ``table`` as an Arrow IPC stream."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write(table)
    return sink.getvalue().to_pybytes()


def decode_arrow(
    topic: str,
    partition: int,
    offset: int,
    value: bytes,
    msg_ts: float | None,
    limits: Limits,
    scrub,
    rejects: list[Reject],
    feature_names: tuple[str, ...] = (),
) -> DecodedBatch:
    """The events of one Arrow IPC message; bad rows and bad messages go to ``rejects``."""
    try:
        table = _read(value, limits)
        cols = _columns(table, limits, feature_names)
    except (pa.ArrowException, ValueError, TypeError, msgspec.DecodeError) as e:
        rejects.append(Reject(partition, offset, f"arrow: {e}"[:1000], value[:4096]))
        return DecodedBatch.empty(partition, limits.feature_dim)
    return frame_batch(topic, partition, offset, msg_ts, limits, scrub, rejects, cols)


def _read(value: bytes, limits: Limits) -> pa.Table:
    buf = pa.py_buffer(value)
    if value.startswith(ARROW_FILE):
        table = pa.ipc.open_file(buf).read_all()
    elif value.startswith(ARROW_STREAM):
        table = pa.ipc.open_stream(buf).read_all()
    else:
        raise ValueError("not an Arrow IPC stream or file")
    # compressed buffers may expand: bound what one message may hold in memory
    if table.nbytes > 8 * limits.max_message_bytes:
        raise ValueError(f"{table.nbytes} bytes once decompressed, over 8 x max_message_bytes")
    table.validate(full=True)  # offsets, UTF-8, lengths: before any kernel reads them
    return table.combine_chunks()


def _column(table: pa.Table, name: str) -> pa.Array:
    col = table.column(name)
    return col.chunk(0) if col.num_chunks == 1 else pa.concat_arrays(col.chunks)


def _columns(table: pa.Table, limits: Limits, feature_names: tuple[str, ...]) -> FrameColumns:
    dim, n = limits.feature_dim, table.num_rows
    names = list(feature_names) or [f"f{j}" for j in range(dim)]
    named = "features" not in table.column_names
    unknown = set(table.column_names) - _KNOWN - (set(names) if named else set())
    if unknown:
        raise ValueError(f"unknown columns {sorted(unknown)} (known: {sorted(_KNOWN)})")
    if "ts" not in table.column_names:
        raise ValueError("ts: missing column")
    if ("label" in table.column_names) == ("labels" in table.column_names):
        raise ValueError("label/labels: give exactly one of the two columns")
    reasons: dict[int, str] = {}
    ts = _seconds(_column(table, "ts"))
    vocab, codes, loffs = _labels(table)
    feats = np.full((n, dim), np.nan)
    if named:
        missing = [x for x in names if x not in table.column_names]
        if missing:
            raise ValueError(f"features: no 'features' column and no columns {missing}")
        for j, x in enumerate(names):
            feats[:, j] = _floats(_column(table, x), x)
    else:
        _feature_lists(_column(table, "features"), dim, feats, reasons)
    id_spans = None
    if "id" in table.column_names:
        id_spans = _id_spans(_column(table, "id"), reasons)
    payloads = None
    if "payload" in table.column_names:
        payloads = _payloads(_column(table, "payload"))
    with np.errstate(over="ignore"):  # beyond float32: inf, a bad row
        feats32 = feats.astype(np.float32)
    return FrameColumns(ts, feats32, vocab, codes, loffs, payloads, id_spans, reasons)


def _seconds(a: pa.Array) -> np.ndarray:
    if pa.types.is_timestamp(a.type):
        scale = _UNIT[a.type.unit]
        a = a.cast(pa.int64())
        return pc.fill_null(a, 0).to_numpy().astype(np.float64) * scale + _nan_where_null(a)
    if not (pa.types.is_floating(a.type) or pa.types.is_integer(a.type)):
        raise ValueError(f"ts: {a.type} is not a number or a timestamp")
    return _floats(a, "ts")


def _nan_where_null(a: pa.Array) -> np.ndarray:
    return np.where(a.is_null().to_numpy(zero_copy_only=False), np.nan, 0.0)


def _floats(a: pa.Array, name: str) -> np.ndarray:
    """A numeric column as float64, nulls as NaN (a non-finite value: the row is bad)."""
    if not (pa.types.is_floating(a.type) or pa.types.is_integer(a.type)):
        raise ValueError(f"{name}: {a.type} is not numeric")
    return a.cast(pa.float64()).to_numpy(zero_copy_only=False)


def _strings(a: pa.Array, name: str) -> pa.Array:
    if pa.types.is_dictionary(a.type):
        a = a.dictionary_decode()
    if not (pa.types.is_string(a.type) or pa.types.is_large_string(a.type)):
        raise ValueError(f"{name}: {a.type} is not a string column")
    return a


def _labels(table: pa.Table):
    """(vocab, int32 codes, int64 CSR offsets): one dictionary encoding for the batch."""
    if "label" in table.column_names:
        flat = _strings(_column(table, "label"), "label")
        offs = np.arange(len(flat) + 1, dtype=np.int64)
        nulls = flat.is_null().to_numpy(zero_copy_only=False)
        if nulls.any():  # a row with a null label has no label: per_row 0, a bad row
            offs = np.concatenate([[0], np.cumsum(~nulls)]).astype(np.int64)
            flat = flat.filter(pa.array(~nulls))
    else:
        lists = _column(table, "labels")
        if not (pa.types.is_list(lists.type) or pa.types.is_large_list(lists.type)):
            raise ValueError(f"labels: {lists.type} is not a list of strings")
        lists = pc.fill_null(lists, pa.scalar([], lists.type)) if lists.null_count else lists
        offs = lists.offsets.to_numpy().astype(np.int64)
        flat = _strings(lists.values.slice(offs[0], offs[-1] - offs[0]), "labels")
        offs = offs - offs[0]
        if flat.null_count:
            raise ValueError("labels: a list holds a null label")
    enc = pc.dictionary_encode(flat)
    codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int32)
    return enc.dictionary.to_pylist(), codes, offs


def _feature_lists(a: pa.Array, dim: int, out: np.ndarray, reasons: dict[int, str]) -> None:
    if pa.types.is_fixed_size_list(a.type):
        if a.type.list_size != dim:
            raise ValueError(f"features: lists of {a.type.list_size} values, expected {dim}")
        a = pa.ListArray.from_arrays(
            pa.array(np.arange(len(a) + 1, dtype=np.int32) * dim), a.flatten()
        ) if not a.null_count else a.cast(pa.list_(a.type.value_type))  # fmt: skip
    if not (pa.types.is_list(a.type) or pa.types.is_large_list(a.type)):
        raise ValueError(f"features: {a.type} is not a list of numbers")
    offs = a.offsets.to_numpy().astype(np.int64)
    values = _floats(a.values, "features")
    lengths = np.diff(offs)
    valid = a.is_valid().to_numpy(zero_copy_only=False)
    good = valid & (lengths == dim)
    rows = np.flatnonzero(good)
    if rows.size:
        out[rows] = values[offs[rows, None] + np.arange(dim)[None, :]]
    for i in np.flatnonzero(~good).tolist():
        got = int(lengths[i]) if valid[i] else "null"
        reasons[i] = f"features: {got} values, expected feature_dim={dim}"


def _id_spans(a: pa.Array, reasons: dict[int, str]):
    a = _strings(a, "id").cast(pa.large_string())
    for i in np.flatnonzero(a.is_null().to_numpy(zero_copy_only=False)).tolist():
        reasons.setdefault(i, "id: null (leave the column out to derive keys)")
    a = pc.fill_null(a, "") if a.null_count else a
    offs = np.frombuffer(a.buffers()[1], dtype=np.int64)[a.offset : a.offset + len(a) + 1]
    data = a.buffers()[2]
    lo, hi = int(offs[0]), int(offs[-1])
    raw = data.to_pybytes()[lo:hi] if data is not None else b""
    offs = offs - lo
    return raw, offs[:-1].copy(), offs[1:].copy()


def _payloads(a: pa.Array) -> list:
    """Each row's payload as JSON text (null -> ``null``), checked in one decoder call."""
    a = _strings(a, "payload")
    texts = pc.fill_null(a, "null").to_pylist() if a.null_count else a.to_pylist()
    joined = ("[" + ",".join(texts) + "]").encode() if texts else b"[]"
    try:
        out = _raw_list.decode(joined)
    except msgspec.DecodeError as e:
        raise ValueError(f"payload: not JSON text ({e})") from None
    if len(out) != len(texts):  # a text like '1,2' spans two entries
        raise ValueError("payload: a row holds more than one JSON value")
    return out
