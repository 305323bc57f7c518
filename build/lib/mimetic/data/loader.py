"""Batches from in-memory uint8 tensors, in an order drawn from an explicit generator."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch

from mimetic.data.augment import normalize
from mimetic.data.sources import ImageSplit


class BatchLoader:
    """Iterate over a split that lives on the training device.

    With ``train=True`` every epoch draws a fresh order and augmentation from the
    generator it is given; evaluation iterates in order and only normalises.
    """

    def __init__(
        self,
        split: ImageSplit,
        batch_size: int,
        *,
        mean: torch.Tensor,
        std: torch.Tensor,
        transform: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    ):
        self.images, self.labels = split.images, split.labels
        self.batch_size = batch_size
        self.transform = transform
        self.mean, self.std = mean.to(self.images.device), std.to(self.images.device)

    def __len__(self) -> int:
        return math.ceil(self.labels.numel() / self.batch_size)

    @property
    def num_samples(self) -> int:
        return self.labels.numel()

    def epoch(self, generator: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = self.num_samples
        if self.transform is not None:
            if generator is None:
                raise ValueError("a training loader needs the epoch's generator")
            order = torch.randperm(n, generator=generator, device=self.images.device)
        else:
            order = torch.arange(n, device=self.images.device)
        for start in range(0, n, self.batch_size):
            index = order[start : start + self.batch_size]
            x, y = self.images[index], self.labels[index]
            if self.transform is not None:
                yield self.transform(x, generator), y
            else:
                yield normalize(x, self.mean, self.std), y
