"""Collect finished runs from their directories (the source of truth for every table).

Every file is read through ``mimetic.runtime.rundir.RunDir``, the one module that knows the
run directory's file names; a corrupt file there is a ``RunDirError`` naming it. Here a
run that cannot be read becomes an ``Unreadable`` entry (path + message + the experiment
it seems to belong to), so the caller decides whether it matters for the tables asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mimetic.analysis import AnalysisError
from mimetic.errors import MimeticError
from mimetic.runtime.rundir import DONE, ENVIRONMENT, SUMMARY, RunDir


@dataclass
class Run:
    """One finished run: its summary, metrics records, resolved config and environment."""

    path: Path
    summary: dict
    metrics: list[dict]
    config: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    finished_at: float = 0.0  # mtime of DONE: what "--prefer newest" compares

    @property
    def experiment(self) -> str | None:
        return self.summary.get("experiment")

    @property
    def init(self) -> str:
        return str(self.summary["init"])

    @property
    def seed(self) -> int:
        return int(self.summary["seed"])

    @property
    def group(self) -> str:
        """The experiment, or ``<dataset>-<model>`` for runs made without one."""
        return self.experiment or f"{self.summary.get('dataset')}-{self.summary.get('model')}"

    @property
    def run_info(self) -> dict:
        return self.config.get("_run") or {}

    @property
    def overrides(self) -> list[str] | None:
        """The command-line overrides recorded in config.yaml (None: not recorded)."""
        overrides = self.run_info.get("overrides")
        return None if overrides is None else [str(o) for o in overrides]

    @property
    def config_hash(self) -> str | None:
        return self.run_info.get("config_hash")

    @property
    def name(self) -> str:
        return self.run_info.get("run_key") or self.summary.get("run_key") or self.path.name

    @property
    def x_key(self) -> str:
        """``step`` when every record has one (newer runs), else ``epoch``."""
        return "step" if self.metrics and all("step" in r for r in self.metrics) else "epoch"

    def value(self, record: dict, key: str) -> float:
        v = record.get(key)
        return float("nan") if v is None else float(v)

    def curve(self, key: str = "test_acc") -> list[float]:
        return [self.value(r, key) for r in self.metrics]

    def final(self, key: str) -> float:
        """The run's final value: summary.json's, else the last record holding it."""
        if self.summary.get(key) is not None:
            return float(self.summary[key])
        for record in reversed(self.metrics):
            if record.get(key) is not None:
                return float(record[key])
        return float("nan")


@dataclass
class Unreadable:
    """A finished run directory that cannot be used, and why."""

    path: Path
    message: str
    group: str | None = None  # the experiment it belongs to, when another file still says


def _check_summary(rundir: RunDir, summary: dict | None) -> dict:
    path = rundir.file(SUMMARY)
    if summary is None:
        raise AnalysisError(f"{rundir.path} has DONE but no {SUMMARY}; delete the run directory to run it again")
    missing = [k for k in ("init", "seed") if k not in summary]
    if not summary.get("experiment"):
        missing += [k for k in ("dataset", "model") if k not in summary]
    if missing:
        raise AnalysisError(f"{path} lacks {', '.join(missing)}: not a summary written by train.py")
    try:
        int(summary["seed"])
    except (TypeError, ValueError):
        raise AnalysisError(f"{path}: seed {summary['seed']!r} is not an integer") from None
    return summary


def load_run(path: Path) -> Run | None:
    """A finished run (``DONE`` present), or None for an unfinished directory.

    Raises a ``MimeticError`` naming the file when one of them is corrupt.
    """
    rundir = RunDir(path)
    if not rundir.is_done:
        return None
    summary = _check_summary(rundir, rundir.read_summary())
    return Run(
        path=rundir.path,
        summary=summary,
        metrics=rundir.read_metrics(),
        config=rundir.read_config() or {},
        environment=rundir.read_json(ENVIRONMENT) or {},
        finished_at=rundir.file(DONE).stat().st_mtime,
    )


def _guess_group(path: Path) -> str | None:
    """Which experiment an unreadable run belongs to, from whichever file is still readable."""
    rundir = RunDir(path)
    for read in (rundir.read_summary, rundir.read_config):
        try:
            data = read() or {}
        except MimeticError:
            continue
        if data.get("experiment"):
            return str(data["experiment"])
        dataset, model = data.get("dataset"), data.get("model")
        dataset = dataset.get("name") if isinstance(dataset, dict) else dataset
        model = model.get("name") if isinstance(model, dict) else model
        if dataset and model:
            return f"{dataset}-{model}"
    return None


def scan_runs(roots: list[Path] | Path) -> tuple[list[Run], list[Unreadable]]:
    """Every finished run below ``roots`` (a root may itself be a run directory), and the unreadable ones."""
    roots = [roots] if isinstance(roots, (str, Path)) else list(roots)
    runs: list[Run] = []
    unreadable: list[Unreadable] = []
    seen: set[Path] = set()
    for root in map(Path, roots):
        if not root.is_dir():
            raise AnalysisError(f"{root} is not a directory (--runs takes folders holding run directories)")
        for done in sorted(root.rglob(DONE)):
            path = done.parent
            if path.resolve() in seen:
                continue
            seen.add(path.resolve())
            try:
                run = load_run(path)
            except MimeticError as err:
                unreadable.append(Unreadable(path, str(err), _guess_group(path)))
                continue
            if run is not None:
                runs.append(run)
    return runs, unreadable


def collect_runs(roots: list[Path] | Path) -> list[Run]:
    """Every finished run below ``roots``; an unreadable one is an error that names its file."""
    runs, unreadable = scan_runs(roots)
    if unreadable:
        raise AnalysisError("\n".join(u.message for u in unreadable))
    return runs
