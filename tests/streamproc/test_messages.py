"""Consumed messages as columns: large frames stay out of the shared buffer."""

from __future__ import annotations

import numpy as np

from streamproc.decode.decoding import decode_batch
from streamproc.decode.events import Limits
from streamproc.decode.frames import encode_frame
from streamproc.decode.messages import RawMessages


def test_large_frames_are_kept_aside_and_decoded_like_any_other() -> None:
    rows = 400  # a frame of well over 4 KB
    frame = encode_frame(
        np.arange(rows, dtype=float),
        ["a"] * rows,
        np.ones((rows, 4)),
        ids=[f"f{i}" for i in range(rows)],
    )
    event = b'{"ts": 1, "label": "b", "features": [1, 2, 3, 4]}'
    raw = RawMessages.from_tuples([(0, event, None), (1, frame, None), (2, None, None)])
    assert raw.kept_aside().tolist() == [False, True, False]
    assert len(raw.buf) == len(event)  # the frame was not copied
    assert raw.value(1) == frame and raw.value(0) == event and raw.value(2) is None
    # chunks count aside frames at their real size
    assert [len(c) for c in raw.chunks(max_bytes=len(frame))] == [1, 2]
    b = decode_batch("events", 0, raw, Limits())
    assert len(b) == rows + 1 and len(b.rejects) == 1
    assert sorted(set(b.primary_labels())) == ["a", "b"]
    # a selection keeps the frame reachable
    sub = raw.select(np.array([1]))
    assert sub.value(0) == frame and len(decode_batch("events", 0, sub, Limits())) == rows
