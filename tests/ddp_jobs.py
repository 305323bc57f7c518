"""Runs a list of training jobs in one process, under ``torchrun`` or alone (the DDP tests' driver).

    python tests/ddp_jobs.py JOBS.json                                  # one process
    python -m torch.distributed.run --nproc_per_node=2 tests/ddp_jobs.py JOBS.json

JOBS.json: ``[{"run_dir": ..., "overrides": [...], "stop_after": N | null}, ...]``. Each job is
``mimetic.train.run.run`` on the composed config, exactly as ``train.py`` calls it; with
``stop_after`` rank 0 sends itself a real SIGTERM after its N-th optimizer step of that job
(the other ranks learn of it through the trainer's own per-step agreement), so the run
checkpoints mid-epoch and stops; a later job with the same run dir resumes it. One process
(group) runs every job: the interpreter and torch start once for the whole list.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from helpers import composed  # noqa: E402

from mimetic.runtime.signals import StopRequested  # noqa: E402
from mimetic.train import loop as loop_module  # noqa: E402
from mimetic.train import run as run_module  # noqa: E402


def _stopping_step(real_step, stop_after: int | None, rank: int):
    """``train_step`` that sends this process SIGTERM after its ``stop_after``-th call (rank 0 only)."""
    steps = []

    def step(*args, **kwargs):
        out = real_step(*args, **kwargs)
        steps.append(1)
        if rank == 0 and stop_after and len(steps) == stop_after:
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    return step


def main(jobs_file: str) -> int:
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format=f"[rank{os.environ.get('RANK', '0')}] %(message)s")
    rank = int(os.environ.get("RANK", "0"))
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # one group for every job (gloo cannot re-join cheaply)
        torch.distributed.init_process_group("gloo")
    real_step = loop_module.train_step
    for job in json.loads(Path(jobs_file).read_text()):
        loop_module.train_step = _stopping_step(real_step, job.get("stop_after"), rank)
        try:
            run_module.run(composed(*job["overrides"]), run_dir=job["run_dir"])
        except StopRequested:
            pass
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
