"""Event formats: the same events as JSON, frames, Arrow IPC batches, and Avro and
Protobuf in Confluent's wire format, decoded by ``decode_batch`` in the same run.

The rates are events per second of one decode call over a batch of 20,000 events (best of
3), 4 features; ratios are against JSON. Avro and Protobuf decode record by record
(fastavro, upb), so they are the slow formats; Arrow and frames are columnar.

    python -m benchmarks.bench_formats
"""

from __future__ import annotations

import io
import json
import random
import tempfile
import time
from pathlib import Path

import msgspec
import numpy as np

from streamproc.decode.decoding import decode_batch
from streamproc.decode.events import Limits

from .common import print_table, write_result

DIM, N, NOW = 4, 20_000, 1.8e9
AVRO = {
    "type": "record", "name": "Event",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "ts", "type": "double"},
        {"name": "label", "type": "string"},
        {"name": "features", "type": {"type": "array", "items": "float"}},
    ],
}  # fmt: skip


def _events(n: int) -> list[dict]:
    rng = random.Random(0)
    return [
        {"id": f"evt-{i}", "ts": 1.7e9 + i, "label": f"label_{rng.randrange(12)}",
         "features": [round(rng.gauss(0, 1), 4) for _ in range(DIM)]}
        for i in range(n)
    ]  # fmt: skip


def _proto_class():
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="bench_event.proto", package="bench",
                                             syntax="proto3")  # fmt: skip
    m = fdp.message_type.add(name="Event")
    m.field.add(name="id", number=1, type=F.TYPE_STRING)
    m.field.add(name="ts", number=2, type=F.TYPE_DOUBLE)
    m.field.add(name="label", number=3, type=F.TYPE_STRING)
    m.field.add(name="features", number=4, type=F.TYPE_FLOAT, label=F.LABEL_REPEATED)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("bench.Event")), fdp


def _messages(evs: list[dict], schema_dir: Path) -> dict[str, list[bytes]]:
    import fastavro
    import pyarrow as pa
    from google.protobuf import descriptor_pb2

    from streamproc.decode.arrowframes import arrow_message
    from streamproc.decode.frames import encode_frame

    out = {"JSON": [msgspec.json.encode(e) for e in evs]}
    feats = np.array([e["features"] for e in evs])
    out["frames (1,000 rows)"] = [
        encode_frame([e["ts"] for e in evs[i : i + 1000]], [e["label"] for e in evs[i : i + 1000]],
                     feats[i : i + 1000], ids=[e["id"] for e in evs[i : i + 1000]])
        for i in range(0, len(evs), 1000)
    ]  # fmt: skip
    t = pa.table({"id": [e["id"] for e in evs], "ts": [e["ts"] for e in evs],
                  "label": [e["label"] for e in evs],
                  "features": pa.array(feats.tolist(), pa.list_(pa.float32(), DIM))})  # fmt: skip
    out["Arrow IPC (1,000 rows)"] = [
        arrow_message(t.slice(i, 1000)) for i in range(0, len(evs), 1000)
    ]
    (schema_dir / "1.avsc").write_text(json.dumps(AVRO))
    parsed = fastavro.parse_schema(AVRO)

    def avro(e):
        b = io.BytesIO()
        fastavro.schemaless_writer(b, parsed, e)
        return b"\x00" + (1).to_bytes(4, "big") + b.getvalue()

    out["Avro (wire format)"] = [avro(e) for e in evs]
    cls, fdp = _proto_class()
    fds = descriptor_pb2.FileDescriptorSet()
    fds.file.add().CopyFrom(fdp)
    (schema_dir / "2.binpb").write_bytes(fds.SerializeToString())
    head = b"\x00" + (2).to_bytes(4, "big") + b"\x00"  # message index [0]
    out["Protobuf (wire format)"] = [head + cls(**e).SerializeToString() for e in evs]
    return out


def _rate(values: list[bytes], limits: Limits, n_events: int) -> float:
    msgs = [(i, v, NOW) for i, v in enumerate(values)]
    decode_batch("events", 0, msgs[:4], limits, now=NOW)  # warm-up
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        b = decode_batch("events", 0, msgs, limits, now=NOW)
        best = min(best, time.perf_counter() - t)
    if len(b) != n_events:
        raise RuntimeError(f"decoded {len(b)} of {n_events} events: {b.rejects[:2]}")
    return n_events / best


def main() -> dict:
    from streamproc.decode.wire import WireSchemas

    evs = _events(N)
    with tempfile.TemporaryDirectory() as d:
        msgs = _messages(evs, Path(d))
        lim = Limits(feature_dim=DIM, wire=WireSchemas(schema_dir=d))
        secs = {name: N / _rate(values, lim, N) for name, values in msgs.items()}
    rows = [
        {"name": k, "events": N, "seconds": v, "events_per_s": N / v, "vs_json": secs["JSON"] / v}
        for k, v in secs.items()
    ]
    print_table("event formats: decode rate (same events, same run)", rows, "JSON")
    payload = {"events": N, "feature_dim": DIM, "rows": rows}
    write_result("formats", payload)
    return payload


if __name__ == "__main__":
    main()
