"""Snapshots to a PyTorch model: on-device batching, evaluation, registry, triggers.

Depends on the snapshot *format* (Parquet + manifest.json), not on ``streamproc``, so it
imports on a machine without Faust or Kafka clients.
"""

from .errors import TrainerError

__all__ = ["TrainerError"]
