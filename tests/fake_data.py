"""Write small datasets in the real on-disk formats (no network in tests).

Images carry a learnable signal (class-dependent colour and stripe) so that short
training runs can be checked to learn something.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image


def class_images(n: int, num_classes: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, size, size, 3) uint8 images and their labels; class c has its own tint and stripe."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % num_classes
    rng.shuffle(labels)
    images = rng.integers(0, 96, size=(n, size, size, 3), dtype=np.int64)
    for i, c in enumerate(labels):
        images[i, :, :, c % 3] += 80 + 40 * (c // 3 % 2)
        row = (c * size) // num_classes
        images[i, row : row + max(1, size // 8)] += 60
    return images.clip(0, 255).astype(np.uint8), labels.astype(np.int64)


def write_cifar10(root: Path, per_batch: int = 20, test: int = 40, seed: int = 0) -> Path:
    """The layout torchvision downloads: root/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)

    def dump(name: str, images: np.ndarray, labels: np.ndarray) -> None:
        entry = {
            "batch_label": name,
            "labels": labels.tolist(),
            "data": images.transpose(0, 3, 1, 2).reshape(len(images), -1),  # (N, 3072), channel-major
            "filenames": [f"img_{i}.png" for i in range(len(images))],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f, protocol=2)

    for b in range(1, 6):
        dump(f"data_batch_{b}", *class_images(per_batch, 10, seed=seed + b))
    dump("test_batch", *class_images(test, 10, seed=seed + 100))
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": classes, "num_cases_per_batch": per_batch, "num_vis": 3072}, f, protocol=2)
    return Path(root)


def write_cifar100(root: Path, train: int = 200, test: int = 100) -> Path:
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", train), ("test", test)):
        images, labels = class_images(n, 100, seed=len(name))
        entry = {"data": images.transpose(0, 3, 1, 2).reshape(n, -1), "fine_labels": labels.tolist(),
                 "coarse_labels": (labels // 5).tolist()}
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f, protocol=2)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"class{i}" for i in range(100)],
                     "coarse_label_names": [f"super{i}" for i in range(20)]}, f, protocol=2)
    return Path(root)


def write_svhn(root: Path, train: int = 60, test: int = 30) -> Path:
    from scipy.io import savemat

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", train), ("test", test)):
        images, labels = class_images(n, 10, seed=len(name))
        # SVHN stores (32, 32, 3, N) and the digit 0 as label 10.
        savemat(str(root / f"{name}_32x32.mat"),
                {"X": images.transpose(1, 2, 3, 0), "y": np.where(labels == 0, 10, labels)[:, None]})
    return root


def write_image_folder(root: Path, classes=("cat", "dog", "ship"), train_per_class: int = 12,
                       test_per_class: int = 4, size: tuple[int, int] = (40, 30), seed: int = 0) -> Path:
    """root/{train,test}/<class>/<n>.png at a size other than the model's input."""
    root = Path(root)
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        images, labels = class_images(per_class * len(classes), len(classes), size=max(size),
                                      seed=seed + (split == "test"))
        for i, (img, label) in enumerate(zip(images, labels)):
            folder = root / split / classes[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).resize(size).save(folder / f"{i:04d}.png")
    return root


def png16_bytes(array: np.ndarray) -> bytes:
    """A real 16-bit PNG (greyscale, grey+alpha, RGB or RGBA by the number of channels).

    Written by hand (zlib + CRCs) because Pillow cannot save 16-bit colour PNGs.
    """
    import struct
    import zlib

    array = np.asarray(array, dtype=">u2")
    if array.ndim == 2:
        array = array[..., None]
    height, width, channels = array.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    raw = b"".join(b"\0" + array[y].tobytes() for y in range(height))  # filter type 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def write_png16(path: Path, array: np.ndarray) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png16_bytes(array))
    return path
