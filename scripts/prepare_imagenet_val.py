"""Sort the official flat ImageNet-1k validation folder into ``val/<wnid>/`` class folders.

The official ``ILSVRC2012_img_val.tar`` unpacks to 50,000 files ``ILSVRC2012_val_00000001.JPEG``
... in one folder; ``dataset=imagenet`` (timm's folder reader) needs them by class, like train/.
Labels come from one of:

* Kaggle's ``LOC_val_solution.csv`` (``ImageId,PredictionString``: the first wnid of the
  prediction string is the class)::

      python scripts/prepare_imagenet_val.py data/imagenet/val LOC_val_solution.csv

* the devkit's ``ILSVRC2012_validation_ground_truth.txt`` (ILSVRC2012 ids 1..1000, one line per
  image in file order) with the devkit's ``meta.mat`` (id -> wnid; needs scipy)::

      python scripts/prepare_imagenet_val.py data/imagenet/val ILSVRC2012_validation_ground_truth.txt \\
          --meta ILSVRC2012_devkit_t12/data/meta.mat

* a plain text file, ``<file name> <wnid>`` per line (the wnid last; what valprep.sh-style scripts use).

Files are moved (``--copy`` copies instead); ``--dry-run`` only reports. It refuses, before
touching anything, a label file that misses an image of the folder or names an image that is
not there, unless ``--allow-missing``. Running it again on a sorted folder does nothing.
With ``--train`` (the sorted train/ folder) it also checks that val/ gets exactly train's classes.
"""

from __future__ import annotations

import argparse
import csv
import re
import shutil
import sys
from pathlib import Path

IMAGE = re.compile(r".*\.(jpe?g|png)$", re.IGNORECASE)
WNID = re.compile(r"^n\d{8}$")


def read_labels(labels: Path, images: list[str], meta: Path | None) -> dict[str, str]:
    """file name -> wnid, from any of the three formats."""
    text = labels.read_text(encoding="utf-8", errors="replace")
    first = text.splitlines()[0] if text.strip() else ""
    if first.replace(" ", "").lower().startswith("imageid,predictionstring"):
        out = {}
        for row in csv.DictReader(text.splitlines()):
            stem, prediction = row["ImageId"].strip(), row["PredictionString"].split()
            if not prediction or not WNID.match(prediction[0]):
                raise SystemExit(f"error: {labels}: no wnid for {stem!r} ({row['PredictionString']!r})")
            out[stem] = prediction[0]
        by_stem = {Path(name).stem: name for name in images}
        return {by_stem.get(stem, f"{stem}.JPEG"): wnid for stem, wnid in out.items()}
    if meta is not None:
        ids = [int(line) for line in text.split()]
        wnid_of = _meta_wnids(meta)
        ordered = sorted(name for name in images if name.startswith("ILSVRC2012_val_"))
        if len(ordered) != len(ids):
            raise SystemExit(f"error: {labels} has {len(ids)} labels for {len(ordered)} ILSVRC2012_val_* images")
        return {name: wnid_of[i] for name, i in zip(ordered, ids)}
    out = {}
    for number, line in enumerate(text.splitlines(), 1):
        parts = line.strip().rsplit(maxsplit=1)  # the wnid is the last word: file names may hold spaces
        if not parts:
            continue
        if len(parts) < 2 or not WNID.match(parts[1]):
            raise SystemExit(f"error: {labels}:{number}: expected '<file> <wnid>', got {line!r} "
                             "(for the devkit's ground-truth ids add --meta meta.mat)")
        out[Path(parts[0]).name] = parts[1]
    return out


def _meta_wnids(meta: Path) -> dict[int, str]:
    from scipy.io import loadmat

    synsets = loadmat(str(meta), squeeze_me=True)["synsets"]
    return {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets if int(s["ILSVRC2012_ID"]) <= 1000}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("val_dir", type=Path, help="the flat validation folder (becomes val/<wnid>/...)")
    parser.add_argument("labels", type=Path, help="LOC_val_solution.csv, the devkit ground truth or '<file> <wnid>'")
    parser.add_argument("--meta", type=Path, help="the devkit's meta.mat (with the ground-truth ids file)")
    parser.add_argument("--train", type=Path, help="the sorted train/ folder: check val gets the same classes")
    parser.add_argument("--copy", action="store_true", help="copy instead of move")
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--allow-missing", action="store_true", help="leave unlabelled images where they are")
    args = parser.parse_args(argv)

    if not args.val_dir.is_dir():
        print(f"error: {args.val_dir} is not a folder", file=sys.stderr)
        return 2
    flat = sorted(p.name for p in args.val_dir.iterdir() if p.is_file() and IMAGE.match(p.name))
    sorted_already = sum(1 for d in args.val_dir.iterdir() if d.is_dir() and WNID.match(d.name))
    if not flat:
        print(f"nothing to do: no images directly in {args.val_dir} ({sorted_already} class folders)")
        return 0
    labels = read_labels(args.labels, flat, args.meta)
    unlabelled = [name for name in flat if name not in labels]
    if unlabelled and not args.allow_missing:
        print(f"error: {len(unlabelled)} image(s) have no label in {args.labels}, e.g. {unlabelled[0]}; nothing was "
              "moved (--allow-missing leaves them in place)", file=sys.stderr)
        return 1
    classes = {labels[name] for name in flat if name in labels}
    if args.train is not None:
        train_classes = {d.name for d in args.train.iterdir() if d.is_dir()}
        if classes - train_classes:
            print(f"error: val classes not in {args.train}: {sorted(classes - train_classes)[:5]}", file=sys.stderr)
            return 1
    move = shutil.copy2 if args.copy else shutil.move
    for name in flat:
        if name not in labels:
            continue
        target = args.val_dir / labels[name] / name
        if args.dry_run:
            continue
        target.parent.mkdir(exist_ok=True)
        move(str(args.val_dir / name), str(target))
    verb = "would sort" if args.dry_run else ("copied" if args.copy else "moved")
    print(f"{verb} {len(flat) - len(unlabelled)} images into {len(classes)} class folders under {args.val_dir}"
          + (f"; {len(unlabelled)} unlabelled left in place" if unlabelled else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
