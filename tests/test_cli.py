"""The command line: one message for every user error, sweeps that survive a failing job,
signals, concurrent processes, kill -9. In-process where Hydra allows, real processes where
the behaviour is about processes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import REPO, TINY, cli, read_metrics, without_timing

sys.path.insert(0, str(REPO))
import train  # noqa: E402  (the real entry point, run in process)


def main_in_process(monkeypatch, capsys, *args) -> tuple[int, str]:
    """``python train.py *args`` in this process: (exit status, stdout + stderr)."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setattr(sys, "argv", ["train.py", *args])
    code = 0
    try:
        train.main()
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    out = capsys.readouterr()
    return code, out.out + out.err


def folder(root, *more):
    return [*TINY, "dataset=image_folder", f"dataset.root={root}", *more]


def write_bad_label_cifar(root: Path) -> Path:
    from fake_data import write_cifar10

    write_cifar10(root, per_batch=8, test=10)
    batch = root / "cifar-10-batches-py" / "data_batch_1"
    import pickle

    entry = pickle.loads(batch.read_bytes())
    entry["labels"][3] = 12  # CIFAR-10 has 10 classes
    batch.write_bytes(pickle.dumps(entry, protocol=2))
    return root


@pytest.mark.parametrize(
    "args,message",
    [
        (["model.heads=5"], "model.heads=5 does not divide model.dim"),
        (["model.dim=2"], "needs a width divisible by 4"),
        (["trainer.batch_size=0"], "trainer.batch_size must be > 0"),
        (["init=mimetic", "init.alpha_qk=inf"], "init.alpha_qk"),
        (["init=mimetic", "init.alpha_qk=-1"], "init.alpha_qk"),
        (["init=pretrained_attention", "init.checkpoint=/nonexistent/vit_tiny.safetensors"], "/nonexistent/vit_tiny"),
        (["dataset=cifar10", "dataset.root=/nonexistent/cifar"], "python scripts/prepare_data.py cifar10"),
        (["paths.runs_dir="], "paths.runs_dir=''"),
        (["trainer.device=cuda:3"], "no CUDA device"),
    ],
)
def test_bad_input_is_one_message_with_exit_2_and_leaves_no_run_dir(tmp_path, monkeypatch, capsys, folder_root,
                                                                    args, message):
    runs = tmp_path / "runs"
    runs.mkdir()
    if not any(a.startswith("dataset=") for a in args):
        args = ["dataset=image_folder", f"dataset.root={folder_root}", *args]
    if not any(a.startswith("paths.runs_dir") for a in args):
        args = [*args, f"paths.runs_dir={runs}"]
    code, out = main_in_process(monkeypatch, capsys, *[a for a in TINY if a.split("=")[0] not in
                                                       {a.split("=")[0] for a in args}], *args)
    assert code == 2, out
    assert message in out and "Traceback" not in out
    leftovers = [p for p in runs.iterdir()] if runs.exists() else []
    if "trainer.device" not in args[-2]:  # a valid config that fails later still owns its dir
        assert leftovers == [], leftovers
    import tempfile

    assert not list(Path(tempfile.gettempdir()).glob(f"mimetic-invalid-config-{os.getpid()}*"))


def test_a_label_beyond_the_class_list_is_one_message(tmp_path, monkeypatch, capsys):
    root = write_bad_label_cifar(tmp_path / "cifar")
    code, out = main_in_process(monkeypatch, capsys, *TINY, "dataset=cifar10", f"dataset.root={root}",
                                "dataset.verify_checksums=false", f"paths.runs_dir={tmp_path / 'runs'}")
    assert code == 2 and "data_batch_1" in out and "Traceback" not in out, out


def test_a_failing_job_does_not_stop_the_sweep(tmp_path, monkeypatch, capsys, folder_root):
    code, out = main_in_process(monkeypatch, capsys, "-m", *folder(folder_root, "trainer.epochs=1",
                                "trainer.grad_clip=0", "sched.warmup_epochs=0", f"paths.runs_dir={tmp_path}"),
                                "optim.lr=1e12,1e-3")
    assert code == 1, out
    runs = sorted(p for p in tmp_path.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert len(runs) == 2
    failed = [p for p in runs if (p / "FAILED").exists()]
    done = [p for p in runs if (p / "DONE").exists()]
    assert len(failed) == 1 and len(done) == 1 and failed[0] != done[0]
    assert "loss became nan" in (failed[0] / "FAILED").read_text()
    assert "1 of 2 jobs failed" in out and str(failed[0]) in out and "loss became nan" in out


def test_a_corrupt_checkpoint_is_an_error_not_a_restart(tmp_path, monkeypatch, capsys, folder_root):
    args = folder(folder_root, "trainer.epochs=1", f"hydra.run.dir={tmp_path}")
    assert main_in_process(monkeypatch, capsys, *args)[0] == 0
    (tmp_path / "DONE").unlink()
    (tmp_path / "checkpoint.pt").write_bytes(b"\x00garbage")
    metrics_before = (tmp_path / "metrics.jsonl").read_text()
    code, out = main_in_process(monkeypatch, capsys, *args)
    assert code == 2 and "corrupt" in out and "checkpoint.pt" in out and "Traceback" not in out
    assert (tmp_path / "checkpoint.pt").read_bytes() == b"\x00garbage"
    assert (tmp_path / "metrics.jsonl").read_text() == metrics_before


def test_default_run_dir_is_deterministic_and_resumes(tmp_path, monkeypatch, capsys, folder_root):
    args = folder(folder_root, "trainer.epochs=1", f"paths.runs_dir={tmp_path}")
    assert main_in_process(monkeypatch, capsys, *args)[0] == 0
    runs = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(runs) == 1 and runs[0].name.startswith("image_folder-vit_micro-default-s0-")
    code, out = main_in_process(monkeypatch, capsys, *args)
    assert code == 0 and "already finished" in out + (runs[0] / "train.log").read_text()
    assert [p for p in tmp_path.iterdir() if p.is_dir()] == runs


# ------------------------------------------------------------------ real processes
def _default_sigint() -> None:
    # As from a terminal: a background job of a non-interactive shell (CI) starts with SIGINT ignored,
    # and the trainer rightly leaves an ignored signal ignored.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(args, **kw):
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, str(REPO / "train.py"), *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint, **kw)


def _wait_for(predicate, proc, timeout=240):
    deadline = time.time() + timeout
    while not predicate() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)


def _progress(run_dir: Path) -> dict | None:
    try:
        return torch.load(run_dir / "checkpoint.pt", weights_only=True)["progress"]
    except Exception:
        return None


@pytest.mark.slow
def test_kill_9_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path, folder_root):
    args = folder(folder_root, "trainer.epochs=3", "init=mimetic", "trainer.batch_size=8",
                  "trainer.checkpoint_every=4")
    reference = tmp_path / "reference"
    done = cli(*args, f"hydra.run.dir={reference}")
    assert done.returncode == 0, done.stderr

    resumed = tmp_path / "resumed"
    proc = _start([*args, f"hydra.run.dir={resumed}"])
    # 120 images / batch 8 = 15 steps per epoch: a step-4 checkpoint is mid-epoch.
    _wait_for(lambda: (p := _progress(resumed)) is not None and p["global_step"] >= 4, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    progress = _progress(resumed)
    assert not (resumed / "DONE").exists() and 0 < progress["global_step"] < 45

    again = cli(*args, f"hydra.run.dir={resumed}")
    assert again.returncode == 0, again.stderr
    assert "resume" in again.stdout + again.stderr
    assert without_timing(read_metrics(resumed)) == without_timing(read_metrics(reference))
    a = torch.load(resumed / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(reference / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


# A run long enough (vit_micro at full width, batch 8) to be caught in the middle.
SLOWER = ["model=vit_micro", "trainer.batch_size=8", "trainer.progress=false", "logger.mode=disabled",
          "sched.warmup_epochs=1"]


@pytest.mark.slow
@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stop_signal_checkpoints_says_one_thing_and_resumes(tmp_path, folder_root, sig, code):
    args = [*SLOWER, "dataset=image_folder", f"dataset.root={folder_root}", "trainer.epochs=8",
            f"hydra.run.dir={tmp_path}"]
    proc = _start(args)
    _wait_for(lambda: (tmp_path / "metrics.jsonl").exists() and (tmp_path / "metrics.jsonl").read_text(), proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Traceback" not in err and "the same command resumes" in err
    stopped_at = _progress(tmp_path)["global_step"]
    assert 15 <= stopped_at < 120 and not (tmp_path / "DONE").exists()
    again = cli(*args, timeout=900)
    assert again.returncode == 0 and (tmp_path / "DONE").exists(), again.stderr
    assert "resume at epoch" in again.stdout + again.stderr
    assert [r["epoch"] for r in read_metrics(tmp_path)] == list(range(1, 9))


@pytest.mark.slow
def test_two_processes_never_share_a_run_dir(tmp_path, folder_root):
    args = [*SLOWER, "dataset=image_folder", f"dataset.root={folder_root}", "trainer.epochs=12",
            f"hydra.run.dir={tmp_path}"]
    first = _start(args)
    _wait_for(lambda: (tmp_path / "LOCK").exists(), first)
    second = cli(*args)
    assert first.poll() is None, "the first run ended before the second started; make it longer"
    assert second.returncode == 2, second.stderr
    assert f"PID {first.pid}" in second.stderr and "Traceback" not in second.stderr
    out, err = first.communicate(timeout=400)
    assert first.returncode == 0, err
    assert [r["epoch"] for r in read_metrics(tmp_path)] == list(range(1, 13))
    assert json.loads((tmp_path / "summary.json").read_text())["epochs"] == 12


def test_an_unwritable_log_file_is_a_warning_not_a_crash(tmp_path, capsys):
    import logging

    from mimetic.cli import RunLogHandler

    handler = RunLogHandler(str(tmp_path / "no" / "such" / "dir" / "train.log"))
    handler.emit(logging.LogRecord("mimetic", logging.INFO, __file__, 1, "hello", None, None))
    assert "cannot write the log file" in capsys.readouterr().err


def test_an_uncreatable_run_dir_is_one_message(tmp_path, monkeypatch, capsys, folder_root):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    code, out = main_in_process(monkeypatch, capsys, *folder(folder_root, f"hydra.run.dir={blocker / 'run'}"))
    assert code == 2 and "cannot create the run directory" in out and "Traceback" not in out


def test_text_that_is_not_utf8_is_one_message_and_leaves_no_run_dir(tmp_path, monkeypatch, capsys):
    from fake_wikitext import write_wikitext

    root = write_wikitext(tmp_path / "wiki")
    (root / "wiki.valid.tokens").write_bytes((root / "wiki.valid.tokens").read_bytes() + b" caf\xe9 \n")
    runs = tmp_path / "runs"
    code, out = main_in_process(monkeypatch, capsys, "model=gpt_micro", "model.dim=32", "model.block_size=16",
                                "dataset=wikitext103", f"dataset.root={root}", "dataset.seq_len=16",
                                "dataset.vocab_size=300", "aug=none", "trainer.label_smoothing=0",
                                "trainer.progress=false", "logger.mode=disabled", f"paths.runs_dir={runs}")
    assert code == 2 and "wiki.valid.tokens is not UTF-8 text" in out and "Traceback" not in out, out
    assert not runs.exists() or list(runs.iterdir()) == []


@pytest.mark.slow
def test_hydra_sweep_dir_moves_a_sweeps_runs(tmp_path, monkeypatch, capsys, folder_root):
    """hydra.sweep.dir=X puts the jobs in X/<run key> (Hydra's convention); they used to land in
    paths.runs_dir whatever X said, because the sweep subdir was the absolute run dir."""
    runs, elsewhere = tmp_path / "runs", tmp_path / "elsewhere"
    args = folder(folder_root, "trainer.max_steps=1", f"paths.runs_dir={runs}")
    code, out = main_in_process(monkeypatch, capsys, "-m", *args, "seed=0,1", f"hydra.sweep.dir={elsewhere}")
    assert code == 0, out
    jobs = sorted(p.name for p in elsewhere.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert len(jobs) == 2 and all((elsewhere / j / "DONE").exists() for j in jobs), jobs
    assert [j.split("-s")[1][0] for j in jobs] == ["0", "1"] and not runs.exists()
    # Without hydra.sweep.dir: paths.runs_dir/<run key>, the directories single runs use (and so resume).
    code, out = main_in_process(monkeypatch, capsys, "-m", *args, "seed=0,1")
    assert code == 0 and sorted(p.name for p in runs.iterdir() if p.is_dir() and not p.name.startswith(".")) == jobs
    # An invalid job of such a sweep leaves nothing in the sweep dir.
    code, out = main_in_process(monkeypatch, capsys, "-m", *args, "model.heads=3,2", f"hydra.sweep.dir={elsewhere}")
    assert code == 1 and "1 of 2 jobs failed" in out and "model.heads=3 does not divide" in out
    assert sorted(p.name for p in elsewhere.iterdir() if p.is_dir() and not p.name.startswith(".")) == jobs


@pytest.mark.parametrize("launcher", ["slurm", "slurm_ddp"])
def test_a_slurm_launcher_without_m_is_one_message_not_a_local_run(tmp_path, monkeypatch, capsys, folder_root,
                                                                    launcher):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    runs = tmp_path / "runs"
    code, out = main_in_process(monkeypatch, capsys, *folder(folder_root, f"paths.runs_dir={runs}"),
                                f"hydra/launcher={launcher}")
    assert code == 2 and f"hydra/launcher={launcher} launches the jobs of a sweep" in out and "add -m" in out.lower()
    assert "Traceback" not in out and "start " not in out and not runs.exists(), out


@pytest.mark.parametrize("launcher", ["slurm", "slurm_ddp"])
def test_a_slurm_sweep_without_slurm_is_one_message_before_submitting(tmp_path, monkeypatch, capsys, folder_root,
                                                                       launcher):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    monkeypatch.setenv("PATH", str(tmp_path / "no-slurm-here"))  # no sbatch, no srun
    runs = tmp_path / "runs"
    code, out = main_in_process(monkeypatch, capsys, "-m", *folder(folder_root, f"paths.runs_dir={runs}"),
                                f"hydra/launcher={launcher}", "seed=0,1")
    assert code == 2 and "sbatch and srun are not on this machine's PATH" in out and "SLURM login node" in out, out
    assert f"drop hydra/launcher={launcher}" in out and "Traceback" not in out and "Could not detect" not in out
    assert not runs.exists() or not list(runs.glob(".submitit/*"))


def test_the_slurm_check_lets_a_login_node_submit(tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    from mimetic.cli import LauncherCheck

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for command in ("sbatch", "srun"):
        (bin_dir / command).write_text("#!/bin/sh\n")
        (bin_dir / command).chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    config = OmegaConf.create({"hydra": {"runtime": {"choices": {"hydra/launcher": "slurm"}}, "launcher": {
        "_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"}}})
    LauncherCheck().on_multirun_start(config)  # no SystemExit
    basic = OmegaConf.create({"hydra": {"launcher": {"_target_": "hydra._internal.core_plugins.basic_launcher."
                                                                 "BasicLauncher"}}})
    LauncherCheck().on_run_start(basic)  # a plain run: nothing to say


def test_a_job_that_raises_a_bug_still_gets_the_sweep_report(tmp_path, monkeypatch, capsys, folder_root):
    """Hydra's sweeper re-raised a job's non-Mimetic exception after the jobs ran: the sweep ended on that
    traceback instead of the N-of-M report. The bug keeps its traceback (in the job's log); the report follows."""
    from mimetic.train import run as run_module

    real_run = run_module.run

    def buggy_for_seed_1(cfg, run_dir=None):
        if cfg.seed == 1:
            raise RuntimeError("a bug in the code")
        return real_run(cfg, run_dir)

    monkeypatch.setattr(run_module, "run", buggy_for_seed_1)
    code, out = main_in_process(monkeypatch, capsys, "-m", *folder(folder_root, "trainer.max_steps=1",
                                f"paths.runs_dir={tmp_path}"), "seed=1,0")
    assert code == 1, out
    assert "1 of 2 jobs failed" in out and "seed=1" in out and "RuntimeError: a bug in the code" in out
    assert out.rstrip().endswith("finished jobs are skipped, the rest resume."), out[-500:]
    done = [p for p in tmp_path.iterdir() if (p / "DONE").exists()]
    assert len(done) == 1 and "-s0-" in done[0].name  # the job after the failing one ran
    failed = next(p for p in tmp_path.iterdir() if "-s1-" in p.name)
    assert "RuntimeError: a bug in the code" in (failed / "train.log").read_text()  # with its traceback


def test_a_remote_jobs_bug_still_fails_the_submitting_command():
    """A SLURM job runs in another process, whose report the submitting command never prints: there the
    exception stays the job's result, so Hydra's sweeper still fails the command on it."""
    from hydra.core.utils import JobReturn, JobStatus
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from mimetic.cli import JobFailed, SweepReport

    config = OmegaConf.create({"hydra": {"mode": RunMode.MULTIRUN, "runtime": {"output_dir": "/x"}}})
    for pid, handled in ((os.getpid(), True), (-1, False)):  # the sweep's own process / another one
        report = SweepReport()
        report.sweep_pid = pid
        job = JobReturn(overrides=["seed=1"], status=JobStatus.FAILED, _return_value=RuntimeError("a bug"))
        report.on_job_end(config, job)
        assert len(report.failed) == 1 and report.failed[0].message == "RuntimeError: a bug"
        assert (job.status == JobStatus.COMPLETED and isinstance(job.return_value, JobFailed)) is handled


def test_a_user_error_reaches_the_terminal_once_and_the_log_file_too(tmp_path):
    """The message was printed twice (Hydra's console handler, then the CLI's own `error:` line)."""
    from helpers import cli

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "keep.txt").write_text("a file of the user's: the folder is not removed")
    done = cli("model=vit_micro", "dataset=image_folder", f"dataset.root={tmp_path / 'missing'}",
               "logger.mode=disabled", f"hydra.run.dir={run_dir}")
    assert done.returncode == 2
    terminal = done.stdout + done.stderr
    first_line = next(line for line in done.stderr.splitlines() if line.startswith("error: "))
    message = first_line.removeprefix("error: ")
    assert terminal.count(message) == 1, terminal
    assert message in (run_dir / "train.log").read_text()
