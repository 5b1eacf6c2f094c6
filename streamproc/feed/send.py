"""Sending a file's rows to the events topic, with a progress bar and a report.

Frames (default) carry ``frame_rows`` events per message; ``as_json`` sends one JSON
event per message, keyed by its id (``partitioner=murmur2_random``, as Kafka's clients
do, so one id always lands in one partition).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from stratastream.errors import StratastreamError
from streamproc.decode.frames import encode_frame
from streamproc.feed.fromfile import ColumnMap, batches, columns_of, read_table


@dataclass
class FeedReport:
    rows: int = 0
    messages: int = 0
    seconds: float = 0.0


def produce_file(
    bootstrap: str,
    topic: str,
    path: Path,
    columns: ColumnMap,
    feature_dim: int,
    fmt: str = "auto",
    as_json: bool = False,
    frame_rows: int = 1_000,
    progress: bool = True,
    config: dict | None = None,
) -> FeedReport:
    from confluent_kafka import KafkaException, Producer

    table = read_table(path, fmt)
    cols = columns.resolve(table, feature_dim)
    prod = Producer({**(config or {}), "bootstrap.servers": bootstrap, "linger.ms": 20,
                     "partitioner": "murmur2_random",
                     "message.max.bytes": 64 << 20})  # fmt: skip
    rep = FeedReport()
    failed: list[str] = []

    def cb(err, _msg):
        if err is not None:
            failed.append(str(err))

    bar = None
    if progress:
        from rich.progress import Progress

        bar = Progress(transient=False)
        bar.start()
        task = bar.add_task(f"{path.name} → {topic}", total=table.num_rows)
    t0 = time.perf_counter()
    try:
        step = frame_rows if not as_json else 10_000
        for lo, part in batches(table, step):
            rows = columns_of(part, cols, path.name, lo)
            n = len(rows.ids)
            if as_json:
                for i in range(n):
                    ev = {"id": rows.ids[i], "ts": float(rows.ts[i]),
                          "features": rows.features[i].tolist()}  # fmt: skip
                    lab = rows.labels[i]
                    ev["labels" if isinstance(lab, list) else "label"] = lab
                    if rows.payloads is not None:
                        ev["payload"] = rows.payloads[i]
                    send_waiting(prod, topic, orjson.dumps(ev), rows.ids[i].encode(), cb)
                rep.messages += n
            else:
                frame = encode_frame(rows.ts, rows.labels, rows.features, rows.ids,
                                     rows.payloads)  # fmt: skip
                send_waiting(prod, topic, frame, rows.ids[0].encode(), cb)
                rep.messages += 1
            rep.rows += n
            if bar is not None:
                bar.update(task, advance=n)
        left = prod.flush(60)
    except KafkaException as e:
        raise StratastreamError(f"produce: {e}") from None
    finally:
        if bar is not None:
            bar.stop()
    rep.seconds = time.perf_counter() - t0
    if left or failed:
        raise StratastreamError(
            f"produce: {left + len(failed)} messages not delivered to {topic}"
            + (f" (first error: {failed[0]})" if failed else "")
        )
    return rep


def send_waiting(prod, topic: str, value: bytes, key: bytes, cb) -> None:
    """``produce``, waiting for deliveries while the producer's local queue is full."""
    while True:
        try:
            prod.produce(topic, value, key=key, on_delivery=cb)
            break
        except BufferError:  # the local queue is full: let deliveries drain it
            prod.poll(0.1)
    prod.poll(0)
