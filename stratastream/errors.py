"""The project's exception hierarchy.

Every error raised on purpose by Stratastream derives from :class:`StratastreamError`,
so callers can catch one root. Messages name the offending field or value.
"""

from __future__ import annotations


class StratastreamError(Exception):
    """Root of every error Stratastream raises on purpose."""


class ConfigError(StratastreamError, ValueError):
    """A setting has a bad value; the message names the setting and the reason."""


class InputError(StratastreamError, ValueError):
    """Input arrays or records are malformed; the message names the field and index."""


class LabelOverflowError(StratastreamError):
    """More distinct labels arrived than ``QuotaPolicy.max_labels`` allows."""


class StateError(StratastreamError, ValueError):
    """Serialized state is corrupt, foreign, from an unsupported version, or incompatible."""
