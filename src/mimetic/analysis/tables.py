"""Paired-seed statistics over a table's rows, the one implementation every table and the report use.

A ``Comparison`` holds a table's runs, one row per label, paired by seed, with the ``MetricSpec`` they report:
means over seeds with the sample std, gaps paired by seed, their 95% ``t_interval``, "ahead" in the metric's
direction. Two runs in one (row, seed) slot are a ``Conflict``, reported with how they differ, unless ``prefer``.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from mimetic.analysis import AnalysisError
from mimetic.analysis.metrics import DEFAULT_METRIC, MetricSpec, metric_spec
from mimetic.analysis.runs import Run

INIT_ORDER = ["default", "mimetic", "mimetic_qk", "mimetic_vo", "pretrained_attention"]
CONTEXT_KEYS = ("experiment", "dataset", "model")  # what paper numbers are matched on
PREFER = ("newest", "oldest")
LEVEL = 0.95  # the t-interval of every paired gap


def mean_std(values: list[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (n-1; nan for n=1) and n."""
    n = len(values)
    if n == 0:
        return float("nan"), float("nan"), 0
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else float("nan")
    return mean, std, n


@dataclass(frozen=True)
class Interval:
    """Mean, std and n of paired differences, and their t-interval (nan below two pairs)."""

    mean: float
    std: float
    n: int
    lo: float
    hi: float


def t_interval(values: list[float], level: float = LEVEL) -> Interval:
    mean, std, n = mean_std(values)
    if n < 2 or math.isnan(std):
        return Interval(mean, std, n, float("nan"), float("nan"))
    from scipy import stats

    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * std / math.sqrt(n)
    return Interval(mean, std, n, mean - half, mean + half)


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_values(run: Run) -> dict[str, object]:
    """The run's resolved config, flattened to dotted keys (``init.alpha_qk``)."""
    return flatten({k: v for k, v in run.config.items() if k != "_run"})


# ----------------------------------------------------------------------------- comparisons


@dataclass
class Comparison:
    """The runs of one table: ``rows[label][seed]``, in row order, with the metric they report."""

    name: str
    rows: dict[str, dict[int, Run]]
    metric: MetricSpec = field(default_factory=lambda: metric_spec(DEFAULT_METRIC))
    dropped: list[tuple[Run, Run]] = field(default_factory=list)  # (left out, kept) by prefer
    values: dict[str, dict[str, object]] = field(default_factory=dict)  # each row's factor values

    @property
    def labels(self) -> list[str]:
        return list(self.rows)

    @property
    def runs(self) -> list[Run]:
        return [run for label in self.rows for _, run in sorted(self.rows[label].items())]

    def common_value(self, key: str) -> str | None:
        """The value every run shares of a summary.json field (``experiment``, ``dataset``, ...)
        or a dotted config key (``trainer.epochs``); None when absent or not shared."""
        values = set()
        for run in self.runs:
            value = run.summary.get(key)
            if value is None:
                value = config_values(run).get(key)
            values.add(None if value is None else str(value))
        return values.pop() if len(values) == 1 else None

    @property
    def context(self) -> dict[str, str]:
        """experiment / dataset / model, where every run agrees."""
        return {k: v for k in CONTEXT_KEYS if (v := self.common_value(k)) is not None}

    def spec(self, key: str | None) -> MetricSpec:
        """The primary metric, or another one of these runs (unregistered: the primary metric's direction)."""
        if key is None or key == self.metric.name:
            return self.metric
        try:
            return metric_spec(key)
        except AnalysisError:
            return MetricSpec(key, self.metric.higher_is_better)

    def _seeds(self, label: str) -> list[Run]:
        return [run for _, run in sorted(self.rows[label].items())]

    def final(self, label: str, key: str | None = None) -> list[float]:
        return [run.final(self.spec(key).name) for run in self._seeds(label)]

    def best(self, label: str, key: str | None = None) -> list[float]:
        """Each run's best value in the metric's direction: summary's ``best_<key>``, else from its records."""
        spec = self.spec(key)
        out = []
        for run in self._seeds(label):
            stored = run.summary.get(f"best_{spec.name}")
            out.append(float(stored) if stored is not None else spec.best(run.curve(spec.name)))
        return out

    def paired_seeds(self, a: str, b: str) -> list[int]:
        return sorted(set(self.rows.get(a, {})) & set(self.rows.get(b, {})))

    def paired_final_diff(self, a: str, b: str, key: str | None = None, seeds: list[int] | None = None) -> list[float]:
        name = self.spec(key).name
        seeds = self.paired_seeds(a, b) if seeds is None else seeds
        return [self.rows[a][s].final(name) - self.rows[b][s].final(name) for s in seeds]

    def ahead(self, diffs: list[float], key: str | None = None) -> int:
        return sum(self.spec(key).is_ahead(d) for d in diffs)

    # curves: records are matched by their x value (step when every run logs one, else epoch)
    @property
    def x_key(self) -> str:
        return "step" if all(run.x_key == "step" for run in self.runs) else "epoch"

    def xs(self, key: str | None = None, labels: list[str] | None = None) -> list[int]:
        """The x values every run (of ``labels``, default all) has a record of ``key`` at."""
        name, common = self.spec(key).name, None
        runs = self.runs if labels is None else [r for label in labels for r in self._seeds(label)]
        for run in runs:
            have = {r[self.x_key] for r in run.metrics if self.x_key in r and r.get(name) is not None}
            common = have if common is None else common & have
        return sorted(common or [])

    def _curve(self, run: Run, key: str, xs: list[int]) -> list[float]:
        at = {r[self.x_key]: r for r in run.metrics if self.x_key in r}
        return [run.value(at[x], key) for x in xs]

    def curve_stats(self, label: str, key: str | None = None) -> list[tuple[float, float, int]]:
        name = self.spec(key).name
        xs = self.xs(key)
        curves = [self._curve(run, name, xs) for run in self._seeds(label)]
        return [mean_std([c[i] for c in curves]) for i in range(len(xs))]

    def curve_diffs(self, a: str, b: str, key: str | None = None) -> list[list[float]]:
        """Per x (``xs``): the paired differences a − b over their common seeds."""
        name = self.spec(key).name
        xs = self.xs(key)
        per_seed = [[u - v for u, v in zip(self._curve(self.rows[a][s], name, xs),
                                           self._curve(self.rows[b][s], name, xs))]
                    for s in self.paired_seeds(a, b)]
        return [[d[i] for d in per_seed] for i in range(len(xs))]


def comparison_metric(runs: list[Run], name: str | None = None, higher_is_better: bool | None = None) -> MetricSpec:
    """The metric the runs report (``primary_metric``; ``test_acc`` for older runs), or ``name``."""
    names = {run.summary.get("primary_metric") or DEFAULT_METRIC: run for run in runs}
    if name is None:
        if len(names) > 1:
            listed = "; ".join(f"{metric} ({run.path})" for metric, run in sorted(names.items()))
            raise AnalysisError(f"runs of one table report different primary metrics: {listed}; "
                                "choose one with --metric (or metric: in the table's spec)")
        name = next(iter(names), DEFAULT_METRIC)
    directions = {bool(run.summary["higher_is_better"]) for run in runs
                  if run.summary.get("primary_metric") == name and run.summary.get("higher_is_better") is not None}
    if higher_is_better is not None:
        directions.add(bool(higher_is_better))
    if len(directions) > 1:
        raise AnalysisError(f"runs disagree on whether higher {name} is better; check their summary.json files")
    return metric_spec(name, directions.pop() if directions else None)


# ----------------------------------------------------------------------------- slots and conflicts


@dataclass
class Conflict:
    """Several finished runs in one (table, row, seed) slot."""

    table: str
    label: str
    seed: int
    runs: list[Run]


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
    configs = [config_values(run) for run in runs]
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
    for table in sorted({c.table for c in conflicts}):
        mine = [c for c in conflicts if c.table == table]
        lines.append(f"{table}: {len(mine)} (row, seed) slot(s) hold more than one finished run:")
        for c in mine:
            lines.append(f"  {c.label}, seed {c.seed}:")
            lines += [f"    {run.path}  (config {run.config_hash or '?'}, finished {when(run)})" for run in c.runs]
            lines += [f"    {line}" for line in differences(c.runs)]
    example = " ".join(str(run.path) for run in conflicts[0].runs[:1])
    lines.append(
        "Choose which runs make the table: point --runs at one sweep's run directories (a run directory is "
        f"accepted as it is, e.g. --runs {example} ...), or pass --prefer newest (or --prefer oldest) to keep "
        "the most (least) recently finished run of each slot; or delete the runs you do not want."
    )
    return "\n".join(lines)


def slot_runs(name: str, runs: list[Run], label_of: Callable[[Run], str], order: list[str],
              prefer: str | None) -> tuple[dict[str, dict[int, Run]], list[tuple[Run, Run]], list[Conflict]]:
    """``rows[label][seed]`` in ``order`` (labels not in it after, sorted), the runs ``prefer`` left out,
    and the slots that hold several runs when ``prefer`` is None."""
    if prefer is not None and prefer not in PREFER:
        raise AnalysisError(f"prefer={prefer!r}: choose one of {', '.join(PREFER)}")
    slots: dict[tuple[str, int], list[Run]] = defaultdict(list)
    for run in runs:
        slots[(label_of(run), run.seed)].append(run)
    labels = [label for label in order if any(k[0] == label for k in slots)]
    labels += sorted({k[0] for k in slots} - set(labels))
    rows: dict[str, dict[int, Run]] = {label: {} for label in labels}
    dropped, conflicts = [], []
    for (label, seed), slot in sorted(slots.items(), key=lambda kv: (labels.index(kv[0][0]), kv[0][1])):
        slot.sort(key=lambda r: (r.finished_at, str(r.path)))
        if len(slot) > 1 and prefer is None:
            conflicts.append(Conflict(name, label, seed, slot))
            continue
        keep = slot[-1] if prefer == "newest" else slot[0]
        rows[label][seed] = keep
        dropped += [(run, keep) for run in slot if run is not keep]
    return {k: v for k, v in rows.items() if v}, dropped, conflicts


def gap_closed(cmp: Comparison, low: str, mid: str, high: str, seeds: list[int] | None = None
               ) -> tuple[float, list[float]]:
    """How much of the ``high − low`` gap ``mid`` closes: ratio of mean paired gaps, and per seed."""
    common = sorted(set(cmp.paired_seeds(mid, low)) & set(cmp.paired_seeds(high, low)))
    seeds = common if seeds is None else [s for s in seeds if s in common]
    if not seeds:
        return float("nan"), []
    name = cmp.metric.name
    per_seed = []
    for s in seeds:
        base = cmp.rows[low][s].final(name)
        span = cmp.rows[high][s].final(name) - base
        per_seed.append((cmp.rows[mid][s].final(name) - base) / span if span else float("nan"))
    mid_gap = mean_std(cmp.paired_final_diff(mid, low, seeds=seeds))[0]
    high_gap = mean_std(cmp.paired_final_diff(high, low, seeds=seeds))[0]
    return (mid_gap / high_gap if high_gap else float("nan")), per_seed
