"""Ablation tables: rows named by config values, paired by seed against one baseline row.

An experiment table compares inits; an ablation compares any config values (which part
of the init, its α/β, the position embedding and pooling). An ``AblationSpec`` says which
runs are candidates (the experiments that recorded them: a cell shared by two ablations,
e.g. mimetic at the paper's α/β, is one run directory recorded under the experiment that
ran it first), which config keys name a row (``factors``) and which row is the baseline.
The rows become a ``Comparison`` keyed by row label, so the per-init tables, paired gaps
and curves of ``analysis.tables`` work unchanged.

Every selected run must share the recipe: any config value other than the factors, the
seed, the init's own options and the keys outside the run identity (paths, logging)
that differs between runs is an error naming it, so runs of another recipe never mix in.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from mimetic.analysis import AnalysisError
from mimetic.analysis.runs import Run
from mimetic.analysis.tables import Comparison, _flatten, comparison_metric, mean_std
from mimetic.train.config import NOT_IN_RUN_KEY


@dataclass(frozen=True)
class Factor:
    """A config key that names part of a row, and how its value is printed (``"{}"``: as is)."""

    key: str
    label: str = "{}"

    def text(self, value: object) -> str:
        return self.label.format(value)


@dataclass(frozen=True)
class AblationSpec:
    """One ablation table (see the module docstring)."""

    name: str
    title: str
    experiments: tuple[str, ...]
    factors: tuple[Factor, ...]
    baseline: tuple[object, ...]  # the baseline row's factor values
    command: str  # the sweep that trains every cell (documented in the experiment file)
    where: tuple[tuple[str, tuple[object, ...]], ...] = ()  # only runs whose key has one of these values
    rows: tuple[tuple[object, ...], ...] = ()  # row order (default: as found, sorted)
    notes: tuple[str, ...] = field(default=())
    # Also pair these two values of this factor within every setting of the others (e.g. mimetic vs
    # default under each position embedding x pooling): (factor key, value, baseline value).
    within: tuple[str, object, object] | None = None

    def label(self, values: tuple[object, ...]) -> str:
        return ", ".join(f.text(v) for f, v in zip(self.factors, values))

    @property
    def baseline_label(self) -> str:
        return self.label(self.baseline)


DATA_KEY = "data fingerprint"


def config_values(run: Run) -> dict[str, object]:
    """The run's resolved config, flattened to dotted keys (``init.alpha_qk``)."""
    return _flatten({k: v for k, v in run.config.items() if k != "_run"})


def _selected(spec: AblationSpec, run: Run) -> bool:
    if run.experiment not in spec.experiments:
        return False
    values = config_values(run)
    return all(values.get(key) in allowed for key, allowed in spec.where)


def _outside_recipe(key: str, spec: AblationSpec) -> bool:
    """Keys allowed to differ between the runs of one ablation."""
    if key in {f.key for f in spec.factors} or key in ("seed", "experiment"):
        return True
    if key.startswith("init."):  # each init has its own options (alpha_qk, checkpoint, ...)
        return True
    return any(key == k or key.startswith(k + ".") for k in NOT_IN_RUN_KEY)


def recipe_differences(spec: AblationSpec, runs: list[Run]) -> list[str]:
    """Config keys (outside the factors) on which the selected runs disagree, with their values."""
    # The data's fingerprint too: dataset.root is outside the run identity (a moved folder is the same
    # data), so two folders of different images would otherwise look like one recipe.
    configs = [{**config_values(run), DATA_KEY: run.run_info.get("data_fingerprint")} for run in runs]
    keys = sorted({k for c in configs for k in c if not _outside_recipe(k, spec)})
    lines = []
    for key in keys:
        seen: dict[str, list[Run]] = defaultdict(list)
        for run, cfg in zip(runs, configs):
            seen[repr(cfg.get(key))].append(run)
        if len(seen) > 1:
            parts = "; ".join(f"{value} in {len(rs)} run(s), e.g. {rs[0].path}" for value, rs in sorted(seen.items()))
            lines.append(f"{key}: {parts}")
    return lines


def ablation_comparison(spec: AblationSpec, runs: list[Run]) -> Comparison:
    """The spec's rows as a ``Comparison`` keyed by row label (baseline first, then ``spec.rows`` order)."""
    chosen = [run for run in runs if _selected(spec, run)]
    if not chosen:
        raise AnalysisError(f"ablation {spec.name}: no finished runs of {', '.join(spec.experiments)}; "
                            f"train them with: {spec.command}")
    problems = recipe_differences(spec, chosen)
    if problems:
        raise AnalysisError(f"ablation {spec.name}: the runs do not share one recipe:\n  " + "\n  ".join(problems)
                            + "\nMove the runs of the other recipe out of the folders given with --runs.")
    cells: dict[tuple, dict[int, list[Run]]] = defaultdict(lambda: defaultdict(list))
    for run in chosen:
        values = config_values(run)
        cells[tuple(values.get(f.key) for f in spec.factors)][run.seed].append(run)
    doubles = [(spec.label(v), seed, rs) for v, by_seed in cells.items() for seed, rs in by_seed.items() if len(rs) > 1]
    if doubles:
        label, seed, rs = doubles[0]
        raise AnalysisError(f"ablation {spec.name}: {len(doubles)} cell(s) hold more than one run, e.g. {label}, "
                            f"seed {seed}: {', '.join(str(r.path) for r in rs)}; delete or move the extra runs")
    order = list(spec.rows) or sorted(cells, key=lambda v: tuple(str(x) for x in v))
    order = [spec.baseline] + [v for v in order if v != spec.baseline]
    order += [v for v in cells if v not in order]
    by_label = {spec.label(v): {seed: rs[0] for seed, rs in cells[v].items()} for v in order if v in cells}
    if spec.baseline_label not in by_label:
        raise AnalysisError(f"ablation {spec.name}: no runs of the baseline row ({spec.baseline_label}); "
                            f"train them with: {spec.command}")
    return Comparison(spec.name, by_label, comparison_metric(chosen))


def ordered_labels(cmp: Comparison) -> list[str]:
    """Row labels in the order ``ablation_comparison`` built them (``Comparison.inits`` sorts by name)."""
    return list(cmp.by_init)


@dataclass(frozen=True)
class RowResult:
    """One row: final metric over seeds, and its paired gap to the baseline row."""

    label: str
    final: tuple[float, float, int]
    gap: tuple[float, float, int]
    ahead: int
    seeds: list[int]


def row_results(cmp: Comparison, baseline: str) -> list[RowResult]:
    m = cmp.metric
    out = []
    for label in ordered_labels(cmp):
        diff = cmp.paired_final_diff(label, baseline, m.name) if label != baseline else []
        out.append(RowResult(label, mean_std(cmp.final(label)), mean_std(diff),
                             sum(m.is_ahead(d) for d in diff), sorted(cmp.by_init[label])))
    return out


def within_pairs(spec: AblationSpec) -> list[tuple[str, str, str]]:
    """(setting, row, baseline row) for ``spec.within``: the two values paired under each other setting."""
    if spec.within is None:
        return []
    key, value, base = spec.within
    index = [f.key for f in spec.factors].index(key)
    settings = list(dict.fromkeys(tuple(v for i, v in enumerate(row) if i != index) for row in spec.rows))
    out = []
    for rest in settings:
        def row(v, rest=rest):
            return spec.label(rest[:index] + (v,) + rest[index:])

        name = ", ".join(f.text(v) for f, v in zip([f for i, f in enumerate(spec.factors) if i != index], rest))
        out.append((name, row(value), row(base)))
    return out


def gap_closed(cmp: Comparison, low: str, mid: str, high: str) -> tuple[float, list[float]]:
    """How much of the ``high − low`` gap ``mid`` closes: ratio of mean paired gaps, and per seed."""
    name = cmp.metric.name
    seeds = sorted(set(cmp.paired_seeds(mid, low)) & set(cmp.paired_seeds(high, low)))
    if not seeds:
        return float("nan"), []
    per_seed = []
    for s in seeds:
        base = cmp.by_init[low][s].final(name)
        span = cmp.by_init[high][s].final(name) - base
        per_seed.append((cmp.by_init[mid][s].final(name) - base) / span if span else float("nan"))
    mid_gap = mean_std(cmp.paired_final_diff(mid, low, name))[0]
    high_gap = mean_std(cmp.paired_final_diff(high, low, name))[0]
    return (mid_gap / high_gap if high_gap else float("nan")), per_seed


# ----------------------------------------------------------------------------- the paper's ablations (issue 14)

_INIT = Factor("init.name")
_COMPONENTS_CMD = ("python train.py -m experiment=ablation_components seed=0,1,2 "
                   "init=default,mimetic,mimetic_qk,mimetic_vo")

ABLATIONS: tuple[AblationSpec, ...] = (
    AblationSpec(
        name="components",
        title="Which part of the init matters: QK only, VO only, both",
        experiments=("ablation_components",),
        factors=(_INIT,),
        baseline=("default",),
        rows=(("default",), ("mimetic",), ("mimetic_qk",), ("mimetic_vo",)),
        command=_COMPONENTS_CMD,
    ),
    AblationSpec(
        name="alpha_beta",
        title="α/β grid of the mimetic init (α = β within each product)",
        experiments=("ablation_alpha_beta", "ablation_components"),
        factors=(Factor("init.alpha_qk", "α_qk=β_qk={}"), Factor("init.alpha_vo", "α_vo=β_vo={}")),
        baseline=(0.7, 0.4),
        where=(("init.name", ("mimetic",)),),
        command=("python train.py -m experiment=ablation_alpha_beta seed=0,1,2 "
                 "init.alpha_qk=0.3,0.7,1.0 init.alpha_vo=0.2,0.4,0.7"),
    ),
    AblationSpec(
        name="pos_pool",
        title="Position embedding × pooling, under default and mimetic init",
        experiments=("ablation_pos_pool", "ablation_components"),
        factors=(_INIT, Factor("model.pos_embed"), Factor("model.pooling")),
        baseline=("default", "sincos", "token"),
        where=(("init.name", ("default", "mimetic")),),
        rows=tuple((i, pe, pool) for pe in ("sincos", "learned") for pool in ("token", "mean")
                   for i in ("default", "mimetic")),
        within=("init.name", "mimetic", "default"),
        command=("python train.py -m experiment=ablation_pos_pool seed=0,1,2 init=default,mimetic "
                 "model.pos_embed=sincos,learned model.pooling=token,mean"),
    ),
    AblationSpec(
        name="transfer",
        title="Gap to pre-trained: attention copied from a model trained on the other five classes",
        experiments=("transfer_target",),
        factors=(_INIT,),
        baseline=("default",),
        rows=(("default",), ("mimetic",), ("pretrained_attention",)),
        command=("python train.py -m experiment=transfer_target seed=0,1,2 init=default,mimetic && "
                 "python train.py -m experiment=transfer_target seed=0,1,2 init=pretrained_attention "
                 "init.checkpoint=<the transfer_source run directory>"),
    ),
)


def ablation_spec(name: str) -> AblationSpec:
    for spec in ABLATIONS:
        if spec.name == name:
            return spec
    raise AnalysisError(f"no ablation named {name!r}; known: {', '.join(s.name for s in ABLATIONS)}")
