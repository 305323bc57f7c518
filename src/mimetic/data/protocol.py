"""The small protocol every loader follows, so the training engine never sees storage.

An in-memory CIFAR loader, a streaming ImageNet loader and a token-window loader all
look the same to the engine: batches per epoch, samples per epoch, and an iterator over
one epoch's batches, driven by an explicit generator and able to start mid-epoch (for an
exact resume from a step checkpoint).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class Loader(Protocol):
    batch_size: int  # global batch (all ranks together)

    def __len__(self) -> int:
        """Batches per epoch."""

    @property
    def num_samples(self) -> int:
        """Samples per epoch, all ranks together."""

    def epoch(self, generator: torch.Generator | None = None, *, start_step: int = 0) -> Iterator[Any]:
        """This rank's batches of one epoch, from batch ``start_step`` on.

        A training loader draws its order and augmentation from ``generator`` (a pure
        function of (seed, epoch)), so skipping ``start_step`` batches lands exactly where
        an uninterrupted run would be.
        """
