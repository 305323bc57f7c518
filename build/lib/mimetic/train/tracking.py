"""Where metrics go: local JSON files (the source of truth) and a wandb mirror."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from mimetic.errors import ConfigError


def write_json_atomic(path: Path, payload: Any) -> None:
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")
    os.replace(tmp, path)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _clean(record: dict) -> dict:
    # NaN is not JSON; record it as null rather than writing an unreadable line.
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}


class MetricsFile:
    """``metrics.jsonl``: one JSON object per finished epoch."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def reset(self, history: list[dict]) -> None:
        """Rewrite the file to exactly ``history`` (the records the checkpoint vouches for)."""
        tmp = Path(str(self.path) + ".tmp")
        tmp.write_text("".join(json.dumps(_clean(r)) + "\n" for r in history))
        os.replace(tmp, self.path)

    def append(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(_clean(record)) + "\n")
            f.flush()
            os.fsync(f.fileno())


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
            self.run.log(_clean(record), step=step)

    def summary(self, values: dict) -> None:
        if self.run is not None:
            for key, value in values.items():
                self.run.summary[key] = value

    def finish(self, exit_code: int = 0) -> None:
        if self.run is not None:
            self.run.finish(exit_code=exit_code)
            self.run = None
