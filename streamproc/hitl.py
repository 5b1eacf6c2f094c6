"""Human in the loop: predictions, votes and corrections, annotations.

Endpoints (on the worker's web server; ``Authorization: Bearer <hitl_token>``):

* ``POST /predict`` ``{"features": [...], "event_id": "optional"}`` runs the trainer's
  promoted model and answers ``{"prediction_id", "label", "probability", "model"}``.
* ``POST /feedback`` ``{"prediction_id", "vote": "up"|"down"}`` or
  ``{"prediction_id", "label": "<corrected>"}``.
* ``POST /annotations`` ``{"item_id", "annotator_id", "label"}``.
* ``GET /openapi.json`` describes them.

Every body is validated (a 4xx names the field), bounded in size and rate, and
acknowledged only after its record is durably written to the ``predictions``,
``feedback`` or ``annotations`` topic. Faust agents then join feedback with its
prediction (tables keyed by prediction id; a prediction older than
``hitl_prediction_ttl_s`` is ignored and dropped when its key is next touched): a
correction becomes a labelled event on ``events`` (payload ``{"source": "feedback", ...}``),
so it enters the same per-label reservoirs; a down-vote without a correction is counted
and queued on ``relabel``. Annotations feed an
:class:`AnnotationBook`; an item whose agreement falls below ``hitl_agreement_bar`` is
queued on ``relabel``; per-label kappas are exported as metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from pathlib import Path

import msgspec
import numpy as np
import orjson

from .agreement import AnnotationBook
from .settings import Settings

log = logging.getLogger(__name__)


class PredictRequest(msgspec.Struct, forbid_unknown_fields=True):
    features: list[float]
    event_id: str | None = None


class FeedbackRequest(msgspec.Struct, forbid_unknown_fields=True):
    prediction_id: str
    vote: str | None = None
    label: str | None = None


class AnnotationRequest(msgspec.Struct, forbid_unknown_fields=True):
    item_id: str
    annotator_id: str
    label: str


def _op(summary: str, schema: dict, ok: str) -> dict:
    errors = {
        "400": "invalid body (the message names the field)",
        "401": "missing or wrong bearer token",
        "413": "body too large",
        "429": "rate limit exceeded",
    }
    return {
        "post": {
            "summary": summary,
            "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
            "responses": {
                ok.split(" ", 1)[0]: {"description": ok.split(" ", 1)[1]},
                **{k: {"description": v} for k, v in errors.items()},
            },
        }
    }


def _obj(required: list[str], props: dict) -> dict:
    return {
        "type": "object",
        "required": required,
        "additionalProperties": False,
        "properties": props,
    }


_STR = {"type": "string"}
OPENAPI = {
    "openapi": "3.0.3",
    "info": {"title": "Stratastream human-in-the-loop API", "version": "1"},
    "components": {"securitySchemes": {"token": {"type": "http", "scheme": "bearer"}}},
    "security": [{"token": []}],
    "paths": {
        "/predict": _op(
            "Predict with the promoted model (503 when none is promoted)",
            _obj(
                ["features"],
                {"features": {"type": "array", "items": {"type": "number"}}, "event_id": _STR},
            ),
            "200 prediction_id, label, probability, model",
        ),
        "/feedback": _op(
            "Vote on or correct a prediction",
            _obj(
                ["prediction_id"],
                {
                    "prediction_id": _STR,
                    "vote": {"type": "string", "enum": ["up", "down"]},
                    "label": _STR,
                },
            ),
            "202 durably recorded",
        ),
        "/annotations": _op(
            "Record an annotator's label",
            _obj(
                ["item_id", "annotator_id", "label"],
                {"item_id": _STR, "annotator_id": _STR, "label": _STR},
            ),
            "202 durably recorded",
        ),
    },
}


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class TokenBucket:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens: dict[str, tuple[float, float]] = {}

    def allow(self, client: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        level, at = self.tokens.get(client, (self.burst, now))
        level = min(self.burst, level + (now - at) * self.rate)
        if level < 1.0:
            self.tokens[client] = (level, now)
            return False
        self.tokens[client] = (level - 1.0, now)
        return True


class Predictor:
    """The trainer's promoted model, reloaded when the promotion changes."""

    def __init__(self, registry_dir: Path) -> None:
        self.registry_dir = Path(registry_dir)
        self._loaded: str | None = None
        self._model = None
        self._entry = None

    def predict(self, features: list[float]) -> tuple[str, float, str]:
        from trainer.registry import ModelRegistry
        from trainer.train import predict_proba

        reg = ModelRegistry(self.registry_dir)
        cur = reg.promoted()
        if cur is None:
            raise HttpError(503, f"no promoted model in registry {self.registry_dir}")
        if cur.id != self._loaded:
            self._model, self._entry = reg.load_model(cur.id)
            self._loaded = cur.id
        dim = self._entry.meta["dim"]
        if len(features) != dim:
            raise HttpError(400, f"features: expected {dim} numbers, got {len(features)}")
        p = predict_proba(self._model, np.asarray([features], dtype=np.float32))[0]
        top = int(p.argmax())
        return self._entry.label_names[top], float(p[top]), cur.id


def _decode(kind: type, body: bytes):
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as e:
        raise HttpError(400, f"invalid body: {e}") from None
    except msgspec.DecodeError as e:
        raise HttpError(400, f"body is not JSON: {e}") from None


def install(app, settings: Settings, metrics, held: set[str]) -> None:  # noqa: ANN001
    """Register the endpoints and the agents on the worker's Faust app."""
    s = settings
    raw = {"key_serializer": "raw", "value_serializer": "raw"}
    predictions = app.topic(s.predictions_topic, partitions=s.hitl_partitions, **raw)
    feedback = app.topic(s.feedback_topic, partitions=s.hitl_partitions, **raw)
    annotations = app.topic(s.annotations_topic, partitions=s.hitl_partitions, **raw)
    events = app.topic(s.events_topic, **raw)
    relabel = app.topic(s.relabel_topic, **raw)
    pred_table = app.Table("hitl-predictions", partitions=s.hitl_partitions)
    pending = app.Table("hitl-feedback", partitions=s.hitl_partitions)
    predictor = Predictor(s.hitl_registry_dir)
    bucket = TokenBucket(s.hitl_rate_per_s, s.hitl_burst)
    book = AnnotationBook()

    async def guarded(web, request, handler):
        endpoint = request.path
        try:
            if not s.hitl_token:
                raise HttpError(503, "human-in-the-loop endpoints are disabled: set hitl_token")
            if request.headers.get("Authorization") != f"Bearer {s.hitl_token}":
                raise HttpError(401, "missing or wrong bearer token")
            if not bucket.allow(request.remote or "?"):
                raise HttpError(429, f"rate limit: {s.hitl_rate_per_s:g} requests/s")
            if (request.content_length or 0) > s.hitl_max_body_bytes:
                raise HttpError(413, f"body larger than {s.hitl_max_body_bytes} bytes")
            body = await request.read()
            if len(body) > s.hitl_max_body_bytes:
                raise HttpError(413, f"body larger than {s.hitl_max_body_bytes} bytes")
            status, out = await handler(body)
        except HttpError as e:
            metrics.hitl_requests.labels(endpoint, str(e.status)).inc()
            return web.json({"error": e.message}, status=e.status)
        metrics.hitl_requests.labels(endpoint, str(status)).inc()
        return web.json(out, status=status)

    async def durable(topic, key: str, value: dict) -> None:
        fut = await topic.send(key=key.encode(), value=orjson.dumps(value))
        await fut  # acknowledged by the broker before we answer

    async def do_predict(body: bytes):
        req = _decode(PredictRequest, body)
        if not all(np.isfinite(req.features)):
            raise HttpError(400, "features: all numbers must be finite")
        label, prob, model = await asyncio.get_running_loop().run_in_executor(
            None, predictor.predict, req.features
        )
        pid = uuid.uuid4().hex
        await durable(
            predictions,
            pid,
            {
                "prediction_id": pid,
                "label": label,
                "probability": prob,
                "model": model,
                "features": req.features,
                "event_id": req.event_id,
                "ts": time.time(),
            },
        )
        metrics.predictions.inc()
        return 200, {"prediction_id": pid, "label": label, "probability": prob, "model": model}

    async def do_feedback(body: bytes):
        req = _decode(FeedbackRequest, body)
        if (req.vote is None) == (req.label is None):
            raise HttpError(400, "vote/label: give exactly one of them")
        if req.vote is not None and req.vote not in ("up", "down"):
            raise HttpError(400, f"vote: expected 'up' or 'down', got {req.vote!r}")
        if req.label is not None and not 0 < len(req.label.strip()) <= 128:
            raise HttpError(400, "label: must be 1 to 128 non-blank characters")
        if not req.prediction_id:
            raise HttpError(400, "prediction_id: must not be empty")
        await durable(feedback, req.prediction_id, msgspec.structs.asdict(req))
        return 202, {"accepted": True}

    async def do_annotation(body: bytes):
        req = _decode(AnnotationRequest, body)
        for name in ("item_id", "annotator_id", "label"):
            if not getattr(req, name).strip():
                raise HttpError(400, f"{name}: must not be empty")
        await durable(annotations, req.item_id, msgspec.structs.asdict(req))
        return 202, {"accepted": True}

    for path, handler in (
        ("/predict", do_predict),
        ("/feedback", do_feedback),
        ("/annotations", do_annotation),
    ):
        app.page(path)(_post_view(handler, guarded))

    @app.page("/openapi.json")
    async def openapi(web, request):
        return web.json(OPENAPI)

    async def resolve(pid: str) -> None:
        """Runs inside the agent handling ``pid``'s event, so table writes go to the right
        changelog partition (both topics are keyed and partitioned by prediction id)."""
        pred, fb = pred_table.get(pid), pending.get(pid)
        if pred is not None and pred["ts"] < time.time() - s.hitl_prediction_ttl_s:
            del pred_table[pid]  # past the retention bound: forget it
            pred = None
        if pred is None or fb is None:
            return
        del pending[pid]
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
            await events.send(key=event["id"].encode(), value=orjson.dumps(event))
            metrics.corrections.labels(fb["label"]).inc()
        elif fb.get("vote") == "down":
            metrics.votes.labels("down").inc()
            metrics.downvotes.labels(pred["label"]).inc()
            await relabel.send(
                key=pid.encode(),
                value=orjson.dumps(
                    {
                        "reason": "down-vote",
                        "prediction_id": pid,
                        "event_id": pred.get("event_id"),
                        "predicted": pred["label"],
                        "features": pred["features"],
                    }
                ),
            )
            metrics.relabel_queued.labels("down-vote").inc()
        else:
            metrics.votes.labels("up").inc()

    @app.agent(predictions)
    async def on_prediction(stream):
        async for value in stream:
            rec = orjson.loads(value)
            pred_table[rec["prediction_id"]] = rec
            await resolve(rec["prediction_id"])

    @app.agent(feedback)
    async def on_feedback(stream):
        async for value in stream:
            fb = orjson.loads(value)
            pending[fb["prediction_id"]] = fb
            await resolve(fb["prediction_id"])

    @app.agent(annotations)
    async def on_annotation(stream):
        async for value in stream:
            a = orjson.loads(value)
            book.update(a["item_id"], a["annotator_id"], a["label"])
            item = a["item_id"]
            agreement = book.item_agreement(item)
            if len(book.items[item]) >= 2 and agreement >= s.hitl_agreement_bar:
                held.discard(item)  # resolved: back into snapshots
            if len(book.items[item]) >= 2 and agreement < s.hitl_agreement_bar and item not in held:
                held.add(item)
                await relabel.send(
                    key=a["item_id"].encode(),
                    value=orjson.dumps(
                        {
                            "reason": "low agreement",
                            "item_id": a["item_id"],
                            "agreement": agreement,
                            "annotations": book.items[a["item_id"]],
                        }
                    ),
                )
                metrics.relabel_queued.labels("low-agreement").inc()

    @app.timer(10.0)
    async def export_kappas():
        for label, k in book.label_kappas().items():
            if np.isfinite(k):
                metrics.annotation_kappa.labels(label).set(k)


def _post_view(handler, guarded):
    import faust

    class View(faust.web.View):
        async def post(self, request):
            return await guarded(self, request, handler)

    return View
