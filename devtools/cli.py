"""``stratastream-dev`` (``python -m devtools``): broker | produce | demo.

The local stack for trying Stratastream and for its tests: the embedded broker (Tansu),
a synthetic producer and the demo (`make run`). Product code never imports this package.
Settings come from the same flags, ``STRATA_*`` variables and TOML file as the worker.
"""

from __future__ import annotations

import argparse
import signal
import sys

from streamproc.cli import RUN_DIR, bootstrap_of, run, settings_of
from streamproc.settings import add_flags


def cmd_broker(a: argparse.Namespace) -> int:
    from devtools.broker import EmbeddedBroker

    s = settings_of(a)
    # SIGINT/SIGTERM are blocked, then waited for: without the block, SIGTERM's default
    # action would end the process at once and orphan the broker (and a stale .run/broker)
    stop = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    with EmbeddedBroker(port=a.port) as b:
        b.create_topics(
            {s.events_topic: s.partitions, s.dlq_topic: 1, s.snapshots_topic: 1, s.drift_topic: 1}
        )
        RUN_DIR.mkdir(exist_ok=True)
        (RUN_DIR / "broker").write_text(b.bootstrap)
        print(f"embedded broker listening on {b.url} (Ctrl-C to stop)", flush=True)
        try:
            got = signal.sigwait(stop)
            print(f"{signal.Signals(got).name}: stopping the broker", flush=True)
        finally:
            (RUN_DIR / "broker").unlink(missing_ok=True)
    return 0


def cmd_produce(a: argparse.Namespace) -> int:
    from devtools.produce import produce_synthetic
    from stratastream.brokers import wait_for_broker

    s = settings_of(a)
    bootstrap = bootstrap_of(s)
    wait_for_broker(bootstrap, s.broker_timeout_s, s.kafka_config())  # fail fast: one line
    rep = produce_synthetic(
        bootstrap,
        s.events_topic,
        n=a.events,
        n_labels=a.labels,
        feature_dim=s.feature_dim,
        malformed_frac=a.malformed,
        drift_at=a.drift_at,
        frame_rows=a.frame_rows,
        seed=a.seed,
        multilabel_frac=a.multilabel_frac,
        rate=a.rate,
        config=s.kafka_config("producer"),
    )
    print(
        f"produced {rep.events:,} events in {rep.messages:,} messages "
        f"({sum(rep.malformed.values()):,} malformed) in {rep.seconds:.1f}s"
    )
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    from devtools.demo import run_demo

    return run_demo(a)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="stratastream-dev",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--config", help="TOML settings file (env STRATA_CONFIG)")
        add_flags(sp)

    b = sub.add_parser("broker", help="run the embedded broker (Tansu) on loopback")
    common(b)
    b.add_argument("--port", type=int, default=None, help="port (default: a free one)")
    b.set_defaults(fn=cmd_broker)

    pr = sub.add_parser("produce", help="produce synthetic log events")
    common(pr)
    pr.add_argument("--events", type=int, default=100_000)
    pr.add_argument("--labels", type=int, default=12)
    pr.add_argument("--malformed", type=float, default=0.01, help="fraction of malformed events")
    pr.add_argument(
        "--multilabel-frac", type=float, default=0.05, help="fraction of multi-label events"
    )
    pr.add_argument("--drift-at", type=float, default=None, help="drift after this fraction")
    pr.add_argument("--frame-rows", type=int, default=0, help="rows per batched frame (0: JSON)")
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--rate", type=float, default=0.0, help="events/s (0: as fast as possible)")
    pr.set_defaults(fn=cmd_produce)

    d = sub.add_parser("demo", help="embedded broker + worker + producer, live table, summary")
    common(d)
    d.add_argument("--events", type=int, default=200_000)
    d.add_argument("--labels", type=int, default=12)
    d.add_argument("--malformed", type=float, default=0.005)
    d.add_argument("--drift-at", type=float, default=0.6)
    d.add_argument("--rate", type=float, default=10_000, help="events/s (0: as fast as possible)")
    d.set_defaults(fn=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
