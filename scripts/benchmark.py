"""Where users wait, measured in one run: ratios with repeats and their spread.

    nice -n 5 python scripts/benchmark.py --threads 1                      # init (d = 384, 768) + augmentation
    python scripts/benchmark.py --parts step --repeats 3                  # project epoch vs bare loop
    python scripts/benchmark.py --parts init --dims 384 768 1024 1536 2048 4096 --repeats 3
    python scripts/benchmark.py --parts aug --batch 256 --repeats 5
    python scripts/benchmark.py --parts timm --timm-train /path/to/pytorch-image-models/train.py \
        --folder data/cifar10-jpeg-6k                                     # project vs timm's train.py
    python scripts/benchmark.py --parts models                            # vit_micro (width 64) vs width 96
    python scripts/benchmark.py --parts models --models-batch 512 --device cuda --models vit_tiny
    python scripts/benchmark.py --parts stream --stream-make /tmp/inet-bench --stream-images 1500  # a tree, once
    nice -n 10 python scripts/benchmark.py --parts stream --stream-root /tmp/inet-bench --stream-seconds 30

Parts:

* ``init`` -- seconds per attention layer (timm ``Attention``, head dim 64 unless ``--heads``) for timm's
  default ViT init of the same layer (trunc-normal 0.02 on qkv/proj, zero biases) and for mimetic init with
  each solver of :mod:`mimetic.init.solvers` (``svd`` = the float64 CPU reference, ``eigh`` = exact and
  fast, ``mixed`` = float32 eigensolver refined in float64, what the default ``auto`` uses above width 512,
  ``randomized`` = approximate). Each figure is the median of ``--repeats`` runs with [min, max] (the max is
  usually the first call, which also loads LAPACK and touches fresh memory); ratios are of medians taken in
  this one process. The reference is skipped above ``--reference-max-dim`` (minutes per layer). A cost model
  ``t = c * heads * d^3`` is fitted per solver at its widest measured width and extrapolated to the others
  up to d = 4096 (marked ``~``).
* ``step`` -- training seconds of one epoch (the second: past the warm-up) of ``--step-experiment`` with
  ``aug=basic`` run by the project (loader, on-the-fly augmentation, ``train_step``, its periodic checks)
  against a bare forward/backward/step loop over the same batches augmented beforehand, and against that
  loop plus the recipe's own update math (gradient clipping, per-step lr), which the pipeline cannot avoid.
* ``aug`` -- images/s of the project's batched per-sample augmentation (``aug=randaug_cutout`` and
  ``aug=basic``) against torchvision's per-image ``v2`` pipeline with the same ops and magnitudes
  (RandomCrop(pad 4) + flip + RandAugment(2, 9) + normalise + Cutout 16), and of the project's sync-free
  (accelerator) path forced on this device.
* ``timm`` -- the project's ``train.py`` against timm's own ``train.py`` (from the timm repository, which
  the pip package does not ship: pass its path) on the same ViT (timm's ``vit_tiny_patch16_224`` class at
  width 64, depth 6, 2 heads, patch 4, 32 px), the same image folder, batch 128, AdamW, crop + flip only.
  Whole-command wall time for ``--timm-epochs`` epochs (start-up, data loading and evaluation included)
  and training images/s of the last epoch. The pipelines differ by design: timm decodes the JPEGs every
  epoch in DataLoader workers (``-j``), the project decodes the folder once and augments whole batches.

* ``throughput`` -- the paper's headline run as the config defines it (``--throughput-overrides``; default
  ViT-Tiny/2 on CIFAR-10 shapes with the train config's recipe): training images/s of ``train_step`` on random
  batches already on the device (bf16 autocast, fused AdamW, ``channels_last``, ``trainer.compile`` as the
  config sets them there), model FLOPs per image (torch's FlopCounterMode, forward + backward), the model FLOPs
  utilisation against the device's bf16 peak (datasheet table for known GPUs, or ``--peak-tflops``), and the
  projected training time of ``trainer.epochs`` epochs of 50,000 images. On a GPU:

      python scripts/benchmark.py --parts throughput                      # eager
      python scripts/benchmark.py --parts throughput --throughput-overrides trainer.compile=true

* ``models`` -- training images/s of model configs on this machine, as ratios measured in one run: each
  model (``--models``: a registered model, with overrides as ``vit_micro:dim=96,heads=3``) takes
  ``--models-warmup`` steps, then the median of ``--models-steps`` timed forward + backward + AdamW steps on
  random data of ``--models-batch`` images is reported, with each model's speed relative to the first one.
* ``stream`` -- images/s that one loader worker of ``dataset=imagenet`` decodes and augments (random-resized
  crop + flip at ``--stream-size``, uint8), run in this process on one thread, so images/s here x workers is what
  a node's loader can deliver (minus collate, small). ``--stream-root`` is an ImageNet-like tree
  (``train/<class>/``, ``val/<class>/``); ``--stream-make DIR`` first writes one: ImageNet-like JPEGs (500x375
  and similar sizes, smooth content, since natural images decode faster than noise, quality 90: ~ImageNet's
  mean file size of ~110 kB).

Timings on a machine shared with other jobs are noisy: the spread says how noisy. Nothing in the test
suite depends on a time; this script is where speed targets are checked. Bad arguments (a missing folder, an
unknown model) are one ``error: ...`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import torch
from torch import nn

# FLOP count, datasheet peaks and MFU: shared with scripts/gpu_check.py.
from mimetic.train.throughput import CIFAR10_TRAIN_IMAGES, mfu, peak_tflops, training_flops

#: head dim 64 gives ViT-Tiny/Small/Base-like head counts: d=384 -> 6, 768 -> 12, 2048 -> 32.
HEAD_DIM = 64


class BenchmarkError(Exception):
    """Bad input (a missing folder, an unknown model): one message, exit status 2."""


def timed(fn: Callable[[], object], repeats: int, sync: Callable[[], None] = lambda: None) -> list[float]:
    out = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - start)
    return out


def spread(times: list[float]) -> str:
    return f"{statistics.median(times):8.3f} s [{min(times):.3f}, {max(times):.3f}]"


# --------------------------------------------------------------------------- init
class OneLayer(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        from timm.models.vision_transformer import Attention

        self.attn = Attention(dim, num_heads=heads, qkv_bias=True)


def timm_default_init(model: nn.Module) -> None:
    from timm.layers import trunc_normal_

    for module in model.modules():
        if isinstance(module, nn.Linear):
            trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def bench_init(args, device: torch.device) -> None:
    from mimetic.init import mimetic_attention_

    print(f"\n## init: seconds per attention layer on {device} (median [min, max] of {args.repeats})")
    header = f"{'d':>5} {'heads':>5}  {'timm default':>28}"
    for s in args.solvers:
        header += f"  {'mimetic ' + s:>28}"
    if args.dims:
        print(header + "   ratios (medians)")
    measured: dict[str, list[tuple[int, int, float]]] = {s: [] for s in args.solvers}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for d in args.dims:
        heads = args.heads or max(1, d // HEAD_DIM)
        model = OneLayer(d, heads).to(device)
        base = timed(partial(timm_default_init, model), args.repeats, sync)
        row = f"{d:5d} {heads:5d}  {spread(base):>28}"
        ratios = []
        for solver in args.solvers:
            if solver == "svd" and d > args.reference_max_dim:
                row += f"  {'skipped':>28}"
                continue
            gen = torch.Generator().manual_seed(0)
            t = timed(partial(mimetic_attention_, model, generator=gen, solver=solver), args.repeats, sync)
            measured[solver].append((d, heads, statistics.median(t)))
            row += f"  {spread(t):>28}"
            ratios.append(f"{solver}/timm x{statistics.median(t) / statistics.median(base):.0f}")
        if args.accuracy:
            ratios.append(_product_distances(d, d // heads, [s for s in args.solvers if s != "svd"]))
        if "svd" in args.solvers and measured["svd"] and measured["svd"][-1][0] == d:
            ref = measured["svd"][-1][2]
            ratios += [f"svd/{s} x{ref / measured[s][-1][2]:.1f}" for s in args.solvers if s != "svd"]
        print(row + "   " + ", ".join(ratios), flush=True)

    for name in args.whole_models:  # whole timm models, as a user would call the init on them
        import timm

        from mimetic.init import find_attention_layers

        model = timm.create_model(name, pretrained=False).to(device)
        layers = len(find_attention_layers(model))
        for solver in args.whole_solvers:
            t = timed(partial(mimetic_attention_, model, generator=torch.Generator().manual_seed(0), solver=solver),
                      args.repeats, sync)
            print(f"{name} ({layers} attention layers), solver {solver}: {spread(t)} for the model, "
                  f"{statistics.median(t) / layers:.2f} s per layer", flush=True)

    if not args.dims:
        return
    print("\n### cost model t = c * heads * d^3 (c from the widest measured width; ~ = extrapolated)")
    widths = sorted({*args.dims, 384, 768, 1024, 1536, 2048, 4096})
    print(f"{'d':>5} {'heads':>5}  " + "  ".join(f"{s:>12}" for s in args.solvers))
    fitted = {}
    for s, points in measured.items():
        if points:  # the widest point: c shrinks with d while BLAS-3 work grows (read the small widths as measured)
            d, h, t = max(points)
            fitted[s] = t / (h * d**3)
    for d in widths:
        heads = args.heads or max(1, d // HEAD_DIM)
        cells = []
        for s in args.solvers:
            got = [t for dd, _, t in measured[s] if dd == d]
            if got or s in fitted:
                cells.append(f"{got[0]:11.2f}s" if got else f"~{fitted[s] * heads * d**3:10.1f}s")
            else:
                cells.append(f"{'-':>12}")
        print(f"{d:5d} {heads:5d}  " + "  ".join(cells))


def _product_distances(d: int, k: int, solvers: list[str]) -> str:
    """Relative distance of one head's product from numpy's float64 SVD of the same drawn target, per solver."""
    import numpy as np

    from mimetic.init.solvers import draw_targets, factor_batch

    target, _ = draw_targets(1, d, d, k, alpha=0.7, beta=0.7, generator=torch.Generator().manual_seed(0))
    u, s, vh = np.linalg.svd(target[0].numpy())
    best = (u[:, :k] * s[:k]) @ vh[:k]
    out = []
    for solver in solvers:
        left, right = factor_batch(target, k, solver=solver)
        product = (left @ right)[0].numpy()
        out.append(f"{solver} {np.linalg.norm(product - best) / np.linalg.norm(best):.1e}")
    return "distance from float64 SVD: " + ", ".join(out)


# --------------------------------------------------------------------------- augmentation
def torchvision_pipeline(mean: torch.Tensor, std: torch.Tensor, cutout: int):
    from torchvision.transforms import v2

    def cut(img: torch.Tensor) -> torch.Tensor:
        _, h, w = img.shape
        cy, cx = int(torch.randint(0, h, ())), int(torch.randint(0, w, ()))
        img[:, max(cy - cutout // 2, 0):max(cy - cutout // 2 + cutout, 0),
            max(cx - cutout // 2, 0):max(cx - cutout // 2 + cutout, 0)] = 0
        return img

    return v2.Compose([
        v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(), v2.RandAugment(2, 9),
        v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean.tolist(), std.tolist()), v2.Lambda(cut),
    ])


def bench_aug(args, device: torch.device) -> None:
    from mimetic.data.augment import AUGS, TrainTransform

    b = args.batch
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (b, 3, 32, 32), dtype=torch.uint8, generator=gen)
    mean, std = torch.tensor([0.49, 0.48, 0.45]), torch.tensor([0.25, 0.24, 0.26])
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    print(f"\n## augmentation: images/s, batch {b} of 3x32x32 uint8 (median [min, max] of {args.repeats})")
    tv = torchvision_pipeline(mean, std, 16)
    torch.manual_seed(0)
    rows = [("torchvision v2 per image (CPU)", timed(lambda: torch.stack([tv(img) for img in x]), args.repeats))]
    xd = x.to(device)
    for name in ("randaug_cutout", "basic"):
        t = TrainTransform(AUGS.default_options(name), mean, std)
        g = torch.Generator(device=device).manual_seed(0)
        t(xd, g)  # warm-up (caches)
        rows.append((f"project aug={name} ({device.type})", timed(partial(t, xd, g), args.repeats, sync)))
        if name == "randaug_cutout":
            t_free = TrainTransform(AUGS.default_options(name), mean, std, sync_free=True)
            t_free(xd, g)
            rows.append((f"project aug={name}, sync-free path ({device.type})",
                         timed(partial(t_free, xd, g), args.repeats, sync)))
    base = statistics.median(rows[0][1])
    for label, times in rows:
        speeds = sorted(b / t for t in times)
        print(f"{label:48s} {b / statistics.median(times):9.0f} img/s [{speeds[0]:.0f}, {speeds[-1]:.0f}]"
              f"   x{base / statistics.median(times):.1f} vs torchvision")


# --------------------------------------------------------------------------- step
def bench_step(args, device: torch.device) -> None:
    """The project's epoch (loader + on-the-fly aug + train_step + its periodic checks) vs a bare loop."""
    import tempfile
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    from mimetic.data import DataRequest, build_data
    from mimetic.models import build_model
    from mimetic.train.config import load_config
    from mimetic.train.engine import Precision
    from mimetic.train.optim import build_optimizer, build_scheduler
    from mimetic.train.run import run
    from mimetic.train.seeding import generator
    from mimetic.train.tasks import build_task

    overrides = [f"experiment={args.step_experiment}", "aug=basic", "trainer.epochs=2", "trainer.progress=false",
                 "logger.mode=disabled", f"trainer.device={device.type}", "init=mimetic"]
    configs = Path(__file__).resolve().parent.parent / "configs"
    with initialize_config_dir(config_dir=str(configs), version_base="1.3"):
        composed = compose(config_name="train", overrides=overrides)
    cfg = load_config(composed)
    t = cfg.trainer
    data = build_data(cfg.dataset, DataRequest(
        image_size=cfg.model.input_size, batch_size=t.batch_size, eval_batch_size=t.eval_batch_size,
        device=device, aug=cfg.aug, rank=0, world_size=1, max_eval_batches=None))
    task = build_task(data.task, cfg)
    precision = Precision.resolve(t.precision, device)
    batches = list(data.train.epoch(generator(cfg.seed, "data", 1, device=device)))  # pre-augmented
    units = sum(task.count(b) for b in batches)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def bare_epoch(model, optimizer, scheduler=None):
        """fwd/bwd/step; with a scheduler, also the recipe's gradient clipping and per-step lr update."""
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        for i, batch in enumerate(batches):
            with precision.autocast():
                loss, _ = task.training_loss(model, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if scheduler is not None and t.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, t.grad_clip)
            optimizer.step()
            if scheduler is not None:
                scheduler.step_update(num_updates=i + 1)

    print(f"\n## step: one epoch of {args.step_experiment} with aug=basic, {len(batches)} steps of "
          f"{t.batch_size} on {device} (training time only; median [min, max] of {args.repeats})")
    project, bare, recipe = [], [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            run(composed, run_dir=tmp)
            lines = (Path(tmp) / "metrics.jsonl").read_text().splitlines()
            second = [__import__("json").loads(line) for line in lines][1]  # epoch 2: past the warm-up
            project.append(units / second[f"{task.unit}_per_s"])
        for with_recipe, out in ((False, bare), (True, recipe)):
            torch.manual_seed(0)
            model = build_model(cfg.model, data.spec).to(device)
            optimizer = build_optimizer(model, cfg.optim)
            scheduler = build_scheduler(optimizer, cfg.sched, total_steps=2 * len(batches),
                                        steps_per_epoch=len(batches)) if with_recipe else None
            bare_epoch(model, optimizer, scheduler)  # warm-up epoch, as the project's first
            out += timed(partial(bare_epoch, model, optimizer, scheduler), 1, sync)
    print(f"{'project epoch (loader + aug + train_step)':52s} {spread(project)}")
    print(f"{'bare loop over the same pre-augmented batches':52s} {spread(bare)}")
    print(f"{'bare loop + the recipe (grad clip, lr per step)':52s} {spread(recipe)}")
    for name, base in (("bare", bare), ("bare + recipe", recipe)):
        ratios = sorted(p / b for p, b in zip(project, base))
        print(f"project / {name}: x{statistics.median(project) / statistics.median(base):.3f} "
              f"(per-repeat ratios {', '.join(f'{r:.3f}' for r in ratios)})")


# --------------------------------------------------------------------------- throughput of the paper's run
def bench_throughput(args, device: torch.device) -> dict:
    """Images/s of the paper's headline run (default: ViT-Tiny/2 on CIFAR-10 shapes, the train config's recipe),
    its model FLOPs per image (forward + backward, counted by torch's FlopCounterMode), the model FLOPs
    utilisation against the device's peak, and the projected time of ``trainer.epochs`` epochs of CIFAR-10.

    Batches are random tensors of the training shape already on the device: this measures the step (bf16
    autocast, fused AdamW, ``channels_last``, ``trainer.compile`` as the config sets them on that device), not
    the loader."""
    from hydra import compose, initialize_config_dir

    from mimetic.models import build_model
    from mimetic.models.base import DataSpec
    from mimetic.train.config import load_config
    from mimetic.train.engine import Precision, train_step
    from mimetic.train.optim import build_optimizer, build_scheduler
    from mimetic.train.tasks import build_task

    overrides = ["logger.mode=disabled", f"trainer.device={device.type}", *args.throughput_overrides]
    configs = Path(__file__).resolve().parent.parent / "configs"
    with initialize_config_dir(config_dir=str(configs), version_base="1.3"):
        cfg = load_config(compose(config_name="train", overrides=overrides))
    t = cfg.trainer
    batch_size = args.throughput_batch or t.batch_size
    spec = DataSpec("classification", num_classes=10, image_size=cfg.model.input_size)
    task = build_task("classification", cfg)
    torch.manual_seed(0)
    model = build_model(cfg.model, spec).to(device, memory_format=cfg.model.memory_format(device))
    optimizer = build_optimizer(model, cfg.optim)
    steps_per_epoch = CIFAR10_TRAIN_IMAGES // t.batch_size
    scheduler = build_scheduler(optimizer, cfg.sched, total_steps=t.epochs * steps_per_epoch,
                                steps_per_epoch=steps_per_epoch)
    precision = Precision.resolve(t.precision, device)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.needs_scaler)
    size = cfg.model.input_size
    x = torch.randn(batch_size, 3, size, size, device=device)
    batch = (x.contiguous(memory_format=cfg.model.memory_format(device)), torch.randint(0, 10, (batch_size,),
                                                                                        device=device))
    flops_per_image = training_flops(model, task, batch, precision) / batch_size  # eager, SDPA's math backend
    train_model = torch.compile(model) if t.compile else model
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def steps(n: int) -> None:
        for i in range(n):
            train_step(train_model, batch, task, optimizer, scheduler, scaler, precision=precision,
                       grad_clip=t.grad_clip, num_updates=i + 1)

    steps(args.throughput_warmup)  # compile, autotune, allocator warm-up
    rates = [batch_size * args.throughput_steps / s for s in timed(partial(steps, args.throughput_steps),
                                                                 args.repeats, sync)]
    rate = statistics.median(rates)
    peak = peak_tflops(device, args.peak_tflops)
    total = flops_per_image * CIFAR10_TRAIN_IMAGES * t.epochs
    out = {"images_per_s": rate, "flops_per_image": flops_per_image, "total_flops": total,
           "projected_s": CIFAR10_TRAIN_IMAGES * t.epochs / rate,
           "mfu": mfu(flops_per_image, rate, peak)}
    print(f"\n## throughput: {cfg.model.name}, batch {batch_size}, precision {t.precision} -> "
          f"{precision.dtype or 'fp32'}, compile={t.compile}, on {device} ({args.throughput_steps} steps, "
          f"median [min, max] of {args.repeats})")
    print(f"training images/s                  {rate:10.1f} [{min(rates):.1f}, {max(rates):.1f}]")
    print(f"model FLOPs per image (fwd + bwd)  {flops_per_image / 1e9:10.2f} GFLOP")
    print("model FLOPs utilisation            " + (f"{100 * out['mfu']:10.1f} % of {peak:.0f} TFLOP/s" if peak else
                                                  "       n/a (pass --peak-tflops for this device)"))
    print(f"projected {t.epochs} epochs of CIFAR-10   {out['projected_s'] / 60:10.1f} min of training "
          f"({total / 1e15:.1f} PFLOP; evaluation and data loading not included)")
    return out


# --------------------------------------------------------------------------- project vs timm's train.py
TIMM_VIT = {"img_size": 32, "patch_size": 4, "embed_dim": 64, "depth": 6, "num_heads": 2}


def _rates(log: str) -> list[float]:
    """Training images/s of each logged interval from timm train.py (``Time: 0.123s, 1040.00/s  (...)``)."""
    import re

    return [float(m) for line in log.splitlines() if "Train:" in line
            for m in re.findall(r"Time: [0-9.]+s,\s*([0-9.]+)/s", line)[:1]]


def bench_timm(args, device: torch.device) -> None:
    import json
    import subprocess
    import tempfile

    if not args.timm_train or not Path(args.timm_train).is_file():
        raise BenchmarkError("--parts timm needs --timm-train /path/to/pytorch-image-models/train.py (timm's "
                             "repository; the pip package does not ship it)")
    folder, epochs, batch = Path(args.folder).resolve(), args.timm_epochs, 128
    repo = Path(__file__).resolve().parent.parent
    threads = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()), "WANDB_MODE": "disabled"}
    print(f"\n## project train.py vs timm train.py: ViT {TIMM_VIT}, {folder.name}, batch {batch}, {epochs} epochs, "
          f"{device} (median [min, max] of {args.repeats})")
    walls: dict[str, list[float]] = {"project": [], "timm": []}
    rates: dict[str, list[float]] = {"project": [], "timm": []}
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            ours = [sys.executable, str(repo / "train.py"), "model=timm", "model.arch=vit_tiny_patch16_224",
                    *[f"+model.kwargs.{k}={v}" for k, v in TIMM_VIT.items()], "dataset=image_folder",
                    f"dataset.root={folder}", "aug=basic", f"trainer.epochs={epochs}", f"trainer.batch_size={batch}",
                    f"trainer.device={device.type}", f"paths.runs_dir={tmp}/runs", "logger.mode=disabled",
                    "trainer.progress=false", "optim.lr=1e-3", "sched.warmup_epochs=0"]
            start = time.perf_counter()
            subprocess.run(ours, check=True, capture_output=True, env=threads, cwd=tmp)
            walls["project"].append(time.perf_counter() - start)
            metrics = next(Path(tmp, "runs").glob("*/metrics.jsonl")).read_text().splitlines()
            rates["project"].append(json.loads(metrics[-1])["images_per_s"])
            theirs = [sys.executable, str(args.timm_train), str(folder), "--train-split", "train", "--val-split",
                      "test", "--model", "vit_tiny_patch16_224", "--model-kwargs",
                      *[f"{k}={v}" for k, v in TIMM_VIT.items()], "--num-classes", "10",
                      "--input-size", "3", "32", "32", "-b", str(batch), "--epochs", str(epochs), "--opt", "adamw",
                      "--lr", "1e-3", "--sched", "cosine", "--warmup-epochs", "0", "--scale", "1", "1", "--ratio",
                      "1", "1", "--hflip", "0.5", "--color-jitter", "0", "--device", device.type, "-j",
                      str(args.timm_workers), "--output", f"{tmp}/timm", "--log-interval", "5"]
            start = time.perf_counter()
            done = subprocess.run(theirs, check=True, capture_output=True, text=True, env=threads, cwd=tmp)
            walls["timm"].append(time.perf_counter() - start)
            steps = _rates(done.stdout + done.stderr)
            last_epoch = steps[-max(1, len(steps) // epochs):]  # the last epoch's logged rates
            rates["timm"].append(statistics.median(last_epoch) if last_epoch else math.nan)
    for name in ("project", "timm"):
        print(f"{name + ' train.py, whole command':44s} {spread(walls[name])}")
        r = rates[name]
        print(f"{name + ' train.py, training images/s (last epoch)':44s} {statistics.median(r):8.0f} "
              f"[{min(r):.0f}, {max(r):.0f}]")
    print(f"wall time project / timm: x{statistics.median(walls['project']) / statistics.median(walls['timm']):.3f}; "
          f"images/s project / timm: x{statistics.median(rates['project']) / statistics.median(rates['timm']):.3f} "
          f"(timm with -j {args.timm_workers} loader workers)")


# --------------------------------------------------------------------------- models
def model_config(spec: str):
    """``vit_micro`` or ``vit_micro:dim=96,heads=3`` (a registered model plus overrides)."""
    from mimetic.errors import MimeticError
    from mimetic.models import MODELS

    name, _, extra = spec.partition(":")
    try:
        options = MODELS.default_options(name)
        for item in filter(None, extra.split(",")):
            key, value = item.split("=")
            setattr(options, key, type(getattr(options, key))(value))
    except (MimeticError, KeyError, ValueError, AttributeError) as err:
        raise BenchmarkError(f"--models {spec}: {err}; give a registered model (python train.py --help lists them), "
                             "with overrides as vit_micro:dim=96,heads=3") from None
    return options


def model_images_per_second(cfg, batch: int, device: torch.device, steps: int, warmup: int) -> float:
    from mimetic.models import DataSpec, build_model

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


def bench_models(args, device: torch.device) -> list[tuple[str, float]]:
    configs = [(spec, model_config(spec)) for spec in args.models]  # every spec checked before any is timed
    print(f"\n## models: training images/s (forward + backward + AdamW, random data), batch {args.models_batch} on "
          f"{device}, {torch.get_num_threads()} threads (median of {args.models_steps} steps after "
          f"{args.models_warmup} warm-up)")
    results = [(spec, model_images_per_second(cfg, args.models_batch, device, args.models_steps, args.models_warmup))
               for spec, cfg in configs]
    base = results[0][1]
    for spec, speed in results:
        print(f"{spec:40s} {speed:9.1f} images/s   x{speed / base:.2f} vs {results[0][0]}")
    return results


# --------------------------------------------------------------------------- stream
def make_stream_tree(root: Path, images: int, classes: int = 10, seed: int = 0) -> None:
    """An ImageNet-like tree of JPEGs (``train/<class>/``, ``val/<class>/``) that the imagenet loader reads."""
    import numpy as np
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(seed)
    sizes = [(500, 375), (500, 333), (375, 500), (640, 480), (500, 400)]
    for i in range(images):
        w, h = sizes[i % len(sizes)]
        low = rng.integers(0, 256, size=(h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
        img = Image.fromarray(low).resize((w, h), Image.BICUBIC)
        detail = rng.normal(0, 12, size=(h, w, 3))
        img = Image.fromarray(np.clip(np.asarray(img) + detail, 0, 255).astype(np.uint8))
        img = img.filter(ImageFilter.GaussianBlur(0.6))
        # val/: the first image of every class, then every 11th round of classes, so that val/ has the class
        # folders train/ has (the imagenet loader refuses splits with different classes), whatever --stream-images
        in_val = (i // classes) % 11 == 0
        for split in ("train", "val") if in_val else ("train",):
            folder = root / split / f"n{i % classes:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            img.save(folder / f"img_{i}.JPEG", quality=90)


def bench_stream(args, device: torch.device) -> float | None:
    """Writes the tree (``--stream-make``), then measures one worker on ``--stream-root``; images/s or None."""
    if args.stream_make is not None:
        try:
            make_stream_tree(args.stream_make, args.stream_images)
        except OSError as err:
            raise BenchmarkError(f"cannot write the tree in {args.stream_make} ({err.strerror or err}); give "
                                 "--stream-make a writable folder") from None
        sizes = [f.stat().st_size for f in args.stream_make.rglob("*.JPEG")]
        print(f"\n## stream: wrote {len(sizes)} JPEGs to {args.stream_make}, "
              f"mean {sum(sizes) / len(sizes) / 1e3:.0f} kB")
    if args.stream_root is None:
        return None
    from mimetic.data import DataRequest, build_data
    from mimetic.data.imagenet import ImageNet

    workers, threads = os.environ.get("MIMETIC_DATA_WORKERS"), torch.get_num_threads()
    os.environ["MIMETIC_DATA_WORKERS"] = "0"  # this process is the worker
    torch.set_num_threads(1)
    try:
        data = build_data(ImageNet(name="imagenet", root=str(args.stream_root)), DataRequest(
            image_size=args.stream_size, batch_size=1, eval_batch_size=1, device=torch.device("cpu")))
        samples = data.train.dataset
        order, seeds = data.train.plan(torch.Generator().manual_seed(0))
        start, n = time.perf_counter(), 0
        while time.perf_counter() - start < args.stream_seconds:
            i = int(order[n % len(order)])
            image, _ = samples[(i, int(seeds[i]))]
            assert tuple(image.shape) == (3, args.stream_size, args.stream_size), image.shape
            n += 1
        rate = n / (time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
        if workers is None:
            os.environ.pop("MIMETIC_DATA_WORKERS", None)
        else:
            os.environ["MIMETIC_DATA_WORKERS"] = workers
    print(f"\n## stream: {rate:.0f} images/s per worker ({n} images in {args.stream_seconds:.0f} s, one core, "
          f"{args.stream_size} px, random-resized crop + flip, uint8)")
    return rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", default=["init", "aug"],
                        choices=["init", "aug", "step", "timm", "throughput", "models", "stream"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dims", nargs="*", type=int, default=[384, 768], help="init part: layer widths (none: skip)")
    parser.add_argument("--heads", type=int, default=None, help=f"heads per layer (default d / {HEAD_DIM})")
    parser.add_argument("--solvers", nargs="+", default=["svd", "eigh", "mixed", "randomized"])
    parser.add_argument("--whole-models", nargs="*", default=[],
                        help="init part: also time whole timm models (e.g. vit_base_patch16_224), random weights")
    parser.add_argument("--whole-solvers", nargs="+", default=["auto"], help="solvers for --whole-models")
    parser.add_argument("--accuracy", action="store_true",
                        help="init part: also print each solver's distance from numpy's float64 SVD (one head)")
    parser.add_argument("--reference-max-dim", type=int, default=2048,
                        help="skip the svd reference above this width (extrapolated instead)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--step-experiment", default="proxy_digits", help="experiment config for the step part")
    parser.add_argument("--throughput-overrides", nargs="*", default=[],
                        help="config overrides for the throughput part (default: the paper's ViT-Tiny/2 recipe)")
    parser.add_argument("--throughput-batch", type=int, default=None, help="batch size (default: the config's)")
    parser.add_argument("--throughput-steps", type=int, default=20)
    parser.add_argument("--throughput-warmup", type=int, default=5)
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's peak for the MFU (default: datasheet bf16 peak of known GPUs)")
    parser.add_argument("--timm-train", default=None, help="timm's train.py (from the timm repository)")
    parser.add_argument("--folder", default="data/cifar10-jpeg-6k", help="image folder for the timm part")
    parser.add_argument("--timm-epochs", type=int, default=2)
    parser.add_argument("--timm-workers", type=int, default=1, help="timm train.py's -j")
    parser.add_argument("--models", nargs="+", default=["vit_micro", "vit_micro:dim=96,heads=3"],
                        help="models part: registered models, with overrides as vit_micro:dim=96,heads=3")
    parser.add_argument("--models-batch", type=int, default=128)
    parser.add_argument("--models-steps", type=int, default=5)
    parser.add_argument("--models-warmup", type=int, default=2)
    parser.add_argument("--stream-root", type=Path, default=None,
                        help="stream part: an ImageNet-like tree to read (train/<class>/, val/<class>/)")
    parser.add_argument("--stream-make", type=Path, default=None, help="stream part: write such a tree here first")
    parser.add_argument("--stream-images", type=int, default=1500, help="images --stream-make writes")
    parser.add_argument("--stream-seconds", type=float, default=30.0)
    parser.add_argument("--stream-size", type=int, default=224)
    parser.add_argument("--threads", default="auto",
                        help="CPU threads for torch and BLAS/LAPACK: auto (the trainer's choice: the cores no other "
                             "process keeps busy) or N (1 gives steadier figures on a shared machine)")
    args = parser.parse_args(argv)
    if "stream" in args.parts and args.stream_root is None and args.stream_make is None:
        parser.error("--parts stream: give the tree to read (--stream-root ROOT), or --stream-make DIR to write one "
                     "first")
    if "stream" not in args.parts and (args.stream_root is not None or args.stream_make is not None):
        parser.error("--stream-root and --stream-make are the stream part's: add --parts stream")
    if args.stream_images < 1 or args.stream_seconds <= 0 or args.stream_size < 1:
        parser.error("--stream-images, --stream-seconds and --stream-size must be > 0")
    if args.models_batch < 1 or args.models_steps < 1 or args.models_warmup < 0:
        parser.error("--models-batch and --models-steps must be > 0, --models-warmup >= 0")
    device = torch.device(args.device)
    from mimetic.runtime.threads import choose_threads

    args.threads = choose_threads(args.threads).threads
    if args.threads:
        import scipy.linalg  # noqa: F401  (load its BLAS first, so that the limit below reaches it)
        import threadpoolctl

        torch.set_num_threads(args.threads)
        threadpoolctl.threadpool_limits(args.threads)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"# benchmark {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC: {device} ({name}), torch {torch.__version__},"
          f" {torch.get_num_threads()} threads, load average {', '.join(f'{v:.1f}' for v in _load())}")
    from mimetic.errors import MimeticError

    parts = {"init": bench_init, "aug": bench_aug, "step": bench_step, "timm": bench_timm,
             "throughput": bench_throughput, "models": bench_models, "stream": bench_stream}
    try:
        for name, part in parts.items():
            if name in args.parts:
                part(args, device)
    except (BenchmarkError, MimeticError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"\nload average at the end: {', '.join(f'{v:.1f}' for v in _load())}")
    return 0


def _load() -> tuple[float, ...]:
    try:
        return os.getloadavg()
    except OSError:
        return (math.nan,)


if __name__ == "__main__":
    sys.exit(main())
