"""Tables and figures from run directories: each init against default, paired by seed.

    python scripts/make_tables.py --runs runs --experiments proxy_digits --out outputs/proxy.md
    python scripts/make_tables.py --runs runs/ablations --ablations --out outputs/ablations.md

Reads each finished run (DONE) through mimetic.runtime.rundir (never the network) and writes
one markdown section per experiment: provenance (the command that trains exactly these
runs, machine, code), mean ± std over seeds, n, the paired gap at the end and at every
evaluation, the paper's number with its source where results/paper_numbers.yaml has one,
and a curve PNG. With --ablations (all, or the names given: components, alpha_beta,
pos_pool, transfer; see mimetic.analysis.ablations) the sections are ablation tables
instead: rows named by config values, paired by seed against a baseline row, with bar,
grid and curve figures. The metric is the runs' primary_metric (test_acc for older runs); "best"
and "seeds ahead" follow its direction (lower perplexity is better).

Never replaces results made from other inputs: an existing report is merged (the sections
of experiments not regenerated are kept as they are), and a section or figure is replaced
only when it was made from the same runs (its stamp says so) or with --overwrite. The
default --out is outputs/tables.md (not committed); figures go beside the report.
Errors (corrupt run files, conflicting runs, a refused overwrite) print `error: ...` and
exit with status 2, writing nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mimetic.analysis import AnalysisError, run_script
from mimetic.analysis.ablation_report import figure_jobs as ablation_figure_jobs
from mimetic.analysis.ablation_report import render_ablation_section
from mimetic.analysis.ablations import ABLATIONS, ablation_comparison, ablation_spec
from mimetic.analysis.figures import plot_curves
from mimetic.analysis.outputs import decide_figure, refusal
from mimetic.analysis.paper import load_paper_numbers
from mimetic.analysis.report import figure_link, header_text, merge_report, render_section, runs_fingerprint
from mimetic.analysis.runs import scan_runs
from mimetic.analysis.tables import PREFER, group_runs
from mimetic.runtime.rundir import write_bytes_atomic

ROOT = Path(__file__).resolve().parents[1]
PAPER_NUMBERS = ROOT / "results" / "paper_numbers.yaml"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", default=["runs"],
                        help="folders holding run directories, or run directories themselves (default: runs)")
    parser.add_argument("--experiments", nargs="*",
                        help="only these experiments (a run without one is named <dataset>-<model>); default: all")
    parser.add_argument("--out", default="outputs/tables.md",
                        help="markdown report to write or merge into (default: outputs/tables.md)")
    parser.add_argument("--figures", default=None, help="folder for the curve PNGs (default: figures/ beside --out)")
    parser.add_argument("--ablations", nargs="*", default=None, metavar="NAME",
                        help="make the ablation tables (all, or these: "
                             f"{', '.join(s.name for s in ABLATIONS)}) instead of the experiment tables")
    parser.add_argument("--metric", default=None,
                        help="tabulate this metric instead of the runs' primary_metric (e.g. test_loss)")
    parser.add_argument("--prefer", choices=PREFER, default=None,
                        help="when several finished runs share (experiment, init, seed), keep the newest/oldest")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace sections, headers and figures made from other inputs")
    parser.add_argument("--skip-corrupt", action="store_true",
                        help="leave out runs whose files cannot be read (listed in the report) instead of stopping")
    parser.add_argument("--paper-numbers", type=Path, default=PAPER_NUMBERS,
                        help="the paper's numbers with provenance (default: results/paper_numbers.yaml)")
    parser.add_argument("--title", default="Default vs mimetic init: measured results")
    parser.add_argument("--note", action="append", default=[], help="a line of context to put under the title")
    return parser.parse_args(argv)


def _display(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""


def experiment_sections(runs, unreadable, args, out, figures):
    """One section (and curve figure) per experiment, each init against default."""
    found = {run.group for run in runs}
    missing = [e for e in args.experiments or [] if e not in found]
    if missing:
        raise AnalysisError(f"no finished runs of {', '.join(missing)} under {' '.join(args.runs)} "
                            f"(experiments found: {', '.join(sorted(found)) or 'none'})")
    comparisons = group_runs(runs, args.experiments, prefer=args.prefer, metric=args.metric)
    paper = load_paper_numbers(args.paper_numbers)
    sections, jobs = [], []
    for name, cmp in comparisons.items():
        stamp = runs_fingerprint(cmp.runs)
        figure = figures / f"{name}_{cmp.metric.name}.png" if len(cmp.xs()) > 0 else None
        notes = [f"- left out (unreadable): {_first_line(u.message)}" for u in unreadable
                 if u.group in (name, None)]
        sections.append(render_section(cmp, paper, stamp, figure_link(figure, out) if figure else None,
                                       _display(args.paper_numbers), notes))
        if figure is not None:
            def draw(path, stamp, cmp=cmp):
                plot_curves(cmp, path, stamp=stamp)

            jobs.append((draw, figure, stamp, decide_figure(figure, stamp, args.overwrite)))
    return sections, jobs


def ablation_sections(runs, args, out, figures):
    """One section per ablation asked for (all when none is named), with its figures."""
    specs = [ablation_spec(name) for name in args.ablations] or list(ABLATIONS)
    sections, jobs = [], []
    for spec in specs:
        cmp = ablation_comparison(spec, runs)
        stamp = runs_fingerprint(cmp.runs)
        figs = ablation_figure_jobs(spec, cmp, figures)
        sections.append(render_ablation_section(spec, cmp, stamp, [figure_link(f.path, out) for f in figs]))
        jobs += [(f.draw, f.path, stamp, decide_figure(f.path, stamp, args.overwrite)) for f in figs]
    return sections, jobs


def make_tables(args: argparse.Namespace) -> list[str]:
    """Everything but argument parsing; returns the lines saying what was written."""
    roots = " ".join(args.runs)
    runs, unreadable = scan_runs([Path(r) for r in args.runs])
    wanted = set(args.experiments or [])
    relevant = [u for u in unreadable if not wanted or u.group is None or u.group in wanted]
    for u in unreadable:
        if u not in relevant:
            print(f"warning: ignored an unreadable run of {u.group} (not asked for): {_first_line(u.message)}",
                  file=sys.stderr)
    if relevant and not args.skip_corrupt:
        raise AnalysisError(
            f"cannot read {len(relevant)} finished run(s):\n  " + "\n  ".join(u.message for u in relevant)
            + "\nRestore or delete them, or pass --skip-corrupt to make the tables without them."
        )
    for u in relevant:
        print(f"warning: left out an unreadable run: {_first_line(u.message)}", file=sys.stderr)

    if not runs:
        raise AnalysisError(f"no finished runs (with a DONE file) under {roots}")
    out = Path(args.out)
    figures = Path(args.figures) if args.figures else out.parent / "figures"
    if args.ablations is not None:
        sections, figure_jobs = ablation_sections(runs, args, out, figures)
    else:
        sections, figure_jobs = experiment_sections(runs, relevant, args, out, figures)
    decisions = [decision for *_, decision in figure_jobs]
    existing = out.read_text() if out.exists() else None
    plan = merge_report(out, existing, header_text(args.title, args.note), sections, args.overwrite)
    refused = plan.refused + [d for d in decisions if d.refused]
    if refused:
        raise refusal(refused, f"e.g. --out outputs/{out.name}; figures go beside it")

    said = []
    for draw, figure, stamp, decision in figure_jobs:
        if decision.action == "same inputs":
            said.append(f"kept figure {figure} (already made from the same runs)")
            continue
        draw(figure, stamp)
        said.append(f"wrote figure {figure} ({'new' if decision.action == 'new' else 'replaced, --overwrite'})")
    if existing == plan.text:
        said.insert(0, f"{out} unchanged (same runs, same tables)")
        return said
    out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out, plan.text.encode())
    what = {"new": "new", "same inputs": "replaced, same runs", "overwrite": "replaced, --overwrite"}
    parts = [f"{d.what} ({what[d.action]})" for d in plan.decisions]
    head = [f"wrote {out}: " + "; ".join(parts)]
    if plan.kept:
        head.append(f"  kept the sections of other experiments: {', '.join(plan.kept)}")
    if plan.header_kept:
        head.append("  kept its existing title and notes (--overwrite regenerates them)")
    return head + said


def main(argv: list[str] | None = None) -> int:
    return run_script(make_tables, parse_args(argv))


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    sys.exit(main())
