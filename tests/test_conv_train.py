"""Whole runs with depthwise-conv models: frozen filters stay bit-identical through steps, checkpoint and
resume (a real SIGTERM mid-epoch), are never handed to the optimizer, and step-0 diagnostics are written."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers import REPO, TINY, cli, composed, read_metrics, signal_after_steps, without_timing

from mimetic.analysis.run_models import model_at_step0
from mimetic.models import DataSpec, build_model
from mimetic.runtime.signals import StopRequested
from mimetic.train.config import load_config
from mimetic.train.run import run

DW = [f"blocks.{i}.0.fn.0.weight" for i in range(2)]


def conv_args(root, *more):
    not_vit = [a for a in TINY if not a.startswith("model")]
    return [*not_vit, "dataset=image_folder", f"dataset.root={root}", "model=convmixer_micro", "model.dim=16",
            "model.depth=2", "model.kernel_size=3", *more]


@pytest.mark.parametrize("init", ["default", "dw_covariance"])
def test_frozen_filters_stay_at_their_init_and_the_rest_trains(tmp_path, folder_root, init):
    args = conv_args(folder_root, "trainer.epochs=2", f"init={init}", "model.freeze_depthwise=true")
    run(composed(*args), run_dir=tmp_path)
    trained = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["model"]
    start = model_at_step0(tmp_path).state_dict()  # same seeded streams as run.py
    for name in DW:
        assert torch.equal(trained[name], start[name]), name
    assert not torch.equal(trained["blocks.0.0.fn.0.bias"], start["blocks.0.0.fn.0.bias"])  # biases train
    assert not torch.equal(trained["head.weight"], start["head.weight"])
    diagnostics = json.loads((tmp_path / "init_diagnostics.json").read_text())
    assert diagnostics["frozen"] == DW
    assert diagnostics["depthwise"]["target"] == ("iid" if init == "default" else "dw_covariance")
    assert len(diagnostics["depthwise"]["layers"]) == 2


def test_frozen_filters_are_not_given_to_the_optimizer(folder_root):
    from mimetic.models import freeze_
    from mimetic.train.optim import build_optimizer

    cfg = load_config(composed(*conv_args(folder_root, "model.freeze_depthwise=true")))
    model = build_model(cfg.model, DataSpec("classification", num_classes=3))
    freeze_(model, cfg.model.freeze_patterns())
    optimizer = build_optimizer(model, cfg.optim)
    handed = {id(p) for group in optimizer.param_groups for p in group["params"]}
    names = {n for n, p in model.named_parameters() if id(p) in handed}
    assert not names & set(DW) and names == {n for n, _ in model.named_parameters()} - set(DW)


def test_unfrozen_filters_train(tmp_path, folder_root):
    args = conv_args(folder_root, "trainer.epochs=1", "init=dw_covariance")
    run(composed(*args), run_dir=tmp_path)
    trained = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["model"]
    assert not torch.equal(trained[DW[0]], model_at_step0(tmp_path).state_dict()[DW[0]])


@pytest.mark.parametrize("stop_after", [5, 12])
def test_frozen_filters_survive_a_mid_epoch_stop_and_resume_bit_for_bit(tmp_path, folder_root, monkeypatch,
                                                                       stop_after):
    args = conv_args(folder_root, "trainer.epochs=2", "init=dw_covariance", "model.freeze_depthwise=true",
                     "trainer.checkpoint_every=4")
    reference = run(composed(*args), run_dir=tmp_path / "reference")
    with monkeypatch.context() as patch:
        signal_after_steps(patch, stop_after)
        with pytest.raises(StopRequested):
            run(composed(*args), run_dir=tmp_path / "resumed")
    midway = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["model"]
    resumed = run(composed(*args), run_dir=tmp_path / "resumed")
    start = model_at_step0(tmp_path / "reference").state_dict()  # same seeded streams as run.py
    a = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "reference" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    for name in DW:
        assert torch.equal(midway[name], start[name]) and torch.equal(a[name], start[name])
    assert without_timing(read_metrics(tmp_path / "resumed")) == without_timing(read_metrics(tmp_path / "reference"))
    assert resumed["steps"] == reference["steps"]


def test_bad_sigma_on_the_command_line_is_one_message(tmp_path, folder_root):
    from mimetic.errors import MimeticError

    with pytest.raises(MimeticError, match="init.sigma_first must be a finite number > 0"):
        run(composed(*conv_args(folder_root, "init=dw_covariance", "init.sigma_first=0")), run_dir=tmp_path)


def _progress(run_dir):
    try:
        return torch.load(run_dir / "checkpoint.pt", weights_only=True)["progress"]
    except Exception:
        return None


@pytest.mark.slow
def test_frozen_filters_bit_identical_after_kill_9_and_resume(tmp_path, folder_root):
    """A real train.py process killed with SIGKILL mid-epoch, then resumed: the frozen filters equal
    the step-0 ones in every checkpoint, and the resumed run equals an uninterrupted one bit for bit."""
    args = conv_args(folder_root, "trainer.epochs=3", "init=dw_covariance", "model.freeze_depthwise=true",
                     "trainer.batch_size=8", "trainer.checkpoint_every=4")
    reference = tmp_path / "reference"
    done = cli(*args, f"hydra.run.dir={reference}")
    assert done.returncode == 0, done.stderr
    resumed = tmp_path / "resumed"
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, str(REPO / "train.py"), *args, f"hydra.run.dir={resumed}"], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while ((p := _progress(resumed)) is None or p["global_step"] < 4) and proc.poll() is None \
            and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert not (resumed / "DONE").exists()
    start = model_at_step0(reference).state_dict()  # same seeded streams as run.py
    midway = torch.load(resumed / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(midway[name], start[name]) for name in DW)
    again = cli(*args, f"hydra.run.dir={resumed}")
    assert again.returncode == 0, again.stderr
    a = torch.load(resumed / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(reference / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(a[name], start[name]) for name in DW)
    assert without_timing(read_metrics(resumed)) == without_timing(read_metrics(reference))
