"""Tiny ImageNet and ImageNet trees in their real layouts, written as real JPEG files.

Odd on purpose: file names with spaces, unicode and odd suffix case, one greyscale JPEG,
one CMYK JPEG, images at sizes other than the model's; optionally a val image whose
annotation line is missing. Class c carries a learnable tint (as tests/fake_data.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

WNIDS = ("n01443537", "n01629819", "n02124075")


def _image(rng: np.random.Generator, label: int, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    pixels = rng.integers(0, 90, size=(h, w, 3), dtype=np.int64)
    pixels[..., label % 3] += 120
    return pixels.clip(0, 255).astype(np.uint8)


def _save(array: np.ndarray, path: Path, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(array)
    if mode == "L":
        img = img.convert("L")
    elif mode == "CMYK":
        img = img.convert("CMYK")
    img.save(path, format="JPEG", quality=90)


def _name(i: int, stem: str) -> str:
    odd = [f"{stem}_{i}.JPEG", f"{stem} {i} (copy).jpeg", f"{stem}_é{i}.JPG", f"{stem}_{i}.jpg"]
    return odd[i % len(odd)]


def write_tiny_imagenet(root: Path, wnids=WNIDS, train_per_class: int = 8, val_per_class: int = 3,
                        missing_annotation: bool = False, nested: bool = True, seed: int = 0) -> Path:
    """The official tiny-imagenet-200 layout under ``root`` (inside ``tiny-imagenet-200/`` if ``nested``)."""
    rng = np.random.default_rng(seed)
    base = Path(root) / "tiny-imagenet-200" if nested else Path(root)
    base.mkdir(parents=True, exist_ok=True)
    (base / "wnids.txt").write_text("".join(f"{w}\n" for w in reversed(wnids)))  # not sorted, as the original
    for c, wnid in enumerate(wnids):
        folder = base / "train" / wnid
        boxes = []
        for i in range(train_per_class):
            mode = "L" if (c, i) == (0, 1) else "CMYK" if (c, i) == (1, 2) else "RGB"
            size = (64, 64) if i != 3 else (80, 56)  # one image not at 64 px
            name = _name(i, wnid)
            _save(_image(rng, c, size), folder / "images" / name, mode)
            boxes.append(f"{name}\t0\t0\t63\t63\n")
        (folder / f"{wnid}_boxes.txt").write_text("".join(boxes))
    lines = []
    for i in range(val_per_class * len(wnids)):
        c = i % len(wnids)
        name = f"val_{i}.JPEG"
        _save(_image(rng, c, (64, 64)), base / "val" / "images" / name, "L" if i == 4 else "RGB")
        lines.append(f"{name}\t{wnids[c]}\t1\t2\t60\t61\n")
    if missing_annotation:
        lines.pop(1)
    (base / "val" / "val_annotations.txt").write_text("".join(lines))
    (base / "test" / "images").mkdir(parents=True, exist_ok=True)  # unlabelled in the original: never read
    return Path(root)


def write_imagenet(root: Path, wnids=WNIDS, train_per_class: int = 8, val_per_class: int = 3,
                   sizes=((96, 80), (120, 150), (64, 64)), seed: int = 0) -> Path:
    """``root/{train,val}/<wnid>/*.JPEG`` at several sizes, one greyscale and one CMYK JPEG."""
    rng = np.random.default_rng(seed)
    for split, per_class in (("train", train_per_class), ("val", val_per_class)):
        for c, wnid in enumerate(wnids):
            for i in range(per_class):
                mode = "L" if (split, c, i) == ("train", 0, 1) else "CMYK" if (split, c, i) == ("train", 2, 0) \
                    else "RGB"
                _save(_image(rng, c, sizes[i % len(sizes)]), Path(root) / split / wnid / _name(i, wnid), mode)
    return Path(root)
