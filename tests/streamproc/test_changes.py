"""RetainedChanges against a plain replay of the operations, item by item."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from streamproc.state.changes import RetainedChanges

ops = st.lists(
    st.tuples(
        st.booleans(),  # admit?
        st.lists(st.tuples(st.integers(0, 2), st.integers(0, 6)), min_size=1, max_size=6),
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(ops, st.sets(st.tuples(st.integers(0, 2), st.integers(0, 6))))
def test_resolve_equals_replay(log, stored_before) -> None:
    changes = RetainedChanges()
    state = {item: "stored" for item in stored_before}  # what the store holds before
    expect_put: dict = {}
    pending = 0  # rows of pending records, numbered across batches
    for admit, items in log:
        labels = np.array([lab for lab, _ in items], dtype=np.int64)
        keys = np.array([key for _, key in items], dtype=np.uint64)
        rows = pending + np.arange(len(items), dtype=np.int64)
        if admit:
            changes.admit(labels, keys, rows)
            for row, item in zip(rows.tolist(), items, strict=True):
                expect_put[item] = row
                state[item] = "new"
            pending += len(items)
        else:
            changes.evict(labels, keys)
            for item in items:
                expect_put.pop(item, None)
                state[item] = "gone"
    puts, deletes = changes.resolve()
    got_put = {
        (int(lab), int(key)): int(r)
        for lab, key, r in zip(puts.labels, puts.keys, puts.rows, strict=True)
    }
    # the last admission of an item still retained is stored
    assert got_put == {i: expect_put[i] for i in expect_put if state[i] == "new"}
    deleted = {(int(a), int(b)) for a, b in zip(deletes.labels, deletes.keys, strict=True)}
    # every item gone at the end is absent from the store afterwards ...
    first_op: dict = {}
    for admit, items in log:
        for item in items:
            first_op.setdefault(item, admit)
    for item, now in state.items():
        if now == "gone" and first_op.get(item) is False:  # it was stored before
            assert item in deleted
    # ... and deletions only touch items whose first operation was an eviction
    assert all(first_op[i] is False and state[i] == "gone" for i in deleted)
