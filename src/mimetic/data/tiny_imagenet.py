"""Tiny ImageNet (200 classes, 64 px) from the official ``tiny-imagenet-200/`` layout, held in memory.

Layout (as the official zip unpacks)::

    <root>/                       (or <root>/tiny-imagenet-200/)
      wnids.txt                   200 WordNet ids, one a line
      train/<wnid>/images/*.JPEG  500 per class (train/<wnid>/<wnid>_boxes.txt is not read)
      val/images/*.JPEG           10,000 images
      val/val_annotations.txt     <file>\\t<wnid>\\t<x0>\\t<y0>\\t<x1>\\t<y1>, one line per val image

The official ``test/`` split has no labels, so ``val/`` is the test split (as in every
paper that reports Tiny ImageNet); ``dataset.val_fraction`` holds out part of train for
tuning. Labels are the index of the wnid in sorted order (what ImageFolder would give).

Every image is decoded once (greyscale, CMYK and other modes converted by
:func:`~mimetic.data.sources.to_rgb8`, anything not 64x64 resized bicubically) and the
uint8 arrays are cached as ``.npy`` files keyed by the data's fingerprint, so later runs
start in seconds. The cache lives in ``$MIMETIC_CACHE_DIR`` when set, else in
``<root>/.mimetic-cache/`` when the data folder is writable, else in
``~/.cache/mimetic/``; it is never part of the run's identity (it holds the same pixels).

The reader refuses what would train on wrong labels: a val image without an annotation
line (unless ``dataset.skip_unannotated_val=true``, which leaves it out and logs how
many), an annotation naming a missing file or an unknown wnid, a class folder that is not
in ``wnids.txt`` or a wnid without images.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mimetic.data.base import DATASETS, Data, DataRequest
from mimetic.data.images import ImageDataset, in_memory_data
from mimetic.data.sources import ImageSplit, RawDataset, fingerprint_files, resize_split, to_rgb8
from mimetic.errors import DatasetError

log = logging.getLogger("mimetic")

SIZE = 64
FOLDER = "tiny-imagenet-200"
CACHE_VERSION = 1
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
LAYOUT = ("wnids.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG and val/val_annotations.txt "
          "(the official tiny-imagenet-200 zip, e.g. unzip tiny-imagenet-200.zip -d data/tiny_imagenet)")


@dataclass
class TinyImageNet(ImageDataset):
    """Tiny ImageNet from the official layout (``root`` may also hold ``tiny-imagenet-200/``)."""

    skip_unannotated_val: bool = False  # true: leave out val images without an annotation line (logged)

    def fingerprint(self) -> str:
        layout = find_layout(Path(self.root).expanduser())
        return fingerprint_files(layout.root, layout.files())


@dataclass
class Layout:
    root: Path
    classes: list[str]
    train: list[tuple[Path, int]]
    val: list[tuple[Path, int]]
    unannotated: list[Path]

    def files(self) -> list[Path]:
        """Every file the reader reads (identity of the data: names and sizes)."""
        extra = [self.root / "wnids.txt", self.root / "val" / "val_annotations.txt"]
        return extra + [p for p, _ in self.train] + [p for p, _ in self.val]


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith("._")


def _images_in(folder: Path) -> list[Path]:
    with os.scandir(folder) as entries:
        return sorted(Path(e.path) for e in entries if e.is_file() and _is_image(e.name))


def find_layout(root: Path, *, skip_unannotated: bool = True) -> Layout:
    """List the files of the official layout under ``root`` (nothing is decoded)."""
    root = Path(root).expanduser()
    if not (root / "wnids.txt").is_file() and (root / FOLDER / "wnids.txt").is_file():
        root = root / FOLDER
    wnids_file = root / "wnids.txt"
    if not wnids_file.is_file():
        raise DatasetError(f"Tiny ImageNet not found: {wnids_file} does not exist. dataset.root must hold {LAYOUT}.")
    wnids = [w.strip() for w in wnids_file.read_text().splitlines() if w.strip()]
    if len(set(wnids)) != len(wnids):
        raise DatasetError(f"{wnids_file} lists a wnid twice")
    classes = sorted(wnids)
    index = {w: i for i, w in enumerate(classes)}

    train_dir = root / "train"
    if not train_dir.is_dir():
        raise DatasetError(f"Tiny ImageNet: {train_dir} does not exist. dataset.root must hold {LAYOUT}.")
    folders = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
    unknown = sorted(set(folders) - set(wnids))
    if unknown:
        raise DatasetError(f"{train_dir}: class folders {unknown[:5]} are not in {wnids_file}")
    train: list[tuple[Path, int]] = []
    for wnid in classes:
        images_dir = train_dir / wnid / "images"
        files = _images_in(images_dir) if images_dir.is_dir() else []
        if not files:
            raise DatasetError(f"Tiny ImageNet: no images in {images_dir} (wnid {wnid} is listed in {wnids_file})")
        train += [(p, index[wnid]) for p in files]

    val_dir, notes = root / "val" / "images", root / "val" / "val_annotations.txt"
    if not val_dir.is_dir() or not notes.is_file():
        raise DatasetError(f"Tiny ImageNet: {val_dir} or {notes} does not exist. dataset.root must hold {LAYOUT}.")
    labels: dict[str, int] = {}
    for number, line in enumerate(notes.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2:
            raise DatasetError(f"{notes}:{number}: expected '<file>\\t<wnid>\\t...', got {line!r}")
        name, wnid = parts[0], parts[1].strip()
        if wnid not in index:
            raise DatasetError(f"{notes}:{number}: wnid {wnid!r} is not in {wnids_file}")
        if name in labels and labels[name] != index[wnid]:
            raise DatasetError(f"{notes}:{number}: {name} is annotated twice with different wnids")
        labels[name] = index[wnid]
    on_disk = _images_in(val_dir)
    missing = sorted(set(labels) - {p.name for p in on_disk})
    if missing:
        raise DatasetError(f"{notes} annotates {len(missing)} file(s) that are not in {val_dir}, e.g. {missing[0]!r}")
    val = [(p, labels[p.name]) for p in on_disk if p.name in labels]
    unannotated = [p for p in on_disk if p.name not in labels]
    if unannotated and not skip_unannotated:
        raise DatasetError(
            f"{len(unannotated)} image(s) in {val_dir} have no line in {notes}, e.g. {unannotated[0].name!r}: "
            "their labels are unknown (a damaged copy?). Restore the official val_annotations.txt, or add "
            "dataset.skip_unannotated_val=true to leave them out of the test split."
        )
    return Layout(root, classes, train, val, unannotated)


def _decode(item: tuple[Path, int]) -> np.ndarray:
    from PIL import Image

    path = item[0]
    try:
        with Image.open(path) as img:
            img.draft("RGB", (SIZE, SIZE))  # JPEG: decode at the smallest scale >= 64 px
            rgb = to_rgb8(img, path)
            if rgb.size != (SIZE, SIZE):
                rgb = rgb.resize((SIZE, SIZE), Image.BICUBIC)
            return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1)
    except DatasetError:
        raise
    except Exception as err:
        raise DatasetError(f"cannot read image {path}: {err}") from err


def _decode_all(items: list[tuple[Path, int]]) -> tuple[np.ndarray, np.ndarray]:
    images = np.empty((len(items), 3, SIZE, SIZE), dtype=np.uint8)
    workers = max(1, min(8, (os.cpu_count() or 1)))
    with ThreadPoolExecutor(workers) as pool:  # Pillow releases the GIL while decoding
        for i, array in enumerate(pool.map(_decode, items, chunksize=256)):
            images[i] = array
    return images, np.array([label for _, label in items], dtype=np.int64)


def cache_dir(root: Path) -> Path:
    """Where decoded arrays are kept: $MIMETIC_CACHE_DIR, <root>/.mimetic-cache if writable, ~/.cache/mimetic."""
    if os.environ.get("MIMETIC_CACHE_DIR"):
        return Path(os.environ["MIMETIC_CACHE_DIR"]).expanduser()
    beside = root / ".mimetic-cache"
    if os.access(beside if beside.exists() else root, os.W_OK):
        return beside
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "mimetic"


def load_tiny_imagenet(root: Path, *, skip_unannotated: bool = False) -> RawDataset:
    """Both splits as uint8 tensors, from the cache when the same files were decoded before."""
    layout = find_layout(root, skip_unannotated=skip_unannotated)
    if layout.unannotated:
        log.warning("Tiny ImageNet: %d val image(s) without an annotation line left out (e.g. %s)",
                    len(layout.unannotated), layout.unannotated[0].name)
    key = f"tiny_imagenet-{fingerprint_files(layout.root, layout.files())}-{SIZE}px-v{CACHE_VERSION}"
    where = cache_dir(layout.root) / key
    arrays = _read_cache(where, layout.classes)
    if arrays is None:
        log.info("Tiny ImageNet: decoding %d train + %d val images once (cache: %s)", len(layout.train),
                 len(layout.val), where)
        arrays = {}
        arrays["train_images"], arrays["train_labels"] = _decode_all(layout.train)
        arrays["val_images"], arrays["val_labels"] = _decode_all(layout.val)
        _write_cache(where, arrays, layout.classes)

    def split(name: str) -> ImageSplit:
        return ImageSplit(torch.from_numpy(np.array(arrays[f"{name}_images"])),
                          torch.from_numpy(np.array(arrays[f"{name}_labels"])))

    return RawDataset(split("train"), split("val"), layout.classes)


def _read_cache(where: Path, classes: list[str]) -> dict[str, np.ndarray] | None:
    try:
        if json.loads((where / "classes.json").read_text()) != classes:
            return None
        return {name: np.load(where / f"{name}.npy", mmap_mode="r")
                for name in ("train_images", "train_labels", "val_images", "val_labels")}
    except (OSError, ValueError):
        return None  # absent or damaged: decode again


def _write_cache(where: Path, arrays: dict[str, np.ndarray], classes: list[str]) -> None:
    """Written into a temporary folder, then renamed: a reader sees a whole cache or none."""
    try:
        where.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{where.name}.", dir=where.parent))
    except OSError as err:
        log.warning("Tiny ImageNet: cannot write the decode cache under %s (%s); decoding again next time",
                    where.parent, err.strerror)
        return
    try:
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", array)
        (tmp / "classes.json").write_text(json.dumps(classes))
        os.replace(tmp, where)
    except OSError as err:  # another process won the race (where exists), or a full disk
        shutil.rmtree(tmp, ignore_errors=True)
        if not where.is_dir():
            log.warning("Tiny ImageNet: cannot write the decode cache %s (%s)", where, err.strerror)


def build_tiny_imagenet(options: TinyImageNet, request: DataRequest) -> Data:
    if options.download:
        raise DatasetError("dataset.download is not supported for tiny_imagenet: download "
                           "http://cs231n.stanford.edu/tiny-imagenet-200.zip and unzip it into dataset.root")
    raw = load_tiny_imagenet(Path(options.root), skip_unannotated=options.skip_unannotated_val)
    if request.image_size is not None and request.image_size != SIZE:
        raw = RawDataset(resize_split(raw.train, request.image_size), resize_split(raw.test, request.image_size),
                         raw.classes)
    return in_memory_data(raw, options, request)


DATASETS.add("tiny_imagenet", TinyImageNet, build_tiny_imagenet,
             help="Tiny ImageNet, official tiny-imagenet-200 layout, 64 px, in memory (val = test split)")
