"""Datasets (real on-disk formats) and the in-memory, on-device input pipeline."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mimetic.data.augment import TrainTransform
from mimetic.data.loader import BatchLoader
from mimetic.data.sources import (
    ImageSplit,
    RawDataset,
    load_cifar,
    load_digits,
    load_image_folder,
    load_svhn,
    resize_split,
    stratified_holdout,
)
from mimetic.errors import ConfigError

DATASETS = ("cifar10", "cifar100", "svhn", "image_folder", "digits")


@dataclass
class Data:
    train: BatchLoader
    test: BatchLoader
    val: BatchLoader | None
    classes: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def load_raw(dataset_cfg: Any, image_size: int) -> RawDataset:
    """The dataset named by ``dataset_cfg.name``, both splits resized to ``image_size``."""
    name = dataset_cfg.name
    root = Path(dataset_cfg.root).expanduser()
    if name in ("cifar10", "cifar100"):
        raw = load_cifar(name, root, download=dataset_cfg.download, verify_checksums=dataset_cfg.verify_checksums)
    elif name == "svhn":
        raw = load_svhn(root, download=dataset_cfg.download, verify_checksums=dataset_cfg.verify_checksums)
    elif name == "image_folder":
        raw = load_image_folder(root, image_size=image_size)
    elif name == "digits":
        raw = load_digits()
    else:
        raise ConfigError(f"dataset.name: unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return RawDataset(resize_split(raw.train, image_size), resize_split(raw.test, image_size), raw.classes)


def build_data(cfg: Any, device: torch.device) -> Data:
    """Loaders for train / (val) / test on ``device`` from the full run config."""
    raw = load_raw(cfg.dataset, cfg.model.img_size)
    train, val = raw.train, None
    if cfg.dataset.val_fraction > 0:
        keep, hold = stratified_holdout(train.labels, cfg.dataset.val_fraction)
        train, val = train.subset(keep), train.subset(hold)

    # Normalisation statistics of the (final) training images, per channel.
    pixels = train.images.float().div_(255.0)
    mean, std = pixels.mean(dim=(0, 2, 3)), pixels.std(dim=(0, 2, 3)).clamp_min(1e-3)
    del pixels

    def on_device(split: ImageSplit) -> ImageSplit:
        return ImageSplit(split.images.to(device), split.labels.to(device))

    eval_bs = cfg.trainer.eval_batch_size
    return Data(
        train=BatchLoader(on_device(train), cfg.trainer.batch_size, mean=mean, std=std,
                          transform=TrainTransform(cfg.aug, mean, std)),
        test=BatchLoader(on_device(raw.test), eval_bs, mean=mean, std=std),
        val=None if val is None else BatchLoader(on_device(val), eval_bs, mean=mean, std=std),
        classes=raw.classes,
    )


__all__ = ["DATASETS", "Data", "build_data", "load_raw"]
