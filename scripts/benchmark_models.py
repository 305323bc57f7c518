"""Training throughput of model configs on this machine, as ratios measured in one run.

    python scripts/benchmark_models.py                       # vit_micro (width 64) vs width 96
    python scripts/benchmark_models.py --batch 512 --device cuda --models vit_tiny

Each model takes a few warm-up steps, then the median of timed forward+backward+AdamW
steps on random data is reported as images/s, with each model's speed relative to the
first one.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mimetic.models import MODELS, DataSpec, ModelOption, build_model


def model_config(spec: str) -> ModelOption:
    """``vit_micro`` or ``vit_micro:dim=96,heads=3`` (a registered model plus overrides)."""
    name, _, extra = spec.partition(":")
    options = MODELS.default_options(name)
    for item in filter(None, extra.split(",")):
        key, value = item.split("=")
        setattr(options, key, type(getattr(options, key))(value))
    return options


def images_per_second(cfg: ModelOption, batch: int, device: torch.device, steps: int, warmup: int) -> float:
    model = build_model(cfg, DataSpec("classification", num_classes=10)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(batch, 3, cfg.img_size, cfg.img_size, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    times = []
    for step in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with autocast:
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= warmup:
            times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["vit_micro", "vit_micro:dim=96,heads=3"])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    from mimetic.runtime.threads import apply_threads

    apply_threads("auto")  # the cores no other process keeps busy (OMP_NUM_THREADS wins)
    print(f"device {device}, {torch.get_num_threads()} threads, batch {args.batch}")
    results = [(spec, images_per_second(model_config(spec), args.batch, device, args.steps, args.warmup))
               for spec in args.models]
    base = results[0][1]
    for spec, speed in results:
        print(f"{spec:40s} {speed:9.1f} images/s   x{speed / base:.2f} vs {results[0][0]}")


if __name__ == "__main__":
    main()
