"""A whole training run, top to bottom: what ``python train.py`` does.

config -> run dir (finished? resume? fresh?) -> data -> model + init -> optimizer ->
epochs (train, evaluate, checkpoint, log) -> summary.json + DONE.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from mimetic.data import Data, build_data
from mimetic.errors import CheckpointError, ConfigError
from mimetic.init import apply_init, attention_products, summarize_products
from mimetic.models import build_vit
from mimetic.train import checkpoint
from mimetic.train.config import TrainConfig, config_hash, load_config, run_key
from mimetic.train.engine import Precision, evaluate, train_one_epoch
from mimetic.train.environment import describe_device, environment
from mimetic.train.optim import build_optimizer, build_scheduler
from mimetic.train.seeding import derive_seed, generator
from mimetic.train.tracking import MetricsFile, WandbMirror, write_json_atomic

log = logging.getLogger("mimetic")

DONE_NAME = "DONE"


@dataclass
class Progress:
    """What a checkpoint carries from one session of a run to the next."""

    history: list[dict] = field(default_factory=list)  # one metrics record per finished epoch
    wall_time_s: float = 0.0  # spent in earlier sessions

    @property
    def next_epoch(self) -> int:
        return len(self.history) + 1


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={name} but no CUDA device is visible; use trainer.device=auto or cpu")
    return device


def build_model(cfg: TrainConfig, num_classes: int) -> torch.nn.Module:
    # The base weights come from their own seeded stream, identical across inits.
    torch.manual_seed(derive_seed(cfg.seed, "model"))
    return build_vit(cfg.model, num_classes)


# ----------------------------------------------------------------------------- run dir


def _check_run_dir_owner(run_dir: Path, cfg: TrainConfig) -> None:
    """Refuse to mix two different configs in one directory."""
    saved = run_dir / "config.yaml"
    if not saved.exists():
        return
    theirs = OmegaConf.load(saved).get("_run", {}).get("config_hash")
    if theirs is not None and theirs != config_hash(cfg):
        raise ConfigError(
            f"{run_dir} already holds a run with a different config (hash {theirs}, this one "
            f"{config_hash(cfg)}). Point hydra.run.dir at a new directory, or drop the override to get the "
            "default run dir."
        )


def _load_checkpoint(cfg: TrainConfig, path: Path) -> dict | None:
    if not path.exists():
        return None
    state = checkpoint.load(path)
    if state.get("config_hash") != config_hash(cfg):
        raise CheckpointError(
            f"{path} was written by a different config (hash {state.get('config_hash')}, this one "
            f"{config_hash(cfg)}). Point hydra.run.dir at a new directory for this config."
        )
    return state


def _command_overrides() -> list[str]:
    """The command-line overrides of this job (recorded so tables can cite exact commands)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return list(HydraConfig.get().overrides.task)


def _start_fresh(cfg: TrainConfig, model: torch.nn.Module, run_dir: Path, device: torch.device) -> dict:
    """Apply the init and write what describes the run: config, environment, step-0 diagnostics."""
    init_report = apply_init(model, cfg.init, generator(cfg.seed, "init"))
    diagnostics = {"init": init_report, "attention": summarize_products(attention_products(model))}
    write_json_atomic(run_dir / "init_diagnostics.json", diagnostics)
    resolved = OmegaConf.create(OmegaConf.to_container(OmegaConf.structured(cfg)))
    resolved["_run"] = {"run_key": run_key(cfg), "config_hash": config_hash(cfg), "overrides": _command_overrides()}
    OmegaConf.save(resolved, run_dir / "config.yaml")
    write_json_atomic(run_dir / "environment.json", environment(device))
    return diagnostics


def _restore(state: dict, path: Path, model, optimizer, scheduler, scaler) -> Progress:
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
    except (KeyError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"{path} does not fit this model/optimizer ({err}). Delete it to restart.") from None
    checkpoint.restore_rng_state(state["rng"])
    return Progress(list(state["history"]), state["wall_time_s"])


def _wandb(cfg: TrainConfig, run_dir: Path) -> WandbMirror:
    group = cfg.logger.group or f"{cfg.experiment or cfg.dataset.name}-{cfg.model.name}"
    tags = [cfg.dataset.name, cfg.model.name, cfg.init.name, f"seed{cfg.seed}"]
    tags += [cfg.experiment] if cfg.experiment else []
    config = {**OmegaConf.to_container(OmegaConf.structured(cfg)), "run_key": run_key(cfg)}
    return WandbMirror(cfg.logger, run_key=run_key(cfg), run_dir=run_dir, config=config, group=group,
                       tags=tags + list(cfg.logger.tags), job_type=cfg.init.name)


# ----------------------------------------------------------------------------- the run


def run(composed: DictConfig | dict, run_dir: str | Path | None = None) -> dict:
    """Train (or resume, or skip a finished run) and return the run's summary."""
    cfg = load_config(composed)
    if run_dir is None:
        from hydra.core.hydra_config import HydraConfig

        run_dir = HydraConfig.get().runtime.output_dir
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)

    if (run_dir / DONE_NAME).exists():
        log.info("run already finished: %s (delete %s to train it again)", run_dir, run_dir / DONE_NAME)
        summary_path = run_dir / "summary.json"
        return OmegaConf.to_container(OmegaConf.load(summary_path)) if summary_path.exists() else {}
    _check_run_dir_owner(run_dir, cfg)

    device = resolve_device(cfg.trainer.device)
    ckpt_path = run_dir / checkpoint.CHECKPOINT_NAME
    state = _load_checkpoint(cfg, ckpt_path)
    data = build_data(cfg, device)
    model = build_model(cfg, data.num_classes)
    diagnostics = _start_fresh(cfg, model, run_dir, device) if state is None else None
    model.to(device)

    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.sched, epochs=cfg.trainer.epochs, steps_per_epoch=len(data.train))
    precision = Precision.resolve(cfg.trainer.precision, device)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.needs_scaler)
    progress = Progress() if state is None else _restore(state, ckpt_path, model, optimizer, scheduler, scaler)
    metrics = MetricsFile(run_dir / "metrics.jsonl")
    metrics.reset(progress.history)  # drops lines written after the last checkpoint, if any
    log.info("%s %s in %s", "start" if state is None else f"resume after epoch {len(progress.history)} of",
             run_key(cfg), run_dir)
    log.info("%s: %d params on %s; train %d / test %d images%s", cfg.model.name,
             sum(p.numel() for p in model.parameters()), device, data.train.num_samples, data.test.num_samples,
             f" / val {data.val.num_samples}" if data.val is not None else "")

    mirror = _wandb(cfg, run_dir)
    if diagnostics is not None:
        mirror.log({f"init/{k}": v for k, v in diagnostics["attention"]["mean"].items()}, step=0)
    session_start = time.perf_counter()
    train_model = torch.compile(model) if cfg.trainer.compile else model
    identity = {"run_key": run_key(cfg), "config_hash": config_hash(cfg)}  # once, not per epoch
    try:
        for epoch in range(progress.next_epoch, cfg.trainer.epochs + 1):
            record = _one_epoch(cfg, epoch, train_model, data, optimizer, scheduler, scaler, precision, device)
            progress.history.append(record)
            checkpoint.save_atomic({
                **identity, "epoch": epoch,
                "history": progress.history,
                "wall_time_s": progress.wall_time_s + time.perf_counter() - session_start,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "rng": checkpoint.rng_state(),
            }, ckpt_path)
            metrics.append(record)  # after the checkpoint: a line on disk is always backed by one
            mirror.log(record, step=epoch)
    except BaseException:
        mirror.finish(exit_code=1)
        raise

    summary = _summary(cfg, progress, progress.wall_time_s + time.perf_counter() - session_start, model, device)
    write_json_atomic(run_dir / "summary.json", summary)
    mirror.summary(summary)
    mirror.finish()
    (run_dir / DONE_NAME).write_text(time.strftime("%Y-%m-%dT%H:%M:%S") + "\n")
    log.info("done: test_acc %.2f (best %.2f) in %.0fs -> %s", summary["test_acc"], summary["best_test_acc"],
             summary["wall_time_s"], run_dir)
    return summary


def _one_epoch(cfg: TrainConfig, epoch: int, model, data: Data, optimizer, scheduler, scaler,
               precision: Precision, device: torch.device) -> dict:
    """Train one epoch on the (seed, epoch) data stream, evaluate, and return the metrics record."""
    start = time.perf_counter()
    stats = train_one_epoch(
        model, data.train, optimizer, scheduler, scaler, generator(cfg.seed, "data", epoch, device=device),
        epoch=epoch, precision=precision, label_smoothing=cfg.trainer.label_smoothing,
        grad_clip=cfg.trainer.grad_clip, progress=cfg.trainer.progress,
    )
    test_loss, test_acc = evaluate(model, data.test, precision)
    record = {"epoch": epoch, "train_loss": stats["train_loss"], "train_acc": stats["train_acc"],
              "test_loss": test_loss, "test_acc": test_acc}
    if data.val is not None:
        record["val_loss"], record["val_acc"] = evaluate(model, data.val, precision)
    record.update(lr=stats["lr"], epoch_time_s=time.perf_counter() - start, images_per_s=stats["images_per_s"])
    log.info("epoch %d/%d  train_loss %.4f  train_acc %.2f  test_acc %.2f%s  %.1fs", epoch, cfg.trainer.epochs,
             record["train_loss"], record["train_acc"], test_acc,
             f"  val_acc {record['val_acc']:.2f}" if "val_acc" in record else "", record["epoch_time_s"])
    return record


def _summary(cfg: TrainConfig, progress: Progress, wall_time_s: float, model, device: torch.device) -> dict:
    history = progress.history
    last = history[-1]
    summary = {
        "run_key": run_key(cfg), "experiment": cfg.experiment, "model": cfg.model.name,
        "dataset": cfg.dataset.name, "init": cfg.init.name, "seed": cfg.seed, "epochs": last["epoch"],
        "test_acc": last["test_acc"], "best_test_acc": max(r["test_acc"] for r in history),
        "test_loss": last["test_loss"], "train_acc": last["train_acc"], "train_loss": last["train_loss"],
        "wall_time_s": wall_time_s,
        "mean_images_per_s": sum(r["images_per_s"] for r in history) / len(history),
        "params": sum(p.numel() for p in model.parameters()), "device": describe_device(device),
    }
    if "val_acc" in last:
        summary["val_acc"] = last["val_acc"]
        summary["best_val_acc"] = max(r["val_acc"] for r in history)
    return summary
