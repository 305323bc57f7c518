"""The reproduction report: per claim of the papers, the paper's number, ours, and a status.

``results/claims.yaml`` lists the claims (SPEC §4), the paper-scale experiment that tests each
and the CPU runs that bear on it. This module reads the run directories those entries name,
computes each comparison with the same code as the tables (``analysis.tables`` and
``analysis.ablations``), and gives every claim one status:

* ``reproduced``: paper-scale runs exist and the init is ahead of the baseline on every seed;
* ``not reproduced at paper scale``: paper-scale runs exist and it is not;
* ``CPU proxy only``: no paper-scale runs, but CPU evidence was measured;
* ``command ready, not run (needs a GPU)``: neither;
* ``not reproducible from public information``: the claim says why.

Nothing is typed in by hand: a claim whose runs are missing says so instead of a number.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mimetic.analysis import AnalysisError
from mimetic.analysis.ablations import ablation_comparison, ablation_spec, gap_closed
from mimetic.analysis.paper import PaperNumber
from mimetic.analysis.runs import Run, scan_runs
from mimetic.analysis.tables import Comparison, _markdown, group_runs, mean_std

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced at paper scale"
PROXY_ONLY = "CPU proxy only"
NOT_RUN = "command ready, not run (needs a GPU)"
NOT_REPRODUCIBLE = "not reproducible from public information"


@dataclass(frozen=True)
class Evidence:
    """One comparison of runs: an experiment's inits, or an ablation's rows."""

    name: str
    kind: str  # "experiment" | "ablation"
    runs: tuple[str, ...]
    compare: tuple[str, str]
    file: str
    command: str
    prefer: str | None = None
    note: str = ""


@dataclass(frozen=True)
class Claim:
    id: str
    claim: str
    paper: tuple[str, ...]
    paper_scale: dict | None
    evidence: tuple[Evidence, ...]
    not_reproducible: str | None = None


@dataclass
class Measured:
    """What the runs of one ``Evidence`` (or a paper-scale group) say; ``missing`` when there are none."""

    evidence: Evidence
    cmp: Comparison | None = None
    missing: str = ""
    extra: list[str] = field(default_factory=list)
    base: Path | None = None  # run folders are shown relative to it

    def line(self) -> str:
        e = self.evidence
        if self.cmp is None:
            return f"{e.name}: {self.missing}"
        m, (a, b) = self.cmp.metric, e.compare
        fa, fb = mean_std(self.cmp.final(a)), mean_std(self.cmp.final(b))
        diff = self.cmp.paired_final_diff(a, b)
        gap = mean_std(diff)
        ahead = sum(m.is_ahead(d) for d in diff)
        unit = m.gap_unit or m.unit
        return (f"{a} {m.format(*fa[:2])} vs {b} {m.format(*fb[:2])} ({m.title}, final; n = {fa[2]}/{fb[2]}); "
                f"paired gap {m.format(gap[0], gap[1], signed=True)}{f' {unit}' if unit else ''}, "
                f"{a} ahead on {ahead}/{len(diff)} seeds")

    @property
    def ahead_everywhere(self) -> bool:
        if self.cmp is None:
            return False
        a, b = self.evidence.compare
        diff = self.cmp.paired_final_diff(a, b)
        return bool(diff) and all(self.cmp.metric.is_ahead(d) for d in diff)

    def provenance(self) -> str:
        if self.cmp is None:
            return ""
        runs = self.cmp.runs
        devices = sorted({r.environment.get("device") or r.summary.get("device") or "?" for r in runs})
        days = sorted({dt.datetime.fromtimestamp(r.finished_at, dt.timezone.utc).strftime("%Y-%m-%d")
                       for r in runs})
        folders = sorted({os.path.relpath(r.path.parent, self.base) if self.base else str(r.path.parent)
                          for r in runs})
        when = days[0] if len(days) == 1 else f"{days[0]} – {days[-1]}"
        return f"{len(runs)} runs in {', '.join(folders)}; {', '.join(devices)}; finished {when}"


def _as_tuple(value) -> tuple:
    if value is None:
        return ()
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def load_claims(path: Path) -> list[Claim]:
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise AnalysisError(f"cannot read {path}: {err}") from err
    claims = []
    for entry in data.get("claims") or []:
        try:
            evidence = tuple(
                Evidence(name=str(e.get("experiment") or e.get("ablation")),
                         kind="ablation" if "ablation" in e else "experiment",
                         runs=tuple(str(r) for r in _as_tuple(e["runs"])), compare=tuple(e["compare"]),
                         file=str(e.get("file", "")), command=str(e.get("command", "")), prefer=e.get("prefer"),
                         note=str(e.get("note", "")))
                for e in entry.get("evidence") or [])
            claims.append(Claim(str(entry["id"]), str(entry["claim"]), tuple(map(str, _as_tuple(entry.get("paper")))),
                                entry.get("paper_scale"), evidence, entry.get("not_reproducible")))
        except (KeyError, TypeError, ValueError) as err:
            raise AnalysisError(f"{path}: claim {entry.get('id', '?')!r} is malformed ({err}); see the schema "
                                "at the top of the file") from err
    return claims


class RunCache:
    """Each folder scanned once, relative to ``base`` (the repository)."""

    def __init__(self, base: Path):
        self.base, self._runs = base, {}

    def runs(self, folders: tuple[str, ...]) -> tuple[list[Run], list[str]]:
        found, missing = [], []
        for folder in folders:
            path = self.base / folder
            if not path.is_dir():
                missing.append(folder)
                continue
            if folder not in self._runs:
                self._runs[folder] = scan_runs([path])[0]
            found += self._runs[folder]
        return found, missing


def measure(e: Evidence, cache: RunCache) -> Measured:
    runs, missing = cache.runs(e.runs)
    where = ", ".join(e.runs)
    if not runs:
        return Measured(e, missing=f"no finished runs in {where} on this machine; train them with `{e.command}`")
    try:
        if e.kind == "ablation":
            spec = ablation_spec(e.name)
            cmp = ablation_comparison(spec, runs)
        else:
            if not any(r.group == e.name for r in runs):
                return Measured(e, missing=f"no finished {e.name} runs in {where}; train them with `{e.command}`")
            cmp = group_runs(runs, [e.name], prefer=e.prefer)[e.name]
    except AnalysisError as err:
        return Measured(e, missing=f"cannot be tabulated: {err}")
    absent = [i for i in e.compare if i not in cmp.by_init]
    if absent:
        return Measured(e, missing=f"no runs of {', '.join(absent)} in {where}; train them with `{e.command}`")
    measured = Measured(e, cmp, base=cache.base)
    if e.name == "transfer" and "pretrained_attention" in cmp.by_init:
        ratio, per_seed = gap_closed(cmp, "default", "mimetic", "pretrained_attention")
        gap = mean_std(cmp.paired_final_diff("pretrained_attention", "default"))
        measured.extra.append(f"pretrained_attention − default: {cmp.metric.format(gap[0], gap[1], signed=True)} "
                              f"pp; mimetic closes {ratio:.0%} of that gap (per seed: "
                              f"{', '.join(f'{v:.0%}' for v in per_seed)})")
    return measured


@dataclass
class ClaimResult:
    claim: Claim
    paper: list[PaperNumber]
    paper_scale: Measured | None
    evidence: list[Measured]

    @property
    def status(self) -> str:
        if self.claim.not_reproducible:
            return NOT_REPRODUCIBLE
        if self.paper_scale is not None and self.paper_scale.cmp is not None:
            return REPRODUCED if self.paper_scale.ahead_everywhere else NOT_REPRODUCED
        if any(m.cmp is not None for m in self.evidence):
            return PROXY_ONLY
        return NOT_RUN


def evaluate(claims: list[Claim], paper_numbers: list[PaperNumber], cache: RunCache,
             paper_scale_runs: tuple[str, ...]) -> list[ClaimResult]:
    by_key = {p.key: p for p in paper_numbers}
    unknown = sorted({k for c in claims for k in c.paper if k not in by_key})
    if unknown:
        raise AnalysisError(f"claims name paper numbers that results/paper_numbers.yaml lacks: {', '.join(unknown)}")
    results = []
    for claim in claims:
        scale = None
        if claim.paper_scale:
            ps = claim.paper_scale
            e = Evidence(str(ps["group"]), "experiment", paper_scale_runs, tuple(ps["compare"]), str(ps["file"]),
                         str(ps["command"]))
            scale = measure(e, cache)
        results.append(ClaimResult(claim, [by_key[k] for k in claim.paper], scale,
                                   [measure(e, cache) for e in claim.evidence]))
    return results


def status_table(results: list[ClaimResult], link: str = "") -> str:
    """The headline table: claim, the paper's number, status, our closest measurement."""
    rows = []
    for r in results:
        paper = "; ".join(p.describe() for p in r.paper) or "–"
        ours = next((m for m in ([r.paper_scale] if r.paper_scale else []) + r.evidence if m and m.cmp), None)
        ours_text = f"`{ours.evidence.name}`: {ours.line()}" if ours else "–"
        anchor = f"[{r.claim.claim}]({link}#{r.claim.id})" if link else r.claim.claim
        rows.append([anchor, paper, f"**{r.status}**", ours_text])
    return _markdown(["claim", "paper", "status", "ours (closest measurement)"], rows)


def render_report(results: list[ClaimResult], stamp_line: str) -> str:
    lines = ["# Reproduction report", "", stamp_line, "",
             "Generated by `scripts/report.py` from `results/claims.yaml`, `results/paper_numbers.yaml` and the "
             "run directories they name; numbers are final values, mean ± sample std over seeds, gaps paired by "
             "seed. Statuses: *reproduced* (paper-scale runs, the init ahead on every seed), *not reproduced at "
             "paper scale*, *CPU proxy only*, *command ready, not run (needs a GPU)*, *not reproducible from "
             "public information*.", "", status_table(results), ""]
    for r in results:
        c = r.claim
        lines += [f"## {c.id}", "", f"**{c.claim}.** Status: **{r.status}**.", ""]
        if c.not_reproducible:
            lines += [f"Why: {c.not_reproducible}", ""]
        for p in r.paper:
            lines.append(f"- paper: {p.describe()} — source: {p.source}")
        if c.paper_scale:
            ps = c.paper_scale
            lines.append(f"- paper scale: `{ps['command']}` ({ps['file']})")
            if r.paper_scale is not None:
                lines.append(f"  - measured: {r.paper_scale.line()}" if r.paper_scale.cmp else
                             f"  - no paper-scale runs found in {', '.join(r.paper_scale.evidence.runs)}")
                if r.paper_scale.cmp:
                    lines.append(f"  - {r.paper_scale.provenance()}")
        for m in r.evidence:
            e = m.evidence
            lines.append(f"- CPU evidence, {e.kind} `{e.name}` ({e.file}){f': {e.note}' if e.note else ''}")
            lines.append(f"  - command: `{e.command}`")
            lines.append(f"  - ours: {m.line()}")
            lines += [f"  - {x}" for x in m.extra]
            if m.cmp:
                lines.append(f"  - {m.provenance()}")
        lines.append("")
    return "\n".join(lines)


def replace_block(text: str, block: str, start: str, end: str) -> str:
    """``text`` with what lies between the ``start`` and ``end`` marker lines replaced by ``block``."""
    if start not in text or end not in text:
        raise AnalysisError(f"markers {start!r} ... {end!r} not found; add them where the table belongs")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{block.strip()}\n{end}{tail}"
