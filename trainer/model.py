"""Model architectures, allow-listed by name.

A model file names its architecture; loading it looks the name up in :data:`ARCHITECTURES`
and never imports anything the file names (a crafted file cannot run code). The default
is ``"mlp"``. A user architecture is a factory ``factory(in_dim, n_labels)`` returning a
``torch.nn.Module`` (``[batch, in_dim]`` features -> ``[batch, n_labels]`` logits),
registered in code with :func:`register_architecture`, or by the operator on the trainer's
command line (``trainer train --model pkg.module:factory`` imports it there, in the
trainer, because the operator asked; the saved file records only the name).

>>> build_model("mlp", 4, 3)[-1].out_features
3
>>> build_model("os:system", 4, 3)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
trainer.errors.TrainerError: model: architecture 'os:system' is not registered ...
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import numpy as np
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


MAX_DIM = 4096
MAX_LABELS = 100_000
ARCHITECTURES: dict[str, Callable[[int, int], nn.Module]] = {"mlp": mlp}


def register_architecture(name: str, factory: Callable[[int, int], nn.Module]) -> None:
    """Allow model files to name ``name``; ``factory(in_dim, n_labels)`` builds it."""
    if not isinstance(name, str) or not 0 < len(name) <= 200:
        raise TrainerError(f"model: architecture name must be 1 to 200 characters: {name!r}")
    ARCHITECTURES[name] = factory


def register_from_reference(ref: str) -> str:
    """Operator input (``trainer train --model pkg.module:factory``): import the factory
    and register it under ``ref``. Never called with a name read from a file."""
    if ref in ARCHITECTURES:
        return ref
    mod_name, _, attr = ref.partition(":")
    if not mod_name or not attr:
        raise TrainerError(f"--model: expected 'mlp' or module:factory, got {ref!r}")
    try:
        factory = getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError) as e:
        raise TrainerError(f"--model: cannot load {ref!r} ({e})") from e
    register_architecture(ref, factory)
    return ref


def build_model(spec: str, in_dim: int, n_labels: int) -> nn.Module:
    """The registered architecture ``spec`` for these dimensions (checked)."""
    factory = ARCHITECTURES.get(spec) if isinstance(spec, str) else None
    if factory is None:
        raise TrainerError(
            f"model: architecture {spec!r} is not registered (known: {sorted(ARCHITECTURES)}); "
            "register it with trainer.model.register_architecture"
        )
    for name, v, hi in (("dim", in_dim, MAX_DIM), ("labels", n_labels, MAX_LABELS)):
        if not isinstance(v, int) or isinstance(v, bool) or not 0 < v <= hi:
            raise TrainerError(f"model: {name} must be an integer in [1, {hi}], got {v!r}")
    model = factory(in_dim, n_labels)
    if not isinstance(model, nn.Module):
        raise TrainerError(f"model: {spec!r} returned {type(model).__name__}, not a torch Module")
    return model


class LogitAdjust(nn.Module):
    """Post-hoc logit adjustment (Menon et al., "Long-tail learning via logit adjustment",
    ICLR 2021): adds ``log pi_target(y) - log pi_train(y)`` to the logits, so a model fit on
    a balanced sample predicts under the stream's natural class prior.

    >>> m = LogitAdjust(nn.Identity(), torch.tensor([0.0, -1.0]))
    >>> m(torch.zeros(1, 2)).tolist()
    [[0.0, -1.0]]
    """

    def __init__(self, inner: nn.Module, bias: torch.Tensor) -> None:
        super().__init__()
        self.inner = inner
        self.register_buffer("bias", torch.as_tensor(bias, dtype=torch.float32).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) + self.bias


def prior_shift(labels: np.ndarray, train_w: np.ndarray, ht_w: np.ndarray, k: int) -> np.ndarray:
    """``log pi_natural - log pi_train`` per class: the natural prior is the
    Horvitz-Thompson estimate (sum of HT weights per class), the training prior what the
    loss saw (sum of loss weights per class).

    >>> [round(float(v), 3) for v in prior_shift(np.array([0, 1]), np.ones(2),
    ...                                           np.array([9.0, 1.0]), 2)]
    [0.588, -1.609]
    """
    eps = 1e-6
    nat = np.bincount(labels, weights=ht_w, minlength=k)
    trn = np.bincount(labels, weights=train_w, minlength=k)
    nat = nat / max(nat.sum(), eps) + eps
    trn = trn / max(trn.sum(), eps) + eps
    return (np.log(nat) - np.log(trn)).astype(np.float32)


def standardizer_of(model: nn.Module) -> FeatureStandardizer | None:
    return next((m for m in model.modules() if isinstance(m, FeatureStandardizer)), None)
