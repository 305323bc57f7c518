"""The reproduction report: every claim of the papers, its number, ours, and a status.

    python scripts/report.py                                        # -> outputs/README.md
    python scripts/report.py --out results/README.md --readme README.md
    python scripts/report.py --runs /scratch/me/runs                # also scan another folder

Reads results/claims.yaml (the claims, their paper-scale experiments, claimed sizes and CPU
evidence), results/paper_numbers.yaml (the paper's numbers with provenance) and every finished
run below runs/ (relative to --base, default the repository: where README's commands write,
paths.runs_dir's default), recursively, plus the folders given with --runs. Each claim's runs
are selected by their recorded experiment (or <dataset>-<model>), and only runs made with the
claim's own recipe count: the page lists the others with what they change. It writes one
markdown page: a status table, the rules that decide every status, and one section per claim
with the command, the paper's number and source, our numbers (mean ± std, n, paired gap with
its 95% interval, seeds ahead) with machine and date, and an evidence record.

--readme FILE also rewrites FILE's status table between the lines
<!-- reproduction-status:start --> and <!-- reproduction-status:end -->, so README's headline
stays the report's.

Evidence is never replaced by less: a claim whose new row or section rests on fewer runs or
seeds than the one already in --out (or in README) keeps the old one, and the script says so
(e.g. in a fresh clone, where no run directory exists: they are never committed).
--replace-with-less replaces them anyway. Errors (a missing --base, a missing --runs folder,
README without its markers) print `error: ...` and exit 2, writing nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mimetic.analysis import AnalysisError, run_script
from mimetic.analysis.paper import load_paper_numbers
from mimetic.analysis.reproduction import (
    DEFAULT_RUNS,
    RunCache,
    block_of,
    evaluate,
    load_claims,
    merge_block,
    merge_page,
    replace_block,
)
from mimetic.runtime.rundir import write_bytes_atomic

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- reproduction-status:start -->", "<!-- reproduction-status:end -->"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--claims", type=Path, default=ROOT / "results" / "claims.yaml")
    parser.add_argument("--paper-numbers", type=Path, default=ROOT / "results" / "paper_numbers.yaml")
    parser.add_argument("--base", type=Path, default=ROOT,
                        help="folder that runs/ and the --runs folders are relative to (default: the repository)")
    parser.add_argument("--runs", "--paper-scale-runs", dest="runs", nargs="+", default=[], metavar="DIR",
                        help=f"more folders to scan for run directories, besides {', '.join(DEFAULT_RUNS)}/ "
                             "(--paper-scale-runs is the older name)")
    parser.add_argument("--configs", type=Path, default=ROOT / "configs",
                        help="the configs a command is composed from, to tell an override that changes the recipe "
                             "from one that repeats its value")
    parser.add_argument("--out", type=Path, default=Path("outputs/README.md"))
    parser.add_argument("--readme", type=Path, default=None, help="also update this file's status table")
    parser.add_argument("--replace-with-less", "--overwrite", dest="replace_with_less", action="store_true",
                        help="replace a claim's row and section even when the new ones rest on fewer runs or seeds "
                             "(--overwrite is the older name)")
    return parser.parse_args(argv)


def make_report(args) -> list[str]:
    if not args.base.is_dir():
        raise AnalysisError(f"--base {args.base} is not a directory; nothing was written")
    claims = load_claims(args.claims)
    cache = RunCache(args.base, DEFAULT_RUNS, tuple(args.runs))
    results = evaluate(claims, load_paper_numbers(args.paper_numbers), cache, args.configs)
    out = Path(args.out)
    old = out.read_text() if out.exists() else None
    text, notes = merge_page(results, old, args.replace_with_less, cache)
    said = [f"{out}: {note}" for note in notes]
    readme_text = None
    if args.readme:
        readme = args.readme.read_text()
        link = os.path.relpath(out, args.readme.parent)
        block, readme_notes = merge_block(results, block_of(readme, START, END), link, args.replace_with_less, cache,
                                          old)
        said += [f"{args.readme}: {note}" for note in readme_notes]
        readme_text = (readme, replace_block(readme, block, START, END))
    # Everything is computed: now write (nothing was written if anything above failed).
    if old == text:
        said.append(f"{out} unchanged")
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(out, text.encode())
        said.append(f"wrote {out}")
    if readme_text is not None:
        before, after = readme_text
        if after != before:
            write_bytes_atomic(args.readme, after.encode())
            said.append(f"updated the status table in {args.readme}")
        else:
            said.append(f"{args.readme}: status table already current")
    scanned = ", ".join(f"{f}/" for f in cache.scanned) or "no run folder (none exists here)"
    said.append(f"scanned {scanned}: {len(cache.all_runs())} finished runs")
    kept = {r.claim.id for r in results if any(n.startswith(f"kept {r.claim.id}'s") for n in notes)}
    return said + [f"{r.claim.id}: {r.status}" + (" (found now; the page keeps its earlier row)"
                                                  if r.claim.id in kept else "") for r in results]


def main(argv=None) -> int:
    return run_script(make_report, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
