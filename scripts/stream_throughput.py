"""Images/s that one loader worker decodes and augments (random-resized crop + flip at 224, uint8).

    python scripts/stream_throughput.py --make /tmp/inet-bench --images 1500   # writes a tree once
    nice -n 10 python scripts/stream_throughput.py /tmp/inet-bench --seconds 30

Runs the training transform of dataset=imagenet in this process (what one worker does),
so images/s here x workers is what a node's loader can deliver (minus collate, small).
--make writes ImageNet-like JPEGs: 500x375 and similar sizes, smooth content (natural
images decode faster than noise), quality 90 (~ImageNet's mean file size of ~110 kB).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch


def make_tree(root: Path, images: int, classes: int = 10, seed: int = 0) -> None:
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(seed)
    sizes = [(500, 375), (500, 333), (375, 500), (640, 480), (500, 400)]
    for i in range(images):
        w, h = sizes[i % len(sizes)]
        low = rng.integers(0, 256, size=(h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
        img = Image.fromarray(low).resize((w, h), Image.BICUBIC)
        detail = rng.normal(0, 12, size=(h, w, 3))
        img = Image.fromarray(np.clip(np.asarray(img) + detail, 0, 255).astype(np.uint8))
        img = img.filter(ImageFilter.GaussianBlur(0.6))
        # val/: the first image of every class, then every 11th round of classes, so that val/ has the class
        # folders train/ has (the imagenet loader refuses splits with different classes), whatever --images
        in_val = (i // classes) % 11 == 0
        for split in ("train", "val") if in_val else ("train",):
            folder = root / split / f"n{i % classes:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            img.save(folder / f"img_{i}.JPEG", quality=90)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, nargs="?", help="an ImageNet-like tree: train/<class>/, val/<class>/")
    parser.add_argument("--make", type=Path, help="write a benchmark tree here and exit")
    parser.add_argument("--images", type=int, default=1500)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args(argv)
    if args.make is None and args.root is None:
        parser.error("give the tree to read (ROOT), or --make DIR to write one first")
    if args.images < 1 or args.seconds <= 0 or args.size < 1:
        parser.error("--images, --seconds and --size must be > 0")
    if args.make:
        try:
            make_tree(args.make, args.images)
        except OSError as err:
            print(f"error: cannot write the tree in {args.make} ({err.strerror or err}); give --make a writable "
                  "folder", file=sys.stderr)
            return 2
        files = list(args.make.rglob("*.JPEG"))
        print(f"wrote {len(files)} JPEGs, mean {np.mean([f.stat().st_size for f in files]) / 1e3:.0f} kB")
        return 0
    import os

    os.environ["MIMETIC_DATA_WORKERS"] = "0"
    torch.set_num_threads(1)
    from mimetic.data import DataRequest, build_data
    from mimetic.data.imagenet import ImageNet
    from mimetic.errors import MimeticError

    try:
        data = build_data(ImageNet(name="imagenet", root=str(args.root)), DataRequest(
            image_size=args.size, batch_size=1, eval_batch_size=1, device=torch.device("cpu")))
    except MimeticError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    samples = data.train.dataset
    order, seeds = data.train.plan(torch.Generator().manual_seed(0))
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < args.seconds:
        i = int(order[n % len(order)])
        image, _ = samples[(i, int(seeds[i]))]
        assert image.dtype in (np.uint8, torch.uint8) and tuple(image.shape) == (3, args.size, args.size), image.shape
        n += 1
    rate = n / (time.perf_counter() - start)
    print(f"{rate:.0f} images/s per worker ({n} images in {args.seconds:.0f} s, one core, {args.size} px, "
          f"random-resized crop + flip, uint8)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
