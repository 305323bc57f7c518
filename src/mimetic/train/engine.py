"""Optimizer steps and evaluation passes, for any task on any loader.

The engine knows steps, windows and precision; the task knows losses and metrics; the
loader knows storage. Nothing here reads a loader's tensors or computes an accuracy.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from mimetic.data.protocol import Loader
from mimetic.runtime.distributed import all_reduce_sum
from mimetic.train.tasks import Sums, Task

CHECK_FINITE_EVERY = 25  # steps between host syncs that check the loss (and update the bar)


@dataclass
class Precision:
    """Autocast settings resolved from ``trainer.precision`` and the device."""

    dtype: torch.dtype | None  # None: plain fp32
    device_type: str

    @classmethod
    def resolve(cls, name: str, device: torch.device) -> Precision:
        if name == "auto":
            name = "bf16" if device.type == "cuda" else "fp32"
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[name]
        return cls(dtype, device.type)

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    @property
    def needs_scaler(self) -> bool:
        return self.dtype == torch.float16


def add_sums(total: Sums | None, more: Sums) -> Sums:
    if total is None:
        return {k: v.clone() for k, v in more.items()}
    for key, value in more.items():
        total[key] += value
    return total


def sums_to_host(sums: Sums | None) -> dict[str, float]:
    return {} if sums is None else {k: v.item() for k, v in sums.items()}


def sums_from_host(values: dict[str, float], device: torch.device) -> Sums | None:
    if not values:
        return None
    out = {}
    for key, value in values.items():
        dtype = torch.float64 if isinstance(value, float) else torch.int64
        out[key] = torch.tensor(value, dtype=dtype, device=device)
    return out


def global_mean_share(loss: torch.Tensor, count: torch.Tensor, world_size: int) -> torch.Tensor:
    """This rank's mean ``loss`` (over its ``count`` loss units) as its share of the global batch's mean.

    DDP averages gradients over ranks, so each rank back-propagates ``loss * world * count / total``:
    the mean of those is the global mean over ``total`` units, whatever the shards hold (samples for
    a classifier, scored tokens for a language model; one all-reduce of a scalar, no host sync). A
    rank whose shard is empty (a last batch smaller than the number of ranks) contributes zero,
    not the NaN of a mean over nothing.
    """
    if world_size == 1:
        return loss
    count = count.to(torch.float64)
    total = all_reduce_sum(count.detach().clone())
    share = (count * world_size / total).to(loss.dtype)
    return torch.where(count > 0, loss, torch.zeros_like(loss)) * share


def train_step(model: torch.nn.Module, batch, task: Task, optimizer: torch.optim.Optimizer, scheduler,
               scaler: torch.amp.GradScaler, *, precision: Precision, grad_clip: float, num_updates: int,
               world_size: int = 1) -> Sums:
    """One optimizer step; returns the batch's metric sums (device tensors, no host sync).

    With ``world_size > 1`` (under DDP) the rank's mean loss becomes its share of the global
    batch's mean (:func:`global_mean_share`), so N processes take the step one process takes.
    """
    with precision.autocast():
        loss, sums = task.training_loss(model, batch)
    loss = global_mean_share(loss, sums["count"], world_size)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if grad_clip > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], grad_clip)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step_update(num_updates=num_updates)
    return sums


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader: Loader, task: Task, precision: Precision, split: str) -> dict[str, float]:
    """Metrics of one split; sums are all-reduced, so every rank gets the whole split's metrics."""
    model.eval()
    total: Sums | None = None
    for batch in loader.epoch():
        with precision.autocast():
            total = add_sums(total, task.evaluation_sums(model, batch))
    if total is None:
        return {}
    for value in total.values():
        all_reduce_sum(value)
    return task.metrics(sums_to_host(total), split)
