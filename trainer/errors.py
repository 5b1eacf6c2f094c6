"""Trainer errors; they derive from the project's one root, ``StratastreamError``."""

from __future__ import annotations

from stratastream.errors import StratastreamError


class TrainerError(StratastreamError):
    """A snapshot, model, registry entry or training run is unusable; the message says why."""
