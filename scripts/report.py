"""The reproduction report: every claim of the papers, its number, ours, and a status.

    python scripts/report.py                                        # -> outputs/README.md
    python scripts/report.py --out results/README.md --readme README.md

Reads results/claims.yaml (the claims, their paper-scale experiments and CPU evidence),
results/paper_numbers.yaml (the paper's numbers with provenance) and the run directories the
claims name (relative to --base, default the repository), and writes one markdown page:
a status table and one section per claim with the command, the paper's number and source,
our numbers (mean ± std, n, paired gap, seeds ahead) with machine and date. Paper-scale runs
are looked for in every folder given with --paper-scale-runs (default: runs).

--readme FILE also rewrites FILE's status table between the lines
<!-- reproduction-status:start --> and <!-- reproduction-status:end -->, so README's headline
stays the report's. An existing report made from other inputs is replaced only with --overwrite.
Errors print `error: ...` and exit 2, writing nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mimetic.analysis import run_script
from mimetic.analysis.outputs import decide, fingerprint, refusal
from mimetic.analysis.paper import load_paper_numbers
from mimetic.analysis.reproduction import RunCache, evaluate, load_claims, render_report, replace_block, status_table
from mimetic.train.rundir import write_bytes_atomic

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- reproduction-status:start -->", "<!-- reproduction-status:end -->"
STAMP = "<!-- report inputs: {} -->"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--claims", type=Path, default=ROOT / "results" / "claims.yaml")
    parser.add_argument("--paper-numbers", type=Path, default=ROOT / "results" / "paper_numbers.yaml")
    parser.add_argument("--base", type=Path, default=ROOT, help="folder the claims' run folders are relative to")
    parser.add_argument("--paper-scale-runs", nargs="+", default=["runs"],
                        help="folders (relative to --base) where paper-scale runs are looked for")
    parser.add_argument("--out", type=Path, default=Path("outputs/README.md"))
    parser.add_argument("--readme", type=Path, default=None, help="also update this file's status table")
    parser.add_argument("--overwrite", action="store_true", help="replace a report made from other inputs")
    return parser.parse_args(argv)


def _stamp_of(text: str) -> str | None:
    head = STAMP.split("{}")[0]
    for line in text.splitlines():
        if line.startswith(head):
            return line[len(head):].split(" ")[0]
    return None


def make_report(args) -> list[str]:
    claims = load_claims(args.claims)
    results = evaluate(claims, load_paper_numbers(args.paper_numbers), RunCache(args.base),
                       tuple(args.paper_scale_runs))
    inputs = [{"claim": r.claim.id, "runs": sorted(str(run.path) + str(run.finished_at) for m in
                                                   [r.paper_scale, *r.evidence] if m and m.cmp for run in m.cmp.runs)}
              for r in results]
    stamp = fingerprint([inputs, args.claims.read_text(), args.paper_numbers.read_text()])
    text = render_report(results, STAMP.format(stamp))
    out = Path(args.out)
    old = out.read_text() if out.exists() else None
    decision = decide(out, stamp, _stamp_of(old) if old else None, args.overwrite, "report")
    if decision.refused:
        raise refusal([decision], "e.g. --out outputs/README.md")
    said = []
    if old == text:
        said.append(f"{out} unchanged (same inputs)")
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(out, text.encode())
        said.append(f"wrote {out} ({decision.action})")
    if args.readme:
        link = os.path.relpath(out, args.readme.parent)
        readme = args.readme.read_text()
        updated = replace_block(readme, status_table(results, link), START, END)
        if updated != readme:
            write_bytes_atomic(args.readme, updated.encode())
            said.append(f"updated the status table in {args.readme}")
        else:
            said.append(f"{args.readme}: status table already current")
    return said + [f"{r.claim.id}: {r.status}" for r in results]


def main(argv=None) -> int:
    return run_script(make_report, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
