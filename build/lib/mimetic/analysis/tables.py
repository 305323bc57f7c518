"""Paired-seed statistics and markdown tables: default vs mimetic, mean ± std, n."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from mimetic.analysis.runs import Run


def mean_std(values: list[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (n-1; nan for n=1) and n."""
    n = len(values)
    if n == 0:
        return float("nan"), float("nan"), 0
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else float("nan")
    return mean, std, n


def fmt(mean: float, std: float, digits: int = 2, signed: bool = False) -> str:
    if math.isnan(mean):
        return "–"
    sign = "+" if signed else ""
    head = f"{mean:{sign}.{digits}f}"
    return head if math.isnan(std) else f"{head} ± {std:.{digits}f}"


@dataclass
class Comparison:
    """Runs of one experiment, grouped by init and paired by seed."""

    experiment: str
    by_init: dict[str, dict[int, Run]]

    @property
    def inits(self) -> list[str]:
        order = ["default", "mimetic", "mimetic_qk", "mimetic_vo", "pretrained_attention"]
        return sorted(self.by_init, key=lambda i: order.index(i) if i in order else len(order))

    def final(self, init: str, key: str = "test_acc") -> list[float]:
        return [run.summary[key] for _, run in sorted(self.by_init[init].items())]

    def paired_seeds(self, a: str, b: str) -> list[int]:
        return sorted(set(self.by_init.get(a, {})) & set(self.by_init.get(b, {})))

    def paired_final_diff(self, a: str = "mimetic", b: str = "default", key: str = "test_acc") -> list[float]:
        return [self.by_init[a][s].summary[key] - self.by_init[b][s].summary[key] for s in self.paired_seeds(a, b)]

    def epochs(self) -> int:
        return min(len(run.metrics) for runs in self.by_init.values() for run in runs.values())

    def curve_stats(self, init: str, key: str = "test_acc") -> list[tuple[float, float, int]]:
        runs = list(self.by_init[init].values())
        return [mean_std([run.metrics[e][key] for run in runs]) for e in range(self.epochs())]

    def paired_curve_diff(self, a: str = "mimetic", b: str = "default", key: str = "test_acc"):
        seeds = self.paired_seeds(a, b)
        return [mean_std([self.by_init[a][s].metrics[e][key] - self.by_init[b][s].metrics[e][key] for s in seeds])
                for e in range(self.epochs())]


def group_runs(runs: list[Run]) -> dict[str, Comparison]:
    grouped: dict[str, dict[str, dict[int, Run]]] = defaultdict(lambda: defaultdict(dict))
    for run in runs:
        name = run.experiment or f"{run.summary['dataset']}-{run.summary['model']}"
        if run.seed in grouped[name][run.init]:
            raise ValueError(
                f"two finished runs of {name} / {run.init} / seed {run.seed}: {grouped[name][run.init][run.seed].path} "
                f"and {run.path}. Keep one (they differ in config), or point the script at one sweep's runs."
            )
        grouped[name][run.init][run.seed] = run
    return {name: Comparison(name, dict(by_init)) for name, by_init in sorted(grouped.items())}


def summary_table(cmp: Comparison) -> str:
    lines = ["| init | n | final test acc (%) | best test acc (%) | seeds |", "|---|---|---|---|---|"]
    for init in cmp.inits:
        final = mean_std(cmp.final(init))
        best = mean_std(cmp.final(init, "best_test_acc"))
        seeds = ",".join(str(s) for s in sorted(cmp.by_init[init]))
        lines.append(f"| {init} | {final[2]} | {fmt(*final[:2])} | {fmt(*best[:2])} | {seeds} |")
    return "\n".join(lines)


def paired_table(cmp: Comparison, baseline: str = "default") -> str:
    lines = ["| comparison | pairs | final test acc gap (pp) | seeds where ahead |", "|---|---|---|---|"]
    for init in cmp.inits:
        if init == baseline:
            continue
        diff = cmp.paired_final_diff(init, baseline)
        if not diff:
            continue
        m = mean_std(diff)
        ahead = sum(d > 0 for d in diff)
        lines.append(f"| {init} − {baseline} | {m[2]} | {fmt(m[0], m[1], signed=True)} | {ahead}/{len(diff)} |")
    return "\n".join(lines)


def curve_table(cmp: Comparison, a: str = "mimetic", b: str = "default") -> str:
    if a not in cmp.by_init or b not in cmp.by_init:
        return ""
    sa, sb, diff = cmp.curve_stats(a), cmp.curve_stats(b), cmp.paired_curve_diff(a, b)
    lines = [f"| epoch | {b} test acc | {a} test acc | paired gap ({a} − {b}) |", "|---|---|---|---|"]
    for e, (x, y, d) in enumerate(zip(sb, sa, diff), start=1):
        lines.append(f"| {e} | {fmt(*x[:2])} | {fmt(*y[:2])} | {fmt(d[0], d[1], signed=True)} |")
    return "\n".join(lines)


def plot_curves(cmp: Comparison, path, key: str = "test_acc") -> None:
    """Mean ± std accuracy per epoch for each init, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for init in cmp.inits:
        stats = cmp.curve_stats(init, key)
        epochs = list(range(1, len(stats) + 1))
        mean = [s[0] for s in stats]
        std = [0.0 if math.isnan(s[1]) else s[1] for s in stats]
        ax.plot(epochs, mean, label=f"{init} (n={stats[0][2]})")
        ax.fill_between(epochs, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)], alpha=0.2)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{key.replace('_', ' ')} (%)")
    ax.set_title(cmp.experiment)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
