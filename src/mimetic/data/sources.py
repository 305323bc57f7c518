"""Read image datasets from their real on-disk formats into uint8 tensors.

Small vision datasets fit in memory (CIFAR-10 is 150 MB as uint8), so every reader
returns the whole split as one ``(N, 3, H, W)`` uint8 tensor plus int64 labels; the
training loop then batches and augments them on the accelerator.

Readers parse the files themselves (torchvision is used only to download), so files a
test writes in the same format read exactly like the real ones; the real files' md5
sums are still checked unless ``dataset.verify_checksums=false``.

Every reader checks what it reads (array shapes, label ranges, pixel modes) and fails
at load time with a :class:`DatasetError` naming the file and the fix, rather than
training on wrong pixels or failing mid-epoch. :func:`data_files` lists the files a
reader reads and :func:`fingerprint_files` turns them into a short identity of the data.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mimetic.errors import DatasetError


@dataclass
class ImageSplit:
    images: torch.Tensor  # (N, 3, H, W) uint8
    labels: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return self.labels.numel()

    def subset(self, index: torch.Tensor) -> ImageSplit:
        return ImageSplit(self.images[index], self.labels[index])


@dataclass
class RawDataset:
    train: ImageSplit
    test: ImageSplit
    classes: list[str]


# --------------------------------------------------------------------------- helpers
def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(path: Path, md5: str, fix: str) -> None:
    actual = _md5(path)
    if actual != md5:
        raise DatasetError(
            f"{path} has md5 {actual}, expected {md5} (a partial download or a different file). "
            f"Delete it and download again ({fix}), or set dataset.verify_checksums=false for a "
            "deliberately converted copy."
        )


def _missing(name: str, root: Path, expected: list[str], how: str) -> DatasetError:
    listing = "\n".join(f"  {root / e}" for e in expected)
    return DatasetError(f"{name} not found. Expected these files:\n{listing}\n{how}")


def _download_hint(name: str, root: Path) -> str:
    return (
        f"Download it with:  python scripts/prepare_data.py {name} --root {root}\n"
        f"(or add dataset.download=true to the training command; both need network access)."
    )


def _try_download(name: str, root: Path, download_fn) -> None:
    try:
        download_fn()
    except Exception as err:  # network errors come in many types
        raise DatasetError(
            f"could not download {name} into {root}: {err}\n"
            f"Without network access, copy the files there by hand (see the expected layout in "
            f"README.md, 'Datasets'), then run again with dataset.download=false."
        ) from err


def _to_chw_uint8(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).to(torch.uint8)


# --------------------------------------------------------------------------- CIFAR
_CIFAR = {
    "cifar10": {
        "title": "CIFAR-10",
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "meta": "batches.meta",
        "label_key": "labels",
        "names_key": "label_names",
    },
    "cifar100": {
        "title": "CIFAR-100",
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "meta": "meta",
        "label_key": "fine_labels",
        "names_key": "fine_label_names",
    },
}


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            # latin1 decodes the original Python 2 pickles' str keys to str, like torchvision does.
            entry = pickle.load(f, encoding="latin1")
    except Exception as err:
        raise DatasetError(f"{path} is not a readable CIFAR pickle ({err}); delete it and download again") from err
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in entry.items()}


def _torchvision_cifar(name: str):
    import torchvision

    return torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100


def _cifar_files(name: str, root: Path) -> list[Path]:
    """The files the CIFAR reader reads, or the reader's DatasetError if any is missing."""
    spec = _CIFAR[name]
    folder = root / spec["folder"]
    files = spec["train"] + spec["test"] + [spec["meta"]]
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        raise _missing(spec["title"], root, [f"{spec['folder']}/{f}" for f in files], _download_hint(name, root))
    return [folder / f for f in files]


def _pixels_uint8(array, path: Path, what: str) -> np.ndarray:
    """``array`` as uint8, refusing values a cast would wrap (e.g. a float or 16-bit copy)."""
    array = np.asarray(array)
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind not in "iub" or (array.size and (array.min() < 0 or array.max() > 255)):
        raise DatasetError(
            f"{path}: {what} has dtype {array.dtype}"
            + (f" with values in [{array.min()}, {array.max()}]" if array.size and array.dtype.kind in "iuf" else "")
            + ", expected uint8 pixels 0..255 (a converted copy?). Use the original files."
        )
    return array.astype(np.uint8)


def _check_labels(labels, n_images: int, n_classes: int, path: Path, where: str, fix: str,
                  allowed: str | None = None) -> np.ndarray:
    """Labels as int64, checked against the image count and the class list at load time.

    A label outside the class list would otherwise surface as an IndexError (or a CUDA
    device assert) in the middle of an epoch.
    """
    array = np.asarray(labels)
    if array.size == 0:
        array = array.astype(np.int64)
    if array.ndim != 1 or array.dtype.kind not in "iu":
        raise DatasetError(f"{path}: {where} must be a flat list of integer labels, got shape {array.shape} "
                           f"and dtype {array.dtype}. {fix}")
    if len(array) != n_images:
        raise DatasetError(f"{path}: {len(array)} labels for {n_images} images; both must have one entry per "
                           f"image. {fix}")
    bad = (array < 0) | (array >= n_classes)
    if bad.any():
        values = sorted(set(array[bad].tolist()))
        allowed = allowed or f"0..{n_classes - 1} (the {n_classes} classes of this dataset)"
        raise DatasetError(
            f"{path}: {int(bad.sum())} labels lie outside {allowed}, e.g. {values[:5]}. The file does not "
            f"belong with this class list (a file from another dataset, or edited labels). {fix}"
        )
    return array.astype(np.int64)


def load_cifar(name: str, root: Path, *, download: bool, verify_checksums: bool) -> RawDataset:
    spec = _CIFAR[name]
    folder = root / spec["folder"]
    files = spec["train"] + spec["test"] + [spec["meta"]]
    if download and not all((folder / f).is_file() for f in files):
        tv = _torchvision_cifar(name)
        _try_download(spec["title"], root, lambda: tv(str(root), train=True, download=True))
    _cifar_files(name, root)
    fix = f"Replace {folder} with a fresh download: python scripts/prepare_data.py {name} --root {root}"
    if verify_checksums:
        tv = _torchvision_cifar(name)
        for filename, md5 in tv.train_list + tv.test_list + [[tv.meta["filename"], tv.meta["md5"]]]:
            _verify(folder / filename, md5, _download_hint(name, root).splitlines()[0].strip())

    meta = _unpickle(folder / spec["meta"])
    if spec["names_key"] not in meta:
        raise DatasetError(f"{folder / spec['meta']} lacks '{spec['names_key']}': not the {spec['title']} "
                           f"meta file. {fix}")
    classes = [str(c) for c in meta[spec["names_key"]]]
    n_classes = 10 if name == "cifar10" else 100
    if len(classes) != n_classes:
        raise DatasetError(f"{folder / spec['meta']} lists {len(classes)} classes, {spec['title']} has "
                           f"{n_classes}. {fix}")

    def read(batches: list[str]) -> ImageSplit:
        images, labels = [], []
        for batch in batches:
            path = folder / batch
            entry = _unpickle(path)
            if "data" not in entry or spec["label_key"] not in entry:
                raise DatasetError(f"{path} lacks 'data' or '{spec['label_key']}': not a {spec['title']} batch. {fix}")
            data = _pixels_uint8(entry["data"], path, "'data'")
            if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
                raise DatasetError(f"{path}: data has shape {data.shape}, expected (N, 3072) "
                                   f"(N images of 3 x 32 x 32 channel-major pixels). {fix}")
            images.append(data.reshape(-1, 3, 32, 32))
            labels.append(_check_labels(entry[spec["label_key"]], len(data), n_classes, path,
                                        f"'{spec['label_key']}'", fix))
        return ImageSplit(_to_chw_uint8(np.concatenate(images)), torch.from_numpy(np.concatenate(labels)))

    return RawDataset(read(spec["train"]), read(spec["test"]), classes)


# --------------------------------------------------------------------------- SVHN
def _svhn_files(root: Path) -> list[Path]:
    import torchvision

    split_list = torchvision.datasets.SVHN.split_list
    files = [split_list[split][1] for split in ("train", "test")]
    if not all((root / f).is_file() for f in files):
        raise _missing("SVHN", root, files, _download_hint("svhn", root))
    return [root / f for f in files]


def load_svhn(root: Path, *, download: bool, verify_checksums: bool) -> RawDataset:
    import torchvision
    from scipy.io import loadmat

    split_list = torchvision.datasets.SVHN.split_list
    files = {split: split_list[split][1] for split in ("train", "test")}
    for split, filename in files.items():
        if download and not (root / filename).is_file():
            _try_download(
                "SVHN", root, lambda split=split: torchvision.datasets.SVHN(str(root), split=split, download=True)
            )
    _svhn_files(root)
    fix = f"Replace it with a fresh download: python scripts/prepare_data.py svhn --root {root}"

    def read(split: str) -> ImageSplit:
        path = root / files[split]
        if verify_checksums:
            _verify(path, split_list[split][2], _download_hint("svhn", root).splitlines()[0].strip())
        try:
            mat = loadmat(str(path))
        except Exception as err:
            raise DatasetError(f"{path} is not a readable .mat file ({err}); delete it and download again") from err
        x, y = mat.get("X"), mat.get("y")
        if x is None or y is None:
            raise DatasetError(f"{path}: expected variables 'X' (32, 32, 3, N) and 'y' (N, 1). {fix}")
        if x.ndim != 4 or x.shape[:3] != (32, 32, 3):
            raise DatasetError(f"{path}: 'X' has shape {x.shape}, expected (32, 32, 3, N). {fix}")
        x = _pixels_uint8(x, path, "'X'")
        y = np.asarray(y)
        if y.size != x.shape[3] or (y.ndim == 2 and 1 not in y.shape) or y.ndim > 2:
            raise DatasetError(f"{path}: 'y' has shape {y.shape} for {x.shape[3]} images, expected "
                               f"({x.shape[3]}, 1). {fix}")
        # SVHN stores the digit 0 as label 10 (a copy that already uses 0 is read the same way).
        raw_labels = _check_labels(y.reshape(-1), x.shape[3], 11, path, "'y'", fix,
                                   allowed="SVHN's labels 1..10 (10 stands for the digit 0; 0 is read as 0 too)")
        images = _to_chw_uint8(np.transpose(x, (3, 2, 0, 1)))
        return ImageSplit(images, torch.from_numpy(raw_labels % 10))

    return RawDataset(read("train"), read("test"), [str(i) for i in range(10)])


# --------------------------------------------------------------------------- image folders
# Transparent pixels are composited onto this colour (what a viewer shows on a white page),
# so the result does not depend on whatever colour an editor left under alpha = 0.
ALPHA_BACKGROUND = (255, 255, 255)

# Raw decoder modes that hold 16 bits per sample (Pillow names them I;16, I;16B, ...).
_16_BIT_RAWMODES = ("I;16", "I;16B", "I;16L", "I;16N", "I;16S", "I;16BS")


def _rawmode(img) -> str:
    """The decoder's raw mode (how the file stores samples), '' when Pillow does not say."""
    try:
        args = img.tile[0][3]
    except (AttributeError, IndexError, TypeError):
        return ""
    return str(args[0] if isinstance(args, tuple) and args else args)


def to_rgb8(img, path: Path | str = "image"):
    """A PIL image as 8-bit RGB with the right brightness, whatever mode the file uses.

    ``Image.convert("RGB")`` alone clips 16-bit greyscale (mode ``I;16``) to 255, so such
    PNGs would load almost white and train silently. Here:

    - ``RGB``, ``L``, ``1``, ``CMYK``, ``YCbCr``, ``P`` (no transparency): Pillow's conversion;
    - anything with an alpha channel (``RGBA``, ``LA``, ``PA``, ...) or a transparent colour
      (``P``/``L``/``RGB`` with ``transparency``): composited onto :data:`ALPHA_BACKGROUND`;
    - 16-bit greyscale (``I;16*``, or ``I`` decoded from 16-bit samples): scaled
      ``round(v * 255 / 65535)``. 16-bit RGB(A) PNGs arrive as 8-bit RGB(A) already
      (Pillow keeps the high byte: at most 1 level below exact rounding);
    - ``F`` (32-bit float): values in [0, 1] are scaled by 255; other ranges are refused;
    - ``I`` from 32-bit integer samples has no defined white level and is refused.

    Raises :class:`DatasetError` naming the file for anything it will not guess.
    """
    from PIL import Image

    mode = img.mode
    convert_hint = "Convert such files to 8-bit RGB PNG or JPEG first."
    if mode in _16_BIT_RAWMODES or (mode == "I" and _rawmode(img) in _16_BIT_RAWMODES):
        values = np.asarray(img).astype(np.int64)
        if mode == "I" and (values.min() < 0 or values.max() > 65535):
            raise DatasetError(f"{path}: 16-bit image holds values outside 0..65535. {convert_hint}")
        grey = ((values * 255 + 32767) // 65535).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode == "I":
        raise DatasetError(
            f"{path}: 32-bit integer pixels (mode 'I', stored as {_rawmode(img) or 'unknown'}) have no defined "
            f"white level, so they cannot be mapped to 0..255 without guessing. {convert_hint}"
        )
    if mode == "F":
        values = np.asarray(img, dtype=np.float64)
        if not np.isfinite(values).all() or values.min() < 0 or values.max() > 1:
            raise DatasetError(
                f"{path}: floating-point pixels (mode 'F') in [{values.min():g}, {values.max():g}]; only the "
                f"range [0, 1] is read (as 0..255). {convert_hint}"
            )
        return Image.fromarray(np.round(values * 255).astype(np.uint8), mode="L").convert("RGB")
    if "A" in mode or "a" in mode or "transparency" in img.info:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*ALPHA_BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "RGB":
        return img
    return img.convert("RGB")


def _image_samples(split_dir: Path) -> tuple[list[tuple[str, int]], list[str]]:
    """(path, label) pairs and class names exactly as torchvision's ImageFolder finds them.

    Only lists directories (no image is opened), so :func:`data_files` can use it too.
    """
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    try:
        classes, class_to_idx = find_classes(str(split_dir))
        samples = make_dataset(str(split_dir), class_to_idx, extensions=IMG_EXTENSIONS)
    except (FileNotFoundError, RuntimeError) as err:
        raise DatasetError(f"{split_dir}: {err}") from err
    return samples, classes


def _read_image_tree(split_dir: Path, size: int) -> tuple[ImageSplit, list[str]]:
    from PIL import Image

    samples, classes = _image_samples(split_dir)
    images = np.empty((len(samples), size, size, 3), dtype=np.uint8)
    for i, (path, _) in enumerate(samples):
        try:
            with Image.open(path) as img:
                img = to_rgb8(img, path)
                if img.size != (size, size):
                    img = img.resize((size, size), Image.BICUBIC)
                images[i] = np.asarray(img)
        except DatasetError:
            raise
        except Exception as err:
            raise DatasetError(f"cannot read image {path}: {err}") from err
    labels = torch.tensor([label for _, label in samples], dtype=torch.int64)
    return ImageSplit(_to_chw_uint8(images.transpose(0, 3, 1, 2)), labels), list(classes)


def _check_image_folder(root: Path) -> None:
    layout = "train/<class>/<image> and test/<class>/<image>"
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise DatasetError(
                f"image folder dataset not found: {root / split} does not exist. dataset.root must hold {layout} "
                f"(e.g. python -m zipfile -e ../shared/data/cifar10-jpeg-6k.zip /tmp/data, then "
                f"dataset.root=/tmp/data/cifar10-jpeg-6k; or build that slice from the official CIFAR-10 "
                f"download with python scripts/prepare_data.py cifar-slice)."
            )


def _check_same_classes(root: Path, classes: list[str], test_classes: list[str]) -> None:
    if classes != test_classes:
        raise DatasetError(
            f"{root}: train and test have different class folders "
            f"({sorted(set(classes) ^ set(test_classes))} appear in only one); both must hold the same classes"
        )


def load_image_folder(root: Path, *, image_size: int) -> RawDataset:
    _check_image_folder(root)
    train, classes = _read_image_tree(root / "train", image_size)
    test, test_classes = _read_image_tree(root / "test", image_size)
    _check_same_classes(root, classes, test_classes)
    return RawDataset(train, test, classes)


# --------------------------------------------------------------------------- digits
DIGITS_TEST_SIZE = 360  # fixed stratified split of sklearn's 1,797 8x8 digits: 1,437 train / 360 test


def load_digits() -> RawDataset:
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    bunch = sklearn_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)  # values 0..16 -> 0..255
    index = np.arange(len(images))
    train_idx, test_idx = train_test_split(
        index, test_size=DIGITS_TEST_SIZE, stratify=bunch.target, random_state=0, shuffle=True
    )
    gray = torch.from_numpy(images)[:, None].expand(-1, 3, -1, -1).contiguous()  # grey -> 3 channels
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    split = lambda idx: ImageSplit(gray[torch.from_numpy(idx)], labels[torch.from_numpy(idx)])  # noqa: E731
    return RawDataset(split(train_idx), split(test_idx), [str(i) for i in range(10)])


# --------------------------------------------------------------------------- data identity
def data_files(name: str, root: Path) -> list[Path]:
    """The files the reader of dataset ``name`` reads under ``root``, without opening any.

    cifar10 / cifar100 / svhn: their fixed files; image_folder: every image ImageFolder would
    load from ``train/`` and ``test/`` (torchvision's ``IMG_EXTENSIONS``); digits: none (it
    ships with scikit-learn). Missing data raises the reader's own :class:`DatasetError`.
    """
    root = Path(root).expanduser()
    if name in _CIFAR:
        return _cifar_files(name, root)
    if name == "svhn":
        return _svhn_files(root)
    if name == "image_folder":
        _check_image_folder(root)
        train, classes = _image_samples(root / "train")
        test, test_classes = _image_samples(root / "test")
        _check_same_classes(root, classes, test_classes)
        return [Path(path) for path, _ in train + test]
    if name == "digits":
        return []
    known = ", ".join([*_CIFAR, "svhn", "image_folder", "digits"])
    raise DatasetError(f"no reader for dataset {name!r}; known: {known}")


def fingerprint_files(root: Path, files: list[Path]) -> str:
    """A short hex identity of a set of data files: sha1 over sorted (path relative to ``root``, size).

    Only ``stat`` is called (no file is read), so it is cheap even for large image trees.
    The same files moved or copied elsewhere keep their fingerprint; adding, removing,
    renaming (relabelling) or resizing a file changes it. An edit that keeps every file's
    size is not seen: the CIFAR/SVHN readers' md5 checks cover content for those.
    """
    prefix = os.path.join(os.path.abspath(os.path.expanduser(root)), "")
    entries = []
    for file in files:
        path = os.path.abspath(os.path.expanduser(file))
        if not path.startswith(prefix):
            raise ValueError(f"fingerprint_files: {file} is not under {root}")
        entries.append((path[len(prefix):].replace(os.sep, "/"), os.stat(path).st_size))
    digest = hashlib.sha1()
    for relative, size in sorted(entries):
        digest.update(f"{relative}\0{size}\n".encode())
    return digest.hexdigest()[:12]


# --------------------------------------------------------------------------- shared steps
def resize_split(split: ImageSplit, size: int) -> ImageSplit:
    """Bilinear (antialiased) resize of a whole split to ``size`` x ``size``, kept uint8."""
    if split.images.shape[-2:] == (size, size):
        return split
    out = []
    for chunk in split.images.split(4096):
        resized = F.interpolate(chunk.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out.append(resized.round().clamp_(0, 255).to(torch.uint8))
    return ImageSplit(torch.cat(out), split.labels)


def stratified_holdout(labels: torch.Tensor, fraction: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices into (keep, holdout), ``fraction`` of every class held out.

    The seed is fixed (not the run's seed) so every run of a sweep tunes on the same split.
    """
    generator = torch.Generator().manual_seed(seed)
    keep, hold = [], []
    for cls in labels.unique(sorted=True):
        idx = (labels == cls).nonzero().flatten()
        idx = idx[torch.randperm(idx.numel(), generator=generator)]
        n_hold = int(round(fraction * idx.numel()))
        hold.append(idx[:n_hold])
        keep.append(idx[n_hold:])
    return torch.cat(keep).sort().values, torch.cat(hold).sort().values
