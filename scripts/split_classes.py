"""Split an ImageFolder tree (``train/<class>/``, ``test/<class>/``) into two by class.

The CPU "gap to pre-trained" experiment (issue 14) pre-trains on some classes and transfers
the attention weights to a model trained on the others. Splitting by class keeps the
transfer honest: no image of the target set, train or test, is in the source set.

    python scripts/split_classes.py data/cifar10-jpeg-6k
    # -> data/cifar10-jpeg-6k-source  (the first half of the sorted class names, train + test)
    #    data/cifar10-jpeg-6k-target  (the other half)

On the CIFAR-10 slice: source = airplane, automobile, bird, cat, deer; target = dog, frog,
horse, ship, truck (2,500 train + 500 test images each). Files are copied (a few MB), so
each tree is self-contained and its data fingerprint is that of its own files. ``--first``
picks how many classes go to the source (default: half).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

SPLITS = ("train", "test")


def class_names(root: Path) -> list[str]:
    per_split = [sorted(p.name for p in (root / s).iterdir() if p.is_dir()) for s in SPLITS]
    if per_split[0] != per_split[1]:
        raise SystemExit(f"{root}: train/ and test/ hold different class folders; expected the same classes in both")
    return per_split[0]


def copy_classes(root: Path, out: Path, classes: list[str]) -> int:
    count = 0
    for split in SPLITS:
        for name in classes:
            dest = out / split / name
            dest.mkdir(parents=True, exist_ok=True)
            for file in sorted((root / split / name).iterdir()):
                if file.is_file():
                    shutil.copy2(file, dest / file.name)
                    count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="ImageFolder tree with train/ and test/")
    parser.add_argument("--first", type=int, default=None, help="classes in the source half (default: half)")
    args = parser.parse_args(argv)
    root = args.root.expanduser()
    if not all((root / s).is_dir() for s in SPLITS):
        raise SystemExit(f"{root} needs train/ and test/ class folders (e.g. unpack cifar10-jpeg-6k.zip into data/)")
    classes = class_names(root)
    first = len(classes) // 2 if args.first is None else args.first
    if not 0 < first < len(classes):
        raise SystemExit(f"--first={first}: must leave at least one class on each side of {len(classes)}")
    for suffix, part in (("source", classes[:first]), ("target", classes[first:])):
        out = root.with_name(f"{root.name}-{suffix}")
        if out.exists():
            raise SystemExit(f"{out} exists; remove it first (rm -r {out}) to rebuild it")
        n = copy_classes(root, out, part)
        print(f"{out}: {', '.join(part)} ({n} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
