"""The first thing to run on a lent GPU: every model family through the real CUDA paths, in under 8 minutes.

    python scripts/gpu_check.py                    # one GPU: results/gpu_check.md and results/gpu_check.json
    python scripts/gpu_check.py --dry-run          # CPU, tiny models, a few steps: the same code path (~15 s)
    python scripts/gpu_check.py --families vit_tiny gpt_small --budget-s 200

Each family (ViT-Tiny/2, ConvMixer-256/8, ConvNeXt ``convnext_cifar``, ``gpt_small``) is trained a few hundred
steps by the project's own run loop (``mimetic.train.run.run``, what ``python train.py`` runs) with its paper
run's config (``configs/experiment/``) plus ``trainer.max_steps``, ``trainer.compile=true`` and the device: bf16
autocast (``trainer.precision=auto``), fused AdamW, ``channels_last`` for the conv nets and the sync-free batched
augmentation (``aug=randaug_cutout``) are what that config does on CUDA. No dataset is needed: a synthetic
CIFAR-shaped set (learnable uint8 images, in the real pickle format, ``tests/fake_data.py``'s writer) and
synthetic text in WikiText's three-file layout (random words, so the 16,384-token BPE fills its vocabulary)
are written to a temporary folder and read by the real readers. Per family it reports:

* training throughput (images/s or tokens/s) from the run's ``metrics.jsonl``, over the windows after the first
  (which holds compilation and warm-up); a window is one epoch of the synthetic set (``--window`` steps), so
  every window ends on the loop's own host sync and its time is the GPU's;
* MFU: model FLOPs per unit (forward + backward, torch's FlopCounterMode, the code ``scripts/benchmark.py``
  uses, in ``mimetic.train.throughput``) x units/s over the GPU's datasheet bf16 peak (``--peak-tflops``
  otherwise);
* the projected training time of the paper run (ViT-Tiny: 100 epochs of CIFAR-10, ``python train.py
  init=mimetic dataset=cifar10``; ConvMixer and ConvNeXt: their experiments' 100 epochs; GPT: 20,000 steps of
  64 x 512 tokens), training only (no evaluation, loading or start-up);
* that the training loss stayed finite and went down, and the step-0 init diagnostics the run wrote.

Two checks run first: mimetic init factorised on the device (``init.solver=eigh`` and ``mixed``, batched
``torch.linalg.eigh`` there) gives the QK / VO products of the CPU reference (``svd`` up to width 512,
``eigh`` above: exact to 1e-14 of it), measured through the layers' forward (``attention_products``); and
the device-side augmentation dispatches no syncing op (``mimetic.data.host_syncs``, as
``tests/test_augment_sync.py`` checks) and, on CUDA, runs under ``torch.cuda.set_sync_debug_mode("error")``.

Time: ``--budget-s`` (default 420 s, from the start) is shared among the families still to run (what one
leaves is the next one's); a family still training at the end of its share stops at the next step, as a run
does on SLURM's time-limit signal (SIGUSR2), and the steps it ran are recorded. A family that fails is one
line in the report and the others still run; the exit status is 1 if any family or check failed.

``--dry-run`` (= ``--device cpu --tiny`` with a few steps, written to ``runs/gpu_check_dry_run.*``) runs the
same code on CPU-sized models: bf16, compile and fused AdamW are CUDA paths and are reported "not on CUDA".
Needs the project installed (``pip install -e .``: hydra-core and omegaconf; wandb is not imported).
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import logging
import math
import os
import platform
import shlex
import signal
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

START = time.monotonic()

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.append(str(REPO / "tests"))  # fake_data.py: the CIFAR pickle writer the tests use
try:
    import mimetic  # noqa: F401
except ImportError:  # a checkout that is not pip-installed (a bare GPU image): the package from src/
    sys.path.insert(0, str(REPO / "src"))

log = logging.getLogger("gpu_check")

#: Signal a family gets at the end of its share of the budget: the run loop stops at the next step boundary
#: (checkpoint written), as on SLURM's time-limit warning.
BUDGET_SIGNAL = signal.SIGUSR2
#: Seconds kept for writing the report after the last family.
RESERVE_S = 10.0
#: A family with less of its share left than this once its data is written is not started (a failure).
MIN_SHARE_S = 5.0
#: Relative distance of the device's products from the CPU reference's, per solver, above which the check fails
#: (eigh is exact: ~1e-13 measured on the CPU; mixed: ~1e-6, tests/test_init_scale.py checks 1e-5).
INIT_TOLERANCE = {"eigh": 1e-9, "mixed": 1e-5}
CIFAR_TEST_IMAGES = {False: 1000, True: 32}  # by --tiny
#: Byte-level BPE tokens per word of the synthetic text (measured on this generator; a first guess, corrected).
TOKENS_PER_WORD = {16384: 1.32, 320: 4.4}


@dataclass(frozen=True)
class Family:
    name: str
    paper_run: str  # what the projection is for
    command: str  # the paper run's command
    overrides: tuple[str, ...]  # the paper run's config, as that command composes it
    tiny: tuple[str, ...]  # --tiny: the same family at CPU size
    data: str  # "cifar10" | "wikitext"
    attention: bool = False  # mimetic init's device solver is checked on it


FAMILIES = {f.name: f for f in (
    Family("vit_tiny", "ViT-Tiny/2, CIFAR-10, 100 epochs", "python train.py init=mimetic dataset=cifar10",
           ("init=mimetic", "dataset=cifar10"),
           ("model.dim=32", "model.depth=2", "model.heads=2", "model.patch_size=8", "trainer.batch_size=20",
            "trainer.eval_batch_size=64"), "cifar10", attention=True),
    Family("convmixer", "ConvMixer-256/8, CIFAR-10, 100 epochs",
           "python train.py experiment=convmixer_256_8_cifar10 init=dw_covariance",
           ("experiment=convmixer_256_8_cifar10", "init=dw_covariance"),
           ("model.dim=32", "model.depth=2", "model.patch_size=4", "trainer.batch_size=20",
            "trainer.eval_batch_size=64"), "cifar10"),
    Family("convnext", "ConvNeXt (convnext_cifar), CIFAR-10, 100 epochs",
           "python train.py experiment=convnext_cifar10 init=dw_covariance",
           ("experiment=convnext_cifar10", "init=dw_covariance"),
           ("model.depths=[1,1,1,1]", "model.dims=[16,32,64,128]", "trainer.batch_size=20",
            "trainer.eval_batch_size=64"), "cifar10"),
    Family("gpt_small", "gpt_small, WikiText-103, 20,000 steps x 64 x 512 tokens",
           "python train.py experiment=gpt_wikitext103 init=mimetic",
           ("experiment=gpt_wikitext103", "init=mimetic"),
           ("model.dim=64", "model.depth=2", "model.heads=2", "model.block_size=32", "dataset.seq_len=32",
            "dataset.vocab_size=320",
            "trainer.batch_size=4", "trainer.eval_batch_size=8"), "wikitext", attention=True),
)}


# ----------------------------------------------------------------------------- results
@dataclass
class FamilyResult:
    name: str
    paper_run: str
    command: str
    overrides: list[str]
    status: str = "failed"  # ok | failed
    error: str | None = None
    steps_planned: int = 0
    steps_run: int = 0
    stopped_by_budget: bool = False
    time_share_s: float = 0.0
    wall_s: float = 0.0
    unit: str = ""
    windows: list[dict] = field(default_factory=list)  # per evaluation: step, units/s, train loss
    units_per_s: float | None = None  # over the windows after the first
    units_per_s_range: list[float] | None = None
    flops_per_unit: float | None = None
    mfu: float | None = None
    paper_units: float | None = None
    projected_s: float | None = None
    params: int | None = None
    vocab_size: int | None = None
    loss_first: float | None = None
    loss_last: float | None = None
    losses_finite: bool | None = None
    loss_decreasing: bool | None = None
    paths: dict = field(default_factory=dict)
    init: dict = field(default_factory=dict)
    peak_memory_gib: float | None = None


@dataclass
class CheckResult:
    name: str
    ok: bool = False
    detail: str = ""
    data: dict = field(default_factory=dict)


def one_line(err: BaseException, limit: int = 300) -> str:
    """``Type: message`` on one line (a multi-line message joined), at most ``limit`` characters."""
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    line = f"{type(err).__name__}: {text}"
    return line if len(line) <= limit else line[:limit - 1] + "…"


# ----------------------------------------------------------------------------- config
def compose(*overrides: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from mimetic.cli import register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return hydra_compose(config_name="train", overrides=list(overrides))


def family_overrides(family: Family, args) -> list[str]:
    """The paper run's config, at CPU size with --tiny."""
    return [*family.overrides, *(family.tiny if args.tiny else ())]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    from mimetic.runtime.environment import describe_device

    return describe_device(device)


# ----------------------------------------------------------------------------- synthetic data
def write_cifar(root: Path, train: int, test: int) -> Path:
    """A CIFAR-10 of ``train`` learnable images (a multiple of 5: five equal pickles) in the real format."""
    from fake_data import write_cifar10

    if not (root / "cifar-10-batches-py" / "batches.meta").is_file():
        write_cifar10(root, per_batch=train // 5, test=test)
    return root


def write_text(root: Path, words: int, seed: int = 0) -> Path:
    """WikiText's three files: articles of random words drawn Zipf-like from 60,000 made-up word types.

    Enough distinct words that a 16,384-token BPE fills its vocabulary, so the GPT's embedding and output layer
    have the paper run's size. Valid and test are short (the evaluation each window is not what is measured).
    """
    rng = np.random.default_rng(seed)
    letters = np.array(list("etaoinshrdlcumwfgypbvkjxqz"))
    weights = 1.0 / np.arange(1, len(letters) + 1)
    types = 60_000
    ends = np.cumsum(rng.integers(2, 11, types))
    chars = "".join(rng.choice(letters, ends[-1], p=weights / weights.sum()))
    vocab = np.array([chars[a:b] for a, b in zip(np.r_[0, ends[:-1]], ends)], dtype=object)
    zipf = 1.0 / np.arange(1, types + 1)
    zipf /= zipf.sum()
    root.mkdir(parents=True, exist_ok=True)
    for name, count in (("wiki.train.tokens", words), ("wiki.valid.tokens", max(words // 200, 400)),
                        ("wiki.test.tokens", max(words // 200, 400))):
        drawn = vocab[rng.choice(types, count, p=zipf)]
        lines = [f" \n = Article {name} = \n \n"]
        for start in range(0, count, 80):  # paragraphs of 80 words
            lines.append(" " + " ".join(drawn[start:start + 80]) + " . \n \n")
        (root / name).write_text("".join(lines), encoding="utf-8")
    return root


def data_overrides(family: Family, cfg, args, work: Path) -> list[str]:
    """Write (once) the synthetic data this family reads, sized so that one epoch is about ``--window`` steps."""
    t = cfg.trainer
    if family.data == "cifar10":
        # Whole batches only (the loader keeps a short last batch, which torch.compile would compile again), in
        # CIFAR's five equal train pickles: the epoch is the first step count >= --window that divides evenly.
        steps = next(w for w in range(args.window, args.window + 5) if w * t.batch_size % 5 == 0)
        root = write_cifar(work / "data" / f"cifar10-b{t.batch_size}-w{steps}", steps * t.batch_size,
                           CIFAR_TEST_IMAGES[args.tiny])
        return [f"dataset.root={root}", "dataset.verify_checksums=false"]
    return [f"dataset.root={write_wikitext(cfg.dataset, t.batch_size, args.window, work)}"]


def write_wikitext(options, batch_size: int, window: int, work: Path) -> Path:
    """Synthetic text whose train split is ``window`` steps of windows: written, then tokenised by the project's
    own tokenizer and token cache (which the run then reuses), and written again at a corrected length if the
    epoch is more than 25 % off."""
    from dataclasses import replace

    from mimetic.data.wikitext import load_split, load_tokenizer

    want = window * batch_size * options.seq_len + 1
    words = max(50, math.ceil(want / TOKENS_PER_WORD.get(options.vocab_size, 1.3)))
    for _ in range(3):
        root = work / "data" / f"wikitext-v{options.vocab_size}-{words}"
        if not (root / "wiki.test.tokens").is_file():
            write_text(root, words)
        here = replace(options, root=str(root))
        tokenizer, tag = load_tokenizer(here)
        tokens = len(load_split(here, "train", tokenizer, tag).tokens)
        steps = (tokens - 1) // options.seq_len // batch_size
        if 0.8 * window <= steps <= 1.25 * window:
            break
        words = max(50, math.ceil(words * want / tokens * 1.01))
    return root


# ----------------------------------------------------------------------------- the budget
class Budget:
    """The whole command's time: each family gets the rest divided among the families still to run."""

    def __init__(self, seconds: float):
        self.end = START + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def share(self, families_left: int) -> float:
        return max(0.0, self.left() - RESERVE_S) / max(families_left, 1)


class StopAt:
    """Send this process ``BUDGET_SIGNAL`` after ``seconds`` (the run loop stops at its next step)."""

    def __init__(self, seconds: float):
        self.timer = threading.Timer(max(seconds, 0.0), os.kill, (os.getpid(), BUDGET_SIGNAL))
        self.timer.daemon = True

    def __enter__(self):
        self.timer.start()
        return self

    def __exit__(self, *exc):
        self.timer.cancel()
        return False


# ----------------------------------------------------------------------------- checks before the families
def check_init_on_device(family: Family, args, device: torch.device) -> CheckResult:
    """Mimetic init factorised on ``device`` (eigh, mixed) against the CPU reference, product by product."""
    from mimetic.init import apply_init, attention_products
    from mimetic.init.solvers import AUTO_REFERENCE_MAX_WIDTH
    from mimetic.models import build_model
    from mimetic.models.base import DataSpec
    from mimetic.train.config import load_config

    cfg = load_config(compose(*family_overrides(family, args)))
    if family.data == "cifar10":
        spec = DataSpec("classification", num_classes=10, in_chans=3, image_size=cfg.model.input_size)
    else:
        spec = DataSpec("language_modeling", vocab_size=cfg.dataset.vocab_size)
    torch.manual_seed(0)
    base = build_model(cfg.model, spec)
    width = cfg.model.dim
    reference = "svd" if width <= AUTO_REFERENCE_MAX_WIDTH else "eigh"
    result = CheckResult(f"mimetic init on {device.type}: {family.name} (width {width})")
    ref = copy.deepcopy(base)
    start = time.perf_counter()
    apply_init(ref, {"name": "mimetic", "solver": reference}, torch.Generator().manual_seed(0))
    result.data["reference"] = {"solver": reference, "device": "cpu", "seconds": time.perf_counter() - start}
    want = attention_products(ref, target_beta_qk=None, target_beta_vo=None)
    del ref
    parts, ok = [], True
    for solver in ("eigh", "mixed"):
        model = copy.deepcopy(base).to(device)
        sync(device)
        start = time.perf_counter()
        # A CPU generator: the same Z as the reference's, whatever the model's device.
        report = apply_init(model, {"name": "mimetic", "solver": solver}, torch.Generator().manual_seed(0))
        sync(device)
        seconds = time.perf_counter() - start
        # Measured on a CPU copy of what the device wrote (the products' statistics are computed on the CPU).
        got = attention_products(copy.deepcopy(model).cpu(), target_beta_qk=None, target_beta_vo=None)
        qk = max(_rel(g.qk, w.qk) for g, w in zip(got, want))
        vo = max(_rel(g.vo, w.vo) for g, w in zip(got, want))
        passed = len(got) == len(want) and max(qk, vo) < INIT_TOLERANCE[solver]
        ok &= passed
        result.data[solver] = {"seconds": seconds, "qk_max_rel": qk, "vo_max_rel": vo, "layers": len(got),
                               "tolerance": INIT_TOLERANCE[solver], "ok": passed,
                               "solver_used": report.get("solver_used"),
                               "weights_on": str(next(model.parameters()).device)}
        parts.append(f"{solver} {seconds:.2f} s, products QK {qk:.1e} / VO {vo:.1e} from CPU {reference}")
        del model, got
    result.ok = ok
    where = "" if device.type == "cuda" else " (not on CUDA: the CPU's LAPACK path)"
    result.detail = f"{len(want)} layers{where}: " + "; ".join(parts)
    return result


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return (torch.linalg.norm(a - b) / torch.linalg.norm(b)).item()


def check_augmentation(args, device: torch.device) -> CheckResult:
    """The batched RandAugment + Cutout on the device: no syncing op dispatched; on CUDA none made either."""
    from mimetic.data.augment import AUGS, TrainTransform
    from mimetic.data.host_syncs import HostSyncRecorder

    n = 64 if args.tiny else 512
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    x = x.to(device)
    mean, std = torch.tensor([0.49, 0.48, 0.45]), torch.tensor([0.25, 0.24, 0.26])
    # sync_free=None is what the run's loader passes: the sync-free path on an accelerator; forced on the CPU.
    transform = TrainTransform(AUGS.default_options("randaug_cutout"), mean, std,
                               sync_free=None if device.type != "cpu" else True)
    g = torch.Generator(device=device).manual_seed(0)
    transform(x, g)  # warm-up: index maps and statistics cached on the device
    sync(device)
    with HostSyncRecorder() as recorder:
        out = transform(x, g)
    result = CheckResult(f"augmentation randaug_cutout on {device.type}: no host sync")
    problems = [f"syncing ops dispatched: {', '.join(sorted(set(recorder.bad)))}"] if recorder.bad else []
    if device.type == "cuda":
        sync(device)
        torch.cuda.set_sync_debug_mode("error")
        try:
            out = transform(x, g)
        except RuntimeError as err:
            problems.append(f"under set_sync_debug_mode('error'): {one_line(err)}")
        finally:
            torch.cuda.set_sync_debug_mode("default")
    if out.shape != x.shape or not torch.isfinite(out).all():
        problems.append(f"output {tuple(out.shape)} {out.dtype}, finite: {bool(torch.isfinite(out).all())}")
    sync(device)
    start, repeats = time.perf_counter(), 10
    for _ in range(repeats):
        transform(x, g)
    sync(device)
    rate = n * repeats / (time.perf_counter() - start)
    result.ok = not problems
    result.data = {"images_per_s": rate, "batch": n, "syncing_ops": recorder.bad,
                   "cuda_sync_debug_mode": device.type == "cuda"}
    how = "and under torch.cuda.set_sync_debug_mode('error')" if device.type == "cuda" else \
        "(sync-free path forced; set_sync_debug_mode not on CUDA)"
    result.detail = ("; ".join(problems) if problems else f"no syncing aten op {how}") + \
        f"; {rate:,.0f} images/s at batch {n}"
    return result


# ----------------------------------------------------------------------------- one family
def run_family(family: Family, args, device: torch.device, work: Path, share_s: float) -> FamilyResult:
    from mimetic.runtime.signals import StopRequested
    from mimetic.train.config import load_config
    from mimetic.train.run import run

    started = time.monotonic()
    result = FamilyResult(family.name, family.paper_run, family.command, family_overrides(family, args),
                          steps_planned=args.steps, time_share_s=share_s)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    compile_error = None
    try:
        paper = load_config(compose(*family.overrides))  # what the projection is for (full size, also with --tiny)
        sized = load_config(compose(*family_overrides(family, args)))
        base = [*family_overrides(family, args), *data_overrides(family, sized, args, work),
                f"trainer.max_steps={args.steps}", "trainer.eval_every=0", "trainer.checkpoint_every=0",
                f"trainer.device={device}", "trainer.progress=false", "logger.mode=disabled"]
        # On CUDA with trainer.compile=true; if compiling fails, once more eager, so the GPU still gives numbers.
        for compiled in ((True, False) if device.type == "cuda" else (False,)):
            result.overrides = [*base, f"trainer.compile={str(compiled).lower()}"]
            run_dir = work / "runs" / (family.name + ("" if compiled or device.type != "cuda" else "-eager"))
            composed = compose(*result.overrides)
            cfg = load_config(composed)
            result.paths = describe_paths(cfg, device)
            left = share_s - (time.monotonic() - started)
            if left < MIN_SHARE_S:
                raise TimeoutError(f"{left:.0f} s of its share of the budget left: not started")
            try:
                with StopAt(left):
                    summary = run(composed, run_dir=run_dir)
                result.steps_run = int(summary["steps"])
            except StopRequested as stop:
                result.stopped_by_budget = True
                result.steps_run = int(stop.step or 0)
            except Exception as err:
                if not compiled:
                    raise
                compile_error = one_line(err)
                log.exception("%s failed with trainer.compile=true; once more eager", family.name)
                release(device)
                continue
            break
        measure(result, cfg, paper, run_dir, args, device)
        if compile_error:
            result.status = "failed"
            result.paths["compile"] = "eager retry (torch.compile failed)"
            result.error = f"with trainer.compile=true: {compile_error}; the numbers are the eager retry's" + (
                f"; {result.error}" if result.error else "")
    except Exception as err:  # one line per family; the others still run
        result.status = "failed"
        result.error = (f"with trainer.compile=true: {compile_error}; eager: " if compile_error else "") + one_line(err)
        log.exception("%s failed", family.name)
    finally:
        if device.type == "cuda":
            result.peak_memory_gib = torch.cuda.max_memory_allocated(device) / 2**30
        result.wall_s = time.monotonic() - started
        release(device)
    return result


def describe_paths(cfg, device: torch.device) -> dict:
    """What the run loop does on this device with this config (the same rules it applies)."""
    from mimetic.train.engine import Precision

    cuda = device.type == "cuda"
    precision = Precision.resolve(cfg.trainer.precision, device)
    layout = "channels_last" if cfg.model.memory_format(device) == torch.channels_last else "contiguous (no conv)"
    aug = cfg.aug.name
    if aug == "randaug_cutout":
        aug += ", sync-free batched" if cuda else ", batched (CPU path)"
    return {
        "precision": f"{cfg.trainer.precision} -> " + ("bf16 autocast" if precision.dtype == torch.bfloat16 else
                                                        str(precision.dtype or "fp32") + ("" if cuda else
                                                                                          " (not on CUDA)")),
        "adamw": "fused" if cuda else "foreach (fused: not on CUDA)",
        "layout": layout,
        "compile": "torch.compile" if cfg.trainer.compile else "eager" + ("" if cuda else " (compile: not on CUDA)"),
        "aug": aug,
    }


def measure(result: FamilyResult, cfg, paper, run_dir: Path, args, device: torch.device) -> None:
    """Throughput, losses, MFU and projection from the run's own files; fails the family if they are wrong."""
    from mimetic.train.throughput import mfu, peak_tflops

    lines = (run_dir / "metrics.jsonl").read_text().splitlines() if (run_dir / "metrics.jsonl").is_file() else []
    records = [json.loads(line) for line in lines]
    is_lm = cfg.dataset.name == "wikitext103"
    result.unit = "tokens" if is_lm else "images"
    key = f"{result.unit}_per_s"
    previous = 0
    for r in records:
        result.windows.append({"step": r["step"], "steps": r["step"] - previous, key: r[key],
                               "train_loss": r["train_loss"], "epoch_time_s": r["epoch_time_s"]})
        previous = r["step"]
    losses = [r["train_loss"] for r in records]
    if losses:
        result.loss_first, result.loss_last = losses[0], losses[-1]
        result.losses_finite = all(math.isfinite(v) for v in losses)
        result.loss_decreasing = len(losses) > 1 and losses[-1] < losses[0]
    diagnostics = run_dir / "init_diagnostics.json"
    if diagnostics.is_file():
        result.init = init_summary(json.loads(diagnostics.read_text()))
    problems = []
    timed = result.windows[1:]  # the first window holds compilation and warm-up
    if timed:
        units = [w["steps"] * cfg.trainer.batch_size * (cfg.dataset.seq_len if is_lm else 1) for w in timed]
        seconds = [u / w[key] for u, w in zip(units, timed)]
        result.units_per_s = sum(units) / sum(seconds)
        result.units_per_s_range = [min(w[key] for w in timed), max(w[key] for w in timed)]
    else:
        problems.append(f"{len(records)} window(s) in {result.steps_run} steps: none after the warm-up one to "
                        "time" + (" (stopped by the time budget)" if result.stopped_by_budget else ""))
    if result.losses_finite is False:
        problems.append(f"training loss not finite: {losses}")
    elif result.loss_decreasing is False:
        problems.append(f"training loss did not go down: {[round(v, 4) for v in losses]}")

    flops, params, vocab = model_flops(cfg, run_dir, device)
    result.flops_per_unit, result.params, result.vocab_size = flops, params, vocab
    t = paper.trainer
    result.paper_units = (t.max_steps * t.batch_size * (paper.dataset.seq_len if is_lm else 1) if t.max_steps
                          else t.epochs * _train_images())
    if result.units_per_s:
        result.mfu = mfu(flops, result.units_per_s, peak_tflops(device, args.peak_tflops))
        result.projected_s = result.paper_units / result.units_per_s
    if is_lm and vocab is not None and vocab < cfg.dataset.vocab_size:
        problems.append(f"the synthetic text gave a {vocab}-token BPE, not {cfg.dataset.vocab_size}")
    result.status = "failed" if problems else "ok"
    result.error = "; ".join(problems) or None


def _train_images() -> int:
    from mimetic.train.throughput import CIFAR10_TRAIN_IMAGES

    return CIFAR10_TRAIN_IMAGES


def model_flops(cfg, run_dir: Path, device: torch.device) -> tuple[float, int, int | None]:
    """Model FLOPs per image / token of one training step (forward + backward), parameters, LM vocabulary."""
    from mimetic.models import build_model
    from mimetic.models.base import DataSpec
    from mimetic.train.engine import Precision
    from mimetic.train.tasks import build_task
    from mimetic.train.throughput import training_flops

    precision = Precision.resolve(cfg.trainer.precision, device)
    vocab = None
    if cfg.dataset.name == "wikitext103":
        from mimetic.data.wikitext import load_tokenizer

        vocab = load_tokenizer(cfg.dataset)[0].get_vocab_size()  # the run's cached tokenizer
        spec, task = DataSpec("language_modeling", vocab_size=vocab), build_task("language_modeling", cfg)
        tokens = torch.randint(0, vocab, (2, cfg.dataset.seq_len + 1), device=device)
        batch = (tokens[:, :-1], tokens[:, 1:])
    else:
        size = cfg.model.input_size
        spec, task = DataSpec("classification", num_classes=10, image_size=size), build_task("classification", cfg)
        x = torch.randn(2, 3, size, size, device=device).contiguous(memory_format=cfg.model.memory_format(device))
        batch = (x, torch.randint(0, 10, (2,), device=device))
    torch.manual_seed(0)
    model = build_model(cfg.model, spec).to(device, memory_format=cfg.model.memory_format(device))
    model.train()
    try:
        return (training_flops(model, task, batch, precision) / task.count(batch),
                sum(p.numel() for p in model.parameters()), vocab)
    finally:
        del model


def init_summary(diagnostics: dict) -> dict:
    """The step-0 numbers worth a glance: mean QK / VO diagonals, depthwise filters' neighbour correlation."""
    out: dict = {"init": diagnostics.get("init", {}).get("init") if isinstance(diagnostics.get("init"), dict)
                 else diagnostics.get("init")}
    mean = diagnostics.get("attention", {}).get("mean", {})
    for key in ("qk_diag_mean", "vo_diag_mean"):
        if key in mean:
            out[key] = mean[key]
    layers = diagnostics.get("depthwise", {}).get("layers", [])
    corr = [layer["neighbour_corr"] for layer in layers if "neighbour_corr" in layer]
    if corr:
        out["dw_neighbour_corr_first_last"] = [corr[0], corr[-1]]
    return out


def release(device: torch.device) -> None:
    gc.collect()
    try:
        import torch._dynamo

        torch._dynamo.reset()
    except Exception:  # noqa: BLE001 (nothing to reset is fine)
        pass
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------- report
def fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def fmt_rate(value: float | None, unit: str) -> str:
    return "–" if value is None else f"{value:,.0f} {unit}/s"


def markdown(report: dict) -> str:
    fams = [FamilyResult(**f) for f in report["families"]]
    checks = [CheckResult(**c) for c in report["checks"]]
    tiny = report["tiny"]
    lines = [
        "# GPU check" + (" (dry run: tiny models on the CPU, plumbing only)" if tiny else ""),
        "",
        f"`{report['command']}` — {report['date']}, {report['device']}, torch {report['torch']}"
        + (f" (CUDA {report['cuda']})" if report["cuda"] else "") + f", git {report['git_sha'] or '?'}; "
        f"budget {report['budget_s']:.0f} s, ran {report['wall_s']:.0f} s; "
        + ("**all passed**" if report["ok"] else "**FAILED** (see the status column and the checks)"
           if report.get("complete", True) else
           f"**incomplete**: {len(fams)} of {len(report.get('families_planned', []))} families so far") + ".",
        "",
        "Throughput: training units per second over the windows after the first (compilation and warm-up), from "
        "the run's `metrics.jsonl`; MFU against "
        + (f"{report['peak_tflops']:.0f} TFLOP/s (bf16 peak)" if report["peak_tflops"] else
           "no known peak (n/a; pass --peak-tflops)")
        + "; projected: the paper run's training time at this throughput (no evaluation, loading or start-up)."
        + (" Tiny models: the numbers are not projections." if tiny else ""),
        "",
        "| family | steps run / planned | throughput [range] | MFU | FLOPs / unit | projected paper run | "
        "train loss first → last | status |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for f in fams:
        rng = f" [{f.units_per_s_range[0]:,.0f}–{f.units_per_s_range[1]:,.0f}]" if f.units_per_s_range else ""
        loss = (f"{f.loss_first:.3f} → {f.loss_last:.3f}" if f.loss_first is not None else "–")
        stopped = " (budget)" if f.stopped_by_budget else ""
        status = "ok" if f.status == "ok" else f"**failed**: {f.error}"
        lines.append(
            f"| {f.name} | {f.steps_run}{stopped} / {f.steps_planned} | {fmt_rate(f.units_per_s, f.unit)}{rng} | "
            f"{'–' if f.mfu is None else f'{100 * f.mfu:.1f} %'} | "
            f"{'–' if f.flops_per_unit is None else _flops(f.flops_per_unit)} | "
            f"{fmt_time(f.projected_s)} ({f.paper_run}) | {loss} | {status} |")
    lines += ["", "| family | precision | AdamW | layout | compile | augmentation | step-0 init | peak memory |"
              " wall (share) |", "|---|---|---|---|---|---|---|---|---|"]
    for f in fams:
        p = f.paths
        init = ", ".join(f"{k} {_num(v)}" for k, v in f.init.items() if v is not None) or "–"
        mem = "–" if f.peak_memory_gib is None else f"{f.peak_memory_gib:.1f} GiB"
        lines.append(f"| {f.name} | {p.get('precision', '–')} | {p.get('adamw', '–')} | {p.get('layout', '–')} | "
                     f"{p.get('compile', '–')} | {p.get('aug', '–')} | {init} | {mem} | "
                     f"{f.wall_s:.0f} s ({f.time_share_s:.0f} s) |")
    lines += ["", "| check | result | detail |", "|---|---|---|"]
    for c in checks:
        lines.append(f"| {c.name} | {'ok' if c.ok else '**failed**'} | {c.detail} |")
    lines += ["", "Paper-run commands: " + "; ".join(f"{f.name}: `{f.command}`" for f in fams) + ".",
              "Written by `scripts/gpu_check.py` (the JSON beside this file has every window and number).", ""]
    return "\n".join(lines)


def _flops(value: float) -> str:
    return f"{value / 1e9:.2f} GFLOP" if value >= 1e8 else f"{value / 1e6:.2f} MFLOP"


def _num(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list):
        return "→".join(_num(v) for v in value)
    return str(value)


# ----------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--device", default=None, help="default: cuda (cpu with --dry-run)")
    parser.add_argument("--tiny", action="store_true", help="CPU-sized models and batches (the plumbing)")
    parser.add_argument("--dry-run", action="store_true", help="= --device cpu --tiny, a few steps")
    parser.add_argument("--steps", type=int, default=None, help="planned steps per family (300; 8 with --tiny)")
    parser.add_argument("--window", type=int, default=None,
                        help="steps per timed window = one epoch of the synthetic data (50; 2 with --tiny)")
    parser.add_argument("--budget-s", type=float, default=None, help="the whole command's time (420 s; 300 tiny)")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's peak for the MFU (default: datasheet bf16 peak of known GPUs)")
    parser.add_argument("--skip-checks", action="store_true", help="only the families (no init / augmentation)")
    parser.add_argument("--out", type=Path, default=None,
                        help="markdown report; the JSON goes beside it (default results/gpu_check.md, "
                             "runs/gpu_check_dry_run.md with --tiny)")
    parser.add_argument("--work-dir", type=Path, default=None, help="data and run dirs (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (runs, synthetic data)")
    args = parser.parse_args(argv)
    if args.dry_run:
        args.device, args.tiny = args.device or "cpu", True
    args.device = args.device or "cuda"
    args.steps = args.steps or (8 if args.tiny else 300)
    args.window = args.window or (2 if args.tiny else 50)
    args.budget_s = args.budget_s or (300.0 if args.tiny else 420.0)
    args.out = args.out or (REPO / ("runs/gpu_check_dry_run.md" if args.tiny else "results/gpu_check.md"))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device is visible; on a CPU run `python scripts/gpu_check.py --dry-run`",
              file=sys.stderr)
        return 2
    # A budget signal that lands outside a run (after it ended, before its timer was cancelled) is ignored.
    signal.signal(BUDGET_SIGNAL, lambda *_: None)
    budget = Budget(args.budget_s)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="gpu_check-"))
    work.mkdir(parents=True, exist_ok=True)
    families = [FAMILIES[name] for name in args.families]
    from mimetic.runtime.environment import git_sha

    print(f"gpu_check: {len(families)} families on {device_name(device)}, torch {torch.__version__}, budget "
          f"{args.budget_s:.0f} s, {args.steps} steps per family in windows of {args.window}; work dir {work}",
          flush=True)

    from mimetic.train.throughput import peak_tflops

    checks: list[CheckResult] = []
    results: list[FamilyResult] = []

    def write(complete: bool) -> dict:
        """The report so far (rewritten after each step, so a machine taken back early still leaves one)."""
        report = {
            "command": shlex.join(["python", "scripts/gpu_check.py", *(sys.argv[1:] if argv is None else argv)]),
            "date": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", "device": device_name(device),
            "device_type": device.type, "torch": torch.__version__,
            "cuda": torch.version.cuda if device.type == "cuda" else None, "python": platform.python_version(),
            "git_sha": git_sha(), "tiny": args.tiny, "budget_s": args.budget_s, "wall_s": time.monotonic() - START,
            "steps": args.steps, "window": args.window, "peak_tflops": peak_tflops(device, args.peak_tflops),
            "complete": complete, "families_planned": [f.name for f in families],
            "ok": complete and all(r.status == "ok" for r in results) and all(c.ok for c in checks),
            "families": [asdict(r) for r in results], "checks": [asdict(c) for c in checks],
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(markdown(report))
        args.out.with_suffix(".json").write_text(json.dumps(report, indent=1, default=str) + "\n")
        return report

    if not args.skip_checks:
        checks.append(_guarded("augmentation", lambda: check_augmentation(args, device)))
        for family in families:
            if family.attention:
                checks.append(_guarded(f"mimetic init on {device.type}: {family.name}",
                                       lambda f=family: check_init_on_device(f, args, device)))
        release(device)
        for c in checks:
            print(f"check {'ok' if c.ok else 'FAILED'}: {c.name}: {c.detail}", flush=True)
        write(complete=False)

    for i, family in enumerate(families):
        share = budget.share(len(families) - i)
        print(f"{family.name}: up to {args.steps} steps in {share:.0f} s ({budget.left():.0f} s left)", flush=True)
        result = run_family(family, args, device, work, share)
        results.append(result)
        stopped = " (stopped by the budget)" if result.stopped_by_budget else ""
        print(f"{family.name}: {result.status}, {result.steps_run} steps{stopped}, "
              f"{fmt_rate(result.units_per_s, result.unit)}, MFU "
              f"{'–' if result.mfu is None else f'{100 * result.mfu:.1f} %'}, projected {fmt_time(result.projected_s)}"
              f"{'' if result.error is None else ' — ' + result.error}", flush=True)
        write(complete=False)

    report = write(complete=True)
    print(markdown(report), flush=True)
    print(f"gpu_check: wrote {args.out} and {args.out.with_suffix('.json')}"
          + (f"; runs and data kept in {work}" if args.keep or args.work_dir else ""), flush=True)
    if not (args.keep or args.work_dir):
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0 if report["ok"] else 1


def _guarded(name: str, fn) -> CheckResult:
    try:
        return fn()
    except Exception as err:  # one line; the families still run
        log.exception("check %s failed", name)
        return CheckResult(name, ok=False, detail=one_line(err))


if __name__ == "__main__":
    sys.exit(main())
