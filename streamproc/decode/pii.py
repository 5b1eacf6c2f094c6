"""PII scrubbing of event payloads before anything is stored.

Configured fields are pseudonymised with a keyed HMAC-SHA256 (same input, same pseudonym,
so joins still work; without the key the mapping cannot be reversed or recomputed).
E-mail addresses and phone numbers in configured text fields are redacted.

>>> s = PiiScrubber(key=b"k" * 32, hash_fields=("user",), text_fields=("msg",))
>>> out, err = s(b'{"user": "alice", "msg": "mail bob@example.com or +1 415-555-0100"}')
>>> err is None and b"alice" not in out and b"bob@" not in out and b"555" not in out
True
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

import orjson

from stratastream.errors import ConfigError

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
PHONE = re.compile(r"(?<!\w)\+?\d[\d\s().-]{7,}\d(?!\w)")


@dataclass(frozen=True)
class PiiScrubber:
    key: bytes
    hash_fields: tuple[str, ...] = ()
    text_fields: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.hash_fields or self.text_fields) and len(self.key) < 16:
            raise ConfigError("pii_key: must be at least 16 bytes when PII fields are configured")

    @property
    def active(self) -> bool:
        return bool(self.hash_fields or self.text_fields)

    def pseudonym(self, value: object) -> str:
        raw = value if isinstance(value, str) else orjson.dumps(value).decode()
        return "h:" + hmac.new(self.key, raw.encode(), hashlib.sha256).hexdigest()[:32]

    def __call__(self, payload: bytes) -> tuple[bytes, str | None]:
        """Scrubbed payload bytes and None, or the original bytes and a reject reason."""
        if not self.active or payload == b"null":
            return payload, None
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError as e:  # pragma: no cover - validated upstream
            return payload, f"payload: not JSON ({e})"
        if not isinstance(doc, dict):
            return payload, None
        for f in self.hash_fields:
            if f in doc and doc[f] is not None:
                doc[f] = self.pseudonym(doc[f])
        for f in self.text_fields:
            v = doc.get(f)
            if v is None:
                continue
            if not isinstance(v, str):
                return payload, f"payload.{f}: expected a string for a PII text field"
            doc[f] = PHONE.sub("[phone]", EMAIL.sub("[email]", v))
        return orjson.dumps(doc), None
