"""Curves of one comparison: mean ± std of its metric per evaluation, one line per init.

Also the one place figures get pyplot from (headless: the Agg backend), so every figure
module draws the same way on a machine without a display.
"""

from __future__ import annotations

import math
from pathlib import Path

from mimetic.analysis.outputs import save_figure
from mimetic.analysis.tables import Comparison


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (figures are files, never windows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(cmp: Comparison, path: Path, key: str | None = None, stamp: str = "") -> None:
    """One PNG (and PDF): x is the step when the runs log one (else the epoch); the stamp names its inputs.

    Each init is its mean over seeds, with a band of ± one sample std (no band for one seed).
    """
    plt = pyplot()
    key = key or cmp.metric.name
    xs = cmp.xs(key)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    try:
        for init in cmp.inits:
            stats = cmp.curve_stats(init, key)
            mean = [s[0] for s in stats]
            std = [0.0 if math.isnan(s[1]) else s[1] for s in stats]
            ax.plot(xs, mean, label=f"{init} (n={len(cmp.by_init[init])})")
            ax.fill_between(xs, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)], alpha=0.2)
        spec = cmp.metric if key == cmp.metric.name else None
        ax.set_xlabel(cmp.x_key)
        ax.set_ylabel(spec.header() + f" ({spec.direction})" if spec else key.replace("_", " "))
        ax.set_title(cmp.experiment)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        save_figure(fig, path, stamp)
    finally:
        plt.close(fig)
