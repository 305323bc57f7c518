"""What is being learned: the loss, the metric sums, the headline metric and its direction.

The engine trains any model on any loader through a task; it never computes a loss or an
accuracy itself. A task turns a batch into a loss plus *sums* (tensors on the device, so
no host sync per step), and sums into named metrics (``<split>_loss``, ``<split>_acc`` ...).
Sums add across steps and across ranks, so a metric over a sharded evaluation equals the
one-process metric.

To add a task: subclass :class:`Task` in a file of its own beside this one, add its builder to
``TASKS`` there (``TASKS["name"] = lambda cfg: MyTask(...)``), and list the file in
``mimetic/train/tasks/__init__.py``; a dataset names the task its data is for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

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


TASKS: dict[str, Callable[[Any], Task]] = {}  # task name -> builder from the run's config


def build_task(name: str, cfg: Any) -> Task:
    if name not in TASKS:
        raise ValueError(f"no task '{name}' (known: {', '.join(TASKS)})")
    return TASKS[name](cfg)
