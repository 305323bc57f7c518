"""One training epoch and one evaluation pass."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm import tqdm

from mimetic.data.loader import BatchLoader
from mimetic.errors import TrainingError

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


def train_one_epoch(
    model: torch.nn.Module,
    loader: BatchLoader,
    optimizer: torch.optim.Optimizer,
    scheduler,
    scaler: torch.amp.GradScaler,
    generator: torch.Generator,
    *,
    epoch: int,
    precision: Precision,
    label_smoothing: float,
    grad_clip: float,
    progress: bool,
) -> dict:
    model.train()
    steps = len(loader)
    first_step = (epoch - 1) * steps
    device = loader.images.device
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    seen = 0
    start = time.perf_counter()
    bar = tqdm(total=steps, desc=f"epoch {epoch}", leave=False, disable=not progress, dynamic_ncols=True)
    for step, (x, y) in enumerate(loader.epoch(generator)):
        with precision.autocast():
            logits = model(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if grad_clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step_update(num_updates=first_step + step + 1)

        loss_sum += loss.detach().double() * y.numel()
        correct += (logits.argmax(dim=1) == y).sum()
        seen += y.numel()
        if (step + 1) % CHECK_FINITE_EVERY == 0 or step + 1 == steps:
            running = loss_sum.item() / seen
            if not math.isfinite(running):
                bar.close()
                raise TrainingError(
                    f"the training loss became {running} at epoch {epoch}, step {step + 1}. Nothing from this "
                    "epoch was saved; the last checkpoint is intact. Lower optim.lr, keep trainer.grad_clip > 0, "
                    "or use trainer.precision=fp32, then run the same command again to resume."
                )
            bar.set_postfix(loss=f"{running:.3f}", refresh=False)
        bar.update(1)
    bar.close()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    return {
        "train_loss": loss_sum.item() / seen,
        "train_acc": 100.0 * correct.item() / seen,
        "lr": optimizer.param_groups[0]["lr"],
        "train_time_s": seconds,
        "images_per_s": seen / seconds,
    }


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader: BatchLoader, precision: Precision) -> tuple[float, float]:
    """(mean cross-entropy, top-1 accuracy in %) over the whole split."""
    model.eval()
    device = loader.images.device
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    for x, y in loader.epoch():
        with precision.autocast():
            logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").double()
        correct += (logits.argmax(dim=1) == y).sum()
    n = loader.num_samples
    return loss_sum.item() / n, 100.0 * correct.item() / n
