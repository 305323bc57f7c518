"""What every dataset shares: the registry of datasets by name, what a run asks of a dataset builder,
and what the builder hands back.

A dataset builder takes its options and a :class:`DataRequest` (input size, batch sizes,
device, this process's rank) and returns :class:`Data`: loaders that follow
:class:`mimetic.data.protocol.Loader`, plus the :class:`~mimetic.models.base.DataSpec`
the model is built from and the name of the task that trains on it.

To add a dataset: a file of its own in ``mimetic/data/`` with a builder and its ``Option`` schema,
``DATASETS.add(name, Schema, builder, help=...)`` there, and the file listed in ``data/__init__.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mimetic.data.protocol import Loader
from mimetic.models.base import DataSpec
from mimetic.registry import Option, Registry

DATASETS = Registry("dataset")


@dataclass
class DataRequest:
    """What the run asks of a dataset builder."""

    image_size: int | None  # resize images to this side (None: the dataset's own size)
    batch_size: int  # global training batch
    eval_batch_size: int
    device: torch.device
    aug: Option | None = None
    rank: int = 0
    world_size: int = 1
    max_eval_batches: int | None = None  # smoke runs evaluate one batch


@dataclass
class Data:
    train: Loader
    test: Loader
    val: Loader | None
    spec: DataSpec
    task: str = "classification"
    classes: list[str] | None = None

    @property
    def num_classes(self) -> int | None:
        return self.spec.num_classes


def build_data(options: Option, request: DataRequest) -> Data:
    return DATASETS.get(options.name).fn(options, request)
