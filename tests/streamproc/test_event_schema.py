"""The published JSON Schema (schemas/event.schema.json) and the worker's decoder agree:
the file is what the code generates, and every event of a corpus of valid and invalid
events is accepted by both or rejected by both."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import orjson
import pytest

from streamproc.decode.decoding import decode_batch
from streamproc.decode.events import Limits
from streamproc.decode.messages import RawMessages
from streamproc.decode.schema import event_json_schema

ROOT = Path(__file__).resolve().parents[2]
NOW = 1.7e9
GOOD = {"id": "e1", "ts": NOW, "label": "ok", "features": [1, 2.5, -3, 0]}

CORPUS = [
    GOOD,
    {**GOOD, "id": "é-ünïcode"},
    {k: v for k, v in GOOD.items() if k != "id"},
    {**{k: v for k, v in GOOD.items() if k != "label"}, "labels": ["a", "b", "c"]},
    {**GOOD, "payload": {"text": "hi", "n": [1, 2]}},
    {**GOOD, "relabel": True},
    {**GOOD, "label": "x" * 128},
    # rejected by both
    {**GOOD, "label": "x" * 129},
    {**GOOD, "label": ""},
    {**GOOD, "label": "   "},
    {**GOOD, "label": 5},
    {**GOOD, "features": [1, 2, 3]},
    {**GOOD, "features": [1, 2, 3, 4, 5]},
    {**GOOD, "features": [1, 2, "3", 4]},
    {**GOOD, "features": [1, 2, 1e39, 4]},
    {**GOOD, "ts": "yesterday"},
    {k: v for k, v in GOOD.items() if k != "ts"},
    {k: v for k, v in GOOD.items() if k != "label"},
    {**GOOD, "labels": ["a"]},
    {**{k: v for k, v in GOOD.items() if k != "label"}, "labels": []},
    {**{k: v for k, v in GOOD.items() if k != "label"}, "labels": [str(i) for i in range(9)]},
    {**GOOD, "lable": "typo"},
    {**GOOD, "relabel": "yes"},
    {**GOOD, "id": 7},
    [GOOD],
    "just a string",
]


def test_the_published_file_is_the_generated_schema() -> None:
    published = json.loads((ROOT / "schemas" / "event.schema.json").read_text())
    assert published == event_json_schema()
    jsonschema.Draft202012Validator.check_schema(published)


@pytest.mark.parametrize("i", range(len(CORPUS)))
def test_schema_and_decoder_agree(i: int) -> None:
    event = CORPUS[i]
    validator = jsonschema.Draft202012Validator(event_json_schema(Limits()))
    schema_ok = validator.is_valid(event)
    raw = RawMessages.from_tuples([(0, orjson.dumps(event), NOW)])
    batch = decode_batch("events", 0, raw, Limits())
    decoder_ok = len(batch) == 1 and not batch.rejects
    assert schema_ok == decoder_ok, (event, [r.reason for r in batch.rejects])
