"""The worker as a Faust application.

Faust is the application framework: it runs the worker (signals, logging, graceful
shutdown), the web server (``/status``, ``POST /snapshot``), and the snapshot timer.
The hot path is :class:`IngestLoop`, a batch consumer on confluent-kafka run as a Faust
service in its own thread, so no Faust ``Event`` is built per message (Faust's
per-event machinery tops out near 11k events/s here; see README, Architecture).
"""

from __future__ import annotations

import asyncio
import logging
import threading

import faust
from mode import Service
from prometheus_client import CONTENT_TYPE_LATEST

from streamproc.hitl.auth import Credentials
from streamproc.hitl.ratelimit import TokenBucket
from streamproc.settings import Settings
from streamproc.worker.assembly import faust_credentials
from streamproc.worker.loop import IngestLoop

log = logging.getLogger(__name__)
_PROM_TYPE = CONTENT_TYPE_LATEST.split(";")[0]  # text/plain; version=0.0.4


def lock_state_dir(settings: Settings):  # noqa: ANN201 - a StateDirLock
    """Take the state directory for this process's lifetime (one worker per directory;
    :mod:`streamproc.state.dirlock`); a directory in use raises, naming the owner."""
    from streamproc.state.dirlock import StateDirLock

    return StateDirLock(settings.state_dir).acquire()


def create_app(settings: Settings, bootstrap: str, web_port: int = 6066) -> faust.App:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    settings.snapshot_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        f"stratastream-{settings.group_id}",
        broker=f"kafka://{bootstrap}",
        broker_credentials=faust_credentials(settings),
        web_port=web_port,
        web_bind=settings.web_bind,
        web_host="127.0.0.1",
        store="memory://",
        datadir=str(settings.state_dir / "faust"),
        autodiscover=False,
        # Faust's default session timeout makes a group join take ~30 s
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        topic_allow_declare=True,  # changelog topics of the human-in-the-loop tables
        # only our routes: Faust's table pages would serve stored predictions unguarded
        web_router_enabled=False,
        web_tables_enabled=False,
    )
    blueprints = app.web.blueprints
    blueprints._enabled = [
        (p, bp) for p, bp in blueprints._enabled if "production_index" not in str(bp)
    ]
    loop = IngestLoop(settings, bootstrap, own_snapshot_timer=False)
    app.ingest = loop  # type: ignore[attr-defined]

    class IngestService(Service):
        """Runs the batch consumer thread; a crash in it crashes the worker (no silent hang)."""

        _thread: threading.Thread | None = None

        async def on_start(self) -> None:
            aio = asyncio.get_running_loop()

            def target() -> None:
                try:
                    loop.run()
                except BaseException as e:  # noqa: BLE001 - reported to the worker
                    log.exception("ingest loop crashed")
                    aio.call_soon_threadsafe(lambda exc=e: asyncio.ensure_future(self.crash(exc)))

            self._thread = threading.Thread(target=target, name="ingest", daemon=True)
            self._thread.start()

        async def on_stop(self) -> None:
            loop.stop_event.set()
            if self._thread is not None:
                await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 60)

    app.service(IngestService)

    from streamproc.hitl.api import install

    install(app, settings, loop.metrics, lambda: loop.held_items)
    from streamproc.hitl.holds import HoldsReader

    holds = HoldsReader(bootstrap, settings.holds_topic, settings.kafka_config("consumer"),
                        lambda ids: setattr(loop, "held_items", ids))  # fmt: skip

    @app.task
    async def read_holds() -> None:
        holds.start()

    @app.timer(settings.snapshot_every_s)
    async def snapshot_timer() -> None:
        loop.snapshot_requested.set()

    @app.page("/status")
    async def status(web, request):
        return web.json(_status(loop))

    @app.page("/metrics")
    async def metrics(web, request):
        ok, _ = loop.health.check()
        loop.metrics.healthy.set(1 if ok else 0)
        # aiohttp wants the charset apart from the content type
        return web.text(loop.metrics.exposition().decode(), content_type=_PROM_TYPE)

    @app.page("/health")
    async def health(web, request):
        ok, reasons = loop.health.check()
        body = {"status": "ok" if ok else "unhealthy", "reasons": reasons}
        return web.json(body, status=200 if ok else 503)

    @app.page("/ready")
    async def ready(web, request):
        ok = loop.health.running and loop.health.assigned_once and loop.health.check()[0]
        return web.json({"ready": ok}, status=200 if ok else 503)

    admin = Credentials(settings.admin_token, {})
    admin_bucket = TokenBucket(settings.hitl_rate_per_s, settings.hitl_burst)

    @app.page("/snapshot")
    class SnapshotView(faust.web.View):
        async def post(self, request):
            """Ask for a snapshot (admin token). Requests coalesce: many while one is
            pending make one snapshot, and requested snapshots are at least
            ``snapshot_min_interval_s`` apart, so a request loop cannot halt ingestion."""
            if not admin_bucket.allow(request.remote or "?"):
                return self.json({"error": "rate limit"}, status=429)
            if not admin.configured:
                return self.json({"error": "POST /snapshot is off: set admin_token"}, status=503)
            if admin.identify(request.headers.get("Authorization")) is None:
                return self.json({"error": "missing or wrong bearer token"}, status=401)
            loop.snapshot_requested.set()
            return self.json({"requested": True}, status=202)

        async def get(self, request):
            return self.json({"error": "use POST /snapshot to request a snapshot"}, status=405)

    @app.page("/drift/report")
    async def drift_report(web, request):
        """The newest drift check as an HTML page (?format=json: the same as JSON)."""
        if loop.drift is None or loop.drift.latest_report is None:
            return web.json({"error": "no drift check has run yet"}, status=404)
        as_json = request.query.get("format") == "json"
        path = loop.drift.report_dir / ("latest.json" if as_json else "latest.html")
        try:
            data = path.read_bytes()
        except OSError as e:
            return web.json({"error": f"drift report unreadable: {e.strerror}"}, status=503)
        if as_json:
            return web.bytes(data, content_type="application/json")
        return web.html(data.decode())

    return app


def _status(loop: IngestLoop) -> dict:
    s = loop.stats
    ck, pub, dlq = loop.checkpointer, loop.publisher, loop.dead_letters
    return {
        "phase": loop.phase,
        "consumed": s.consumed,
        "rejected": s.rejected,
        "checkpoints": 0 if ck is None else ck.stats.checkpoints,
        "shards": 0 if pub is None else pub.stats.shards,
        "held_for_relabel": sorted(loop.held_items),
        "snapshots": [] if pub is None else list(pub.stats.snapshots),
        "dlq_by_reason": {} if dlq is None else dict(dlq.by_reason),
        "drift": {} if loop.drift is None else dict(loop.drift.action_counts),
        "drift_checks": 0 if loop.drift is None else loop.drift.checks,
        "drift_reference": None if loop.drift is None else loop.drift.reference_version,
        # the newest drift report: GET /drift/report, or this file in the snapshot store
        "drift_report": loop.drift_report_path(),
        "labels": loop.summary,
        "partitions": {
            str(p): {
                "next_offset": proc.next_offset,
                "checkpointed_offset": proc.checkpointed_offset,
                "committed_offset": proc.committed_offset,
                **proc.counters,
            }
            for p, proc in sorted(dict(loop.processors).items())
        },
    }
