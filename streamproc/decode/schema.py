"""The JSON event as a JSON Schema (draft 2020-12), for producers in any language.

:func:`event_json_schema` writes the rules the worker's decoder applies to one JSON event
(for given :class:`~streamproc.decode.events.Limits`); ``schemas/event.schema.json`` is
that schema for the default limits (a test keeps the file and this function equal, and
checks that the schema and the decoder agree on accepted and rejected events). Two rules
are beyond JSON Schema and stay the decoder's alone: ``ts`` at most ``max_future_s``
after the Kafka message's timestamp, and the message's size in bytes.

>>> s = event_json_schema(Limits(feature_dim=3))
>>> s["properties"]["features"]["minItems"], s["properties"]["features"]["maxItems"]
(3, 3)
"""

from __future__ import annotations

from streamproc.decode.events import FEATURE_MAX, MAX_LABEL_CHARS, Limits

SCHEMA_ID = "https://stratastream.invalid/schemas/event.schema.json"


def event_json_schema(limits: Limits | None = None) -> dict:
    lim = limits or Limits()
    label = {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_LABEL_CHARS,
        "pattern": r"\S",  # not blank
        "description": "a class label (1-128 characters, not only whitespace)",
    }
    number = {"type": "number", "minimum": -FEATURE_MAX, "maximum": FEATURE_MAX}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Stratastream event",
        "description": (
            "One JSON object per Kafka message on the events topic. Also enforced by the "
            f"worker: ts at most max_future_s ({lim.max_future_s:g} s) after the message "
            f"timestamp; the message at most max_event_bytes ({lim.max_event_bytes}) bytes."
        ),
        "type": "object",
        "additionalProperties": False,
        "required": ["ts", "features"],
        "oneOf": [{"required": ["label"]}, {"required": ["labels"]}],
        "properties": {
            "id": {"type": "string", "description": "the event's key (a hash of it draws "
                   "its sample priority); absent: derived from topic, partition, offset"},
            "ts": {"type": "number", "description": "seconds since the epoch"},
            "label": label,
            "labels": {
                "type": "array",
                "items": label,
                "minItems": 1,
                "maxItems": lim.max_labels_per_event,
                "description": "several labels, the first being the primary one",
            },
            "features": {
                "type": "array",
                "items": number,
                "minItems": lim.feature_dim,
                "maxItems": lim.feature_dim,
                "description": f"exactly feature_dim ({lim.feature_dim}) finite numbers",
            },
            "relabel": {"type": "boolean", "description": "a correction of a retained event"},
            "payload": {"description": "any JSON, stored after PII scrubbing"},
        },
    }  # fmt: skip
