"""The request bodies of the human-in-the-loop endpoints, their validation and the
OpenAPI description. Pure: no web server, no Kafka.

>>> decode(FeedbackRequest, b'{"prediction_id": "p1", "vote": "sideways"}')
FeedbackRequest(prediction_id='p1', vote='sideways', label=None)
>>> check_feedback(decode(FeedbackRequest, b'{"prediction_id": "p1", "vote": "sideways"}'))
Traceback (most recent call last):
...
streamproc.hitl.requests.HttpError: vote: expected 'up' or 'down', got 'sideways'
"""

from __future__ import annotations

import math

import msgspec


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class PredictRequest(msgspec.Struct, forbid_unknown_fields=True):
    features: list[float]
    event_id: str | None = None
    explain: bool = False  # add per-feature attributions (integrated gradients)


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
                {
                    "features": {"type": "array", "items": {"type": "number"}},
                    "event_id": _STR,
                    "explain": {"type": "boolean"},
                },
            ),
            "200 prediction_id, label, probability, model (explain: attributions)",
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


def decode(kind: type, body: bytes):
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as e:
        raise HttpError(400, f"invalid body: {e}") from None
    except msgspec.DecodeError as e:
        raise HttpError(400, f"body is not JSON: {e}") from None


async def read_body(request, max_bytes: int, timeout_s: float) -> bytes:
    """The request body: at most ``max_bytes``, arriving within ``timeout_s`` (a stalled
    body is answered 408, it does not hold a connection forever)."""
    import asyncio

    if (request.content_length or 0) > max_bytes:
        raise HttpError(413, f"body larger than {max_bytes} bytes")

    async def whole() -> bytes:
        chunks, n = [], 0
        while chunk := await request.content.read(65_536):  # b"" at the end of the body
            n += len(chunk)
            if n > max_bytes:
                raise HttpError(413, f"body larger than {max_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        return await asyncio.wait_for(whole(), timeout_s)
    except TimeoutError:
        raise HttpError(408, f"body not received within {timeout_s:g} s") from None


MAX_ID_CHARS = 256


def check_predict(req: PredictRequest) -> PredictRequest:
    if not all(math.isfinite(x) for x in req.features):
        raise HttpError(400, "features: all numbers must be finite")
    return req


def check_feedback(req: FeedbackRequest) -> FeedbackRequest:
    if (req.vote is None) == (req.label is None):
        raise HttpError(400, "vote/label: give exactly one of them")
    if req.vote is not None and req.vote not in ("up", "down"):
        raise HttpError(400, f"vote: expected 'up' or 'down', got {req.vote!r}")
    if req.label is not None and not 0 < len(req.label.strip()) <= 128:
        raise HttpError(400, "label: must be 1 to 128 non-blank characters")
    if not req.prediction_id:
        raise HttpError(400, "prediction_id: must not be empty")
    if len(req.prediction_id) > MAX_ID_CHARS:
        raise HttpError(400, f"prediction_id: at most {MAX_ID_CHARS} characters")
    return req


def check_annotation(req: AnnotationRequest) -> AnnotationRequest:
    for name in ("item_id", "annotator_id", "label"):
        if not getattr(req, name).strip():
            raise HttpError(400, f"{name}: must not be empty")
    if len(req.label) > 128:
        raise HttpError(400, f"label: at most 128 characters, got {len(req.label)}")
    for name in ("item_id", "annotator_id"):
        if len(getattr(req, name)) > MAX_ID_CHARS:
            raise HttpError(400, f"{name}: at most {MAX_ID_CHARS} characters")
    return req
