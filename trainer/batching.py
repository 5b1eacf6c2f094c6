"""Batches without a per-sample DataLoader.

When the snapshot fits in device memory, every column lives on the device and each epoch
is one ``randperm`` there plus index gathers, so the GPU never waits on Python. When it
does not fit, rows stay in pinned host memory and each batch is gathered on the host and
copied asynchronously.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


class DeviceBatches:
    def __init__(
        self, columns: dict[str, torch.Tensor], batch_size: int, device: torch.device, seed: int
    ) -> None:
        self.columns = {k: v.to(device) for k, v in columns.items()}
        self.n = next(iter(columns.values())).shape[0]
        self.batch_size = batch_size
        self.device = device
        self.gen = torch.Generator(device=device)
        self.gen.manual_seed(seed)
        self.on_device = True

    def __len__(self) -> int:
        return (self.n + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        perm = torch.randperm(self.n, device=self.device, generator=self.gen)
        for i in range(0, self.n, self.batch_size):
            idx = perm[i : i + self.batch_size]
            yield {k: v.index_select(0, idx) for k, v in self.columns.items()}


class StreamingBatches:
    def __init__(
        self, columns: dict[str, torch.Tensor], batch_size: int, device: torch.device, seed: int
    ) -> None:
        pin = device.type == "cuda"
        self.columns = {k: (v.pin_memory() if pin else v) for k, v in columns.items()}
        self.n = next(iter(columns.values())).shape[0]
        self.batch_size = batch_size
        self.device = device
        self.gen = torch.Generator()
        self.gen.manual_seed(seed)
        self.on_device = False

    def __len__(self) -> int:
        return (self.n + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        perm = torch.randperm(self.n, generator=self.gen)
        for i in range(0, self.n, self.batch_size):
            idx = perm[i : i + self.batch_size]
            yield {
                k: v.index_select(0, idx).to(self.device, non_blocking=True)
                for k, v in self.columns.items()
            }


def make_batches(
    columns: dict[str, torch.Tensor],
    batch_size: int,
    device: torch.device,
    seed: int,
    memory_fraction: float = 0.5,
):
    """Device-resident batches when the columns take under ``memory_fraction`` of the
    device's free memory (always on the CPU), streaming batches otherwise."""
    size = sum(v.element_size() * v.nelement() for v in columns.values())
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if size > memory_fraction * free:
            return StreamingBatches(columns, batch_size, device, seed)
    return DeviceBatches(columns, batch_size, device, seed)
