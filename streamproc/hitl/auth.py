"""Credentials of the worker's HTTP endpoints: who a bearer token belongs to.

Tokens are compared in constant time (:func:`hmac.compare_digest`, every configured token
each time, so the time taken says nothing about which one came close). ``hitl_token`` is
the service credential (predictions, feedback); ``hitl_tokens`` names one credential per
annotator, and an annotation is accepted only under the annotator id its token names.

>>> c = Credentials("s" * 16, {"alice": "a" * 16})
>>> c.identify("Bearer " + "a" * 16), c.identify("Bearer " + "s" * 16), c.identify("Bearer x")
('alice', '', None)
"""

from __future__ import annotations

import hmac

SERVICE = ""  # the identity of the service token (not an annotator)


class Credentials:
    def __init__(self, service_token: str, annotators: dict[str, str]) -> None:
        self._tokens: list[tuple[bytes, str]] = []
        if service_token:
            self._tokens.append((service_token.encode(), SERVICE))
        for name, token in annotators.items():
            self._tokens.append((token.encode(), name))

    @classmethod
    def from_pairs(cls, service_token: str, pairs: list[str]) -> Credentials:
        """From ``annotator=token`` pairs (validated by the settings)."""
        return cls(service_token, dict(p.split("=", 1) for p in pairs))

    @property
    def configured(self) -> bool:
        return bool(self._tokens)

    def identify(self, authorization: str | None) -> str | None:
        """The identity a ``Bearer`` header proves, or None."""
        if not authorization or not authorization.startswith("Bearer "):
            return None
        given = authorization[len("Bearer ") :].encode()
        found = None
        for token, name in self._tokens:  # no early exit: constant work per request
            if hmac.compare_digest(given, token):
                found = name
        return found
