"""The JSON fast path (numba scan) against the reference path (msgspec per message).

The fast path may only accept what the reference accepts, with bit-identical values;
everything else must reach the reference decoder and get its exact reject reason. The
comparison runs on generated events (valid, odd and invalid), on byte-level mutations of
them, and on number spellings chosen to hit the exact-conversion boundaries.
"""

from __future__ import annotations

import json

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamproc.decode.decoding import decode_batch
from streamproc.decode.events import Limits
from streamproc.decode.eventscan import OK, out_width, scan_events
from streamproc.decode.messages import RawMessages

LIM = Limits(feature_dim=3, max_event_bytes=2_000, max_future_s=60.0, max_labels_per_event=3)


def _both(values: list[bytes | None], msg_ts: float | None = 1_000.0):
    msgs = [(10 + i, v, msg_ts) for i, v in enumerate(values)]
    return (
        decode_batch("events", 2, msgs, LIM),
        decode_batch("events", 2, msgs, LIM, reference_only=True),
    )


def _same(fast, ref) -> None:
    assert fast.offsets.tolist() == ref.offsets.tolist()
    # bit-identical floats (this also tells 0.0 from -0.0)
    assert fast.ts.view(np.int64).tolist() == ref.ts.view(np.int64).tolist()
    assert fast.features.view(np.int32).tolist() == ref.features.view(np.int32).tolist()
    assert fast.labels == ref.labels
    assert fast.keys.tolist() == ref.keys.tolist()
    assert list(fast.ids) == list(ref.ids)
    assert [bytes(p) for p in fast.payloads] == [bytes(p) for p in ref.payloads]
    fr = None if fast.relabel is None else fast.relabel.tolist()
    rr = None if ref.relabel is None else ref.relabel.tolist()
    assert fr == rr
    assert [(r.offset, r.reason, r.value) for r in fast.rejects] == [
        (r.offset, r.reason, r.value) for r in ref.rejects
    ]


def _fast_share(values: list[bytes]) -> float:
    raw = RawMessages.from_tuples([(i, v, None) for i, v in enumerate(values)])
    n, dim, cap = len(raw), LIM.feature_dim, LIM.max_labels_per_event
    status = np.empty(n, np.int8)
    out = np.zeros((n, out_width(dim, cap)), np.int64)
    hard = np.zeros((n * (1 + dim), 4), np.int64)
    scan_events(
        raw.array,
        raw.starts,
        raw.ends,
        raw.tomb,
        raw.kept_aside(),
        2_000,
        dim,
        cap,
        status,
        out,
        hard,
    )
    return float((status == OK).mean())


GOOD = {"ts": 990.5, "label": "a", "features": [1.0, -2.5, 3e-3], "payload": {"x": [1, "é"]}}

numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=-1e6, max_value=1e6).map(lambda x: round(x, 4)),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -0.0, 0.0, 1e22, 1e23, 9007199254740993, 1e-22, 5e-324, 1e308]),
)
label_text = st.one_of(
    st.sampled_from(["a", "b", "login_error", " ", "", "x" * 128, "x" * 129, " a "]),
    st.text(min_size=0, max_size=6),
)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


def _mostly(good, odd):
    """Usually a well-formed value, sometimes an odd one."""
    return st.one_of(good, good, good, good, odd)


good_numbers = st.one_of(
    st.floats(min_value=-1e6, max_value=1e6).map(lambda x: round(x, 4)),
    st.floats(min_value=-1e6, max_value=1e6),
    st.integers(min_value=-1000, max_value=1000),
)


_often = st.sampled_from([True] * 19 + [False])
_sometimes = st.sampled_from([False] * 4 + [True])
_rarely = st.sampled_from([False] * 29 + [True])


@st.composite
def events(draw) -> dict:
    ev: dict = {}
    if draw(_often):
        good_ts = st.floats(min_value=0, max_value=1_050)
        ev["ts"] = draw(_mostly(good_ts, st.one_of(numbers, st.none(), st.text(max_size=3))))
    which = draw(st.sampled_from(["label"] * 5 + ["labels"] * 3 + ["both", "none"]))
    if which in ("label", "both"):
        ev["label"] = draw(
            _mostly(
                st.sampled_from(["a", "b", "c_1"]), st.one_of(label_text, st.none(), st.integers())
            )
        )
    if which in ("labels", "both"):
        ev["labels"] = draw(
            _mostly(
                st.lists(st.sampled_from(["a", "b", "d"]), min_size=1, max_size=3),
                st.one_of(st.lists(label_text, max_size=5), st.none()),
            )
        )
    if draw(_often):
        ev["features"] = draw(
            _mostly(
                st.lists(good_numbers, min_size=3, max_size=3),
                st.one_of(st.lists(numbers, min_size=3, max_size=3), st.lists(numbers, max_size=5)),
            )
        )
    if draw(st.booleans()):
        ev["id"] = draw(
            _mostly(st.sampled_from(["e-1", "e-2", "x"]), st.one_of(st.text(max_size=8), st.none()))
        )
    if draw(st.booleans()):
        ev["payload"] = draw(json_values)
    if draw(_sometimes):
        ev["relabel"] = draw(st.one_of(st.booleans(), st.none()))
    if draw(_rarely):
        ev["extra"] = 1
    return ev


def _encode(ev: dict, style: int) -> bytes:
    if style == 0:
        return orjson.dumps(ev)
    if style == 1:
        return json.dumps(ev, ensure_ascii=False).encode()
    return (" \n" + json.dumps(ev, indent=1, ensure_ascii=True) + "\t").encode()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(events(), st.integers(0, 2)), min_size=1, max_size=12))
def test_fast_path_equals_reference_on_generated_events(evs) -> None:
    values = []
    for ev, style in evs:
        try:
            values.append(_encode(ev, style))
        except (TypeError, ValueError, OverflowError):  # e.g. ints beyond 64 bits in orjson
            values.append(json.dumps(ev).encode())
    _same(*_both(values))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.integers(0, 200), st.integers(0, 255), st.sampled_from(["flip", "cut", "ins"])
        ),
        min_size=1,
        max_size=4,
    )
)
def test_fast_path_equals_reference_on_mutated_bytes(edits) -> None:
    base = bytearray(
        orjson.dumps({**GOOD, "id": "e-9", "labels": None, "payload": {"k": "v\\n", "n": [1e5]}})
    )
    for pos, byte, kind in edits:
        pos %= len(base) + 1
        if kind == "flip" and pos < len(base):
            base[pos] = byte
        elif kind == "cut":
            del base[pos:]
        else:
            base[pos:pos] = bytes([byte])
    _same(*_both([bytes(base), orjson.dumps(GOOD)]))


@pytest.mark.parametrize(
    "text",
    [
        "0", "-0", "0.0", "-0.0", "1", "-1", "1.5", "0.1", "0.3", "1e22", "1e23", "1e-22",
        "1e-23", "9007199254740992", "9007199254740993", "123456789012345678",
        "1234567890123456789", "12345678901234567890123", "1.7976931348623157e308", "5e-324",
        "2.2250738585072014e-308", "0.000001", "1E+2", "1e-0", "4.35", "1795390643.2375906",
        "1795390643.25", "-3.4028235677973366e38", "3.4028236e38", "1e400", "-1e400",
        "00", "01", "1.", ".5", "+1", "1e", "1e+", "--1", "1.e5", "0x10", "NaN", "Infinity",
    ],
)  # fmt: skip
def test_number_spellings(text: str) -> None:
    ev = f'{{"ts": 5, "label": "a", "features": [{text}, 1, 2], "payload": {text}}}'
    fast, ref = _both([ev.encode(), ev.replace('"ts": 5', f'"ts": {text}').encode()])
    _same(fast, ref)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=0, max_value=10**19),
    st.integers(min_value=-30, max_value=30),
    st.booleans(),
)
def test_decimal_conversion_is_correctly_rounded(mant: int, exp: int, neg: bool) -> None:
    text = f"{'-' if neg else ''}{mant}e{exp}"
    ev = f'{{"ts": {text}, "label": "a", "features": [{text}, 0, 0]}}'.encode()
    fast, ref = _both([ev], msg_ts=None)
    _same(fast, ref)
    if len(fast):
        assert fast.ts[0] == float(text)


def test_typical_events_take_the_fast_path() -> None:
    """Producer-shaped events never need the reference decoder (a regression guard)."""
    rng = np.random.default_rng(0)
    values = [
        orjson.dumps(
            {
                "id": f"evt-0-{i}",
                "ts": 1_795_390_643.2375906 + i * 0.001,
                "label" if i % 7 else "labels": "label_03" if i % 7 else ["label_01", "label_02"],
                "features": rng.normal(size=3).round(4).tolist(),
                "payload": {"user": f"user{i}", "msg": f"event {i} – ok", "n": [1, 2.5, None]},
            }
        )
        for i in range(2_000)
    ]
    assert _fast_share(values) == 1.0
    _same(*_both(values, msg_ts=None))


def test_poison_pills_beside_good_events() -> None:
    good = [orjson.dumps({**GOOD, "id": f"g{i}"}) for i in range(5)]
    bad = [b"", None, b"{", b'{"ts":1,"label":"a","features":[1,2,3],"payload":[01]}', b"\xff"]
    values = [v for pair in zip(good, bad, strict=True) for v in pair]
    fast, ref = _both(values)
    _same(fast, ref)
    assert len(fast) == 5 and len(fast.rejects) == 5
