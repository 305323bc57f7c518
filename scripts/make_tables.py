"""Every table, its figures and the reproduction report, from run directories and results/tables.yaml.

    python scripts/make_tables.py --all                     # every committed result: the one command
    python scripts/make_tables.py --tables components       # one table (into outputs/ unless --out results)
    python scripts/make_tables.py --report                  # the reproduction report (outputs/README.md)
    python scripts/make_tables.py --list                    # each table: experiments, grid, command, file
    python scripts/make_tables.py --experiments proxy_digits --out outputs/digits.md   # any experiment, ad hoc

--all writes every table of results/tables.yaml into the results file it names (under --out, default
results/), the tables' curves and bars (results/figures/), the figures drawn from models that
results/tables.yaml lists (scripts/make_figures.py's kinds), the reproduction report
(results/README.md: every claim of results/claims.yaml, its paper number, ours and a status) and
README's status table (--readme, default README.md). A table is trained by its experiment's grid:
`python train.py -m experiment=NAME` (--list prints each grid). Without results/tables.yaml's help,
--experiments (or no option) makes one table per experiment found, each init against default.

Reads each finished run (DONE) below --runs (default runs/; none there is no error: a fresh clone has
none) through mimetic.runtime.rundir, never the network. Only runs of a table's recipe count (its
experiment file, see mimetic.analysis.specs); the others are listed. Statistics: mean ± sample std and
n per row, the gap paired by seed at the end and at every evaluation, its 95% t-interval, seeds ahead in
the metric's direction, the paper's number with its source.

Never replaces measured results with less evidence, nor results made from other inputs: a section or
figure (or a claim's row and section) that rests on more runs or seeds than the new one is kept as it is,
with a line saying so (--replace-with-less replaces it); one made from other runs is replaced only with
--overwrite; sections of other tables are kept. With no run directories at all, --all leaves every
committed file byte for byte as it is. Errors (corrupt run files, two runs in one row × seed slot, runs
of two recipes in one table, a refused overwrite) print `error: ...` and exit 2, writing nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mimetic.analysis import AnalysisError, run_script
from mimetic.analysis.claims import block_of, evaluate, load_claims, merge_block, merge_page, replace_block, tables_of
from mimetic.analysis.figures import draw_figure, figure_paths
from mimetic.analysis.outputs import decide_figure, figure_evidence, refusal
from mimetic.analysis.paper import load_paper_numbers
from mimetic.analysis.runs import scan_runs
from mimetic.analysis.sections import (
    Context,
    figure_link,
    header_text,
    merge_report,
    render_section,
    runs_fingerprint,
)
from mimetic.analysis.specs import Recipes, commands, grid_text, load_specs, tabulate
from mimetic.analysis.tables import PREFER
from mimetic.runtime.rundir import write_bytes_atomic

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
START, END = "<!-- reproduction-status:start -->", "<!-- reproduction-status:end -->"
HOW = {"new": "new", "same inputs": "replaced, same runs", "refused": "refused", "overwrite": "replaced, --overwrite",
       "less": "replaced with less, --replace-with-less"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_mutually_exclusive_group()
    what.add_argument("--all", action="store_true", help="every table, figure and the report (default --out results)")
    what.add_argument("--tables", nargs="+", metavar="NAME", help="these tables of results/tables.yaml")
    what.add_argument("--report", action="store_true", help="only the reproduction report (and --readme)")
    what.add_argument("--list", action="store_true", help="list the tables: experiments, grid, commands, file")
    what.add_argument("--experiments", nargs="*",
                      help="ad hoc: one table per experiment (a run without one is <dataset>-<model>); default all")
    p.add_argument("--runs", nargs="+", default=None,
                   help="folders holding run directories, or run directories themselves (default: runs, if there)")
    p.add_argument("--base", type=Path, default=None,
                   help="the folder --runs and the report's run folders are relative to (default: here)")
    p.add_argument("--out", default=None, help="ad hoc: the report file (default outputs/tables.md); otherwise the "
                                               "results folder (default: results/ with --all, else outputs/)")
    p.add_argument("--figures", default=None, help="folder for the figures (default: figures/ beside --out)")
    p.add_argument("--readme", type=Path, default=None,
                   help="also update this file's status table (default with --all: README.md)")
    p.add_argument("--specs", type=Path, default=RESULTS / "tables.yaml")
    p.add_argument("--claims", type=Path, default=RESULTS / "claims.yaml")
    p.add_argument("--paper-numbers", type=Path, default=RESULTS / "paper_numbers.yaml")
    p.add_argument("--configs", type=Path, default=ROOT / "configs", help="the experiment files (grids, recipes)")
    p.add_argument("--metric", default=None, help="tabulate this metric instead of the runs' primary_metric")
    p.add_argument("--prefer", choices=PREFER, default=None,
                   help="when several finished runs share a (row, seed) slot, keep the newest/oldest")
    p.add_argument("--overwrite", action="store_true", help="replace sections and figures made from other runs")
    p.add_argument("--replace-with-less", action="store_true",
                   help="replace sections, figures and claims even when the new ones rest on fewer runs or seeds")
    p.add_argument("--skip-corrupt", action="store_true",
                   help="leave out runs whose files cannot be read (listed in the report) instead of stopping")
    p.add_argument("--title", default="Default vs mimetic init: measured results", help="ad hoc: a new file's title")
    p.add_argument("--note", action="append", default=[], help="ad hoc: a line of context under the title")
    args = p.parse_args(argv)
    args.adhoc = not (args.all or args.tables or args.report or args.list)
    if args.out is None:
        args.out = "outputs/tables.md" if args.adhoc else str(RESULTS) if args.all else "outputs"
    if args.all and args.readme is None:
        args.readme = ROOT / "README.md"
    return args


def _display(path: Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""


def _scan(args, groups: set[str] | None):
    """The finished runs, and a note per unreadable one that matters (an error unless --skip-corrupt)."""
    base = args.base or Path.cwd()
    if not base.is_dir():
        raise AnalysisError(f"--base {base} is not a directory; nothing was written")
    given = args.runs is not None
    roots = [base / r for r in (args.runs or ["runs"])]
    if not given:
        roots = [r for r in roots if r.is_dir()]  # a fresh clone has no runs/: nothing to read, no error
    runs, unreadable = scan_runs(roots) if roots else ([], [])
    relevant = [u for u in unreadable if groups is None or u.group is None or u.group in groups]
    for u in unreadable:
        if u not in relevant:
            print(f"warning: ignored an unreadable run of {u.group} (not asked for): {_first_line(u.message)}",
                  file=sys.stderr)
    if relevant and not args.skip_corrupt:
        raise AnalysisError(
            f"cannot read {len(relevant)} finished run(s):\n  " + "\n  ".join(u.message for u in relevant)
            + "\nRestore or delete them, or pass --skip-corrupt to make the tables without them.")
    for u in relevant:
        print(f"warning: left out an unreadable run: {_first_line(u.message)}", file=sys.stderr)
    return runs, relevant, roots, base


class Plan:
    """Everything to write, decided before anything is: files' new texts and the figures to draw."""

    def __init__(self, overwrite: bool, replace_with_less: bool):
        self.overwrite, self.replace_with_less = overwrite, replace_with_less
        self.files: list[tuple[Path, str | None, str]] = []  # path, old text, new text
        self.figures: list[tuple] = []  # (draw, path, stamp, evidence, decision)
        self.refused: list = []
        self.said: list[str] = []

    def section_file(self, path: Path, header: str, items: list) -> None:
        """``items``: (section, replaces, figures {kind: (path, draw)}, stamp, evidence)."""
        existing = path.read_text() if path.exists() else None
        plan = merge_report(path, existing, header, [(s, r) for s, r, *_ in items], self.overwrite,
                            self.replace_with_less)
        self.refused += plan.refused
        parts = []
        for d, (_, _, figures, stamp, evidence) in zip(plan.decisions, items):
            if d.action == "kept":
                self.said.append(d.kept_line())
                continue
            parts.append(f"{d.what} ({HOW[d.action]})")
            if not d.writes:
                continue
            allowed = self.overwrite or d.action in ("overwrite", "less")
            for figure, draw in figures.values():
                fd = decide_figure(figure, stamp, allowed, evidence, self.replace_with_less)
                (self.refused if fd.refused else self.figures).append(fd if fd.refused else
                                                                      (draw, figure, stamp, evidence, fd))
        if plan.text != existing:
            self.files.append((path, existing, plan.text))
            self.said.append(f"wrote {path}: " + "; ".join(parts))
            if plan.kept:
                self.said.append(f"  kept the sections of other tables: {', '.join(plan.kept)}")
            if plan.header_kept and existing is not None and any(d.writes for d in plan.decisions):
                self.said.append("  kept its existing title and notes (--overwrite regenerates them)")
        else:
            self.said.append(f"{path} unchanged" + (" (same runs, same tables)" if parts else ""))

    def text_file(self, path: Path, old: str | None, new: str, what: str) -> None:
        if old == new:
            self.said.append(f"{path}: {what} already current")
        else:
            self.files.append((path, old, new))
            self.said.append(f"wrote {path} ({what})")

    def write(self, elsewhere: str) -> list[str]:
        if self.refused:
            raise refusal(self.refused, elsewhere)
        for draw, figure, stamp, evidence, decision in self.figures:
            if decision.action == "same inputs":
                self.said.append(f"kept figure {figure} (already made from the same inputs)")
                continue
            draw(figure, stamp, evidence)
            self.said.append(f"wrote figure {figure} ({'new' if decision.action == 'new' else decision.action})")
        for path, _, text in self.files:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(path, text.encode())
        return self.said


def _figure_items(spec, result, report: Path, folder: Path):
    cmp = result.cmp
    paths = figure_paths(spec, cmp, folder)

    def drawer(kind):
        return lambda path, stamp, evidence: draw_figure(kind, spec, cmp, path, stamp, evidence)

    figures = {kind: (path, drawer(kind)) for kind, path in paths.items()}
    links = {kind: figure_link(path, report) for kind, path in paths.items()}
    return figures, links


def _sections(args, plan: Plan, specs, results, runs, notes, ctx_base: dict) -> None:
    """Every table asked for, into the file its spec names (ad hoc: into --out)."""
    by_file: dict[Path, list] = {}
    for name, result in results.items():
        spec = result.spec
        path = Path(args.out) if spec.adhoc else Path(args.out) / spec.file
        folder = Path(args.figures) if args.figures else path.parent / "figures"
        if result.cmp is None or result.missing:
            why = result.missing or (f"{len(result.found)} run(s), none on recipe" if result.found else "no runs")
            train = "" if result.found else f"; train it with `{' && '.join(commands(spec, ctx_base['recipes']))}`"
            plan.said.append(f"{spec.name}: nothing to write ({why}); the committed section, if any, is kept{train}")
            continue
        figures, links = _figure_items(spec, result, path, folder)
        mine = [n for n in notes if spec.adhoc and n[0] in (name, None)]
        ctx = Context(**ctx_base, figures=links, notes=[f"- left out (unreadable): {m}" for _, m in mine])
        section = render_section(result, ctx)
        by_file.setdefault(path, []).append((section, spec.replaces, figures, runs_fingerprint(result.cmp.runs),
                                             result.evidence))
    for path, items in by_file.items():
        title = args.title if args.adhoc else specs.files.get(path.name, path.stem)
        plan.section_file(path, header_text(title, args.note if args.adhoc else []), items)


def _report(args, plan: Plan, specs, results, recipes, roots, base) -> None:
    claims = load_claims(args.claims, specs)
    folders = [os.path.relpath(r, base) for r in roots] or ["runs"]

    def relative(path: Path) -> str:
        return os.path.relpath(path, base)

    where = ", ".join(f"{f}/" for f in folders)  # the same words with or without the folder: pages never differ
    evaluated = evaluate(claims, load_paper_numbers(args.paper_numbers), results, recipes, where, relative)
    out = Path(args.out) / "README.md"
    old = out.read_text() if out.exists() else None
    text, notes = merge_page(evaluated, old, args.replace_with_less, folders)
    plan.said += [f"{out}: {note}" for note in notes]
    plan.text_file(out, old, text, "the reproduction report")
    if args.readme:
        readme = args.readme.read_text()
        block, readme_notes = merge_block(evaluated, block_of(readme, START, END),
                                          os.path.relpath(out, args.readme.parent), args.replace_with_less)
        plan.said += [f"{args.readme}: {note}" for note in readme_notes]
        plan.text_file(args.readme, readme, replace_block(readme, block, START, END), "status table")
    kept = {r.claim.id for r in evaluated if any(n.startswith(f"kept {r.claim.id}'s") for n in notes)}
    plan.said += [f"{r.claim.id}: {r.status}" + (" (found now; the page keeps its earlier row)"
                                                 if r.claim.id in kept else "") for r in evaluated]


def _with(evidence, draw, path, stamp) -> None:
    with figure_evidence(evidence):
        draw(path, stamp)


def list_tables(specs, recipes) -> list[str]:
    lines = []
    for spec in specs.tables.values():
        train = commands(spec, recipes)
        lines += [f"{spec.name} -> results/{spec.file}: {spec.title}",
                  f"  runs of: {', '.join(spec.experiments)}"
                  + (f" (and, as aliases, {', '.join(spec.aliases)})" if spec.aliases else ""),
                  f"  train: {' && '.join(train)}", f"  grid: {grid_text(spec, recipes)}",
                  f"  table: python scripts/make_tables.py --tables {spec.name}"]
    return lines


def make_tables(args: argparse.Namespace) -> list[str]:
    """Everything but argument parsing; returns the lines saying what was written."""
    specs = load_specs(args.specs, args.configs)
    recipes = Recipes(args.configs)
    if args.list:
        return list_tables(specs, recipes)
    if args.adhoc:
        chosen, groups = None, set(args.experiments) if args.experiments else None
    else:
        names = list(specs.tables) if args.all else args.tables or tables_of(load_claims(args.claims, specs))
        chosen = [specs.table(n) for n in names]
        groups = {g for s in chosen for g in (*s.experiments, *s.aliases)}
    runs, unreadable, roots, base = _scan(args, groups)
    notes = [(u.group, _first_line(u.message)) for u in unreadable]
    if args.adhoc:
        if not runs:
            raise AnalysisError(f"no finished runs (with a DONE file) under {' '.join(map(str, roots)) or 'runs'}")
        found = sorted({run.group for run in runs})
        missing = [e for e in args.experiments or [] if e not in found]
        if missing:
            raise AnalysisError(f"no finished runs of {', '.join(missing)} under {' '.join(map(str, roots))} "
                                f"(experiments found: {', '.join(found) or 'none'})")
        chosen = [specs.adhoc(g) for g in (args.experiments or found)]
    results = {s.name: tabulate(s, runs, recipes, args.prefer, args.metric) for s in chosen}
    problems = [r.problem for r in results.values() if r.problem]
    if problems:
        raise AnalysisError("\n\n".join(problems))
    plan = Plan(args.overwrite, args.replace_with_less)
    ctx_base = {"paper": load_paper_numbers(args.paper_numbers), "paper_where": _display(args.paper_numbers),
                "recipes": recipes}
    if not args.report:
        _sections(args, plan, specs, results, runs, notes, ctx_base)
    if args.all or args.report:
        _report(args, plan, specs, results, recipes, roots, base)
    if args.all:
        from make_figures import figure_jobs, parse_args as figure_args  # noqa: I001 (scripts/ is on the path)

        fig = figure_args(["--declared", "--out", str(Path(args.figures) if args.figures else Path(args.out) /
                                                      "figures"), "--specs", str(args.specs)])
        fig.overwrite, fig.replace_with_less, fig.prefer, fig.base = args.overwrite, args.replace_with_less, \
            args.prefer, base
        fig.runs, fig.quiet_pretrained = [str(r) for r in roots], True
        jobs, lines = figure_jobs(runs, fig)
        plan.said += lines
        plan.refused += [j.decision for j in jobs if j.decision.refused]
        for j in jobs:
            if j.decision.action == "kept":
                plan.said.append(j.decision.kept_line())
            elif not j.decision.refused:
                plan.figures.append((lambda path, stamp, evidence, j=j: _with(evidence, j.draw, path, stamp), j.path,
                                     j.stamp, j.evidence, j.decision))
    if not runs:
        plan.said.append(f"no finished runs under {', '.join(map(str, roots)) or 'runs/ (not on this machine)'}: "
                         "every committed measured result is kept as it is")
    return plan.write("e.g. --out outputs; figures go beside it")


def main(argv: list[str] | None = None) -> int:
    return run_script(make_tables, parse_args(argv))


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
