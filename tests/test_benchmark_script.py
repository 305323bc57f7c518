"""scripts/benchmark.py: the throughput part's FLOP count, MFU and projection arithmetic, and the init part's
table on tiny widths (no time is checked: the script is where speed is measured)."""

from __future__ import annotations

import argparse

import pytest
import torch
from helpers import load_script


@pytest.fixture(scope="module")
def benchmark():
    return load_script("scripts/benchmark.py", "benchmark_script")


def vit_flops_per_image(dim: int, depth: int, tokens: int, patch_pixels: int, patches: int, classes: int) -> float:
    """Matmul FLOPs of forward + backward (2x forward: grads of activations and of weights) of a ViT."""
    block = tokens * (2 * 12 * dim * dim + 2 * 2 * tokens * dim)  # qkv, proj, MLP x4; scores and weighted sum
    forward = depth * block + 2 * patches * patch_pixels * dim + 2 * dim * classes
    # Backward: weight grads everywhere, input grads everywhere except the patch embedding (images need none).
    return forward + 2 * forward - 2 * patches * patch_pixels * dim


def test_throughput_counts_forward_and_backward_and_projects_the_run(benchmark, capsys):
    args = argparse.Namespace(throughput_overrides=["model=vit_micro", "trainer.epochs=7"], throughput_batch=4,
                              throughput_steps=1, throughput_warmup=1, repeats=1, peak_tflops=2.0)
    out = benchmark.bench_throughput(args, torch.device("cpu"))
    want = vit_flops_per_image(dim=64, depth=6, tokens=65, patch_pixels=48, patches=64, classes=10)
    assert out["flops_per_image"] == pytest.approx(want, rel=0.02)
    assert out["total_flops"] == pytest.approx(out["flops_per_image"] * 50_000 * 7)
    assert out["projected_s"] == pytest.approx(50_000 * 7 / out["images_per_s"])
    assert out["mfu"] == pytest.approx(out["flops_per_image"] * out["images_per_s"] / 2e12)
    printed = capsys.readouterr().out
    assert "training images/s" in printed and "projected 7 epochs of CIFAR-10" in printed


def test_peak_table_picks_the_right_gpu(benchmark, monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 PCIe")
    assert benchmark.peak_tflops(torch.device("cuda"), None) == 756.0
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    assert benchmark.peak_tflops(torch.device("cuda"), None) == 989.0
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Some New Accelerator")
    assert benchmark.peak_tflops(torch.device("cuda"), None) is None
    assert benchmark.peak_tflops(torch.device("cpu"), 3.5) == 3.5
    assert benchmark.peak_tflops(torch.device("cpu"), None) is None


def test_init_part_prints_every_solver_and_their_distances(benchmark, capsys):
    args = argparse.Namespace(dims=[128], heads=2, solvers=["svd", "eigh", "mixed", "randomized"], repeats=1,
                              reference_max_dim=2048, accuracy=True, whole_models=[], whole_solvers=["auto"])
    benchmark.bench_init(args, torch.device("cpu"))
    printed = capsys.readouterr().out
    row = next(line for line in printed.splitlines() if line.strip().startswith("128"))
    assert row.count(" s [") == 5  # timm's init + four solvers
    distances = dict(part.rsplit(" ", 1) for part in row.split("distance from float64 SVD: ")[1].split(", "))
    assert float(distances["eigh"]) < 1e-10 and float(distances["mixed"]) < 1e-5
    assert "4096" in printed  # the cost model's extrapolation
