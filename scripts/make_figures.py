"""Figures drawn from models: trained runs' weights and attention, and fresh models at step 0.

    python scripts/make_figures.py --runs runs/ablations runs/conv --images data/cifar10-jpeg-6k
    python scripts/make_figures.py --declared --out results/figures   # those results/tables.yaml lists

The committed ones (``figures:`` in results/tables.yaml, with their inputs) are also redrawn by the one
command that regenerates every result, ``python scripts/make_tables.py --all``; the curves and bars of
the tables are make_tables.py's.

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
  learned) and filters, from one trained conv run;
- ``attention_at_init``: where the centre patch attends at step 0 in the paper's ViT-Tiny, default
  against mimetic init (the same base weights), on the first 8 test images of ``--images``
  (normalised by their own statistics), layers ``--layers``.

A figure whose inputs are missing (no such runs, no images, no --pretrained) is skipped with a
line saying why; nothing is drawn from anything else. The default --out is outputs/figures (not
committed). As with make_tables.py, a figure is replaced only when it was made from the same
inputs (its stamp says so) or with --overwrite; one drawn from fewer runs than the existing one (its
evidence says so) is kept unless --replace-with-less; otherwise nothing at all is written.
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
from mimetic.analysis.outputs import Decision, decide_figure, figure_evidence, fingerprint, refusal
from mimetic.analysis.runs import Run, scan_runs
from mimetic.analysis.sections import runs_fingerprint
from mimetic.analysis.specs import group_runs
from mimetic.analysis.tables import PREFER, Comparison

KINDS = ("products", "diagonal", "attention", "curves", "conv", "attention_at_init")
SPECS = Path(__file__).resolve().parents[1] / "results" / "tables.yaml"
DEFAULT_OUT = Path("outputs/figures")
ATTENTION_INITS = ("default", "mimetic", "mimetic_qk", "mimetic_vo")


@dataclass
class Job:
    """One figure (a PNG, a PDF beside it): where, made from what (stamp), and how to draw it."""

    path: Path
    stamp: str
    draw: Callable[[Path, str], None]
    decision: Decision | None = None
    evidence: dict | None = None  # the runs and seeds it is drawn from (None: not from runs)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", default=["runs"], help="folders holding run directories (default: runs)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"figure folder (default: {DEFAULT_OUT})")
    p.add_argument("--only", nargs="+", choices=KINDS, default=list(KINDS), help="draw only these kinds")
    p.add_argument("--overwrite", action="store_true", help="replace figures made from other inputs")
    p.add_argument("--replace-with-less", action="store_true",
                   help="replace a figure even when the new one is drawn from fewer runs or seeds")
    p.add_argument("--declared", action="store_true",
                   help="draw the figures results/tables.yaml lists (figures:), with the inputs it names")
    p.add_argument("--specs", type=Path, default=SPECS, help="the table specs (default: results/tables.yaml)")
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
    p.add_argument("--layers", type=int, nargs="+", default=[0, 5, 11], help="layers of attention_at_init")
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


def _evidence(states: list[tuple[Run, bool]]) -> dict:
    runs = list({id(r): r for r, _ in states}.values())
    return {"runs": len(runs), "seeds": len({r.seed for r in runs})}


def _vit_comparison(runs: list[Run], args) -> tuple[Comparison | None, str]:
    """The attention experiment's runs, or None and why not."""
    if not any(run.group == args.vit_experiment for run in runs):
        return None, f"no finished runs of {args.vit_experiment} under {' '.join(map(str, args.runs))}"
    cmp = group_runs(runs, [args.vit_experiment], prefer=args.prefer)[args.vit_experiment]
    missing = [i for i in ("default", "mimetic") if args.seed not in cmp.rows.get(i, {})]
    if missing:
        return None, f"{args.vit_experiment} has no finished {' or '.join(missing)} run with seed {args.seed}"
    return cmp, ""


def _pair(cmp: Comparison, seed: int) -> list[tuple[Run, bool]]:
    """default and mimetic, step 0 then trained: the four states every per-run figure compares."""
    runs = [cmp.rows["default"][seed], cmp.rows["mimetic"][seed]]
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
                          crop=args.crop, title=f"{cmp.name}, seed {args.seed}")

        jobs.append(Job(out / f"qk_vo_{cmp.name}_s{args.seed}.png", stamp, draw, evidence=_evidence(states[:2])))
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
    inits = [i for i in ATTENTION_INITS if i in cmp.rows]
    runs = [run for i in inits for _, run in sorted(cmp.rows[i].items())]
    colours = {init: f"C{k}" for k, init in enumerate(ATTENTION_INITS)}
    # Colour = init, dashes = step 0, solid = trained: each init's before/after pair reads as one.
    styles = {f"{i}, {when}": {"color": colours[i], "ls": "--" if when == "step 0" else "-"}
              for i in inits for when in ("step 0", "trained")}

    def draw(path, stamp):
        groups = {}
        for trained in (False, True):
            for init in inits:
                seeds = sorted(cmp.rows[init].items())
                groups[f"{init}, {'trained' if trained else 'step 0'}"] = [
                    _products(run.path, trained, _state_label(run, trained)) for _, run in seeds]
        plot_diagonal_strength(groups, path, stamp, styles, title=cmp.name)

    stamp = fingerprint({"figure": "diagonal", "runs": runs_fingerprint(runs)})
    return [Job(out / f"diagonal_{cmp.name}.png", stamp, draw, evidence=_evidence([(r, 0) for r in runs]))]


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
                            title=f"Where the centre patch (red box) attends: {cmp.name}, seed {args.seed}, "
                                  f"mean over heads and the first {len(x)} test images of {args.images.name}")

    return [Job(out / f"attention_{cmp.name}_s{args.seed}.png", stamp, draw, evidence=_evidence(states[:2]))], ""


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
        jobs.append(Job(out / f"{name}_{cmp.metric.name}.png", runs_fingerprint(cmp.runs), draw,
                        evidence=_evidence([(r, 0) for r in cmp.runs])))
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

    return [Job(cov, stamp, draw, evidence=_evidence([(run, 0)])), Job(filters, stamp, draw,
                                                                         evidence=_evidence([(run, 0)]))], ""


# The two inits of the paper's attention figure; results/tables.yaml's figures: list may name others
# (label -> init options, as apply_init takes them), e.g. the successors of issue 22 side by side.
ATTENTION_AT_INIT = {"default": {"name": "default"}, "mimetic": {"name": "mimetic"}}


def attention_at_init_jobs(args, out: Path) -> tuple[list[Job], str]:
    """Step-0 attention of the paper's ViT-Tiny (fixed sin-cos PE), each init applied to the same base
    weights (default vs mimetic unless ``args.inits`` names others): mimetic init should already look local
    (a bright spot around the query), default uniform."""
    import torch

    from mimetic.analysis.attention_figures import image_batch, plot_attention_maps

    if not (args.images / "test").is_dir():
        return [], (f"{args.images} not found, or no image folder (train/, test/): unpack the CIFAR-10 slice with "
                    "`python -m zipfile -e ../shared/data/cifar10-jpeg-6k.zip data/` or pass --images")
    inits = dict(getattr(args, "inits", None) or ATTENTION_AT_INIT)
    x = image_batch(args.images, 8, image_size=32, normalise="batch")
    seed = 0
    made_from = {"notebook": "attention_at_init", "inputs": hashlib.sha256(x.numpy().tobytes()).hexdigest(),
                 "shape": list(x.shape), "layers": args.layers, "seed": seed}
    if inits != ATTENTION_AT_INIT:  # the paper's pair keeps the stamp it was first drawn with
        made_from["inits"] = inits
    stamp = fingerprint(made_from)
    name = getattr(args, "name", None) or "attention_at_init"

    def draw(path, stamp):
        from mimetic.init import apply_init
        from mimetic.models import DataSpec, ViTTiny, build_vit

        spec = DataSpec("classification", num_classes=10)
        torch.manual_seed(seed)
        base = build_vit(ViTTiny(name="vit_tiny"), spec).state_dict()
        models = []
        for label, options in inits.items():
            model = build_vit(ViTTiny(name="vit_tiny"), spec)
            model.load_state_dict(base)
            apply_init(model, dict(options), torch.Generator().manual_seed(seed))
            models.append((label, model))
        plot_attention_maps(models, x, args.layers, path, stamp,
                            "Where the centre patch (red box) attends at step 0 (ViT-Tiny, sin-cos PE)")

    return [Job(out / f"{name}.png", stamp, draw)], ""


# ----------------------------------------------------------------------------- the command


def declared_args(entry: dict, base: argparse.Namespace, root: Path) -> argparse.Namespace:
    """One ``figures:`` entry of results/tables.yaml as this script's arguments (paths relative to ``root``)."""
    keys = {"experiment": "vit_experiment", "init": "conv_init", "prefix": "conv_prefix", "n_images": "n_images"}
    args = argparse.Namespace(**vars(base))
    args.only = [entry["kind"]]
    if entry["kind"] not in KINDS:
        raise AnalysisError(f"figures: unknown kind {entry['kind']!r} in results/tables.yaml; "
                            f"kinds: {', '.join(KINDS)}")
    for key, value in entry.items():
        if key == "kind":
            continue
        name = "conv_experiment" if key == "experiment" and entry["kind"] == "conv" else keys.get(key, key)
        setattr(args, name, root / value if key == "images" else value)
    return args


def figure_jobs(runs: list[Run], args: argparse.Namespace) -> tuple[list[Job], list[str]]:
    """The jobs of the kinds in ``args.only`` (or, with ``args.declared``, of results/tables.yaml's list)."""
    if getattr(args, "declared", False):
        import yaml

        entries = (yaml.safe_load(Path(args.specs).read_text()) or {}).get("figures") or []
        root = getattr(args, "base", None) or Path.cwd()
        jobs, said = [], []
        for entry in entries:
            more, lines = figure_jobs(runs, declared_args(entry, argparse.Namespace(**{**vars(args),
                                                                                     "declared": False}), root))
            jobs, said = jobs + more, said + lines
        return jobs, said
    said, jobs = [], []
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
        elif kind == "attention_at_init":
            new, why = attention_at_init_jobs(args, args.out)
        else:
            new, why = conv_jobs(runs, args, args.out)
        if why:
            said.append(f"skipped {kind}: {why}")
        jobs += new
    if "products" in args.only and args.pretrained is None and not getattr(args, "quiet_pretrained", False):
        said.append("skipped the pre-trained ViT's qk_vo figure: no --pretrained checkpoint file given")
    for job in jobs:
        job.decision = decide_figure(job.path, job.stamp, args.overwrite, job.evidence,
                                     getattr(args, "replace_with_less", False))
    return jobs, said


def draw_jobs(jobs: list[Job]) -> list[str]:
    """Draw every job its decision allows (the refusals were raised before anything was drawn)."""
    said = []
    for job in jobs:
        if job.decision.action == "kept":
            said.append(job.decision.kept_line())
            continue
        if job.decision.action == "same inputs" and job.path.with_suffix(".pdf").exists():
            said.append(f"kept {job.path} (already made from the same inputs)")
            continue
        with figure_evidence(job.evidence):
            job.draw(job.path, job.stamp)
        how = {"new": "new", "same inputs": "same inputs", "overwrite": "replaced, --overwrite",
               "less": "replaced with less, --replace-with-less"}[job.decision.action]
        said.append(f"wrote {job.path} and .pdf ({how})")
    return said


def make_figures(args: argparse.Namespace) -> list[str]:
    runs, unreadable = scan_runs([Path(r) for r in args.runs if Path(r).is_dir() or r != "runs"])  # none: no runs
    said = [f"warning: left out an unreadable run: {u.message.splitlines()[0]}" for u in unreadable]
    jobs, lines = figure_jobs(runs, args)
    refused = [job.decision for job in jobs if job.decision.refused]
    if refused:
        raise refusal(refused, f"the default --out {DEFAULT_OUT}, or another --out")
    return said + lines + draw_jobs(jobs)


def main(argv: list[str] | None = None) -> int:
    return run_script(make_figures, parse_args(argv))


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    sys.exit(main())
