"""The naive baseline of the end-to-end benchmark: a plain Faust agent that, per event,
decodes the JSON, validates it and updates a per-label reservoir (Algorithm R) held in a
Faust table — the textbook way to write this job in Faust.

Run: ``python -m faust -A benchmarks.faust_naive worker`` with BENCH_BROKER, BENCH_TOPIC,
BENCH_EXPECT and BENCH_WEB_PORT set; it logs ``NAIVE_DONE <seconds>`` after
BENCH_EXPECT events.
"""

from __future__ import annotations

import os
import random
import time

import faust
import orjson

app = faust.App(
    "bench-naive-" + os.environ.get("BENCH_TOPIC", "events"),
    broker=os.environ.get("BENCH_BROKER", "kafka://127.0.0.1:9092"),
    store="memory://",
    web_port=int(os.environ.get("BENCH_WEB_PORT", "6067")),
    broker_session_timeout=6.0,
    broker_heartbeat_interval=1.0,
    topic_partitions=int(os.environ.get("BENCH_PARTITIONS", "4")),
    datadir=os.environ.get("BENCH_DATADIR", "/tmp/bench-naive"),
)
topic = app.topic(os.environ.get("BENCH_TOPIC", "events"), value_serializer="raw")
reservoirs = app.Table(
    "reservoirs", default=list, partitions=int(os.environ.get("BENCH_PARTITIONS", "4"))
)
seen = app.Table("seen", default=int, partitions=int(os.environ.get("BENCH_PARTITIONS", "4")))
EXPECT = int(os.environ.get("BENCH_EXPECT", "100000"))
K = 1_000
state = {"n": 0, "t0": None}
rnd = random.Random(0)


@app.agent(topic)
async def sample(stream):
    async for value in stream:
        if state["t0"] is None:
            state["t0"] = time.perf_counter()
        ev = orjson.loads(value)
        label = ev.get("label")
        if not label or len(ev.get("features", ())) != 4:
            continue
        n = seen[label] + 1
        seen[label] = n
        r = reservoirs[label]
        if len(r) < K:
            r.append(ev["id"])
        else:
            j = rnd.randrange(n)
            if j < K:
                r[j] = ev["id"]
        reservoirs[label] = r
        state["n"] += 1
        if state["n"] == EXPECT:
            print(f"NAIVE_DONE {time.perf_counter() - state['t0']:.3f}", flush=True)
