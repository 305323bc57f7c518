"""What is being learned: the loss, the metric sums, the headline metric and its direction.

The engine trains any model on any loader through a task; it never computes a loss or an
accuracy itself. A task turns a batch into a loss plus *sums* (tensors on the device, so
no host sync per step), and sums into named metrics (``<split>_loss``, ``<split>_acc`` ...).
Sums add across steps and across ranks, so a metric over a sharded evaluation equals the
one-process metric.

To add a task (the language-model issue adds one): subclass :class:`Task`, register it in
``TASKS``; a dataset names the task its data is for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

Sums = dict[str, torch.Tensor]


class Task:
    name: str = "abstract"
    primary_metric: str = ""  # the summary's headline value, e.g. "test_acc"
    higher_is_better: bool = True
    unit: str = "samples"  # throughput unit: "<unit>_per_s"

    def training_loss(self, model: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, Sums]:
        """(mean loss over this rank's batch, to backpropagate; sums for the metrics).

        ``sums["count"]`` must be the number of units the loss is a mean over (samples, scored
        tokens): the engine weighs each rank's loss by it under DDP. An empty batch (a rank whose
        shard of the last batch is empty) must give finite sums.
        """
        raise NotImplementedError

    def evaluation_sums(self, model: torch.nn.Module, batch: Any) -> Sums:
        raise NotImplementedError

    def metrics(self, sums: dict[str, float], split: str) -> dict[str, float]:
        """Named metrics of one split from its (all-reduced) sums."""
        raise NotImplementedError

    def count(self, batch: Any) -> int:
        """Units of throughput in a batch (images, tokens)."""
        raise NotImplementedError


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


TASKS: dict[str, Callable[[Any], Task]] = {
    "classification": lambda cfg: Classification(label_smoothing=cfg.trainer.label_smoothing),
}


def build_task(name: str, cfg: Any) -> Task:
    if name not in TASKS:
        raise ValueError(f"no task '{name}' (known: {', '.join(TASKS)})")
    return TASKS[name](cfg)


from mimetic.train import lm_task  # noqa: E402, F401  (registers language_modeling)
