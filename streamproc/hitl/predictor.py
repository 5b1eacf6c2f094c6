"""The promoted model behind ``POST /predict``: the only module of ``streamproc`` that
imports ``trainer`` (and so torch), and only when the first prediction is asked for.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streamproc.hitl.requests import HttpError


class Predictor:
    """The trainer's promoted model, reloaded when the promotion changes."""

    def __init__(self, registry_dir: Path) -> None:
        self.registry_dir = Path(registry_dir)
        self._loaded: str | None = None
        self._model = None
        self._entry = None

    def predict(
        self, features: list[float], explain: bool = False
    ) -> tuple[str, float, str] | tuple[str, float, str, dict[str, float]]:
        """(label, probability, model id); with ``explain``, also per-feature
        attributions for that label (integrated gradients, by feature name)."""
        from trainer.registry import ModelRegistry
        from trainer.train import predict_proba

        reg = ModelRegistry(self.registry_dir)
        cur = reg.promoted()
        if cur is None:
            raise HttpError(503, f"no promoted model in registry {self.registry_dir}")
        if cur.id != self._loaded:
            self._model, self._entry = reg.load_model(cur.id)
            self._loaded = cur.id
        dim = self._entry.meta["dim"]
        if len(features) != dim:
            raise HttpError(400, f"features: expected {dim} numbers, got {len(features)}")
        x = np.asarray([features], dtype=np.float64)
        if not np.isfinite(x).all() or (np.abs(x) > 3.0e38).any():
            raise HttpError(400, "features: all numbers must be finite float32 values")
        p = predict_proba(self._model, x.astype(np.float32))[0]
        if not np.isfinite(p).all():  # e.g. overflow inside the model: no answer, not null
            raise HttpError(422, "features: the model gives no finite probabilities for them")
        top = int(p.argmax())
        label = self._entry.label_names[top]
        if not explain:
            return label, float(p[top]), cur.id
        import torch

        from trainer.explain import integrated_gradients

        meta = self._entry.meta
        base = np.asarray(meta.get("explain_baseline") or np.zeros(dim), dtype=np.float32)
        a = integrated_gradients(self._model, torch.from_numpy(x.astype(np.float32)),
                                 torch.from_numpy(base))  # fmt: skip
        names = meta.get("feature_names") or [f"f{j}" for j in range(dim)]
        attrs = {n: float(v) for n, v in zip(names, a.attributions[0], strict=True)}
        return label, float(p[top]), cur.id, attrs
