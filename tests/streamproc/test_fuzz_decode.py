"""Fuzzing both decode paths (JSON events and frames) through a real partition processor.

Structure-aware: events are built from the schema with wrong types, odd numbers, escapes,
non-ASCII, deep nesting and byte-level mutations; frames are real frames whose columns are
replaced or truncated. Known-valid events are interleaved. Properties, for every batch:
nothing raises; every message is accounted for (rows accepted or a dead letter with a
reason and its offset); every valid event around the poison is accepted.

Bounded in ``make test`` (``STRATA_FUZZ_EXAMPLES``, default 150 batches); run longer with
``STRATA_FUZZ_EXAMPLES=5000 pytest tests/streamproc/test_fuzz_decode.py``.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import msgspec
import numpy as np
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sampler import QuotaPolicy
from streamproc.decode.events import Limits
from streamproc.decode.frames import FRAME_MAGIC, encode_frame
from streamproc.state.processor import PartitionProcessor, SamplerConfig
from streamproc.state.store import RocksPartitionStore

EXAMPLES = int(os.environ.get("STRATA_FUZZ_EXAMPLES", "150"))
NOW = float(int(time.time()))
LIMITS = Limits(feature_dim=3, max_event_bytes=4_096, max_future_s=60.0,
                max_message_bytes=200_000)  # fmt: skip
CFG = SamplerConfig(QuotaPolicy(min_capacity=2, max_capacity=8, global_cap=256, max_labels=16,
                                on_overflow="label"))  # fmt: skip

json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
)  # fmt: skip
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=20,
)  # fmt: skip
msgpack_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(),
              st.text(max_size=20), st.binary(max_size=20)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=20,
)  # fmt: skip
label = st.one_of(st.sampled_from(["a", "b", "c", "é", 'q"t', "\\n", " ", ""]),
                  st.text(max_size=140))  # fmt: skip
number = st.one_of(st.floats(), st.integers(-(2**80), 2**80), st.just(NOW - 5), json_value)
feature_list = st.one_of(st.lists(number, min_size=0, max_size=5), json_value)


@st.composite
def json_event(draw) -> bytes:
    doc: dict = {}
    for key, strat in (
        ("id", st.one_of(st.text(max_size=30), json_value)),
        ("ts", number),
        ("label", st.one_of(label, json_value)),
        ("labels", st.lists(label, max_size=10)),
        ("features", feature_list),
        ("payload", json_value),
        ("relabel", st.one_of(st.booleans(), json_value)),
        (draw(st.text(max_size=8)), json_value),
    ):
        if draw(st.booleans()):
            doc[key] = draw(strat)
    # stdlib json writes any int, NaN and Infinity (not JSON: poison as well)
    raw = json.dumps(doc, ensure_ascii=draw(st.booleans())).encode()
    return draw(_mutate(raw))


@st.composite
def frame(draw) -> bytes:
    n = draw(st.integers(1, 6))
    fr = encode_frame(
        np.full(n, NOW - 5.0), [draw(st.sampled_from(["a", "b", "é"])) for _ in range(n)],
        np.ones((n, 3)), ids=[f"f{i}" for i in range(n)], payloads=[{"i": i} for i in range(n)],
    )  # fmt: skip
    cols = msgspec.msgpack.decode(fr[len(FRAME_MAGIC) :])
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(sorted(cols) + ["extra"]))
        cols[key] = draw(st.one_of(msgpack_value, st.binary(max_size=64)))
    raw = FRAME_MAGIC + msgspec.msgpack.encode(cols)
    return draw(_mutate(raw))


@st.composite
def _mutate(draw, raw: bytes) -> bytes:
    kind = draw(st.sampled_from(["none", "none", "flip", "truncate", "nest", "splice"]))
    if kind == "flip" and raw:
        b = bytearray(raw)
        for _ in range(draw(st.integers(1, 4))):
            b[draw(st.integers(0, len(b) - 1))] = draw(st.integers(0, 255))
        return bytes(b)
    if kind == "truncate" and raw:
        return raw[: draw(st.integers(0, len(raw) - 1))]
    if kind == "nest":
        depth = draw(st.integers(100, 3_000))
        head = b'{"ts": %d, "label": "a", "features": [1, 2, 3], "payload": ' % int(NOW)
        return head + b"[" * depth + b"]" * depth + b"}"
    if kind == "splice":
        return raw + draw(st.binary(max_size=16))
    return raw


def _valid(i: int) -> bytes:
    return orjson.dumps({"id": f"ok-{i}", "ts": NOW - 1, "label": "ok", "features": [1, 2, 3]})


message = st.one_of(json_event(), frame(), st.binary(max_size=64), st.just(b""))


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
@given(st.lists(message, min_size=1, max_size=12), st.integers(0, 2**32))
def test_no_message_escapes(poison: list[bytes], seed: int) -> None:
    rng = np.random.default_rng(seed)
    msgs, valid = [], []
    for value in poison:
        if rng.random() < 0.5:
            valid.append(len(msgs))
            msgs.append(_valid(len(msgs)))
        msgs.append(value)
    valid.append(len(msgs))
    msgs.append(_valid(len(msgs)))
    with tempfile.TemporaryDirectory() as d:
        proc = PartitionProcessor("events", 0, RocksPartitionStore(Path(d) / "s"), CFG, LIMITS)
        try:
            rejects = proc.process([(i, v, NOW) for i, v in enumerate(msgs)])
            batch = proc.last_batch
            accepted = set(batch.offsets.tolist()) if batch is not None else set()
            rejected = {r.offset for r in rejects}
            assert all(isinstance(r.reason, str) and r.reason for r in rejects)
            assert accepted | rejected == set(range(len(msgs)))  # every message accounted for
            assert set(valid) <= accepted and not set(valid) & rejected
            assert proc.counters["events"] == len(msgs)
            assert proc.counters["rejected"] == len(rejects)
            proc.checkpoint()  # the state of what was accepted is writable
        finally:
            proc.store.close()
