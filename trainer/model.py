"""The default model (an MLP over the numeric features) and user models as ``module:factory``.

A factory is called as ``factory(in_dim, n_labels)`` and returns a ``torch.nn.Module``
mapping ``[batch, in_dim]`` float features to ``[batch, n_labels]`` logits.
"""

from __future__ import annotations

import importlib

import torch
from torch import nn

from .errors import TrainerError


class FeatureStandardizer(nn.Module):
    """Stores the training features' mean and std, so a saved model is self-contained."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def fit(self, x: torch.Tensor) -> None:
        self.mean.copy_(x.mean(0))
        self.std.copy_(x.std(0).clamp_min(1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def mlp(in_dim: int, n_labels: int, hidden: int = 256) -> nn.Module:
    """Default: standardize -> 2 x (Linear, ReLU) -> Linear."""
    return nn.Sequential(
        FeatureStandardizer(in_dim),
        nn.Linear(in_dim, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, n_labels),
    )


def build_model(spec: str, in_dim: int, n_labels: int) -> nn.Module:
    """``"mlp"`` or ``"package.module:factory"``."""
    if spec == "mlp":
        return mlp(in_dim, n_labels)
    mod_name, _, attr = spec.partition(":")
    if not mod_name or not attr:
        raise TrainerError(f"model: expected 'mlp' or 'module:factory', got {spec!r}")
    try:
        factory = getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError) as e:
        raise TrainerError(f"model: cannot load {spec!r} ({e})") from e
    model = factory(in_dim, n_labels)
    if not isinstance(model, nn.Module):
        raise TrainerError(f"model: {spec!r} returned {type(model).__name__}, not a torch Module")
    return model


def standardizer_of(model: nn.Module) -> FeatureStandardizer | None:
    return next((m for m in model.modules() if isinstance(m, FeatureStandardizer)), None)
