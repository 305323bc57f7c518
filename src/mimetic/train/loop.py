"""The step loop of one session of a run: train, evaluate, checkpoint, log — and nothing else.

Its collaborators come grouped, so the loop reads as the recipe it runs:

* :class:`Recipe` — what one optimizer step does (model, optimizer, schedule, precision, clipping);
* the data (:class:`mimetic.data.Data`) and the :class:`~mimetic.train.tasks.Task` (loss, metrics);
* :class:`Session` — where the run lives while it trains (run directory, metrics file, wandb mirror,
  lock, ranks, the stop flag): what must not be lost;
* :class:`Cadence` — when to evaluate, checkpoint and check the loss.

Where the run is (epoch, step, history, the training sums since the last evaluation) is the
:class:`Progress` a checkpoint carries from one session to the next.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field

import torch

from mimetic.data import Data
from mimetic.errors import TrainingError
from mimetic.runtime import checkpoint, distributed
from mimetic.runtime.distributed import DistEnv
from mimetic.runtime.rundir import MetricsFile, RunDir
from mimetic.runtime.runlock import RunLock
from mimetic.runtime.signals import GracefulStop
from mimetic.runtime.tracking import WandbMirror
from mimetic.train.config import RunIdentity
from mimetic.train.engine import Precision, add_sums, evaluate, sums_from_host, sums_to_host, train_step
from mimetic.train.seeding import generator
from mimetic.train.tasks import Task

log = logging.getLogger("mimetic")


@dataclass
class Progress:
    """Where a run is, and what a checkpoint carries from one session of it to the next."""

    epoch: int = 1  # the epoch in progress (1-based)
    step_in_epoch: int = 0  # optimizer steps already taken in that epoch
    global_step: int = 0
    history: list[dict] = field(default_factory=list)  # one record per evaluation
    window: dict = field(default_factory=dict)  # training sums since the last evaluation (summed over ranks)
    wall_time_s: float = 0.0  # spent in earlier sessions


@dataclass
class Recipe:
    """What one optimizer step does."""

    model: torch.nn.Module  # the weights that are evaluated and saved
    train_model: torch.nn.Module  # the same module as trained (wrapped by DDP / torch.compile, or itself)
    optimizer: torch.optim.Optimizer
    scheduler: object  # timm scheduler: step_update(num_updates=...)
    scaler: torch.amp.GradScaler
    precision: Precision
    grad_clip: float
    lr_hint: float | None = None  # optim.lr, for the message when the loss diverges


@dataclass
class Session:
    """Where the run lives while this process trains it."""

    identity: RunIdentity
    rundir: RunDir
    metrics: MetricsFile
    mirror: WandbMirror
    dist: DistEnv
    device: torch.device
    stop: GracefulStop
    lock: RunLock | None = None

    def checkpoint_path(self):
        return self.rundir.file(checkpoint.CHECKPOINT_NAME)


@dataclass
class Cadence:
    """When the loop evaluates, checkpoints and looks at the loss."""

    steps_per_epoch: int
    total_steps: int
    eval_every: int = 0  # also every N steps (an epoch's end always evaluates)
    checkpoint_every: int = 0  # also every N steps (an evaluation always checkpoints)
    check_every: int = 25  # steps between host syncs that check the loss (and update the bar)
    progress_bar: bool = True

    def evaluate_at(self, step: int, end_of_epoch: bool) -> bool:
        return end_of_epoch or step >= self.total_steps or bool(self.eval_every and step % self.eval_every == 0)

    def checkpoint_at(self, step: int) -> bool:
        return bool(self.checkpoint_every and step % self.checkpoint_every == 0)


class Loop:
    """Trains one session of a run from ``progress`` to the end (or to a stop signal)."""

    def __init__(self, recipe: Recipe, data: Data, task: Task, session: Session, cadence: Cadence, seed: int):
        self.recipe, self.data, self.task, self.session, self.cadence, self.seed = (
            recipe, data, task, session, cadence, seed)
        self.start = time.perf_counter()
        self.window_start = self.start  # wall clock of the evaluation window (training + evaluation)
        self.window_train_s = 0.0  # of which training

    def session_seconds(self) -> float:
        return time.perf_counter() - self.start

    def run(self, progress: Progress) -> None:
        c, s = self.cadence, self.session
        window = sums_from_host(progress.window, s.device)
        while progress.global_step < c.total_steps:
            epoch, bar = progress.epoch, self._bar(progress)
            self.recipe.train_model.train()
            batches = self.data.train.epoch(generator(self.seed, "data", epoch, device=s.device),
                                            start_step=progress.step_in_epoch)
            train_start = time.perf_counter()
            for batch in batches:
                window = add_sums(window, self._step(batch, progress.global_step + 1))
                progress.step_in_epoch += 1
                progress.global_step += 1
                end_of_epoch = progress.step_in_epoch == c.steps_per_epoch
                last = progress.global_step >= c.total_steps
                if progress.step_in_epoch % c.check_every == 0 or end_of_epoch or last:
                    self._check_finite(window, epoch, progress)
                    bar.set_postfix(loss=f"{window['loss'].item() / max(window['count'].item(), 1):.3f}",
                                    refresh=False)
                bar.update(1)
                if s.dist.enabled and not distributed.all_agree(not s.stop.requested):
                    s.stop.request()  # a signal reached another rank: every rank stops at this step
                evaluate_now = c.evaluate_at(progress.global_step, end_of_epoch)
                save_now = evaluate_now or s.stop.requested or c.checkpoint_at(progress.global_step)
                if evaluate_now:
                    if s.device.type == "cuda":  # steps still queued on the GPU belong to this window's training
                        torch.cuda.synchronize(s.device)
                    self.window_train_s += time.perf_counter() - train_start
                    record = self._evaluate(progress, window)
                    progress.history.append(record)
                    window = None
                if end_of_epoch:
                    progress.epoch, progress.step_in_epoch = epoch + 1, 0
                if save_now:
                    progress.window = sums_to_host(distributed.global_sums(window))  # every rank's, summed
                    self._save(progress)
                if evaluate_now:
                    s.metrics.append(record)  # after the checkpoint: a line on disk is always backed by one
                    s.mirror.log(record, step=progress.global_step)
                    self.window_start, self.window_train_s = time.perf_counter(), 0.0
                    train_start = self.window_start
                    self.recipe.train_model.train()
                elif s.lock is not None:
                    s.lock.tick()  # heartbeat for other hosts watching the lock; cheap, rate-limited
                if s.stop.requested:
                    bar.close()
                    raise s.stop.exception(progress.epoch, progress.global_step)
                if last or end_of_epoch:
                    break
            bar.close()

    # ------------------------------------------------------------------ one step, one evaluation, one save
    def _step(self, batch, num_updates: int):
        r = self.recipe
        return train_step(r.train_model, batch, self.task, r.optimizer, r.scheduler, r.scaler,
                          precision=r.precision, grad_clip=r.grad_clip, num_updates=num_updates,
                          world_size=self.session.dist.world_size)

    def _bar(self, progress: Progress):
        from tqdm import tqdm

        c = self.cadence
        steps = min(c.steps_per_epoch, progress.step_in_epoch + c.total_steps - progress.global_step)
        return tqdm(total=steps, initial=progress.step_in_epoch, desc=f"epoch {progress.epoch}", leave=False,
                    disable=not c.progress_bar or not self.session.dist.is_main, dynamic_ncols=True)

    def _evaluate(self, progress: Progress, window) -> dict:
        r, s = self.recipe, self.session
        for value in window.values():  # this rank's sums -> the global batch's
            distributed.all_reduce_sum(value)
        train = self.task.metrics(sums_to_host(window), "train")
        record = {"epoch": progress.epoch, "step": progress.global_step, **train}
        record.update(evaluate(r.model, self.data.test, self.task, r.precision, "test"))
        if self.data.val is not None:
            record.update(evaluate(r.model, self.data.val, self.task, r.precision, "val"))
        if s.device.type == "cuda":
            torch.cuda.synchronize(s.device)
        units = sums_to_host(window)["count"]
        record.update(lr=r.optimizer.param_groups[0]["lr"],
                      epoch_time_s=time.perf_counter() - self.window_start,
                      **{f"{self.task.unit}_per_s": units / max(self.window_train_s, 1e-9)})
        log.info("epoch %d step %d  %s  %.1fs", progress.epoch, progress.global_step,
                 "  ".join(f"{k} {v:.4g}" for k, v in record.items()
                           if k.endswith(("_loss", "_acc", "_ppl")) and isinstance(v, float)),
                 record["epoch_time_s"])
        return record

    def _save(self, progress: Progress) -> None:
        r, s = self.recipe, self.session
        rng_by_rank = distributed.gather_object(checkpoint.rng_state())  # each rank's own streams
        if s.dist.is_main:
            checkpoint.save_atomic({
                "run_key": s.identity.run_key, "config_hash": s.identity.config_hash,
                "progress": {**asdict(progress), "wall_time_s": progress.wall_time_s + self.session_seconds()},
                "model": r.model.state_dict(), "optimizer": r.optimizer.state_dict(),
                "scheduler": r.scheduler.state_dict(), "scaler": r.scaler.state_dict(),
                "rng": rng_by_rank[0], **({"rng_by_rank": rng_by_rank} if len(rng_by_rank) > 1 else {}),
            }, s.checkpoint_path())
            if s.lock is not None:
                s.lock.refresh()

    def _check_finite(self, window, epoch: int, progress: Progress) -> None:
        loss, count = window["loss"].item(), window["count"].item()
        running = loss / count if count else loss  # a rank may hold only an empty last shard
        if distributed.all_agree(math.isfinite(running)):  # every rank stops together, none waits forever
            return
        rundir = self.session.rundir
        if progress.history or rundir.has_checkpoint:
            saved = (f"The last checkpoint (epoch {progress.history[-1]['epoch'] if progress.history else '?'}, "
                     f"{self.session.checkpoint_path()}) is intact, but resuming this run with the "
                     "same config will most likely diverge again.")
        else:
            saved = "No checkpoint of this run was written yet."
        lr = self.recipe.lr_hint
        hint = f"optim.lr={lr / 10:g}" if lr else "a lower optim.lr"
        raise TrainingError(
            f"the training loss became {running} at epoch {epoch}, step {progress.global_step}. {saved} "
            f"A lower learning rate, trainer.grad_clip > 0 or trainer.precision=fp32 makes a different config, "
            f"so a new run in its own directory, from scratch: add e.g. {hint} to the command."
        )
