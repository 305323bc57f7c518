"""Ablation tables (results/tables.yaml): rows named by config values, paired by seed, one recipe, and the
transfer init."""

from __future__ import annotations

import pytest
import torch
from helpers import CONFIGS, REPO, TINY, composed
from test_tables import make_tables, write_run

from mimetic.analysis.runs import scan_runs
from mimetic.analysis.specs import Recipes, load_specs, tabulate
from mimetic.analysis.tables import gap_closed, mean_std

SPECS = load_specs(REPO / "results" / "tables.yaml")
RECIPES = Recipes(CONFIGS)


def table(name, root):
    return tabulate(SPECS.table(name), scan_runs([root])[0], RECIPES)


def rows(cmp, baseline):
    """Each row: its final values (mean, std, n), its paired gap to ``baseline`` and the seeds ahead."""
    out = {}
    for label in cmp.labels:
        diff = cmp.paired_final_diff(label, baseline) if label != baseline else []
        out[label] = (mean_std(cmp.final(label)), mean_std(diff), cmp.ahead(diff), sorted(cmp.rows[label]))
    return out

RECIPE = {"trainer": {"epochs": 3}, "model": {"name": "vit_micro", "pos_embed": "sincos", "pooling": "token"}}
COMPONENT_FINALS = {"default": [40.0, 41.0, 39.0], "mimetic": [45.0, 44.0, 46.0],
                    "mimetic_qk": [43.0, 42.0, 40.0], "mimetic_vo": [38.0, 40.0, 41.0]}


def run_with(root, experiment, init, seed, final, *, init_options=None, model=None, epochs=3, name=None):
    config = {"trainer": {"epochs": epochs}, "model": {**RECIPE["model"], **(model or {})},
              "init": {"name": init, **(init_options or {})}}
    curve = [final - 10.0, final - 5.0, final]
    return write_run(root, init, seed, curve, experiment, config=config, model="vit_micro", name=name)


def components(root):
    for init, finals in COMPONENT_FINALS.items():
        options = {"alpha_qk": 0.7, "alpha_vo": 0.4} if init == "mimetic" else {}
        for seed, final in enumerate(finals):
            run_with(root, "ablation_components", init, seed, final, init_options=options)


def test_components_rows_are_paired_against_default_in_order(tmp_path):
    components(tmp_path)
    cmp = table("components", tmp_path).cmp
    got = rows(cmp, "default")
    assert list(got) == ["default", "mimetic", "mimetic_qk", "mimetic_vo"]
    assert got["mimetic"][1][0] == pytest.approx(5.0) and got["mimetic"][2] == 3
    assert got["mimetic_qk"][1][0] == pytest.approx(5 / 3) and got["mimetic_qk"][2] == 3
    assert got["mimetic_vo"][2] == 1 and got["mimetic_vo"][3] == [0, 1, 2]


def test_grid_takes_its_paper_cell_from_the_components_runs_and_leaves_default_out(tmp_path):
    components(tmp_path)
    for seed in range(3):
        for qk in (0.3, 0.7, 1.0):
            for vo in (0.2, 0.4, 0.7):
                if (qk, vo) != (0.7, 0.4):
                    run_with(tmp_path, "ablation_alpha_beta", "mimetic", seed, 30 + 10 * qk + vo,
                             init_options={"alpha_qk": qk, "alpha_vo": vo}, name=f"g{qk}-{vo}-{seed}")
    spec = SPECS.table("alpha_beta")
    cmp = table("alpha_beta", tmp_path).cmp
    assert len(cmp.rows) == 9 and cmp.labels[0] == spec.baseline_label == "α_qk=β_qk=0.7, α_vo=β_vo=0.4"
    assert cmp.final(spec.baseline_label) == COMPONENT_FINALS["mimetic"]
    assert rows(cmp, spec.baseline_label)["α_qk=β_qk=1.0, α_vo=β_vo=0.7"][0][0] == pytest.approx(40.7)


def test_runs_of_another_recipe_are_refused_by_name(tmp_path):
    components(tmp_path)
    run_with(tmp_path, "ablation_components", "mimetic_qk", 3, 50.0, epochs=20)
    result = table("components", tmp_path)
    assert result.cmp is None and "trainer.epochs: 20 in 1 run" in result.problem


def test_runs_on_other_images_are_refused(tmp_path):
    import yaml

    components(tmp_path)
    other = run_with(tmp_path, "ablation_components", "mimetic_qk", 3, 50.0)
    config = yaml.safe_load((other / "config.yaml").read_text())
    config["_run"]["data_fingerprint"] = "feedbeef"
    (other / "config.yaml").write_text(yaml.safe_dump(config))
    assert "data fingerprint: 'feedbeef' in 1 run" in table("components", tmp_path).problem


def test_no_baseline_runs_names_the_sweep(tmp_path):
    run_with(tmp_path, "ablation_components", "mimetic", 0, 45.0)
    missing = table("components", tmp_path).missing
    assert "no runs of the baseline row (default)" in missing and "experiment=ablation_components" in missing


def test_gap_closed_is_the_ratio_of_mean_paired_gaps(tmp_path):
    finals = {"default": [40.0, 42.0], "mimetic": [45.0, 44.0], "pretrained_attention": [50.0, 46.0]}
    for init, values in finals.items():
        for seed, final in enumerate(values):
            run_with(tmp_path, "transfer_target", init, seed, final)
    cmp = table("transfer", tmp_path).cmp
    ratio, per_seed = gap_closed(cmp, "default", "mimetic", "pretrained_attention")
    assert ratio == pytest.approx(3.5 / 7.0) and per_seed == pytest.approx([0.5, 0.5])


def test_make_tables_writes_every_ablation_with_figures_and_regenerates_unchanged(tmp_path, capsys):
    components(tmp_path / "runs")
    for seed in range(2):
        for pe in ("sincos", "learned"):
            for pool in ("token", "mean"):
                for init in ("default", "mimetic"):
                    if (pe, pool) != ("sincos", "token"):
                        run_with(tmp_path / "runs", "ablation_pos_pool", init, seed, 40 + seed,
                                 model={"pos_embed": pe, "pooling": pool}, name=f"p{pe}{pool}{init}{seed}")
    out = tmp_path / "out" / "ablations.md"
    args = ["--runs", str(tmp_path / "runs"), "--tables", "components", "pos_pool", "--out", str(out.parent)]
    assert make_tables.main(args) == 0
    text = out.read_text()
    assert "## ablation components" in text and "## ablation pos_pool" in text
    assert "| mimetic | 3 | 45.00 ± 1.00 |" in text and "| +5.00 ± 2.00 | 3/3 |" in text
    assert "mimetic, learned, mean − baseline" in text  # the per-epoch gap table
    assert "| learned, mean | 40.50 ± 0.71 | 40.50 ± 0.71 | +0.00 ± 0.00 | 0/2 |" in text  # mimetic vs default within
    for name in ("ablations_components_bars.png", "ablations_components_curves.png", "ablations_pos_pool_bars.png"):
        assert (out.parent / "figures" / name).stat().st_size > 1000
    capsys.readouterr()
    assert make_tables.main(args) == 0
    assert "unchanged" in capsys.readouterr().out


def test_pretrained_attention_copies_only_attention_from_a_project_run(tmp_path, folder_root):
    """A trained run's directory is a valid init.checkpoint; only qkv/proj change, bit-exactly."""
    from mimetic.init import pretrained_attention_
    from mimetic.models import build_model
    from mimetic.models.base import DataSpec
    from mimetic.train.config import load_config
    from mimetic.train.run import run

    source = tmp_path / "source"
    run(composed(*TINY, "dataset=image_folder", f"dataset.root={folder_root}", "trainer.max_steps=3"),
        run_dir=source)
    trained = torch.load(source / "checkpoint.pt", weights_only=True)["model"]
    cfg = load_config(composed(*TINY, "dataset=image_folder", f"dataset.root={folder_root}"))
    spec = DataSpec("classification", num_classes=trained["head.weight"].shape[0], image_size=32)
    fresh = build_model(cfg.model, spec)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    assert pretrained_attention_(fresh, source) == 2
    for key, value in fresh.state_dict().items():
        if ".attn.qkv." in key or ".attn.proj." in key:
            assert torch.equal(value, trained[key]), key
        else:
            assert torch.equal(value, before[key]), key

    # The report says how much diagonal structure the copied attention has, beside mimetic's at step 0.
    from mimetic.analysis.sections import copied_attention_block
    from mimetic.analysis.tables import Comparison

    base = [*TINY, "dataset=image_folder", f"dataset.root={folder_root}", "trainer.max_steps=1"]
    run(composed(*base, "init=mimetic"), run_dir=tmp_path / "mimetic")
    run(composed(*base, "init=pretrained_attention", f"init.checkpoint={source}"), run_dir=tmp_path / "copied")
    found = {r.init: {0: r} for r in scan_runs([tmp_path / "mimetic", tmp_path / "copied"])[0]}
    cmp = Comparison("transfer", found)
    note, _ = copied_attention_block(cmp)
    assert "run source, trained): QK " in note and "mimetic init's, at step 0 of mimetic: QK +0." in note
