"""The image-classification family read into memory: CIFAR-10/100 pickles, SVHN .mat, any image folder,
scikit-learn's 8x8 digits; normalised, batched and augmented on the training device."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from mimetic.data.augment import TrainTransform
from mimetic.data.base import DATASETS, Data, DataRequest
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
from mimetic.models.base import DataSpec
from mimetic.registry import Option


@dataclass
class ImageDataset(Option):
    """An image-classification dataset read from its real on-disk format."""

    root: str = "${paths.data_dir}/${.name}"
    download: bool = False  # fetch with torchvision when missing (needs network)
    val_fraction: float = 0.0  # > 0: hold out this stratified share of train as a validation split
    verify_checksums: bool = True  # md5 of the original files (CIFAR, SVHN)

    def problems(self, group: str) -> list[str]:
        if not 0 <= self.val_fraction < 1:
            return [f"{group}.val_fraction must be in [0, 1), got {self.val_fraction}"]
        return []

    def fingerprint(self) -> str:
        """Identity of the data itself, independent of where it lives.

        Files whose md5 the reader checks (CIFAR, SVHN) are pinned by the dataset's name;
        otherwise the file names and sizes identify the data (two image folders with other
        images never share a run; the same images moved elsewhere do).
        """
        from mimetic.data.sources import data_files, fingerprint_files

        if self.name == "digits" or (self.verify_checksums and self.name in ("cifar10", "cifar100", "svhn")):
            return ""
        root = Path(self.root).expanduser()
        return fingerprint_files(root, data_files(self.name, root))


def _read(options: ImageDataset, image_size: int | None) -> RawDataset:
    name, root = options.name, Path(options.root).expanduser()
    if name in ("cifar10", "cifar100"):
        raw = load_cifar(name, root, download=options.download, verify_checksums=options.verify_checksums)
    elif name == "svhn":
        raw = load_svhn(root, download=options.download, verify_checksums=options.verify_checksums)
    elif name == "image_folder":
        raw = load_image_folder(root, image_size=image_size or 32)
    else:
        raw = load_digits()
    if image_size is None:
        return raw
    return RawDataset(resize_split(raw.train, image_size), resize_split(raw.test, image_size), raw.classes)


EXACT_STATISTICS_MAX = 1 << 28  # values; up to ~1 GB of float32 the statistics are one exact pass


def channel_statistics(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std (clamped at 1e-3) of uint8 (N, C, H, W) images, in [0, 1] units.

    Up to CIFAR size this is one float32 pass (the numbers every recorded run used); larger
    sets (Tiny ImageNet: 1.2e9 values) are summed in float64 chunks instead of copying the
    whole set to float.
    """
    if images.numel() <= EXACT_STATISTICS_MAX:
        pixels = images.float().div_(255.0)
        return pixels.mean(dim=(0, 2, 3)), pixels.std(dim=(0, 2, 3)).clamp_min(1e-3)
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for chunk in images.split(4096):
        x = chunk.to(torch.float64).div_(255.0)
        total += x.sum(dim=(0, 2, 3))
        squares += x.square().sum(dim=(0, 2, 3))
    n = images.numel() // images.shape[1]
    mean = total / n
    var = (squares - n * mean.square()) / (n - 1)
    return mean.float(), var.clamp_min(0).sqrt().float().clamp_min(1e-3)


def build_image_data(options: ImageDataset, request: DataRequest) -> Data:
    """In-memory uint8 splits on the device, batched and augmented there."""
    return in_memory_data(_read(options, request.image_size), options, request)


def in_memory_data(raw: RawDataset, options: ImageDataset, request: DataRequest) -> Data:
    """:class:`Data` from splits read into memory (any reader): holdout, statistics, loaders on the device."""
    train, val = raw.train, None
    if options.val_fraction > 0:
        keep, hold = stratified_holdout(train.labels, options.val_fraction)
        train, val = train.subset(keep), train.subset(hold)

    # Normalisation statistics of the (final) training images, per channel.
    mean, std = channel_statistics(train.images)

    def on_device(split: ImageSplit) -> ImageSplit:
        return ImageSplit(split.images.to(request.device), split.labels.to(request.device))

    shard = {"rank": request.rank, "world_size": request.world_size}
    evaluation = {"mean": mean, "std": std, "max_batches": request.max_eval_batches, **shard}
    transform = TrainTransform(request.aug, mean, std) if request.aug is not None else None
    size = int(train.images.shape[-1])
    return Data(
        train=BatchLoader(on_device(train), request.batch_size, mean=mean, std=std, transform=transform, **shard),
        test=BatchLoader(on_device(raw.test), request.eval_batch_size, **evaluation),
        val=None if val is None else BatchLoader(on_device(val), request.eval_batch_size, **evaluation),
        spec=DataSpec("classification", num_classes=len(raw.classes), in_chans=3, image_size=size),
        task="classification",
        classes=raw.classes,
    )


for _name, _help in (
    ("cifar10", "CIFAR-10 (python pickles)"),
    ("cifar100", "CIFAR-100 (python pickles, fine labels)"),
    ("svhn", "SVHN cropped digits (.mat)"),
    ("image_folder", "any <root>/{train,test}/<class>/<image> tree"),
    ("digits", "scikit-learn's 8x8 digits (offline), fixed 1,437 / 360 split"),
):
    DATASETS.add(_name, ImageDataset, build_image_data, help=_help)
