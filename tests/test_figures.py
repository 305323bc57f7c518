"""Figures from runs and fresh models: each function runs and writes a non-empty PNG and PDF with its stamp,
the models behind them are the runs' own (step 0 rebuilt exactly, trained from the checkpoint), and
make_figures.py skips what it lacks, keeps what it made from the same inputs and refuses the rest."""

import json
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_vit
from helpers import TINY, composed
from test_tables import write_run

from mimetic.analysis.outputs import png_evidence, png_stamp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import make_figures  # noqa: E402

VIT, CONV = "image_folder-vit_micro", "image_folder-convmixer_micro"  # run groups of runs made without experiment=


def written(path: Path, stamp: str | None = None) -> bool:
    """A non-empty PNG and a PDF beside it, the PNG carrying ``stamp``."""
    pdf = path.with_suffix(".pdf")
    ok = path.stat().st_size > 1000 and pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 1000
    return ok and (stamp is None or png_stamp(path) == stamp)


@pytest.fixture(scope="module")
def vit_runs(tmp_path_factory, folder_root):
    """Finished tiny ViT runs (1 epoch): default and mimetic, seed 0, in one folder (group image_folder-vit_micro)."""
    from mimetic.train.run import run

    root = tmp_path_factory.mktemp("vit_runs")
    for init in ("default", "mimetic"):
        cfg = composed(*TINY, "dataset=image_folder", f"dataset.root={folder_root}", "trainer.epochs=1",
                       f"init={init}")
        run(cfg, run_dir=root / init)
    return root


@pytest.fixture(scope="module")
def conv_run(tmp_path_factory, folder_root):
    from mimetic.train.run import run

    root = tmp_path_factory.mktemp("conv_runs")
    not_vit = [a for a in TINY if not a.startswith("model")]
    cfg = composed(*not_vit, "dataset=image_folder", f"dataset.root={folder_root}", "model=convmixer_micro",
                   "model.dim=16", "model.depth=2", "model.kernel_size=3", "trainer.epochs=1")
    run(cfg, run_dir=root / "default")
    return root


def test_save_figure_writes_a_stamped_png_and_a_reproducible_pdf(tmp_path):
    from mimetic.analysis.figures import pyplot
    from mimetic.analysis.outputs import save_figure

    plt = pyplot()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    save_figure(fig, tmp_path / "a.png", "abc")
    first = (tmp_path / "a.pdf").read_bytes()
    save_figure(fig, tmp_path / "a.png", "abc")
    plt.close(fig)
    assert written(tmp_path / "a.png", "abc") and b"mimetic-inputs:abc" in first
    assert (tmp_path / "a.pdf").read_bytes() == first  # no creation date: same inputs, same bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pdf", "a.png"]  # no temporary left behind


def test_diagonal_strength_is_the_cosine_with_the_identity():
    from mimetic.analysis.products import diagonal_strength

    d = 64
    z = torch.randn(d, d, generator=torch.Generator().manual_seed(0)) / d**0.5
    assert diagonal_strength(3 * torch.eye(d)) == pytest.approx(1.0)
    assert diagonal_strength(-0.1 * torch.eye(d)) == pytest.approx(-1.0)
    assert abs(diagonal_strength(z)) < 3 / d**0.5
    assert diagonal_strength(0.7 * z + 0.7 * torch.eye(d)) == pytest.approx(2**-0.5, abs=0.05)


def test_a_runs_step0_model_is_the_one_it_trained_from(vit_runs):
    from mimetic.analysis.run_models import model_at_step0, trained_model
    from mimetic.init.diagnostics import attention_products, summarize_products

    run_dir = vit_runs / "mimetic"
    recorded = json.loads((run_dir / "init_diagnostics.json").read_text())["attention"]["mean"]
    rebuilt = summarize_products(attention_products(model_at_step0(run_dir)))["mean"]
    assert rebuilt == pytest.approx(recorded, rel=1e-9)
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"]
    trained = trained_model(run_dir).state_dict()
    assert all(torch.equal(trained[k], v) for k, v in state.items())


def test_products_figure_and_diagonal_strength_figure(tmp_path):
    from mimetic.analysis.product_figures import plot_diagonal_strength, plot_products
    from mimetic.analysis.products import model_products
    from mimetic.init import mimetic_attention_

    default = make_vit(dim=32, heads=2, depth=2, patch=8)
    mimetic = make_vit(dim=32, heads=2, depth=2, patch=8)
    mimetic_attention_(mimetic, generator=torch.Generator().manual_seed(0))
    states = [model_products(default, "default"), model_products(mimetic, "mimetic")]
    assert states[1].depth == 2 and states[1].heads == 2 and states[1].vo[0].shape == (32, 32)
    plot_products(states, tmp_path / "qk_vo.png", "s1", crop=16)
    plot_diagonal_strength({"default": states[:1], "mimetic": states[1:] * 2}, tmp_path / "diag.png", "s2",
                           styles={"mimetic": {"color": "C1", "ls": "--"}})
    assert written(tmp_path / "qk_vo.png", "s1") and written(tmp_path / "diag.png", "s2")


def test_attention_maps_figure_and_its_inputs(tmp_path, folder_root):
    from mimetic.analysis.attention_figures import centre_query, image_batch, plot_attention_maps, query_attention

    model = make_vit(dim=32, heads=2, depth=2, patch=8)
    x = image_batch(folder_root, n=4, image_size=32, normalise="train")
    assert x.shape == (4, 3, 32, 32) and abs(x.mean().item()) < 1.0
    batch = image_batch(folder_root, n=4, image_size=32, normalise="batch")
    assert batch.mean((0, 2, 3)).abs().max() < 1e-5  # normalised by the batch's own statistics
    assert centre_query(model) == 1 + 2 * 4 + 2  # 4x4 grid after the class token
    maps = query_attention(model, x, [0, 1])
    assert maps[0].shape == (4, 4) and 0.5 < maps[0].sum() <= 1.0 + 1e-6
    plot_attention_maps([("a", model), ("b", model)], x, [0, 1], tmp_path / "attn.png", "s", "title")
    assert written(tmp_path / "attn.png", "s")


def test_curves_figure(tmp_path):
    from mimetic.analysis.figures import plot_curves
    from mimetic.analysis.runs import collect_runs
    from mimetic.analysis.specs import group_runs

    for seed in (0, 1):
        for init, end in (("default", 40.0), ("mimetic", 50.0)):
            write_run(tmp_path / "runs", init, seed, [10.0, 30.0 + seed, end + seed])
    cmp = group_runs(collect_runs(tmp_path / "runs"))["exp"]
    plot_curves(cmp, tmp_path / "curves.png", stamp="s")
    assert written(tmp_path / "curves.png", "s")


def test_conv_figures_from_a_trained_run(tmp_path, conv_run):
    from mimetic.analysis.conv_figures import conv_figures_stamp, draw_conv_figures
    from mimetic.analysis.run_models import checkpoint_state

    run_dir = conv_run / "default"
    state = checkpoint_state(run_dir)
    stamp = conv_figures_stamp(run_dir, state, 0.25, 1.0)
    assert stamp != conv_figures_stamp(run_dir, state, 0.5, 1.0)
    draw_conv_figures(run_dir, state, tmp_path / "cov.png", tmp_path / "filters.png", stamp, 0.25, 1.0)
    assert written(tmp_path / "cov.png", stamp) and written(tmp_path / "filters.png", stamp)


def test_pretrained_vit_reads_only_attention_from_a_file(tmp_path):
    import timm

    from mimetic.analysis import AnalysisError
    from mimetic.analysis.run_models import pretrained_vit

    source = timm.create_model("mimetic_vit_micro_patch4_32", num_classes=10)
    torch.save(source.state_dict(), tmp_path / "vit.pth")
    model = pretrained_vit(tmp_path / "vit.pth", "mimetic_vit_micro_patch4_32")
    assert torch.equal(model.blocks[3].attn.qkv.weight, source.blocks[3].attn.qkv.weight)
    with pytest.raises(AnalysisError, match="not found"):
        pretrained_vit(tmp_path / "nope.pth")


def test_make_figures_draws_every_kind_then_keeps_then_refuses(tmp_path, vit_runs, conv_run, folder_root, capsys):
    import timm

    out = tmp_path / "figures"
    timm_vit = timm.create_model("mimetic_vit_micro_patch4_32", num_classes=10)
    torch.save(timm_vit.state_dict(), tmp_path / "vit.pth")
    argv = ["--runs", str(vit_runs), str(conv_run), "--out", str(out), "--vit-experiment", VIT,
            "--conv-experiment", CONV, "--images", str(folder_root), "--n-images", "2",
            "--pretrained", str(tmp_path / "vit.pth"), "--pretrained-arch", "mimetic_vit_micro_patch4_32"]
    assert make_figures.main(argv) == 0
    said = capsys.readouterr().out
    names = [f"qk_vo_{VIT}_s0", "qk_vo_pretrained", f"diagonal_{VIT}", f"attention_{VIT}_s0", f"{VIT}_test_acc",
             f"{CONV}_test_acc", "conv_proxy_covariance", "conv_proxy_filters", "attention_at_init"]
    assert all(written(out / f"{n}.png") for n in names), said
    assert "skipped" not in said
    assert png_evidence(out / f"diagonal_{VIT}.png") == {"runs": 2, "seeds": 1}  # what it is drawn from
    assert png_evidence(out / "attention_at_init.png") is None  # drawn from images, not runs

    assert make_figures.main(argv) == 0  # the same inputs: nothing redrawn
    assert capsys.readouterr().out.count("kept ") == len(names)

    other = argv + ["--crop", "8"]  # other inputs for the two product figures: refused, nothing written
    before = {n: (out / f"{n}.png").read_bytes() for n in names}
    assert make_figures.main(other) == 2
    err = capsys.readouterr().err
    assert "refusing to replace" in err and f"qk_vo_{VIT}_s0.png" in err and "--overwrite" in err
    assert all((out / f"{n}.png").read_bytes() == before[n] for n in names)


def test_make_figures_says_what_it_skips_and_why(tmp_path, conv_run, capsys):
    out = tmp_path / "figures"
    argv = ["--runs", str(conv_run), "--out", str(out), "--conv-experiment", "nope", "--images", str(tmp_path)]
    assert make_figures.main(argv) == 0
    said = capsys.readouterr().out
    assert "skipped products: no finished runs of ablation_components" in said
    assert "skipped conv: no finished default run of nope with seed 0" in said
    assert "no --pretrained checkpoint file given" in said
    assert make_figures.parse_args([]).out == Path("outputs/figures")  # never results/ by default
