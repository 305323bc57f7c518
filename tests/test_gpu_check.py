"""scripts/gpu_check.py on the CPU (--dry-run): every family through the real run loop at tiny size, the report's
fields, a failing family as one line while the others run, and a family stopped at the end of its time share.
No number is checked against a speed: on the CPU the script checks plumbing, the GPU numbers come from a GPU."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import load_script


@pytest.fixture(scope="module")
def gpu_check():
    return load_script("scripts/gpu_check.py", "gpu_check_script")


@pytest.mark.slow
def test_dry_run_reports_every_family_and_check(gpu_check, tmp_path, monkeypatch):
    broken = gpu_check.Family("broken", "nothing", "python train.py model.dim=-1", ("model=vit_micro", "model.dim=-1"),
                              (), "cifar10")
    monkeypatch.setitem(gpu_check.FAMILIES, "broken", broken)
    out = tmp_path / "report" / "gpu_check.md"
    families = ["vit_tiny", "convmixer", "convnext", "gpt_small", "broken"]
    status = gpu_check.main(["--dry-run", "--families", *families, "--out", str(out), "--work-dir",
                             str(tmp_path / "work"), "--peak-tflops", "1"])
    assert status == 1  # the broken family fails the command, after the others ran

    report = json.loads(out.with_suffix(".json").read_text())
    assert report["command"].startswith("python scripts/gpu_check.py --dry-run")
    assert report["device_type"] == "cpu" and report["torch"] == torch.__version__ and report["date"]
    assert report["tiny"] is True and report["ok"] is False and report["budget_s"] == 300 and report["complete"]
    by_name = {f["name"]: f for f in report["families"]}
    assert list(by_name) == families
    for name in families[:-1]:
        f = by_name[name]
        assert f["status"] == "ok", (name, f["error"])
        assert f["steps_run"] == f["steps_planned"] == 8 and not f["stopped_by_budget"]
        assert len(f["windows"]) >= 2 and f["units_per_s"] > 0 and f["flops_per_unit"] > 0
        assert f["mfu"] == pytest.approx(f["flops_per_unit"] * f["units_per_s"] / 1e12)
        assert f["projected_s"] == pytest.approx(f["paper_units"] / f["units_per_s"])
        assert f["losses_finite"] and f["loss_decreasing"] and f["loss_last"] < f["loss_first"]
        assert "not on CUDA" in f["paths"]["precision"] and "not on CUDA" in f["paths"]["compile"]
        assert "trainer.max_steps=8" in f["overrides"] and f["init"]["init"]
    assert by_name["vit_tiny"]["unit"] == "images" and by_name["gpt_small"]["unit"] == "tokens"
    assert by_name["vit_tiny"]["paper_units"] == 100 * 50_000  # 100 epochs of CIFAR-10
    assert by_name["gpt_small"]["paper_units"] == 20_000 * 64 * 512  # the experiment's steps x batch x context
    assert by_name["gpt_small"]["vocab_size"] == 320  # the synthetic text fills the (tiny) BPE vocabulary
    assert by_name["convmixer"]["paths"]["layout"] == "channels_last"
    assert "dw_neighbour_corr_first_last" in by_name["convnext"]["init"]
    assert "qk_diag_mean" in by_name["vit_tiny"]["init"]
    bad = by_name["broken"]
    assert bad["status"] == "failed" and "model.dim" in bad["error"] and "\n" not in bad["error"]

    checks = {c["name"]: c for c in report["checks"]}
    assert len(checks) == 3 and all(c["ok"] for c in checks.values()), checks
    aug = next(c for name, c in checks.items() if name.startswith("augmentation"))
    assert aug["data"]["syncing_ops"] == [] and aug["data"]["images_per_s"] > 0
    for name in ("vit_tiny", "gpt_small"):
        init = next(c for n, c in checks.items() if n.startswith("mimetic init") and name in n)
        assert init["data"]["eigh"]["qk_max_rel"] < 1e-9 and init["data"]["mixed"]["qk_max_rel"] < 1e-5

    md = out.read_text()
    assert md.startswith("# GPU check (dry run")
    assert "| family | steps run / planned |" in md and "| check | result | detail |" in md
    for name in families:
        assert f"| {name} |" in md


@pytest.mark.slow
def test_a_family_stops_at_the_end_of_its_share(gpu_check, tmp_path, monkeypatch):
    import signal

    monkeypatch.setattr(gpu_check, "MIN_SHARE_S", 0.0)
    args = gpu_check.parse_args(["--dry-run", "--steps", "100000", "--window", "2"])
    previous = signal.signal(gpu_check.BUDGET_SIGNAL, lambda *_: None)  # as main() installs it
    try:
        result = gpu_check.run_family(gpu_check.FAMILIES["convmixer"], args, torch.device("cpu"), tmp_path, 3.0)
    finally:
        signal.signal(gpu_check.BUDGET_SIGNAL, previous)
    assert result.stopped_by_budget and 2 <= result.steps_run < 100000
    assert result.wall_s < 3.0 + 3.0  # the share, plus the step in flight, the checkpoint and the FLOP count
    assert result.status == "ok", result.error  # several windows were timed before the stop
    assert len(result.windows) >= 2 and result.units_per_s > 0
    report = {"command": "c", "date": "d", "device": "cpu", "torch": "t", "cuda": None, "git_sha": None,
              "tiny": True, "budget_s": 3, "wall_s": 3, "peak_tflops": None, "ok": True,
              "families": [gpu_check.asdict(result)], "checks": []}
    assert f"| convmixer | {result.steps_run} (budget) / 100000 |" in gpu_check.markdown(report)


def test_the_paths_reported_on_cuda_are_the_run_loops(gpu_check):
    """What the report says a family ran with on CUDA follows the rules the run loop applies (no GPU needed)."""
    from mimetic.train.config import load_config

    family = gpu_check.FAMILIES["convmixer"]
    cfg = load_config(gpu_check.compose(*family.overrides, "trainer.compile=true"))
    paths = gpu_check.describe_paths(cfg, torch.device("cuda"))
    assert paths == {"precision": "auto -> bf16 autocast", "adamw": "fused", "layout": "channels_last",
                     "compile": "torch.compile", "aug": "randaug_cutout, sync-free batched"}
    cpu = gpu_check.describe_paths(load_config(gpu_check.compose(*gpu_check.FAMILIES["gpt_small"].overrides)),
                                   torch.device("cpu"))
    assert cpu["layout"] == "contiguous (no conv)" and cpu["aug"] == "none" and "not on CUDA" in cpu["adamw"]
