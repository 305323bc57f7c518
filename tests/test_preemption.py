"""Preemption on a real cluster, with real signals to real training processes.

SLURM warns a job with SIGUSR1/SIGUSR2 (``--signal``) and preempts it with SIGTERM, sent to
every process of the job (data-loader workers included). The job must checkpoint at the step
it is in (mid-epoch), after a warning signal ask SLURM to requeue it (here a fake ``scontrol``
on PATH records the call; SIGTERM is scancel or preemption, which SLURM requeues itself), exit
128 + signal, and the requeued job (the same command) must resume exactly: the
same metrics and the same weights as a run that was never interrupted. A second signal during
the checkpoint write must not tear the checkpoint.
"""

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from fake_imagenet import write_imagenet
from helpers import REPO, TINY, read_metrics, without_timing

from mimetic.runtime.requeue import requeue_if_asked, slurm_job_id


def fake_scontrol(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "scontrol"
    script.write_text(f'#!/bin/sh\necho "$@" >> {folder / "calls.txt"}\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return folder


def slurm_env(tmp_path: Path, **more) -> dict:
    bin_dir = fake_scontrol(tmp_path / "bin")
    return {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SLURM_JOB_ID": "4242", "MIMETIC_REQUEUE": "1",
            **more}


def start(args, env, **kw):
    return subprocess.Popen([sys.executable, str(REPO / "train.py"), *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def progress(run_dir: Path) -> dict | None:
    try:
        return torch.load(run_dir / "checkpoint.pt", weights_only=True)["progress"]
    except Exception:
        return None


def wait_for_first_epoch(run_dir: Path, proc, timeout=300):
    deadline = time.time() + timeout
    metrics = run_dir / "metrics.jsonl"
    while proc.poll() is None and time.time() < deadline and not (metrics.exists() and metrics.read_text()):
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before the signal; make it longer"


def same_run(a: Path, b: Path) -> None:
    assert without_timing(read_metrics(a)) == without_timing(read_metrics(b))
    wa = torch.load(a / "checkpoint.pt", weights_only=True)["model"]
    wb = torch.load(b / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_requeue_needs_slurm_the_opt_in_and_rank_0(tmp_path):
    env = {"PATH": str(fake_scontrol(tmp_path)), "SLURM_JOB_ID": "7", "MIMETIC_REQUEUE": "1"}
    assert slurm_job_id({"SLURM_JOB_ID": "7", "SLURM_ARRAY_JOB_ID": "5", "SLURM_ARRAY_TASK_ID": "3"}) == "5_3"
    assert not requeue_if_asked("SIGUSR1", {**env, "MIMETIC_REQUEUE": "0"})
    assert not requeue_if_asked("SIGINT", env)  # Ctrl-C is the user's stop, never a requeue
    assert not requeue_if_asked("SIGTERM", env)  # scancel too; preemption is requeued by SLURM itself
    assert not requeue_if_asked("SIGUSR1", {**env, "SLURM_PROCID": "1"})
    assert not (tmp_path / "calls.txt").exists()
    assert requeue_if_asked("SIGUSR2", env)
    assert (tmp_path / "calls.txt").read_text() == "requeue 7\n"
    assert not requeue_if_asked("SIGUSR1", {**env, "PATH": str(tmp_path / "nowhere")})  # no scontrol: a warning


@pytest.mark.slow
def test_sigusr1_mid_epoch_checkpoints_requeues_and_the_requeued_job_resumes_exactly(tmp_path, folder_root):
    # 120 images, batch 4: 30 steps an epoch, so a signal after epoch 1 lands mid-epoch 2.
    args = [*TINY, "dataset=image_folder", f"dataset.root={folder_root}", "trainer.epochs=3", "init=mimetic",
            "trainer.batch_size=4", "aug=basic"]
    env = slurm_env(tmp_path)
    reference = subprocess.run([sys.executable, "train.py", *args, f"hydra.run.dir={tmp_path / 'reference'}"],
                               cwd=REPO, env={**env, "SLURM_JOB_ID": ""}, capture_output=True, text=True, timeout=600)
    assert reference.returncode == 0, reference.stderr[-2000:]

    run_dir = tmp_path / "preempted"
    proc = start([*args, f"hydra.run.dir={run_dir}"], env)
    wait_for_first_epoch(run_dir, proc)
    proc.send_signal(signal.SIGUSR1)
    proc.send_signal(signal.SIGTERM)  # a second signal while it finishes the step and writes the checkpoint
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 138, err[-2000:]  # 128 + SIGUSR1, the first signal
    assert "Traceback" not in err and "the same command resumes" in err
    assert (tmp_path / "bin" / "calls.txt").read_text() == "requeue 4242\n"
    stopped = progress(run_dir)  # loads: the second signal did not tear it
    assert stopped["epoch"] >= 2 and 30 <= stopped["global_step"] < 90 and not (run_dir / "DONE").exists()
    print("stopped at", stopped)  # mid-epoch unless the signal met an epoch's last step (1 in 30)

    requeued = subprocess.run([sys.executable, "train.py", *args, f"hydra.run.dir={run_dir}"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=600)
    assert requeued.returncode == 0, requeued.stderr[-2000:]
    assert f"resume at epoch {stopped['epoch']} step {stopped['global_step']}" in requeued.stdout + requeued.stderr
    same_run(run_dir, tmp_path / "reference")
    assert (tmp_path / "bin" / "calls.txt").read_text() == "requeue 4242\n"  # a finished job is not requeued


@pytest.mark.slow
def test_sigterm_to_every_process_of_a_streaming_job_then_resume_exactly(tmp_path):
    # SLURM signals the whole job: the training process *and* its 2 loader workers get SIGTERM.
    root = write_imagenet(tmp_path / "inet", train_per_class=12, val_per_class=2)
    args = [*TINY, "dataset=imagenet", f"dataset.root={root}", "aug=none", "trainer.epochs=3",
            "trainer.batch_size=3", "trainer.eval_batch_size=6"]
    env = slurm_env(tmp_path, MIMETIC_DATA_WORKERS="2")
    reference = subprocess.run([sys.executable, "train.py", *args, f"hydra.run.dir={tmp_path / 'reference'}"],
                               cwd=REPO, env={**env, "SLURM_JOB_ID": ""}, capture_output=True, text=True, timeout=600)
    assert reference.returncode == 0, reference.stderr[-2000:]

    run_dir = tmp_path / "preempted"
    proc = start([*args, f"hydra.run.dir={run_dir}"], env, start_new_session=True)
    wait_for_first_epoch(run_dir, proc)
    time.sleep(0.3)  # well into epoch 2 (12 steps of 3 images)
    os.killpg(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err[-3000:]
    assert "Traceback" not in err and "the same command resumes" in err, err[-3000:]
    assert not (tmp_path / "bin" / "calls.txt").exists()  # SIGTERM: SLURM requeues a preempted job itself
    stopped = progress(run_dir)
    assert 12 <= stopped["global_step"] < 36, stopped
    print("stopped at", stopped)

    requeued = subprocess.run([sys.executable, "train.py", *args, f"hydra.run.dir={run_dir}"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=600)
    assert requeued.returncode == 0, requeued.stderr[-2000:]
    assert "resume at epoch" in requeued.stdout + requeued.stderr
    same_run(run_dir, tmp_path / "reference")
