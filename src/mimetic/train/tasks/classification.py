"""Image classification: cross-entropy (with label smoothing), accuracy, images per second."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mimetic.train.tasks.base import TASKS, Task


def _count(y: torch.Tensor) -> torch.Tensor:
    # A fill kernel, not torch.tensor(n, device=...): that copies from host memory, a host sync on CUDA every step.
    return torch.full((), y.numel(), dtype=torch.int64, device=y.device)


class Classification(Task):
    name = "classification"
    primary_metric = "test_acc"
    higher_is_better = True
    unit = "images"

    def __init__(self, label_smoothing: float = 0.0):
        self.label_smoothing = label_smoothing

    def training_loss(self, model, batch):
        x, y = batch
        logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing)
        # An empty shard's mean is NaN; its sum is 0 (and 0 * NaN would poison the window).
        total = loss.detach().double() * y.numel() if y.numel() else torch.zeros((), dtype=torch.float64,
                                                                                  device=y.device)
        sums = {"loss": total, "correct": (logits.argmax(dim=1) == y).sum(),
                "count": _count(y)}
        return loss, sums

    def evaluation_sums(self, model, batch):
        x, y = batch
        logits = model(x)
        return {"loss": F.cross_entropy(logits.float(), y, reduction="sum").double(),
                "correct": (logits.argmax(dim=1) == y).sum(), "count": _count(y)}

    def metrics(self, sums, split):
        n = sums["count"]
        return {f"{split}_loss": sums["loss"] / n, f"{split}_acc": 100.0 * sums["correct"] / n}

    def count(self, batch):
        return int(batch[1].numel())


TASKS["classification"] = lambda cfg: Classification(label_smoothing=cfg.trainer.label_smoothing)
