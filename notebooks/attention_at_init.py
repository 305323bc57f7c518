# %% [markdown]
# # Attention maps at step 0: default vs mimetic init
#
# Headless exploration (run as a script or open as a percent-format notebook). The committed
# figure results/figures/attention_at_init.png is exactly what this gives on the first 8 test
# images of the CIFAR-10 JPEG slice (unpack it once, as README says, into data/):
#
#     python -m zipfile -e ../shared/data/cifar10-jpeg-6k.zip data/
#     python notebooks/attention_at_init.py --images data/cifar10-jpeg-6k \
#         --out results/figures/attention_at_init.png
#
# By default it writes outputs/figures/attention_at_init.png and .pdf (not committed); the drawing
# is mimetic.analysis.attention_figures, which scripts/make_figures.py also uses for trained runs. The PNG carries a
# stamp of its inputs (the image tensor, layers, seeds), and an existing file is replaced only
# when its stamp is the same, or with --overwrite: a run on other inputs (--random-inputs, other
# images) never replaces the committed figure by accident.
#
# For the paper's ViT-Tiny (fixed sin-cos PE), plots where the centre patch attends in a
# few layers, averaged over heads and a batch of inputs, for both inits. Mimetic init
# should already look local (a bright spot around the query), default init uniform.

# %%
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import torch

from mimetic.analysis.attention_figures import image_batch, plot_attention_maps
from mimetic.analysis.outputs import decide_figure, fingerprint, refusal
from mimetic.errors import MimeticError

DEFAULT_IMAGES = Path("data/cifar10-jpeg-6k")
DEFAULT_OUT = Path("outputs/figures/attention_at_init.png")
SEED = 0


def inputs(image_folder: Path | None, n: int = 8) -> torch.Tensor:
    """The first ``n`` test images of an image folder (normalised per batch), or random ones."""
    if image_folder is None:
        return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(SEED))
    return image_batch(image_folder, n, image_size=32, normalise="batch")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Step-0 attention maps of ViT-Tiny, default vs mimetic init.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"PNG to write (default: {DEFAULT_OUT})")
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES,
                        help=f"an image-folder dataset root; its first test images are the inputs (default: "
                             f"{DEFAULT_IMAGES}, the CIFAR-10 slice the committed figure uses)")
    parser.add_argument("--random-inputs", action="store_true", help="Gaussian noise images instead of --images")
    parser.add_argument("--n", type=int, default=8, help="number of input images (default: 8)")
    parser.add_argument("--layers", type=int, nargs="+", default=[0, 5, 11])
    parser.add_argument("--overwrite", action="store_true", help="replace --out even if made from other inputs")
    return parser.parse_args(argv)


def figure(x: torch.Tensor, layers: list[int], out: Path, stamp: str) -> None:
    """Draw the 2 x len(layers) panels for inputs ``x`` into ``out`` (the same weights for both rows but attention)."""
    from mimetic.init import mimetic_attention_
    from mimetic.models import DataSpec, ViTTiny, build_vit

    spec = DataSpec("classification", num_classes=10)
    torch.manual_seed(SEED)
    default = build_vit(ViTTiny(name="vit_tiny"), spec)  # the paper's ViT-Tiny
    mimetic = build_vit(ViTTiny(name="vit_tiny"), spec)
    mimetic.load_state_dict(default.state_dict())
    mimetic_attention_(mimetic, generator=torch.Generator().manual_seed(SEED))
    plot_attention_maps([("default", default), ("mimetic", mimetic)], x, layers, out, stamp,
                        "Where the centre patch (red box) attends at step 0 (ViT-Tiny, sin-cos PE)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if not args.random_inputs and not args.images.is_dir():
            raise MimeticError(
                f"{args.images} not found: the figure's inputs are the first {args.n} test images of an image "
                "folder. Unpack the CIFAR-10 slice with `python -m zipfile -e ../shared/data/cifar10-jpeg-6k.zip "
                "data/`, pass --images <folder with train/ and test/>, or use --random-inputs"
            )
        x = inputs(None if args.random_inputs else args.images, args.n)
        stamp = fingerprint({"notebook": "attention_at_init", "inputs": hashlib.sha256(x.numpy().tobytes()).hexdigest(),
                             "shape": list(x.shape), "layers": args.layers, "seed": SEED})
        decision = decide_figure(args.out, stamp, args.overwrite)
        if decision.refused:
            raise refusal([decision], f"the default --out {DEFAULT_OUT}, or another --out")
        figure(x, args.layers, args.out, stamp)
    except MimeticError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    source = "random inputs" if args.random_inputs else f"the first {args.n} test images of {args.images}"
    how = {"new": "new file", "same inputs": "replaced a figure made from the same inputs",
           "overwrite": "replaced, --overwrite"}[decision.action]
    print(f"wrote {args.out} ({how}; from {source}, layers {' '.join(map(str, args.layers))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
