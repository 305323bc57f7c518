"""ImageNet-1k, streamed from JPEG folders by timm's data pipeline, behind the project's Loader protocol.

Layout: ``<root>/train/<wnid>/*.JPEG`` and ``<root>/val/<wnid>/*.JPEG`` (the official
validation folder is flat: ``scripts/prepare_data.py imagenet-val`` sorts it into class folders).

What comes from timm (``timm.data``): the dataset and its folder reader
(``create_dataset``), the transforms (``create_loader`` builds them with
``create_transform``: random-resized crop + horizontal flip for training, resize +
centre crop at ``crop_pct`` for evaluation, in the "prefetcher" form that stops at uint8),
the uint8 collate (``fast_collate``) and the loader's worker settings. Batches reach the
accelerator as uint8 and are normalised there (4x less host-to-device traffic than float).

What is ours, and why: the order of samples. timm's ``DistributedSampler`` pads the
dataset so that every rank gets as many samples, shuffles with ``seed + epoch`` and can
only start an epoch at its beginning. Here every rank walks the same global order (a
permutation drawn from the epoch's generator, as :class:`~mimetic.data.loader.BatchLoader`
does), takes its slice of each global batch, and an epoch can start at batch
``start_step`` without reading a single skipped image. Each sample's augmentation is
seeded by (epoch generator, position in the epoch), never by the worker that happens to
decode it, so the batches are the same with any number of workers or processes: a run on
2 GPUs sees exactly the images and crops a run on 1 GPU with the same global batch sees.

Workers: ``$MIMETIC_DATA_WORKERS`` per process, else ``$SLURM_CPUS_PER_TASK - 1``, else
``min(8, cpus - 1)``. Not a config key on purpose: the number of workers does not change
what a run computes, so it must not change the run's directory (a requeued job on another
node resumes).
"""

from __future__ import annotations

import logging
import math
import os
import random
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mimetic.data.augment import normalize
from mimetic.data.base import DATASETS, Data, DataRequest
from mimetic.data.sources import to_rgb8
from mimetic.errors import ConfigError, DatasetError
from mimetic.models.base import DataSpec
from mimetic.registry import Option

log = logging.getLogger("mimetic")

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
LAYOUT = ("<root>/train/<wnid>/*.JPEG and <root>/val/<wnid>/*.JPEG (sort the official flat validation folder "
          "with: python scripts/prepare_data.py imagenet-val <val folder> <LOC_val_solution.csv or labels file>)")


@dataclass
class ImageNet(Option):
    """ImageNet-1k (or any train/ + val/ class-folder tree), streamed; "ResNet-style" augmentation."""

    root: str = "${paths.data_dir}/imagenet"
    train_split: str = "train"
    test_split: str = "val"
    scale: list[float] = field(default_factory=lambda: [0.08, 1.0])  # random-resized-crop area range
    ratio: list[float] = field(default_factory=lambda: [3 / 4, 4 / 3])  # ... and aspect-ratio range
    hflip: float = 0.5
    interpolation: str = "bilinear"
    crop_pct: float = 0.875  # evaluation: resize to size / crop_pct, centre crop to size
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))

    def problems(self, group: str) -> list[str]:
        out = []
        if len(self.scale) != 2 or not 0 < self.scale[0] <= self.scale[1] <= 1:
            out.append(f"{group}.scale must be [low, high] with 0 < low <= high <= 1, got {self.scale}")
        if len(self.ratio) != 2 or not 0 < self.ratio[0] <= self.ratio[1]:
            out.append(f"{group}.ratio must be [low, high] with 0 < low <= high, got {self.ratio}")
        if not 0 <= self.hflip <= 1:
            out.append(f"{group}.hflip must be in [0, 1], got {self.hflip}")
        if not 0 < self.crop_pct <= 1:
            out.append(f"{group}.crop_pct must be in (0, 1], got {self.crop_pct}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            out.append(f"{group}.mean and {group}.std need 3 values each (std > 0)")
        return out

    def fingerprint(self) -> str:
        """File names (not sizes: one stat per file of 1.3M is slow on network storage) of both splits."""
        import hashlib

        root = Path(self.root).expanduser()
        digest = hashlib.sha1()
        for split in (self.train_split, self.test_split):
            for relative in sorted(list_images(root / split, root)):
                digest.update(f"{relative}\n".encode())
        return digest.hexdigest()[:12]


def list_images(split_dir: Path, root: Path) -> list[str]:
    """Image paths under ``split_dir`` relative to ``root`` (timm's extensions), without a stat per file."""
    from timm.data.readers.reader_image_folder import get_img_extensions

    if not split_dir.is_dir():
        raise DatasetError(f"ImageNet split not found: {split_dir} does not exist. dataset.root must hold {LAYOUT}.")
    extensions = tuple(get_img_extensions())
    out = []
    for folder, _, files in os.walk(split_dir):
        rel = os.path.relpath(folder, root)
        out += [f"{rel}/{f}".replace(os.sep, "/") for f in files if f.lower().endswith(extensions)]
    return out


def data_workers() -> int:
    """Loader workers per process (see the module doc)."""
    if os.environ.get("MIMETIC_DATA_WORKERS"):
        return max(0, int(os.environ["MIMETIC_DATA_WORKERS"]))
    if os.environ.get("SLURM_CPUS_PER_TASK"):
        return max(0, int(os.environ["SLURM_CPUS_PER_TASK"]) - 1)
    return max(0, min(8, (os.cpu_count() or 1) - 1))


# ----------------------------------------------------------------------------- samples
class _ToRGB8:
    """Decode with the project's mode rules (greyscale, CMYK, 16-bit, alpha) before timm's transform."""

    def __init__(self, transform):
        self.transform = transform

    def __call__(self, img):
        return self.transform(to_rgb8(img, getattr(img, "filename", "image")))


class SeededSamples(torch.utils.data.Dataset):
    """``dataset[(index, seed)]``: the sample with its augmentation drawn from ``seed``.

    timm's random-resized crop draws from Python's ``random``, torchvision's flip from
    torch's global generator; both are seeded per sample (and restored afterwards, so
    with 0 workers the training process's own random state is untouched).
    """

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        py_state = random.getstate()
        try:
            with torch.random.fork_rng(devices=[]):
                random.seed(seed)
                torch.manual_seed(seed)
                return self._sample(index)
        except DatasetError:
            raise
        except Exception as err:
            path = self.dataset.filename(index, absolute=True)
            raise DatasetError(f"cannot read image {path}: {type(err).__name__}: {err}") from None
        finally:
            random.setstate(py_state)

    def _sample(self, index: int):
        """timm's ``ImageDataset.__getitem__`` without its retry: it would silently hand over the *next*
        image when a file cannot be opened; here a broken file stops the run, named."""
        from PIL import Image

        source, target = self.dataset.reader[index]
        with source if hasattr(source, "read") else open(source, "rb") as f:
            img = Image.open(f)
            img.load()
        image = self.dataset.transform(img) if self.dataset.transform is not None else img
        return image, -1 if target is None else target


def _worker_init(worker_id: int) -> None:
    """Workers leave stop signals to the training process.

    SLURM (preemption, ``scancel``, the time limit) and a terminal send SIGTERM / SIGINT / SIGUSR2 /
    SIGUSR1 to every process of the job, workers included. A worker killed by SIGTERM
    would make the training process's next batch fail before it reaches the step
    boundary where it checkpoints; so workers ignore these signals. They end when the
    epoch's iterator shuts them down (always, see ``StreamingLoader.epoch``) or, if the
    training process dies (``kill -9``), by torch's own watchdog within seconds.
    """
    for name in _STOP_SIGNALS:
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)


_STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGUSR1", "SIGUSR2")


def _start_workers(loader: torch.utils.data.DataLoader):
    """``iter(loader)`` with the stop signals blocked while its workers fork.

    A worker forked a moment before a job-wide SIGTERM would otherwise die of it before
    ``_worker_init`` makes it ignore the signal, and the training process would fail on its
    next batch instead of stopping at the step boundary. Forked workers keep the blocked mask
    (the same as ignoring); the training process gets the signal the moment it is unblocked.
    """
    if loader.num_workers == 0 or not hasattr(signal, "pthread_sigmask"):
        return iter(loader)
    stops = {getattr(signal, name) for name in _STOP_SIGNALS if hasattr(signal, name)}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, stops)
    try:
        return iter(loader)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class _Batches:
    """A batch sampler whose batches are set before each epoch."""

    def __init__(self) -> None:
        self.batches: list[list] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _short(err: Exception) -> str:
    """A worker's DatasetError arrives with the worker's traceback in its text: keep the message."""
    text = str(err).strip().splitlines()
    for line in reversed(text):
        if "DatasetError: " in line:
            return line.split("DatasetError: ", 1)[1]
    return text[-1] if text else repr(err)


class StreamingLoader:
    """A class-folder split decoded by loader workers (follows ``data.protocol.Loader``).

    Training: order and per-sample augmentation seeds drawn from the epoch's generator;
    evaluation: the split in order. Either way every rank takes its slice of each global
    batch. Yields ``(images, labels)`` on ``device``: float, normalised there.
    """

    def __init__(self, dataset, loader_args: dict, batch_size: int, device: torch.device, mean, std, *,
                 training: bool, image_size: int, rank: int = 0, world_size: int = 1,
                 max_batches: int | None = None):
        self.dataset = SeededSamples(dataset)
        self.image_size = image_size
        self.batch_size = batch_size
        self.device = device
        self.mean = torch.tensor(mean, device=device)
        self.std = torch.tensor(std, device=device)
        self.training = training
        self.rank, self.world_size = rank, world_size
        self.max_batches = max_batches
        self.sampler = _Batches()
        workers = loader_args.get("num_workers", 0)
        self.loader = torch.utils.data.DataLoader(
            self.dataset, batch_sampler=self.sampler, num_workers=workers,
            collate_fn=loader_args["collate_fn"], pin_memory=device.type == "cuda", worker_init_fn=_worker_init,
            prefetch_factor=4 if workers > 0 else None)

    def __len__(self) -> int:
        full = math.ceil(len(self.dataset) / self.batch_size)
        return full if self.max_batches is None else min(full, self.max_batches)

    @property
    def num_samples(self) -> int:
        return min(len(self.dataset), len(self) * self.batch_size)

    def plan(self, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(order, seeds) of one epoch: a pure function of the generator (training) or fixed (evaluation)."""
        n = len(self.dataset)
        if not self.training:
            return torch.arange(n), torch.zeros(n, dtype=torch.int64)
        if generator is None:
            raise ValueError("a training loader needs the epoch's generator")
        # One draw from the epoch's generator (it may live on the accelerator) seeds a CPU stream.
        base = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())
        cpu = torch.Generator().manual_seed(base)
        return torch.randperm(n, generator=cpu), torch.randint(0, 2**62, (n,), generator=cpu)

    def epoch(self, generator: torch.Generator | None = None, *,
              start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order, seeds = self.plan(generator)
        batches = []
        for step in range(start_step, len(self)):  # skipped batches cost nothing: no image is read
            index = order[step * self.batch_size : (step + 1) * self.batch_size]
            mine = index.tensor_split(self.world_size)[self.rank] if self.world_size > 1 else index
            batches.append([(int(i), int(seeds[i])) for i in mine])
        self.sampler.batches = [b for b in batches if b]
        iterator = _start_workers(self.loader)
        try:
            decoded = iter(iterator)
            for batch in batches:
                if not batch:
                    # This rank's shard of a last batch smaller than the number of ranks: it still takes
                    # the step (with zero weight), so every rank runs the same number of steps.
                    yield (torch.empty(0, 3, self.image_size, self.image_size, device=self.device),
                           torch.empty(0, dtype=torch.int64, device=self.device))
                    continue
                images, labels = next(decoded)
                x = images.to(self.device, non_blocking=True)
                yield normalize(x, self.mean, self.std), labels.to(self.device, non_blocking=True)
        except DatasetError as err:
            raise DatasetError(_short(err)) from None
        finally:
            # An epoch left early (a stop signal, an error) shuts its workers down now, by the loader's own
            # sentinel: they ignore SIGTERM (see _worker_init), so nothing else may be left to end them.
            shutdown = getattr(iterator, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()


# ----------------------------------------------------------------------------- builder
def _timm_loader(dataset, options: ImageNet, size: int, batch_size: int, training: bool) -> dict:
    """Let timm's ``create_loader`` configure the split (transform, collate, workers); keep its settings."""
    from timm.data import create_loader

    workers = data_workers()
    loader = create_loader(
        dataset, input_size=(3, size, size), batch_size=batch_size, is_training=training, use_prefetcher=True,
        scale=tuple(options.scale), ratio=tuple(options.ratio), hflip=options.hflip, vflip=0.0, color_jitter=0.0,
        interpolation=options.interpolation, crop_pct=options.crop_pct, mean=tuple(options.mean),
        std=tuple(options.std), num_workers=workers, distributed=False, device=torch.device("cpu"),
        persistent_workers=False)
    inner = getattr(loader, "loader", loader)  # PrefetchLoader wraps the DataLoader
    dataset.transform = _ToRGB8(dataset.transform)
    return {"num_workers": inner.num_workers, "collate_fn": inner.collate_fn}


def _split(options: ImageNet, split: str, training: bool):
    from timm.data import create_dataset

    root = Path(options.root).expanduser()
    if not (root / split).is_dir():
        raise DatasetError(f"ImageNet split not found: {root / split} does not exist. dataset.root must hold {LAYOUT}.")
    try:
        return create_dataset("", root=str(root / split), split=split, search_split=False, is_training=training,
                              input_img_mode=None)
    except Exception as err:  # timm raises RuntimeError/AssertionError for an empty tree
        raise DatasetError(f"cannot read the image folder {root / split}: {err}") from None


def build_imagenet(options: ImageNet, request: DataRequest) -> Data:
    aug = request.aug
    if aug is not None and (getattr(aug, "crop_padding", 0) or getattr(aug, "flip", False)
                            or getattr(aug, "randaug_ops", 0) or getattr(aug, "cutout", 0)):
        raise ConfigError(f"dataset=imagenet augments in its loader workers (random-resized crop + flip: "
                          f"dataset.scale, dataset.ratio, dataset.hflip); add aug=none (got aug={aug.name})")
    size = request.image_size or 224
    train = _split(options, options.train_split, training=True)
    test = _split(options, options.test_split, training=False)
    train_classes = train.reader.class_to_idx
    if test.reader.class_to_idx != train_classes:
        odd = sorted(set(train_classes) ^ set(test.reader.class_to_idx))
        raise DatasetError(f"{options.root}: {options.train_split}/ and {options.test_split}/ have different class "
                           f"folders ({odd[:5]} appear in only one); sort the validation images into the same "
                           "classes (scripts/prepare_data.py imagenet-val)")
    shard = {"rank": request.rank, "world_size": request.world_size}
    common = {"mean": options.mean, "std": options.std, "image_size": size, **shard}
    train_args = _timm_loader(train, options, size, request.batch_size, training=True)
    test_args = _timm_loader(test, options, size, request.eval_batch_size, training=False)
    classes = sorted(train_classes, key=train_classes.get)
    return Data(
        train=StreamingLoader(train, train_args, request.batch_size, request.device, training=True, **common),
        test=StreamingLoader(test, test_args, request.eval_batch_size, request.device, training=False,
                             max_batches=request.max_eval_batches, **common),
        val=None,
        spec=DataSpec("classification", num_classes=len(classes), in_chans=3, image_size=size),
        task="classification",
        classes=classes,
    )


DATASETS.add("imagenet", ImageNet, build_imagenet,
             help="ImageNet-1k class folders, streamed by timm's loader (random-resized crop + flip), uint8 to device")
