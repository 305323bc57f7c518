"""Download a dataset into the layout train.py reads (needs network access).

    python scripts/prepare_data.py cifar10 --root data/cifar10
    python scripts/prepare_data.py svhn --root data/svhn

Run it once on a machine with internet (e.g. a cluster login node) before launching
jobs; compute nodes then only read. The image_folder and digits datasets need nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=["cifar10", "cifar100", "svhn"])
    parser.add_argument("--root", help="target folder (default: data/<dataset>)")
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
