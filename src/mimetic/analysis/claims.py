"""The reproduction report: per claim of the papers (results/claims.yaml), the paper's number, ours, a status.

A claim names tables of results/tables.yaml and two of their rows: the same runs, recipe check and statistics
as the tables ``make_tables.py`` renders. Every claim gets one status by ``RULES``, which the page prints. Each
claim's section and README's row carry an evidence record; a claim whose new evidence rests on fewer runs or
seeds keeps its old row and section (``replace_with_less`` replaces them): a fresh clone has no run directories.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mimetic.analysis import AnalysisError
from mimetic.analysis.paper import PaperNumber
from mimetic.analysis.runs import Run
from mimetic.analysis.sections import split_report
from mimetic.analysis.specs import (
    FREE_KEYS,
    OffRecipe,
    Recipes,
    Specs,
    TableResult,
    TableSpec,
    _as_list,
    commands,
    comparison,
)
from mimetic.analysis.tables import Comparison, Interval, gap_closed, markdown, mean_std, t_interval

MIN_SEEDS = 3  # paired seeds a comparison needs before it may say anything

REPRODUCED = "reproduced"
SMALLER = "smaller than claimed"
NOT_REPRODUCED = "not reproduced at paper scale"
TOO_FEW_SEEDS = "too few seeds at paper scale"
PROXY_AHEAD = "CPU proxy: ahead"
PROXY_BEHIND = "CPU proxy: behind"
PROXY_LEVEL = "CPU proxy: level"
PROXY_TOO_FEW = "CPU proxy: too few seeds"
OFF_RECIPE = "off-recipe runs only"
NOT_RUN = "command ready, not run (needs a GPU)"
NOT_REPRODUCIBLE = "not reproducible from public information"
PROXY_ONLY = "CPU proxy only"  # the single CPU status of earlier pages; rows kept from them may show it

RULES: tuple[tuple[str, str], ...] = (
    (REPRODUCED, f"paper-scale runs on recipe, ≥ {MIN_SEEDS} paired seeds, and the 95% interval of the paired "
                 "gap lies above zero and reaches the claimed size (its upper end ≥ the size; where the paper "
                 "gives no size, above zero is enough)."),
    (SMALLER, f"paper-scale runs on recipe, ≥ {MIN_SEEDS} paired seeds, the interval above zero but wholly below "
              "the claimed size."),
    (NOT_REPRODUCED, f"paper-scale runs on recipe, ≥ {MIN_SEEDS} paired seeds, and the interval includes zero "
                     "or lies below it (the init is level or behind)."),
    (TOO_FEW_SEEDS, f"paper-scale runs on recipe, but fewer than {MIN_SEEDS} paired seeds (a row compared may "
                    "have no runs at all); nothing is concluded."),
    (PROXY_AHEAD, f"no countable paper-scale runs; the first CPU evidence with ≥ {MIN_SEEDS} paired seeds on "
                  "recipe has its interval above zero. A CPU proxy never makes a paper claim reproduced, "
                  "whatever the size of its gap."),
    (PROXY_BEHIND, "as above, the interval below zero."),
    (PROXY_LEVEL, "as above, the interval includes zero."),
    (PROXY_TOO_FEW, f"CPU runs on recipe, but no CPU evidence has {MIN_SEEDS} paired seeds."),
    (OFF_RECIPE, "runs were found, but none was made with the claim's recipe (smoke runs, other epochs, ...): "
                 "listed with what they change, never counted."),
    (NOT_RUN, "no runs: the command is given."),
    (NOT_REPRODUCIBLE, "results/claims.yaml says why the claim cannot be checked from public information."),
)


def rules_text() -> str:
    """The page's "Rules" section: what makes a run count, the statistics, one line per status."""
    free = ", ".join(f"`{k}.*`" if k in ("logger", "paths", "hydra") else f"`{k}`" for k in FREE_KEYS)
    lines = [
        "## Rules", "",
        "How each status is decided (`mimetic.analysis.claims`, on the tables of `mimetic.analysis.specs`); every "
        "number comes from run directories.", "",
        "- **Which runs count.** The report scans `runs/` (where every README command writes: `paths.runs_dir`), "
        "recursively, and any folder given with `--runs`, and selects a table's runs by their recorded experiment "
        "(or `<dataset>-<model>` for runs made without one; older experiment names the table lists as aliases "
        "too), never by folder. A table's recipe is its experiment file, whose grid (`hydra.sweeper.params`) "
        "trains it with `python train.py -m experiment=NAME`. A run counts only if it is **on recipe**: its "
        "`config.yaml` records its command-line overrides (`_run.overrides`), `trainer.smoke` is off, and each "
        "override touches only the grid's keys, the table's row factors, `init`, or keys that do not change what "
        f"is computed or where an init reads its weights ({free}), or sets a key to the value the experiment (with "
        "the run's init) already gives it. The runs counted must also agree on every other config value and on "
        "their data's fingerprint. Other runs are listed under the claim with what they change (e.g. \"override "
        "trainer.epochs=2 (the recipe: trainer.epochs=15)\") and never counted.",
        "- **Statistics.** Final values; gaps paired by seed (row − baseline, per seed). The interval is the "
        "95% t-interval over the paired differences (mean ± t(n−1) · std / √n); \"above zero\" means the "
        "row is ahead in the metric's direction (for perplexity: lower). A comparison needs at least "
        f"{MIN_SEEDS} paired seeds.",
        "- **Claimed size.** Where the paper gives a number, `effect` in results/claims.yaml holds it with the "
        "paper number it is read from and how (e.g. \"over 5%\" → 5.0 pp).",
        "- **Gap to a reference** (claims with a `reference` row, e.g. pre-trained attention): runs of the row, "
        "the baseline and the reference on the same seeds are needed; the share of the gap closed, "
        "(row − baseline) / (reference − baseline), is shown per seed and pooled (ratio of the mean gaps). The "
        "claimed size is the reference itself: reproduced needs the row ahead of the baseline and the interval "
        "of row − reference reaching zero (not clearly behind the reference); smaller than claimed when it is "
        "wholly below zero.",
        "- **Statuses**, in order of precedence:",
    ]
    lines += [f"  - *{status}*: {rule}" for status, rule in RULES]
    lines += [
        "- **Evidence is never replaced by less.** Each claim's section carries a record "
        "(`<!-- evidence: {...} -->`: status, runs and seeds per measurement, the run folders, the last finish "
        "date), and README's table a copy. Regenerating keeps a claim's old row and section when the new ones "
        "rest on fewer runs or seeds for any measurement (as in a fresh clone: run directories are never "
        "committed), and says so; `--replace-with-less` replaces them anyway. A measurement results/claims.yaml "
        "marks `superseded_by` a better proxy protects nothing once that proxy has runs. A row kept from before these "
        f"rules shows the status it was made with (*{PROXY_ONLY}* was the one CPU status then).",
        "",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- claims.yaml


@dataclass(frozen=True)
class Effect:
    """The paper's claimed gain, machine-readable, with where it is read from."""

    size: float  # in the metric's gap unit, positive = the row ahead
    unit: str
    paper: str  # key in results/paper_numbers.yaml
    reading: str = ""

    def describe(self) -> str:
        return f"≥ {self.size:g} {self.unit}".rstrip() + (f" ({self.reading})" if self.reading else "")


@dataclass(frozen=True)
class Evidence:
    """Two rows of one table (results/tables.yaml) a claim compares."""

    table: str
    compare: tuple[str, str]
    name: str = ""  # the measurement's key in the evidence record (default: the table)
    note: str = ""
    reference: str | None = None  # a third row the claim measures the gap to (pretrained_attention)
    superseded_by: str | None = None  # the key of the measurement that replaces this one (a better proxy)

    @property
    def key(self) -> str:
        return self.name or self.table


@dataclass(frozen=True)
class Claim:
    id: str
    claim: str
    paper: tuple[str, ...]
    paper_scale: Evidence | None
    evidence: tuple[Evidence, ...]
    not_reproducible: str | None = None
    effect: Effect | None = None


def _evidence(e: dict) -> Evidence:
    compare = tuple(str(i) for i in e["compare"])
    if len(compare) != 2:
        raise ValueError(f"compare must be [row, baseline row], got {list(compare)}")
    unknown = sorted(set(e) - {"table", "compare", "name", "note", "reference", "superseded_by"})
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)} (commands are derived from the table's experiment)")
    return Evidence(str(e["table"]), compare, str(e.get("name", "")), str(e.get("note", "")),
                    None if e.get("reference") is None else str(e["reference"]),
                    None if e.get("superseded_by") is None else str(e["superseded_by"]))


def _effect(entry: dict, paper: tuple[str, ...]) -> Effect | None:
    e = entry.get("effect")
    if e is None:
        return None
    effect = Effect(float(e["size"]), str(e.get("unit", "")), str(e["paper"]), str(e.get("reading", "")))
    if effect.paper not in paper:
        raise ValueError(f"effect.paper {effect.paper!r} is not one of the claim's paper numbers {list(paper)}")
    if not effect.size > 0:
        raise ValueError(f"effect.size must be a positive gain, got {effect.size}")
    return effect


def load_claims(path: Path, specs: Specs | None = None) -> list[Claim]:
    """The claims; with ``specs``, every table they name must be declared there."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise AnalysisError(f"cannot read {path}: {err}") from err
    claims = []
    for entry in data.get("claims") or []:
        try:
            evidence = tuple(_evidence(e) for e in entry.get("evidence") or [])
            scale = _evidence(entry["paper_scale"]) if entry.get("paper_scale") else None
            paper = tuple(map(str, _as_list(entry.get("paper"))))
            claims.append(Claim(str(entry["id"]), str(entry["claim"]), paper, scale, evidence,
                                entry.get("not_reproducible"), _effect(entry, paper)))
        except (KeyError, TypeError, ValueError) as err:
            raise AnalysisError(f"{path}: claim {entry.get('id', '?')!r} is malformed ({err}); see the schema "
                                "at the top of the file") from err
    if specs is not None:
        unknown = sorted({e.table for c in claims for e in (c.paper_scale, *c.evidence) if e and
                          e.table not in specs.tables})
        if unknown:
            raise AnalysisError(f"{path} names tables that {specs.path} does not declare: {', '.join(unknown)}")
    return claims


def tables_of(claims: list[Claim]) -> list[str]:
    return list(dict.fromkeys(e.table for c in claims for e in (c.paper_scale, *c.evidence) if e))


# ----------------------------------------------------------------------------- statistics


def _oriented(iv: Interval, higher_is_better: bool) -> tuple[float, float]:
    """The interval as a gain: positive = ahead in the metric's direction."""
    return (iv.lo, iv.hi) if higher_is_better else (-iv.hi, -iv.lo)


def verdict(iv: Interval, higher_is_better: bool) -> str:
    lo, hi = _oriented(iv, higher_is_better)
    if math.isnan(lo):
        return "unknown"
    return "ahead" if lo > 0 else "behind" if hi < 0 else "level"


def _day(run: Run) -> str:
    return dt.datetime.fromtimestamp(run.finished_at, dt.timezone.utc).strftime("%Y-%m-%d")


def source_file(spec: TableSpec) -> str:
    own = spec.experiments[0]
    return f"configs/train.yaml + {' '.join(f'{k}={v}' for k, v in spec.grid.items())}" if spec.grid \
        else f"configs/experiment/{own}.yaml"


@dataclass
class Measured:
    """What the runs of one ``Evidence`` (or the paper-scale table) say."""

    evidence: Evidence
    spec: TableSpec
    command: str
    paper_scale: bool = False
    found: list[Run] = field(default_factory=list)  # every run of the table, on recipe or not
    cmp: Comparison | None = None  # the runs on recipe
    missing: str = ""
    off: list[OffRecipe] = field(default_factory=list)
    on_recipe: int = 0
    relative: Callable[[Path], str] = str

    @property
    def key(self) -> str:
        return "paper scale" if self.paper_scale else self.evidence.key

    @property
    def counted(self) -> bool:
        return self.cmp is not None and bool(self.cmp.runs)

    @property
    def seeds(self) -> list[int]:
        """Seeds on which every row compared (and the reference) has a run on recipe."""
        if self.cmp is None:
            return []
        a, b = self.evidence.compare
        seeds = set(self.cmp.paired_seeds(a, b))
        if self.evidence.reference:
            seeds &= set(self.cmp.rows.get(self.evidence.reference, {}))
        return sorted(seeds)

    @property
    def pairs(self) -> int:
        return len(self.seeds)

    def _diffs(self, a: str, b: str) -> list[float]:
        return self.cmp.paired_final_diff(a, b, seeds=self.seeds)

    def interval(self, against: str | None = None) -> Interval:
        a, b = self.evidence.compare
        return t_interval(self._diffs(a, against or b)) if self.pairs else t_interval([])

    @property
    def verdict(self) -> str:
        """ahead / behind / level (the interval of row − baseline), or unknown below MIN_SEEDS pairs."""
        if not self.counted or self.pairs < MIN_SEEDS:
            return "unknown"
        return verdict(self.interval(), self.cmp.metric.higher_is_better)

    def reaches(self, effect: Effect | None) -> bool:
        """Whether the interval reaches the claim: the reference's level, or the claimed size."""
        m = self.cmp.metric
        if self.evidence.reference:
            return _oriented(self.interval(self.evidence.reference), m.higher_is_better)[1] >= 0
        if effect is None or effect.unit != (m.gap_unit or m.unit):
            return True
        return _oriented(self.interval(), m.higher_is_better)[1] >= effect.size

    def line(self) -> str:
        e = self.evidence
        if self.cmp is None:
            return self.missing
        m, (a, b) = self.cmp.metric, e.compare
        if a not in self.cmp.rows or b not in self.cmp.rows:
            have = ", ".join(f"{i} {len(self.cmp.rows[i])} run(s)" for i in self.cmp.labels)
            absent = ", ".join(i for i in (a, b, e.reference) if i and i not in self.cmp.rows)
            return f"{have}; no runs of {absent} on recipe: 0 paired seeds; train them with `{self.command}`"
        fa, fb = mean_std(self.cmp.final(a)), mean_std(self.cmp.final(b))
        unit = m.gap_unit or m.unit
        unit = f" {unit}" if unit else ""
        text = f"{a} {m.format(*fa[:2])} vs {b} {m.format(*fb[:2])} ({m.title}, final; n = {fa[2]}/{fb[2]}); "
        if not self.pairs:
            return text + "0 paired seeds" + (f" (no {e.reference} runs on those seeds)" if e.reference else "")
        iv = self.interval()
        ahead = self.cmp.ahead(self._diffs(a, b))
        text += f"paired gap {m.format(iv.mean, iv.std, signed=True)}{unit}"
        if not math.isnan(iv.lo):
            text += f", 95% CI [{m.format(iv.lo, signed=True)}, {m.format(iv.hi, signed=True)}]"
        return text + f", {a} ahead on {ahead}/{self.pairs} seeds"

    def extra(self) -> tuple[list[str], str]:
        """The gap to the reference, when the claim has one: the section's line, and the table's few words."""
        e, ref = self.evidence, self.evidence.reference
        if self.cmp is None or not ref:
            return [], ""
        if ref not in self.cmp.rows:
            return [f"no {ref} runs on recipe: the share of the gap closed needs them; train them with "
                    f"`{self.command}`"], ""
        if not self.pairs:
            return [], ""
        (a, b), m = e.compare, self.cmp.metric
        unit = f" {m.gap_unit or m.unit}".rstrip()
        span, to_ref = t_interval(self._diffs(ref, b)), self.interval(ref)
        ratio, per_seed = gap_closed(self.cmp, b, a, ref, self.seeds)
        line = (f"{ref} − {b}: {m.format(span.mean, span.std, signed=True)}{unit}; {a} − {ref}: "
                f"{m.format(to_ref.mean, to_ref.std, signed=True)}{unit}")
        if not math.isnan(to_ref.lo):
            line += f", 95% CI [{m.format(to_ref.lo, signed=True)}, {m.format(to_ref.hi, signed=True)}]"
        share = "–" if math.isnan(ratio) else f"{ratio:.0%}"
        return [line + f"; {a} closes {share} of the {ref} − {b} gap (pooled; per seed: "
                f"{', '.join('–' if math.isnan(v) else f'{v:.0%}' for v in per_seed)})"], \
            f"{a} closes {share} of the gap to {ref}"

    def provenance(self) -> str:
        if not self.counted:
            return ""
        runs = self.cmp.runs
        devices = sorted({r.environment.get("device") or r.summary.get("device") or "?" for r in runs})
        days = sorted({_day(r) for r in runs})
        parents = sorted({self.relative(r.path.parent) for r in runs})
        when = days[0] if len(days) == 1 else f"{days[0]} – {days[-1]}"
        return f"{len(runs)} runs in {', '.join(parents)}; {', '.join(devices)}; finished {when}"

    def record(self) -> dict:
        return {"runs": len(self.found), "seeds": len({r.seed for r in self.found}),
                "counted": len(self.cmp.runs) if self.cmp else 0, "paired": self.pairs}


def measure(e: Evidence, result: TableResult, recipes: Recipes | None, where: str, paper_scale: bool = False,
            relative: Callable[[Path], str] = str) -> Measured:
    """What one table's runs say about two of its rows (``result``: the table, tabulated by the engine)."""
    spec = result.spec
    m = Measured(e, spec, " && ".join(commands(spec, recipes)), paper_scale, list(result.found),
                 relative=relative)
    for off in result.off:
        item = OffRecipe(off.why, off.runs)
        try:
            cmp, conflicts = comparison(spec, off.runs)
            if not conflicts and all(i in cmp.rows for i in e.compare):
                item.line = Measured(e, spec, m.command, paper_scale, off.runs, cmp).line()
        except AnalysisError:
            pass
        m.off.append(item)
    m.on_recipe = len(result.found) - sum(len(o.runs) for o in result.off)
    if not result.found:
        m.missing = f"no finished {spec.name} runs below {where}; train them with the command above"
    elif not m.on_recipe:
        m.missing = (f"none of the {len(result.found)} {spec.name} runs found is on this table's recipe "
                     "(listed below); train them with the command above")
    elif result.problem:
        m.missing = f"cannot be tabulated: {result.problem}"
    else:
        m.cmp = result.cmp
    return m


@dataclass
class ClaimResult:
    claim: Claim
    paper: list[PaperNumber]
    paper_scale: Measured | None
    evidence: list[Measured]

    @property
    def measured(self) -> list[Measured]:
        return ([self.paper_scale] if self.paper_scale else []) + self.evidence

    @property
    def headline(self) -> Measured | None:
        """The measurement the status rests on (shown in the status table)."""
        ps = self.paper_scale
        if ps is not None and ps.counted:
            return ps
        for test in (lambda m: m.counted and m.pairs >= MIN_SEEDS, lambda m: m.counted, lambda m: bool(m.found)):
            hit = next((m for m in self.evidence if test(m)), None)
            if hit is not None:
                return hit
        return ps if ps is not None and ps.found else None

    @property
    def status(self) -> str:
        if self.claim.not_reproducible:
            return NOT_REPRODUCIBLE
        ps = self.paper_scale
        if ps is not None and ps.counted:
            if ps.pairs < MIN_SEEDS:
                return TOO_FEW_SEEDS
            if ps.verdict != "ahead":
                return NOT_REPRODUCED
            return REPRODUCED if ps.reaches(self.claim.effect) else SMALLER
        good = [m for m in self.evidence if m.counted and m.pairs >= MIN_SEEDS]
        if good:
            return {"ahead": PROXY_AHEAD, "behind": PROXY_BEHIND}.get(good[0].verdict, PROXY_LEVEL)
        if any(m.counted for m in self.evidence):
            return PROXY_TOO_FEW
        return OFF_RECIPE if any(m.found for m in self.measured) else NOT_RUN

    def record(self) -> dict:
        """The machine-readable evidence record the page carries for this claim."""
        runs = [r for m in self.measured for r in m.found]
        relative = self.measured[0].relative if self.measured else str
        folders = sorted({relative(r.path) for r in runs})
        return {"claim": self.claim.id, "status": self.status, "runs": len(folders),
                "seeds": max((len({r.seed for r in m.found}) for m in self.measured), default=0),
                "measurements": {m.key: m.record() for m in self.measured},
                "folders": folders, "date": max((_day(r) for r in runs), default=None)}


def evaluate(claims: list[Claim], paper_numbers: list[PaperNumber], results: dict[str, TableResult],
             recipes: Recipes | None = None, where: str = "runs/",
             relative: Callable[[Path], str] = str) -> list[ClaimResult]:
    """Each claim's status, from the tables ``results`` (every table the claims name, tabulated)."""
    by_key = {p.key: p for p in paper_numbers}
    unknown = sorted({k for c in claims for k in c.paper if k not in by_key})
    if unknown:
        raise AnalysisError(f"claims name paper numbers that results/paper_numbers.yaml lacks: {', '.join(unknown)}")

    def one(e: Evidence, scale: bool = False) -> Measured:
        return measure(e, results[e.table], recipes, where, scale, relative)

    return [ClaimResult(c, [by_key[k] for k in c.paper], one(c.paper_scale, True) if c.paper_scale else None,
                        [one(e) for e in c.evidence]) for c in claims]


# ----------------------------------------------------------------------------- rendering

EVIDENCE = re.compile(r"^<!-- evidence: (\{.*\}) -->\s*$", re.M)
TABLE_HEADER = ["claim", "paper", "status", "ours (the measurement the status rests on)"]


def evidence_line(record: dict) -> str:
    return "<!-- evidence: " + json.dumps(record, sort_keys=True, ensure_ascii=False) + " -->"


def table_row(r: ClaimResult, link: str = "") -> str:
    paper = "; ".join(p.describe() for p in r.paper) or "–"
    m = r.headline
    if m is None:
        ours = "–"
    elif m.counted:
        tier = "paper scale" if m.paper_scale else "CPU proxy"
        ours = f"{tier}, `{m.key}`: {m.line()}" + (f"; {m.extra()[1]} (pooled)" if m.extra()[1] else "")
    else:
        counted = m.missing if m.missing.startswith("cannot") else "not counted"
        ours = f"{'paper scale' if m.paper_scale else 'CPU proxy'}, `{m.key}`: {len(m.found)} runs, {counted}"
        if m.off:
            ours += f"; they {'; '.join(m.off[0].why)}"
    anchor = f"[{r.claim.claim}]({link}#{r.claim.id})"
    return "| " + " | ".join([anchor, paper, f"**{r.status}**", ours.replace("|", "\\|")]) + " |"


def _table(rows: list[str]) -> str:
    return markdown(TABLE_HEADER, []) + "\n" + "\n".join(rows)


def _measured_lines(m: Measured, label: str) -> list[str]:
    lines = [f"  - {label}: {m.line()}", *(f"  - {x}" for x in m.extra()[0])]
    if m.counted:
        lines.append(f"  - {m.provenance()}")
        if m.pairs < MIN_SEEDS:
            lines.append(f"  - {m.pairs} paired seed(s): fewer than {MIN_SEEDS}, so this says nothing yet")
    for item in m.off:
        lines.append(f"  - not counted: {len(item.runs)} run(s) differ from the table's recipe: they "
                     f"{'; '.join(item.why)}" + (f" — their numbers, for information only: {item.line}"
                                                 if item.line else ""))
    return lines


def render_section(r: ClaimResult) -> str:
    c = r.claim
    lines = [f"## {c.id}", "", evidence_line(r.record()), "", f"**{c.claim}.** Status: **{r.status}**.", ""]
    if c.not_reproducible:
        lines += [f"Why: {c.not_reproducible}", ""]
    for p in r.paper:
        lines.append(f"- paper: {p.describe()} — source: {p.source}")
    if c.effect:
        lines.append(f"- claimed size: {c.effect.describe()} (from `{c.effect.paper}`)")
        m = r.paper_scale.cmp.metric if r.paper_scale and r.paper_scale.cmp else None
        if m is not None and c.effect.unit != (m.gap_unit or m.unit):
            lines.append(f"  - the runs report {m.title}, not in {c.effect.unit}: the size is not compared")
    if r.paper_scale is not None:
        m = r.paper_scale
        ref = f"; gap to `{m.evidence.reference}`" if m.evidence.reference else ""
        lines.append(f"- paper scale, table `{m.spec.name}` ({source_file(m.spec)}{ref}): `{m.command}`")
        lines += _measured_lines(m, "measured")
    for m in r.evidence:
        note = f": {m.evidence.note}" if m.evidence.note else ""
        lines.append(f"- CPU evidence, table `{m.key}` ({source_file(m.spec)}){note}")
        lines.append(f"  - command: `{m.command}`")
        lines += _measured_lines(m, "ours")
    return "\n".join(lines) + "\n"


def render_header(folders: list[str]) -> str:
    where = ", ".join(f"`{f}/`" for f in folders) or "`runs/`"
    return "\n".join([
        "# Reproduction report", "",
        "Generated by `scripts/make_tables.py` from `results/claims.yaml`, `results/tables.yaml`, "
        f"`results/paper_numbers.yaml` and the run directories found under {where} (selected per table by their "
        "recorded experiment); numbers are final values, mean ± sample std over seeds, gaps paired by seed with "
        "their 95% t-interval. The statuses and what decides them: [Rules](#rules).", ""])


# ----------------------------------------------------------------------------- merging with an older page


def _sections(text: str) -> dict[str, str]:
    return {s.name: s.text.rstrip() + "\n" for s in split_report(text)[1]}


def _cells(row: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", row.strip().strip("|"))]


def _rows(text: str, claims: list[Claim]) -> dict[str, str]:
    """The status table's rows by claim id (read off the link of their first cell)."""
    ids, out = {c.id for c in claims}, {}
    for line in text.splitlines():
        link = re.search(r"\]\([^)]*#([\w-]+)\)", _cells(line)[0]) if line.startswith("| [") else None
        if link and link.group(1) in ids:
            out[link.group(1)] = line
    return out


def records(text: str) -> dict[str, dict]:
    out = {}
    for match in EVIDENCE.finditer(text):
        try:
            record = json.loads(match.group(1))
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("claim"):
            out[str(record["claim"])] = record
    return out


def less_evidence(new: dict, old: dict, superseded: dict[str, str] | None = None) -> str | None:
    """Why ``new`` rests on less than ``old`` (fewer runs or seeds for a measurement of ``old``), or None.

    ``superseded``: measurement -> the measurement that replaces it (results/claims.yaml's ``superseded_by``).
    A superseded measurement protects nothing once ``new`` has runs of its successor: a better proxy is not
    less evidence, even on fewer seeds (its status then says how many).
    """
    fresh = new.get("measurements") or {}
    superseded = superseded or {}
    for name, was in (old.get("measurements") or {}).items():
        runs, seeds = was.get("runs"), was.get("seeds")
        if not runs and not seeds:
            continue
        successor = fresh.get(superseded.get(name, "")) or {}
        if successor.get("runs"):
            continue
        now = fresh.get(name) or {"runs": 0, "seeds": 0}
        if (runs is not None and now.get("runs", 0) < runs) or (seeds is not None and now.get("seeds", 0) < seeds):
            before = ", ".join(x for x in (f"{runs} runs" if runs is not None else "",
                                            f"{seeds} seeds" if seeds is not None else "") if x)
            return f"{name}: {now.get('runs', 0)} runs, {now.get('seeds', 0)} seeds now; {before} before"
    return None


def _superseded(claim: Claim) -> dict[str, str]:
    return {e.key: e.superseded_by for e in claim.evidence if e.superseded_by}


KEPT_NOTE = ("> Kept from an earlier report: regenerating it found less evidence than this section rests on (run "
             "directories are never committed). It reads as it was made, under the rules and commands of its time; "
             "the current commands are derived from the tables in results/tables.yaml.")


def _kept(section: str, record: dict) -> str:
    """An old section kept as it is, headed by its evidence record and a note saying it was kept."""
    head, _, rest = section.partition("\n")
    rest = EVIDENCE.sub("", rest).replace(KEPT_NOTE, "")
    rest = re.sub(r"\n{3,}", "\n\n", rest).strip("\n")
    return f"{head}\n\n{evidence_line(record)}\n\n{KEPT_NOTE}\n\n{rest}\n"


def merge_page(results: list[ClaimResult], old: str | None, replace_with_less: bool = False,
               folders: list[str] = ("runs",)) -> tuple[str, list[str]]:
    """The report page, keeping each claim's old row and section where the new ones rest on less.

    Returns the text and one line per claim kept (or replaced with less, when asked).
    """
    claims = [r.claim for r in results]
    rows = {r.claim.id: table_row(r) for r in results}
    sections = {r.claim.id: render_section(r) for r in results}
    notes = []
    if old:
        old_sections, old_rows = _sections(old), _rows(old, claims)
        for r in results:
            cid = r.claim.id
            section = old_sections.get(cid)
            if section is None:
                continue
            was = records(section).get(cid) or {}  # a section without a record rests on nothing said
            why = less_evidence(r.record(), was, _superseded(r.claim))
            if why is None:
                continue
            if replace_with_less:
                notes.append(f"replaced {cid} with less evidence ({why}), as --replace-with-less asks")
                continue
            sections[cid] = _kept(section, was)
            if cid in old_rows:
                rows[cid] = "| " + " | ".join([_cells(rows[cid])[0], *_cells(old_rows[cid])[1:]]) + " |"
            notes.append(f"kept {cid}'s row and section: the new ones rest on less ({why}); "
                         "--replace-with-less replaces them")
    text = "\n".join([render_header(list(folders)), _table([rows[c.id] for c in claims]), "", rules_text(),
                      *[sections[c.id] for c in claims]])
    return text.rstrip() + "\n", notes


def merge_block(results: list[ClaimResult], old_block: str | None, link: str,
                replace_with_less: bool = False) -> tuple[str, list[str]]:
    """README's status table (with its evidence records above it), keeping rows the new ones would weaken."""
    claims = [r.claim for r in results]
    rows = {r.claim.id: table_row(r, link) for r in results}
    recs = {r.claim.id: r.record() for r in results}
    notes = []
    old_rows, old_recs = (_rows(old_block, claims), records(old_block)) if old_block else ({}, {})
    for r in results:
        cid = r.claim.id
        why = less_evidence(recs[cid], old_recs.get(cid) or {}, _superseded(r.claim))
        if why is None:
            continue
        if replace_with_less:
            notes.append(f"replaced {cid}'s row with less evidence ({why}), as --replace-with-less asks")
            continue
        recs[cid] = old_recs[cid]
        if cid in old_rows:
            rows[cid] = old_rows[cid]  # as it was, link included: it points at the page that holds its section
        notes.append(f"kept {cid}'s row: the new one rests on less ({why}); --replace-with-less replaces it")
    lines = [evidence_line(recs[c.id]) for c in claims] + [_table([rows[c.id] for c in claims])]
    return "\n".join(lines), notes


def block_of(text: str, start: str, end: str) -> str:
    if start not in text or end not in text:
        raise AnalysisError(f"markers {start!r} ... {end!r} not found; add them where the table belongs")
    return text.split(start, 1)[1].split(end, 1)[0]


def replace_block(text: str, block: str, start: str, end: str) -> str:
    """``text`` with what lies between the ``start`` and ``end`` marker lines replaced by ``block``."""
    if start not in text or end not in text:
        raise AnalysisError(f"markers {start!r} ... {end!r} not found; add them where the table belongs")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{block.strip()}\n{end}{tail}"
