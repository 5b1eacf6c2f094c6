"""``streamproc``: worker | snapshot.

Every setting has a flag (``--checkpoint-every-events``, ...); flags fall back to
``STRATA_*`` environment variables, then to an optional TOML file (``--config``), then to
the defaults, through one :class:`Settings` object. The local stack (embedded broker,
synthetic producer, demo) is ``stratastream-dev`` (:mod:`devtools`).
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from pathlib import Path

from stratastream.brokers import RUN_DIR, resolve_broker
from stratastream.errors import ConfigError, StratastreamError
from streamproc.settings import Settings, add_flags, flag_values


def settings_of(a: argparse.Namespace) -> Settings:
    """Settings from ``--config``, the environment and the per-setting flags."""
    return Settings.load(getattr(a, "config", None), **flag_values(a))


def bootstrap_of(s: Settings) -> str:
    """The broker address of the settings (``embedded``: the local stack's broker)."""
    return resolve_broker(s.broker, RUN_DIR)


def _usable_dir(path: Path, name: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ConfigError(
            f"{name}: {path} is not a writable directory ({e.strerror or e}); "
            f"pass --{name.replace('_', '-')} or set STRATA_{name.upper()}"
        ) from None


_STATE_LOCK = None  # held for the worker process's lifetime


def lock_state_dir(state_dir: Path) -> None:
    """One worker per state directory: an exclusive lock held while the process lives.
    A second worker on the same directory fails at once, naming the owner."""
    import fcntl

    global _STATE_LOCK
    path = state_dir / ".worker.lock"
    f = open(path, "a+")  # noqa: SIM115 - kept open: the lock lives as long as the file
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        owner = f.read().strip() or "another process"
        f.close()
        raise ConfigError(
            f"state_dir: {state_dir} is in use by {owner}; give each worker its own --state-dir"
        ) from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} on {socket.gethostname()}")
    f.flush()
    _STATE_LOCK = f


def preflight(s: Settings, host: str, port: int) -> None:
    """What a worker needs before it starts, checked with one clear error each: writable
    state and snapshot directories (the state directory not used by another worker), a
    free web port."""
    _usable_dir(s.state_dir, "state_dir")
    _usable_dir(s.snapshot_dir, "snapshot_dir")
    lock_state_dir(s.state_dir)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as e:
            raise ConfigError(
                f"web port: {host}:{port} is not free ({e.strerror or e}); pass --web-port "
                "or set STRATA_WEB_PORT"
            ) from None


def _limit_malloc_arenas(n: int = 2) -> None:
    """glibc gives each thread its own malloc arena; the snapshot build thread's large,
    short-lived tables then leave hundreds of MB of fragmented arenas behind (measured:
    peak RSS 1.4 GB instead of 1.1 GB over 40M events). Cap the arenas, as
    MALLOC_ARENA_MAX=2 does, before any thread starts; a no-op off glibc."""
    import ctypes
    import ctypes.util

    if os.environ.get("MALLOC_ARENA_MAX"):
        return  # the operator chose
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(ctypes.c_int(-8), ctypes.c_int(n))  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass


def cmd_worker(a: argparse.Namespace) -> int:
    from faust.worker import Worker

    from streamproc.worker.app import create_app, lock_state_dir
    from streamproc.worker.topics import check_single_partition, create_topics, wait_for_broker

    _limit_malloc_arenas()
    s = settings_of(a)
    bootstrap = bootstrap_of(s)
    preflight(s, s.web_bind, a.web_port)
    # one worker per state directory, for the life of this process (kill -9 included)
    lock = lock_state_dir(s)  # noqa: F841 - held until exit
    wait_for_broker(bootstrap, s.broker_timeout_s, s.kafka_config())  # one line on failure
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
            s.annotate_topic: s.hitl_partitions,
            # one partition: one consumer decides rollouts (its table must match it)
            s.outcomes_topic: 1,
            s.deployments_topic: 1,
            s.holds_topic: 1,  # one order of hold decisions, read whole by every worker
        },
        config=s.kafka_config(),
    )
    check_single_partition(bootstrap, s.outcomes_topic, "outcomes_topic", s.kafka_config())
    app = create_app(s, bootstrap, web_port=a.web_port)
    Worker(app, loglevel=a.loglevel, quiet=True).execute_from_commandline()
    return 0


def cmd_snapshot(a: argparse.Namespace) -> int:
    import snapshot_format as fmt

    s = settings_of(a)
    store = s.snapshot_dir
    if not store.is_dir():  # a typo must not look like an empty store
        raise ConfigError(
            f"snapshot_dir: {store} is not a directory (the demo writes under .run/demo/snapshots)"
        )
    if a.action == "list":
        for m in fmt.list_manifests(store):
            print(
                f"{m.version}  parent={m.parent or '-':16}  rows={m.rows:>7}  "
                f"balance={m.balance_ratio:.2f}  offsets={m.source_offsets}"
            )
        return 0
    version = a.version or fmt.latest_version(store)
    if version is None:
        raise StratastreamError(f"snapshot store {store}: no snapshots yet")
    if a.action == "show":
        import json
        from dataclasses import asdict

        print(json.dumps(asdict(fmt.read_manifest(store, version)), indent=2))
        return 0
    table = fmt.read_table(store, version)
    if not a.out:
        raise StratastreamError("snapshot export: --out FILE is required")
    out = Path(a.out)
    if out.suffix == ".parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, out)
    elif out.suffix == ".csv":
        import pyarrow.csv as pcsv

        pcsv.write_csv(_flat_table(table, fmt.read_manifest(store, version)), out)
    elif out.suffix == ".jsonl":
        import orjson

        with open(out, "wb") as f:
            for row in table.to_pylist():
                row["payload"] = orjson.loads(row["payload"]) if row["payload"] else None
                f.write(orjson.dumps(row) + b"\n")
    else:
        raise StratastreamError(
            f"snapshot export: --out must end in .parquet, .csv or .jsonl, got {out.name!r}"
        )
    print(f"exported {table.num_rows} rows of {version} to {out}")
    return 0


def _flat_table(table, manifest):
    """CSV has no lists: one column per feature (named as the manifest names them) and
    the labels joined by ``|``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    feats = table.column("features").combine_chunks()
    dim = feats.type.list_size
    x = feats.values.to_numpy(zero_copy_only=False).reshape(-1, dim)
    names = manifest.feature_names or [f"f{j}" for j in range(dim)]
    labels = pc.binary_join(table.column("labels"), "|")
    out = table.drop(["features", "labels"])
    out = out.add_column(1, "labels", labels)
    for j, n in enumerate(names):
        out = out.append_column(n, pa.array(np.ascontiguousarray(x[:, j])))
    return out


def cmd_dlq(a: argparse.Namespace) -> int:
    from stratastream.brokers import wait_for_broker
    from streamproc.worker.replay import ReplayFilter, replay

    s = settings_of(a)
    bootstrap = bootstrap_of(s)
    wait_for_broker(bootstrap, s.broker_timeout_s, s.kafka_config())
    flt = ReplayFilter(tuple(a.reason or ()), a.source_partition, a.from_offset, a.to_offset)
    rep = replay(bootstrap, s.dlq_topic, a.to_topic or s.events_topic, flt, a.dry_run, a.idle_s,
                 config=s.kafka_config())  # fmt: skip
    verb = "would replay" if a.dry_run else "replayed"
    print(
        f"read {rep.read} dead letters from {s.dlq_topic}; {verb} {rep.replayed} to "
        f"{a.to_topic or s.events_topic} ({dict(rep.by_reason)}); "
        f"{rep.scrubbed_skipped} skipped (PII-scrubbed values are not the original events)"
    )
    return 0


def cmd_produce(a: argparse.Namespace) -> int:
    from stratastream.brokers import wait_for_broker
    from streamproc.feed.fromfile import ColumnMap
    from streamproc.feed.send import produce_file

    s = settings_of(a)
    bootstrap = bootstrap_of(s)
    wait_for_broker(bootstrap, s.broker_timeout_s, s.kafka_config())

    def names(v: str | None) -> tuple[str, ...]:
        return tuple(x.strip() for x in v.split(",") if x.strip()) if v else ()

    cols = ColumnMap(
        label=a.label_column, ts=a.ts_column, id=a.id_column,
        features=names(a.feature_columns), payload=names(a.payload_columns),
        labels_sep=a.labels_separator,
    )  # fmt: skip
    rep = produce_file(
        bootstrap, s.events_topic, Path(a.from_file), cols, s.feature_dim, a.format,
        as_json=a.json, frame_rows=a.frame_rows, progress=sys.stderr.isatty(),
        config=s.kafka_config("producer"),
    )  # fmt: skip
    print(
        f"produced {rep.rows:,} events from {a.from_file} in {rep.messages:,} messages "
        f"to {s.events_topic} in {rep.seconds:.1f}s"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="streamproc", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--config", help="TOML settings file (env STRATA_CONFIG)")
        add_flags(sp)

    w = sub.add_parser("worker", help="run a stream-processing worker (Faust app)")
    common(w)
    w.add_argument("--web-port", type=int, default=int(os.environ.get("STRATA_WEB_PORT", 6066)))
    w.add_argument(
        "--loglevel",
        default=os.environ.get("STRATA_LOGLEVEL", "info"),
        choices=["crit", "error", "warn", "info", "debug"],
    )
    w.set_defaults(fn=cmd_worker)

    sn = sub.add_parser("snapshot", help="list, show or export snapshots")
    common(sn)
    sn.add_argument("action", choices=["list", "show", "export"])
    sn.add_argument("version", nargs="?", default=None)
    sn.add_argument("--out", help="export file: .parquet, .csv or .jsonl")
    sn.set_defaults(fn=cmd_snapshot)

    pr = sub.add_parser("produce", help="send a JSON-lines, CSV or Parquet file's rows as events")
    common(pr)
    pr.add_argument("--from", dest="from_file", required=True, help="the file to send")
    pr.add_argument("--format", default="auto", choices=["auto", "jsonl", "csv", "parquet"])
    pr.add_argument("--label-column", default="label")
    pr.add_argument("--labels-separator", default=None,
                    help="the label column holds several labels joined by this")  # fmt: skip
    pr.add_argument("--ts-column", default=None, help="default: the time of sending")
    pr.add_argument("--id-column", default=None, help="default: <file name>:<row>")
    pr.add_argument("--feature-columns", default=None,
                    help="comma-separated; default: every other numeric column")  # fmt: skip
    pr.add_argument("--payload-columns", default=None, help="comma-separated")
    pr.add_argument("--json", action="store_true", help="one JSON event per message")
    pr.add_argument("--frame-rows", type=int, default=1_000, help="events per frame")
    pr.set_defaults(fn=cmd_produce)

    d = sub.add_parser("dlq", help="replay dead letters to the events topic after a fix")
    common(d)
    d.add_argument("action", choices=["replay"])
    d.add_argument("--reason", action="append", help="replay letters whose reason contains "
                   "this (repeatable; default: all)")  # fmt: skip
    d.add_argument("--source-partition", type=int, default=None)
    d.add_argument("--from-offset", type=int, default=None, help="source offset, inclusive")
    d.add_argument("--to-offset", type=int, default=None, help="source offset, inclusive")
    d.add_argument("--to-topic", default=None, help="default: the events topic")
    d.add_argument("--dry-run", action="store_true", help="count, produce nothing")
    d.add_argument("--idle-s", type=float, default=3.0,
                   help="the end of the topic: no letter for this long")  # fmt: skip
    d.set_defaults(fn=cmd_dlq)
    return p


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), argv)


def run(parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    """Parse, run the chosen command; a deliberate error is one line and exit code 2."""
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.fn(args)
    except StratastreamError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `... | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
