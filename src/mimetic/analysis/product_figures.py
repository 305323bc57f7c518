"""The paper's Figure-1 view (QK and VO products as heat maps) and diagonal strength by depth.

Inputs are :class:`mimetic.analysis.products.ModelProducts`, so the same functions draw fresh
models, trained checkpoints and a pre-trained ViT alike.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mimetic.analysis.figures import pyplot
from mimetic.analysis.outputs import save_figure
from mimetic.analysis.products import ModelProducts, strength_by_depth


def _limit(panel: torch.Tensor) -> float:
    # Symmetric colour limits at the 99.5th percentile of |values|: one outlier would
    # otherwise wash the rest out, and 0 stays white, so a diagonal's sign reads as its colour.
    lim = torch.quantile(panel.abs().flatten().double(), 0.995).item()
    return lim or 1.0


def plot_products(states: list[ModelProducts], path: Path, stamp: str, layers: list[int] | None = None,
                  crop: int | None = None, title: str = "") -> None:
    """Per layer (rows) and per state (column groups): each head's QK product, then the layer's VO product.

    ``crop`` shows only the top-left ``crop`` x ``crop`` corner (the structure is the same
    everywhere along the diagonal, and small panels of a wide layer turn it into a hairline).
    Every panel has its own symmetric colour scale (red positive, blue negative): the figure
    shows structure, not scale; the diagonal-strength figure compares magnitudes.
    """
    plt = pyplot()
    depth = max(s.depth for s in states)
    rows = list(range(depth)) if layers is None else [i for i in layers if i < depth]
    heads = max(s.heads for s in states)
    cols = len(states) * (heads + 1)
    size = 1.05
    fig, axes = plt.subplots(len(rows), cols, figsize=(cols * size + 0.6, len(rows) * size + 1.0), squeeze=False)
    try:
        for g, state in enumerate(states):
            for r, layer in enumerate(rows):
                panels = ([state.qk[layer][h] for h in range(state.qk[layer].shape[0])] if layer < state.depth else [])
                panels = panels + [None] * (heads - len(panels)) + [state.vo[layer] if layer < state.depth else None]
                for c, panel in enumerate(panels):
                    ax = axes[r][g * (heads + 1) + c]
                    ax.set_xticks([])
                    ax.set_yticks([])
                    if panel is None:
                        ax.axis("off")
                        continue
                    shown = panel[:crop, :crop] if crop else panel
                    lim = _limit(shown)
                    ax.imshow(shown.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
                    if r == 0:
                        what = f"QK h{c}" if c < heads else "VO"
                        ax.set_title(f"{state.label}\n{what}" if c == 0 else what, fontsize=7, loc="left")
                    if g == 0 and c == 0:
                        ax.set_ylabel(f"layer {layer}", fontsize=7)
        shown_size = f"top-left {crop}x{crop} of each" if crop else "full"
        fig.suptitle((title + "\n" if title else "")
                     + f"QK = W_q^T W_k per head, VO = W_v^T W_o^T per layer ({shown_size}); "
                     "each panel on its own symmetric colour scale (red +, blue -)", fontsize=8)
        fig.tight_layout()
        save_figure(fig, path, stamp, dpi=70)  # a noise texture compresses badly: keep the PNG well under 1 MB
    finally:
        plt.close(fig)


def plot_diagonal_strength(groups: dict[str, list[ModelProducts]], path: Path, stamp: str,
                           styles: dict[str, dict] | None = None, title: str = "") -> None:
    """Two panels (QK, averaged over heads; VO): diagonal strength per layer, mean ± std over each group's models.

    A group is one state (e.g. "mimetic, trained") over seeds; ``styles`` gives each group's
    matplotlib line keywords (colour, dashes), so before/after pairs can share a colour.
    """
    plt = pyplot()
    styles = styles or {}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=110, sharex=True)
    try:
        for label, models in groups.items():
            per_model = [strength_by_depth(m) for m in models]
            for ax, part in zip(axes, (0, 1)):
                values = torch.tensor([pm[part] for pm in per_model], dtype=torch.float64)  # (models, layers)
                mean = values.mean(0)
                xs = list(range(values.shape[1]))
                line, = ax.plot(xs, mean.numpy(), marker="o", ms=3, label=f"{label} (n={len(models)})",
                                **styles.get(label, {}))
                if len(models) > 1:
                    std = values.std(0)
                    ax.fill_between(xs, (mean - std).numpy(), (mean + std).numpy(), color=line.get_color(), alpha=0.15)
        for ax, what in zip(axes, ("QK (mean over heads)", "VO")):
            ax.axhline(0, color="grey", lw=0.8)
            ax.set_xlabel("layer")
            ax.set_ylabel("cos(product, I) = trace / (||P||_F sqrt(d))")
            ax.set_title(what, fontsize=9)
            ax.grid(alpha=0.3)
            ax.xaxis.get_major_locator().set_params(integer=True)
        axes[1].legend(fontsize=7)
        fig.suptitle((title + ": " if title else "") + "diagonal strength by depth "
                     "(+1: a positive multiple of I, 0: no diagonal, -1: a negative multiple)", fontsize=9)
        fig.tight_layout()
        save_figure(fig, path, stamp)
    finally:
        plt.close(fig)
