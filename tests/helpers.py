"""Shared helpers for composing the real configs and reading run directories."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

from mimetic.cli import register_resolvers

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
register_resolvers()

# A model and loop small enough for a CPU test in seconds.
TINY = ["model=vit_micro", "model.dim=32", "model.depth=2", "model.heads=2", "model.patch_size=8",
        "trainer.batch_size=16", "trainer.eval_batch_size=64", "trainer.progress=false", "logger.mode=disabled",
        "sched.warmup_epochs=1"]
TIMING = {"epoch_time_s", "images_per_s", "tokens_per_s"}


def load_script(relative_path: str, name: str | None = None):
    """Import a repo file that is not in a package (scripts/, notebooks/) as a module, by its path."""
    path = REPO / relative_path
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses (with postponed annotations) look their module up there
    spec.loader.exec_module(module)
    return module


def composed(*overrides: str, hydra_node: bool = False):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides), return_hydra_config=hydra_node)


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def without_timing(records):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def cli(*args, cwd=REPO, timeout=300, env=None):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "0", **(env or {})}
    return subprocess.run([sys.executable, str(REPO / "train.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def signal_after_steps(monkeypatch, steps: int) -> None:
    """Send this process a real SIGTERM right after its N-th optimizer step (an in-process stop mid-run)."""
    import signal

    from mimetic.train import loop as loop_module

    real_step, calls = loop_module.train_step, []

    def step_then_signal(*args, **kwargs):
        out = real_step(*args, **kwargs)
        calls.append(1)
        if len(calls) == steps:
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    monkeypatch.setattr(loop_module, "train_step", step_then_signal)
