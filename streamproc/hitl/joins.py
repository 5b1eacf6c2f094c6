"""The joins of the human-in-the-loop agents as pure functions: what a prediction and its
feedback, or an item's annotations, lead to. The Faust agents only store, call these and
send what they return, so the rules are tested without Faust or Kafka.

>>> pred = {"ts": 100.0, "label": "a", "model": "m1", "features": [1.0], "event_id": "e7"}
>>> out = join_feedback("p1", pred, {"label": "b"}, now=101.0, ttl_s=60.0)
>>> out.kind, out.event["label"], out.event["relabel"]
('correction', 'b', True)
>>> join_feedback("p1", pred, {"vote": "up"}, now=500.0, ttl_s=60.0).kind
'expired'
"""

from __future__ import annotations

from dataclasses import dataclass

from streamproc.hitl.agreement import AnnotationBook


@dataclass(frozen=True)
class FeedbackOutcome:
    kind: str  # "waiting" | "expired" | "correction" | "down-vote" | "up-vote"
    event: dict | None = None  # for the events topic (a correction)
    relabel: dict | None = None  # for the relabel topic (a down-vote)


def join_feedback(
    pid: str, pred: dict | None, fb: dict | None, now: float, ttl_s: float
) -> FeedbackOutcome:
    """What the prediction ``pred`` and its feedback ``fb`` (either may be missing yet)
    lead to. A prediction older than ``ttl_s`` is forgotten (``expired``)."""
    if pred is not None and pred["ts"] < now - ttl_s:
        return FeedbackOutcome("expired")
    if pred is None or fb is None:
        return FeedbackOutcome("waiting")
    if fb.get("label") is not None:
        event = {
            "id": pred.get("event_id") or f"prediction-{pid}",
            "ts": pred["ts"],
            "label": fb["label"],
            "features": pred["features"],
            "relabel": pred.get("event_id") is not None,
            "payload": {
                "source": "feedback",
                "prediction_id": pid,
                "model": pred["model"],
                "predicted": pred["label"],
            },
        }
        return FeedbackOutcome("correction", event=event)
    if fb.get("vote") == "down":
        return FeedbackOutcome(
            "down-vote",
            relabel={
                "reason": "down-vote",
                "prediction_id": pid,
                "event_id": pred.get("event_id"),
                "predicted": pred["label"],
                "features": pred["features"],
            },
        )
    return FeedbackOutcome("up-vote")


def annotation_relabel(book: AnnotationBook, item: str, bar: float, held: set[str]) -> dict | None:
    """Update ``held`` after an annotation of ``item``; the relabel request to send when
    the item's agreement just fell below ``bar`` (it is then held out of snapshots).

    >>> book, held = AnnotationBook(), set()
    >>> book.update("i1", "ann-a", "cat"); book.update("i1", "ann-b", "dog")
    >>> annotation_relabel(book, "i1", 0.6, held)["reason"], held
    ('low agreement', {'i1'})
    """
    if len(book.items[item]) < 2:
        return None
    agreement = book.item_agreement(item)
    if agreement >= bar:
        held.discard(item)  # resolved: back into snapshots
        return None
    if item in held:
        return None
    held.add(item)
    return {
        "reason": "low agreement",
        "item_id": item,
        "agreement": agreement,
        "annotations": book.items[item],
    }
