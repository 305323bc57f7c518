"""Download a dataset into the layout train.py reads (needs network access).

    python scripts/prepare_data.py cifar10 --root data/cifar10
    python scripts/prepare_data.py svhn --root data/svhn
    python scripts/prepare_data.py cifar10-jpeg-6k      # CIFAR-10 into data/cifar10, then the
                                                         # 6,000-image JPEG slice data/cifar10-jpeg-6k
    python scripts/prepare_data.py wikitext103          # data/wikitext-103/wiki.{train,valid,test}.tokens

Run it once on a machine with internet (e.g. a cluster login node) before launching
jobs; compute nodes then only read. The image_folder and digits datasets need nothing.
``cifar10-jpeg-6k`` is the slice the proxy experiments train on (see
scripts/make_cifar_slice.py for its file list and how it matches the shared copy).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=["cifar10", "cifar100", "svhn", "cifar10-jpeg-6k", "wikitext103"])
    parser.add_argument("--root", help="target folder (default: data/<dataset>)")
    parser.add_argument("--cifar10-root", default="data/cifar10",
                        help="for cifar10-jpeg-6k: where the official CIFAR-10 goes (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.dataset == "cifar10-jpeg-6k":
        return _cifar_slice(Path(args.cifar10_root), Path(args.root or "data/cifar10-jpeg-6k"))
    if args.dataset == "wikitext103":
        return _wikitext103(Path(args.root or "data/wikitext-103"))
    root = Path(args.root or f"data/{args.dataset}")
    root.mkdir(parents=True, exist_ok=True)

    import torchvision.datasets as tvd

    try:
        if args.dataset == "svhn":
            for split in ("train", "test"):
                tvd.SVHN(str(root), split=split, download=True)
        else:
            cls = tvd.CIFAR10 if args.dataset == "cifar10" else tvd.CIFAR100
            for train in (True, False):
                cls(str(root), train=train, download=True)
    except Exception as err:  # network errors come in many types
        print(f"error: download failed ({err}). This needs internet access.", file=sys.stderr)
        return 1
    print(f"{args.dataset} ready in {root}; train with: python train.py dataset={args.dataset} dataset.root={root}")
    return 0


def _cifar_slice(cifar_root: Path, out: Path) -> int:
    """Official CIFAR-10 (downloaded unless present), then the JPEG slice built from it."""
    if not (cifar_root / "cifar-10-batches-py" / "batches.meta").is_file():
        status = main(["cifar10", "--root", str(cifar_root)])
        if status:
            return status
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import make_cifar_slice

    return make_cifar_slice.main(["--source", str(cifar_root), "--out", str(out), "--force"])


WIKITEXT103_URL = "https://wikitext.smerity.com/wikitext-103-v1.zip"  # the official archive (tokenized text)


def _wikitext103(root: Path) -> int:
    """The official WikiText-103 archive, its three ``wiki.*.tokens`` files unpacked into ``root``."""
    import hashlib
    import shutil
    import tempfile
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


if __name__ == "__main__":
    sys.exit(main())
