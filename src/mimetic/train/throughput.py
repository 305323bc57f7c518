"""Model FLOPs, device peaks and model FLOPs utilisation (MFU), shared by ``scripts/benchmark.py`` and
``scripts/gpu_check.py``.

MFU is the model's own FLOPs per training step (forward + backward, counted once per unit of throughput)
times the measured units per second, over the device's dense bf16 peak. It does not count recomputation,
the optimizer or evaluation.
"""

from __future__ import annotations

from typing import Any

import torch

#: Dense bf16 tensor-core peaks from the vendors' datasheets (TFLOP/s), matched against the device name in
#: this order (the first key the name contains wins: "H100 PCIe" before "H100").
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0,
                    "RTX 4090": 165.0}
#: Training images of CIFAR-10 (and CIFAR-100): the unit count of one epoch of the paper's image runs.
CIFAR10_TRAIN_IMAGES = 50_000


def peak_tflops(device: torch.device, given: float | None = None) -> float | None:
    """``given`` (e.g. ``--peak-tflops``), else the datasheet bf16 peak of a known GPU, else None (no MFU)."""
    if given:
        return given
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_TFLOPS.items() if key in name), None)


def training_flops(model: torch.nn.Module, task: Any, batch: Any, precision: Any) -> float:
    """FLOPs of one forward + backward of ``model`` on ``batch`` through ``task.training_loss``, counted by
    torch's FlopCounterMode under ``precision``'s autocast. The model's gradients are cleared afterwards.

    Eager, with attention through SDPA's math backend: its matmuls are what the counter sees on every device
    (fused attention kernels have no FLOP formula on every device and would count as zero). Divide by
    ``task.count(batch)`` for FLOPs per image or per token.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH):
        with precision.autocast():
            loss, _ = task.training_loss(model, batch)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def mfu(flops_per_unit: float, units_per_s: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation (a fraction) against ``peak`` TFLOP/s; None without a peak."""
    return flops_per_unit * units_per_s / (peak * 1e12) if peak else None
