"""End-to-end runs of train.py on tiny models and data written in the real formats."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from fake_data import write_cifar10, write_image_folder
from hydra import compose, initialize_config_dir

from mimetic.errors import CheckpointError, ConfigError, DatasetError
from mimetic.train.run import run

REPO = Path(__file__).resolve().parents[1]
TINY = ["model=vit_micro", "model.dim=32", "model.depth=2", "model.heads=2", "model.patch_size=8",
        "trainer.batch_size=16", "trainer.eval_batch_size=64", "trainer.progress=false", "logger.mode=disabled",
        "sched.warmup_epochs=1"]
EPOCH_KEYS = {"epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "epoch_time_s", "images_per_s"}
TIMING = {"epoch_time_s", "images_per_s"}


def composed(*overrides):
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def without_timing(records):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def cli(*args, cwd=REPO, timeout=300):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([sys.executable, str(REPO / "train.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    return write_cifar10(tmp_path_factory.mktemp("cifar"), per_batch=32, test=64)


@pytest.fixture(scope="module")
def folder_root(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("folder"), train_per_class=40, test_per_class=10)


def test_two_epochs_on_cifar10_pickles(tmp_path, cifar_root):
    cfg = composed(*TINY, "dataset=cifar10", f"dataset.root={cifar_root}", "dataset.verify_checksums=false",
                   "init=mimetic", "trainer.epochs=2", "aug=randaug_cutout")
    summary = run(cfg, run_dir=tmp_path)
    records = read_metrics(tmp_path)
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(EPOCH_KEYS <= set(r) for r in records)
    assert all(0 <= r["test_acc"] <= 100 and r["train_loss"] > 0 for r in records)
    for key in ("test_acc", "best_test_acc", "epochs", "model", "dataset", "init", "seed", "wall_time_s"):
        assert key in summary
    assert summary["epochs"] == 2 and summary["init"] == "mimetic" and summary["dataset"] == "cifar10"
    assert summary["test_acc"] == records[-1]["test_acc"]
    assert summary["best_test_acc"] == max(r["test_acc"] for r in records)
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    assert (tmp_path / "DONE").exists() and (tmp_path / "config.yaml").exists()
    diagnostics = json.loads((tmp_path / "init_diagnostics.json").read_text())
    assert diagnostics["init"] == {"init": "mimetic", "layers": 2}
    assert diagnostics["attention"]["mean"]["vo_diag_mean"] == pytest.approx(-0.4, abs=0.1)


def test_image_folder_run_learns_with_val_split(tmp_path, folder_root):
    cfg = composed(*TINY, "dataset=image_folder", f"dataset.root={folder_root}", "dataset.val_fraction=0.25",
                   "aug=basic", "trainer.epochs=6", "optim.lr=3e-3")
    summary = run(cfg, run_dir=tmp_path)
    records = read_metrics(tmp_path)
    assert {"val_loss", "val_acc"} <= set(records[0]) and "best_val_acc" in summary
    # The fake classes differ by colour: a working loop gets well above chance (33%).
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    assert summary["best_test_acc"] > 60


def test_finished_run_is_never_overwritten(tmp_path, folder_root):
    overrides = [*TINY, "dataset=image_folder", f"dataset.root={folder_root}", "trainer.epochs=1"]
    first = run(composed(*overrides), run_dir=tmp_path)
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    again = run(composed(*overrides), run_dir=tmp_path)
    assert again == first
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == stamps


def test_seeds_share_the_data_stream_and_base_weights(tmp_path, folder_root):
    """Default and mimetic with one seed differ only in the attention weights at step 0."""
    from mimetic.data import build_data
    from mimetic.init import apply_init
    from mimetic.train.config import load_config
    from mimetic.train.run import build_model
    from mimetic.train.seeding import generator

    base = [*TINY, "dataset=image_folder", f"dataset.root={folder_root}"]
    models, batches = {}, {}
    for init in ("default", "mimetic"):
        cfg = load_config(composed(*base, f"init={init}"))
        data = build_data(cfg, torch.device("cpu"))
        model = build_model(cfg, data.num_classes)
        apply_init(model, cfg.init, generator(cfg.seed, "init"))
        models[init] = model.state_dict()
        batches[init] = next(iter(data.train.epoch(generator(cfg.seed, "data", 1))))
    for key, value in models["default"].items():
        same = torch.equal(value, models["mimetic"][key])
        assert same != (key.endswith(("attn.qkv.weight", "attn.proj.weight"))), key
    assert torch.equal(batches["default"][0], batches["mimetic"][0])


def test_wrong_config_in_an_existing_run_dir(tmp_path, folder_root):
    overrides = [*TINY, "dataset=image_folder", f"dataset.root={folder_root}", "trainer.epochs=1"]
    run(composed(*overrides), run_dir=tmp_path)
    (tmp_path / "DONE").unlink()
    with pytest.raises((ConfigError, CheckpointError), match="different config"):
        run(composed(*overrides, "optim.lr=1e-4"), run_dir=tmp_path)


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_checkpoint(tmp_path, folder_root):
    overrides = [*TINY, "dataset=image_folder", f"dataset.root={folder_root}", "trainer.epochs=2"]
    run(composed(*overrides, "trainer.epochs=1"), run_dir=tmp_path / "ok")
    # Same run dir, continued with a diverging learning rate is a different config; use a fresh one.
    from mimetic.errors import TrainingError

    with pytest.raises(TrainingError, match="loss became"):
        run(composed(*overrides, "optim.lr=1e12", "trainer.grad_clip=0", "sched.warmup_epochs=0"),
            run_dir=tmp_path / "nan")
    assert not (tmp_path / "nan" / "DONE").exists()
    assert (tmp_path / "nan" / "metrics.jsonl").read_text() == ""


def test_missing_dataset_message(tmp_path):
    with pytest.raises(DatasetError, match="scripts/prepare_data.py cifar10"):
        run(composed(*TINY, "dataset=cifar10", f"dataset.root={tmp_path / 'none'}"), run_dir=tmp_path / "run")


def test_wandb_offline_writes_locally(tmp_path, folder_root):
    pytest.importorskip("wandb")
    cfg = composed(*TINY, "dataset=image_folder", f"dataset.root={folder_root}", "trainer.epochs=1",
                   "logger.mode=offline")
    run(cfg, run_dir=tmp_path)
    offline = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and (tmp_path / "DONE").exists()


# ------------------------------------------------------------------ the command line


def test_kill_9_then_resume_matches_an_uninterrupted_run(tmp_path, folder_root):
    args = [*TINY, "dataset=image_folder", f"dataset.root={folder_root}", "trainer.epochs=5", "init=mimetic",
            "trainer.batch_size=8"]
    reference = tmp_path / "reference"
    done = cli(*args, f"hydra.run.dir={reference}")
    assert done.returncode == 0, done.stderr

    resumed = tmp_path / "resumed"
    env = {**os.environ, "WANDB_MODE": "disabled"}
    proc = subprocess.Popen([sys.executable, str(REPO / "train.py"), *args, f"hydra.run.dir={resumed}"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240

    def epochs_logged() -> int:
        path = resumed / "metrics.jsonl"
        return len(path.read_text().splitlines()) if path.exists() else 0

    # A metrics line is written only after its epoch's checkpoint: kill once one is there.
    while epochs_logged() < 1 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (resumed / "DONE").exists(), "the run finished before it could be killed"
    killed_at = torch.load(resumed / "checkpoint.pt", weights_only=False)["epoch"]
    assert 1 <= killed_at < 5

    again = cli(*args, f"hydra.run.dir={resumed}")
    assert again.returncode == 0, again.stderr
    assert "resume" in again.stdout + again.stderr
    assert without_timing(read_metrics(resumed)) == without_timing(read_metrics(reference))
    a = torch.load(resumed / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(reference / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_default_run_dir_is_deterministic_and_resumes(tmp_path, folder_root):
    args = [*TINY, "dataset=image_folder", f"dataset.root={folder_root}", "trainer.epochs=1",
            f"paths.runs_dir={tmp_path}"]
    first = cli(*args)
    assert first.returncode == 0, first.stderr
    runs = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(runs) == 1 and runs[0].name.startswith("image_folder-vit_micro-default-s0-")
    second = cli(*args)
    assert second.returncode == 0 and "already finished" in second.stdout + second.stderr
    assert [p for p in tmp_path.iterdir() if p.is_dir()] == runs


def test_corrupt_checkpoint_is_an_error_not_a_restart(tmp_path, folder_root):
    args = [*TINY, "dataset=image_folder", f"dataset.root={folder_root}", "trainer.epochs=2",
            f"hydra.run.dir={tmp_path}"]
    assert cli(*args, "trainer.epochs=2").returncode == 0
    (tmp_path / "DONE").unlink()
    (tmp_path / "checkpoint.pt").write_bytes(b"\x00garbage")
    metrics_before = (tmp_path / "metrics.jsonl").read_text()
    out = cli(*args)
    assert out.returncode == 2
    assert "corrupt" in out.stderr and "checkpoint.pt" in out.stderr and "Traceback" not in out.stderr
    assert (tmp_path / "checkpoint.pt").read_bytes() == b"\x00garbage"
    assert (tmp_path / "metrics.jsonl").read_text() == metrics_before


@pytest.mark.parametrize(
    "args,message",
    [
        (["model.heads=5"], "model.heads=5 does not divide model.dim"),
        (["trainer.batch_size=0"], "trainer.batch_size must be > 0"),
        (["trainer.epochs=0"], "trainer.epochs must be >= 1"),
        (["init=mimetic", "init.alpha_qk=-1"], "init.alpha_qk must be >= 0"),
        (["trainer.batch_size=abc"], "trainer.batch_size"),
        (["+trainer.foo=1"], "trainer.foo"),
        (["trainer.fooo=1"], "trainer.fooo"),
        (["dataset=cifar11"], "cifar11"),
        (["dataset=cifar10", "dataset.root=/nonexistent/cifar"], "python scripts/prepare_data.py cifar10"),
    ],
)
def test_bad_input_on_the_command_line(tmp_path, args, message):
    out = cli(*TINY, *args, f"hydra.run.dir={tmp_path / 'run'}")
    assert out.returncode != 0
    assert message in out.stderr
    assert "Traceback" not in out.stderr + out.stdout
