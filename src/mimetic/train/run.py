"""A whole training run, top to bottom: what ``python train.py`` does.

config -> identity -> run dir (owner? finished? locked?) -> data -> the step-0 model (seeded
build, init, diagnostics: ``train.step0``) -> freeze -> optimizer -> resume? -> the step loop
(``train.loop``: train, evaluate, checkpoint, log) -> summary.json + DONE.

The job runtime (run directory, lock, signals, ranks, checkpoint files, tracking) lives in
``mimetic.runtime``; this module wires it to the recipe.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
from omegaconf import DictConfig

from mimetic.data import Data, DataRequest, build_data
from mimetic.errors import CheckpointError, ConfigError, MimeticError
from mimetic.models import freeze_
from mimetic.runtime import checkpoint, distributed
from mimetic.runtime.environment import describe_device, environment, git_diff
from mimetic.runtime.rundir import ENVIRONMENT, GIT_DIFF, INIT_DIAGNOSTICS, SUMMARY, RunDir
from mimetic.runtime.runlock import RunLock
from mimetic.runtime.signals import DEFAULT_SIGNALS, GracefulStop
from mimetic.runtime.sync_batchnorm import synchronise_batchnorm
from mimetic.runtime.threads import apply_threads
from mimetic.runtime.tracking import WandbMirror
from mimetic.train.config import LoggerConfig, RunIdentity, TrainConfig, load_config, run_identity
from mimetic.train.engine import Precision
from mimetic.train.loop import Cadence, Loop, Progress, Recipe, Session
from mimetic.train.optim import build_optimizer, build_scheduler
from mimetic.train.seeding import derive_seed
from mimetic.train.step0 import base_model, initial_model
from mimetic.train.tasks import Task, build_task

log = logging.getLogger("mimetic")

SMOKE_BATCH = 8
STOP_SIGNALS = (*DEFAULT_SIGNALS, *((signal.SIGUSR2,) if hasattr(signal, "SIGUSR2") else ()))


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={name} but no CUDA device is visible; use trainer.device=auto or cpu")
    return device


def _command_overrides() -> list[str]:
    """The command-line overrides of this job (recorded so tables can cite exact commands)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return list(HydraConfig.get().overrides.task)


def _hydra_run_dir() -> Path:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        raise ConfigError("run() outside Hydra needs run_dir=<directory>")
    return Path(HydraConfig.get().runtime.output_dir)


# ----------------------------------------------------------------------------- run dir
def _claim(rundir: RunDir, identity: RunIdentity) -> None:
    """Refuse a directory that belongs to another config — before honouring its DONE."""
    theirs = rundir.owner_hash()
    if theirs is not None and theirs != identity.config_hash:
        raise ConfigError(
            f"{rundir.path} already holds a run with a different config (hash {theirs}, this one "
            f"{identity.config_hash}: another config or other data). Point hydra.run.dir at a new directory, or "
            "drop the override to get the default run dir."
        )


def _load_checkpoint(rundir: RunDir, identity: RunIdentity) -> dict | None:
    path = rundir.file(checkpoint.CHECKPOINT_NAME)
    if not path.exists():
        return None
    state = checkpoint.load(path)
    if state.get("config_hash") != identity.config_hash:
        raise CheckpointError(
            f"{path} was written by a different config (hash {state.get('config_hash')}, this one "
            f"{identity.config_hash}). Point hydra.run.dir at a new directory for this config."
        )
    return state


def _write_header(rundir: RunDir, cfg: TrainConfig, identity: RunIdentity, device: torch.device,
                  diagnostics: dict, data: Data) -> None:
    """What describes the run, written once on a fresh start: config, environment, step-0 diagnostics.

    ``_run.data_spec`` is what the model was built for (classes, channels, vocabulary): the analysis
    rebuilds the run's model from it (``train.step0.initial_model``) instead of guessing it.
    """
    rundir.write_json(INIT_DIAGNOSTICS, diagnostics)
    rundir.write_config({**cfg.to_dict(), "_run": {
        "run_key": identity.run_key, "config_hash": identity.config_hash,
        "data_fingerprint": identity.data_fingerprint, "data_spec": asdict(data.spec),
        "overrides": _command_overrides(), "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
    }})
    env = environment(device)
    diff = git_diff() if env.get("git_sha", "") and str(env["git_sha"]).endswith("-dirty") else None
    if diff:
        rundir.write_text(GIT_DIFF, diff)
        env["git_diff_file"] = GIT_DIFF
    rundir.write_json(ENVIRONMENT, env)


def _restore(state: dict, path: Path, model, optimizer, scheduler, scaler, dist_env: distributed.DistEnv) -> Progress:
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        progress = Progress(**state["progress"])
        by_rank = state.get("rng_by_rank") or [state["rng"]]
    except (KeyError, RuntimeError, ValueError, TypeError) as err:
        raise CheckpointError(f"{path} does not fit this model/optimizer ({err}). Delete it to restart.") from None
    if len(by_rank) == dist_env.world_size:
        checkpoint.restore_rng_state(by_rank[dist_env.rank])
    else:  # another number of processes than the checkpoint's: rank 0 keeps its stream, the rest start anew
        if dist_env.rank == 0:
            checkpoint.restore_rng_state(by_rank[0])
            log.warning("resuming with %d processes a run checkpointed with %d: the weights, optimizer and data "
                        "order continue exactly; dropout masks on ranks > 0 come from fresh streams",
                        dist_env.world_size, len(by_rank))
    # The training sums since the last evaluation were saved summed over ranks: rank 0 carries them.
    if not dist_env.is_main:
        progress.window = {}
    return progress


def _wandb(cfg: TrainConfig, identity: RunIdentity, rundir: RunDir) -> WandbMirror:
    if not rundir.writer:  # only the main rank mirrors
        return WandbMirror(LoggerConfig(mode="disabled"), run_key=identity.run_key, run_dir=rundir.path, config={},
                           group="", tags=[], job_type="")
    group = cfg.logger.group or f"{cfg.experiment or cfg.dataset.name}-{cfg.model.name}"
    tags = [cfg.dataset.name, cfg.model.name, cfg.init.name, f"seed{cfg.seed}"]
    tags += [cfg.experiment] if cfg.experiment else []
    return WandbMirror(cfg.logger, run_key=identity.run_key, run_dir=rundir.path,
                       config={**cfg.to_dict(), "run_key": identity.run_key}, group=group,
                       tags=tags + list(cfg.logger.tags), job_type=cfg.init.name)


# ----------------------------------------------------------------------------- the run
def run(composed: DictConfig | dict, run_dir: str | Path | None = None) -> dict:
    """Train (or resume, or skip a finished run) and return the run's summary."""
    cfg = load_config(composed)
    threads = apply_threads(cfg.trainer.threads)
    log.info("%d CPU thread%s (%s)", threads.threads, "s" if threads.threads > 1 else "", threads.reason)
    dist_env = distributed.from_environment()
    device = resolve_device(cfg.trainer.device, dist_env.local_rank)
    created = distributed.setup(dist_env, device)
    try:
        return _run(cfg, RunDir(Path(run_dir) if run_dir is not None else _hydra_run_dir(), dist_env.is_main),
                    dist_env, device)
    finally:
        if created:  # a group the caller made (several runs in one job) is the caller's to end
            distributed.teardown()


def _run(cfg: TrainConfig, rundir: RunDir, dist_env: distributed.DistEnv, device: torch.device) -> dict:
    identity = run_identity(cfg)
    rundir.ensure()
    _claim(rundir, identity)
    lock = RunLock(rundir.path, log=log) if rundir.writer else None
    problem = None
    if lock is not None:
        try:
            lock.acquire()
        except Exception as err:  # RunDirError: another live process owns it
            problem = err
    if not distributed.all_agree(problem is None):
        raise problem if problem is not None else ConfigError(f"rank 0 could not take {rundir.path}; see its log")
    try:
        if rundir.is_done:
            log.info("run already finished: %s (delete %s to train it again)", rundir.path, rundir.file("DONE"))
            return rundir.read_summary() or {}
        # From here on a stop signal is honoured at the next step boundary (data loading included).
        # SIGUSR2 too: submitit's time-limit warning (--signal=USR2@...), see runtime/requeue.py.
        with GracefulStop(signals=STOP_SIGNALS, log=log) as stop:
            return _train(cfg, rundir, identity, dist_env, device, lock, stop)
    except MimeticError as err:
        rundir.mark_failed(str(err))  # we own the directory: say why it stopped (sweep_status reads it)
        raise
    finally:
        if lock is not None:
            lock.release()


def _train(cfg: TrainConfig, rundir: RunDir, identity: RunIdentity, dist_env: distributed.DistEnv,
           device: torch.device, lock: RunLock | None, stop: GracefulStop) -> dict:
    t = cfg.trainer
    state = _load_checkpoint(rundir, identity)
    data = _data(cfg, dist_env, device)
    task = build_task(data.task, cfg)

    if state is None:  # the step-0 model, exactly as the analysis rebuilds it
        step0 = initial_model(cfg, data.spec, diagnose=True)
        model, diagnostics = step0.model, step0.diagnostics
    else:  # the architecture; its weights come from the checkpoint
        model = base_model(cfg, data.spec)
    frozen = freeze_(model, cfg.model.freeze_patterns())  # on a fresh start and on resume, before the optimizer
    if state is None:
        diagnostics["frozen"] = frozen
        _write_header(rundir, cfg, identity, device, diagnostics, data)
    if dist_env.enabled:
        # Global-batch BatchNorm statistics, so N processes train the model one process trains.
        model = synchronise_batchnorm(model, device)
    if dist_env.rank > 0:
        # Rank 0 goes on with one process's stream; the others draw their own dropout / drop-path masks.
        torch.manual_seed(derive_seed(cfg.seed, "rank", dist_env.rank))
    model.to(device, memory_format=cfg.model.memory_format(device))

    optimizer = build_optimizer(model, cfg.optim)
    steps_per_epoch = len(data.train)
    total_steps = 1 if t.smoke else (t.max_steps or t.epochs * steps_per_epoch)
    scheduler = build_scheduler(optimizer, cfg.sched, total_steps=total_steps, steps_per_epoch=steps_per_epoch)
    precision = Precision.resolve(t.precision, device)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.needs_scaler)
    progress = Progress() if state is None else _restore(state, rundir.file(checkpoint.CHECKPOINT_NAME), model,
                                                         optimizer, scheduler, scaler, dist_env)
    metrics = rundir.metrics()
    metrics.reset(progress.history)  # drops lines written after the last checkpoint, if any
    rundir.clear_failed()
    log.info("%s %s in %s", "start" if state is None else
             f"resume at epoch {progress.epoch} step {progress.global_step} of", identity.run_key, rundir.path)
    log.info("%s: %d params (%d frozen) on %s%s; %s", cfg.model.name, sum(p.numel() for p in model.parameters()),
             sum(p.numel() for p in model.parameters() if not p.requires_grad), device,
             f" x {dist_env.world_size} processes" if dist_env.enabled else "",
             f"train {data.train.num_samples} / test {data.test.num_samples}"
             + (f" / val {data.val.num_samples}" if data.val is not None else ""))

    mirror = _wandb(cfg, identity, rundir)
    if state is None and "attention" in diagnostics:
        mirror.log({f"init/{k}": v for k, v in diagnostics["attention"]["mean"].items()}, step=0)
    train_model = model
    if dist_env.enabled:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if t.compile:
        train_model = torch.compile(train_model)
    loop = Loop(
        Recipe(model, train_model, optimizer, scheduler, scaler, precision, t.grad_clip,
               lr_hint=getattr(cfg.optim, "lr", None)),
        data, task,
        Session(identity, rundir, metrics, mirror, dist_env, device, stop, lock),
        Cadence(steps_per_epoch, total_steps, t.eval_every, t.checkpoint_every, progress_bar=t.progress),
        seed=cfg.seed)
    try:
        loop.run(progress)
    except BaseException as err:
        mirror.finish(exit_code=getattr(err, "exit_code", 1))
        raise

    summary = _summary(cfg, identity, task, progress, progress.wall_time_s + loop.session_seconds(), model, device)
    rundir.write_json(SUMMARY, summary)
    mirror.summary(summary)
    mirror.finish()
    rundir.mark_done(time.strftime("%Y-%m-%dT%H:%M:%S"))
    log.info("done: %s %.4g in %.0fs -> %s", task.primary_metric, summary[task.primary_metric],
             summary["wall_time_s"], rundir.path)
    return summary


def _data(cfg: TrainConfig, dist_env: distributed.DistEnv, device: torch.device) -> Data:
    t = cfg.trainer
    batch_size = min(t.batch_size, SMOKE_BATCH) if t.smoke else t.batch_size
    if batch_size < dist_env.world_size:  # uneven shards are fine (the loss weighs them); empty ranks are waste
        raise ConfigError(f"trainer.batch_size={batch_size} (the global batch) is smaller than the "
                          f"{dist_env.world_size} processes: some would never see a sample; raise it or use fewer")
    return build_data(cfg.dataset, DataRequest(
        image_size=cfg.model.input_size, batch_size=batch_size,
        eval_batch_size=min(t.eval_batch_size, SMOKE_BATCH) if t.smoke else t.eval_batch_size,
        device=device, aug=cfg.aug, rank=dist_env.rank, world_size=dist_env.world_size,
        max_eval_batches=1 if t.smoke else None))


def _summary(cfg: TrainConfig, identity: RunIdentity, task: Task, progress: Progress, wall_time_s: float, model,
             device: torch.device) -> dict:
    history = progress.history
    last = history[-1]
    best = max if task.higher_is_better else min
    primary = task.primary_metric
    summary = {
        "run_key": identity.run_key, "experiment": cfg.experiment, "model": cfg.model.name,
        "dataset": cfg.dataset.name, "init": cfg.init.name, "seed": cfg.seed, "epochs": last["epoch"],
        "steps": progress.global_step, "primary_metric": primary, "higher_is_better": task.higher_is_better,
    }
    for key, value in last.items():
        if key.startswith(("train_", "test_", "val_")):
            summary[key] = value
    summary[f"best_{primary}"] = best(r[primary] for r in history)
    val_primary = primary.replace("test_", "val_")
    if val_primary in last:
        summary[f"best_{val_primary}"] = best(r[val_primary] for r in history)
        # The headline metric of the evaluation with the best validation value: what early stopping on
        # the validation split would have reported (chosen on val, read on test; never the reverse).
        chosen = (max if task.higher_is_better else min)(
            (r for r in history if val_primary in r), key=lambda r: r[val_primary])
        summary[f"{primary}_at_best_val"] = chosen[primary]
        summary["step_at_best_val"] = chosen["step"]
    throughput = f"{task.unit}_per_s"
    summary[f"mean_{throughput}"] = sum(r[throughput] for r in history) / len(history)
    summary.update(wall_time_s=wall_time_s, params=sum(p.numel() for p in model.parameters()),
                   device=describe_device(device))
    return summary
