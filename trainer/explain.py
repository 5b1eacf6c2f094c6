"""Per-feature attributions: integrated gradients (Sundararajan et al., 2017) in torch.

For an input ``x``, a baseline ``x0`` and the class ``c`` the model predicts, feature
``j`` is attributed ``(x_j - x0_j) * mean over alpha of d p_c(x0 + alpha (x - x0)) / d x_j``
(a Riemann sum over ``steps`` points); the attributions sum to ``p_c(x) - p_c(x0)``
(completeness), up to the sum's error, which is reported. The baseline is the mean of
the training rows (a model with a standardizer then starts from its zero point). Global
importance of a feature: the mean absolute attribution over a set of rows.

>>> import torch
>>> torch.manual_seed(0)  # doctest: +ELLIPSIS
<...>
>>> net = torch.nn.Linear(3, 2)
>>> with torch.no_grad():
...     net.weight[:] = torch.tensor([[2.0, 0.0, 0.0], [-2.0, 0.0, 0.0]]); net.bias[:] = 0
>>> out = integrated_gradients(net, torch.tensor([[1.0, 5.0, -3.0]]), torch.zeros(3))
>>> [abs(round(v, 3)) for v in out.attributions[0].tolist()][1:], out.targets.tolist()
([0.0, 0.0], [0])
>>> bool(out.completeness_gap[0] < 1e-3)  # attributions add up to the change in p
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Attributions:
    attributions: np.ndarray  # [n, d]
    targets: np.ndarray  # [n] the class explained (the predicted one)
    completeness_gap: np.ndarray  # [n] |sum(attr) - (p_c(x) - p_c(baseline))|


def integrated_gradients(
    model, x: torch.Tensor, baseline: torch.Tensor, steps: int = 64, multilabel: bool = False
) -> Attributions:
    model.eval()
    x = x.float()
    base = baseline.float().reshape(1, -1).expand_as(x)

    def prob(inp: torch.Tensor) -> torch.Tensor:
        logits = model(inp).float()
        return torch.sigmoid(logits) if multilabel else torch.softmax(logits, 1)

    with torch.no_grad():
        p_x = prob(x)
        p_base = prob(base)
    target = p_x.argmax(1)
    alphas = (torch.arange(steps, dtype=torch.float32) + 0.5) / steps  # midpoint rule
    grads = torch.zeros_like(x)
    for a in alphas:
        point = (base + a * (x - base)).requires_grad_(True)
        p = prob(point).gather(1, target[:, None]).sum()
        (g,) = torch.autograd.grad(p, point)
        grads += g
    attr = (x - base) * grads / steps
    expected = (p_x - p_base).gather(1, target[:, None])[:, 0]
    gap = (attr.sum(1) - expected).abs()
    return Attributions(attr.detach().numpy(), target.numpy(), gap.detach().numpy())


def global_importance(model, x: np.ndarray, baseline: np.ndarray, steps: int = 32,
                      multilabel: bool = False, max_rows: int = 512) -> np.ndarray:  # fmt: skip
    """Mean absolute attribution per feature over (at most ``max_rows`` of) ``x``."""
    rows = x[:max_rows]
    if rows.shape[0] == 0:
        return np.zeros(x.shape[1])
    a = integrated_gradients(model, torch.from_numpy(rows), torch.from_numpy(baseline), steps,
                             multilabel)  # fmt: skip
    return np.abs(a.attributions).mean(0)
