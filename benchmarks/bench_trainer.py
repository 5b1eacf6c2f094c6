"""Trainer input pipeline: on-device index batching against a per-sample DataLoader.

Same data (a snapshot-shaped table: 200k rows, 64 float features, 50 labels), same model
(MLP 64 -> 256 -> 256 -> 50), same optimiser, one epoch each, measured in one run on the
CPU and, when CUDA is present, on the GPU. Also checks that the batching choice does not
hurt the model: macro-F1 on a held-out slice after a few epochs of each.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from trainer.batching import DeviceBatches
from trainer.metrics import evaluate_predictions

from .common import write_result


def make_data(n: int, dim: int, k: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    means = rng.normal(0, 1, (k, dim)) * 0.6
    x = (means[y] + rng.normal(size=(n, dim))).astype(np.float32)
    return torch.from_numpy(x), torch.from_numpy(y)


def model_for(dim: int, k: int) -> nn.Module:
    return nn.Sequential(
        nn.Linear(dim, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, k)
    )


def run_epoch(model, batches, opt, device, amp: bool) -> int:
    loss_fn = nn.CrossEntropyLoss()
    seen = 0
    for xb, yb in batches:
        xb = xb.to(device, non_blocking=True)
        yb = yb.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(xb)
        loss = loss_fn(out.float(), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen += xb.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen


def device_batches(x, y, bs, device, seed):
    b = DeviceBatches({"x": x, "y": y}, bs, device, seed)
    return ((d["x"], d["y"]) for d in b)


def measure(device: torch.device, x, y, dim, k, batch_sizes, loader_workers, epochs_f1):
    amp = device.type == "cuda"
    rows = []

    def timed(name, make_batches, extra):
        torch.manual_seed(0)
        model = model_for(dim, k).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        run_epoch(model, make_batches(), opt, device, amp)  # warm-up epoch
        t = time.perf_counter()
        n = run_epoch(model, make_batches(), opt, device, amp)
        secs = time.perf_counter() - t
        rows.append(
            {
                "name": name,
                "device": str(device),
                "samples": n,
                "seconds": secs,
                "samples_per_s": n / secs,
                **extra,
            }
        )

    ds = TensorDataset(x, y)
    for w in loader_workers:
        timed(
            f"DataLoader per-sample, batch 1024, workers={w}",
            lambda w=w: DataLoader(
                ds, batch_size=1024, shuffle=True, num_workers=w, pin_memory=device.type == "cuda"
            ),
            {"batch": 1024, "workers": w},
        )
    xd, yd = x.to(device), y.to(device)
    for bs in batch_sizes:
        timed(
            f"on-device index batching, batch {bs}",
            lambda bs=bs: device_batches(xd, yd, bs, device, 0),
            {"batch": bs},
        )
    base = rows[0]["samples_per_s"]
    for r in rows:
        r["ratio_vs_dataloader"] = r["samples_per_s"] / base

    # quality: a few epochs each way, macro-F1 on a held-out slice
    n_ev = x.shape[0] // 10
    f1 = {}

    def loader():
        return DataLoader(TensorDataset(x[n_ev:], y[n_ev:]), batch_size=1024, shuffle=True)

    def on_device():
        return device_batches(xd[n_ev:], yd[n_ev:], 1024, device, 0)

    for name, make in (("dataloader", loader), ("on_device", on_device)):
        torch.manual_seed(0)
        model = model_for(dim, k).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for _ in range(epochs_f1):
            run_epoch(model, make(), opt, device, amp)
        with torch.no_grad():
            probs = torch.softmax(model(xd[:n_ev]).float(), 1).cpu().numpy()
        f1[name] = evaluate_predictions(
            y[:n_ev].numpy(), probs.argmax(1), probs, [str(i) for i in range(k)]
        ).macro_f1
    return rows, f1


def main(n: int = 200_000, dim: int = 64, k: int = 50, epochs_f1: int = 3) -> dict:
    from rich.console import Console
    from rich.table import Table

    x, y = make_data(n, dim, k)
    results = {"rows": n, "dim": dim, "labels": k, "runs": [], "macro_f1": {}}
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for dev in devices:
        cuda = dev.type == "cuda"
        rows, f1 = measure(
            dev,
            x,
            y,
            dim,
            k,
            [1024, 4096] if not cuda else [1024, 4096, 16384],
            [0, 4] if cuda else [0, 2],
            epochs_f1,
        )
        results["runs"] += rows
        results["macro_f1"][str(dev)] = f1
    t = Table(title=f"trainer input pipeline: {n:,} rows, MLP {dim}->256->256->{k}, one epoch")
    for c in ("device", "pipeline", "samples/s", "x DataLoader"):
        t.add_column(c, justify="left" if c in ("device", "pipeline") else "right")
    for r in results["runs"]:
        t.add_row(
            r["device"], r["name"], f"{r['samples_per_s']:,.0f}", f"{r['ratio_vs_dataloader']:.1f}"
        )
    Console().print(t)
    Console().print(f"macro-F1 after {epochs_f1} epochs: {results['macro_f1']}")
    print(f"wrote {write_result('trainer', results)}")
    return results


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=200_000)
    a = ap.parse_args()
    main(a.rows)
