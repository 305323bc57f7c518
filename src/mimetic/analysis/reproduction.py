"""The reproduction report: per claim of the papers, the paper's number, ours, and a status.

``results/claims.yaml`` lists the claims (SPEC §4), the paper-scale experiment that tests each,
the claimed effect size where the paper gives one, and the CPU runs that bear on it. This module
finds the runs (every finished run below the folders scanned, selected by their recorded
experiment or ``<dataset>-<model>`` group), keeps only those made with the claim's own recipe,
computes each comparison with the same code as the tables (``analysis.tables`` and
``analysis.ablations``) and gives every claim one status. The rules are ``RULES`` below; the
generated page prints them, one line per status, so a reader can check every status by hand.

Nothing is typed in by hand: a claim whose runs are missing says so instead of a number. A
page is regenerated claim by claim (:func:`merge_page`, :func:`merge_block`): each claim carries
a machine-readable evidence record, and a claim whose new evidence rests on fewer runs or seeds
than the record it would replace keeps its old row and section (``replace_with_less`` to drop
it), because run directories are never committed and a fresh clone has none.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import shlex
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from mimetic.analysis import AnalysisError
from mimetic.analysis.ablations import ablation_comparison, ablation_spec, config_values, gap_closed
from mimetic.analysis.paper import PaperNumber
from mimetic.analysis.runs import Run, scan_runs
from mimetic.analysis.tables import Comparison, _markdown, group_runs, mean_std
from mimetic.train.config import NOT_IN_RUN_KEY

MIN_SEEDS = 3  # paired seeds a comparison needs before it may say anything
LEVEL = 0.95  # the t-interval over the paired differences

REPRODUCED = "reproduced"
SMALLER = "smaller than claimed"
NOT_REPRODUCED = "not reproduced at paper scale"
TOO_FEW_SEEDS = "too few seeds at paper scale"
PROXY_AHEAD = "CPU proxy: ahead"
PROXY_BEHIND = "CPU proxy: behind"
PROXY_LEVEL = "CPU proxy: level"
PROXY_TOO_FEW = "CPU proxy: too few seeds"
OFF_RECIPE = "off-recipe runs only"
UNTABULATED = "runs found, not tabulated"
NOT_RUN = "command ready, not run (needs a GPU)"
NOT_REPRODUCIBLE = "not reproducible from public information"
PROXY_ONLY = "CPU proxy only"  # the single CPU status of earlier pages; rows kept from them may show it

DEFAULT_RUNS = ("runs",)  # paths.runs_dir's default: every README command writes there

# Overrides that may differ from the command without changing the recipe: the factors a claim compares
# (which init, which seed, where an init reads its weights from) and the keys outside the run identity
# (device, logging, paths, where the data lies), plus Hydra's own settings and a site file (+local=...).
FACTOR_KEYS = ("seed", "init", "init.checkpoint", "init.path")
QUIET_KEYS = tuple(k for k in NOT_IN_RUN_KEY if k != "experiment") + ("hydra", "local")

RULES: tuple[tuple[str, str], ...] = (
    (REPRODUCED, f"paper-scale runs on recipe, ≥ {MIN_SEEDS} paired seeds, and the 95% interval of the paired "
                 "gap lies above zero and reaches the claimed size (its upper end ≥ the size; where the paper "
                 "gives no size, above zero is enough)."),
    (SMALLER, f"paper-scale runs on recipe, ≥ {MIN_SEEDS} paired seeds, the interval above zero but wholly below "
              "the claimed size."),
    (NOT_REPRODUCED, f"paper-scale runs on recipe, ≥ {MIN_SEEDS} paired seeds, and the interval includes zero "
                     "or lies below it (the init is level or behind)."),
    (TOO_FEW_SEEDS, f"paper-scale runs on recipe, but fewer than {MIN_SEEDS} paired seeds (an init compared may "
                    "have no runs at all); nothing is concluded."),
    (PROXY_AHEAD, f"no countable paper-scale runs; the first CPU evidence with ≥ {MIN_SEEDS} paired seeds on "
                  "recipe has its interval above zero. A CPU proxy never makes a paper claim reproduced, "
                  "whatever the size of its gap."),
    (PROXY_BEHIND, "as above, the interval below zero."),
    (PROXY_LEVEL, "as above, the interval includes zero."),
    (PROXY_TOO_FEW, f"CPU runs on recipe, but no CPU evidence has {MIN_SEEDS} paired seeds."),
    (OFF_RECIPE, "runs were found, but none was made with the claim's recipe (smoke runs, other epochs, ...): "
                 "listed with what they change, never counted."),
    (UNTABULATED, "runs on recipe were found but cannot be tabulated (e.g. two runs in one init × seed slot); "
                  "the claim's section says why."),
    (NOT_RUN, "no runs: the command is given."),
    (NOT_REPRODUCIBLE, "results/claims.yaml says why the claim cannot be checked from public information."),
)


def rules_text() -> str:
    """The page's "Rules" section: what makes a run count, the statistics, one line per status."""
    free = ", ".join(f"`{k}`" for k in FACTOR_KEYS)
    quiet = ", ".join(f"`{k}.*`" if k in ("logger", "paths", "hydra") else f"`{k}`" for k in QUIET_KEYS)
    lines = [
        "## Rules", "",
        "How each status is decided (`mimetic.analysis.reproduction`); every number comes from run directories.", "",
        "- **Which runs count.** The report scans `runs/` (where every README command writes: `paths.runs_dir`), "
        "recursively, and any folder given with `--runs`, and selects a claim's runs by their recorded experiment "
        "(or `<dataset>-<model>` for runs made without one), never by folder. A run counts only if it is **on "
        "recipe**: its `config.yaml` records its command-line overrides (`_run.overrides`), `trainer.smoke` is "
        "off, and its overrides are the command's own, apart from the factors compared (" + free + ", the keys "
        "the command sweeps) and keys that do not change what is computed (" + quiet + "). An override equal to "
        "the recipe's own value changes nothing. Other runs are listed under the claim with what they change "
        "(e.g. \"override trainer.epochs=2 (the command above: trainer.epochs=15)\") and never counted.",
        f"- **Statistics.** Final values; gaps paired by seed (init − baseline, per seed). The interval is the "
        f"{LEVEL:.0%} t-interval over the paired differences (mean ± t(n−1) · std / √n); \"above zero\" means the "
        "init is ahead in the metric's direction (for perplexity: lower). A comparison needs at least "
        f"{MIN_SEEDS} paired seeds.",
        "- **Claimed size.** Where the paper gives a number, `effect` in results/claims.yaml holds it with the "
        "paper number it is read from and how (e.g. \"over 5%\" → 5.0 pp).",
        "- **Gap to a reference** (claims with a `reference` init, e.g. pre-trained attention): runs of the init, "
        "the baseline and the reference on the same seeds are needed; the share of the gap closed, "
        "(init − baseline) / (reference − baseline), is shown per seed and pooled (ratio of the mean gaps). The "
        "claimed size is the reference itself: reproduced needs the init ahead of the baseline and the interval "
        "of init − reference reaching zero (not clearly behind the reference); smaller than claimed when it is "
        "wholly below zero.",
        "- **Statuses**, in order of precedence:",
    ]
    lines += [f"  - *{status}*: {rule}" for status, rule in RULES]
    lines += [
        "- **Evidence is never replaced by less.** Each claim's section carries a record "
        "(`<!-- evidence: {...} -->`: status, runs and seeds per measurement, the run folders, the last finish "
        "date), and README's table a copy. Regenerating keeps a claim's old row and section when the new ones "
        "rest on fewer runs or seeds for any measurement (as in a fresh clone: run directories are never "
        "committed), and says so; `--replace-with-less` replaces them anyway. A row kept from before these "
        f"rules shows the status it was made with (*{PROXY_ONLY}* was the one CPU status then).",
        "",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- claims.yaml


@dataclass(frozen=True)
class Effect:
    """The paper's claimed gain, machine-readable, with where it is read from."""

    size: float  # in the metric's gap unit, positive = the init ahead
    unit: str
    paper: str  # key in results/paper_numbers.yaml
    reading: str = ""

    def describe(self) -> str:
        return f"≥ {self.size:g} {self.unit}".rstrip() + (f" ({self.reading})" if self.reading else "")


@dataclass(frozen=True)
class Evidence:
    """One comparison of runs: an experiment's inits, or an ablation's rows."""

    name: str
    kind: str  # "experiment" | "ablation"
    compare: tuple[str, str]
    file: str
    command: str
    prefer: str | None = None
    note: str = ""
    runs: tuple[str, ...] = ()  # extra folders to scan (older claims files); runs/ is always scanned
    reference: str | None = None  # a third init the claim measures the gap to (pretrained_attention)


@dataclass(frozen=True)
class Claim:
    id: str
    claim: str
    paper: tuple[str, ...]
    paper_scale: Evidence | None
    evidence: tuple[Evidence, ...]
    not_reproducible: str | None = None
    effect: Effect | None = None


def _as_tuple(value) -> tuple:
    if value is None:
        return ()
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def _evidence(e: dict, name: str, kind: str) -> Evidence:
    compare = tuple(str(i) for i in e["compare"])
    if len(compare) != 2:
        raise ValueError(f"compare must be [init, baseline], got {list(compare)}")
    return Evidence(name=name, kind=kind, compare=compare, file=str(e.get("file", "")),
                    command=str(e.get("command", "")), prefer=e.get("prefer"), note=str(e.get("note", "")),
                    runs=tuple(str(r) for r in _as_tuple(e.get("runs"))),
                    reference=None if e.get("reference") is None else str(e["reference"]))


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


def load_claims(path: Path) -> list[Claim]:
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise AnalysisError(f"cannot read {path}: {err}") from err
    claims = []
    for entry in data.get("claims") or []:
        try:
            evidence = tuple(_evidence(e, str(e.get("experiment") or e.get("ablation")),
                                       "ablation" if "ablation" in e else "experiment")
                             for e in entry.get("evidence") or [])
            ps = entry.get("paper_scale")
            scale = _evidence(ps, str(ps["group"]), "experiment") if ps else None
            paper = tuple(map(str, _as_tuple(entry.get("paper"))))
            claims.append(Claim(str(entry["id"]), str(entry["claim"]), paper, scale, evidence,
                                entry.get("not_reproducible"), _effect(entry, paper)))
        except (KeyError, TypeError, ValueError) as err:
            raise AnalysisError(f"{path}: claim {entry.get('id', '?')!r} is malformed ({err}); see the schema "
                                "at the top of the file") from err
    return claims


# ----------------------------------------------------------------------------- recipes


@dataclass(frozen=True)
class Override:
    key: str  # dotted; a group's "hydra/launcher" becomes "hydra.launcher"
    text: str  # as written
    value: object  # parsed like Hydra does; a tuple of strings for a sweep; None for a deletion (~key)
    sweep: bool = False


@lru_cache(maxsize=1)
def _parser():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()


@lru_cache(maxsize=4096)
def parse_override(text: str) -> Override:
    """``trainer.epochs=2`` -> key, value (typed as Hydra types it); falls back to plain text."""
    try:
        o = _parser().parse_overrides([text])[0]
        key = o.key_or_group.split("@")[0].replace("/", ".")
        if o.is_sweep_override():
            return Override(key, text, tuple(o.sweep_string_iterator()), True)
        return Override(key, text, None if o.is_delete() else o.value())
    except Exception:  # Hydra's grammar errors: keep the text
        key, _, value = text.lstrip("+~").partition("=")
        return Override(key.replace("/", "."), text, value, "," in value)


def is_free(key: str, swept: set[str] | frozenset[str] = frozenset()) -> bool:
    """Whether an override of ``key`` leaves the recipe as it is (a factor compared, or not computed)."""
    if key in FACTOR_KEYS or key in swept:
        return True
    return any(key == k or key.startswith(k + ".") for k in QUIET_KEYS)


@dataclass(frozen=True)
class Recipe:
    """One ``train.py`` invocation of a claim's command."""

    overrides: tuple[Override, ...]

    @property
    def swept(self) -> frozenset[str]:
        return frozenset(o.key for o in self.overrides if o.sweep)

    @property
    def fixed(self) -> dict[str, Override]:
        """The overrides that fix what its runs compute."""
        return {o.key: o for o in self.overrides if not o.sweep and not is_free(o.key)}

    def value(self, key: str):
        for o in self.overrides:
            if o.key == key:
                return set(o.value) if o.sweep else {o.value}
        return None

    @property
    def experiment(self) -> str | None:
        values = self.value("experiment")
        return None if not values else str(next(iter(values)))


def recipes(command: str) -> list[Recipe]:
    """Every ``train.py`` invocation in a command (``a; b && c``), as its overrides."""
    out = []
    for part in re.split(r"&&|;|\|\|", command):
        try:
            tokens = shlex.split(part)
        except ValueError:
            tokens = part.split()
        at = next((i for i, t in enumerate(tokens) if t.endswith("train.py")), None)
        if at is not None:
            out.append(Recipe(tuple(parse_override(t) for t in tokens[at + 1:] if "=" in t and not t.startswith("-"))))
    return out or [Recipe(())]


_ABSENT = object()


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)


def _same(a, b) -> bool:
    if a == b or _text(a) == _text(b):
        return True
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return False


class RecipeValues:
    """The value a command gives a key: its resolved config, composed from ``configs`` like train.py does.

    Best effort: without the configs (or for an experiment they lack) every value is unknown, and
    every extra override then counts as a change of recipe.
    """

    def __init__(self, configs: Path | None):
        self.configs = Path(configs) if configs else None
        self._cache: dict[tuple[str, ...], object] = {}

    def config(self, recipe: Recipe, more: tuple[str, ...] = ()):
        key = tuple(sorted({*(o.text for o in recipe.fixed.values()), *more}))
        if key not in self._cache:
            self._cache[key] = self._compose(list(key))
        return self._cache[key]

    def _compose(self, overrides: list[str]):
        if self.configs is None or not (self.configs / "train.yaml").exists():
            return None
        try:
            from hydra import compose, initialize_config_dir

            from mimetic.cli import register_resolvers

            register_resolvers()
            with initialize_config_dir(config_dir=str(self.configs.resolve()), version_base="1.3"):
                return compose(config_name="train", overrides=overrides)
        except Exception:  # an experiment these configs lack, an old command: value unknown
            return None

    def value(self, recipe: Recipe, key: str, more: tuple[str, ...] = ()):
        """The recipe's value of ``key`` (a group's option name for a group), or ``_ABSENT``.

        ``more``: the run's own choice of init (``init=mimetic``), whose options the recipe then has.
        """
        cfg = self.config(recipe, more)
        if cfg is None:
            return _ABSENT
        from omegaconf import DictConfig, OmegaConf

        try:
            value = OmegaConf.select(cfg, key, default=_ABSENT)
            if isinstance(value, DictConfig):
                value = value.get("name", _ABSENT)
            return value
        except Exception:
            return _ABSENT


def _resolved(run: Run, key: str):
    values = config_values(run)
    if key in values:
        return values[key]
    return values.get(f"{key}.name", _ABSENT)


def _diff(run: Run, recipe: Recipe, values: RecipeValues, smoke: bool) -> list[str]:
    mine = {o.key: o for o in map(parse_override, run.overrides or [])}
    swept, fixed, out = recipe.swept, recipe.fixed, []
    init = tuple(o.text for o in mine.values() if o.key == "init" and not o.sweep and o.value is not None)
    for key, o in mine.items():
        if is_free(key, swept) or (smoke and key == "trainer.smoke"):
            continue
        want = fixed.get(key)
        if want is not None:
            if not _same(o.value, want.value):
                out.append(f"override {o.text} (the command above: {want.text})")
            continue
        theirs = values.value(recipe, key, init)
        if theirs is _ABSENT:
            out.append(f"override {o.text} (not set by the command above)")
        elif o.value is None or not _same(o.value, theirs):
            out.append(f"override {o.text} (the command above: {key}={_text(theirs)})")
    for key, want in fixed.items():
        if key not in mine and not _same(_resolved(run, key), want.value):
            out.append(f"lack {want.text} (the command above sets it)")
    return out


def recipe_differences(run: Run, command: str, values: RecipeValues) -> list[str]:
    """How ``run`` differs from the recipe of ``command`` (empty: on recipe). Each item reads after "they"."""
    smoke = bool(config_values(run).get("trainer.smoke"))
    head = ["are smoke runs (trainer.smoke=true: one step on a handful of samples)"] if smoke else []
    if run.overrides is None:
        return [*head, "do not record their command-line overrides (config.yaml has no _run.overrides)"]
    candidates = [r for r in recipes(command) if r.experiment == run.experiment]
    if not candidates:
        return [*head, f"are of experiment {run.experiment}, which the command above does not run"]
    same_init = [r for r in candidates if r.value("init") is None or run.init in {str(v) for v in r.value("init")}]
    best = min((_diff(run, r, values, smoke) for r in same_init or candidates), key=len)
    return head + best


# ----------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Interval:
    """Mean, std and n of paired differences, and their t-interval."""

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


def _oriented(iv: Interval, higher_is_better: bool) -> tuple[float, float]:
    """The interval as a gain: positive = ahead in the metric's direction."""
    return (iv.lo, iv.hi) if higher_is_better else (-iv.hi, -iv.lo)


def verdict(iv: Interval, higher_is_better: bool) -> str:
    lo, hi = _oriented(iv, higher_is_better)
    if math.isnan(lo):
        return "unknown"
    return "ahead" if lo > 0 else "behind" if hi < 0 else "level"


# ----------------------------------------------------------------------------- runs and measurements


class RunCache:
    """Every finished run below the folders (relative to ``base``, the repository), scanned once.

    ``folders`` are scanned when they exist (the default ``runs/`` may not, in a fresh clone);
    ``required`` ones (given on the command line) must exist.
    """

    def __init__(self, base: Path, folders: tuple[str, ...] = DEFAULT_RUNS, required: tuple[str, ...] = ()):
        self.base = Path(base)
        if not self.base.is_dir():
            raise AnalysisError(f"--base {self.base} is not a directory")
        missing = [f for f in required if not self._path(f).is_dir()]
        if missing:
            raise AnalysisError(f"run folder(s) {', '.join(missing)} do not exist (relative to {self.base})")
        self.folders = list(dict.fromkeys([*folders, *required]))
        self._runs: list[Run] | None = None

    def _path(self, folder: str) -> Path:
        return self.base / folder

    def add(self, folders) -> None:
        if self._runs is None:
            self.folders += [f for f in folders if f not in self.folders]

    @property
    def scanned(self) -> list[str]:
        return [f for f in self.folders if self._path(f).is_dir()]

    def all_runs(self) -> list[Run]:
        if self._runs is None:
            roots = [self._path(f) for f in self.scanned]
            self._runs = scan_runs(roots)[0] if roots else []
        return self._runs

    def relative(self, path: Path) -> str:
        try:
            return os.path.relpath(path, self.base)
        except ValueError:
            return str(path)


@dataclass
class OffRecipe:
    """Runs of a claim's group made with another recipe: what they change, and their numbers (not counted)."""

    why: tuple[str, ...]
    runs: list[Run]
    line: str = ""


@dataclass
class Measured:
    """What the runs of one ``Evidence`` (or a paper-scale group) say."""

    evidence: Evidence
    paper_scale: bool = False
    found: list[Run] = field(default_factory=list)  # every run of the group, on recipe or not
    cmp: Comparison | None = None  # the runs on recipe
    missing: str = ""
    off: list[OffRecipe] = field(default_factory=list)
    on_recipe: int = 0  # how many of ``found`` are on the command's recipe
    cache: RunCache | None = None

    @property
    def key(self) -> str:
        return "paper scale" if self.paper_scale else self.evidence.name

    @property
    def tier(self) -> str:
        return "paper scale" if self.paper_scale else "CPU proxy"

    @property
    def counted(self) -> bool:
        return self.cmp is not None and bool(self.cmp.runs)

    @property
    def seeds(self) -> list[int]:
        """Seeds on which every init compared (and the reference) has a run on recipe."""
        if self.cmp is None:
            return []
        a, b = self.evidence.compare
        seeds = set(self.cmp.paired_seeds(a, b))
        if self.evidence.reference:
            seeds &= set(self.cmp.by_init.get(self.evidence.reference, {}))
        return sorted(seeds)

    @property
    def pairs(self) -> int:
        return len(self.seeds)

    def _diffs(self, a: str, b: str) -> list[float]:
        name = self.cmp.metric.name
        return [self.cmp.by_init[a][s].final(name) - self.cmp.by_init[b][s].final(name) for s in self.seeds]

    def interval(self, against: str | None = None) -> Interval:
        a, b = self.evidence.compare
        return t_interval(self._diffs(a, against or b)) if self.pairs else t_interval([])

    @property
    def verdict(self) -> str:
        """ahead / behind / level (the interval of init − baseline), or unknown below MIN_SEEDS pairs."""
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
        if a not in self.cmp.by_init or b not in self.cmp.by_init:
            have = ", ".join(f"{i} {len(self.cmp.by_init[i])} run(s)" for i in self.cmp.inits)
            absent = ", ".join(i for i in (a, b, e.reference) if i and i not in self.cmp.by_init)
            return f"{have}; no runs of {absent} on recipe: 0 paired seeds; train them with `{e.command}`"
        fa, fb = mean_std(self.cmp.final(a)), mean_std(self.cmp.final(b))
        unit = m.gap_unit or m.unit
        unit = f" {unit}" if unit else ""
        text = (f"{a} {m.format(*fa[:2])} vs {b} {m.format(*fb[:2])} ({m.title}, final; n = {fa[2]}/{fb[2]}); ")
        if not self.pairs:
            return text + "0 paired seeds" + (f" (no {e.reference} runs on those seeds)" if e.reference else "")
        iv = self.interval()
        ahead = sum(m.is_ahead(d) for d in self._diffs(a, b))
        text += f"paired gap {m.format(iv.mean, iv.std, signed=True)}{unit}"
        if not math.isnan(iv.lo):
            text += f", 95% CI [{m.format(iv.lo, signed=True)}, {m.format(iv.hi, signed=True)}]"
        return text + f", {a} ahead on {ahead}/{self.pairs} seeds"

    def extra(self) -> list[str]:
        """The gap to the reference, when the claim has one."""
        e, out = self.evidence, []
        ref = e.reference
        if self.cmp is None or not ref:
            return out
        if ref not in self.cmp.by_init:
            return [f"no {ref} runs on recipe: the share of the gap closed needs them; train them with "
                    f"`{e.command}`"]
        if not self.pairs:
            return out
        a, b = e.compare
        m = self.cmp.metric
        unit = f" {m.gap_unit or m.unit}".rstrip()
        span = t_interval(self._diffs(ref, b))
        to_ref = self.interval(ref)
        ratio, per_seed = self._share(a, b, ref)
        line = (f"{ref} − {b}: {m.format(span.mean, span.std, signed=True)}{unit}; {a} − {ref}: "
                f"{m.format(to_ref.mean, to_ref.std, signed=True)}{unit}")
        if not math.isnan(to_ref.lo):
            line += f", 95% CI [{m.format(to_ref.lo, signed=True)}, {m.format(to_ref.hi, signed=True)}]"
        share = "–" if math.isnan(ratio) else f"{ratio:.0%}"
        line += (f"; {a} closes {share} of the {ref} − {b} gap (pooled; per seed: "
                 f"{', '.join('–' if math.isnan(v) else f'{v:.0%}' for v in per_seed)})")
        return [line]

    def share_text(self) -> str:
        """``closes 88% of the gap to pretrained_attention``, when there is a reference and paired seeds."""
        e = self.evidence
        if self.cmp is None or not e.reference or not self.pairs:
            return ""
        ratio = self._share(*e.compare, e.reference)[0]
        return f"{e.compare[0]} closes {'–' if math.isnan(ratio) else f'{ratio:.0%}'} of the gap to {e.reference}"

    def _share(self, a: str, b: str, ref: str) -> tuple[float, list[float]]:
        sub = Comparison(self.cmp.experiment, {i: {s: self.cmp.by_init[i][s] for s in self.seeds}
                                              for i in (a, b, ref)}, self.cmp.metric)
        return gap_closed(sub, b, a, ref)

    def folders(self) -> list[str]:
        return sorted({self.cache.relative(r.path) if self.cache else str(r.path) for r in self.found})

    def provenance(self) -> str:
        if self.cmp is None or not self.cmp.runs:
            return ""
        runs = self.cmp.runs
        devices = sorted({r.environment.get("device") or r.summary.get("device") or "?" for r in runs})
        days = sorted({_day(r) for r in runs})
        parents = sorted({self.cache.relative(r.path.parent) if self.cache else str(r.path.parent) for r in runs})
        when = days[0] if len(days) == 1 else f"{days[0]} – {days[-1]}"
        return f"{len(runs)} runs in {', '.join(parents)}; {', '.join(devices)}; finished {when}"

    def record(self) -> dict:
        return {"runs": len(self.found), "seeds": len({r.seed for r in self.found}),
                "counted": len(self.cmp.runs) if self.cmp else 0, "paired": self.pairs}


def _day(run: Run) -> str:
    return dt.datetime.fromtimestamp(run.finished_at, dt.timezone.utc).strftime("%Y-%m-%d")


def _selects(e: Evidence, run: Run) -> bool:
    if e.kind == "ablation":
        spec = ablation_spec(e.name)
        values = config_values(run)
        return run.experiment in spec.experiments and all(values.get(k) in allowed for k, allowed in spec.where)
    return run.group == e.name


def _tabulate(e: Evidence, runs: list[Run]) -> Comparison:
    if e.kind == "ablation":
        return ablation_comparison(ablation_spec(e.name), runs)
    return group_runs(runs, [e.name], prefer=e.prefer)[e.name]


def measure(e: Evidence, cache: RunCache, values: RecipeValues | None = None, paper_scale: bool = False) -> Measured:
    values = values or RecipeValues(None)
    where = ", ".join(f"{f}/" for f in cache.folders) + ("" if cache.scanned else " (not on this machine)")
    found = [run for run in cache.all_runs() if _selects(e, run)]
    measured = Measured(e, paper_scale, found, cache=cache)
    if not found:
        measured.missing = f"no finished {e.name} runs below {where}; train them with the command above"
        return measured
    on, off = [], defaultdict(list)
    for run in found:
        why = recipe_differences(run, e.command, values)
        if why:
            off[tuple(why)].append(run)
        else:
            on.append(run)
    for why, runs in sorted(off.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        item = OffRecipe(why, runs)
        try:
            cmp = _tabulate(e, runs)
            if all(i in cmp.by_init for i in e.compare):
                item.line = Measured(e, paper_scale, runs, cmp, cache=cache).line()
        except AnalysisError:
            pass
        measured.off.append(item)
    measured.on_recipe = len(on)
    if not on:
        measured.missing = (f"none of the {len(found)} {e.name} runs found is on this command's recipe "
                            "(listed below); train them with the command above")
        return measured
    try:
        measured.cmp = _tabulate(e, on)
    except AnalysisError as err:
        measured.missing = f"cannot be tabulated: {err}"
    return measured


# ----------------------------------------------------------------------------- claims


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
        for test in (lambda m: m.counted and m.pairs >= MIN_SEEDS, lambda m: m.counted,
                     lambda m: bool(m.found)):
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
        found = [m for m in self.measured if m.found]
        if not found:
            return NOT_RUN
        return OFF_RECIPE if all(m.on_recipe == 0 for m in found) else UNTABULATED

    def record(self, cache: RunCache | None = None) -> dict:
        """The machine-readable evidence record the page carries for this claim."""
        runs = [r for m in self.measured for r in m.found]
        folders = sorted({cache.relative(r.path) if cache else str(r.path) for r in runs})
        return {"claim": self.claim.id, "status": self.status, "runs": len(folders),
                "seeds": max((len({r.seed for r in m.found}) for m in self.measured), default=0),
                "measurements": {m.key: m.record() for m in self.measured},
                "folders": folders, "date": max((_day(r) for r in runs), default=None)}


def evaluate(claims: list[Claim], paper_numbers: list[PaperNumber], cache: RunCache,
             configs: Path | None = None) -> list[ClaimResult]:
    by_key = {p.key: p for p in paper_numbers}
    unknown = sorted({k for c in claims for k in c.paper if k not in by_key})
    if unknown:
        raise AnalysisError(f"claims name paper numbers that results/paper_numbers.yaml lacks: {', '.join(unknown)}")
    cache.add([f for c in claims for e in c.evidence for f in e.runs])
    values = RecipeValues(configs)
    results = []
    for claim in claims:
        scale = measure(claim.paper_scale, cache, values, paper_scale=True) if claim.paper_scale else None
        results.append(ClaimResult(claim, [by_key[k] for k in claim.paper], scale,
                                   [measure(e, cache, values) for e in claim.evidence]))
    return results


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
        ours = f"{m.tier}, `{m.evidence.name}`: {m.line()}"
        if m.share_text():
            ours += f"; {m.share_text()} (pooled)"
    else:
        counted = m.missing if m.missing.startswith("cannot") else "not counted"
        ours = f"{m.tier}, `{m.evidence.name}`: {len(m.found)} runs, {counted}"
        if m.off:
            ours += f"; they {'; '.join(m.off[0].why)}"
    anchor = f"[{r.claim.claim}]({link}#{r.claim.id})"
    return "| " + " | ".join([anchor, paper, f"**{r.status}**", ours.replace("|", "\\|")]) + " |"


def _table(rows: list[str]) -> str:
    return _markdown(TABLE_HEADER, []) + "\n" + "\n".join(rows)


def status_table(results: list[ClaimResult], link: str = "") -> str:
    """The headline table: claim, the paper's number, status, the measurement it rests on."""
    return _table([table_row(r, link) for r in results])


def _measured_lines(m: Measured, label: str) -> list[str]:
    lines = [f"  - {label}: {m.line()}"]
    lines += [f"  - {x}" for x in m.extra()]
    if m.counted:
        lines.append(f"  - {m.provenance()}")
        if m.pairs < MIN_SEEDS:
            lines.append(f"  - {m.pairs} paired seed(s): fewer than {MIN_SEEDS}, so this says nothing yet")
    for item in m.off:
        lines.append(f"  - not counted: {len(item.runs)} run(s) differ from the command's recipe: they "
                     f"{'; '.join(item.why)}" + (f" — their numbers, for information only: {item.line}"
                                                 if item.line else ""))
    return lines


def render_section(r: ClaimResult, cache: RunCache | None = None) -> str:
    c = r.claim
    lines = [f"## {c.id}", "", evidence_line(r.record(cache)), "", f"**{c.claim}.** Status: **{r.status}**.", ""]
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
        e = r.paper_scale.evidence
        ref = f"; gap to `{e.reference}`" if e.reference else ""
        lines.append(f"- paper scale ({e.file}{ref}): `{e.command}`")
        lines += _measured_lines(r.paper_scale, "measured")
    for m in r.evidence:
        e = m.evidence
        lines.append(f"- CPU evidence, {e.kind} `{e.name}` ({e.file}){f': {e.note}' if e.note else ''}")
        lines.append(f"  - command: `{e.command}`")
        lines += _measured_lines(m, "ours")
    return "\n".join(lines) + "\n"


def render_header(folders: list[str]) -> str:
    where = ", ".join(f"`{f}/`" for f in folders) or "`runs/`"
    return "\n".join([
        "# Reproduction report", "",
        "Generated by `scripts/report.py` from `results/claims.yaml`, `results/paper_numbers.yaml` and the run "
        f"directories found under {where} (selected per claim by their recorded experiment); numbers are final "
        "values, mean ± sample std over seeds, gaps paired by seed with their 95% t-interval. The statuses and "
        "what decides them: [Rules](#rules).", ""])


def render_report(results: list[ClaimResult], cache: RunCache | None = None) -> str:
    """The whole page from these results alone (no merging with an older page)."""
    return merge_page(results, None, cache=cache)[0]


# ----------------------------------------------------------------------------- merging with an older page


def _sections(text: str) -> dict[str, str]:
    out, current, lines = {}, None, []
    for line in text.splitlines():
        if line.startswith("## "):
            if current is not None:
                out[current] = "\n".join(lines).rstrip() + "\n"
            current, lines = line[3:].strip(), [line]
        elif current is not None:
            lines.append(line)
    if current is not None:
        out[current] = "\n".join(lines).rstrip() + "\n"
    return out


def _cells(row: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", row.strip().strip("|"))]


def _rows(text: str, claims: list[Claim]) -> dict[str, str]:
    by_text = {c.claim: c.id for c in claims}
    ids = {c.id for c in claims}
    out = {}
    for line in text.splitlines():
        if not line.startswith("| ") or line.startswith("| claim |"):
            continue
        first = _cells(line)[0]
        link = re.search(r"\]\([^)]*#([\w-]+)\)", first)
        claim_id = link.group(1) if link and link.group(1) in ids else by_text.get(first)
        if claim_id:
            out[claim_id] = line
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


_SEEDS = re.compile(r"n = (\d+)/(\d+)")


def legacy_record(claim_id: str, text: str) -> dict:
    """What a page written before evidence records rests on, read from its text (a section or a row)."""
    measurements: dict[str, dict] = {}
    current = None
    status = re.search(r"\*\*(?!ours)([^*]+)\*\*(?:\.| \|)", text)
    if text.startswith("| "):  # a status-table row: its "ours" cell names one measurement
        ours = _cells(text)[-1]
        name, seeds = re.match(r"(?:[\w ]+, )?`([^`]+)`", ours), _SEEDS.search(ours)
        if name and seeds:
            measurements[name.group(1)] = {"runs": None, "seeds": max(map(int, seeds.groups()))}
    else:
        for line in text.splitlines():
            head = re.match(r"- CPU evidence, (?:experiment|ablation) `([^`]+)`", line)
            if head or line.startswith("- paper scale"):
                current = head.group(1) if head else "paper scale"
                continue
            if current is None:
                continue
            seeds, runs = _SEEDS.search(line), re.match(r"\s+- (\d+) runs in ", line)
            if seeds and re.match(r"\s+- (?:ours|measured):", line):
                measurements.setdefault(current, {"runs": None, "seeds": 0})["seeds"] = max(map(int, seeds.groups()))
            if runs:
                measurements.setdefault(current, {"runs": None, "seeds": 0})["runs"] = int(runs.group(1))
    return {"claim": claim_id, "status": status.group(1).strip() if status else None, "legacy": True,
            "runs": sum(m["runs"] or 0 for m in measurements.values()),
            "seeds": max((m["seeds"] for m in measurements.values()), default=0), "measurements": measurements}


def less_evidence(new: dict, old: dict) -> str | None:
    """Why ``new`` rests on less than ``old`` (fewer runs or seeds for a measurement of ``old``), or None."""
    fresh = new.get("measurements") or {}
    for name, was in (old.get("measurements") or {}).items():
        runs, seeds = was.get("runs"), was.get("seeds")
        if not runs and not seeds:
            continue
        now = fresh.get(name) or {"runs": 0, "seeds": 0}
        if (runs is not None and now.get("runs", 0) < runs) or (seeds is not None and now.get("seeds", 0) < seeds):
            before = ", ".join(x for x in (f"{runs} runs" if runs is not None else "",
                                            f"{seeds} seeds" if seeds is not None else "") if x)
            return f"{name}: {now.get('runs', 0)} runs, {now.get('seeds', 0)} seeds now; {before} before"
    return None


KEPT_NOTE = ("> Kept from an earlier report: regenerating it found less evidence than this section rests on (run "
             "directories are never committed). It reads as it was made, under the rules and commands of its time; "
             "the current commands are in results/claims.yaml.")


def _kept(section: str, record: dict) -> str:
    """An old section kept as it is, headed by its evidence record and a note saying it was kept."""
    head, _, rest = section.partition("\n")
    rest = EVIDENCE.sub("", rest).replace(KEPT_NOTE, "")
    rest = re.sub(r"\n{3,}", "\n\n", rest).strip("\n")
    return f"{head}\n\n{evidence_line(record)}\n\n{KEPT_NOTE}\n\n{rest}\n"


def merge_page(results: list[ClaimResult], old: str | None, replace_with_less: bool = False,
               cache: RunCache | None = None) -> tuple[str, list[str]]:
    """The report page, keeping each claim's old row and section where the new ones rest on less.

    Returns the text and one line per claim kept (or replaced with less, when asked).
    """
    claims = [r.claim for r in results]
    rows = {r.claim.id: table_row(r) for r in results}
    sections = {r.claim.id: render_section(r, cache) for r in results}
    notes = []
    if old:
        old_sections, old_rows = _sections(old), _rows(old, claims)
        for r in results:
            cid = r.claim.id
            section = old_sections.get(cid)
            if section is None:
                continue
            was = records(section).get(cid) or legacy_record(cid, section)
            why = less_evidence(r.record(cache), was)
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
    folders = cache.folders if cache else list(DEFAULT_RUNS)
    text = "\n".join([render_header(folders), _table([rows[c.id] for c in claims]), "", rules_text(),
                      *[sections[c.id] for c in claims]])
    return text.rstrip() + "\n", notes


def page_records(page: str) -> dict[str, dict]:
    """Each claim section's evidence record (read from its text when it predates records)."""
    return {cid: records(section).get(cid) or legacy_record(cid, section) for cid, section in _sections(page).items()}


def merge_block(results: list[ClaimResult], old_block: str | None, link: str, replace_with_less: bool = False,
                cache: RunCache | None = None, old_page: str | None = None) -> tuple[str, list[str]]:
    """README's status table (with its evidence records above it), keeping rows the new ones would weaken.

    A row without a record of its own takes the record of ``old_page``'s section when that page's row
    says the same (the table was copied from that page), else what its own text says.
    """
    claims = [r.claim for r in results]
    rows = {r.claim.id: table_row(r, link) for r in results}
    recs = {r.claim.id: r.record(cache) for r in results}
    notes = []
    if old_block:
        old_rows, old_recs = _rows(old_block, claims), records(old_block)
        page_rows = _rows(old_page, claims) if old_page else {}
        page_recs = page_records(old_page) if old_page else {}
        for r in results:
            cid = r.claim.id
            if cid not in old_rows and cid not in old_recs:
                continue
            was = old_recs.get(cid)
            if was is None and cid in page_recs and _cells(page_rows.get(cid, "|"))[1:] == _cells(old_rows[cid])[1:]:
                was = page_recs[cid]
            was = was or legacy_record(cid, old_rows[cid])
            why = less_evidence(recs[cid], was)
            if why is None:
                continue
            if replace_with_less:
                notes.append(f"replaced {cid}'s row with less evidence ({why}), as --replace-with-less asks")
                continue
            recs[cid] = was
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
