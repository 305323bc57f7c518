"""scripts/sweep_status.py on a real (tiny) sweep and on hand-made run directories of every state."""

import os
import subprocess
import sys
import time

import pytest
import torch
from helpers import REPO, TINY, load_script

sweep_status = load_script("scripts/sweep_status.py")

FAST = [*TINY, "dataset=digits", "trainer.max_steps=3", "trainer.batch_size=64"]


def status(*args: str):
    return subprocess.run([sys.executable, str(REPO / "scripts" / "sweep_status.py"), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_a_sweep_expands_like_hydra_and_ignores_launcher_settings():
    jobs = sweep_status.expand(["seed=0,1", "init=default,mimetic", "hydra/launcher=slurm", "trainer.epochs=2"])
    assert jobs == [["seed=0", "init=default", "trainer.epochs=2"], ["seed=0", "init=mimetic", "trainer.epochs=2"],
                    ["seed=1", "init=default", "trainer.epochs=2"], ["seed=1", "init=mimetic", "trainer.epochs=2"]]
    assert sweep_status.expand(["seed=range(0,3)"]) == [["seed=0"], ["seed=1"], ["seed=2"]]


def test_an_experiment_name_alone_gives_its_whole_grid(capsys):
    """The experiment file's grid (hydra.sweeper.params) is the sweep; a command-line key replaces the grid's."""
    jobs = sweep_status.expand(["experiment=proxy_digits"])
    assert len(jobs) == 10 and jobs[0] == ["seed=0", "init=default", "experiment=proxy_digits"]
    assert sweep_status.expand(["experiment=proxy_digits", "seed=3"]) == [
        ["seed=3", "init=default", "experiment=proxy_digits"], ["seed=3", "init=mimetic", "experiment=proxy_digits"]]
    assert sweep_status.main(["experiment=no_such_experiment"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot expand the sweep:") and "experiment/no_such_experiment" in err


def test_every_state_is_told_apart(tmp_path):
    base = [*FAST, f"paths.runs_dir={tmp_path / 'runs'}"]
    jobs = {s: [*base, f"seed={i}"] for i, s in enumerate(("done", "failed", "resumable", "running", "missing"))}
    dirs = {s: sweep_status.job_status(job)["run_dir"] for s, job in jobs.items()}
    assert len(set(dirs.values())) == 5  # two jobs never share a run directory
    for state, path in dirs.items():
        if state != "missing":
            os.makedirs(path)
    (tmp_path / "runs").joinpath(dirs["done"], "DONE").write_text("now\n")
    (tmp_path / "runs").joinpath(dirs["failed"], "FAILED").write_text("the training loss became nan at epoch 3\n"
                                                                      "more detail\n")
    torch.save({"progress": {"epoch": 2, "global_step": 17}}, os.path.join(dirs["resumable"], "checkpoint.pt"))
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom mimetic.runtime.runlock import RunLock\n"
                               "lock = RunLock(sys.argv[1]); lock.acquire(); print('held', flush=True); "
                               "time.sleep(120)", dirs["running"]], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        records = {s: sweep_status.job_status(job) for s, job in jobs.items()}
        assert {s: r["state"] for s, r in records.items()} == {s: s for s in jobs}
        assert records["failed"]["detail"] == "the training loss became nan at epoch 3"
        assert records["resumable"]["detail"] == "epoch 2 step 17"
        assert f"pid {holder.pid}" in records["running"]["detail"].lower()
    finally:
        holder.kill()
        holder.wait()
    invalid = sweep_status.job_status([*base, "model.dim=-1"])
    assert invalid["state"] == "invalid" and "model.dim" in invalid["detail"]


TRACEBACK = """[2026-11-24 10:00:00,000][mimetic.train.run][INFO] - epoch 1: test_acc 41.20
Traceback (most recent call last):
  File "/work/main/train.py", line 12, in main
    return cli.main(cfg)
  File "/work/main/src/mimetic/train/loop.py", line 88, in train_step
    loss = model(x)
RuntimeError: CUDA error: an illegal memory access was encountered
"""


def test_a_job_that_crashed_with_a_traceback_is_failed_with_the_exception(tmp_path):
    """A crash (an exception that is not a user error) leaves no FAILED, no DONE and a dead owner: not "started"."""
    base = [*FAST, f"paths.runs_dir={tmp_path / 'runs'}"]
    cases = ("crashed", "crashed_after_checkpoint", "relaunched", "interrupted", "cut_in_a_frame", "plain_log")
    jobs = {case: [*base, f"seed={i}"] for i, case in enumerate(cases)}
    dirs = {case: sweep_status.job_status(job)["run_dir"] for case, job in jobs.items()}
    logs = {
        "crashed": TRACEBACK + "\n",
        "crashed_after_checkpoint": TRACEBACK,
        "relaunched": TRACEBACK + "[2026-11-24 10:05:00,000][mimetic.train.run][INFO] - resuming from epoch 1\n",
        "interrupted": TRACEBACK.replace("RuntimeError: CUDA error: an illegal memory access was encountered",
                                         "KeyboardInterrupt"),
        "cut_in_a_frame": TRACEBACK.rsplit("\n", 2)[0] + "\n",
        "plain_log": "[2026-11-24 10:00:00,000][mimetic.train.run][INFO] - epoch 1: test_acc 41.20\n",
    }
    for case, text in logs.items():
        os.makedirs(dirs[case])
        with open(os.path.join(dirs[case], "train.log"), "w") as f:
            f.write(text)
    torch.save({"progress": {"epoch": 1, "global_step": 9}}, os.path.join(dirs["crashed_after_checkpoint"],
                                                                         "checkpoint.pt"))
    # the LOCK of a process that died without releasing it (as a crash under kill -9 leaves it): no live owner
    subprocess.run([sys.executable, "-c", "import os, sys\nfrom mimetic.runtime.runlock import RunLock\n"
                    "RunLock(sys.argv[1]).acquire(); os._exit(1)", dirs["crashed"]], check=False, timeout=60)
    assert os.path.exists(os.path.join(dirs["crashed"], "LOCK"))
    records = {case: sweep_status.job_status(job) for case, job in jobs.items()}
    assert {c: r["state"] for c, r in records.items()} == {
        "crashed": "failed", "crashed_after_checkpoint": "failed", "relaunched": "started",
        "interrupted": "started", "cut_in_a_frame": "started", "plain_log": "started"}
    assert records["crashed"]["detail"] == (
        "crashed: RuntimeError: CUDA error: an illegal memory access was encountered")
    assert records["crashed_after_checkpoint"]["detail"].endswith("; a relaunch resumes from epoch 1 step 9")
    assert sweep_status.main(["--missing", *base, "seed=0"]) == 1


@pytest.mark.slow
def test_relaunching_a_sweep_with_one_job_deleted_trains_only_that_job(tmp_path):
    sweep = [*FAST, f"paths.runs_dir={tmp_path / 'runs'}", "seed=0,1", "init=default,mimetic"]
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    first = subprocess.run([sys.executable, "train.py", "-m", *sweep], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    done = status(*sweep)
    assert done.returncode == 0 and done.stdout.count("\ndone ") + done.stdout.startswith("done ") == 4, done.stdout
    assert "done: 4  (of 4 jobs)" in done.stdout

    records = [sweep_status.job_status(job) for job in sweep_status.expand(sweep)]
    victim = records[2]
    import shutil

    shutil.rmtree(victim["run_dir"])
    stamps = {r["run_dir"]: os.path.getmtime(os.path.join(r["run_dir"], "metrics.jsonl")) for r in records
              if r is not victim}
    after = status(*sweep)
    assert after.returncode == 1 and "missing: 1" in after.stdout and "done: 3" in after.stdout
    assert status("--missing", *sweep).stdout.splitlines() == [" ".join(victim["overrides"])]

    time.sleep(1.1)
    again = subprocess.run([sys.executable, "train.py", "-m", *sweep], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert (again.stdout + again.stderr).count("run already finished") == 3
    assert all(os.path.getmtime(os.path.join(d, "metrics.jsonl")) == t for d, t in stamps.items())
    assert os.path.exists(os.path.join(victim["run_dir"], "DONE"))
    assert status(*sweep).returncode == 0
