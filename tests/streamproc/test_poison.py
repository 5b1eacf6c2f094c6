"""Poison input: nothing a producer sends crashes or stalls the worker; every message that
cannot be processed becomes a dead letter with its reason and source offset."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import numpy as np
import orjson
import pytest
from confluent_kafka import Producer

from devtools.supervise import processed_all
from sampler import LabelReservoirs, QuotaPolicy
from snapshot_format import read_manifest
from streamproc.decode.decoding import decode_batch
from streamproc.decode.events import Limits
from streamproc.decode.frames import FRAME_MAGIC, encode_frame
from streamproc.decode.pii import PiiScrubber, redact
from streamproc.state import processor as processor_module
from streamproc.state.processor import PartitionProcessor, SamplerConfig
from streamproc.state.store import RocksPartitionStore
from streamproc.worker.deadletters import DeadLetterSink
from tests.conftest import read_topic

NOW = float(int(time.time()))


def _event(i: int, label: str = "a", **extra) -> bytes:
    return orjson.dumps({"id": f"e{i}", "ts": NOW - 10, "label": label,
                         "features": [1.0, 2.0, 3.0, 4.0], **extra})  # fmt: skip


def _deep_json(depth: int = 1_000) -> bytes:
    head = b'{"ts": 1.0, "label": "a", "features": [1, 2, 3, 4], "payload": '
    return head + b"[" * depth + b"]" * depth + b"}"


def _deep_frame(depth: int = 1_000) -> bytes:
    fr = encode_frame(np.full(2, NOW - 10), ["a", "b"], np.ones((2, 4)), payloads=[1, 2])
    cols = msgspec.msgpack.decode(fr[len(FRAME_MAGIC) :])
    cols["payloads"] = b"[" + b"[" * depth + b"]" * depth + b",1]"
    return FRAME_MAGIC + msgspec.msgpack.encode(cols)


def _label_list_frame(names: list[str]) -> bytes:
    """One row labelled ``names[0]`` in a frame whose vocabulary lists every name."""
    fr = encode_frame(np.full(1, NOW - 10), [names[0]], np.ones((1, 4)))
    cols = msgspec.msgpack.decode(fr[len(FRAME_MAGIC) :])
    cols["label_vocab"] = names
    return FRAME_MAGIC + msgspec.msgpack.encode(cols)


def test_deep_nesting_is_a_dead_letter_and_neighbours_are_kept() -> None:
    msgs = [(0, _event(0), NOW), (1, _deep_json(), NOW), (2, _deep_frame(), NOW),
            (3, _event(3), NOW)]  # fmt: skip
    b = decode_batch("events", 0, msgs, Limits(), now=NOW)
    assert b.offsets.tolist() == [0, 3]
    reasons = {r.offset: r.reason for r in b.rejects}
    assert reasons[1].startswith("decode: RecursionError")
    assert reasons[2] == "frame: payloads: nested too deeply"


def test_a_decoder_defect_costs_one_message_not_the_partition(tmp_path: Path, monkeypatch) -> None:
    """Should decoding raise for a message (a defect, not bad input), the batch is decoded
    message by message: only that message is dead-lettered, the others are sampled."""
    real = processor_module.decode_batch

    def flaky(topic, partition, raw, *a, **kw):
        if any(raw.value(i) == b'{"boom": 1}' for i in range(len(raw))):
            raise KeyError("a defect")
        return real(topic, partition, raw, *a, **kw)

    monkeypatch.setattr(processor_module, "decode_batch", flaky)
    cfg = SamplerConfig(QuotaPolicy(min_capacity=1, max_capacity=5, global_cap=100, max_labels=4))
    proc = PartitionProcessor("events", 0, RocksPartitionStore(tmp_path / "s"), cfg, Limits())
    rejects = proc.process([(0, _event(0), NOW), (1, b'{"boom": 1}', NOW), (2, _event(2), NOW)])
    assert [(r.offset, r.reason) for r in rejects] == [(1, "internal: KeyError: 'a defect'")]
    counts = {k: v for k, v in proc.counters.items() if not k.startswith("_")}
    assert counts == {"events": 3, "accepted": 2, "rejected": 1, "rows": 2}
    assert proc.next_offset == 3
    proc.store.close()


def test_unused_labels_are_not_registered_and_error_policy_dead_letters(tmp_path: Path) -> None:
    names = ["used"] + [f"unused-{i}" for i in range(300)]
    for policy in ("label", "error"):
        cfg = SamplerConfig(QuotaPolicy(min_capacity=1, max_capacity=5, global_cap=100,
                                        max_labels=4, on_overflow=policy))  # fmt: skip
        proc = PartitionProcessor("events", 0, RocksPartitionStore(tmp_path / policy), cfg,
                                  Limits())  # fmt: skip
        assert proc.process([(0, _label_list_frame(names), NOW)]) == []
        assert proc.reservoirs.labels == ["used"]
        msgs = [(1 + i, _event(i, f"L{i}"), NOW) for i in range(6)]
        rejects = proc.process(msgs)
        if policy == "label":
            assert rejects == [] and "__overflow__" in proc.reservoirs.labels
        else:
            assert [r.offset for r in rejects] == [4, 5, 6]
            assert all("on_label_overflow=error" in r.reason for r in rejects)
            assert orjson.loads(rejects[0].value)["labels"] == ["L3"]
            assert proc.counters["accepted"] == 1 + 3
        proc.store.close()


def test_merge_applies_the_overflow_policy() -> None:
    pol = QuotaPolicy(min_capacity=1, max_capacity=5, global_cap=100, max_labels=4,
                      on_overflow="label")  # fmt: skip
    a, b = LabelReservoirs(pol), LabelReservoirs(pol)
    for r, names, base in ((a, ["a", "b", "c"], 0), (b, ["d", "e", "f"], 1_000)):
        ids = r.encode(names)
        r.update(np.repeat(ids, 10), np.ones(30), np.arange(30, dtype=np.uint64) + base)
    m = a.merge(b)
    assert m.labels == ["a", "b", "c", "__overflow__"]
    assert m.seen_counts() == {"a": 10, "b": 10, "c": 10, "__overflow__": 30}
    assert sum(m.retained_counts().values()) == 20


def test_future_timestamps_are_checked_against_the_worker_clock() -> None:
    thirty_years = 30 * 365 * 86_400.0
    ahead = orjson.dumps({"ts": NOW + thirty_years, "label": "a", "features": [1, 2, 3, 4]})
    frame = encode_frame(np.array([NOW + thirty_years]), ["a"], np.ones((1, 4)))
    msgs = [(0, ahead, NOW + thirty_years), (1, frame, NOW + thirty_years), (2, ahead, None)]
    b = decode_batch("events", 0, msgs, Limits(), now=NOW)
    assert len(b) == 0
    assert [r.offset for r in b.rejects] == [0, 1, 2]
    assert all("ts:" in r.reason or "frame row 0: ts" in r.reason for r in b.rejects)


def test_pii_policy_covers_nested_fields_lists_and_non_ascii() -> None:
    s = PiiScrubber(b"k" * 32, hash_fields=("user",), text_fields=("msg",), hash_ids=True)
    doc = {"a": {"user": "alice", "b": [{"msg": "ring +49 30 1234 5678 or mail józef@exämple.pl"}]},
           "msg": "plain"}  # fmt: skip
    out, why = s(orjson.dumps(doc))
    assert why is None
    got = orjson.loads(out)
    assert got["a"]["user"].startswith("h:") and got["a"]["user"] != "alice"
    assert got["a"]["b"][0]["msg"] == "ring [phone] or mail [email]"
    long = orjson.dumps({"msg": "x" * 70_000})
    assert s(long)[1] == "payload.msg: 70000 characters exceed pii_max_text_chars=65536"
    assert s.scrub_id("user-42") == s.pseudonym("user-42") != "user-42"


@pytest.mark.parametrize(
    "text",
    ["a" * 60_000 + "@", "@" * 60_000, "a@" * 30_000, "1 " * 30_000, "x." * 30_000 + "@b"],
)
def test_redaction_terminates_on_pathological_text(text: str) -> None:
    """Inputs that made the old regular expressions backtrack: redaction is one scan
    (the benchmark-free check here is that it returns the same length class of output)."""
    out = redact(text)
    assert len(out) <= len(text)


def test_dead_letters_are_scrubbed_with_headers_kept() -> None:
    class P:
        def __init__(self) -> None:
            self.sent = []

        def produce(self, topic, value, key, headers, on_delivery=None):
            self.sent.append((value, dict(headers)))

        def poll(self, t):
            return 0

    from streamproc.decode.events import Reject

    s = PiiScrubber(b"k" * 32, hash_fields=("user",), text_fields=("msg",), hash_ids=True)
    p = P()
    sink = DeadLetterSink(p, "dlq", "events", scrub=s)
    bad_json = orjson.dumps({"id": "cust-7", "ts": "x", "payload": {"user": "alice",
                             "msg": "bob@example.com"}})  # fmt: skip
    sink.send([Reject(0, 5, "schema: Expected `float`", bad_json),
               Reject(0, 6, "decode: truncated", b'{"msg": "mail carol@example.org')])  # fmt: skip
    (v1, h1), (v2, h2) = p.sent
    for v in (v1, v2):
        assert b"alice" not in v and b"bob@" not in v and b"carol@" not in v
        assert b"cust-7" not in v
    assert h1["source_offset"] == b"5" and h1["reason"].startswith(b"schema:")
    assert h1["pii"] == b"scrubbed" and h2["source_offset"] == b"6"


@pytest.mark.integration
def test_poison_messages_never_stop_a_real_worker(deployment) -> None:
    """A real worker on the embedded broker: deep nesting (JSON and frame), frames listing
    hundreds of unused labels in every partition, more used labels across partitions than
    max_labels (64 here), a message over max_message_bytes. All good events are counted,
    every poison message is a dead letter with its reason, and snapshots still work."""
    w = deployment.worker("w", STRATA_MAX_MESSAGE_BYTES="1000000")
    w.wait_ready()
    prod = Producer({"bootstrap.servers": deployment.broker.bootstrap,
                     "message.max.bytes": 10_000_000})  # fmt: skip
    now = time.time()
    unused = [f"unused-{i}" for i in range(300)]
    sent = {p: 0 for p in range(deployment.partitions)}
    good = 0
    poison = 0

    def send(p: int, value: bytes, is_good: bool) -> None:
        nonlocal good, poison
        prod.produce(deployment.events, value, partition=p)
        sent[p] += 1
        good += is_good
        poison += not is_good

    for p in range(deployment.partitions):
        send(p, _deep_json(), False)
        send(p, _deep_frame(), False)
        send(p, _label_list_frame([f"p{p}-used"] + unused), True)
        send(p, b"{" * 3_000_000, False)  # over max_message_bytes
        for i in range(20):  # 80 distinct used labels over the 4 partitions
            ev = {"id": f"{p}-{i}", "ts": now - 5, "label": f"L{p}-{i}", "features": [1, 2, 3, 4]}
            send(p, orjson.dumps(ev), True)
    prod.flush(30)
    w.wait_until(lambda s: processed_all(sent)([s]), 120, "all messages processed")
    before = len(w.status()["snapshots"])
    w.request_snapshot()
    st = w.wait_until(lambda s: len(s["snapshots"]) > before, 60, "a snapshot")
    m = read_manifest(deployment.root / "snap-g", st["snapshots"][-1])
    assert m.counters["accepted"] == good and m.counters["rejected"] == poison
    assert sum(m.seen.values()) == good
    # the overflow policy applied: 64 reservoirs, one of them the evaluation slice's
    # (a label whose only events went to the slice counts under __overflow__ then)
    assert len(m.seen) == 64 - 1 and "__overflow__" in m.seen
    dlq = read_topic(deployment.broker.bootstrap, deployment.dlq, expect=poison, timeout=60)
    reasons = sorted(dict(x.headers())["reason"].decode().split(":")[0] for x in dlq)
    assert reasons == sorted(["decode", "frame", "value"] * deployment.partitions)
    assert w.proc.poll() is None  # alive


def test_damaged_store_entries_are_skipped_not_fatal(tmp_path: Path) -> None:
    """A corrupt manifest, a manifest naming another directory, a corrupt LATEST: the next
    snapshot is built anyway, and retention removes only what it may."""
    from snapshot_format import list_manifests
    from streamproc.snapshot.build import build_snapshot
    from streamproc.snapshot.shards import export_shard, write_shard

    store, shards = tmp_path / "snaps", tmp_path / "shards"
    cfg = SamplerConfig(QuotaPolicy(min_capacity=1, max_capacity=5, global_cap=100, max_labels=4))
    proc = PartitionProcessor("events", 0, RocksPartitionStore(tmp_path / "s"), cfg, Limits())
    proc.process([(i, _event(i), NOW) for i in range(10)])
    proc.checkpoint()
    write_shard(shards, export_shard(0, proc.next_offset, proc.counters, proc.reservoirs,
                                     proc.store))  # fmt: skip
    m1 = build_snapshot(shards, store, retention=1)
    victim = tmp_path / "victim"
    victim.mkdir()
    bad = store / "fedcba9876543210"
    bad.mkdir()
    (bad / "manifest.json").write_text("{broken")
    liar = store / "0000000000000000"
    liar.mkdir()
    (liar / "manifest.json").write_bytes(
        read_manifest(store, m1.version).to_json().replace(m1.version.encode(), b"../victim")
    )
    (store / "LATEST").write_text("../../etc")
    proc.process([(10, _event(10), NOW)])
    proc.checkpoint()
    write_shard(shards, export_shard(0, proc.next_offset, proc.counters, proc.reservoirs,
                                     proc.store))  # fmt: skip
    m2 = build_snapshot(shards, store, retention=1)
    assert m2 is not None and m2.parent is None  # the damaged LATEST had no valid parent
    assert [m.version for m in list_manifests(store)] == [m2.version]
    assert victim.exists() and bad.exists()  # nothing outside, nothing unreadable deleted
    proc.store.close()


def test_client_supplied_metric_labels_are_bounded() -> None:
    from streamproc.ops.metrics import WorkerMetrics

    m = WorkerMetrics(max_labels=3)
    got = [m.bounded(f"label-{i}") for i in range(10)] + [m.bounded("x" * 500)]
    assert got[:3] == ["label-0", "label-1", "label-2"]
    assert set(got[3:]) == {"__other__"} and m.bounded("label-1") == "label-1"
