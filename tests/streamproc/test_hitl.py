"""Human in the loop, end to end on the embedded broker with a real worker."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest

from snapshot_format import SnapshotManifest, read_manifest
from tests.conftest import read_topic
from tests.trainer.conftest import make_snapshot
from trainer.pipeline import train_and_register
from trainer.registry import ModelRegistry
from trainer.train import TrainConfig

pytestmark = pytest.mark.integration
TOKEN = "hitl-test-token-42"
ANN = {f"a{i}": f"annotator-token-{i}-xxxx" for i in range(1, 6)}  # one credential each


def _call(w, path: str, body, token: str | None = TOKEN, raw: bytes | None = None):
    data = raw if raw is not None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(w.url + path, data=data, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture
def hitl_worker(deployment, tmp_path: Path):
    v, _ = make_snapshot(tmp_path / "train", 2_000, 3, seed=1)
    reg = tmp_path / "registry"
    train_and_register(
        tmp_path / "train" / "snapshots",
        ModelRegistry(reg),
        TrainConfig(epochs=3, device="cpu"),
        v,
        progress=False,
    )
    n = deployment.events
    topics = {
        "predictions": f"{n}-pred",
        "feedback": f"{n}-fb",
        "annotations": f"{n}-ann",
        "relabel": f"{n}-relabel",
        "spot": f"{n}-spot",
        "holds": f"{n}-holds",
    }
    deployment.broker.create_topics(
        {
            topics["predictions"]: 4,
            topics["feedback"]: 4,
            topics["annotations"]: 4,
            topics["relabel"]: 1,
            topics["spot"]: 1,
            topics["holds"]: 1,
        }
    )
    w = deployment.worker(
        "hitl",
        STRATA_HITL_TOKEN=TOKEN,
        STRATA_HITL_TOKENS=",".join(f"{a}={t}" for a, t in ANN.items()),
        STRATA_HITL_BODY_TIMEOUT_S="1",
        STRATA_HITL_REGISTRY_DIR=str(reg),
        STRATA_HITL_RATE_PER_S="20",
        STRATA_HITL_BURST="40",
        STRATA_HITL_MAX_BODY_BYTES="2048",
        STRATA_PREDICTIONS_TOPIC=topics["predictions"],
        STRATA_FEEDBACK_TOPIC=topics["feedback"],
        STRATA_ANNOTATIONS_TOPIC=topics["annotations"],
        STRATA_RELABEL_TOPIC=topics["relabel"],
        STRATA_SPOT_CHECK_TOPIC=topics["spot"],
        STRATA_HOLDS_TOPIC=topics["holds"],
    )
    w.wait_ready(90)
    return w, topics


def test_bad_requests_get_clear_4xx_and_write_nothing(hitl_worker, deployment) -> None:
    w, topics = hitl_worker
    cases = [
        ("/predict", {"features": [1, 2, 3, 4]}, None, 401, "bearer token"),
        ("/predict", {"features": [1, 2, 3, 4]}, "wrong", 401, "bearer token"),
        ("/predict", {"feature": [1, 2, 3, 4]}, TOKEN, 400, "unknown field `feature`"),
        ("/predict", {}, TOKEN, 400, "missing required field `features`"),
        ("/predict", {"features": [1, 2]}, TOKEN, 400, "features: expected 4 numbers"),
        ("/predict", {"features": [1e300, 1, 2, 3]}, TOKEN, 400, "finite float32"),
        ("/predict", {"features": ["a", 2, 3, 4]}, TOKEN, 400, "`$.features[0]`"),
        (
            "/feedback",
            {"prediction_id": "p", "vote": "up", "label": "x"},
            TOKEN,
            400,
            "vote/label: give exactly one",
        ),
        ("/feedback", {"prediction_id": "p", "vote": "sideways"}, TOKEN, 400, "vote: expected"),
        (
            "/annotations",
            {"item_id": "i", "annotator_id": " ", "label": "x"},
            TOKEN,
            400,
            "annotator_id: must not be empty",
        ),
        ("/annotations", {"item_id": "i", "label": "x"}, TOKEN, 400, "`annotator_id`"),
    ]
    for path, body, token, status, msg in cases:
        code, out = _call(w, path, body, token=token)
        assert code == status and msg in out["error"], (path, body, code, out)
    code, out = _call(w, "/feedback", None, raw=b"{" + b" " * 4_000 + b"}")
    assert code == 413 and "2048" in out["error"]
    code, out = _call(w, "/feedback", None, raw=b"not json")
    assert code == 400 and "not JSON" in out["error"]
    for t in ("predictions", "feedback", "annotations"):
        assert read_topic(deployment.broker.bootstrap, topics[t], timeout=2.0) == []
    with urllib.request.urlopen(w.url + "/openapi.json", timeout=5) as r:
        spec = json.loads(r.read())
    assert set(spec["paths"]) == {"/predict", "/feedback", "/annotations"}


def test_corrections_reach_the_next_snapshot(hitl_worker, deployment) -> None:
    w, topics = hitl_worker
    # the original event, labelled L_original, arrives through Kafka first
    from confluent_kafka import Producer

    prod = Producer(
        {"bootstrap.servers": deployment.broker.bootstrap, "partitioner": "murmur2_random"}
    )  # Kafka's default, as Faust uses
    original = {
        "id": "ev-7",
        "ts": time.time(),
        "label": "L_original",
        "features": [0.5, -1.0, 2.0, 0.1],
    }
    prod.produce(deployment.events, json.dumps(original).encode(), key=b"ev-7")
    prod.flush(10)
    w.wait_until(
        lambda s: sum(p["accepted"] for p in s["partitions"].values()) == 1,
        60,
        "the original event",
    )
    code, pred = _call(w, "/predict", {"features": [0.5, -1.0, 2.0, 0.1], "event_id": "ev-7"})
    assert code == 200 and pred["model"].startswith("m0001")
    corrected = "L_corrected"
    assert (
        _call(w, "/feedback", {"prediction_id": pred["prediction_id"], "label": corrected})[0]
        == 202
    )
    code, pred2 = _call(w, "/predict", {"features": [0.0, 0.0, 0.0, 0.0]})
    assert (
        _call(w, "/feedback", {"prediction_id": pred2["prediction_id"], "vote": "down"})[0] == 202
    )
    # acknowledged means written: both feedback records are on the feedback topic
    fb = read_topic(deployment.broker.bootstrap, topics["feedback"], expect=2, timeout=30)
    assert len(fb) == 2
    w.wait_until(
        lambda s: sum(p["accepted"] for p in s["partitions"].values()) >= 1,
        60,
        "the corrected event",
    )
    relabel = [
        json.loads(m.value())
        for m in read_topic(deployment.broker.bootstrap, topics["relabel"], expect=1, timeout=30)
    ]
    assert relabel and relabel[0]["reason"] == "down-vote"
    assert relabel[0]["prediction_id"] == pred2["prediction_id"]
    before = len(w.status()["snapshots"])
    w.request_snapshot()
    st = w.wait_until(lambda s: len(s["snapshots"]) > before, 60, "a snapshot")
    store = deployment.root / "snap-g"
    m = read_manifest(store, st["snapshots"][-1])
    assert m.seen == {"L_original": 1, corrected: 1}
    import pyarrow.parquet as pq

    rows = pq.read_table(store / m.version / "data.parquet").to_pylist()
    # the correction replaced the original label inside the reservoirs: one row, relabelled
    assert len(rows) == 1
    assert rows[0]["id"] == "ev-7" and rows[0]["label"] == corrected
    payload = json.loads(rows[0]["payload"])
    assert payload["source"] == "feedback" and payload["predicted"] == pred["label"]
    # each snapshot publishes a stratified review sample: here its one row
    spot = [
        json.loads(m.value())
        for m in read_topic(deployment.broker.bootstrap, topics["spot"], expect=1, timeout=30)
    ]
    assert [(x["snapshot"], x["id"], x["label"]) for x in spot] == [(m.version, "ev-7", corrected)]


def test_low_agreement_items_are_queued_and_kept_out_of_snapshots(hitl_worker, deployment) -> None:
    w, topics = hitl_worker
    for ann, lab in (("a1", "cat"), ("a2", "dog")):
        assert (
            _call(
                w,
                "/annotations",
                {"item_id": "item-1", "annotator_id": ann, "label": lab},
                token=ANN[ann],
            )[0]
            == 202
        )
    for ann in ("a1", "a2", "a3"):
        assert (
            _call(
                w,
                "/annotations",
                {"item_id": "item-2", "annotator_id": ann, "label": "cat"},
                token=ANN[ann],
            )[0]
            == 202
        )
    msgs = [
        json.loads(m.value())
        for m in read_topic(deployment.broker.bootstrap, topics["relabel"], expect=1, timeout=30)
    ]
    assert [m["item_id"] for m in msgs] == ["item-1"]
    assert msgs[0]["agreement"] == 0.0 and msgs[0]["reason"] == "low agreement"
    w.wait_until(lambda s: s["held_for_relabel"] == ["item-1"], 30, "item-1 held")

    # the items are events of the stream too; item-1 stays out of snapshots while held
    from confluent_kafka import Producer

    prod = Producer(
        {"bootstrap.servers": deployment.broker.bootstrap, "partitioner": "murmur2_random"}
    )
    for item in ("item-1", "item-2"):
        ev = {"id": item, "ts": time.time(), "label": "cat", "features": [1, 2, 3, 4]}
        prod.produce(deployment.events, json.dumps(ev).encode(), key=item.encode())
    prod.flush(10)
    w.wait_until(
        lambda s: sum(p["accepted"] for p in s["partitions"].values()) == 2, 60, "the two events"
    )
    store = deployment.root / "snap-g"

    def snapshot_rows() -> tuple[SnapshotManifest, list[str]]:
        import pyarrow.parquet as pq

        before = len(w.status()["snapshots"])
        w.request_snapshot()
        st = w.wait_until(lambda s: len(s["snapshots"]) > before, 60, "a snapshot")
        m = read_manifest(store, st["snapshots"][-1])
        return m, pq.read_table(store / m.version / "data.parquet").column("id").to_pylist()

    m, ids = snapshot_rows()
    assert ids == ["item-2"] and m.held_for_relabel == 1 and m.retained == {"cat": 1}
    # three more annotators agree: agreement 0.6 reaches the bar, the item is released
    for ann in ("a3", "a4", "a5"):
        assert (
            _call(
                w,
                "/annotations",
                {"item_id": "item-1", "annotator_id": ann, "label": "cat"},
                token=ANN[ann],
            )[0]
            == 202
        )
    w.wait_until(lambda s: s["held_for_relabel"] == [], 30, "item-1 released")
    m, ids = snapshot_rows()
    assert sorted(ids) == ["item-1", "item-2"] and m.held_for_relabel == 0


def test_rate_limit(hitl_worker) -> None:
    w, _ = hitl_worker
    codes = [
        _call(w, "/feedback", {"prediction_id": "p", "vote": "sideways"})[0] for _ in range(60)
    ]
    assert 429 in codes and codes[0] == 400


def test_endpoints_are_guarded(hitl_worker) -> None:
    """Only our routes; every state-changing endpoint authenticated; annotators bound to
    their credentials; bad tokens throttled like any request; stalled bodies time out."""
    import socket

    w, _ = hitl_worker
    for path in ("/", "/table/hitl-predictions/", "/router/"):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(w.url + path, timeout=5)
        assert e.value.code == 404, path
    req = urllib.request.Request(w.url + "/snapshot", method="POST", data=b"")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=5)
    assert e.value.code == 401
    w.request_snapshot()  # with the admin token: 202
    ann = {"item_id": "i9", "annotator_id": "a2", "label": "cat"}
    assert _call(w, "/annotations", ann, token=TOKEN)[0] == 403  # the service token
    code, out = _call(w, "/annotations", ann, token=ANN["a1"])  # a1 posing as a2
    assert code == 403 and "annotator_id" in out["error"]
    code, out = _call(w, "/annotations", {**ann, "label": "x" * 500}, token=ANN["a2"])
    assert code == 400 and out["error"].startswith("label: at most 128")
    # a stalled body is answered 408 after hitl_body_timeout_s (1 s here)
    host, port = w.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /feedback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {TOKEN}\r\nContent-Length: 100\r\n\r\n".encode()
            + b'{"predi'
        )
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 408"), reply[:100]
    # guessing tokens is rate-limited too (burst 40, 20/s here)
    codes = [_call(w, "/feedback", {"prediction_id": "p", "vote": "up"}, token=f"guess-{i}")[0]
             for i in range(60)]  # fmt: skip
    assert codes[0] == 401 and 429 in codes


def test_held_items_are_known_to_every_worker_and_survive_restarts(deployment, tmp_path) -> None:
    """Annotations are handled by the worker that owns their partition; the hold they
    cause must reach the other workers (any of them builds snapshots) and outlive the
    workers (the annotations and holds are in Faust tables backed by changelogs)."""
    from tests.conftest import hitl_env

    env = hitl_env(deployment, TOKEN, tmp_path / "registry",
                   STRATA_HITL_TOKENS=",".join(f"{a}={t}" for a, t in ANN.items()))  # fmt: skip
    a = deployment.worker("hold-a", group="hold", state="hold-a", **env)
    b = deployment.worker("hold-b", group="hold", state="hold-b", **env)
    for w in (a, b):
        w.wait_until(lambda s: bool(s["partitions"]), 120, "its partitions")
    for ann, lab in (("a1", "cat"), ("a2", "dog")):  # posted to one worker only
        assert _call(a, "/annotations", {"item_id": "item-x", "annotator_id": ann,
                                         "label": lab}, token=ANN[ann])[0] == 202  # fmt: skip
    for w in (a, b):
        w.wait_until(lambda s: s["held_for_relabel"] == ["item-x"], 60, "item-x held")
    a.stop()
    b.stop()
    c = deployment.worker("hold-c", group="hold", state="hold-c", **env)  # a new host
    c.wait_until(lambda s: s["held_for_relabel"] == ["item-x"], 90, "the hold restored")
    # three agreeing annotations release it (the hold came from the holds topic)
    for ann in ("a3", "a4", "a5"):
        assert _call(c, "/annotations", {"item_id": "item-x", "annotator_id": ann,
                                         "label": "cat"}, token=ANN[ann])[0] == 202  # fmt: skip
    c.wait_until(lambda s: s["held_for_relabel"] == [], 60, "item-x released")
    # two annotators disagree on another item: held, through the new worker
    for ann, lab in (("a1", "cat"), ("a2", "dog")):
        assert _call(c, "/annotations", {"item_id": "item-y", "annotator_id": ann,
                                         "label": lab}, token=ANN[ann])[0] == 202  # fmt: skip
    c.wait_until(lambda s: s["held_for_relabel"] == ["item-y"], 60, "item-y held")
    reqs = [
        json.loads(m.value())
        for m in read_topic(
            deployment.broker.bootstrap, env["STRATA_RELABEL_TOPIC"], expect=2, timeout=30
        )
    ]
    assert [r["item_id"] for r in reqs] == ["item-x", "item-y"]  # one request each
    assert c.stop() == 0
