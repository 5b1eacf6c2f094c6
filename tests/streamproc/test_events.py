from __future__ import annotations

import numpy as np
import orjson
import pytest

from streamproc.decode.decoding import decode_batch
from streamproc.decode.events import Limits
from streamproc.decode.frames import FRAME_MAGIC, encode_frame
from streamproc.decode.pii import PiiScrubber

L = Limits(feature_dim=2, max_event_bytes=1_000, max_future_s=60.0)
GOOD = {"ts": 100.0, "label": "a", "features": [1.0, 2.0], "payload": {"x": 1}}


def _one(value: bytes | None, msg_ts: float | None = 100.0):
    return decode_batch("events", 3, [(42, value, msg_ts)], L)


def test_good_event_becomes_columns() -> None:
    b = _one(orjson.dumps({**GOOD, "id": "e1"}))
    assert len(b) == 1 and not b.rejects
    assert b.labels == [["a"]] and b.payloads == [b'{"x":1}'] and b.ids == ["e1"]
    np.testing.assert_array_equal(b.features, [[1.0, 2.0]])
    # the key comes from the id, so the same event id gives the same key anywhere
    assert _one(orjson.dumps({**GOOD, "id": "e1"})).keys[0] == b.keys[0]
    # without an id it derives from topic/partition/offset
    assert _one(orjson.dumps(GOOD)).ids == ["events/3/42"]


@pytest.mark.parametrize(
    "value,reason",
    [
        (b"\xff\xfe", "decode:"),
        (b"[1, 2]", "schema:"),
        (orjson.dumps({**GOOD, "lable": "x"}), "schema: Object contains unknown field `lable`"),
        (orjson.dumps({k: v for k, v in GOOD.items() if k != "label"}), "label: missing"),
        (orjson.dumps({**GOOD, "label": " "}), "label: empty"),
        (
            orjson.dumps({**{k: v for k, v in GOOD.items() if k != "label"}, "labels": []}),
            "label: missing",
        ),
        (orjson.dumps({**GOOD, "labels": ["b"]}), "label/labels: give one"),
        (orjson.dumps({**GOOD, "features": [1.0]}), "features: expected 2 numbers, got 1"),
        (b'{"ts": 100, "label": "a", "features": [1e999, 1]}', "schema: Number out of range"),
        (orjson.dumps({**GOOD, "ts": 100.0 + 61}), "ts: 161.000 is 61s after"),
        (orjson.dumps({**GOOD, "ts": "yesterday"}), "schema: Expected `float`"),
        (orjson.dumps({**GOOD, "payload": "x" * 2_000}), "value: 2"),
        (None, "value: empty message"),
    ],
)
def test_bad_events_are_rejected_with_a_named_reason(value, reason) -> None:
    b = _one(value)
    assert len(b) == 0
    assert len(b.rejects) == 1
    r = b.rejects[0]
    assert r.reason.startswith(reason) or reason in r.reason, r.reason
    assert (r.partition, r.offset) == (3, 42)


def test_frame_rows_are_validated_one_by_one() -> None:
    frame = encode_frame(
        [1.0, np.nan, 3.0, 4.0],
        ["a", "b", ["c", "d"], " "],
        np.array([[1, 2], [3, 4], [5, 6], [7, 8]]),
        payloads=[{"k": 1}, None, [1], "s"],
    )
    assert frame.startswith(FRAME_MAGIC)
    b = decode_batch("events", 0, [(7, frame, 100.0)], L)
    assert b.labels == [["a"], ["c", "d"]]
    assert b.ids == ["events/0/7#0", "events/0/7#2"]
    assert [bytes(p) for p in b.payloads] == [b'{"k":1}', b"[1]"]
    assert sorted(r.reason.split(":")[0] for r in b.rejects) == ["frame row 1", "frame row 3"]
    assert len(set(b.keys.tolist())) == 2


def test_corrupt_frame_is_rejected_whole() -> None:
    b = decode_batch("events", 0, [(7, FRAME_MAGIC + b"\x81\xa2garbage", 100.0)], L)
    assert len(b) == 0 and b.rejects[0].reason.startswith("frame:")
    wrong_dim = encode_frame([1.0], ["a"], np.ones((1, 3)))
    b = decode_batch("events", 0, [(8, wrong_dim, 100.0)], L)
    assert b.rejects[0].reason == "frame: dim: expected 2, got 3"


def test_pii_is_scrubbed_before_storage() -> None:
    s = PiiScrubber(b"0123456789abcdef", hash_fields=("user",), text_fields=("msg",))
    ev = {**GOOD, "payload": {"user": "alice", "msg": "write to a.b@ex.org, tel 0044 20 7946 0958"}}
    b = decode_batch("events", 0, [(1, orjson.dumps(ev), 100.0)], L, scrub=s)
    doc = orjson.loads(b.payloads[0])
    assert doc["user"] == s.pseudonym("alice") and doc["user"] != "alice"
    assert doc["msg"] == "write to [email], tel [phone]"
    other = PiiScrubber(b"another-key-0123", hash_fields=("user",))
    assert other.pseudonym("alice") != s.pseudonym("alice")  # keyed
    bad = {**GOOD, "payload": {"msg": 5}}
    b = decode_batch("events", 0, [(1, orjson.dumps(bad), 100.0)], L, scrub=s)
    assert b.rejects[0].reason == "payload.msg: expected a string for a PII text field"


def test_frame_columns_are_checked_whole() -> None:
    from streamproc.decode.frames import Frame

    good = dict(
        ts=np.array([1.0, 2.0]).tobytes(),
        features=np.ones(4, "<f4").tobytes(),
        dim=2,
        label_vocab=["a"],
        label_codes=np.zeros(2, "<i4").tobytes(),
    )
    cases = [
        (dict(label_codes=np.array([0, 5], "<i4").tobytes()), "label_codes: code outside"),
        (dict(label_offsets=np.array([0, 2, 1], "<i8").tobytes()), "label_offsets"),
        (dict(payloads=b'[{"x": 1}, {oops}]'), "frame: JSON is malformed"),
        (dict(payloads=b"[1, 2, 3]"), "payloads: 3 entries for 2 rows"),
        (dict(ids=["only-one"]), "ids: 1 entries for 2 rows"),
    ]
    for change, reason in cases:
        import msgspec

        value = FRAME_MAGIC + msgspec.msgpack.encode(Frame(**{**good, **change}))
        b = decode_batch("events", 0, [(3, value, 100.0)], L)
        assert len(b) == 0 and reason in b.rejects[0].reason, (reason, b.rejects[0].reason)


def test_a_batch_of_frames_and_json_keeps_every_label() -> None:
    f1 = encode_frame([1.0, 2.0], ["x", ["y", "x"]], np.ones((2, 2)))
    f2 = encode_frame([3.0], ["z"], np.ones((1, 2)))
    ev = orjson.dumps({**GOOD, "label": "y"})
    b = decode_batch("events", 0, [(1, f1, 100.0), (2, ev, 100.0), (3, f2, 100.0)], L)
    assert sorted(map(tuple, b.labels)) == [("x",), ("y",), ("y", "x"), ("z",)]
    assert sorted(b.primary_labels()) == ["x", "y", "y", "z"]
