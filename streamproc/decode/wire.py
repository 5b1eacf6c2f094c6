"""Avro and Protobuf events in Confluent's wire format, schemas from a registry or files.

A message is ``0x00``, the schema id as 4 big-endian bytes, then (Protobuf only) the
message indexes that pick a message type of the schema, then the record in the schema's
binary encoding -- what Confluent's serializers (any language) write. The schema of an id
comes from:

* a Schema Registry (``schema_registry_url``), through confluent-kafka's
  ``SchemaRegistryClient``; Protobuf schemas are asked for in the registry's
  ``serialized`` form (a ``FileDescriptorProto``), references included;
* or files in ``schema_dir``: ``<id>.avsc`` (an Avro schema) or ``<id>.binpb`` /
  ``<id>.desc`` (a serialized ``FileDescriptorSet``, as ``protoc --include_imports
  --descriptor_set_out`` or ``buf build -o`` write it; the last file is the schema's).

A record's fields are the JSON event's (``ts``, ``label`` or ``labels``, ``features``, ``id``,
``payload``, ``relabel``); features may instead be one field per name of ``feature_names``;
any other fields become the payload (an object) when the record has no ``payload`` field.
An Avro ``timestamp-millis``/``-micros`` or a ``google.protobuf.Timestamp`` ``ts`` is
converted to seconds. The record is then checked exactly like a JSON event, so a bad
field is a dead letter that names it.

Schemas are parsed once per id. An id the registry does not know (or no file describes)
is remembered for ``miss_ttl_s`` so that a flood of bad ids costs no registry calls.

>>> import io, json, tempfile, pathlib, fastavro
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> schema = {"type": "record", "name": "E", "fields": [
...     {"name": "ts", "type": "double"}, {"name": "label", "type": "string"},
...     {"name": "features", "type": {"type": "array", "items": "float"}}]}
>>> _ = (d / "7.avsc").write_text(json.dumps(schema))
>>> body = io.BytesIO()
>>> fastavro.schemaless_writer(body, schema, {"ts": 1.5, "label": "a", "features": [1.0]})
>>> WireSchemas(schema_dir=d).event(b"\\x00\\x00\\x00\\x00\\x07" + body.getvalue())
{'ts': 1.5, 'label': 'a', 'features': [1.0]}
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import threading
import time
from pathlib import Path

WIRE_MAGIC = b"\x00"
_EVENT_FIELDS = ("ts", "label", "labels", "features", "id", "payload", "relabel")


class WireError(ValueError):
    """A wire-format message that cannot be read (the reason names what is wrong)."""


class _Miss:
    def __init__(self, reason: str, until: float) -> None:
        self.reason, self.until = reason, until


class WireSchemas:
    """Readers for Confluent wire-format messages, one per schema id, built on demand."""

    def __init__(
        self,
        registry_url: str = "",
        schema_dir: str | Path | None = None,
        registry_config: dict | None = None,
        feature_names: tuple[str, ...] = (),
        miss_ttl_s: float = 30.0,
    ) -> None:
        self.schema_dir = Path(schema_dir) if schema_dir else None
        self.feature_names = tuple(feature_names)
        self.miss_ttl_s = miss_ttl_s
        self._client = None
        if registry_url:
            from confluent_kafka.schema_registry import SchemaRegistryClient

            self._client = SchemaRegistryClient({"url": registry_url, **(registry_config or {})})
        self._readers: dict[int, object] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # no credentials: the registry config may hold some
        return f"WireSchemas(registry={self._client is not None}, schema_dir={self.schema_dir})"

    # -- reading ------------------------------------------------------------------------
    def event(self, value: bytes) -> dict:
        """The event fields of one wire-format message (raises :class:`WireError`)."""
        if len(value) < 5 or value[:1] != WIRE_MAGIC:
            raise WireError("not Confluent wire format (0x00 and a 4-byte schema id)")
        sid = int.from_bytes(value[1:5], "big")
        reader = self._reader(sid)
        try:
            record = reader(value[5:])
        except WireError:
            raise
        except Exception as e:  # noqa: BLE001 - any decoder failure on untrusted bytes
            raise WireError(f"schema id {sid}: {type(e).__name__}: {e}"[:500]) from None
        return self._as_event(record)

    def _reader(self, sid: int):
        got = self._readers.get(sid)
        if isinstance(got, _Miss):
            if time.monotonic() < got.until:
                raise WireError(got.reason)
            got = None
        if got is not None:
            return got
        with self._lock:
            try:
                got = self._load(sid)
            except WireError as e:
                self._readers[sid] = _Miss(str(e), time.monotonic() + self.miss_ttl_s)
                raise
            self._readers[sid] = got
            return got

    def _load(self, sid: int):
        if self.schema_dir is not None:
            for ext, make in (
                (".avsc", _avro_file),
                (".binpb", _proto_file),
                (".desc", _proto_file),
            ):
                p = self.schema_dir / f"{sid}{ext}"
                if p.is_file():
                    return make(p)
        if self._client is not None:
            return self._from_registry(sid)
        raise WireError(f"schema id {sid}: not found (schema_dir={self.schema_dir})")

    def _from_registry(self, sid: int):
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            schema = self._client.get_schema(sid)
            kind = (schema.schema_type or "AVRO").upper()
            if kind == "PROTOBUF":
                files = self._proto_files(sid, self._client.get_schema(sid, fmt="serialized"))
                return _ProtoReader(files)
        except SchemaRegistryError as e:
            raise WireError(f"schema id {sid}: registry: {e}"[:500]) from None
        except Exception as e:  # noqa: BLE001 - network, TLS, a bad answer
            raise WireError(f"schema id {sid}: registry: {type(e).__name__}: {e}"[:500]) from None
        if kind == "AVRO":
            return _avro_reader(json.loads(schema.schema_str))
        raise WireError(f"schema id {sid}: schema type {kind} is not Avro or Protobuf")

    def _proto_files(self, sid, schema) -> list[bytes]:
        """Serialized FileDescriptorProtos, dependencies first, the schema's own last."""
        out = []
        for ref in schema.references or []:
            dep = self._client.get_version(ref.subject, ref.version, fmt="serialized")
            out += self._proto_files(sid, dep.schema)
        return [*out, base64.b64decode(schema.schema_str)]

    def _as_event(self, record) -> dict:
        if not isinstance(record, dict):
            raise WireError(f"the record is a {type(record).__name__}, not a record")
        ev = {k: record[k] for k in _EVENT_FIELDS if k in record}
        rest = {k: v for k, v in record.items() if k not in ev}
        names = self.feature_names
        if "features" not in ev and names and all(x in rest for x in names):
            ev["features"] = [rest.pop(x) for x in names]
        if rest:
            if "payload" in ev:
                raise WireError(f"fields {sorted(rest)}: not event fields (there is a payload)")
            ev["payload"] = rest
        ts = ev.get("ts")
        if isinstance(ts, dt.datetime):
            ev["ts"] = ts.timestamp() if ts.tzinfo else ts.replace(tzinfo=dt.UTC).timestamp()
        return ev


# -- Avro ---------------------------------------------------------------------------------
def _avro_file(path: Path):
    try:
        return _avro_reader(json.loads(path.read_text()))
    except (OSError, ValueError) as e:
        raise WireError(f"{path}: {e}") from None


def _avro_reader(schema):
    import fastavro

    try:
        parsed = fastavro.parse_schema(schema)
    except Exception as e:  # noqa: BLE001 - SchemaParseException and friends
        raise WireError(f"Avro schema: {e}") from None

    def read(body: bytes):
        fo = io.BytesIO(body)
        rec = fastavro.schemaless_reader(fo, parsed, None)
        if fo.tell() != len(body):
            raise WireError(f"Avro: {len(body) - fo.tell()} bytes after the record")
        return rec

    return read


# -- Protobuf -----------------------------------------------------------------------------
def _proto_file(path: Path):
    from google.protobuf import descriptor_pb2

    try:
        fds = descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes())
    except Exception as e:  # noqa: BLE001 - DecodeError, OSError
        raise WireError(f"{path}: not a serialized FileDescriptorSet ({e})") from None
    if not fds.file:
        raise WireError(f"{path}: the FileDescriptorSet holds no file")
    return _ProtoReader([f.SerializeToString() for f in fds.file])


class _ProtoReader:
    """Messages of one Protobuf schema (its file and imports), picked by message index."""

    def __init__(self, files: list[bytes]) -> None:
        from google.protobuf import descriptor_pb2, descriptor_pool

        pool = descriptor_pool.DescriptorPool()
        try:
            for raw in files:
                fdp = descriptor_pb2.FileDescriptorProto.FromString(raw)
                for dep in fdp.dependency:  # well-known types: registries do not store them
                    if dep.startswith("google/protobuf/"):
                        _add_well_known(pool, dep)
                try:
                    pool.FindFileByName(fdp.name)
                except KeyError:
                    pool.Add(fdp)
            self.file = pool.FindFileByName(fdp.name)
        except Exception as e:  # noqa: BLE001 - a bad or inconsistent descriptor
            raise WireError(f"Protobuf schema: {e}") from None
        self._classes: dict[tuple[int, ...], type] = {}

    def __call__(self, body: bytes):
        idx, pos = _message_indexes(body)
        cls = self._class(idx)
        msg = cls.FromString(body[pos:])
        return _proto_dict(msg)

    def _class(self, idx: tuple[int, ...]):
        cls = self._classes.get(idx)
        if cls is None:
            from google.protobuf import message_factory

            types = self.file.message_types_by_name
            desc = None
            for k, i in enumerate(idx):
                pool = list(types.values()) if k == 0 else desc.nested_types
                if not 0 <= i < len(pool):
                    raise WireError(f"Protobuf: message index {list(idx)} is not in the schema")
                desc = pool[i]
            cls = self._classes[idx] = message_factory.GetMessageClass(desc)
        return cls


def _add_well_known(pool, name: str) -> None:
    """Add Google's well-known type file ``name`` (and its imports) from the protobuf
    package itself, as Schema Registries and Confluent's serializers assume."""
    from google.protobuf import (  # noqa: F401 - importing registers them
        any_pb2,
        descriptor_pb2,
        descriptor_pool,
        duration_pb2,
        empty_pb2,
        field_mask_pb2,
        struct_pb2,
        timestamp_pb2,
        wrappers_pb2,
    )  # fmt: skip

    try:
        pool.FindFileByName(name)
        return
    except KeyError:
        pass
    try:
        src = descriptor_pool.Default().FindFileByName(name)
    except KeyError:
        raise WireError(f"Protobuf schema: imports {name}, which is not a known type") from None
    for dep in src.dependencies:
        _add_well_known(pool, dep.name)
    fdp = descriptor_pb2.FileDescriptorProto()
    src.CopyToProto(fdp)
    pool.Add(fdp)


def _varint(body: bytes, pos: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        if pos >= len(body) or shift > 63:
            raise WireError("Protobuf: message indexes cut short")
        b = body[pos]
        pos += 1
        out |= (b & 0x7F) << shift
        if not b & 0x80:
            return (out >> 1) ^ -(out & 1), pos  # zig-zag
        shift += 7


def _message_indexes(body: bytes) -> tuple[tuple[int, ...], int]:
    """The message indexes after the schema id: a count then that many indexes, all
    zig-zag varints; a lone 0 means the first message type, ``[0]``."""
    n, pos = _varint(body, 0)
    if n == 0:
        return (0,), pos
    if not 0 < n <= 32:
        raise WireError(f"Protobuf: {n} message indexes")
    idx = []
    for _ in range(n):
        i, pos = _varint(body, pos)
        idx.append(i)
    return tuple(idx), pos


def _proto_dict(msg) -> dict:
    """The set fields of a message, as plain values (message fields as JSON objects)."""
    from google.protobuf import json_format

    out = {}
    for fd, value in msg.ListFields():
        if fd.message_type is not None and fd.message_type.full_name == (
            "google.protobuf.Timestamp"
        ):
            out[fd.name] = value.seconds + value.nanos / 1e9
        elif fd.message_type is not None:
            if fd.message_type.GetOptions().map_entry:
                out[fd.name] = {
                    k: json_format.MessageToDict(v) if hasattr(v, "ListFields") else v
                    for k, v in value.items()
                }
            elif _repeated(fd):
                out[fd.name] = [json_format.MessageToDict(v) for v in value]
            else:
                out[fd.name] = json_format.MessageToDict(value)
        elif _repeated(fd):
            out[fd.name] = list(value)
        else:
            out[fd.name] = value
    return out


def _repeated(fd) -> bool:
    rep = getattr(fd, "is_repeated", None)  # protobuf >= 5.28; ``label`` before
    return bool(rep) if rep is not None else fd.label == fd.LABEL_REPEATED
