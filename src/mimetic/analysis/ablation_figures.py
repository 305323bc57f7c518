"""Figures of an ablation: final metric per row with every seed shown, and the two-factor heat map."""

from __future__ import annotations

from pathlib import Path

from mimetic.analysis.ablations import AblationSpec, config_values, ordered_labels
from mimetic.analysis.outputs import save_figure
from mimetic.analysis.tables import Comparison, mean_std


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_bars(cmp: Comparison, title: str, path: Path, stamp: str) -> None:
    """One bar per row (mean over seeds, error bar = sample std), each seed as a dot on its bar."""
    plt = _pyplot()
    labels = ordered_labels(cmp)
    m = cmp.metric
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(labels) + 1.5), 4.2), dpi=120)
    try:
        for i, label in enumerate(labels):
            values = cmp.final(label)
            mean, std, _ = mean_std(values)
            ax.bar(i, mean, yerr=0 if std != std else std, capsize=4, color="C1" if "mimetic" in label else "C0",
                   alpha=0.75)
            ax.scatter([i] * len(values), values, color="black", s=12, zorder=3)
        low = min(min(cmp.final(label)) for label in labels)
        high = max(max(cmp.final(label)) for label in labels)
        pad = max(1.0, 0.15 * (high - low))
        ax.set_ylim(low - 2 * pad, high + pad)
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels([label.replace(", ", "\n") for label in labels], fontsize=8)
        ax.set_ylabel(m.header("final") + f" ({m.direction})")
        ax.set_title(title, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        save_figure(fig, path, stamp)
    finally:
        plt.close(fig)


def plot_grid(cmp: Comparison, spec: AblationSpec, path: Path, stamp: str) -> None:
    """Heat map of the mean final metric over a two-factor grid, each cell annotated mean ± std (n)."""
    import numpy as np

    plt = _pyplot()
    first, second = spec.factors
    cells = {}
    for label in ordered_labels(cmp):
        cfg = config_values(next(iter(cmp.by_init[label].values())))
        cells[(float(cfg[first.key]), float(cfg[second.key]))] = mean_std(cmp.final(label))
    rows = sorted({a for a, _ in cells})
    cols = sorted({b for _, b in cells})
    grid = np.full((len(rows), len(cols)), np.nan)
    for (a, b), (mean, _, _) in cells.items():
        grid[rows.index(a), cols.index(b)] = mean
    m = cmp.metric
    fig, ax = plt.subplots(figsize=(1.6 * len(cols) + 2.2, 1.1 * len(rows) + 1.6), dpi=120)
    try:
        image = ax.imshow(grid, cmap="viridis" if m.higher_is_better else "viridis_r", origin="lower")
        for (a, b), (mean, std, n) in cells.items():
            text = m.format(mean, std) + f"\n(n={n})"
            bold = (a, b) == tuple(float(v) for v in spec.baseline)
            ax.text(cols.index(b), rows.index(a), text, ha="center", va="center", fontsize=8,
                    color="white", fontweight="bold" if bold else "normal")
        ax.set_xticks(range(len(cols)), [second.text(c) for c in cols], fontsize=8)
        ax.set_yticks(range(len(rows)), [first.text(r) for r in rows], fontsize=8)
        fig.colorbar(image, ax=ax, label=m.header("final"))
        ax.set_title(f"{spec.title}\n(bold: the paper's values)", fontsize=9)
        fig.tight_layout()
        save_figure(fig, path, stamp)
    finally:
        plt.close(fig)
