"""Human in the loop: predictions, votes and corrections, annotations.

Endpoints (on the worker's web server; ``Authorization: Bearer <token>``, see
:mod:`streamproc.hitl.auth`; requests are rate-limited per client before the token is
looked at, bodies are bounded in size and must arrive within ``hitl_body_timeout_s``):

* ``POST /predict`` ``{"features": [...], "event_id": "optional"}`` runs the trainer's
  promoted model (or, in a canary rollout, the candidate for its share of requests; a
  shadow candidate's answer is recorded, never returned) and answers
  ``{"prediction_id", "label", "probability", "model"}``.
* ``POST /feedback`` ``{"prediction_id", "vote": "up"|"down"}`` or
  ``{"prediction_id", "label": "<corrected>"}``.
* ``POST /annotations`` ``{"item_id", "annotator_id", "label"}``.
* ``GET /annotate/next?n=10&label=<predicted>`` hands out predictions selected for
  labelling (active learning, :mod:`streamproc.hitl.active`); they are also on the
  ``annotate`` topic. The first annotation of such an item becomes a labelled event.
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
queued on ``relabel``; per-label kappas are exported as metrics. What feedback says about
each model goes to the one-partition ``outcomes`` topic, whose single consumer decides a
rollout (:mod:`streamproc.hitl.rollout`): the registry is updated and the decision
published on ``deployments``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
import uuid

import msgspec
import numpy as np
import orjson

from streamproc.hitl.active import Selector, annotated_event, next_query, take
from streamproc.hitl.agreement import AnnotationBook
from streamproc.hitl.auth import SERVICE, Credentials
from streamproc.hitl.holds import hold_record
from streamproc.hitl.joins import annotation_relabel, join_feedback
from streamproc.hitl.predictor import Predictor
from streamproc.hitl.ratelimit import TokenBucket
from streamproc.hitl.requests import (
    OPENAPI,
    AnnotationRequest,
    FeedbackRequest,
    HttpError,
    PredictRequest,
    check_annotation,
    check_feedback,
    check_predict,
    decode,
    read_body,
)
from streamproc.hitl.rollout import ModelScore, decide, outcomes
from streamproc.settings import Settings

log = logging.getLogger(__name__)


def install(app, settings: Settings, metrics, held_now=frozenset) -> None:  # noqa: ANN001
    """Register the endpoints and the agents on the worker's Faust app. Holds (items of
    low annotator agreement, left out of snapshots) go to ``holds_topic``, which every
    worker reads (:mod:`streamproc.hitl.holds`); ``held_now()`` is what it read so far."""
    s = settings
    raw = {"key_serializer": "raw", "value_serializer": "raw"}
    predictions = app.topic(s.predictions_topic, partitions=s.hitl_partitions, **raw)
    feedback = app.topic(s.feedback_topic, partitions=s.hitl_partitions, **raw)
    annotations = app.topic(s.annotations_topic, partitions=s.hitl_partitions, **raw)
    events = app.topic(s.events_topic, **raw)
    relabel = app.topic(s.relabel_topic, **raw)
    annotate = app.topic(s.annotate_topic, partitions=s.hitl_partitions, **raw)
    al_items = app.Table("al-items", partitions=s.hitl_partitions)  # item id -> item
    queue: collections.deque = collections.deque(maxlen=10_000)  # this worker's items
    selector = Selector(s.annotation_budget_per_hour, max_labels=s.metrics_max_labels)
    outcomes_topic = app.topic(s.outcomes_topic, partitions=1, **raw)
    deployments = app.topic(s.deployments_topic, partitions=1, **raw)
    scores = app.Table("rollout-scores", partitions=1)  # "<rollout>|<model>" -> ModelScore
    pred_table = app.Table("hitl-predictions", partitions=s.hitl_partitions)
    pending = app.Table("hitl-feedback", partitions=s.hitl_partitions)
    predictor = Predictor(s.hitl_registry_dir)
    bucket = TokenBucket(s.hitl_rate_per_s, s.hitl_burst)
    credentials = Credentials.from_pairs(s.hitl_token, s.hitl_tokens)
    book = AnnotationBook()
    # item -> {"annotations": {annotator: label}, "held": bool}, partitioned like the
    # annotations: the one writer of an item's hold decides it (restored after a restart)
    book_table = app.Table("hitl-annotation-book", partitions=s.hitl_partitions)
    holds = app.topic(s.holds_topic, partitions=1, **raw)

    async def guarded(web, request, handler):
        endpoint = request.path
        try:
            # the rate limit comes first: token guessing is throttled like any request
            if not bucket.allow(request.remote or "?"):
                raise HttpError(429, f"rate limit: {s.hitl_rate_per_s:g} requests/s")
            if not credentials.configured:
                raise HttpError(503, "human-in-the-loop endpoints are disabled: set hitl_token")
            identity = credentials.identify(request.headers.get("Authorization"))
            if identity is None:
                raise HttpError(401, "missing or wrong bearer token")
            body = await read_body(request, s.hitl_max_body_bytes, s.hitl_body_timeout_s)
            status, out = await handler(body, identity)
        except HttpError as e:
            metrics.hitl_requests.labels(endpoint, str(e.status)).inc()
            return web.json({"error": e.message}, status=e.status)
        metrics.hitl_requests.labels(endpoint, str(status)).inc()
        return web.json(out, status=status)

    async def durable(topic, key: str, value: dict) -> None:
        await durable_raw(topic, key, orjson.dumps(value))

    async def durable_raw(topic, key: str, value: bytes) -> None:
        fut = await topic.send(key=key.encode(), value=value)
        await fut  # acknowledged by the broker before we answer

    async def do_predict(body: bytes, identity: str):
        req = check_predict(decode(PredictRequest, body))
        pid = uuid.uuid4().hex
        # the routing key of a canary: the event id when given (the same event always
        # meets the same model), else the prediction id
        out = await asyncio.get_running_loop().run_in_executor(
            None, predictor.predict, req.features, req.explain, req.event_id or pid
        )
        label, prob, model = out["label"], out["probability"], out["model"]
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
                "shadow": out.get("shadow"),  # recorded, never answered
                "rollout": out.get("rollout"),
            },
        )
        metrics.predictions.inc()
        capped = selector.capped
        q = selector.offer(pid, label, out["uncertainty"], time.time())
        if selector.capped > capped:
            metrics.annotate_capped.inc()
        if q is not None:  # selected for labelling, with its selection probability
            item = {
                "item_id": pid, "features": req.features, "model": model, "predicted": label,
                "probability": prob, "uncertainty": out["uncertainty"],
                "entropy": out["entropy"], "selection_probability": q, "ts": time.time(),
                "event_id": req.event_id,
                "reason": f"uncertainty {out['uncertainty']:.3f} (1 - margin) for "
                          f"{label!r}: drawn with probability {q:.3f}",
            }  # fmt: skip
            await durable(annotate, pid, item)
            metrics.annotate_selected.labels(metrics.bounded(label)).inc()
        answer = {"prediction_id": pid, "label": label, "probability": prob, "model": model}
        if req.explain:
            answer["attributions"] = out["attributions"]
        return 200, answer

    async def do_feedback(body: bytes, identity: str):
        req = check_feedback(decode(FeedbackRequest, body))
        await durable(feedback, req.prediction_id, msgspec.structs.asdict(req))
        return 202, {"accepted": True}

    async def do_annotation(body: bytes, identity: str):
        req = check_annotation(decode(AnnotationRequest, body))
        if identity == SERVICE:
            raise HttpError(403, "annotations need an annotator's token (hitl_tokens)")
        if req.annotator_id != identity:
            raise HttpError(403, "annotator_id: must be the annotator your token names")
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

    @app.page("/annotate/next")
    async def annotate_next(web, request):
        """The next items selected for labelling (this worker's share), oldest first:
        ``?n=10&label=<predicted label>``; each item is handed out once."""
        endpoint = "/annotate/next"
        try:
            if not bucket.allow(request.remote or "?"):
                raise HttpError(429, f"rate limit: {s.hitl_rate_per_s:g} requests/s")
            if not credentials.configured:
                raise HttpError(503, "human-in-the-loop endpoints are disabled: set hitl_token")
            if credentials.identify(request.headers.get("Authorization")) is None:
                raise HttpError(401, "missing or wrong bearer token")
            n, label = next_query(request.query)
        except HttpError as e:
            metrics.hitl_requests.labels(endpoint, str(e.status)).inc()
            return web.json({"error": e.message}, status=e.status)
        items = take(queue, n, label)
        metrics.hitl_requests.labels(endpoint, "200").inc()
        return web.json({"items": items, "waiting": len(queue)})

    async def resolve(pid: str) -> None:
        """Runs inside the agent handling ``pid``'s event, so table writes go to the right
        changelog partition (both topics are keyed and partitioned by prediction id)."""
        out = join_feedback(
            pid, pred_table.get(pid), pending.get(pid), time.time(), s.hitl_prediction_ttl_s
        )
        if out.kind == "expired":
            del pred_table[pid]  # past the retention bound: forget it
            return
        if out.kind == "waiting":
            return
        pred, fb = pred_table.get(pid), pending.get(pid)
        del pending[pid]
        for o in outcomes(pred, out.kind, fb):  # to the rollout decider (one partition)
            o["rollout"] = pred.get("rollout")
            await outcomes_topic.send(key=b"rollout", value=orjson.dumps(o))
        if out.event is not None:
            await events.send(key=out.event["id"].encode(), value=orjson.dumps(out.event))
            metrics.corrections.labels(metrics.bounded(out.event["label"])).inc()
        elif out.relabel is not None:
            metrics.votes.labels("down").inc()
            metrics.downvotes.labels(metrics.bounded(out.relabel["predicted"])).inc()
            await relabel.send(key=pid.encode(), value=orjson.dumps(out.relabel))
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

    @app.agent(annotate)
    async def on_annotate(stream):
        async for value in stream:
            item = orjson.loads(value)
            al_items[item["item_id"]] = item
            queue.append(item)

    @app.agent(annotations)
    async def on_annotation(stream):
        async for value in stream:
            a = orjson.loads(value)
            item = al_items.get(a["item_id"])
            if item is not None and not item.get("labelled"):
                # a selected item's first annotation: a labelled event, carrying the
                # probability it was selected with (estimates weight it by 1 / q)
                ev = annotated_event(item, a)
                await events.send(key=ev["id"].encode(), value=orjson.dumps(ev))
                al_items[a["item_id"]] = {**item, "labelled": True}
                metrics.annotate_labelled.labels(metrics.bounded(a["label"])).inc()
            iid = a["item_id"]
            entry = book_table.get(iid) or {"annotations": {}, "held": False}
            book.items[iid] = dict(entry["annotations"])
            book.update(iid, a["annotator_id"], a["label"])
            # held: by this table, or by the holds topic (the table may have lost its
            # last writes in a restart on a broker that under-reports end offsets)
            was = bool(entry["held"]) or iid in held_now()
            held = {iid} if was else set()
            request = annotation_relabel(book, iid, s.hitl_agreement_bar, held)
            book_table[iid] = {"annotations": book.items[iid], "held": iid in held}
            if (iid in held) != was:  # to every worker (they build snapshots)
                await durable_raw(holds, iid, hold_record(iid, iid in held))
            if request is not None:
                await relabel.send(key=a["item_id"].encode(), value=orjson.dumps(request))
                metrics.relabel_queued.labels("low-agreement").inc()

    @app.agent(outcomes_topic)
    async def decide_rollout(stream):
        """The one decider (one partition): count what feedback says about each model
        during the current rollout, export it, and end the rollout when the evidence is
        enough (see :mod:`streamproc.hitl.rollout`)."""
        aio = asyncio.get_running_loop()
        async for value in stream:
            o = orjson.loads(value)
            key = f"{o.get('rollout') or 'none'}|{o['model']}"
            score = ModelScore(**scores.get(key, {}))
            score.add(o)
            scores[key] = score.to_dict()
            _export_score(metrics, o["model"], score, s.rollout_confidence)
            if o.get("rollout") is None:
                continue
            champion, cand = await aio.run_in_executor(None, predictor.rollout)
            if cand is None or champion is None or cand["since"] != o["rollout"]:
                continue  # the outcome belongs to a rollout that has ended
            d = decide(
                ModelScore(**scores.get(f"{o['rollout']}|{champion}", {})),
                ModelScore(**scores.get(f"{o['rollout']}|{cand['model']}", {})),
                s.rollout_margin, s.rollout_confidence, s.rollout_min_judged,
            )  # fmt: skip
            if d is None:
                continue
            evidence = {"champion": d.champion, "candidate": d.candidate,
                        "interval": list(d.interval), "mode": cand["mode"]}  # fmt: skip
            verdict = "promote" if d.decision == "promote" else "reject"
            done = await aio.run_in_executor(None, predictor.end_rollout, verdict, d.reason,
                                             evidence)  # fmt: skip
            if done is None:
                continue
            log.warning("rollout of %s: %s (%s)", done, d.decision, d.reason)
            metrics.rollout_decisions.labels(d.decision).inc()
            record = {"action": d.decision, "model": done, "champion": champion,
                      "reason": d.reason, "evidence": evidence, "at": time.time()}  # fmt: skip
            await deployments.send(key=done.encode(), value=orjson.dumps(record))

    @app.timer(10.0)
    async def export_kappas():
        book.items = {k: dict(v["annotations"]) for k, v in book_table.items()}  # this
        # worker's items
        for label, k in book.label_kappas().items():
            if np.isfinite(k):
                metrics.annotation_kappa.labels(metrics.bounded(label)).set(k)


def _export_score(metrics, model: str, score: ModelScore, confidence: float) -> None:
    if score.judged:
        lo, hi = score.interval(confidence)
        metrics.online_judged.labels(model).set(score.judged)
        metrics.online_accuracy.labels(model, "estimate").set(score.accuracy)
        metrics.online_accuracy.labels(model, "lower").set(lo)
        metrics.online_accuracy.labels(model, "upper").set(hi)
    if score.answered:
        metrics.online_downvote_rate.labels(model).set(score.downvotes / score.answered)


def _post_view(handler, guarded):
    import faust

    class View(faust.web.View):
        async def post(self, request):
            return await guarded(self, request, handler)

    return View
