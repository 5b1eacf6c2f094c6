"""Errors of the snapshot format: a store entry is missing, unreadable or not of this format.

>>> from stratastream.errors import StratastreamError
>>> issubclass(SnapshotFormatError, StratastreamError)
True
"""

from __future__ import annotations

from stratastream.errors import StratastreamError


class SnapshotFormatError(StratastreamError, ValueError):
    """A snapshot store entry is absent, corrupt or foreign; the message names the entry."""
