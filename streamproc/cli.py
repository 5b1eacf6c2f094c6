"""``streamproc``: broker | worker | produce | demo | snapshot.

Flags fall back to ``STRATA_*`` environment variables and an optional TOML file
(``--config``), through one :class:`Settings` object.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from sampler.errors import StratastreamError

from .settings import Settings

RUN_DIR = Path(".run")


def _settings(a: argparse.Namespace) -> Settings:
    return Settings.load(
        getattr(a, "config", None),
        broker=getattr(a, "broker", None),
        state_dir=getattr(a, "state_dir", None),
        snapshot_dir=getattr(a, "snapshot_dir", None),
        partitions=getattr(a, "partitions", None),
    )


def _bootstrap(s: Settings) -> str:
    if s.broker != "embedded":
        return s.bootstrap
    f = RUN_DIR / "broker"
    if f.exists():
        return f.read_text().strip()
    raise StratastreamError(
        "broker: 'embedded' but no embedded broker is running here; start one with "
        "`streamproc broker` or pass --broker kafka://host:port (env STRATA_BROKER)"
    )


def cmd_broker(a: argparse.Namespace) -> int:
    from .broker import EmbeddedBroker

    s = _settings(a)
    with EmbeddedBroker(port=a.port) as b:
        b.create_topics(
            {s.events_topic: s.partitions, s.dlq_topic: 1, s.snapshots_topic: 1, s.drift_topic: 1}
        )
        RUN_DIR.mkdir(exist_ok=True)
        (RUN_DIR / "broker").write_text(b.bootstrap)
        print(f"embedded broker listening on {b.url} (Ctrl-C to stop)", flush=True)
        try:
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
        finally:
            (RUN_DIR / "broker").unlink(missing_ok=True)
    return 0


def cmd_worker(a: argparse.Namespace) -> int:
    from faust.worker import Worker

    from .app import create_app
    from .broker import create_topics

    s = _settings(a)
    bootstrap = _bootstrap(s)
    create_topics(
        bootstrap,
        {
            s.events_topic: s.partitions,
            s.dlq_topic: 1,
            s.snapshots_topic: 1,
            s.drift_topic: 1,
            s.predictions_topic: s.hitl_partitions,
            s.feedback_topic: s.hitl_partitions,
            s.annotations_topic: s.hitl_partitions,
            s.relabel_topic: 1,
            s.spot_check_topic: 1,
        },
    )
    app = create_app(s, bootstrap, web_port=a.web_port)
    Worker(app, loglevel=a.loglevel, quiet=True).execute_from_commandline()
    return 0


def cmd_produce(a: argparse.Namespace) -> int:
    from .produce import produce_synthetic

    s = _settings(a)
    rep = produce_synthetic(
        _bootstrap(s),
        s.events_topic,
        n=a.events,
        n_labels=a.labels,
        feature_dim=s.feature_dim,
        malformed_frac=a.malformed,
        drift_at=a.drift_at,
        frame_rows=a.frame_rows,
        seed=a.seed,
        multilabel_frac=a.multilabel,
        rate=a.rate,
    )
    print(
        f"produced {rep.events:,} events in {rep.messages:,} messages "
        f"({sum(rep.malformed.values()):,} malformed) in {rep.seconds:.1f}s"
    )
    return 0


def cmd_snapshot(a: argparse.Namespace) -> int:
    from . import snapshot as snap

    s = _settings(a)
    store = s.snapshot_dir
    if a.action == "list":
        for m in snap.list_snapshots(store):
            print(
                f"{m.version}  parent={m.parent or '-':16}  rows={m.rows:>7}  "
                f"balance={m.balance_ratio:.2f}  offsets={m.source_offsets}"
            )
        return 0
    version = a.version or snap.latest_version(store)
    if version is None:
        raise StratastreamError(f"snapshot store {store}: no snapshots yet")
    if a.action == "show":
        import json
        from dataclasses import asdict

        print(
            json.dumps(
                asdict(snap.SnapshotManifest.read(store / version / "manifest.json")), indent=2
            )
        )
        return 0
    table = snap.load_table(store, version)
    if not a.out:
        raise StratastreamError("snapshot export: --out FILE is required")
    out = Path(a.out)
    if out.suffix == ".parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, out)
    elif out.suffix == ".csv":
        import pyarrow.csv as pc

        pc.write_csv(table.drop(["labels", "features"]), out)
    elif out.suffix == ".jsonl":
        import orjson

        with open(out, "wb") as f:
            for row in table.to_pylist():
                f.write(orjson.dumps(row) + b"\n")
    else:
        raise StratastreamError(
            f"snapshot export: --out must end in .parquet, .csv or .jsonl, got {out.name!r}"
        )
    print(f"exported {table.num_rows} rows of {version} to {out}")
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(a)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="streamproc", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--config", help="TOML settings file (env STRATA_CONFIG)")
        sp.add_argument("--broker", help="'embedded' or kafka://host:port (env STRATA_BROKER)")
        sp.add_argument("--state-dir", help="RocksDB state directory (env STRATA_STATE_DIR)")
        sp.add_argument("--snapshot-dir", help="snapshot store (env STRATA_SNAPSHOT_DIR)")
        sp.add_argument("--partitions", type=int, help="partitions of the events topic")

    b = sub.add_parser("broker", help="run the embedded broker (Tansu) on loopback")
    common(b)
    b.add_argument("--port", type=int, default=None, help="port (default: a free one)")
    b.set_defaults(fn=cmd_broker)

    w = sub.add_parser("worker", help="run a stream-processing worker (Faust app)")
    common(w)
    w.add_argument("--web-port", type=int, default=int(os.environ.get("STRATA_WEB_PORT", 6066)))
    w.add_argument(
        "--loglevel",
        default=os.environ.get("STRATA_LOGLEVEL", "info"),
        choices=["crit", "error", "warn", "info", "debug"],
    )
    w.set_defaults(fn=cmd_worker)

    pr = sub.add_parser("produce", help="produce synthetic log events")
    common(pr)
    pr.add_argument("--events", type=int, default=100_000)
    pr.add_argument("--labels", type=int, default=12)
    pr.add_argument("--malformed", type=float, default=0.01, help="fraction of malformed events")
    pr.add_argument("--multilabel", type=float, default=0.05, help="fraction of multi-label events")
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

    sn = sub.add_parser("snapshot", help="list, show or export snapshots")
    common(sn)
    sn.add_argument("action", choices=["list", "show", "export"])
    sn.add_argument("version", nargs="?", default=None)
    sn.add_argument("--out", help="export file: .parquet, .csv or .jsonl")
    sn.set_defaults(fn=cmd_snapshot)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.partitions is not None and args.partitions <= 0:
        print("error: --partitions: must be > 0", file=sys.stderr)
        return 2
    try:
        return args.fn(args)
    except StratastreamError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
