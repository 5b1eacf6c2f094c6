"""Synthetic generator of user-generated log events, and a frame-writing producer helper.

Labels are Zipf-skewed with a few rare labels; each label has its own feature mean, so a
model can learn the label from the features. Options inject multi-label events, a drift
(feature shift and label-mix change) at a given fraction of the stream, and a fraction of
malformed events of several kinds, each counted, so tests can check the DLQ exactly.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import orjson

from streamproc.decode.frames import encode_frame
from streamproc.feed.send import send_waiting

MALFORMED_KINDS = (
    "undecodable",
    "missing_label",
    "bad_features",
    "future_ts",
    "oversized",
    "unknown_field",
    "empty_label",
)


@dataclass
class ProduceReport:
    events: int = 0  # valid events produced (rows, for frames)
    messages: int = 0
    malformed: Counter = field(default_factory=Counter)
    per_label: Counter = field(default_factory=Counter)  # primary label of valid events
    last_offsets: dict[int, int] = field(default_factory=dict)  # partition -> last offset
    seconds: float = 0.0

    @property
    def next_offsets(self) -> dict[int, int]:
        return {p: o + 1 for p, o in self.last_offsets.items()}


def label_names(n_labels: int) -> list[str]:
    return [f"label_{i:02d}" for i in range(n_labels)]


def producer(bootstrap: str, **extra):
    from confluent_kafka import Producer

    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 10,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 1_000_000,
            # the same key -> the same partition as Java clients and Faust (aiokafka) put
            # it; corrections from the feedback agent rely on landing beside the original
            "partitioner": "murmur2_random",
            **extra,
        }
    )


def produce_synthetic(
    bootstrap: str,
    topic: str = "events",
    n: int = 10_000,
    n_labels: int = 12,
    zipf_a: float = 1.2,
    feature_dim: int = 4,
    multilabel_frac: float = 0.05,
    malformed_frac: float = 0.0,
    drift_at: float | None = None,
    drift_shift: float = 1.5,
    frame_rows: int = 0,
    seed: int = 0,
    progress: bool = True,
    rate: float = 0.0,
    start_ts: float | None = None,
    config: dict | None = None,
) -> ProduceReport:
    """Produce ``n`` events (plus malformed ones) and wait until all are acknowledged.

    ``rate`` > 0 paces production to about that many events per second. Event times are
    10 ms apart, ending now unless ``start_ts`` says where they start.
    """
    rng = np.random.default_rng(seed)
    names = label_names(n_labels)
    p = 1.0 / np.arange(1, n_labels + 1) ** zipf_a
    p /= p.sum()
    # the label-feature relation is a property of the simulated world, not of the seed
    means = np.random.default_rng(20_26).normal(0.0, 2.0, size=(n_labels, feature_dim))
    rep = ProduceReport()
    prod = producer(bootstrap, **(config or {}))
    errors: list[str] = []

    def on_delivery(err, msg) -> None:
        if err is not None:
            errors.append(str(err))
            return
        part = msg.partition()
        rep.last_offsets[part] = max(rep.last_offsets.get(part, -1), msg.offset())

    now = time.time()
    t_start = now - n * 0.01 if start_ts is None else start_ts  # events 10 ms apart
    bar = _bar(n, progress)
    t0 = time.perf_counter()
    pending_frame: list[dict] = []
    chunk = 10_000  # random draws are made for a chunk of events at once, in numpy
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        m = hi - lo
        idx = np.arange(lo, hi)
        drifted = (idx >= drift_at * n) if drift_at is not None else np.zeros(m, bool)
        li = np.where(drifted, rng.choice(n_labels, m, p=p[::-1]), rng.choice(n_labels, m, p=p))
        multi = rng.random(m) < multilabel_frac
        other = rng.integers(n_labels, size=m)
        feats = (means[li] + np.where(drifted, drift_shift, 0.0)[:, None]
                 + rng.normal(size=(m, feature_dim))).round(4)  # fmt: skip
        users = rng.integers(1000, size=m)
        bad = rng.random(m) < malformed_frac if malformed_frac else np.zeros(m, bool)
        kinds = rng.integers(len(MALFORMED_KINDS), size=m)
        feat_rows = feats.tolist()
        for k in range(m):
            i = lo + k
            first = names[li[k]]
            labels = [first, names[other[k]]] if multi[k] and other[k] != li[k] else [first]
            ev = {
                "id": f"evt-{seed}-{i}",
                "ts": t_start + i * 0.01,
                "features": feat_rows[k],
                "payload": {"user": f"user{users[k]}", "msg": f"event {i}"},
            }
            if len(labels) == 1:
                ev["label"] = first
            else:
                ev["labels"] = labels
            rep.events += 1
            rep.per_label[first] += 1
            if frame_rows:
                pending_frame.append(ev)
                if len(pending_frame) >= frame_rows or i == n - 1:
                    _send_frame(prod, topic, pending_frame, on_delivery)
                    rep.messages += 1
                    pending_frame = []
            else:
                send_waiting(prod, topic, orjson.dumps(ev), ev["id"].encode(), on_delivery)
                rep.messages += 1
            if bad[k]:
                kind = MALFORMED_KINDS[int(kinds[k])]
                send_waiting(prod, topic, _malformed(kind, ev, now), f"bad-{i}".encode(),
                         on_delivery)  # fmt: skip
                rep.malformed[kind] += 1
                rep.messages += 1
            if rate > 0 and i % 100 == 99:  # fine-grained: a paced stream has no long pauses
                ahead = (i + 1) / rate - (time.perf_counter() - t0)
                if ahead > 0:
                    time.sleep(ahead)
        prod.poll(0)
        if bar is not None:
            bar.update(m)
    left = prod.flush(60)
    rep.seconds = time.perf_counter() - t0
    if bar is not None:
        bar.update(n - bar.n)
        bar.close()
    if left or errors:
        raise RuntimeError(f"producer: {left} messages undelivered, errors: {errors[:3]}")
    return rep


def _send_frame(prod, topic: str, evs: list[dict], on_delivery) -> None:
    labels = [e.get("labels") or [e["label"]] for e in evs]
    frame = encode_frame(
        [e["ts"] for e in evs],
        labels,
        np.array([e["features"] for e in evs]),
        ids=[e["id"] for e in evs],
        payloads=[e["payload"] for e in evs],
    )
    send_waiting(prod, topic, frame, evs[0]["id"].encode(), on_delivery)


def _malformed(kind: str, ev: dict, now: float) -> bytes:
    bad = dict(ev, id=ev["id"] + "-bad")
    if kind == "undecodable":
        return b"\xff\xfe not json at all"
    if kind == "missing_label":
        bad.pop("label", None)
        bad.pop("labels", None)
    elif kind == "bad_features":
        bad["features"] = bad["features"][:-1]
    elif kind == "future_ts":
        bad["ts"] = now + 10 * 365 * 86_400.0
    elif kind == "oversized":
        bad["payload"] = {"blob": "x" * 70_000}
    elif kind == "unknown_field":
        bad["lable"] = "typo"
    elif kind == "empty_label":
        bad.pop("labels", None)
        bad["label"] = "  "
    return orjson.dumps(bad)


def _bar(n: int, progress: bool):
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=n, unit="ev", desc="produce", mininterval=0.5)
