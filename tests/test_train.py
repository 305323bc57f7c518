"""Whole training runs, in process, on tiny models and data written in the real formats."""

import json
import pickle
import shutil

import pytest
import torch
from helpers import TINY, composed, read_metrics, signal_after_steps, without_timing

from mimetic.errors import CheckpointError, ConfigError, DatasetError, TrainingError
from mimetic.runtime.signals import StopRequested
from mimetic.train.run import run

EPOCH_KEYS = {"epoch", "step", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "epoch_time_s",
              "images_per_s"}


def folder_args(root, *more):
    return [*TINY, "dataset=image_folder", f"dataset.root={root}", *more]


def convmixer_args(root, *more):
    """A timm ConvMixer built from its class (no attention anywhere)."""
    not_vit = [a for a in TINY if not a.startswith("model")]
    return [*not_vit, "dataset=image_folder", f"dataset.root={root}", "model=timm",
            "model.arch=timm.models.convmixer.ConvMixer", "+model.kwargs.dim=16", "+model.kwargs.depth=2",
            "+model.kwargs.kernel_size=3", "+model.kwargs.patch_size=4", *more]


def test_two_epochs_on_cifar10_pickles(tmp_path, cifar_root):
    cfg = composed(*TINY, "dataset=cifar10", f"dataset.root={cifar_root}", "dataset.verify_checksums=false",
                   "init=mimetic", "trainer.epochs=2", "aug=randaug_cutout")
    summary = run(cfg, run_dir=tmp_path)
    records = read_metrics(tmp_path)
    assert [r["epoch"] for r in records] == [1, 2] and [r["step"] for r in records] == [10, 20]
    assert all(EPOCH_KEYS <= set(r) for r in records)
    assert all(0 <= r["test_acc"] <= 100 and r["train_loss"] > 0 for r in records)
    assert summary["epochs"] == 2 and summary["init"] == "mimetic" and summary["dataset"] == "cifar10"
    assert summary["primary_metric"] == "test_acc" and summary["higher_is_better"] is True
    assert summary["test_acc"] == records[-1]["test_acc"]
    assert summary["best_test_acc"] == max(r["test_acc"] for r in records)
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    assert (tmp_path / "DONE").exists() and (tmp_path / "config.yaml").exists()
    diagnostics = json.loads((tmp_path / "init_diagnostics.json").read_text())
    assert diagnostics["init"]["init"] == "mimetic" and diagnostics["init"]["layers"] == 2
    assert diagnostics["attention"]["mean"]["vo_diag_mean"] == pytest.approx(-0.4, abs=0.1)
    assert diagnostics["changed_tensors"] and all("attn" in k for k in diagnostics["changed_tensors"])
    env = json.loads((tmp_path / "environment.json").read_text())
    assert env["command"] and "torch" in env


def test_image_folder_run_learns_with_val_split(tmp_path, folder_root):
    cfg = composed(*folder_args(folder_root, "dataset.val_fraction=0.25", "aug=basic", "trainer.epochs=6",
                                "optim.lr=3e-3"))
    summary = run(cfg, run_dir=tmp_path)
    records = read_metrics(tmp_path)
    assert {"val_loss", "val_acc"} <= set(records[0]) and "best_val_acc" in summary
    # The fake classes differ by colour: a working loop gets well above chance (33%).
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    assert summary["best_test_acc"] > 60


def test_finished_run_is_never_overwritten(tmp_path, folder_root):
    overrides = folder_args(folder_root, "trainer.epochs=1")
    first = run(composed(*overrides), run_dir=tmp_path)
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    again = run(composed(*overrides), run_dir=tmp_path)
    assert again == first
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == stamps


def test_the_owner_is_checked_before_done(tmp_path, folder_root):
    """A finished run of config A is never returned as the result of config B."""
    run(composed(*folder_args(folder_root, "trainer.epochs=1")), run_dir=tmp_path)
    with pytest.raises(ConfigError, match="different config"):
        run(composed(*folder_args(folder_root, "trainer.epochs=1", "optim.lr=1e-4")), run_dir=tmp_path)


def test_seeds_share_the_data_stream_and_base_weights(folder_root):
    """Default and mimetic with one seed differ only in the attention weights at step 0."""
    from mimetic.data import DataRequest, build_data
    from mimetic.init import apply_init
    from mimetic.models import build_model
    from mimetic.train.config import load_config
    from mimetic.train.seeding import derive_seed, generator

    models, batches = {}, {}
    for init in ("default", "mimetic"):
        cfg = load_config(composed(*folder_args(folder_root, f"init={init}")))
        data = build_data(cfg.dataset, DataRequest(32, 16, 64, torch.device("cpu"), aug=cfg.aug))
        torch.manual_seed(derive_seed(cfg.seed, "model"))
        model = build_model(cfg.model, data.spec)
        apply_init(model, cfg.init, generator(cfg.seed, "init"))
        models[init] = model.state_dict()
        batches[init] = next(iter(data.train.epoch(generator(cfg.seed, "data", 1))))
    for key, value in models["default"].items():
        same = torch.equal(value, models["mimetic"][key])
        assert same != (key.endswith(("attn.qkv.weight", "attn.proj.weight"))), key
    assert torch.equal(batches["default"][0], batches["mimetic"][0])


def test_a_model_without_attention_trains_with_default_init(tmp_path, folder_root):
    """A timm ConvMixer (no attention at all) is a client like any other."""
    cfg = composed(*convmixer_args(folder_root, "trainer.epochs=1"))
    summary = run(cfg, run_dir=tmp_path)
    diagnostics = json.loads((tmp_path / "init_diagnostics.json").read_text())
    assert diagnostics["changed_tensors"] == [] and "attention" not in diagnostics
    assert summary["model"] == "timm" and 0 <= summary["test_acc"] <= 100


def test_an_attention_init_on_a_model_without_attention_is_one_clear_error(tmp_path, folder_root):
    from mimetic.errors import MimeticError

    cfg = composed(*convmixer_args(folder_root, "init=mimetic"))
    with pytest.raises(MimeticError, match="attention"):
        run(cfg, run_dir=tmp_path)
    assert (tmp_path / "FAILED").exists()


def test_image_folder_identity_follows_the_data_not_the_path(tmp_path, folder_root):
    """Other images under the same config never reuse a run; the same images moved elsewhere do."""
    from fake_data import write_image_folder

    from mimetic.train.config import load_config, run_key

    other = write_image_folder(tmp_path / "other", train_per_class=41, test_per_class=10, seed=7)
    moved = tmp_path / "moved"
    shutil.copytree(folder_root, moved)
    key = lambda root: run_key(load_config(composed(*folder_args(root))))  # noqa: E731
    assert key(folder_root) != key(other)
    assert key(folder_root) == key(moved)


def test_freezing_keeps_tensors_bit_identical_and_out_of_the_optimizer(tmp_path, folder_root):
    from mimetic.models import build_model, freeze_
    from mimetic.train.config import load_config
    from mimetic.train.seeding import derive_seed

    args = folder_args(folder_root, "trainer.epochs=2", "model.freeze=[patch_embed.*,cls_token]")
    run(composed(*args), run_dir=tmp_path)
    cfg = load_config(composed(*args))
    torch.manual_seed(derive_seed(cfg.seed, "model"))
    from mimetic.models.base import DataSpec

    fresh = build_model(cfg.model, DataSpec("classification", num_classes=3))
    trained = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["model"]
    for name in ("patch_embed.proj.weight", "patch_embed.proj.bias", "cls_token"):
        assert torch.equal(trained[name], fresh.state_dict()[name]), name
    assert not torch.equal(trained["head.weight"], fresh.state_dict()["head.weight"])
    assert json.loads((tmp_path / "init_diagnostics.json").read_text())["frozen"] == [
        "patch_embed.proj.weight", "patch_embed.proj.bias", "cls_token"]
    with pytest.raises(ConfigError, match="matches no parameter"):
        freeze_(fresh, ["no_such_tensor*"])


def test_steps_drive_evaluation_checkpoints_and_the_schedule(tmp_path, folder_root):
    # 120 training images / batch 16 = 8 steps per epoch.
    summary = run(composed(*folder_args(folder_root, "trainer.max_steps=11", "trainer.eval_every=3",
                                        "sched.warmup_epochs=0")), run_dir=tmp_path)
    records = read_metrics(tmp_path)
    assert [(r["epoch"], r["step"]) for r in records] == [(1, 3), (1, 6), (1, 8), (2, 9), (2, 11)]
    assert summary["steps"] == 11 and summary["epochs"] == 2
    assert records[-1]["lr"] == pytest.approx(1e-5, rel=1e-3)  # the cosine reached min_lr at max_steps


@pytest.mark.parametrize("stop_after", [5, 8, 12])
def test_resume_from_a_mid_epoch_checkpoint_matches_an_uninterrupted_run(tmp_path, folder_root, monkeypatch,
                                                                        stop_after):
    args = folder_args(folder_root, "trainer.epochs=2", "init=mimetic", "aug=randaug_cutout",
                       "model.freeze=[cls_token]")
    reference = run(composed(*args), run_dir=tmp_path / "reference")

    with monkeypatch.context() as patch:
        signal_after_steps(patch, stop_after)
        with pytest.raises(StopRequested) as stop:
            run(composed(*args), run_dir=tmp_path / "resumed")
    assert stop.value.step == stop_after and stop.value.exit_code == 143
    assert not (tmp_path / "resumed" / "DONE").exists()
    resumed = run(composed(*args), run_dir=tmp_path / "resumed")

    assert without_timing(read_metrics(tmp_path / "resumed")) == without_timing(read_metrics(tmp_path / "reference"))
    assert {k: v for k, v in resumed.items() if "time" not in k and "per_s" not in k} == \
        {k: v for k, v in reference.items() if "time" not in k and "per_s" not in k}
    a = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "reference" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_crafted_checkpoint_never_runs_code(tmp_path, folder_root):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "checkpoint.pt").write_bytes(pickle.dumps({"format_version": 2, "x": Exploit()}, protocol=2))
    with pytest.raises(CheckpointError, match="corrupt or unreadable"):
        run(composed(*folder_args(folder_root, "trainer.epochs=1")), run_dir=run_dir)
    assert not marker.exists()


def test_nan_loss_stops_with_a_true_message(tmp_path, folder_root):
    with pytest.raises(TrainingError) as err:
        run(composed(*folder_args(folder_root, "trainer.epochs=2", "optim.lr=1e12", "trainer.grad_clip=0",
                                  "sched.warmup_epochs=0")), run_dir=tmp_path)
    text = str(err.value)
    assert "loss became nan" in text and "No checkpoint of this run was written yet" in text
    assert "new run" in text and "last checkpoint is intact" not in text
    assert not (tmp_path / "DONE").exists() and (tmp_path / "FAILED").exists()
    assert (tmp_path / "metrics.jsonl").read_text() == ""


def test_missing_dataset_message(tmp_path):
    with pytest.raises(DatasetError, match="scripts/prepare_data.py cifar10"):
        run(composed(*TINY, "dataset=cifar10", f"dataset.root={tmp_path / 'none'}"), run_dir=tmp_path / "run")


def test_smoke_option_runs_one_step(tmp_path, folder_root):
    summary = run(composed(*folder_args(folder_root, "trainer.smoke=true")), run_dir=tmp_path)
    assert summary["steps"] == 1 and len(read_metrics(tmp_path)) == 1


def test_wandb_offline_writes_locally(tmp_path, folder_root):
    pytest.importorskip("wandb")
    cfg = composed(*folder_args(folder_root, "trainer.epochs=1", "logger.mode=offline"))
    run(cfg, run_dir=tmp_path)
    offline = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and (tmp_path / "DONE").exists()


def _matches(got: list[dict], want: list[dict]) -> bool:
    if [r["epoch"] for r in got] != [r["epoch"] for r in want]:
        return False
    for g, w in zip(got, want):
        if any(g[k] != pytest.approx(w[k], rel=1e-5, abs=1e-9) for k in ("train_loss", "test_loss", "lr")):
            return False
        if any(g[k] != pytest.approx(w[k], abs=0.3) for k in ("train_acc", "test_acc")):  # one sample: 0.07 / 0.28 pp
            return False
    return True


def test_vit_results_do_not_move(tmp_path):
    """The harness redesigns' invariant: proxy_digits, seeds 0-1, default and mimetic, 3 epochs.

    tests/data/vit_invariant_proxy_digits.json holds the numbers the code before each redesign gave,
    one record per kind of CPU (rounding follows the vector unit); here one pair is re-run and must
    match one machine's record for both inits (to 1e-5: the same computation, not a similar one)."""
    from pathlib import Path

    data = json.loads((Path(__file__).parent / "data" / "vit_invariant_proxy_digits.json").read_text())
    got = {}
    for init in ("default", "mimetic"):
        run(composed("experiment=proxy_digits", f"init={init}", "seed=0", "trainer.epochs=3", "trainer.threads=2",
                     "trainer.progress=false", "logger.mode=disabled"), run_dir=tmp_path / init)
        got[init] = [{k: r[k] for k in ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr")}
                     for r in read_metrics(tmp_path / init)]
    matched = [record["machine"] for record in data["records"]
               if all(_matches(got[i], record["runs"][f"digits-vit_micro-{i}-s0"]) for i in got)]
    assert matched, f"no recorded machine's numbers match: {got}"


def test_a_full_disk_is_one_message_and_loses_nothing(tmp_path, folder_root, monkeypatch):
    """The epoch-2 checkpoint write hits ENOSPC: the epoch-1 checkpoint and metrics stay intact."""
    import errno
    import os

    from mimetic.errors import RunDirError

    real_fsync = os.fsync

    def fsync_then_full(fd):
        metrics = tmp_path / "metrics.jsonl"
        if metrics.exists() and metrics.read_text().strip():  # after epoch 1 is fully on disk
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    args = folder_args(folder_root, "trainer.epochs=3")
    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", fsync_then_full)
        with pytest.raises(RunDirError, match="the disk is full") as err:
            run(composed(*args), run_dir=tmp_path)
    assert "Nothing already written was lost" in str(err.value)
    assert not list(tmp_path.glob("*.tmp"))
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert len(read_metrics(tmp_path)) == state["progress"]["epoch"] - 1 >= 1
    run(composed(*args), run_dir=tmp_path)  # space is back: the same command resumes and finishes
    assert [r["epoch"] for r in read_metrics(tmp_path)] == [1, 2, 3]
