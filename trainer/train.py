"""Training and evaluation of one model on one snapshot."""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from .batching import make_batches
from .data import SnapshotData, in_eval_split, in_tuning_half
from .errors import TrainerError
from .metrics import EvalReport, evaluate_predictions
from .model import LogitAdjust, build_model, prior_shift, standardizer_of
from .weights import event_balance, event_balance_weights


@dataclass
class TrainConfig:
    model: str = "mlp"
    epochs: int = 20
    batch_size: int = 1024
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    # "balanced": every row weighs 1 (the sample is label-balanced already); "prior": loss
    # weighted by Horvitz-Thompson weights; "events": multi-label rows raked so that every
    # label is carried by the same weighted number of rows (trainer.weights)
    weighting: str = "balanced"
    # what the model is for, and what it is scored and promoted on:
    # "natural": predictions under the stream's class prior (post-hoc logit adjustment by
    #            the Horvitz-Thompson prior), metrics weighted back to the stream's mix;
    # "balanced": every label equally (balanced recall), metrics on the balanced sample
    objective: str = "natural"
    multilabel: bool = False
    eval_percent: int = 20
    device: str = "auto"
    amp: bool = True  # bf16 autocast on CUDA

    def __post_init__(self) -> None:
        if self.weighting not in ("balanced", "prior", "events"):
            raise TrainerError(
                f"weighting: expected 'balanced', 'prior' or 'events', got {self.weighting!r}"
            )
        if self.objective not in ("natural", "balanced"):
            raise TrainerError(
                f"objective: expected 'natural' or 'balanced', got {self.objective!r}"
            )
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise TrainerError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise TrainerError(f"lr: must be a positive number, got {self.lr}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    model: nn.Module
    report: EvalReport
    losses: list[float]
    device: str
    on_device_batches: bool
    samples_per_s: float
    seconds: float
    n_train: int
    n_eval: int
    label_names: list[str] = field(default_factory=list)
    report_natural: EvalReport | None = None  # metrics weighted to the stream's class mix
    report_balanced: EvalReport | None = None  # metrics on the balanced sample as it is
    thresholds: list[float] | None = None  # multi-label: per-label decision thresholds
    # smallest over largest count of training rows carrying each label, unweighted and
    # under the training weights (what the model sees)
    event_balance: dict[str, float] = field(default_factory=dict)


def pick_device(spec: str = "auto") -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError as e:
        raise TrainerError(f"device: {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TrainerError("device: 'cuda' requested but no CUDA device is available")
    return dev


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def train(data: SnapshotData, cfg: TrainConfig, progress: bool = True) -> TrainResult:
    """Train on the snapshot's training split, evaluate on its fixed held-out split."""
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    ev = in_eval_split(data.ids, cfg.eval_percent)
    tr_data, ev_data = data.subset(~ev), data.subset(ev)
    if tr_data.n == 0 or ev_data.n == 0:
        raise TrainerError(
            f"snapshot {data.version}: too few rows ({data.n}) for a train/eval split"
        )
    model = build_model(cfg.model, data.dim, len(data.label_names)).to(device)
    x = torch.from_numpy(tr_data.features)
    std = standardizer_of(model)
    if std is not None:
        std.fit(x.to(device))
    if cfg.weighting == "prior":
        w = torch.from_numpy(tr_data.ht_weight / tr_data.ht_weight.mean()).float()
    elif cfg.weighting == "events":
        w = torch.from_numpy(event_balance_weights(tr_data.multi_hot)).float()
    else:
        w = torch.ones(tr_data.n)
    balance = {
        "rows_carrying_label": event_balance(tr_data.multi_hot),
        "weighted": event_balance(tr_data.multi_hot, w.numpy()),
    }
    target = (
        torch.from_numpy(tr_data.multi_hot) if cfg.multilabel else torch.from_numpy(tr_data.labels)
    )
    batches = make_batches({"x": x, "y": target, "w": w}, cfg.batch_size, device, cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=cfg.epochs * len(batches)
    )
    loss_fn = (
        nn.BCEWithLogitsLoss(reduction="none")
        if cfg.multilabel
        else nn.CrossEntropyLoss(reduction="none")
    )
    amp = cfg.amp and device.type == "cuda"
    losses: list[float] = []
    bar = _bar(cfg.epochs, progress, data.version)
    t0 = time.perf_counter()
    model.train()
    for _epoch in range(cfg.epochs):
        total = torch.zeros((), device=device)
        for b in batches:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = model(b["x"])
            per = loss_fn(logits.float(), b["y"])
            if cfg.multilabel:
                per = per.mean(1)
            loss = (per * b["w"]).sum() / b["w"].sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.detach() * b["x"].shape[0]
        losses.append(float(total) / tr_data.n)  # one sync per epoch
        if bar is not None:
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            bar.update(1)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    secs = time.perf_counter() - t0
    if bar is not None:
        bar.close()
    if cfg.objective == "natural" and not cfg.multilabel:
        shift = prior_shift(tr_data.labels, w.numpy(), tr_data.ht_weight, len(data.label_names))
        model = LogitAdjust(model, torch.from_numpy(shift)).to(device)
    thresholds = None
    if cfg.multilabel:  # thresholds from one half of the split, metrics on the other half
        tune = in_tuning_half(ev_data.ids)
        if tune.all() or not tune.any():
            tune = np.zeros(ev_data.n, bool)
        tune_probs = predict_proba(model, ev_data.features[tune], device, True)
        thresholds = choose_thresholds(tune_probs, ev_data.multi_hot[tune] >= 0.5)
        ev_data = ev_data.subset(~tune)
    natural = evaluate(model, ev_data, device, cfg.multilabel, weights=ev_data.ht_weight,
                       thresholds=thresholds)  # fmt: skip
    balanced = evaluate(model, ev_data, device, cfg.multilabel, thresholds=thresholds)
    report = natural if cfg.objective == "natural" else balanced
    return TrainResult(
        model,
        report,
        losses,
        str(device),
        batches.on_device,
        cfg.epochs * tr_data.n / secs,
        secs,
        tr_data.n,
        ev_data.n,
        list(data.label_names),
        natural,
        balanced,
        thresholds,
        balance,
    )


@torch.no_grad()
def predict_proba(
    model: nn.Module,
    x: np.ndarray,
    device: torch.device | str = "cpu",
    multilabel: bool = False,
    batch: int = 65_536,
) -> np.ndarray:
    model.eval()
    device = torch.device(device)
    out = []
    for i in range(0, x.shape[0], batch):
        logits = model(torch.from_numpy(x[i : i + batch]).to(device)).float()
        out.append((torch.sigmoid(logits) if multilabel else torch.softmax(logits, 1)).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0))


def evaluate(
    model: nn.Module,
    data: SnapshotData,
    device,
    multilabel: bool = False,
    label_map: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    thresholds: list[float] | None = None,
) -> EvalReport:
    """Metrics on ``data``. ``label_map[i]`` maps the model's output i to data's label index
    (for a model trained on an older label set); unmapped data labels count as errors.
    ``weights`` (the rows' Horvitz-Thompson weights) estimate the stream's metrics."""
    probs = predict_proba(model, data.features, device, multilabel)
    k = len(data.label_names)
    if label_map is not None:
        full = np.zeros((probs.shape[0], k), dtype=probs.dtype)
        full[:, label_map] = probs
        probs = full
    if multilabel:
        return _multilabel_report(probs, data, thresholds)
    return evaluate_predictions(
        data.labels, probs.argmax(1), probs, data.label_names, weights=weights
    )


def choose_thresholds(probs: np.ndarray, truth: np.ndarray) -> list[float]:
    """Per label, the decision threshold that maximises that label's F1 on ``probs`` (0.5
    for a label without positives there).

    >>> choose_thresholds(np.array([[0.3], [0.2], [0.1]]), np.array([[True], [True], [False]]))
    [0.2]
    """
    out = []
    for j in range(probs.shape[1]):
        p, t = probs[:, j], truth[:, j]
        if not t.any():
            out.append(0.5)
            continue
        best, best_f1 = 0.5, -1.0
        for c in np.unique(p):
            pred = p >= c
            tp = float((pred & t).sum())
            f1 = 2 * tp / max(1.0, float(pred.sum() + t.sum()))
            if f1 > best_f1:
                best, best_f1 = float(c), f1
        out.append(best)
    return out


def _multilabel_report(
    probs: np.ndarray, data: SnapshotData, thresholds: list[float] | None = None
) -> EvalReport:
    pred = probs >= (0.5 if thresholds is None else np.asarray(thresholds)[None, :])
    truth = data.multi_hot >= 0.5
    tp = (pred & truth).sum(0).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = np.where(pred.sum(0) > 0, tp / pred.sum(0), 0.0)
        rec = np.where(truth.sum(0) > 0, tp / truth.sum(0), 0.0)
        f1 = np.where(prec + rec > 0, 2 * prec * rec / (prec + rec), 0.0)
    present = truth.sum(0) > 0
    per = {
        n: {
            "precision": float(prec[i]),
            "recall": float(rec[i]),
            "f1": float(f1[i]),
            "support": int(truth[:, i].sum()),
        }
        for i, n in enumerate(data.label_names)
    }
    conf = np.where(pred, probs, 1 - probs)
    ece = float(np.abs(conf.mean() - (pred == truth).mean()))
    return EvalReport(
        float(prec[present].mean()),
        float(rec[present].mean()),
        float(f1[present].mean()),
        float((pred == truth).all(1).mean()),
        ece,
        per,
        [],
        int(probs.shape[0]),
    )


def _bar(epochs: int, progress: bool, version: str):
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=epochs, unit="epoch", desc=f"train {version[:8]}", mininterval=0.5)
