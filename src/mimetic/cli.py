"""The boundary between Hydra and a run: resolvers, the error boundary, sweep reports, logging.

* ``${run_dir:}`` / ``${sweep_dir:}`` / ``${run_subdir:}`` name the run directory from the run
  identity: ``<paths.runs_dir>/<run key>`` for a run, and for a sweep's job ``<hydra.sweep.dir>/<run
  key>``, the sweep dir being ``paths.runs_dir`` unless ``hydra.sweep.dir`` moves it. A config that
  does not validate gets a throw-away placeholder directory instead (removed on exit), so an
  invalid config never leaves a run directory behind.
* ``${experiment_run:NAME}`` names another experiment's single run directory the same way (its
  run key, computed from its composed config under this config's paths), so an arm that starts from
  that run (``init=pretrained_transfer_source``) needs no hand-copied path.
* :func:`sweep_jobs` lists the jobs ``train.py -m <overrides>`` launches: the experiment's grid
  (``hydra.sweeper.params``) combined with the command line as Hydra's basic sweeper combines them.
* :func:`main` turns every user error (``MimeticError``) into one message, exit status 2,
  and a stop signal into one line, the signal's status. In a sweep (``-m``) a failing job
  records its error (``FAILED`` in its run dir, the message in its log) and the next job
  runs; :class:`SweepReport` lists the failures at the end and exits non-zero.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mimetic.errors import MimeticError

log = logging.getLogger("mimetic")

PLACEHOLDER_PREFIX = "mimetic-invalid-config-"
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"  # the repository's configs/ (train.py's)
CONFIG_NAME = "train"
# A record for the run's log file only: the CLI prints its message to the terminal itself (once).
FILE_ONLY = {"file_only": True}


class NotFileOnly(logging.Filter):
    """Keeps ``FILE_ONLY`` records off the console handler (configs/train.yaml installs it there)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "file_only", False)


def _placeholder_dir() -> str:
    return str(Path(tempfile.gettempdir()) / f"{PLACEHOLDER_PREFIX}{os.getpid()}")


def resolve_run_dir(root: DictConfig) -> str:
    """``<paths.runs_dir>/<run key>``; a placeholder outside runs/ when the config is invalid."""
    from mimetic.train.config import load_config, run_identity

    try:
        cfg = load_config(root)
        return str((Path(cfg.paths.runs_dir).expanduser() / run_identity(cfg).run_key).absolute())
    except MimeticError:
        return _placeholder_dir()  # run() reports the real problem, with a clear message


def resolve_run_subdir(root: DictConfig) -> str:
    """A sweep job's directory below ``hydra.sweep.dir``: the run key, relative, so that Hydra's
    ``<sweep dir>/<subdir>`` puts it wherever ``hydra.sweep.dir`` says (default ``paths.runs_dir``, i.e.
    the ``runs/<run key>`` a single run gets). An invalid config gets the absolute placeholder, which
    Hydra's join keeps as it is: nothing lands in the sweep dir."""
    from mimetic.train.config import load_config, run_identity

    try:
        return run_identity(load_config(root)).run_key
    except MimeticError:
        return _placeholder_dir()


def resolve_sweep_dir(root: DictConfig) -> str:
    """``hydra.sweep.dir``'s default: ``paths.runs_dir`` (absolute); a placeholder when it is unusable."""
    runs_dir = str(OmegaConf.select(root, "paths.runs_dir", default="") or "").strip()
    return str(Path(runs_dir).expanduser().absolute()) if runs_dir not in ("", "/", "~") else _placeholder_dir()


def wandb_mode_from_env() -> str:
    """``logger.mode``'s default: WANDB_MODE when set (wandb's legacy ``dryrun``/``run`` mapped), else offline."""
    mode = os.environ.get("WANDB_MODE", "").strip().lower()
    return {"": "offline", "dryrun": "offline", "run": "online"}.get(mode, mode)


def compose_config(overrides: Sequence[str] = (), *, hydra_node: bool = False,
                   config_dir: str | Path | None = None) -> DictConfig:
    """``configs/train.yaml`` composed with ``overrides``, as train.py composes it: inside a running Hydra
    app (or an ``initialize_config_dir`` block) through its config loader, otherwise from ``config_dir``
    (default: the repository's ``configs/``)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if config_dir is None and GlobalHydra.instance().is_initialized():
        return compose(config_name=CONFIG_NAME, overrides=list(overrides), return_hydra_config=hydra_node)
    with initialize_config_dir(config_dir=str(Path(config_dir or CONFIG_DIR).absolute()), version_base="1.3"):
        return compose(config_name=CONFIG_NAME, overrides=list(overrides), return_hydra_config=hydra_node)


@functools.lru_cache(maxsize=16)
def _experiment_run_dir(name: str, runs_dir: str, data_dir: str) -> str:
    from hydra.errors import HydraException

    from mimetic.errors import ConfigError
    from mimetic.train.config import load_config, run_identity

    try:
        cfg = load_config(compose_config([f"experiment={name}", f"paths.runs_dir={runs_dir}",
                                          f"paths.data_dir={data_dir}"]))
    except HydraException as err:  # no such experiment file, or one that does not compose
        raise ConfigError(f"${{experiment_run:{name}}}: experiment={name} does not compose "
                          f"({str(err).splitlines()[0]})") from None
    return str(Path(runs_dir) / run_identity(cfg).run_key)


def resolve_experiment_run(name: str, root: DictConfig) -> str:
    """``${experiment_run:NAME}``: the run directory of experiment NAME's single run (its own defaults: seed 0,
    its init) under this config's ``paths``: ``<paths.runs_dir>/<its run key>``, as typed (a relative
    ``paths.runs_dir`` stays relative, so the path, which a run's identity may include, is the same on every
    machine). The run must be finished (``DONE``): an arm that copies from it must not start from a half-trained
    or missing run; the message names the command that trains it."""
    from mimetic.errors import ConfigError
    from mimetic.runtime.rundir import DONE

    runs_dir = str(OmegaConf.select(root, "paths.runs_dir", default="runs"))
    data_dir = str(OmegaConf.select(root, "paths.data_dir", default="data"))
    run_dir = _experiment_run_dir(str(name), runs_dir, data_dir)
    if not (Path(run_dir).expanduser() / DONE).exists():
        same = (runs_dir, data_dir) == ("runs", "data")
        paths = "" if same else f" paths.runs_dir={runs_dir} paths.data_dir={data_dir}"
        raise ConfigError(f"this job starts from the run of experiment={name}, {run_dir}, which has not finished "
                          f"(no {DONE}): train it first with python train.py experiment={name}{paths}")
    return run_dir


def sweep_jobs(overrides: Sequence[str], config_dir: str | Path | None = None) -> list[list[str]]:
    """The jobs ``python train.py -m <overrides>`` launches, each as its overrides, in launch order.

    Hydra's basic sweeper takes the composed config's grid (``hydra.sweeper.params``: an experiment file's
    ``key: a,b,c`` entries) followed by the command line's overrides; a key the command line gives replaces
    the grid's (in the grid's place), and the jobs are the cartesian product. The grid comes from the config
    composed with the command line's single-valued overrides (a swept group, e.g. ``experiment=a,b``, is not
    applied there: Hydra composes the sweep's config without it too; ``hydra.sweeper.params.seed=0`` changes
    the grid itself). Launcher and other ``hydra`` settings are not a job's overrides (they never change its
    run directory) and are left out.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    given = parser.parse_overrides(list(overrides))

    def is_hydra(override) -> bool:
        return override.key_or_group == "hydra" or override.key_or_group.startswith(("hydra/", "hydra."))

    # The grid's config: the command line's single values, of Hydra's own settings only the sweeper's (a
    # launcher's need its plugin, and never change the grid).
    fixed = [o.input_line for o in given if not o.is_sweep_override()
             and (not is_hydra(o) or o.key_or_group.startswith("hydra.sweeper."))]
    grid = OmegaConf.select(compose_config(fixed, hydra_node=True, config_dir=config_dir), "hydra.sweeper.params")
    lines = [f"{key}={value}" for key, value in (grid or {}).items()]
    axes: dict[str, list[str]] = {}
    for override in [*parser.parse_overrides(lines), *given]:
        if is_hydra(override):
            continue
        key = override.get_key_element()
        if override.is_sweep_override():
            axes[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            axes[key] = [f"{key}={override.get_value_element_as_str()}"]
    return [list(job) for job in itertools.product(*axes.values())]


def register_resolvers() -> None:
    """Resolvers used by configs/train.yaml's hydra node and the init option files, and the ConfigStore schemas."""
    from mimetic.train.config import register_configs

    register_configs()
    if not OmegaConf.has_resolver("run_dir"):
        OmegaConf.register_new_resolver("run_dir", lambda *, _root_: resolve_run_dir(_root_))
        OmegaConf.register_new_resolver("sweep_dir", lambda *, _root_: resolve_sweep_dir(_root_))
        OmegaConf.register_new_resolver("run_subdir", lambda *, _root_: resolve_run_subdir(_root_))
        OmegaConf.register_new_resolver("wandb_mode", wandb_mode_from_env)
    if not OmegaConf.has_resolver("experiment_run"):
        OmegaConf.register_new_resolver("experiment_run", lambda name, *, _root_: resolve_experiment_run(name, _root_))


@dataclass
class JobFailed:
    """What a failed job of a sweep returns (instead of stopping the sweep)."""

    message: str
    run_dir: str
    overrides: list[str]


def _hydra_state() -> tuple[bool, str | None, list[str]]:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return False, None, []
    hc = HydraConfig.get()
    return hc.mode == RunMode.MULTIRUN, hc.runtime.output_dir, list(hc.overrides.task)


def _remove_placeholder(output_dir: str | None) -> None:
    if output_dir and Path(output_dir).name.startswith(PLACEHOLDER_PREFIX):
        logging.shutdown()  # close Hydra's log file inside it first
        shutil.rmtree(output_dir, ignore_errors=True)


def _remove_if_it_holds_nothing(output_dir: str | None) -> None:
    """A run that stopped before writing anything of its own (bad data, a busy dir) leaves no dir behind."""
    from mimetic.runtime.rundir import FAILED, LOCK, LOG

    if not output_dir or not Path(output_dir).is_dir():
        return
    if all(p.name in (LOG, FAILED, LOCK) or p.name.startswith(LOG) for p in Path(output_dir).iterdir()):
        if (Path(output_dir) / LOCK).exists():
            return  # another live process owns it (that is why we stopped)
        logging.shutdown()
        shutil.rmtree(output_dir, ignore_errors=True)


def _quiet_non_main_ranks() -> None:
    """Under torchrun every rank runs this: only rank 0 logs to the run's files."""
    rank = int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")) or 0)
    if rank == 0:
        return
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler):
            root.removeHandler(handler)
            handler.close()
    logging.getLogger("mimetic").setLevel(logging.WARNING)


def main(cfg: DictConfig) -> dict | JobFailed | None:
    """Run one training job. A user error prints one message: exit 2 (or, in a sweep, a failed job)."""
    from mimetic.runtime.signals import StopRequested
    from mimetic.train.run import run

    multirun, output_dir, overrides = _hydra_state()
    _quiet_non_main_ranks()
    try:
        return run(cfg)
    except MimeticError as err:
        log.error("%s", err, extra=None if multirun else FILE_ONLY)  # a single run prints it below, once
        is_placeholder = bool(output_dir) and Path(output_dir).name.startswith(PLACEHOLDER_PREFIX)
        if multirun:
            log.error("job failed (exit status 2); the sweep goes on with the next job")
            if is_placeholder:
                _remove_placeholder(output_dir)
            return JobFailed(str(err), "" if is_placeholder else str(output_dir), overrides)
        print(f"error: {err}", file=sys.stderr)
        _remove_placeholder(output_dir)
        _remove_if_it_holds_nothing(output_dir)
        sys.exit(2)
    except StopRequested as stop:
        from mimetic.runtime.requeue import requeue_if_asked

        log.warning("%s", stop, extra=FILE_ONLY)
        print(str(stop), file=sys.stderr)
        requeue_if_asked(stop.signal_name)  # SLURM launchers set MIMETIC_REQUEUE=1: checkpoint first, then requeue
        sys.exit(stop.exit_code)


try:  # the callback needs Hydra; the library must import without it
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover
    Callback = object  # type: ignore[misc,assignment]


class SweepReport(Callback):
    """Lists the failed jobs of a local sweep at its end and exits non-zero if there were any.

    A job that raised something other than a ``MimeticError`` (a bug) is a failed job too: its
    traceback goes to its log (and the console) when it ends, and the sweep goes on. Hydra's sweeper
    would otherwise re-raise the first such exception once the jobs are done, so the sweep ended on
    that traceback and never reached this report; the job's result is therefore recorded as a
    :class:`JobFailed`, as a user error's is. Only where the job ran in the sweep's own process (the
    local launcher): a job a remote launcher ran (SLURM) still returns its exception, so the
    submitting command, which never sees this report, keeps failing on it.
    """

    def __init__(self) -> None:
        self.failed: list[JobFailed] = []
        self.count = 0
        self.sweep_pid: int | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.sweep_pid = os.getpid()

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        from hydra.core.utils import JobStatus
        from hydra.types import RunMode

        if OmegaConf.select(config, "hydra.mode") != RunMode.MULTIRUN:
            return  # a single run reports for itself (an unexpected error keeps Hydra's traceback)
        self.count += 1
        value = getattr(job_return, "_return_value", None)
        if isinstance(value, JobFailed):
            self.failed.append(value)
        elif job_return.status == JobStatus.FAILED:
            failure = JobFailed(f"{type(value).__name__}: {value}", str(config.hydra.runtime.output_dir),
                                list(job_return.overrides or []))
            log.error("job failed with an unexpected %s (a bug; traceback below); the sweep goes on with the next "
                      "job", type(value).__name__, exc_info=value if isinstance(value, BaseException) else None)
            self.failed.append(failure)
            if self.sweep_pid == os.getpid():
                job_return.return_value, job_return.status = failure, JobStatus.COMPLETED  # reported, not raised

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.failed:
            return
        lines = [f"{len(self.failed)} of {self.count} jobs failed:"]
        for job in self.failed:
            where = f" ({job.run_dir})" if job.run_dir else ""
            lines.append(f"  - {' '.join(job.overrides)}{where}: {job.message.splitlines()[0]}")
        lines.append("Fix the cause and run the same sweep again: finished jobs are skipped, the rest resume.")
        print("\n".join(lines), file=sys.stderr)
        log.error("\n".join(lines), extra=FILE_ONLY)
        sys.exit(1)


class LauncherCheck(Callback):
    """A launcher other than Hydra's basic one in a command it cannot serve: one message, exit 2.

    Hydra uses ``hydra/launcher`` only for sweeps (``-m``): a single run with ``hydra/launcher=slurm``
    would train here, on this machine, with no word. And the SLURM launchers need the SLURM commands
    (submitit fails with a traceback, 'Could not detect "srun"', after the sweep has started).
    Registered before :class:`RunDirCheck`, so a refused command creates no directory.
    """

    @staticmethod
    def _launcher(config: DictConfig) -> tuple[str, str]:
        """(the ``hydra/launcher`` option chosen, the launcher class's path)."""
        choices = OmegaConf.select(config, "hydra.runtime.choices", default=None) or {}
        target = str(OmegaConf.select(config, "hydra.launcher._target_", default="") or "")
        return str(choices.get("hydra/launcher") or target.rsplit(".", 1)[-1] or "basic"), target

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        choice, target = self._launcher(config)
        if target and not target.endswith(".BasicLauncher"):
            print(f"error: hydra/launcher={choice} launches the jobs of a sweep, and Hydra ignores it without -m: "
                  "this command would train here, on this machine. Add -m to submit it (python train.py -m "
                  f"hydra/launcher={choice} ...), or drop hydra/launcher={choice} to train here.", file=sys.stderr)
            sys.exit(2)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        choice, target = self._launcher(config)
        if not target.endswith(".SlurmLauncher"):
            return
        missing = [command for command in ("sbatch", "srun") if shutil.which(command) is None]
        if missing:
            print(f"error: hydra/launcher={choice} submits the sweep's jobs to SLURM, but {' and '.join(missing)} "
                  f"{'is' if len(missing) == 1 else 'are'} not on this machine's PATH: run the command on a SLURM "
                  f"login node, or drop hydra/launcher={choice} to run the sweep here, one job after another.",
                  file=sys.stderr)
            sys.exit(2)


class RunDirCheck(Callback):
    """Before Hydra creates the run (or sweep) directory: one message if it cannot be created."""

    @staticmethod
    def _check(path: str, key: str) -> None:
        if Path(path).name.startswith(PLACEHOLDER_PREFIX):
            return  # an invalid config: the run reports the real problem
        try:
            Path(path).mkdir(parents=True, exist_ok=True)
        except OSError as err:
            print(f"error: cannot create the run directory {path} ({err.strerror}). Point {key} (or "
                  "paths.runs_dir) at a writable place.", file=sys.stderr)
            sys.exit(2)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(str(config.hydra.run.dir), "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(str(config.hydra.sweep.dir), "hydra.sweep.dir")


class RunLogHandler(logging.FileHandler):
    """Hydra's per-job log file (``train.log``), but an unwritable run directory is not a crash.

    Hydra opens the file before the run starts; if that fails (read-only directory, full
    disk), logging goes to stderr only and the run itself reports the problem clearly.
    Ranks other than 0 do not open it (they would interleave lines in one file).
    """

    def __init__(self, filename: str, mode: str = "a", encoding: str | None = None, delay: bool = False):
        rank = int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")) or 0)
        try:
            super().__init__(filename, mode, encoding, delay=delay or rank != 0)
            self._disabled = rank != 0
        except OSError as err:
            logging.Handler.__init__(self)
            self.baseFilename, self.mode, self.encoding, self.stream = filename, mode, encoding, None
            self._disabled = True
            print(f"warning: cannot write the log file {filename} ({err.strerror}); logging to the console only",
                  file=sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        if not self._disabled:
            super().emit(record)
