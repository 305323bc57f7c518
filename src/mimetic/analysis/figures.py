"""Curves of one comparison: mean ± std of its metric per evaluation, one line per init."""

from __future__ import annotations

import math
from pathlib import Path

from mimetic.analysis.outputs import save_figure
from mimetic.analysis.tables import Comparison


def plot_curves(cmp: Comparison, path: Path, key: str | None = None, stamp: str = "") -> None:
    """One PNG: x is the step when the runs log one (else the epoch); the stamp names its inputs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
