"""Table specs (results/tables.yaml, whose header is the schema) and what they select: runs, rows, recipe, commands.

``tabulate`` turns a spec and the runs found into a ``TableResult``: the runs selected, those of another
recipe (listed, never counted) and a ``Comparison`` of the rest. The recipe is the experiment file: a run
counts when ``trainer.smoke`` is off and each recorded command-line override (``_run.overrides``) touches only
the grid's keys (``hydra.sweeper.params``), the row factors, ``init``, ``FREE_KEYS`` (seed, keys outside the
run identity, where an init reads its weights), or sets a key to the value the experiment (with the run's init)
gives it; the runs counted must then agree on every other config value and on the data's fingerprint.
Commands are derived from the experiment's name: ``python train.py -m experiment=NAME`` trains its grid.
"""

from __future__ import annotations

import shlex
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from mimetic.analysis import AnalysisError
from mimetic.analysis.runs import Run
from mimetic.analysis.tables import (
    INIT_ORDER,
    Comparison,
    comparison_metric,
    config_values,
    describe_conflicts,
    slot_runs,
)
from mimetic.train.config import NOT_IN_RUN_KEY

DATA_KEY = "data fingerprint"
FREE_KEYS = ("seed", "init.checkpoint", "init.path", "hydra", "local", *NOT_IN_RUN_KEY)
_ABSENT = object()


def text(value) -> str:
    """A config value as an override writes it (``true``, ``null``, ``0.7``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)


def same(a, b) -> bool:
    if a == b or text(a) == text(b):
        return True
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return False


# ----------------------------------------------------------------------------- the spec


@dataclass(frozen=True)
class Factor:
    """Config key(s) naming part of a row, printed with ``format`` (``"{}"``, or value -> text) after ``sep``.

    A part whose value is missing (or absent from a mapping format) is left out of the label.
    """

    keys: tuple[str, ...]
    format: object = "{}"
    sep: str = ", "
    values: tuple = ()  # the order of the rows (others after, sorted)

    def text(self, values: tuple) -> str | None:
        if isinstance(self.format, dict):
            hit = [label for key, label in self.format.items() if same(key, values[0])]
            return str(hit[0]) if hit and values[0] is not None else None
        if any(v is None for v in values):
            return None
        return str(self.format).format(*values)

    def rank(self, values: tuple) -> tuple:
        at = [i for i, v in enumerate(self.values) if same(v, values[0])]
        return (at[0] if at else len(self.values), tuple(text(v) for v in values))


@dataclass
class TableSpec:
    name: str
    file: str = ""
    title: str = ""
    section: str = ""  # the heading; default the name
    experiments: tuple[str, ...] = ()  # the first is the table's own: its grid trains it
    aliases: dict = field(default_factory=dict)  # old experiment name -> the config values its runs stand for
    grid: dict = field(default_factory=dict)  # for runs made without an experiment file: the sweep
    arms: dict = field(default_factory=dict)  # init -> overrides it needs beyond the grid (a second command)
    where: dict = field(default_factory=dict)  # key -> allowed values
    factors: tuple[Factor, ...] = (Factor(("init.name",), values=tuple(INIT_ORDER)),)
    order: tuple[str, ...] = ()  # sort priority of factor keys (default: the factors' order)
    baseline: dict = field(default_factory=lambda: {"init.name": "default"})
    metric: str | None = None
    higher_is_better: bool | None = None
    paper: tuple[str, ...] | None = None  # keys of results/paper_numbers.yaml (None: those that apply)
    prefer: str | None = None
    replaces: tuple[str, ...] = ()  # older section headings this table's section supersedes
    blocks: tuple[tuple[str, dict], ...] = ()  # (kind, options)
    figures: dict = field(default_factory=lambda: {"curves": "{name}_{metric}"})
    notes: tuple[str, ...] = ()
    adhoc: bool = False  # made on the fly for an experiment without a spec: every run counts
    inits: tuple = ()  # configs/init's option files: (name, registered init, its own keys), for the factor `init`

    @property
    def heading(self) -> str:
        return self.section or self.name

    @property
    def keys(self) -> list[str]:
        return [k for f in self.factors for k in f.keys]

    def factor_values(self, run: Run) -> dict[str, object]:
        values = {**(self.aliases.get(run.experiment) or {}), **config_values(run)}
        values.setdefault("init.name", run.summary.get("init"))
        return {key: self.init_option(values) if key == "init" else values.get(key) for key in self.keys}

    def init_option(self, values: dict) -> str:
        """The factor ``init``: the option file of configs/init whose keys the run has (the most specific one:
        ``mimetic_vo_opposite`` for mimetic_vo with sign_vo=1, ``dw_iid``), else the registered init's name."""
        hits = [(len(keys), name) for name, base, keys in self.inits
                if base == values.get("init.name") and all(same(values.get(f"init.{k}"), v) for k, v in keys)]
        return max(hits)[1] if hits else values.get("init.name")

    def label(self, values: dict) -> str:
        label = ""
        for f in self.factors:
            part = f.text(tuple(values.get(k) for k in f.keys))
            if part is not None:
                label = part if not label else f"{label}{f.sep}{part}"
        return label or "?"

    @property
    def baseline_label(self) -> str:
        return self.label(self.baseline)

    def rank(self, values: dict) -> tuple:
        ranks = {k: f.rank(tuple(values.get(x) for x in f.keys)) for f in self.factors for k in f.keys[:1]}
        keys = [k for k in self.order if k in ranks] + [k for k in ranks if k not in self.order]
        return tuple(ranks[k] for k in keys)

    def selects(self, run: Run) -> bool:
        if run.group not in self.experiments and run.experiment not in self.aliases:
            return False
        values = {**self.factor_values(run), **config_values(run)}
        return all(any(same(values.get(k), v) for v in allowed) for k, allowed in self.where.items())


def _as_list(value) -> list:
    return [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]


def _factor(entry) -> Factor:
    if isinstance(entry, str):
        entry = {"key": entry}
    keys = tuple(_as_list(entry["key"]))
    return Factor(keys, entry.get("format", "{}"), str(entry.get("sep", ", ")), tuple(_as_list(entry.get("values"))))


def _blocks(entries) -> tuple[tuple[str, dict], ...]:
    out = []
    for entry in entries or []:
        if isinstance(entry, str):
            out.append((entry, {}))
        elif isinstance(entry, dict) and len(entry) == 1:
            kind, options = next(iter(entry.items()))
            out.append((kind, options if isinstance(options, dict) else {"columns": options}))
        else:
            raise ValueError(f"a block is a name or {{name: options}}, got {entry!r}")
    return tuple(out)


SPEC_KEYS = {"file", "title", "section", "experiments", "aliases", "grid", "arms", "where", "rows", "order", "baseline",
             "metric", "higher_is_better", "paper", "prefer", "replaces", "layout", "blocks", "figures", "notes"}


def parse_spec(name: str, entry: dict, layouts: dict, inits: tuple = ()) -> TableSpec:
    unknown = sorted(set(entry) - SPEC_KEYS)
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)}; a table has {', '.join(sorted(SPEC_KEYS))}")
    layout = entry.get("layout")
    if layout is not None and layout not in layouts:
        raise ValueError(f"layout {layout!r} is not one of {', '.join(layouts)}")
    blocks = entry.get("blocks", layouts.get(layout))
    if not blocks:
        raise ValueError("no blocks: give `layout:` or `blocks:`")
    kw = {}
    if "rows" in entry:
        kw["factors"] = tuple(_factor(f) for f in _as_list(entry["rows"]))
    if "baseline" in entry:
        kw["baseline"] = dict(entry["baseline"])
    if "figures" in entry:
        kw["figures"] = dict(entry["figures"] or {})
    return TableSpec(
        name=name, file=str(entry.get("file", "")), title=str(entry.get("title", "")),
        section=str(entry.get("section", "")), experiments=tuple(map(str, _as_list(entry.get("experiments", name)))),
        aliases={str(k): dict(v or {}) for k, v in (entry.get("aliases") or {}).items()},
        grid={str(k): text(v) for k, v in (entry.get("grid") or {}).items()},
        arms={str(k): {str(a): text(b) for a, b in (v or {}).items()} for k, v in (entry.get("arms") or {}).items()},
        where={str(k): tuple(_as_list(v)) for k, v in (entry.get("where") or {}).items()},
        order=tuple(_as_list(entry.get("order"))), metric=entry.get("metric"),
        higher_is_better=entry.get("higher_is_better"),
        paper=None if entry.get("paper") is None else tuple(map(str, _as_list(entry["paper"]))),
        prefer=entry.get("prefer"), replaces=tuple(map(str, _as_list(entry.get("replaces")))),
        blocks=_blocks(blocks), notes=tuple(map(str, _as_list(entry.get("notes")))), inits=inits, **kw)


@dataclass
class Specs:
    """Everything results/tables.yaml declares."""

    tables: dict[str, TableSpec]
    layouts: dict
    files: dict[str, str]  # results file -> the title a new one gets
    figures: list[dict]  # figures drawn from models (scripts/make_figures.py kinds)
    path: Path | None = None

    def table(self, name: str) -> TableSpec:
        if name not in self.tables:
            raise AnalysisError(f"no table named {name!r} in {self.path}; known: {', '.join(self.tables)}")
        return self.tables[name]

    def adhoc(self, group: str) -> TableSpec:
        """Each init against default, every run counted: the table of an experiment without a spec."""
        return TableSpec(group, experiments=(group,), blocks=_blocks(self.layouts.get("experiment")), adhoc=True)


def init_options(configs: Path | None) -> tuple:
    """configs/init's option files as (name, the registered init they start from, their own keys); keys given
    by an interpolation (``${experiment_run:...}``) say nothing about a run's values and are left out."""
    out = []
    for path in sorted(Path(configs).glob("init/*.yaml")) if configs else []:
        data = yaml.safe_load(path.read_text()) or {}
        base = [d for d in data.get("defaults") or [] if d != "_self_"]
        keys = tuple((k, v) for k, v in data.items() if k != "defaults" and not (isinstance(v, str) and "${" in v))
        if len(base) == 1 and isinstance(base[0], str) and keys:
            out.append((path.stem, base[0], keys))
    return tuple(out)


def load_specs(path: Path, configs: Path | None = None) -> Specs:
    """The specs of ``path``; with ``configs``, the factor ``init`` names rows by configs/init's option files."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise AnalysisError(f"cannot read the table specs {path}: {err}") from err
    layouts, inits = data.get("layouts") or {}, init_options(configs)
    tables = {}
    for name, entry in (data.get("tables") or {}).items():
        try:
            tables[str(name)] = parse_spec(str(name), entry or {}, layouts, inits)
        except (KeyError, TypeError, ValueError) as err:
            raise AnalysisError(f"{path}: table {name!r} is malformed ({err}); see the schema at the top of the "
                                "file") from err
    return Specs(tables, layouts, dict(data.get("files") or {}), list(data.get("figures") or []), Path(path))


# ----------------------------------------------------------------------------- the recipe: the experiment file


def override_key(override: str) -> str:
    key = override.lstrip("+~").split("=", 1)[0].split("@")[0]
    return key.replace("/", ".")


def _is(key: str, keys) -> bool:
    return any(key == k or key.startswith(k + ".") for k in keys)


@lru_cache(maxsize=1)
def _parser():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()


def grid_values(grid: dict) -> dict[str, list[str]]:
    """Each swept key's values (``seed: 0,1,2`` -> ['0', '1', '2']), as Hydra expands them."""
    out = {}
    for key, value in grid.items():
        try:
            o = _parser().parse_overrides([f"{key}={value}"])[0]
            out[key] = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
        except Exception:  # Hydra's grammar errors: the text as it is
            out[key] = str(value).split(",")
    return out


class Recipes:
    """Experiment files composed as train.py composes them (cached): their grid and their values."""

    def __init__(self, configs: Path | None):
        self.configs = Path(configs) if configs else None
        self._cache: dict[tuple, object] = {}

    def exists(self, experiment: str | None) -> bool:
        return bool(experiment and self.configs and (self.configs / "experiment" / f"{experiment}.yaml").is_file())

    def compose(self, experiment: str | None, overrides: tuple[str, ...] = ()):
        key = (experiment, overrides)
        if key not in self._cache:
            self._cache[key] = self._compose([*([f"experiment={experiment}"] if experiment else []), *overrides])
        return self._cache[key]

    def _compose(self, overrides: list[str]):
        if self.configs is None or not (self.configs / "train.yaml").is_file():
            return None
        try:
            from hydra import compose, initialize_config_dir

            from mimetic.cli import register_resolvers

            register_resolvers()
            with initialize_config_dir(config_dir=str(self.configs.resolve()), version_base="1.3"):
                return compose(config_name="train", overrides=overrides, return_hydra_config=True)
        except Exception:  # an experiment these configs lack, an option that no longer exists: unknown
            return None

    def grid(self, experiment: str | None) -> dict[str, str]:
        """The experiment file's ``hydra.sweeper.params`` ({} without one)."""
        cfg = self.compose(experiment) if self.exists(experiment) else None
        params = cfg.hydra.sweeper.get("params") if cfg is not None else None
        return {str(k): text(v) for k, v in (params or {}).items()}

    def value(self, cfg, key: str):
        if cfg is None:
            return _ABSENT
        from omegaconf import DictConfig, OmegaConf

        try:
            value = OmegaConf.select(cfg, key, default=_ABSENT)
            return value.get("name", _ABSENT) if isinstance(value, DictConfig) else value
        except Exception:
            return _ABSENT


def _mine(run: Run, key: str, override: str):
    """The run's value of ``key``: its resolved config's, else (a config recorded in part) the override's."""
    values = config_values(run)
    if key in values:
        return values[key]
    return values.get(f"{key}.name", override.split("=", 1)[-1])


def recipe_problems(spec: TableSpec, run: Run, recipes: Recipes) -> list[str]:
    """How ``run`` leaves the table's recipe (empty: it counts). Each item reads after "they"."""
    smoke = bool(config_values(run).get("trainer.smoke"))
    out = ["are smoke runs (trainer.smoke=true: one step on a handful of samples)"] if smoke else []
    if run.overrides is None:
        return [*out, "do not record their command-line overrides (config.yaml has no _run.overrides)"]
    own = run.experiment if recipes.exists(run.experiment) else None
    base = own or (spec.experiments[0] if recipes.exists(spec.experiments[0]) else None)
    extra = () if own else tuple(f"{k}={text(v)}" for k, v in (spec.aliases.get(run.experiment) or {}).items())
    extra += tuple(f"{k}={v}" for k, v in spec.grid.items() if "," not in v)
    swept = {"init", "seed", *spec.keys, *spec.grid, *recipes.grid(base), *recipes.grid(spec.experiments[0])}
    init = tuple(o for o in run.overrides if override_key(o) == "init" and not o.startswith("~"))
    for o in run.overrides:
        key = override_key(o)
        if _is(key, FREE_KEYS) or key in swept or (smoke and key == "trainer.smoke"):
            continue
        known = base or spec.grid or run.experiment is None  # a run without one ran train.yaml's defaults
        cfg = recipes.compose(base, extra + init[-1:]) if known else None
        theirs = recipes.value(cfg, key)
        if theirs is _ABSENT:
            out.append(f"override {o} (not set by the recipe)")
        elif o.startswith("~") or not same(_mine(run, key, o), theirs):
            out.append(f"override {o} (the recipe: {key}={text(theirs)})")
    return out


def _outside_recipe(key: str, spec: TableSpec) -> bool:
    """Keys allowed to differ between the runs of one table."""
    if key in spec.keys or key in ("seed", "experiment") or key.startswith("init."):
        return True
    return _is(key, NOT_IN_RUN_KEY)


def recipe_differences(spec: TableSpec, runs: list[Run]) -> list[str]:
    """Config keys (outside the factors) on which the runs disagree, with their values."""
    # The data's fingerprint too: dataset.root is outside the run identity (a moved folder is the same
    # data), so two folders of different images would otherwise look like one recipe.
    configs = [{**config_values(run), DATA_KEY: run.run_info.get("data_fingerprint")} for run in runs]
    lines = []
    for key in sorted({k for c in configs for k in c if not _outside_recipe(k, spec)}):
        seen: dict[str, list[Run]] = defaultdict(list)
        for run, cfg in zip(runs, configs):
            seen[repr(cfg.get(key))].append(run)
        if len(seen) > 1:
            parts = "; ".join(f"{value} in {len(rs)} run(s), e.g. {rs[0].path}" for value, rs in sorted(seen.items()))
            lines.append(f"{key}: {parts}")
    return lines


# ----------------------------------------------------------------------------- commands


def commands(spec: TableSpec, recipes: Recipes | None = None) -> list[str]:
    """The command(s) that train the table, derived from its experiment name (and, for an arm that needs an
    extra override the grid cannot give, a second one)."""
    own = spec.experiments[0]
    grid = (recipes.grid(own) if recipes else {}) or spec.grid
    words = ["python", "train.py", "-m", *([f"experiment={own}"] if not spec.grid else [])]
    words += [f"{k}={v}" for k, v in spec.grid.items()]
    inits = grid_values(grid).get("init", [])
    out = [" ".join(shlex.quote(w) for w in words)]
    for arm, extra in spec.arms.items():
        if arm not in inits:
            more = [w for w in words if override_key(w) != "init" or "=" not in w]
            out.append(" ".join([*more, f"init={arm}", *(f"{k}={v}" for k, v in extra.items())]))
    return out


def grid_text(spec: TableSpec, recipes: Recipes) -> str:
    """What the table's grid trains: ``seed 0,1,2 × init default,mimetic (6 runs)``, or why nothing is known."""
    own = spec.experiments[0]
    grid = spec.grid or recipes.grid(own)
    if not grid:
        where = f"configs/experiment/{own}.yaml"
        return f"{where} has no grid (hydra.sweeper.params)" if recipes.exists(own) else f"no {where}"
    runs = 1
    for v in grid_values(grid).values():
        runs *= len(v)
    return " × ".join(f"{k} {v}" for k, v in grid.items()) + f" ({runs} runs)"


# ----------------------------------------------------------------------------- tabulating


@dataclass
class OffRecipe:
    """Runs of a table's experiments made with another recipe: what they change (never counted), and (the
    report's) their numbers, for information only."""

    why: tuple[str, ...]
    runs: list[Run]
    line: str = ""


@dataclass
class TableResult:
    spec: TableSpec
    found: list[Run] = field(default_factory=list)  # every run selected, on recipe or not
    off: list[OffRecipe] = field(default_factory=list)
    cmp: Comparison | None = None  # the runs on recipe
    problem: str = ""  # why the runs on recipe cannot be tabulated (an error: conflicts, mixed recipes)
    missing: str = ""  # why there is no table yet although runs exist (no baseline runs)

    @property
    def counted(self) -> list[Run]:
        return self.cmp.runs if self.cmp else []

    @property
    def evidence(self) -> dict:
        runs = self.counted
        return {"runs": len(runs), "seeds": len({r.seed for r in runs})}


def comparison(spec: TableSpec, runs: list[Run], prefer: str | None = None,
               metric: str | None = None) -> tuple[Comparison, list[str]]:
    """The rows of ``runs`` (already selected and on recipe) and the conflicts left (as text lines)."""
    values = {id(run): spec.factor_values(run) for run in runs}
    labels = {}
    for run in runs:
        labels.setdefault(spec.label(values[id(run)]), values[id(run)])
    order = sorted(labels, key=lambda label: (label != spec.baseline_label, spec.rank(labels[label])))
    rows, dropped, conflicts = slot_runs(spec.name, runs, lambda r: spec.label(values[id(r)]), order,
                                         prefer or spec.prefer)
    cmp = Comparison(spec.name, rows, comparison_metric(runs, metric or spec.metric, spec.higher_is_better),
                     dropped, {label: labels[label] for label in rows})
    return cmp, ([describe_conflicts(conflicts)] if conflicts else [])


def tabulate(spec: TableSpec, runs: list[Run], recipes: Recipes | None = None, prefer: str | None = None,
             metric: str | None = None) -> TableResult:
    """Select the spec's runs, set aside those of another recipe, and tabulate the rest."""
    result = TableResult(spec, [run for run in runs if spec.selects(run)])
    on, off = [], defaultdict(list)
    for run in result.found:
        why = [] if spec.adhoc or recipes is None else recipe_problems(spec, run, recipes)
        (off[tuple(why)] if why else on).append(run)
    result.off = [OffRecipe(why, rs) for why, rs in sorted(off.items(), key=lambda kv: (-len(kv[1]), kv[0]))]
    if not on:
        return result
    mixed = [] if spec.adhoc else recipe_differences(spec, on)
    if mixed:
        result.problem = (f"{spec.name}: the runs do not share one recipe:\n  " + "\n  ".join(mixed)
                          + "\nMove the runs of the other recipe out of the folders given with --runs.")
        return result
    try:
        cmp, conflicts = comparison(spec, on, prefer, metric)
    except AnalysisError as err:
        result.problem = f"{spec.name}: {err}"
        return result
    if conflicts:
        result.problem = conflicts[0]
        return result
    result.cmp = cmp
    if not spec.adhoc and spec.baseline_label not in cmp.rows:
        result.missing = (f"{spec.name}: no runs of the baseline row ({spec.baseline_label}); train them with: "
                          f"{' && '.join(commands(spec, recipes))}")
    return result


def group_runs(runs: list[Run], groups: list[str] | None = None, prefer: str | None = None,
               metric: str | None = None) -> dict[str, Comparison]:
    """Each init against default, every run counted: one table per experiment (or ``<dataset>-<model>``) found."""
    results = {g: tabulate(TableSpec(g, experiments=(g,), adhoc=True), runs, None, prefer, metric)
               for g in dict.fromkeys(groups or sorted({run.group for run in runs}))}
    missing = [g for g, r in results.items() if not r.found]
    if missing:
        raise AnalysisError(f"no finished runs of {', '.join(missing)} (experiments found: "
                            f"{', '.join(sorted({run.group for run in runs})) or 'none'})")
    problems = [r.problem for r in results.values() if r.problem]
    if problems:
        raise AnalysisError("\n\n".join(problems))
    return {g: r.cmp for g, r in results.items()}
