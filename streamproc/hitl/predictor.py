"""The promoted model behind ``POST /predict``: the only module of ``streamproc`` that
imports ``trainer`` (and so torch), and only when the first prediction is asked for.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streamproc.hitl.requests import HttpError


class Predictor:
    """The trainer's promoted model (the champion) and the model in rollout, if any,
    reloaded when the registry changes; see :mod:`streamproc.hitl.rollout`."""

    def __init__(self, registry_dir: Path) -> None:
        self.registry_dir = Path(registry_dir)
        self._models: dict[str, tuple] = {}  # model id -> (model, entry)

    def _load(self, reg, model_id: str):
        got = self._models.get(model_id)
        if got is None:
            got = reg.load_model(model_id)
            if len(self._models) > 4:  # old champions and candidates
                self._models.clear()
            self._models[model_id] = got
        return got

    def predict(self, features: list[float], explain: bool = False, key: str = "") -> dict:
        """``{"label", "probability", "model"}`` from the model that answers (the champion,
        or the canary for its share of routing keys), plus ``"shadow"`` (the shadow
        model's ``{"model", "label", "probability"}``, never to be returned to the caller)
        and, with ``explain``, ``"attributions"`` by feature name (integrated gradients)."""
        from stratastream.errors import StratastreamError
        from streamproc.hitl.rollout import route
        from trainer.registry import ModelRegistry

        reg = ModelRegistry(self.registry_dir)
        cur = reg.promoted()
        if cur is None:
            raise HttpError(503, f"no promoted model in registry {self.registry_dir}")
        try:
            cand = reg.candidate()
        except StratastreamError as e:  # a bad CANDIDATE file: serve the champion, say so
            import logging

            logging.getLogger(__name__).error("rollout ignored: %s", e)
            cand = None
        answer_id, shadow_id = cur.id, None
        if cand is not None and cand["mode"] == "canary" and route(key, cand["fraction"]):
            answer_id = cand["model"]
        elif cand is not None and cand["mode"] == "shadow":
            shadow_id = cand["model"]
        model, entry = self._load(reg, answer_id)
        x = self._check(features, entry.meta["dim"])
        out = {"model": answer_id, **_top(model, entry, x)}
        out["rollout"] = cand["since"] if cand is not None else None
        if shadow_id is not None:
            try:
                sm, se = self._load(reg, shadow_id)
                if se.meta["dim"] == entry.meta["dim"]:
                    out["shadow"] = {"model": shadow_id, **_top(sm, se, x)}
            except (StratastreamError, HttpError):  # the shadow must never fail a request
                pass
        if explain:
            out["attributions"] = _attributions(model, entry, x)
        return out

    @staticmethod
    def _check(features: list[float], dim: int) -> np.ndarray:
        if len(features) != dim:
            raise HttpError(400, f"features: expected {dim} numbers, got {len(features)}")
        x = np.asarray([features], dtype=np.float64)
        if not np.isfinite(x).all() or (np.abs(x) > 3.0e38).any():
            raise HttpError(400, "features: all numbers must be finite float32 values")
        return x

    def end_rollout(self, decision: str, reason: str, evidence: dict) -> str | None:
        """Apply an online decision to the registry (``promote`` or ``reject``), under its
        lock; None when no rollout was active any more (decided elsewhere)."""
        from trainer.registry import ModelRegistry

        reg = ModelRegistry(self.registry_dir)
        with reg.lock():
            if reg.candidate() is None:
                return None
            return reg.end_rollout(decision, reason, evidence)

    def rollout(self) -> tuple[str | None, dict | None]:
        """(champion id, candidate) as the registry says now."""
        from trainer.registry import ModelRegistry

        reg = ModelRegistry(self.registry_dir)
        cur = reg.promoted()
        return (cur.id if cur else None), reg.candidate()


def _top(model, entry, x: np.ndarray) -> dict:
    from trainer.train import predict_proba

    p = predict_proba(model, x.astype(np.float32))[0]
    if not np.isfinite(p).all():  # e.g. overflow inside the model: no answer, not null
        raise HttpError(422, "features: the model gives no finite probabilities for them")
    top = int(p.argmax())
    from streamproc.hitl.active import entropy, uncertainty

    return {"label": entry.label_names[top], "probability": float(p[top]),
            "uncertainty": uncertainty(p), "entropy": entropy(p)}  # fmt: skip


def _attributions(model, entry, x: np.ndarray) -> dict[str, float]:
    import torch

    from trainer.explain import integrated_gradients

    meta, dim = entry.meta, entry.meta["dim"]
    base = np.asarray(meta.get("explain_baseline") or np.zeros(dim), dtype=np.float32)
    a = integrated_gradients(model, torch.from_numpy(x.astype(np.float32)),
                             torch.from_numpy(base))  # fmt: skip
    names = meta.get("feature_names") or [f"f{j}" for j in range(dim)]
    return {n: float(v) for n, v in zip(names, a.attributions[0], strict=True)}
