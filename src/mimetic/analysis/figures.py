"""A table's figures (curves with seed bands, bars with every seed, a two-factor heat map), and the one place
figures get pyplot from (the Agg backend: every figure module draws the same way without a display).
"""

from __future__ import annotations

import math
from pathlib import Path

from mimetic.analysis.outputs import save_figure
from mimetic.analysis.tables import Comparison, mean_std

KINDS = ("curves", "bars", "grid")


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (figures are files, never windows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(cmp: Comparison, path: Path, key: str | None = None, stamp: str = "",
                evidence: dict | None = None) -> None:
    """One PNG (and PDF): x is the step when the runs log one (else the epoch); the stamp names its inputs.

    Each row is its mean over seeds, with a band of ± one sample std (no band for one seed).
    """
    plt = pyplot()
    spec = cmp.spec(key)
    xs = cmp.xs(key)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    try:
        for label in cmp.labels:
            stats = cmp.curve_stats(label, key)
            mean = [s[0] for s in stats]
            std = [0.0 if math.isnan(s[1]) else s[1] for s in stats]
            ax.plot(xs, mean, label=f"{label} (n={len(cmp.rows[label])})")
            ax.fill_between(xs, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)], alpha=0.2)
        ax.set_xlabel(cmp.x_key)
        ax.set_ylabel(spec.header() + f" ({spec.direction})")
        ax.set_title(cmp.name)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        save_figure(fig, path, stamp, evidence=evidence)
    finally:
        plt.close(fig)


def plot_bars(cmp: Comparison, title: str, path: Path, stamp: str, evidence: dict | None = None) -> None:
    """One bar per row (mean over seeds, error bar = sample std), each seed as a dot on its bar."""
    plt = pyplot()
    labels, m = cmp.labels, cmp.metric
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
        save_figure(fig, path, stamp, evidence=evidence)
    finally:
        plt.close(fig)


def plot_grid(cmp: Comparison, factors, baseline: dict, title: str, path: Path, stamp: str,
              evidence: dict | None = None) -> None:
    """Heat map of the mean final metric over two factors, each cell annotated mean ± std (n)."""
    import numpy as np

    plt = pyplot()
    first, second = factors[:2]
    cells = {}
    for label in cmp.labels:
        v = cmp.values[label]
        cells[(float(v[first.keys[0]]), float(v[second.keys[0]]))] = mean_std(cmp.final(label))
    rows, cols = sorted({a for a, _ in cells}), sorted({b for _, b in cells})
    grid = np.full((len(rows), len(cols)), np.nan)
    for (a, b), (mean, _, _) in cells.items():
        grid[rows.index(a), cols.index(b)] = mean
    m = cmp.metric
    bold = tuple(float(baseline.get(f.keys[0], "nan")) for f in (first, second))
    fig, ax = plt.subplots(figsize=(1.6 * len(cols) + 2.2, 1.1 * len(rows) + 1.6), dpi=120)
    try:
        image = ax.imshow(grid, cmap="viridis" if m.higher_is_better else "viridis_r", origin="lower")
        for (a, b), (mean, std, n) in cells.items():
            ax.text(cols.index(b), rows.index(a), m.format(mean, std) + f"\n(n={n})", ha="center", va="center",
                    fontsize=8, color="white", fontweight="bold" if (a, b) == bold else "normal")
        ax.set_xticks(range(len(cols)), [second.text((c,)) for c in cols], fontsize=8)
        ax.set_yticks(range(len(rows)), [first.text((r,)) for r in rows], fontsize=8)
        fig.colorbar(image, ax=ax, label=m.header("final"))
        ax.set_title(f"{title}\n(bold: the baseline)", fontsize=9)
        fig.tight_layout()
        save_figure(fig, path, stamp, evidence=evidence)
    finally:
        plt.close(fig)


def figure_paths(spec, cmp: Comparison, folder: Path) -> dict[str, Path]:
    """The figures a table's spec asks for (``figures: {kind: file stem}``) that its runs can give."""
    out = {}
    for kind, stem in spec.figures.items():
        if kind not in KINDS:
            raise ValueError(f"table {spec.name}: unknown figure kind {kind!r}; kinds: {', '.join(KINDS)}")
        if (kind == "curves" and not cmp.xs()) or (kind == "grid" and len(spec.factors) != 2):
            continue
        out[kind] = Path(folder) / (str(stem).format(name=spec.name, metric=cmp.metric.name) + ".png")
    return out


def draw_figure(kind: str, spec, cmp: Comparison, path: Path, stamp: str, evidence: dict | None = None) -> None:
    if kind == "curves":
        plot_curves(cmp, path, stamp=stamp, evidence=evidence)
    elif kind == "bars":
        plot_bars(cmp, spec.title or spec.name, path, stamp, evidence)
    else:
        plot_grid(cmp, spec.factors, spec.baseline, spec.title or spec.name, path, stamp, evidence)
