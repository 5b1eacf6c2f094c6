"""PII scrubbing of event payloads, ids and dead letters before anything is stored.

Configured fields are pseudonymised with a keyed HMAC-SHA256 (same input, same pseudonym,
so joins still work; without the key the mapping cannot be reversed or recomputed).
E-mail addresses and phone numbers in configured text fields are redacted. A field name
matches a key **at any depth** of the payload (objects inside objects and lists).

Redaction is a single left-to-right scan (no regular expressions, so no backtracking):
each ``@`` is extended left over local-part characters and right over domain characters,
and each run of phone characters is measured once, so the cost is linear in the text's
length, and texts longer than ``max_text_chars`` are refused rather than scanned.
Letters and digits are Unicode-aware (``josé@exämple.org`` is an address).

>>> s = PiiScrubber(key=b"k" * 32, hash_fields=("user",), text_fields=("msg",))
>>> out, err = s(b'{"user": "alice", "msg": "mail bob@example.com or +1 415-555-0100"}')
>>> err is None and b"alice" not in out and b"bob@" not in out and b"555" not in out
True
>>> redact("write to josé@exämple.org, call 0049 30 1234567 or see RFC 2822")
'write to [email], call [phone] or see RFC 2822'
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

import orjson

from stratastream.errors import ConfigError

MAX_TEXT_CHARS = 65_536
_LOCAL_EXTRA = frozenset("._%+-")
_DOMAIN_EXTRA = frozenset(".-")
_PHONE_CHARS = frozenset("0123456789 ().-+")
_MIN_PHONE_DIGITS = 9


def _local(c: str) -> bool:
    return c.isalnum() or c in _LOCAL_EXTRA


def _domain(c: str) -> bool:
    return c.isalnum() or c in _DOMAIN_EXTRA


def _emails(text: str) -> list[tuple[int, int]]:
    """Spans of e-mail addresses: ``local@domain.tld`` with a TLD of 2+ letters."""
    spans: list[tuple[int, int]] = []
    n, floor = len(text), 0
    at = text.find("@")
    while at >= 0:
        i = at
        while i > floor and _local(text[i - 1]):  # never rescans: stops at the last span/@
            i -= 1
        j = at + 1
        while j < n and _domain(text[j]):
            j += 1
        dom = text[at + 1 : j].rstrip(".-")
        end = at + 1 + len(dom)
        tld = dom.rsplit(".", 1)[-1] if "." in dom else ""
        if i < at and len(tld) >= 2 and tld.isalpha():
            spans.append((i, end))
            floor = end
        else:
            floor = at + 1
        at = text.find("@", max(j, at + 1))
    return spans


def _phones(text: str, taken: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Spans of phone numbers: a run of digits, spaces and ``().-+`` holding at least nine
    digits, starting with ``+`` or a digit and ending with a digit, not inside a word."""
    spans: list[tuple[int, int]] = []
    n, i = len(text), 0
    while i < n:
        if text[i] not in _PHONE_CHARS:
            i += 1
            continue
        j = i
        while j < n and text[j] in _PHONE_CHARS:
            j += 1
        s = i
        while s < j and not (text[s].isdigit() or text[s] == "+"):
            s += 1
        e = j
        while e > s and not text[e - 1].isdigit():
            e -= 1
        digits = sum(c.isdigit() for c in text[s:e])
        before_ok = s == 0 or not text[s - 1].isalnum()
        after_ok = e == n or not text[e].isalnum()
        if digits >= _MIN_PHONE_DIGITS and before_ok and after_ok:
            spans.append((s, e))
        i = j
    # drop phone spans that overlap an address (both lists are sorted and disjoint)
    out, k = [], 0
    for a, b in spans:
        while k < len(taken) and taken[k][1] <= a:
            k += 1
        if k == len(taken) or taken[k][0] >= b:
            out.append((a, b))
    return out


def redact(text: str) -> str:
    """``text`` with e-mail addresses as ``[email]`` and phone numbers as ``[phone]``."""
    if "@" not in text and not any(c.isdigit() for c in text):
        return text
    emails = _emails(text)
    spans = sorted([(a, b, "[email]") for a, b in emails] +
                   [(a, b, "[phone]") for a, b in _phones(text, emails)])  # fmt: skip
    out, at = [], 0
    for a, b, tag in spans:
        out.append(text[at:a])
        out.append(tag)
        at = b
    out.append(text[at:])
    return "".join(out)


@dataclass(frozen=True)
class PiiScrubber:
    key: bytes
    hash_fields: tuple[str, ...] = ()
    text_fields: tuple[str, ...] = ()
    hash_ids: bool = False  # replace event ids by their pseudonyms
    max_text_chars: int = MAX_TEXT_CHARS

    def __post_init__(self) -> None:
        if (self.active or self.hash_ids) and len(self.key) < 16:
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
        except orjson.JSONDecodeError as e:
            return payload, f"payload: not JSON ({e})"
        why = self._walk(doc, "payload", 0)
        if why is not None:
            return payload, why
        return orjson.dumps(doc), None

    def _walk(self, node, path: str, depth: int) -> str | None:
        """Scrub ``node`` in place (every depth); a reject reason, or None."""
        if depth > 256:
            return f"{path}: nested too deeply to scrub"
        if isinstance(node, dict):
            for k in list(node):
                v = node[k]
                if v is None:
                    continue
                if k in self.hash_fields:
                    node[k] = self.pseudonym(v)
                elif k in self.text_fields:
                    if not isinstance(v, str):
                        return f"{path}.{k}: expected a string for a PII text field"
                    if len(v) > self.max_text_chars:
                        return (
                            f"{path}.{k}: {len(v)} characters exceed pii_max_text_chars="
                            f"{self.max_text_chars}"
                        )
                    node[k] = redact(v)
                elif isinstance(v, dict | list):
                    why = self._walk(v, f"{path}.{k}", depth + 1)
                    if why is not None:
                        return why
        elif isinstance(node, list):
            for i, v in enumerate(node):
                if isinstance(v, dict | list):
                    why = self._walk(v, f"{path}[{i}]", depth + 1)
                    if why is not None:
                        return why
        return None

    def scrub_id(self, event_id: str) -> str:
        return self.pseudonym(event_id) if self.hash_ids else event_id

    def dead_letter(self, value: bytes) -> bytes:
        """What a dead letter may carry under this policy: a JSON document scrubbed like
        a payload (every depth, the id pseudonymised when ids are), anything else (not
        JSON, not UTF-8, a frame) with its addresses and numbers redacted as text."""
        if not (self.active or self.hash_ids) or not value:
            return value
        try:
            doc = orjson.loads(value)
        except orjson.JSONDecodeError:
            doc = None
        if isinstance(doc, dict | list):
            if self.hash_ids and isinstance(doc, dict) and isinstance(doc.get("id"), str):
                doc["id"] = self.pseudonym(doc["id"])
            if self._walk(doc, "event", 0) is None:
                return orjson.dumps(doc)
        text = value[: self.max_text_chars].decode("utf-8", errors="replace")
        return redact(text).encode()
