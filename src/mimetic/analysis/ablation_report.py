"""The markdown section of one ablation: its rows against the baseline, per epoch, and its figures.

Sections are stamped and merged exactly like the experiment sections of
``analysis.report`` (``scripts/make_tables.py --ablations ...``), so regenerating one
ablation keeps the others and never replaces results made from other runs.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mimetic.analysis.ablation_figures import plot_bars, plot_grid
from mimetic.analysis.ablations import (
    AblationSpec,
    config_values,
    gap_closed,
    ordered_labels,
    row_results,
    within_pairs,
)
from mimetic.analysis.figures import plot_curves
from mimetic.analysis.report import _STAMP, Section, provenance
from mimetic.analysis.tables import Comparison, _markdown, mean_std

SECTION_PREFIX = "ablation "  # "## ablation components": never the name of an experiment section


@dataclass(frozen=True)
class FigureJob:
    """One figure of a section: where it goes and how it is drawn (``draw(path, stamp)``)."""

    path: Path
    draw: Callable[[Path, str], None]


def figure_jobs(spec: AblationSpec, cmp: Comparison, folder: Path) -> list[FigureJob]:
    """Bars for every ablation, the heat map for a two-factor grid, curves for the init comparisons."""
    base = folder / f"ablations_{spec.name}"  # "ablations_": never an experiment's curve file name
    jobs = [FigureJob(base.with_name(base.name + "_bars.png"),
                      lambda path, stamp: plot_bars(cmp, spec.title, path, stamp))]
    if len(spec.factors) == 2:
        jobs.append(FigureJob(base.with_name(base.name + "_grid.png"),
                              lambda path, stamp: plot_grid(cmp, spec, path, stamp)))
    if len(spec.factors) == 1 and cmp.xs():
        jobs.append(FigureJob(base.with_name(f"{base.name}_curves.png"),
                              lambda path, stamp: plot_curves(cmp, path, stamp=stamp)))
    return jobs


def rows_table(spec: AblationSpec, cmp: Comparison) -> str:
    m = cmp.metric
    better = "higher" if m.higher_is_better else "lower"
    header = ["row", "n", m.header("final"), m.header("best"), f"paired gap to {spec.baseline_label} "
              f"({m.gap_unit or m.unit})", f"seeds ahead ({better} is better)", "seeds"]
    rows = []
    for r in row_results(cmp, spec.baseline_label):
        baseline = r.label == spec.baseline_label
        rows.append([f"**{r.label}** (baseline)" if baseline else r.label, str(r.final[2]), m.format(*r.final[:2]),
                     m.format(*mean_std(cmp.best(r.label))[:2]),
                     "–" if baseline else m.format(r.gap[0], r.gap[1], signed=True),
                     "–" if baseline else f"{r.ahead}/{r.gap[2]}", ",".join(map(str, r.seeds))])
    return _markdown(header, rows)


def epoch_gap_table(spec: AblationSpec, cmp: Comparison) -> str:
    """The paired gap of every row to the baseline at every evaluation (one column per row)."""
    m, base = cmp.metric, spec.baseline_label
    others = [label for label in ordered_labels(cmp) if label != base and cmp.paired_seeds(label, base)]
    if not others or not cmp.xs():
        return ""
    columns = [cmp.paired_curve_diff(label, base) for label in others]
    rows = [[str(x)] + [m.format(col[i][0], col[i][1], signed=True) for col in columns]
            for i, x in enumerate(cmp.xs())]
    return _markdown([cmp.x_key] + [f"{label} − baseline" for label in others], rows)


def within_table(spec: AblationSpec, cmp: Comparison) -> str:
    """``spec.within``'s two values paired under each setting of the other factors."""
    m = cmp.metric
    rows = []
    for setting, a, b in within_pairs(spec):
        if a not in cmp.by_init or b not in cmp.by_init:
            continue
        diff = cmp.paired_final_diff(a, b)
        gap = mean_std(diff)
        rows.append([setting, m.format(*mean_std(cmp.final(b))[:2]), m.format(*mean_std(cmp.final(a))[:2]),
                     m.format(gap[0], gap[1], signed=True), f"{sum(m.is_ahead(d) for d in diff)}/{len(diff)}"])
    if not rows:
        return ""
    _, value, base = spec.within
    return _markdown(["setting", f"{base}", f"{value}", f"paired gap {value} − {base} ({m.gap_unit or m.unit})",
                      "seeds ahead"], rows)


def grid_table(spec: AblationSpec, cmp: Comparison) -> str:
    """A two-factor ablation as a grid: rows = first factor, columns = second; mean ± std (n)."""
    m = cmp.metric
    first, second = spec.factors
    cells: dict[tuple[str, str], str] = {}
    values = ([], [])
    for label in ordered_labels(cmp):
        run = next(iter(cmp.by_init[label].values()))
        cfg = config_values(run)
        a, b = str(cfg.get(first.key)), str(cfg.get(second.key))
        for v, seen in ((a, values[0]), (b, values[1])):
            if v not in seen:
                seen.append(v)
        final = mean_std(cmp.final(label))
        cells[(a, b)] = f"{m.format(*final[:2])} (n={final[2]})"
    rows_sorted, cols_sorted = sorted(values[0], key=float), sorted(values[1], key=float)
    header = [f"{first.text('·')} \\ {second.text('·')}"] + [second.text(c) for c in cols_sorted]
    rows = [[first.text(r)] + [cells.get((r, c), "–") for c in cols_sorted] for r in rows_sorted]
    return _markdown(header, rows)


def recorded_commands(cmp: Comparison) -> list[str]:
    """One command per set of recorded overrides (seeds merged): exactly what trained these runs."""
    groups: dict[tuple[str, ...], list[int]] = {}
    for run in cmp.runs:
        overrides = run.overrides
        if overrides is None:
            overrides = [f"experiment={run.experiment}", f"init={run.init}", "(overrides not recorded)"]
        groups.setdefault(tuple(o for o in overrides if not o.startswith("seed=")), []).append(run.seed)
    return [f"- `{' '.join(['python', 'train.py', '-m', *(shlex.quote(o) for o in others)])} "
            f"seed={','.join(map(str, sorted(seeds)))}`" for others, seeds in sorted(groups.items())]


def copied_attention_note(cmp: Comparison) -> list[str]:
    """For rows that copied attention from a run: how much diagonal structure that attention has.

    A "pre-trained" source is only a fair reference if its attention learned the structure the
    mimetic init imitates (+diagonal QK, -diagonal VO); this says whether it did, from the
    source run's own checkpoint, beside the mimetic init's values.
    """
    from mimetic.analysis.products import model_products, strength_by_depth
    from mimetic.analysis.run_models import model_at_step0, trained_model

    sources = {str(config_values(run).get("init.checkpoint")) for runs in cmp.by_init.values()
               for run in runs.values() if config_values(run).get("init.checkpoint")}
    def mean_strength(model) -> str:
        qk, vo = strength_by_depth(model_products(model, ""))
        return f"QK {sum(qk) / len(qk):+.3f}, VO {sum(vo) / len(vo):+.3f}"

    mimetic = next(iter(cmp.by_init.get("mimetic", {}).values()), None)
    reference = f"; mimetic init's, at step 0 of {mimetic.path.name}: {mean_strength(model_at_step0(mimetic.path))}" \
        if mimetic is not None else ""
    lines = []
    for source in sorted(sources):
        path = Path(source)
        if not (path / "config.yaml").is_file():
            continue  # a checkpoint file, not a run of this project: nothing to read its recipe from
        lines.append(f"Diagonal strength of the copied attention (cosine of each product with I, mean over layers; "
                     f"run {path.name}, trained): {mean_strength(trained_model(path))}{reference}.")
    return lines


def render_ablation_section(spec: AblationSpec, cmp: Comparison, stamp: str,
                            figures: list[str] = ()) -> Section:
    m = cmp.metric
    name = SECTION_PREFIX + spec.name
    lines = [f"## {name}", _STAMP.format(stamp), "", f"**{spec.title}.**", "",
             f"- sweep: `{spec.command}`"]
    lines += provenance(cmp, commands=[])  # the recorded commands go in the <details> block below
    lines += [*[f"- {note}" for note in spec.notes], ""]
    lines += [rows_table(spec, cmp), ""]
    if len(spec.factors) == 2:
        lines += [f"Final {m.title} on the grid:", "", grid_table(spec, cmp), ""]
    within = within_table(spec, cmp)
    if within:
        lines += [f"{spec.within[1]} against {spec.within[2]} within each setting (final {m.title}):", "", within, ""]
    if spec.name == "transfer" and {"default", "mimetic", "pretrained_attention"} <= set(cmp.by_init):
        ratio, per_seed = gap_closed(cmp, "default", "mimetic", "pretrained_attention")
        seeds = ", ".join(f"{v:+.2f}" for v in per_seed)
        lines += [f"Share of the default → pre-trained-attention gap that mimetic init closes: **{ratio:.2f}** "
                  f"(ratio of mean paired gaps; per seed: {seeds}; above 1: mimetic init ends ahead of the "
                  "copied attention).", "", *copied_attention_note(cmp), ""]
    gaps = epoch_gap_table(spec, cmp)
    if gaps:
        lines += [f"Paired gap to the baseline ({spec.baseline_label}) at every {cmp.x_key} "
                  f"({m.gap_unit or m.unit}):", "", gaps, ""]
    lines += [f"![{spec.name}]({f})" for f in figures]
    lines += ["", "<details><summary>The exact commands these runs recorded</summary>", "",
              *recorded_commands(cmp), "", "</details>", ""]
    return Section(name, "\n".join(lines))
