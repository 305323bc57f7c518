"""Download a dataset into the layout train.py reads (needs network access).

    python scripts/prepare_data.py cifar10 --root data/cifar10
    python scripts/prepare_data.py svhn --root data/svhn
    python scripts/prepare_data.py cifar10-jpeg-6k      # CIFAR-10 into data/cifar10, then the
                                                         # 6,000-image JPEG slice data/cifar10-jpeg-6k

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
    parser.add_argument("dataset", choices=["cifar10", "cifar100", "svhn", "cifar10-jpeg-6k"])
    parser.add_argument("--root", help="target folder (default: data/<dataset>)")
    parser.add_argument("--cifar10-root", default="data/cifar10",
                        help="for cifar10-jpeg-6k: where the official CIFAR-10 goes (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.dataset == "cifar10-jpeg-6k":
        return _cifar_slice(Path(args.cifar10_root), Path(args.root or "data/cifar10-jpeg-6k"))
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


if __name__ == "__main__":
    sys.exit(main())
