"""Read image datasets from their real on-disk formats into uint8 tensors.

Small vision datasets fit in memory (CIFAR-10 is 150 MB as uint8), so every reader
returns the whole split as one ``(N, 3, H, W)`` uint8 tensor plus int64 labels; the
training loop then batches and augments them on the accelerator.

Readers parse the files themselves (torchvision is used only to download), so files a
test writes in the same format read exactly like the real ones; the real files' md5
sums are still checked unless ``dataset.verify_checksums=false``.
"""

from __future__ import annotations

import hashlib
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


def load_cifar(name: str, root: Path, *, download: bool, verify_checksums: bool) -> RawDataset:
    spec = _CIFAR[name]
    folder = root / spec["folder"]
    files = spec["train"] + spec["test"] + [spec["meta"]]
    if download and not all((folder / f).is_file() for f in files):
        tv = _torchvision_cifar(name)
        _try_download(spec["title"], root, lambda: tv(str(root), train=True, download=True))
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        raise _missing(spec["title"], root, [f"{spec['folder']}/{f}" for f in files], _download_hint(name, root))
    if verify_checksums:
        tv = _torchvision_cifar(name)
        for filename, md5 in tv.train_list + tv.test_list + [[tv.meta["filename"], tv.meta["md5"]]]:
            _verify(folder / filename, md5, _download_hint(name, root).splitlines()[0].strip())

    def read(batches: list[str]) -> ImageSplit:
        images, labels = [], []
        for batch in batches:
            entry = _unpickle(folder / batch)
            if "data" not in entry or spec["label_key"] not in entry:
                raise DatasetError(
                    f"{folder / batch} lacks 'data' or '{spec['label_key']}': not a {spec['title']} batch"
                )
            data = np.asarray(entry["data"], dtype=np.uint8)
            if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
                raise DatasetError(f"{folder / batch}: data has shape {data.shape}, expected (N, 3072)")
            images.append(data.reshape(-1, 3, 32, 32))
            labels.extend(entry[spec["label_key"]])
        return ImageSplit(_to_chw_uint8(np.concatenate(images)), torch.tensor(labels, dtype=torch.int64))

    classes = [str(c) for c in _unpickle(folder / spec["meta"])[spec["names_key"]]]
    return RawDataset(read(spec["train"]), read(spec["test"]), classes)


# --------------------------------------------------------------------------- SVHN
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
    if not all((root / f).is_file() for f in files.values()):
        raise _missing("SVHN", root, list(files.values()), _download_hint("svhn", root))

    def read(split: str) -> ImageSplit:
        path = root / files[split]
        if verify_checksums:
            _verify(path, split_list[split][2], _download_hint("svhn", root).splitlines()[0].strip())
        try:
            mat = loadmat(str(path))
        except Exception as err:
            raise DatasetError(f"{path} is not a readable .mat file ({err}); delete it and download again") from err
        x, y = mat.get("X"), mat.get("y")
        if x is None or y is None or x.ndim != 4 or x.shape[2] != 3:
            raise DatasetError(f"{path}: expected 'X' of shape (32, 32, 3, N) and 'y' of shape (N, 1)")
        images = _to_chw_uint8(np.transpose(x, (3, 2, 0, 1)))
        labels = torch.from_numpy(y.reshape(-1).astype(np.int64) % 10)  # SVHN stores digit 0 as label 10
        return ImageSplit(images, labels)

    return RawDataset(read("train"), read("test"), [str(i) for i in range(10)])


# --------------------------------------------------------------------------- image folders
def _read_image_tree(split_dir: Path, size: int) -> tuple[ImageSplit, list[str]]:
    from PIL import Image
    from torchvision.datasets import ImageFolder

    try:
        tree = ImageFolder(str(split_dir))
    except (FileNotFoundError, RuntimeError) as err:
        raise DatasetError(f"{split_dir}: {err}") from err
    images = np.empty((len(tree.samples), size, size, 3), dtype=np.uint8)
    for i, (path, _) in enumerate(tree.samples):
        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
                if img.size != (size, size):
                    img = img.resize((size, size), Image.BICUBIC)
                images[i] = np.asarray(img)
        except Exception as err:
            raise DatasetError(f"cannot read image {path}: {err}") from err
    labels = torch.tensor([label for _, label in tree.samples], dtype=torch.int64)
    return ImageSplit(_to_chw_uint8(images.transpose(0, 3, 1, 2)), labels), list(tree.classes)


def load_image_folder(root: Path, *, image_size: int) -> RawDataset:
    layout = "train/<class>/<image> and test/<class>/<image>"
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise DatasetError(
                f"image folder dataset not found: {root / split} does not exist. dataset.root must hold {layout} "
                f"(e.g. python -m zipfile -e ../shared/data/cifar10-jpeg-6k.zip /tmp/data, then "
                f"dataset.root=/tmp/data/cifar10-jpeg-6k)."
            )
    train, classes = _read_image_tree(root / "train", image_size)
    test, test_classes = _read_image_tree(root / "test", image_size)
    if classes != test_classes:
        raise DatasetError(
            f"{root}: train and test have different class folders "
            f"({sorted(set(classes) ^ set(test_classes))} appear in only one); both must hold the same classes"
        )
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
