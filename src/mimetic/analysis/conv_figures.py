"""Depthwise-filter figures: k^2 x k^2 covariance heat maps and sampled vs learned filters, per depth.

For a ConvMixer-like model: the closed-form target covariance of ``init=dw_covariance``
(``sigma`` linear in depth), the empirical covariance of filters sampled from it, and the
empirical covariance of a trained run's filters (channels as samples). Covariances are divided
by their mean diagonal, so the panels show structure (how taps co-vary), not scale.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mimetic.analysis.figures import pyplot
from mimetic.analysis.outputs import save_figure


def _normalised(cov: torch.Tensor) -> torch.Tensor:
    return cov / torch.diagonal(cov).mean()


def _bare(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def sampled_model(model: nn.Module, sigma_first: float, sigma_last: float, seed: int = 0) -> nn.Module:
    """``model`` with its depthwise filters drawn by ``init=dw_covariance`` (in place; returned for chaining)."""
    from mimetic.init import depthwise_covariance_

    depthwise_covariance_(model, sigma_first=sigma_first, sigma_last=sigma_last,
                          generator=torch.Generator().manual_seed(seed))
    return model


def plot_covariances(sampled: nn.Module, trained_state: dict[str, torch.Tensor], path: Path, stamp: str,
                     sigma_first: float, sigma_last: float, source: str = "") -> None:
    """Rows: depthwise layers in depth order; columns: target, sampled (``sampled``'s filters), learned."""
    from mimetic.init.covariance import depth_sigmas, empirical_covariance, gaussian_covariance
    from mimetic.init.covariance_files import covariances_from_state
    from mimetic.init.depthwise import find_depthwise_convs

    plt = pyplot()
    layers = find_depthwise_convs(sampled)
    learned = covariances_from_state(trained_state, source)
    sigmas = depth_sigmas(len(layers), sigma_first, sigma_last)
    fig, axes = plt.subplots(len(layers), 3, figsize=(7.5, 2.5 * len(layers)), squeeze=False)
    try:
        for row, (layer, sigma, lc) in enumerate(zip(layers, sigmas, learned)):
            mats = [gaussian_covariance(layer.kernel, sigma), _normalised(empirical_covariance(layer.filters())),
                    _normalised(lc.cov)]
            titles = [f"target, sigma={sigma:.2f}", f"sampled ({layer.channels} ch)", "learned (trained run)"]
            for col, (mat, title) in enumerate(zip(mats, titles)):
                ax = axes[row, col]
                # nearest: one block per covariance entry, so a 9x9 kernel's 81x81 matrices stay small files
                ax.imshow(mat.numpy(), cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
                ax.set_title(f"layer {row}: {title}", fontsize=7)
                _bare(ax)
        fig.suptitle(f"depthwise k^2 x k^2 covariances / mean diagonal\n{source}", fontsize=8)
        fig.tight_layout()
        save_figure(fig, path, stamp, dpi=110 if len(layers) <= 4 else 80)
    finally:
        plt.close(fig)


def plot_filters(sampled: nn.Module, trained_state: dict[str, torch.Tensor], path: Path, stamp: str,
                 sigma_first: float, sigma_last: float, n: int = 8) -> None:
    """Per depth, two rows: ``n`` filters sampled by ``init=dw_covariance`` and the trained run's first ``n``."""
    from mimetic.init.covariance_files import depthwise_weights_in_state
    from mimetic.init.depthwise import find_depthwise_convs

    plt = pyplot()
    layers = find_depthwise_convs(sampled)
    learned = [w for _, w in depthwise_weights_in_state(trained_state)]
    fig, axes = plt.subplots(2 * len(layers), n, figsize=(n * 0.9, 2 * len(layers) * 0.95), squeeze=False)
    try:
        for row, (layer, w) in enumerate(zip(layers, learned)):
            for kind, bank in ((0, layer.module.weight.detach()), (1, w)):
                for col in range(n):
                    ax = axes[2 * row + kind, col]
                    f = bank[col, 0]
                    lim = f.abs().max().item() or 1.0  # each filter on its own symmetric scale
                    ax.imshow(f.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)
                    _bare(ax)
                axes[2 * row + kind, 0].set_ylabel(f"L{row} {'sampled' if kind == 0 else 'learned'}", fontsize=6)
        fig.suptitle(f"depthwise filters per depth: dw_covariance samples (sigma {sigma_first}->{sigma_last}) "
                     "and the trained run's", fontsize=7)
        fig.tight_layout()
        save_figure(fig, path, stamp, dpi=110)
    finally:
        plt.close(fig)


def conv_figures_stamp(run_dir: Path, state: dict[str, torch.Tensor], sigma_first: float, sigma_last: float) -> str:
    """What both figures are made from: the run's identity, its depthwise filters' bytes and the sigmas."""
    import hashlib

    from mimetic.analysis.outputs import fingerprint
    from mimetic.init.covariance_files import depthwise_weights_in_state
    from mimetic.runtime.rundir import RunDir

    digest = hashlib.sha256()
    for name, w in depthwise_weights_in_state(state):
        digest.update(name.encode())
        digest.update(w.detach().contiguous().cpu().numpy().tobytes())
    run = (RunDir(run_dir).read_config() or {}).get("_run") or {}
    return fingerprint({"figure": "depthwise", "run": run.get("run_key") or Path(run_dir).name,
                        "config_hash": run.get("config_hash"), "filters": digest.hexdigest(),
                        "sigmas": [sigma_first, sigma_last]})


def draw_conv_figures(run_dir: Path, state: dict[str, torch.Tensor], covariance_path: Path, filters_path: Path,
                      stamp: str, sigma_first: float, sigma_last: float) -> None:
    """Both figures for a trained run (``state``: its checkpoint's model weights), sampled from its architecture."""
    from mimetic.analysis.run_models import fresh_model

    sampled = sampled_model(fresh_model(run_dir), sigma_first, sigma_last)
    plot_covariances(sampled, state, covariance_path, stamp, sigma_first, sigma_last, source=Path(run_dir).name)
    plot_filters(sampled, state, filters_path, stamp, sigma_first, sigma_last)
