"""The wandb mirror of a run (local files in the run directory stay the source of truth)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mimetic.errors import ConfigError
from mimetic.train.rundir import MetricsFile, clean_record, write_json_atomic

__all__ = ["MetricsFile", "WandbMirror", "write_json_atomic"]


class WandbMirror:
    """Mirror config and metrics to wandb; a no-op when ``logger.mode=disabled``.

    wandb is imported only when needed, so disabled runs never require it. The run id is
    the run key, so a resumed run continues the same wandb run.
    """

    def __init__(self, logger_cfg: Any, *, run_key: str, run_dir: Path, config: dict, group: str, tags: list[str],
                 job_type: str):
        self.run = None
        if logger_cfg.mode == "disabled":
            return
        try:
            import wandb
        except ImportError:
            raise ConfigError(
                f"logger.mode={logger_cfg.mode} needs wandb (pip install wandb), or set logger.mode=disabled"
            ) from None
        self._wandb = wandb
        self.run = wandb.init(
            project=logger_cfg.project,
            entity=logger_cfg.entity,
            group=group,
            job_type=job_type,
            tags=tags,
            name=run_key,
            id=run_key,
            resume="allow",
            dir=str(run_dir),
            config=config,
            mode=logger_cfg.mode,
            settings=wandb.Settings(silent=True, console="off"),
        )

    def log(self, record: dict, step: int) -> None:
        if self.run is not None:
            self.run.log(clean_record(record), step=step)

    def summary(self, values: dict) -> None:
        if self.run is not None:
            for key, value in values.items():
                self.run.summary[key] = value

    def finish(self, exit_code: int = 0) -> None:
        if self.run is not None:
            self.run.finish(exit_code=exit_code)
            self.run = None
