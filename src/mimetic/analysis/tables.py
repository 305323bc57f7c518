"""Paired-seed comparisons and markdown tables that know their metric.

A ``Comparison`` holds one experiment's finished runs, grouped by init and paired by
seed, with the ``MetricSpec`` its runs report (``summary.json``'s ``primary_metric``).
A ``TableSpec`` says which rows (inits), which columns and which metric a table shows,
so an accuracy table and a perplexity table are the same code: "best" and "seeds ahead"
follow the metric's direction (for perplexity, ahead means lower).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Protocol

from mimetic.analysis import AnalysisError
from mimetic.analysis.metrics import DEFAULT_METRIC, MetricSpec, metric_spec
from mimetic.analysis.runs import Run

INIT_ORDER = ["default", "mimetic", "mimetic_qk", "mimetic_vo", "pretrained_attention"]
CONTEXT_KEYS = ("experiment", "dataset", "model")  # what paper numbers are matched on
PREFER = ("newest", "oldest")


def mean_std(values: list[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (n-1; nan for n=1) and n."""
    n = len(values)
    if n == 0:
        return float("nan"), float("nan"), 0
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else float("nan")
    return mean, std, n


def fmt(mean: float, std: float, digits: int = 2, signed: bool = False) -> str:
    """``mean ± std`` with ``digits`` decimals (kept for callers without a ``MetricSpec``)."""
    return MetricSpec("value", True, digits).format(mean, std, signed)


# ----------------------------------------------------------------------------- comparisons


@dataclass
class Comparison:
    """Runs of one experiment, grouped by init and paired by seed, with the metric they report."""

    experiment: str
    by_init: dict[str, dict[int, Run]]
    metric: MetricSpec = field(default_factory=lambda: metric_spec(DEFAULT_METRIC))
    dropped: list[tuple[Run, Run]] = field(default_factory=list)  # (left out, kept) by --prefer

    @property
    def runs(self) -> list[Run]:
        return [run for init in self.inits for _, run in sorted(self.by_init[init].items())]

    @property
    def inits(self) -> list[str]:
        return sorted(self.by_init, key=lambda i: (INIT_ORDER.index(i) if i in INIT_ORDER else len(INIT_ORDER), i))

    def common_value(self, key: str) -> str | None:
        """The value every run shares of a summary.json field (``experiment``, ``dataset``, ...)
        or a dotted config key (``trainer.epochs``); None when absent or not shared."""
        values = set()
        for run in self.runs:
            value = run.summary.get(key)
            if value is None:
                value = _flatten({k: v for k, v in run.config.items() if k != "_run"}).get(key)
            values.add(None if value is None else str(value))
        return values.pop() if len(values) == 1 else None

    @property
    def context(self) -> dict[str, str]:
        """experiment / dataset / model, where every run agrees."""
        return {k: v for k in CONTEXT_KEYS if (v := self.common_value(k)) is not None}

    def _key(self, key: str | None) -> str:
        return key or self.metric.name

    def _spec(self, key: str) -> MetricSpec:
        """Another metric of these runs: its registered spec (unregistered: the primary metric's direction)."""
        try:
            return metric_spec(key)
        except AnalysisError:
            return MetricSpec(key, self.metric.higher_is_better)

    def final(self, init: str, key: str | None = None) -> list[float]:
        return [run.final(self._key(key)) for _, run in sorted(self.by_init[init].items())]

    def best(self, init: str, key: str | None = None) -> list[float]:
        """Each run's best value in the metric's direction: summary's ``best_<key>``, else from its records."""
        key = self._key(key)
        spec = self.metric if key == self.metric.name else self._spec(key)
        values = []
        for _, run in sorted(self.by_init[init].items()):
            stored = run.summary.get(f"best_{key}")
            values.append(float(stored) if stored is not None else spec.best(run.curve(key)))
        return values

    def paired_seeds(self, a: str, b: str) -> list[int]:
        return sorted(set(self.by_init.get(a, {})) & set(self.by_init.get(b, {})))

    def paired_final_diff(self, a: str = "mimetic", b: str = "default", key: str | None = None) -> list[float]:
        key = self._key(key)
        return [self.by_init[a][s].final(key) - self.by_init[b][s].final(key) for s in self.paired_seeds(a, b)]

    # curves: records are matched by their x value (step when every run logs one, else epoch)
    @property
    def x_key(self) -> str:
        return "step" if all(run.x_key == "step" for run in self.runs) else "epoch"

    def xs(self, key: str | None = None) -> list[int]:
        """The x values every run has a record of ``key`` at."""
        key, common = self._key(key), None
        for run in self.runs:
            have = {r[self.x_key] for r in run.metrics if self.x_key in r and r.get(key) is not None}
            common = have if common is None else common & have
        return sorted(common or [])

    def epochs(self) -> int:
        return len(self.xs())

    def _curve(self, run: Run, key: str, xs: list[int]) -> list[float]:
        at = {r[self.x_key]: r for r in run.metrics if self.x_key in r}
        return [run.value(at[x], key) for x in xs]

    def curve_stats(self, init: str, key: str | None = None) -> list[tuple[float, float, int]]:
        key = self._key(key)
        xs = self.xs(key)
        curves = [self._curve(run, key, xs) for _, run in sorted(self.by_init[init].items())]
        return [mean_std([c[i] for c in curves]) for i in range(len(xs))]

    def paired_curve_diff(self, a: str = "mimetic", b: str = "default", key: str | None = None):
        key = self._key(key)
        xs = self.xs(key)
        diffs = [[u - v for u, v in zip(self._curve(self.by_init[a][s], key, xs),
                                        self._curve(self.by_init[b][s], key, xs))]
                 for s in self.paired_seeds(a, b)]
        return [mean_std([d[i] for d in diffs]) for i in range(len(xs))]


def comparison_metric(runs: list[Run], name: str | None = None) -> MetricSpec:
    """The metric the runs report (``primary_metric``; ``test_acc`` for older runs), or ``name``."""
    names = {run.summary.get("primary_metric") or DEFAULT_METRIC: run for run in runs}
    if name is None:
        if len(names) > 1:
            listed = "; ".join(f"{metric} ({run.path})" for metric, run in sorted(names.items()))
            raise AnalysisError(f"runs of one experiment report different primary metrics: {listed}; "
                                "choose one with --metric")
        name = next(iter(names), DEFAULT_METRIC)
    directions = {bool(run.summary["higher_is_better"]) for run in runs
                  if run.summary.get("primary_metric") == name and run.summary.get("higher_is_better") is not None}
    if len(directions) > 1:
        raise AnalysisError(f"runs disagree on whether higher {name} is better; check their summary.json files")
    return metric_spec(name, directions.pop() if directions else None)


# ----------------------------------------------------------------------------- grouping and conflicts


@dataclass
class Conflict:
    """Several finished runs in one (experiment, init, seed) slot."""

    experiment: str
    init: str
    seed: int
    runs: list[Run]


def _flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def differences(runs: list[Run]) -> list[str]:
    """How runs in one slot differ: the overrides only some of them have, else the config values."""
    lines = []
    overrides = [run.overrides for run in runs]
    if all(o is not None for o in overrides) and len({tuple(sorted(o)) for o in overrides}) > 1:
        common = set.intersection(*(set(o) for o in overrides))
        for run, over in zip(runs, overrides):
            own = [o for o in over if o not in common]
            lines.append(f"{run.path}: overrides only here: {' '.join(own) or '(none)'}")
        return lines
    configs = [_flatten({k: v for k, v in run.config.items() if k != "_run"}) for run in runs]
    keys = sorted({k for c in configs for k in c if len({repr(c2.get(k)) for c2 in configs}) > 1})
    if keys:
        shown = ", ".join(f"{k} ({' vs '.join(repr(c.get(k)) for c in configs)})" for k in keys[:6])
        more = f" and {len(keys) - 6} more" if len(keys) > 6 else ""
        return [f"config values differ: {shown}{more}"]
    if len({run.config_hash for run in runs}) > 1:
        return ["same recorded config, different config hashes (made by different code versions?)"]
    return ["same config (copies of one run?)"]


def describe_conflicts(conflicts: list[Conflict]) -> str:
    def when(run: Run) -> str:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(run.finished_at))

    lines = []
    for experiment in sorted({c.experiment for c in conflicts}):
        mine = [c for c in conflicts if c.experiment == experiment]
        lines.append(f"{experiment}: {len(mine)} (init, seed) slot(s) hold more than one finished run:")
        for c in mine:
            lines.append(f"  {c.init}, seed {c.seed}:")
            lines += [f"    {run.path}  (config {run.config_hash or '?'}, finished {when(run)})" for run in c.runs]
            lines += [f"    {line}" for line in differences(c.runs)]
    example = " ".join(str(run.path) for run in conflicts[0].runs[:1])
    lines.append(
        "Choose which runs make the table: point --runs at one sweep's run directories (a run directory is "
        f"accepted as it is, e.g. --runs {example} ...), or pass --prefer newest (or --prefer oldest) to keep "
        "the most (least) recently finished run of each slot; or delete the runs you do not want."
    )
    return "\n".join(lines)


def group_runs(runs: list[Run], experiments: list[str] | None = None, prefer: str | None = None,
               metric: str | None = None) -> dict[str, Comparison]:
    """One ``Comparison`` per experiment (all, or only ``experiments``, in that order).

    Two finished runs in one (experiment, init, seed) slot are reported with how they
    differ, only for the experiments asked for; ``prefer`` ("newest"/"oldest") picks one.
    """
    if prefer is not None and prefer not in PREFER:
        raise AnalysisError(f"prefer={prefer!r}: choose one of {', '.join(PREFER)}")
    by_group: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_group[run.group].append(run)
    if experiments:
        missing = [e for e in experiments if e not in by_group]
        if missing:
            found = ", ".join(sorted(by_group)) or "none"
            raise AnalysisError(f"no finished runs of {', '.join(missing)} (experiments found: {found})")
        names = list(dict.fromkeys(experiments))
    else:
        names = sorted(by_group)

    comparisons, conflicts = {}, []
    for name in names:
        slots: dict[tuple[str, int], list[Run]] = defaultdict(list)
        for run in by_group[name]:
            slots[(run.init, run.seed)].append(run)
        by_init: dict[str, dict[int, Run]] = defaultdict(dict)
        dropped = []
        for (init, seed), slot in sorted(slots.items()):
            slot.sort(key=lambda r: (r.finished_at, str(r.path)))
            if len(slot) > 1 and prefer is None:
                conflicts.append(Conflict(name, init, seed, slot))
                continue
            keep = slot[-1] if prefer == "newest" else slot[0]
            by_init[init][seed] = keep
            dropped += [(run, keep) for run in slot if run is not keep]
        comparisons[name] = Comparison(name, dict(by_init), comparison_metric(by_group[name], metric), dropped)
    if conflicts:
        raise AnalysisError(describe_conflicts(conflicts))
    return comparisons


# ----------------------------------------------------------------------------- table specs


class PaperCells(Protocol):
    """Where the paper's numbers come from (``mimetic.analysis.paper.PaperColumn``)."""

    def value(self, init: str) -> str: ...

    def gap(self, init: str, baseline: str) -> str: ...


SUMMARY_COLUMNS = ("n", "final", "paper", "best", "seeds")
PAIRED_COLUMNS = ("pairs", "gap", "paper", "ahead")


@dataclass(frozen=True)
class TableSpec:
    """Which rows (inits), columns and metric a table shows.

    ``rows=()`` means every init found, in the usual order. Columns of the per-init table:
    ``n, final, paper, best, seeds``; of the paired table: ``pairs, gap, paper, ahead``.
    """

    metric: MetricSpec
    rows: tuple[str, ...] = ()
    columns: tuple[str, ...] = SUMMARY_COLUMNS
    baseline: str = "default"

    def row_inits(self, cmp: Comparison) -> list[str]:
        return [init for init in (self.rows or cmp.inits) if init in cmp.by_init]


def _check_columns(spec: TableSpec, allowed: tuple[str, ...]) -> None:
    unknown = [c for c in spec.columns if c not in allowed]
    if unknown:
        raise AnalysisError(f"unknown table column(s) {', '.join(unknown)}; this table has {', '.join(allowed)}")


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def summary_table(cmp: Comparison, spec: TableSpec | None = None, paper: PaperCells | None = None) -> str:
    """Per init: n, final value (mean ± std), the paper's number, best value, seeds."""
    spec = spec or TableSpec(cmp.metric)
    _check_columns(spec, SUMMARY_COLUMNS)
    m = spec.metric
    headers = {"n": "n", "final": m.header("final"), "paper": "paper", "best": m.header("best"), "seeds": "seeds"}
    rows = []
    for init in spec.row_inits(cmp):
        final = mean_std(cmp.final(init, m.name))
        cells = {
            "n": str(final[2]),
            "final": m.format(*final[:2]),
            "paper": paper.value(init) if paper else "",
            "best": m.format(*mean_std(cmp.best(init, m.name))[:2]),
            "seeds": ",".join(str(s) for s in sorted(cmp.by_init[init])),
        }
        rows.append([init] + [cells[c] for c in spec.columns])
    return _markdown(["init"] + [headers[c] for c in spec.columns], rows)


def paired_table(cmp: Comparison, spec: TableSpec | None = None, paper: PaperCells | None = None) -> str:
    """Per init against the baseline, paired by seed: the final gap and how many seeds are ahead."""
    spec = spec or TableSpec(cmp.metric, columns=PAIRED_COLUMNS)
    _check_columns(spec, PAIRED_COLUMNS)
    m, base = spec.metric, spec.baseline
    better = "higher" if m.higher_is_better else "lower"
    headers = {"pairs": "pairs", "gap": m.gap_header("final"), "paper": "paper",
               "ahead": f"seeds ahead ({better} {m.title} is better)"}
    rows = []
    for init in spec.row_inits(cmp):
        if init == base:
            continue
        diff = cmp.paired_final_diff(init, base, m.name)
        if not diff:
            continue
        gap = mean_std(diff)
        cells = {
            "pairs": str(gap[2]),
            "gap": m.format(gap[0], gap[1], signed=True),
            "paper": paper.gap(init, base) if paper else "",
            "ahead": f"{sum(m.is_ahead(d) for d in diff)}/{len(diff)}",
        }
        rows.append([f"{init} − {base}"] + [cells[c] for c in spec.columns])
    if not rows:
        return ""
    return _markdown(["comparison"] + [headers[c] for c in spec.columns], rows)


def curve_table(cmp: Comparison, spec: TableSpec | None = None, a: str = "mimetic", b: str = "default") -> str:
    """Mean ± std of ``a`` and ``b`` and their paired gap at every evaluation (step or epoch)."""
    m = (spec or TableSpec(cmp.metric)).metric
    if a not in cmp.by_init or b not in cmp.by_init or not cmp.xs(m.name):
        return ""
    xs = cmp.xs(m.name)
    sa, sb, diff = cmp.curve_stats(a, m.name), cmp.curve_stats(b, m.name), cmp.paired_curve_diff(a, b, m.name)
    rows = [[str(x), m.format(*sb_x[:2]), m.format(*sa_x[:2]), m.format(d[0], d[1], signed=True)]
            for x, sb_x, sa_x, d in zip(xs, sb, sa, diff)]
    return _markdown([cmp.x_key, f"{b} {m.title}", f"{a} {m.title}", f"paired gap ({a} − {b})"], rows)
