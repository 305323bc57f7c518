"""Every figure, regenerated from run directories (and fresh models where a figure is about step 0).

    python scripts/make_figures.py --runs runs/ablations runs/conv runs/runs --images data/cifar10-jpeg-6k
    python scripts/make_figures.py ... --out results/figures --overwrite     # the committed figures

Figures (PNG and PDF, named after their inputs):

- ``qk_vo_<experiment>_s<seed>``: the paper's Figure-1 view, per layer: each head's QK product and
  the layer's VO product, for default and mimetic init at step 0 (the runs' own step-0 weights,
  rebuilt from their seeds) and after training (their checkpoints); ``qk_vo_pretrained`` for a
  pre-trained timm ViT when ``--pretrained FILE`` is given;
- ``diagonal_<experiment>``: diagonal strength (cosine with the identity) of QK and VO by depth,
  at step 0 and trained, for every attention init of the experiment, mean ± std over seeds;
- ``attention_<experiment>_s<seed>``: where the centre patch attends, every layer, default vs
  mimetic, step 0 and trained, on the first ``--n-images`` test images of ``--images``;
- ``<experiment>_<metric>``: training curves with seed bands, one per experiment found (the same
  file and stamp as make_tables.py's curve for the same runs);
- ``<conv-prefix>_covariance`` / ``<conv-prefix>_filters``: depthwise covariances (target, sampled,
  learned) and filters, from one trained conv run.

A figure whose inputs are missing (no such runs, no images, no --pretrained) is skipped with a
line saying why; nothing is drawn from anything else. The default --out is outputs/figures (not
committed). As with make_tables.py, a figure is replaced only when it was made from the same
inputs (its stamp says so) or with --overwrite; otherwise nothing at all is written.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from mimetic.analysis import AnalysisError, run_script
from mimetic.analysis.outputs import Decision, decide_figure, fingerprint, refusal
from mimetic.analysis.report import runs_fingerprint
from mimetic.analysis.runs import Run, scan_runs
from mimetic.analysis.tables import PREFER, Comparison, group_runs

KINDS = ("products", "diagonal", "attention", "curves", "conv")
DEFAULT_OUT = Path("outputs/figures")
ATTENTION_INITS = ("default", "mimetic", "mimetic_qk", "mimetic_vo")


@dataclass
class Job:
    """One figure (a PNG, a PDF beside it): where, made from what (stamp), and how to draw it."""

    path: Path
    stamp: str
    draw: Callable[[Path, str], None]
    decision: Decision | None = None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", default=["runs"], help="folders holding run directories (default: runs)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"figure folder (default: {DEFAULT_OUT})")
    p.add_argument("--only", nargs="+", choices=KINDS, default=list(KINDS), help="draw only these kinds")
    p.add_argument("--overwrite", action="store_true", help="replace figures made from other inputs")
    p.add_argument("--prefer", choices=PREFER, default=None,
                   help="when several finished runs share (experiment, init, seed), keep the newest/oldest")
    p.add_argument("--vit-experiment", default="ablation_components",
                   help="experiment whose default/mimetic ViT runs the weight and attention figures read")
    p.add_argument("--seed", type=int, default=0, help="seed of the runs drawn in the per-run figures (default: 0)")
    p.add_argument("--images", type=Path, default=Path("data/cifar10-jpeg-6k"),
                   help="image-folder dataset whose first test images the attention maps use")
    p.add_argument("--n-images", type=int, default=8)
    p.add_argument("--crop", type=int, default=None, help="show only the top-left CROP x CROP of each product")
    p.add_argument("--pretrained", type=Path, default=None,
                   help="a pre-trained timm ViT checkpoint (.pth/.safetensors) for qk_vo_pretrained")
    p.add_argument("--pretrained-arch", default="vit_tiny_patch16_224", help="its timm architecture")
    p.add_argument("--experiments", nargs="*", default=None, help="curves of these experiments only (default: all)")
    p.add_argument("--conv-experiment", default="proxy_conv_cifar_slice")
    p.add_argument("--conv-init", default="default", help="init of the trained conv run whose filters are drawn")
    p.add_argument("--conv-prefix", default="conv_proxy")
    p.add_argument("--sigma-first", type=float, default=None, help="dw_covariance sigmas (default: the init's)")
    p.add_argument("--sigma-last", type=float, default=None)
    return p.parse_args(argv)


# ----------------------------------------------------------------------------- shared, computed once


@cache
def _model(path: Path, trained: bool):
    from mimetic.analysis.run_models import model_at_step0, trained_model

    return trained_model(path) if trained else model_at_step0(path)


@cache
def _products(path: Path, trained: bool, label: str):
    from mimetic.analysis.products import model_products

    return model_products(_model(path, trained), label)


def _state_label(run: Run, trained: bool) -> str:
    return f"{run.init}, {'trained' if trained else 'step 0'}"


def _vit_comparison(runs: list[Run], args) -> tuple[Comparison | None, str]:
    """The attention experiment's runs, or None and why not."""
    if not any(run.group == args.vit_experiment for run in runs):
        return None, f"no finished runs of {args.vit_experiment} under {' '.join(args.runs)}"
    cmp = group_runs(runs, [args.vit_experiment], prefer=args.prefer)[args.vit_experiment]
    missing = [i for i in ("default", "mimetic") if args.seed not in cmp.by_init.get(i, {})]
    if missing:
        return None, f"{args.vit_experiment} has no finished {' or '.join(missing)} run with seed {args.seed}"
    return cmp, ""


def _pair(cmp: Comparison, seed: int) -> list[tuple[Run, bool]]:
    """default and mimetic, step 0 then trained: the four states every per-run figure compares."""
    runs = [cmp.by_init["default"][seed], cmp.by_init["mimetic"][seed]]
    return [(run, trained) for trained in (False, True) for run in runs]


# ----------------------------------------------------------------------------- one builder per kind


def products_jobs(cmp: Comparison | None, args, out: Path) -> list[Job]:
    from mimetic.analysis.product_figures import plot_products

    jobs = []
    if cmp is not None:
        states = _pair(cmp, args.seed)
        stamp = fingerprint({"figure": "qk_vo", "runs": runs_fingerprint([r for r, _ in states[:2]]),
                             "crop": args.crop})

        def draw(path, stamp, states=states):
            plot_products([_products(r.path, t, _state_label(r, t)) for r, t in states], path, stamp,
                          crop=args.crop, title=f"{cmp.experiment}, seed {args.seed}")

        jobs.append(Job(out / f"qk_vo_{cmp.experiment}_s{args.seed}.png", stamp, draw))
    if args.pretrained is not None:
        digest = hashlib.sha256(args.pretrained.read_bytes()).hexdigest() if args.pretrained.is_file() else None
        if digest is None:
            raise AnalysisError(f"--pretrained {args.pretrained}: no such file")

        def draw_pretrained(path, stamp):
            from mimetic.analysis.products import model_products
            from mimetic.analysis.run_models import pretrained_vit

            model = pretrained_vit(args.pretrained, args.pretrained_arch)
            plot_products([model_products(model, f"pre-trained {args.pretrained_arch}")], path, stamp,
                          crop=args.crop, title=f"{args.pretrained.name}")

        stamp = fingerprint({"figure": "qk_vo_pretrained", "file": digest, "arch": args.pretrained_arch,
                             "crop": args.crop})
        jobs.append(Job(out / "qk_vo_pretrained.png", stamp, draw_pretrained))
    return jobs


def diagonal_jobs(cmp: Comparison | None, args, out: Path) -> list[Job]:
    from mimetic.analysis.product_figures import plot_diagonal_strength

    if cmp is None:
        return []
    inits = [i for i in ATTENTION_INITS if i in cmp.by_init]
    runs = [run for i in inits for _, run in sorted(cmp.by_init[i].items())]
    colours = {init: f"C{k}" for k, init in enumerate(ATTENTION_INITS)}
    # Colour = init, dashes = step 0, solid = trained: each init's before/after pair reads as one.
    styles = {f"{i}, {when}": {"color": colours[i], "ls": "--" if when == "step 0" else "-"}
              for i in inits for when in ("step 0", "trained")}

    def draw(path, stamp):
        groups = {}
        for trained in (False, True):
            for init in inits:
                seeds = sorted(cmp.by_init[init].items())
                groups[f"{init}, {'trained' if trained else 'step 0'}"] = [
                    _products(run.path, trained, _state_label(run, trained)) for _, run in seeds]
        plot_diagonal_strength(groups, path, stamp, styles, title=cmp.experiment)

    stamp = fingerprint({"figure": "diagonal", "runs": runs_fingerprint(runs)})
    return [Job(out / f"diagonal_{cmp.experiment}.png", stamp, draw)]


def attention_jobs(cmp: Comparison | None, args, out: Path) -> tuple[list[Job], str]:
    from mimetic.analysis.attention_figures import image_batch, plot_attention_maps

    if cmp is None:
        return [], ""
    if not args.images.is_dir():
        return [], (f"{args.images} not found (unpack the CIFAR-10 slice with `python -m zipfile -e "
                    "../shared/data/cifar10-jpeg-6k.zip data/` or pass --images)")
    states = _pair(cmp, args.seed)
    size = int(_model(states[0][0].path, False).patch_embed.img_size[0])
    x = image_batch(args.images, args.n_images, size, normalise="train")
    stamp = fingerprint({"figure": "attention", "runs": runs_fingerprint([r for r, _ in states[:2]]),
                         "inputs": hashlib.sha256(x.numpy().tobytes()).hexdigest()})

    def draw(path, stamp):
        models = [(_state_label(r, t), _model(r.path, t)) for r, t in states]
        layers = list(range(len(models[0][1].blocks)))
        plot_attention_maps(models, x, layers, path, stamp, dpi=80,
                            title=f"Where the centre patch (red box) attends: {cmp.experiment}, seed {args.seed}, "
                                  f"mean over heads and the first {len(x)} test images of {args.images.name}")

    return [Job(out / f"attention_{cmp.experiment}_s{args.seed}.png", stamp, draw)], ""


def curve_jobs(runs: list[Run], args, out: Path) -> list[Job]:
    from mimetic.analysis.figures import plot_curves

    names = args.experiments or sorted({run.group for run in runs})
    jobs = []
    for name, cmp in group_runs(runs, names, prefer=args.prefer).items():
        if not cmp.xs():
            continue

        def draw(path, stamp, cmp=cmp):
            plot_curves(cmp, path, stamp=stamp)

        # make_tables.py's file name and stamp: either script may regenerate the other's curve.
        jobs.append(Job(out / f"{name}_{cmp.metric.name}.png", runs_fingerprint(cmp.runs), draw))
    return jobs


def conv_jobs(runs: list[Run], args, out: Path) -> tuple[list[Job], str]:
    from mimetic.analysis.conv_figures import conv_figures_stamp, draw_conv_figures
    from mimetic.analysis.run_models import checkpoint_state
    from mimetic.init.depthwise import DwCovarianceOptions

    mine = [r for r in runs if r.group == args.conv_experiment and r.init == args.conv_init and r.seed == args.seed]
    if not mine:
        return [], f"no finished {args.conv_init} run of {args.conv_experiment} with seed {args.seed}"
    if len(mine) > 1 and args.prefer is None:
        raise AnalysisError(f"several finished {args.conv_init} runs of {args.conv_experiment}, seed {args.seed}: "
                            f"{', '.join(str(r.path) for r in mine)}; choose with --runs or --prefer")
    run = sorted(mine, key=lambda r: r.finished_at)[-1 if args.prefer == "newest" else 0]
    defaults = DwCovarianceOptions()
    sigmas = (defaults.sigma_first if args.sigma_first is None else args.sigma_first,
              defaults.sigma_last if args.sigma_last is None else args.sigma_last)
    state = checkpoint_state(run.path)
    stamp = conv_figures_stamp(run.path, state, *sigmas)
    cov, filters = out / f"{args.conv_prefix}_covariance.png", out / f"{args.conv_prefix}_filters.png"

    drawn = []

    def draw(path, stamp):
        if not drawn:  # one call draws both; the second job finds them written
            draw_conv_figures(run.path, state, cov, filters, stamp, *sigmas)
            drawn.append(True)

    return [Job(cov, stamp, draw), Job(filters, stamp, draw)], ""


# ----------------------------------------------------------------------------- the command


def make_figures(args: argparse.Namespace) -> list[str]:
    runs, unreadable = scan_runs([Path(r) for r in args.runs])
    said = [f"warning: left out an unreadable run: {u.message.splitlines()[0]}" for u in unreadable]
    jobs: list[Job] = []
    vit, why_vit = _vit_comparison(runs, args) if {"products", "diagonal", "attention"} & set(args.only) else (None, "")
    for kind in args.only:
        why = ""
        if kind == "products":
            new = products_jobs(vit, args, args.out)
            why = why_vit if vit is None else ""
        elif kind == "diagonal":
            new, why = diagonal_jobs(vit, args, args.out), why_vit
        elif kind == "attention":
            new, why = attention_jobs(vit, args, args.out)
            why = why or why_vit
        elif kind == "curves":
            new = curve_jobs(runs, args, args.out)
            why = "" if new else f"no finished runs with metrics under {' '.join(args.runs)}"
        else:
            new, why = conv_jobs(runs, args, args.out)
        if why:
            said.append(f"skipped {kind}: {why}")
        jobs += new
    if "products" in args.only and args.pretrained is None:
        said.append("skipped the pre-trained ViT's qk_vo figure: no --pretrained checkpoint file given")
    for job in jobs:
        job.decision = decide_figure(job.path, job.stamp, args.overwrite)
    refused = [job.decision for job in jobs if job.decision.refused]
    if refused:
        raise refusal(refused, f"the default --out {DEFAULT_OUT}, or another --out")
    for job in jobs:
        if job.decision.action == "same inputs" and job.path.with_suffix(".pdf").exists():
            said.append(f"kept {job.path} (already made from the same inputs)")
            continue
        job.draw(job.path, job.stamp)
        how = {"new": "new", "same inputs": "same inputs", "overwrite": "replaced, --overwrite"}[job.decision.action]
        said.append(f"wrote {job.path} and .pdf ({how})")
    return said


def main(argv: list[str] | None = None) -> int:
    return run_script(make_figures, parse_args(argv))


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    sys.exit(main())
