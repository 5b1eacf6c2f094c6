"""A user model factory, as a user would write one (used by the tests)."""

from torch import nn


def tiny(in_dim: int, n_labels: int) -> nn.Module:
    return nn.Sequential(nn.Linear(in_dim, 32), nn.ReLU(), nn.Linear(32, n_labels))


def not_a_module(in_dim: int, n_labels: int):
    return "nope"
