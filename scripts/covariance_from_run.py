"""Write the empirical covariance of a finished run's depthwise filters (for init=dw_covariance_transfer),
and optionally the covariance figures.

    python scripts/covariance_from_run.py runs/<run dir> --out results/conv_proxy_covariance.pt
    python train.py ... init=dw_covariance_transfer init.path=results/conv_proxy_covariance.pt

The file holds, per depthwise layer of the run's final checkpoint (in depth order), the k^2 x k^2
covariance of its filters with the channels as samples, the mean filter and the channel count
(a few KB; ``torch.load(weights_only=True)`` reads it). Depthwise filters are those of the depthwise convs
(``groups == in_channels == out_channels > 1``) of the model the run's config.yaml describes, so a dense conv
on a 1-channel input, whose weight has the same (C, 1, kh, kw) shape, is never taken for one.

``--figures DIR`` also draws, for the run's model: k^2 x k^2 heat maps of the closed-form target
(``--sigma-first/--sigma-last``), of filters sampled from it, and of the learned covariance, per
depth (``<prefix>_covariance.png``), and a grid of sampled and learned filters per depth
(``<prefix>_filters.png``), PNG and PDF. Covariances are shown divided by their mean diagonal (structure,
not scale). ``scripts/make_figures.py`` draws the same figures, with the guard against replacing
committed figures made from other inputs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mimetic.analysis.conv_figures import conv_figures_stamp, draw_conv_figures
from mimetic.errors import MimeticError
from mimetic.init import DwCovarianceOptions, learned_covariances, save_covariances
from mimetic.runtime.checkpoint import load
from mimetic.train.source_run import run_source_model


def _model_state(run_dir: Path) -> dict:
    path = run_dir / "checkpoint.pt"
    if not path.is_file():
        raise MimeticError(f"{run_dir} has no checkpoint.pt: point at a run directory written by train.py")
    return load(path)["model"]


def figures(run_dir: Path, state: dict, out_dir: Path, prefix: str, sigma_first: float,
            sigma_last: float) -> list[Path]:
    """The two depthwise figures (drawn by mimetic.analysis.conv_figures, as make_figures.py draws them)."""
    paths = [out_dir / f"{prefix}_covariance.png", out_dir / f"{prefix}_filters.png"]
    stamp = conv_figures_stamp(run_dir, state, sigma_first, sigma_last)
    draw_conv_figures(run_dir, state, *paths, stamp, sigma_first, sigma_last)
    return paths


def main(argv: list[str] | None = None) -> int:
    defaults = DwCovarianceOptions()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a finished run directory (holds checkpoint.pt and DONE)")
    parser.add_argument("--out", type=Path, default=None, help="covariance file (default: <run_dir>/dw_covariance.pt)")
    parser.add_argument("--allow-unfinished", action="store_true", help="accept a run without DONE")
    parser.add_argument("--figures", type=Path, default=None, help="also draw the covariance figures into this folder")
    parser.add_argument("--prefix", default="conv", help="figure file prefix (default: conv)")
    parser.add_argument("--sigma-first", type=float, default=defaults.sigma_first)
    parser.add_argument("--sigma-last", type=float, default=defaults.sigma_last)
    args = parser.parse_args(argv)
    try:
        run_dir = args.run_dir
        if not (run_dir / "DONE").exists() and not args.allow_unfinished:
            raise MimeticError(f"{run_dir} is not a finished run (no DONE); pass --allow-unfinished to use its "
                               "latest checkpoint anyway")
        state = _model_state(run_dir)
        source = run_source_model(run_dir, state)  # the model its config.yaml describes: which convs are depthwise
        layers = learned_covariances(state, skeleton=None if source is None else source.model, label=str(run_dir))
        out = save_covariances(layers, args.out or run_dir / "dw_covariance.pt", source=str(run_dir))
        print(f"wrote {out}: {len(layers)} depthwise layers "
              f"({', '.join(f'{c.name} {c.kernel[0]}x{c.kernel[1]}' for c in layers)})")
        if args.figures is not None:
            for path in figures(run_dir, state, args.figures, args.prefix, args.sigma_first, args.sigma_last):
                print(f"wrote {path}")
    except MimeticError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
