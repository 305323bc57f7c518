"""Write the empirical covariance of a finished run's depthwise filters (for init=dw_covariance_transfer),
and optionally the covariance figures.

    python scripts/covariance_from_run.py runs/<run dir> --out results/conv_proxy_covariance.pt
    python train.py ... init=dw_covariance_transfer init.path=results/conv_proxy_covariance.pt

The file holds, per depthwise layer of the run's final checkpoint (in depth order), the k^2 x k^2
covariance of its filters with the channels as samples, the mean filter and the channel count
(a few KB; ``torch.load(weights_only=True)`` reads it). Depthwise filters are recognised by shape:
``*.weight`` of shape (C, 1, kh, kw), C > 1, kh*kw > 1.

``--figures DIR`` also draws, for the run's model: k^2 x k^2 heat maps of the closed-form target
(``--sigma-first/--sigma-last``), of filters sampled from it, and of the learned covariance, per
depth (``<prefix>_covariance.png``), and a grid of sampled and learned filters per depth
(``<prefix>_filters.png``). Covariances are shown divided by their mean diagonal (structure, not scale).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import yaml

from mimetic.errors import MimeticError
from mimetic.init.depthwise import (
    DwCovarianceOptions,
    covariances_from_state,
    depth_sigmas,
    depthwise_covariance_,
    empirical_covariance,
    find_depthwise_convs,
    gaussian_covariance,
    save_covariances,
)
from mimetic.train.checkpoint import load


def _model_state(run_dir: Path) -> dict:
    path = run_dir / "checkpoint.pt"
    if not path.is_file():
        raise MimeticError(f"{run_dir} has no checkpoint.pt: point at a run directory written by train.py")
    return load(path)["model"]


def _fresh_model(run_dir: Path, state: dict):
    """The run's architecture, freshly built (its default init), from the run's config.yaml."""
    from mimetic.models import DataSpec, build_model
    from mimetic.train.config import load_config

    raw = yaml.safe_load((run_dir / "config.yaml").read_text())
    raw.pop("_run", None)
    cfg = load_config(raw)
    heads = [v for k, v in state.items() if k.endswith("weight") and v.dim() == 2]
    spec = DataSpec("classification", num_classes=heads[-1].shape[0] if heads else 10)
    torch.manual_seed(0)
    return build_model(cfg.model, spec)


def _normalised(cov: torch.Tensor) -> torch.Tensor:
    return cov / torch.diagonal(cov).mean()


def figures(run_dir: Path, state: dict, out_dir: Path, prefix: str, sigma_first: float,
            sigma_last: float) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    learned = covariances_from_state(state, str(run_dir))
    model = _fresh_model(run_dir, state)
    layers = find_depthwise_convs(model)
    depthwise_covariance_(model, sigma_first=sigma_first, sigma_last=sigma_last,
                          generator=torch.Generator().manual_seed(0))
    sigmas = depth_sigmas(len(layers), sigma_first, sigma_last)
    out_dir.mkdir(parents=True, exist_ok=True)

    fig, axes = plt.subplots(len(layers), 3, figsize=(7.5, 2.5 * len(layers)), squeeze=False)
    for row, (layer, sigma, lc) in enumerate(zip(layers, sigmas, learned)):
        mats = [gaussian_covariance(layer.kernel, sigma), _normalised(empirical_covariance(layer.filters())),
                _normalised(lc.cov)]
        titles = [f"target, sigma={sigma:.2f}", f"sampled ({layer.channels} ch)", "learned (trained run)"]
        for col, (mat, title) in enumerate(zip(mats, titles)):
            ax = axes[row, col]
            ax.imshow(mat.numpy(), cmap="RdBu_r", vmin=-1, vmax=1)
            ax.set_title(f"layer {row}: {title}", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"depthwise k^2 x k^2 covariances / mean diagonal\n{run_dir.name}", fontsize=8)
    fig.tight_layout()
    cov_path = out_dir / f"{prefix}_covariance.png"
    fig.savefig(cov_path, dpi=110)
    plt.close(fig)

    n = 8
    fig, axes = plt.subplots(2 * len(layers), n, figsize=(n * 0.9, 2 * len(layers) * 0.95), squeeze=False)
    learned_w = [v for k, v in state.items() if k in {f"{c.name}.weight" for c in learned}]
    for row, (layer, w) in enumerate(zip(layers, learned_w)):
        for kind, bank in ((0, layer.module.weight.detach()), (1, w)):
            for col in range(n):
                ax = axes[2 * row + kind, col]
                f = bank[col, 0]
                lim = f.abs().max().item() or 1.0
                ax.imshow(f.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)
                ax.set_xticks([])
                ax.set_yticks([])
            axes[2 * row + kind, 0].set_ylabel(f"L{row} {'sampled' if kind == 0 else 'learned'}", fontsize=6)
    fig.suptitle(f"depthwise filters per depth: dw_covariance samples (sigma {sigma_first}->{sigma_last}) "
                 "and the trained run's", fontsize=7)
    fig.tight_layout()
    filt_path = out_dir / f"{prefix}_filters.png"
    fig.savefig(filt_path, dpi=110)
    plt.close(fig)
    return [cov_path, filt_path]


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
        layers = covariances_from_state(state, str(run_dir))
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
