"""Event formats beside JSON and frames: Arrow IPC record batches, and Avro and Protobuf in
Confluent's wire format with schemas from a Schema Registry (over HTTP, through
confluent-kafka's client and serializers) or from files. Each decodes to exactly what the
same events as JSON decode to; bad rows and bad messages are dead letters naming the
field; one end-to-end run sends all of them through a worker on the embedded broker."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import fastavro
import msgspec
import numpy as np
import pyarrow as pa
import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from devtools.supervise import processed_all
from snapshot_format import latest_version, read_manifest
from streamproc.decode.arrowframes import arrow_message
from streamproc.decode.decoding import decode_batch
from streamproc.decode.events import Limits
from streamproc.decode.wire import WireSchemas
from tests.conftest import read_topic
from tests.streamproc.schema_registry import SchemaRegistry

DIM = 3
CTX = SerializationContext("events", MessageField.VALUE)
AVRO = {
    "type": "record", "name": "Event", "namespace": "test",
    "fields": [
        {"name": "id", "type": ["null", "string"], "default": None},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "label", "type": "string"},
        {"name": "features", "type": {"type": "array", "items": "double"}},
        {"name": "source", "type": "string"},
    ],
}  # fmt: skip


def events(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [
        {"id": f"e-{seed}-{i}", "ts": 1_700_000_000 + i, "label": rng.choice("abcd"),
         "features": [float(rng.randint(-50, 50)) / 4 for _ in range(DIM)],
         "payload": {"source": rng.choice(["web", "app"])}}
        for i in range(n)
    ]  # fmt: skip


def decode(values: list[bytes], limits: Limits):
    msgs = [(i, v, 1.8e9) for i, v in enumerate(values)]
    return decode_batch("events", 0, msgs, limits, now=1.8e9)


def same_events(a, b) -> None:
    assert len(a) == len(b) and len(a) > 0
    assert a.keys.tolist() == b.keys.tolist()  # same ids -> same sampling keys
    assert a.labels == b.labels
    np.testing.assert_array_equal(a.features, b.features)
    np.testing.assert_array_equal(a.ts, b.ts)
    assert [json.loads(bytes(p)) for p in a.payloads] == [json.loads(bytes(p)) for p in b.payloads]


# -- Arrow ----------------------------------------------------------------------------------
def test_arrow_batch_decodes_like_the_same_json_events() -> None:
    evs = events(200)
    lim = Limits(feature_dim=DIM)
    js = decode([msgspec.json.encode(e) for e in evs], lim)
    t = pa.table({
        "id": [e["id"] for e in evs],
        "ts": pa.array([e["ts"] * 1000 for e in evs], pa.timestamp("ms")),
        "label": pa.array([e["label"] for e in evs]).dictionary_encode(),
        "features": pa.array([e["features"] for e in evs], pa.list_(pa.float32(), DIM)),
        "payload": [json.dumps(e["payload"]) for e in evs],
    })  # fmt: skip
    ar = decode([arrow_message(t)], lim)
    assert ar.rejects == [] and js.rejects == []
    same_events(ar, js)
    # named feature columns and a multi-label list column
    names = ("cpu", "mem", "disk")
    t2 = pa.table({
        "ts": [1.0, 2.0], "labels": [["a", "b"], ["c"]],
        "cpu": [1, 2], "mem": [0.5, 0.25], "disk": pa.array([3.0, 4.0], pa.float32()),
    })  # fmt: skip
    b = decode([arrow_message(t2)], Limits(feature_dim=DIM, feature_names=names))
    assert b.rejects == [] and b.labels == [["a", "b"], ["c"]]
    assert b.features.tolist() == [[1.0, 0.5, 3.0], [2.0, 0.25, 4.0]]


def test_arrow_bad_rows_are_dead_letters_and_good_rows_stay() -> None:
    t = pa.table({
        "id": ["a", None, "c", "d", "e"],
        "ts": [1.0, 2.0, 3.0, float("nan"), 5.0],
        "label": ["x", "y", None, "y", "x"],
        "features": [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0],
                     [1.0, 2.0]],
    })  # fmt: skip
    b = decode([arrow_message(t)], Limits(feature_dim=DIM))
    assert b.ids == ["a"]
    why = {r.reason.split(":")[0]: r.reason for r in b.rejects}
    assert set(why) == {"frame row 1", "frame row 2", "frame row 3", "frame row 4"}
    assert "id: null" in why["frame row 1"] and "label" in why["frame row 2"]
    assert "ts" in why["frame row 3"] and "2 values, expected feature_dim=3" in why["frame row 4"]
    assert all(r.offset == 0 for r in b.rejects)


@pytest.mark.parametrize(
    ("table", "needle"),
    [
        (pa.table({"ts": [1.0], "label": ["a"], "features": [[1.0] * DIM], "oops": [1]}),
         "unknown columns ['oops']"),
        (pa.table({"label": ["a"], "features": [[1.0] * DIM]}), "ts: missing column"),
        (pa.table({"ts": [1.0], "features": [[1.0] * DIM]}), "label/labels"),
        (pa.table({"ts": ["x"], "label": ["a"], "features": [[1.0] * DIM]}), "ts: string"),
        (pa.table({"ts": [1.0], "label": ["a"], "features": [[1.0] * DIM],
                   "payload": ["{not json"]}), "payload: not JSON"),
    ],
)  # fmt: skip
def test_arrow_messages_that_cannot_be_read_name_the_column(table, needle) -> None:
    b = decode([arrow_message(table)], Limits(feature_dim=DIM))
    assert len(b) == 0 and len(b.rejects) == 1 and needle in b.rejects[0].reason


def test_damaged_arrow_messages_are_dead_letters_never_a_crash() -> None:
    good = arrow_message(pa.table({"ts": [1.0] * 50, "label": ["a"] * 50,
                                   "features": [[1.0] * DIM] * 50}))  # fmt: skip
    rng = random.Random(5)
    values = [good[:n] for n in range(4, len(good), 37)]
    for _ in range(300):
        v = bytearray(good)
        for _ in range(rng.randint(1, 8)):
            v[rng.randrange(8, len(v))] = rng.randrange(256)
        values.append(bytes(v))
    b = decode(values, Limits(feature_dim=DIM))
    # every message is accounted for: kept rows (an intact copy), or dead letters
    assert len({r.offset for r in b.rejects} | set(b.offsets.tolist())) == len(values)


# -- Avro and Protobuf in the wire format ---------------------------------------------------
def proto_event_class():
    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="strata_test_event.proto", package="st",
                                             syntax="proto3")  # fmt: skip
    fdp.dependency.extend(["google/protobuf/timestamp.proto", "google/protobuf/struct.proto"])
    fdp.message_type.add(name="Other").field.add(name="x", number=1, type=F.TYPE_STRING)
    m = fdp.message_type.add(name="Event")
    m.field.add(name="id", number=1, type=F.TYPE_STRING)
    m.field.add(name="ts", number=2, type=F.TYPE_MESSAGE, type_name=".google.protobuf.Timestamp")
    m.field.add(name="label", number=3, type=F.TYPE_STRING)
    m.field.add(name="features", number=4, type=F.TYPE_DOUBLE, label=F.LABEL_REPEATED)
    m.field.add(name="payload", number=5, type=F.TYPE_MESSAGE, type_name=".google.protobuf.Struct")
    from google.protobuf import struct_pb2, timestamp_pb2  # noqa: F401 - into the pool

    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(fdp.name)
    except KeyError:
        pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("st.Event")), fdp


def proto_value(cls, e: dict):
    m = cls(id=e["id"], label=e["label"], features=e["features"])
    m.ts.FromSeconds(e["ts"])
    m.payload.update(e["payload"])
    return m


def avro_value(e: dict) -> dict:
    return {"id": e["id"], "ts": e["ts"] * 1000, "label": e["label"], "features": e["features"],
            "source": e["payload"]["source"]}  # fmt: skip


def test_avro_and_protobuf_through_a_schema_registry_decode_like_json() -> None:
    evs = events(150, seed=1)
    lim = Limits(feature_dim=DIM)
    js = decode([msgspec.json.encode(e) for e in evs], lim)
    cls, _ = proto_event_class()
    with SchemaRegistry() as reg:
        client = SchemaRegistryClient({"url": reg.url})
        avro = AvroSerializer(client, json.dumps(AVRO))
        proto = ProtobufSerializer(cls, client, {"use.deprecated.format": False})
        wire = Limits(feature_dim=DIM, wire=WireSchemas(reg.url))
        a = decode([avro(avro_value(e), CTX) for e in evs], wire)
        p = decode([proto(proto_value(cls, e), CTX) for e in evs], wire)
        assert a.rejects == [] and p.rejects == []
        same_events(a, js)
        same_events(p, js)
        assert reg.lookups <= 4  # one schema per id, cached (plus the serialized form)


def test_wire_schemas_from_files(tmp_path: Path) -> None:
    evs = events(40, seed=2)
    js = decode([msgspec.json.encode(e) for e in evs], Limits(feature_dim=DIM))
    (tmp_path / "11.avsc").write_text(json.dumps(AVRO))
    cls, fdp = proto_event_class()
    fds = descriptor_pb2.FileDescriptorSet()
    from google.protobuf import struct_pb2, timestamp_pb2

    for dep in (timestamp_pb2, struct_pb2):
        dep.DESCRIPTOR.CopyToProto(fds.file.add())
    fds.file.add().CopyFrom(fdp)
    (tmp_path / "12.binpb").write_bytes(fds.SerializeToString())
    lim = Limits(feature_dim=DIM, wire=WireSchemas(schema_dir=tmp_path))

    def avro_bytes(e):
        body = io.BytesIO()
        fastavro.schemaless_writer(body, fastavro.parse_schema(AVRO), avro_value(e))
        return b"\x00" + (11).to_bytes(4, "big") + body.getvalue()

    def proto_bytes(e):  # message index [1]: the file's second message type
        return (
            b"\x00"
            + (12).to_bytes(4, "big")
            + b"\x02\x02"
            + proto_value(cls, e).SerializeToString()
        )

    same_events(decode([avro_bytes(e) for e in evs], lim), js)
    same_events(decode([proto_bytes(e) for e in evs], lim), js)


def test_wire_messages_that_cannot_be_read_are_dead_letters_naming_why(tmp_path: Path) -> None:
    (tmp_path / "3.avsc").write_text(json.dumps(AVRO))
    bad_type = dict(AVRO, fields=[*AVRO["fields"][:3],
                                  {"name": "features", "type": "string"}])  # fmt: skip
    (tmp_path / "4.avsc").write_text(json.dumps(bad_type))
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(AVRO), avro_value(events(1)[0]))
    ok = b"\x00" + (3).to_bytes(4, "big") + body.getvalue()
    body4 = io.BytesIO()
    fastavro.schemaless_writer(body4, fastavro.parse_schema(bad_type),
                               {"id": None, "ts": 5, "label": "a", "features": "x"})  # fmt: skip
    cases = {
        "no config": (ok, Limits(feature_dim=DIM), "neither schema_registry_url nor schema_dir"),
        "unknown id": (b"\x00\x00\x00\x00\x63" + body.getvalue(), None, "schema id 99: not found"),
        "truncated": (ok[:-3], None, "wire: schema id 3"),
        "trailing": (ok + b"\x00", None, "bytes after the record"),
        "field type": (b"\x00\x00\x00\x00\x04" + body4.getvalue(), None, "features"),
        "short": (b"\x00\x00\x01", None, "not Confluent wire format"),
    }
    lim = Limits(feature_dim=DIM, wire=WireSchemas(schema_dir=tmp_path))
    for name, (value, limits, needle) in cases.items():
        b = decode([value], limits or lim)
        assert len(b) == 0 and len(b.rejects) == 1, name
        assert needle in b.rejects[0].reason, (name, b.rejects[0].reason)
        assert b.rejects[0].value == value[:4096], name  # the letter keeps the original bytes
    rng = random.Random(9)
    noise = [b"\x00\x00\x00\x00\x03" + rng.randbytes(rng.randint(0, 80)) for _ in range(500)]
    b = decode(noise, lim)
    assert len(b) + len(b.rejects) == len(noise)


def test_an_unknown_schema_id_is_asked_for_once_per_ttl() -> None:
    with SchemaRegistry() as reg:
        lim = Limits(feature_dim=DIM, wire=WireSchemas(reg.url, miss_ttl_s=60))
        b = decode([b"\x00\x00\x00\x00\x2a{}"] * 300, lim)
        assert len(b.rejects) == 300 and "schema id 42" in b.rejects[0].reason
        assert reg.lookups == 1


# -- end to end -----------------------------------------------------------------------------
@pytest.mark.integration
def test_worker_takes_json_arrow_avro_and_protobuf_side_by_side(deployment, tmp_path) -> None:
    cls, _ = proto_event_class()
    evs = events(400, seed=4)
    with SchemaRegistry() as reg:
        client = SchemaRegistryClient({"url": reg.url})
        avro = AvroSerializer(client, json.dumps(AVRO))
        proto = ProtobufSerializer(cls, client, {"use.deprecated.format": False})
        t = pa.table({"id": [e["id"] for e in evs[300:]], "ts": [float(e["ts"]) for e in evs[300:]],
                      "label": [e["label"] for e in evs[300:]],
                      "features": [e["features"] for e in evs[300:]]})  # fmt: skip
        values = (
            [msgspec.json.encode(e) for e in evs[:100]]
            + [avro(avro_value(e), CTX) for e in evs[100:200]]
            + [proto(proto_value(cls, e), CTX) for e in evs[200:300]]
            + [arrow_message(t), b"\x00\x00\x00\x00\x63garbage"]
        )
        p = Producer({"bootstrap.servers": deployment.broker.bootstrap})
        for v in values:
            p.produce(deployment.events, v, partition=0)
        assert p.flush(30) == 0
        w = deployment.worker("fmt", STRATA_FEATURE_DIM=str(DIM),
                              STRATA_SCHEMA_REGISTRY_URL=reg.url)  # fmt: skip
        w.wait_ready(90)
        w.wait_until(lambda st: processed_all({0: len(values)})([st]), 120, "all messages")
        snaps = tmp_path / "snap-g"
        before = latest_version(snaps)
        w.request_snapshot()
        w.wait_until(lambda st: latest_version(snaps) != before, 60, "a snapshot")
        m = read_manifest(snaps, latest_version(snaps))
        assert sum(m.seen.values()) == len(evs)  # every event of every format was counted
        letters = read_topic(deployment.broker.bootstrap, deployment.dlq, expect=1)
        assert len(letters) == 1
        assert b"schema id 99: registry" in dict(letters[0].headers())["reason"]
        assert w.stop() == 0


def test_protobuf_schema_with_a_referenced_file_from_the_registry() -> None:
    """A schema importing another user file: the serializer registers the import as its
    own subject and a reference; the reader fetches both."""
    F = descriptor_pb2.FieldDescriptorProto
    dep = descriptor_pb2.FileDescriptorProto(name="strata_dep.proto", package="dep",
                                             syntax="proto3")  # fmt: skip
    dep.message_type.add(name="Source").field.add(name="name", number=1, type=F.TYPE_STRING)
    main = descriptor_pb2.FileDescriptorProto(name="strata_main.proto", package="mainpkg",
                                              syntax="proto3")  # fmt: skip
    main.dependency.append("strata_dep.proto")
    m = main.message_type.add(name="Event")
    m.field.add(name="ts", number=1, type=F.TYPE_DOUBLE)
    m.field.add(name="label", number=2, type=F.TYPE_STRING)
    m.field.add(name="features", number=3, type=F.TYPE_DOUBLE, label=F.LABEL_REPEATED)
    m.field.add(name="source", number=4, type=F.TYPE_MESSAGE, type_name=".dep.Source")
    pool = descriptor_pool.Default()
    for fdp in (dep, main):
        try:
            pool.FindFileByName(fdp.name)
        except KeyError:
            pool.Add(fdp)
    cls = message_factory.GetMessageClass(pool.FindMessageTypeByName("mainpkg.Event"))
    with SchemaRegistry() as reg:
        ser = ProtobufSerializer(cls, SchemaRegistryClient({"url": reg.url}),
                                 {"use.deprecated.format": False})  # fmt: skip
        msg = cls(ts=5.0, label="a", features=[1.0, 2.0, 3.0])
        msg.source.name = "web"
        value = ser(msg, CTX)
        assert len(reg.subjects) == 2  # the import is a subject of its own
        b = decode([value], Limits(feature_dim=DIM, wire=WireSchemas(reg.url)))
    assert b.rejects == [] and b.labels == [["a"]]
    assert json.loads(bytes(b.payloads[0])) == {"source": {"name": "web"}}
