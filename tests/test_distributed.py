"""Two CPU processes (torchrun, gloo) train exactly what one process does with the same global batch."""

import os
import socket
import subprocess
import sys

import pytest
from helpers import REPO, TINY, read_metrics

from mimetic.runtime.distributed import DistEnv, from_environment


def test_rank_comes_from_torchrun_or_slurm():
    assert from_environment({}) == DistEnv()
    assert from_environment({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == DistEnv(1, 4, 1)
    slurm = {"SLURM_PROCID": "3", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "MIMETIC_SLURM_DDP": "1"}
    assert from_environment(slurm) == DistEnv(3, 8, 1)
    # An ordinary (one task per job) SLURM array job is not a distributed run.
    assert from_environment({**slurm, "MIMETIC_SLURM_DDP": "0"}) == DistEnv()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path, folder_root):
    # 120 training images, global batch 16: the last batch (8) splits 4/4, a shard of odd size would too.
    args = [*TINY, "dataset=image_folder", f"dataset.root={folder_root}", "trainer.epochs=2",
            "trainer.batch_size=16", "init=mimetic", "aug=basic", "trainer.eval_batch_size=30"]
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    one = subprocess.run([sys.executable, "train.py", *args, f"hydra.run.dir={tmp_path / 'one'}"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          f"--master_port={_free_port()}", "train.py", *args, f"hydra.run.dir={tmp_path / 'two'}"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]

    a, b = read_metrics(tmp_path / "one"), read_metrics(tmp_path / "two")
    assert [r["step"] for r in a] == [r["step"] for r in b] == [8, 16]
    for ra, rb in zip(a, b):
        for key in ("train_loss", "test_loss", "lr"):
            assert rb[key] == pytest.approx(ra[key], rel=1e-4), key
        for key in ("train_acc", "test_acc"):  # one sample is 0.8 / 3.3 pp
            assert rb[key] == pytest.approx(ra[key], abs=0.01), key
    # Only rank 0 wrote: one line per evaluation, one log, one checkpoint.
    assert len(b) == 2 and (tmp_path / "two" / "DONE").exists()
    assert "x 2 processes" in (tmp_path / "two" / "train.log").read_text()
