"""Batches from in-memory uint8 tensors, in an order drawn from an explicit generator."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch

from mimetic.data.augment import normalize
from mimetic.data.sources import ImageSplit


class BatchLoader:
    """Iterate over a split that lives on the training device (follows ``data.protocol.Loader``).

    With a ``transform`` every epoch draws a fresh order and augmentation from the
    generator it is given; evaluation iterates in order and only normalises.

    With ``world_size > 1`` every rank walks the same global order and takes its slice of
    each global batch. A training batch is augmented whole and then sliced, so each rank
    sees exactly the samples (and augmentations) one process would — the random draws do
    not depend on the number of processes.
    """

    def __init__(
        self,
        split: ImageSplit,
        batch_size: int,
        *,
        mean: torch.Tensor,
        std: torch.Tensor,
        transform: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
        rank: int = 0,
        world_size: int = 1,
        max_batches: int | None = None,
    ):
        self.images, self.labels = split.images, split.labels
        self.batch_size = batch_size
        self.transform = transform
        self.mean, self.std = mean.to(self.images.device), std.to(self.images.device)
        self.rank, self.world_size = rank, world_size
        self.max_batches = max_batches

    def __len__(self) -> int:
        full = math.ceil(self.labels.numel() / self.batch_size)
        return full if self.max_batches is None else min(full, self.max_batches)

    @property
    def num_samples(self) -> int:
        return min(self.labels.numel(), len(self) * self.batch_size)

    def _my_part(self, batch: torch.Tensor) -> torch.Tensor:
        if self.world_size == 1:
            return batch
        return batch.tensor_split(self.world_size)[self.rank]

    def epoch(self, generator: torch.Generator | None = None, *,
              start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = self.labels.numel()
        if self.transform is not None:
            if generator is None:
                raise ValueError("a training loader needs the epoch's generator")
            order = torch.randperm(n, generator=generator, device=self.images.device)
        else:
            order = torch.arange(n, device=self.images.device)
        for step in range(len(self)):
            index = order[step * self.batch_size : (step + 1) * self.batch_size]
            if self.transform is not None:
                # Skipped batches still draw their augmentation, so the generator is where an
                # uninterrupted run would have it.
                x = self.transform(self.images[index], generator)
            elif step < start_step:
                continue
            else:
                x = normalize(self.images[index], self.mean, self.std)
            if step < start_step:
                continue
            yield self._my_part(x), self._my_part(self.labels[index])
