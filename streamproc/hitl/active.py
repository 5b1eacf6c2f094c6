"""Active learning: which predictions to send for labelling, with a known probability.

Every ``POST /predict`` is unlabelled traffic scored by the answering model. Its
uncertainty is ``u = 1 - margin`` (margin: top probability minus the second). The
prediction is selected for annotation with probability

    q = min(1, u * 0.8 * budget / U)

where ``budget`` is the annotation budget per hour and predicted label, and ``U`` the sum
of ``u`` over that label's predictions in the last hour, this one included (during a
label's first hour, the sum so far scaled up to an hour): over an hour the expected
number of selections is about 0.8 x the budget, and uncertain items are more likely to be
chosen than confident ones. The selections aim at 80% of the budget, so that the hard
cap at the budget (a label whose budget is spent for the hour selects nothing more;
counted) rarely cuts a draw -- a cut draw would make the real probability smaller than
``q``. The draw is a hash of the prediction id, so it is reproducible.

``q`` is recorded with the item and travels with its annotation into the event's payload
(``selection_probability``): the item was *selected*, not sampled, and a consumer that
estimates the natural mix weights it by ``1 / q`` (the trainer does, with
``--weighting prior``), so estimates stay unbiased.

>>> s = Selector(budget_per_hour=10)
>>> picked = [s.offer(f"p{i}", "cat", 0.5, now=i * 3.6) for i in range(2000)]  # 2 hours
>>> sum(q is not None for q in picked[1000:])  # the second hour: about 0.8 x 10
7
>>> uncertainty([0.7, 0.2, 0.1]), round(entropy([0.5, 0.5]), 3)
(0.5, 0.693)
"""

from __future__ import annotations

import hashlib
import math
from collections import deque

WINDOW_S = 3_600.0
TARGET = 0.8  # expected selections per hour, as a share of the budget (headroom for the cap)
_BUCKET_S = 60.0


def uncertainty(probs) -> float:
    """1 - (top probability - second): 0 for a sure answer, 1 for a tie."""
    p = sorted((float(x) for x in probs), reverse=True)
    return 1.0 - (p[0] - (p[1] if len(p) > 1 else 0.0))


def entropy(probs) -> float:
    return -sum(float(x) * math.log(float(x)) for x in probs if x > 0)


def draw(item_id: str) -> float:
    """A uniform number in [0, 1) from the item id (reproducible)."""
    h = hashlib.blake2b(item_id.encode(), digest_size=8, person=b"strata-al").digest()
    return int.from_bytes(h, "big") / 2**64


class _Rolling:
    """A sum over the last hour in one-minute buckets."""

    def __init__(self) -> None:
        self.buckets: deque[tuple[float, float]] = deque()
        self.total = 0.0

    def trim(self, now: float) -> None:
        while self.buckets and self.buckets[0][0] <= now - WINDOW_S:
            self.total -= self.buckets.popleft()[1]

    def add(self, now: float, v: float) -> None:
        start = now - now % _BUCKET_S
        if self.buckets and self.buckets[-1][0] == start:
            t, x = self.buckets[-1]
            self.buckets[-1] = (t, x + v)
        else:
            self.buckets.append((start, v))
        self.total += v


class Selector:
    """Budgeted, uncertainty-weighted selection per predicted label (module docstring)."""

    def __init__(self, budget_per_hour: float, max_labels: int = 1_000, focus: float = 1.0) -> None:
        self.budget = float(budget_per_hour)
        self.focus = float(focus)  # the score is u ** focus: > 1 favours the most uncertain
        self.max_labels = max_labels
        self._u: dict[str, _Rolling] = {}
        self._picked: dict[str, _Rolling] = {}
        self._first: dict[str, float] = {}
        self.capped = 0  # items that would have been drawn but the label's budget was spent

    def offer(self, item_id: str, label: str, u: float, now: float) -> float | None:
        """The selection probability when the item is selected, else None."""
        if self.budget <= 0:
            return None
        if label not in self._u:
            if len(self._u) >= self.max_labels:
                label = "__other__"
            self._u.setdefault(label, _Rolling())
            self._picked.setdefault(label, _Rolling())
        used, picked = self._u[label], self._picked[label]
        used.trim(now)
        picked.trim(now)
        u = min(1.0, max(0.0, float(u))) ** self.focus
        used.add(now, u)
        # a label's first hour: the sum so far, scaled up to an hour (at least a minute)
        elapsed = min(WINDOW_S, max(_BUCKET_S, now - self._first.setdefault(label, now)))
        hourly = used.total * WINDOW_S / elapsed
        q = min(1.0, u * TARGET * self.budget / max(hourly, 1e-12))
        if q <= 0 or draw(item_id) >= q:
            return None
        if picked.total >= self.budget:
            self.capped += 1
            return None
        picked.add(now, 1.0)
        return q


def annotated_event(item: dict, annotation: dict) -> dict:
    """The labelled event that a selected item's first annotation makes.

    >>> item = {"item_id": "p1", "features": [1.0], "ts": 5.0, "model": "m1",
    ...         "predicted": "a", "selection_probability": 0.25, "event_id": None}
    >>> ev = annotated_event(item, {"label": "b", "annotator_id": "ann"})
    >>> ev["id"], ev["label"], ev["payload"]["selection_probability"]
    ('al-p1', 'b', 0.25)

    An item of the trainer's scoring pass (``source: "review"``) is a row the reservoir
    sampled: its annotation corrects that event, and keeps its weight:

    >>> rv = annotated_event({**item, "source": "review", "event_id": "e9"},
    ...                      {"label": "b", "annotator_id": "ann"})
    >>> rv["id"], rv["relabel"], "selection_probability" in rv["payload"]
    ('e9', True, False)
    """
    payload = {
        "source": "active-learning",
        "item_id": item["item_id"],
        "model": item["model"],
        "predicted": item["predicted"],
        "selection_probability": item["selection_probability"],
        "annotator_id": annotation["annotator_id"],
    }
    if item.get("source") == "review":  # a sampled row under review: its weight stands
        payload["source"] = "review"
        payload["review_probability"] = payload.pop("selection_probability")
    return {
        "id": item.get("event_id") or f"al-{item['item_id']}",
        "ts": item["ts"],
        "label": annotation["label"],
        "features": item["features"],
        "relabel": item.get("event_id") is not None,
        "payload": payload,
    }


def next_query(query) -> tuple[int, str | None]:
    """``n`` (1..100, default 10) and ``label`` from a query string; a 400 names the bad
    parameter."""
    from streamproc.hitl.requests import HttpError

    raw = query.get("n", "10")
    try:
        n = int(raw)
    except ValueError:
        raise HttpError(400, f"n: expected an integer, got {raw[:20]!r}") from None
    if not 1 <= n <= 100:
        raise HttpError(400, f"n: must be in [1, 100], got {n}")
    label = query.get("label")
    if label is not None and not 0 < len(label) <= 128:
        raise HttpError(400, "label: must be 1 to 128 characters")
    return n, label


def take(queue, n: int, label: str | None) -> list[dict]:
    """Remove and return up to ``n`` items (of predicted ``label``, if given), oldest
    first; items not taken keep their order."""
    out, rest = [], []
    while queue and len(out) < n:
        item = queue.popleft()
        (out if label is None or item["predicted"] == label else rest).append(item)
    queue.extendleft(reversed(rest))
    return out
