"""Safe rollout as pure functions: who answers a request, what feedback says about each
model, and when a candidate is worse or better than the champion with confidence.

A candidate model runs beside the champion (the promoted model) in one of two modes:

* ``shadow``: the champion answers every request; the candidate predicts too, and its
  answer is recorded with its model id, never returned;
* ``canary``: the candidate answers a deterministic share ``fraction`` of the requests
  (by a hash of the routing key: the event id when given, else the prediction id), the
  champion the rest.

Feedback is attributed to the model that answered. It judges a prediction when it tells
the true label: an up-vote (the answer was right), a correction (the true label is the
corrected one). A down-vote without a correction says only "wrong" for the answering
model. A shadow prediction is judged when the true label is known.

The decision compares online accuracies with a Newcombe (Wilson score) interval for the
difference of two proportions: the candidate is **rolled back** when the champion is
better by more than ``margin`` with confidence, **promoted** when it is better by more
than ``margin`` with confidence, and nothing is decided before each side has
``min_judged`` judged predictions.

>>> route("event-7", 0.0), route("event-7", 1.0)
(False, True)
>>> champion, canary = ModelScore(judged=400, correct=360), ModelScore(judged=400, correct=300)
>>> decide(champion, canary, margin=0.02, confidence=0.95, min_judged=200).decision
'rollback'
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass

from scipy.stats import norm

MODES = ("shadow", "canary")


def route(key: str, fraction: float) -> bool:
    """Whether the candidate answers the request with routing key ``key`` (canary): the
    same key always goes the same way, and a share ``fraction`` of keys goes to it."""
    h = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")
    return h / 2**64 < fraction


@dataclass
class ModelScore:
    """What feedback said about one model's predictions."""

    answered: int = 0  # predictions it answered (canary/champion) with feedback
    judged: int = 0  # predictions whose true label feedback told (answered or shadow)
    correct: int = 0
    downvotes: int = 0  # down-votes of its answers (with or without a correction)

    @property
    def accuracy(self) -> float:
        return self.correct / self.judged if self.judged else float("nan")

    def interval(self, confidence: float = 0.95) -> tuple[float, float]:
        """Wilson score interval of the accuracy."""
        return wilson(self.correct, self.judged, confidence)

    def add(self, o: dict) -> None:
        self.answered += int(o.get("answered", False))
        self.downvotes += int(o.get("downvote", False))
        if o.get("correct") is not None:
            self.judged += 1
            self.correct += int(bool(o["correct"]))

    def to_dict(self) -> dict:
        return asdict(self)


def wilson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials.

    >>> [round(x, 3) for x in wilson(90, 100)]
    [0.826, 0.945]
    """
    if n == 0:
        return 0.0, 1.0
    z = float(norm.ppf(0.5 + confidence / 2))
    p = k / n
    d = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, centre - half), min(1.0, centre + half)


def difference_interval(a: ModelScore, b: ModelScore, confidence: float) -> tuple[float, float]:
    """Newcombe's interval for accuracy(a) - accuracy(b) (method 10: from the two Wilson
    intervals), at ``confidence``."""
    pa, pb = a.accuracy, b.accuracy
    la, ua = a.interval(confidence)
    lb, ub = b.interval(confidence)
    d = pa - pb
    lo = d - math.sqrt((pa - la) ** 2 + (ub - pb) ** 2)
    hi = d + math.sqrt((ua - pa) ** 2 + (pb - lb) ** 2)
    return lo, hi


@dataclass(frozen=True)
class Decision:
    decision: str  # "rollback" | "promote"
    reason: str
    champion: dict
    candidate: dict
    interval: tuple[float, float]  # candidate accuracy - champion accuracy


def decide(
    champion: ModelScore,
    candidate: ModelScore,
    margin: float,
    confidence: float,
    min_judged: int,
) -> Decision | None:
    """Roll back, promote, or (None) keep watching; see the module docstring."""
    if champion.judged < min_judged or candidate.judged < min_judged:
        return None
    lo, hi = difference_interval(candidate, champion, confidence)
    facts = (
        f"online accuracy {candidate.accuracy:.3f} (n={candidate.judged}) vs champion "
        f"{champion.accuracy:.3f} (n={champion.judged}); difference in "
        f"[{lo:+.3f}, {hi:+.3f}] at {confidence:.0%}"
    )
    if hi < -margin:
        return Decision("rollback", f"candidate worse by more than {margin:g}: {facts}",
                        champion.to_dict(), candidate.to_dict(), (lo, hi))  # fmt: skip
    if lo > margin:
        return Decision("promote", f"candidate better by more than {margin:g}: {facts}",
                        champion.to_dict(), candidate.to_dict(), (lo, hi))  # fmt: skip
    return None


def outcomes(pred: dict, kind: str, fb: dict) -> list[dict]:
    """What one prediction's feedback says about each model involved: the answering
    model, and the shadow model if one predicted.

    >>> pred = {"label": "a", "model": "m1", "shadow": {"model": "m2", "label": "b"}}
    >>> [(o["model"], o["correct"]) for o in outcomes(pred, "correction", {"label": "b"})]
    [('m1', False), ('m2', True)]
    """
    truth = None
    if kind == "up-vote":
        truth = pred["label"]
    elif kind == "correction":
        truth = fb.get("label")
    answered = {
        "model": pred["model"],
        "answered": True,
        "downvote": kind == "down-vote" or (kind == "correction" and truth != pred["label"]),
        "correct": None if truth is None else truth == pred["label"],
    }
    if kind == "down-vote":
        answered["correct"] = False  # wrong, though the true label is unknown
    out = [answered]
    shadow = pred.get("shadow")
    if shadow:
        if truth is not None:
            correct = truth == shadow["label"]
        elif kind == "down-vote" and shadow["label"] == pred["label"]:
            correct = False  # the same answer as one known to be wrong
        else:
            correct = None
        out.append({"model": shadow["model"], "answered": False, "downvote": False,
                    "correct": correct})  # fmt: skip
    return out
