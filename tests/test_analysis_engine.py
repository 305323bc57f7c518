"""One table engine: declarative specs (a YAML written here) rendered from run directories written here.

Every column and block, row factors with label formats, aliases of folded experiments, the recipe check
(overrides against the experiment file's grid; mixed recipes), conflicts, the commands derived from the
experiment name and its grid, the frozen/trained pairs of the conv tables, the keep-the-evidence rule for
sections and figures, and the one command (``make_tables.py --all``) leaving a fresh clone's committed
results byte for byte as they are. Nothing trains.
"""

from __future__ import annotations

import shutil

import pytest
import yaml
from helpers import REPO
from test_tables import make_tables, write_run

from mimetic.analysis.outputs import png_evidence, png_stamp
from mimetic.analysis.runs import scan_runs
from mimetic.analysis.sections import Context, render_section, split_report
from mimetic.analysis.specs import Recipes, commands, grid_text, load_specs, tabulate

LAYOUTS = yaml.safe_load((REPO / "results" / "tables.yaml").read_text())["layouts"]
TOY_EXPERIMENT = """# @package _global_
defaults:
  - override /model: vit_micro
  - override /dataset: digits
experiment: toy
trainer:
  epochs: 3
hydra:
  sweeper:
    params:
      seed: 0,1,2
      init: default,mimetic,mimetic_vo,mimetic_vo_opposite
      model.pooling: token,mean
"""


@pytest.fixture
def configs(tmp_path):
    """configs/ with the project's train.yaml, its init option files and one experiment, ``toy``, with a grid."""
    root = tmp_path / "configs"
    (root / "experiment").mkdir(parents=True)
    shutil.copy(REPO / "configs" / "train.yaml", root / "train.yaml")
    shutil.copytree(REPO / "configs" / "init", root / "init")
    (root / "experiment" / "toy.yaml").write_text(TOY_EXPERIMENT)
    return root


def specs_file(path, tables, files=None):
    path.write_text(yaml.safe_dump({"layouts": LAYOUTS, "files": files or {}, "tables": tables},
                                   allow_unicode=True, sort_keys=False))
    return path


def toy_run(root, init, seed, curve, *, experiment="toy", options=None, extra=(), config=None, name=None, **kw):
    """A run of the toy experiment: its config records init.name (+ options), its overrides the grid's job."""
    choice = "mimetic_vo_opposite" if (options or {}).get("sign_vo") == 1 else init
    overrides = [f"experiment={experiment}", f"seed={seed}", f"init={choice}", *extra]
    cfg = {"init": {"name": init, **(options or {})}, "trainer": {"epochs": 3}, **(config or {})}
    return write_run(root, init, seed, curve, experiment, overrides=overrides, config=cfg,
                     name=name or f"{experiment}-{choice}-{'-'.join(extra)}-s{seed}", **kw)


def gpt_like(root, seeds=(0, 1, 2)):
    """Perplexity runs (lower is better) with a second metric, test_ppl_at_best_val, in their summaries."""
    import json

    arms = {"default": (200.0, {}), "mimetic": (190.0, {"sign_vo": -1}), "mimetic_vo": (230.0, {"sign_vo": -1}),
            "mimetic_vo_opposite": (180.0, {"sign_vo": 1})}
    for seed in seeds:
        for arm, (end, options) in arms.items():
            init = "mimetic_vo" if arm == "mimetic_vo_opposite" else arm
            path = toy_run(root, init, seed, [400.0 + seed, 300.0, end + seed], options=options, metric="test_ppl",
                           steps=[10, 20, 30])
            summary = json.loads((path / "summary.json").read_text())
            summary["test_ppl_at_best_val"] = end - 1.0 + 2 * seed
            (path / "summary.json").write_text(json.dumps(summary))


GPT_SPEC = {"file": "lm.md", "title": "a perplexity table", "experiments": ["toy"], "paper": ["wikitext103"],
            "rows": [{"key": "init", "values": ["default", "mimetic", "mimetic_vo"]}],  # configs/init names the rows
            "baseline": {"init": "default"},
            "blocks": ["title", "provenance",
                       {"rows": ["n", "final", "best", "paper", "pairs", "gap", "ci", "ahead",
                                 "final:test_ppl_at_best_val", "gap:test_ppl_at_best_val",
                                 "ci:test_ppl_at_best_val", "ahead:test_ppl_at_best_val", "seeds"]},
                       {"evals": {"ahead": True}}, {"pairs": ["pairs", "gap", "paper", "ahead"]}, "paper_notes",
                       "figures", "recorded"],
            "figures": {"curves": "lm_curves", "bars": "lm_bars"}}


def table(tmp_path, configs, spec: dict, name="t"):
    specs = load_specs(specs_file(tmp_path / "tables.yaml", {name: spec}), configs)
    return tabulate(specs.table(name), scan_runs([tmp_path / "runs"])[0], Recipes(configs))


def test_every_column_and_the_sign_factor_of_a_perplexity_table(tmp_path, configs):
    gpt_like(tmp_path / "runs")
    result = table(tmp_path, configs, GPT_SPEC)
    cmp = result.cmp
    assert cmp.labels == ["default", "mimetic", "mimetic_vo", "mimetic_vo_opposite"]  # sign_vo=1 names its row
    assert not cmp.metric.higher_is_better and result.evidence == {"runs": 12, "seeds": 3}
    paper = [p for p in __import__("mimetic.analysis.paper", fromlist=["x"]).load_paper_numbers(
        REPO / "results" / "paper_numbers.yaml")]
    text = render_section(result, Context(paper=paper, recipes=Recipes(configs))).text
    lines = text.splitlines()
    assert lines[0] == "## t" and lines[1].endswith("; runs 12, seeds 3 -->")
    header = next(line for line in lines if line.startswith("| row |"))
    assert header == " | ".join([
        "| row", "n", "final test perplexity", "best test perplexity", "paper", "pairs", "paired gap to default",
        "95% CI of the gap", "seeds ahead (lower is better)", "final test perplexity at the best val evaluation",
        "paired gap to default in test perplexity at the best val evaluation",
        "95% CI of the gap in test perplexity at the best val evaluation",
        "seeds ahead in test perplexity at the best val evaluation (lower is better)", "seeds |"])
    # opposite: 180+s against default's 200+s: -20 on every seed; its t-interval is a point (std 0)
    assert ("| mimetic_vo_opposite | 3 | 181.00 ± 1.00 | 181.00 ± 1.00 |  | 3 | -20.00 ± 0.00 | [-20.00, -20.00] | "
            "3/3 | 181.00 ± 2.00 | -20.00 ± 0.00 | [-20.00, -20.00] | 3/3 | 0,1,2 |") in lines
    assert "| **default** (baseline) | 3 | 201.00 ± 1.00 | 201.00 ± 1.00 |  | – | – | – | – | 201.00 ± 2.00 | – |" \
        in text
    assert "| mimetic − default | 3 | -10.00 ± 0.00 | smaller gains [p1] | 2/3 |" not in text  # 3/3: lower wins
    assert "| mimetic − default | 3 | -10.00 ± 0.00 | smaller gains [p1] | 3/3 |" in text
    assert "Paired gap to the baseline (default) at every step (seeds ahead):" in text
    assert "| 30 | -10.00 ± 0.00 (3/3) | +30.00 ± 0.00 (0/3) | -20.00 ± 0.00 (3/3) |" in text
    assert "- [p1] mimetic vs default: \"smaller gains\" — source: paper abstract" in text
    assert "- sweep: `python train.py -m experiment=toy` (grid: seed 0,1,2 × init default,mimetic,mimetic_vo," \
           "mimetic_vo_opposite × model.pooling token,mean (24 runs))" in text
    assert "- table: `python scripts/make_tables.py --tables t`" in text
    assert "- `python train.py -m experiment=toy init=mimetic_vo_opposite seed=0,1,2`" in text  # recorded


def test_a_two_factor_grid_within_pairs_and_evals(tmp_path, configs):
    root = tmp_path / "runs"
    for seed in range(2):
        for init, base in (("default", 40.0), ("mimetic", 45.0)):
            for pooling, drop in (("token", 0.0), ("mean", 5.0)):
                toy_run(root, init, seed, [base - 10, base - drop + seed], extra=[f"model.pooling={pooling}"],
                        config={"model": {"name": "m", "pooling": pooling}})
    spec = {"file": "g.md", "title": "two factors", "experiments": ["toy"],
            "rows": ["init.name", {"key": "model.pooling", "format": {"token": "trained", "mean": "frozen"},
                                   "values": ["token", "mean"]}],
            "baseline": {"init.name": "default", "model.pooling": "token"},
            "blocks": [{"rows": ["n", "final", "gap", "ahead"]}, "grid",
                       {"within": {"key": "init.name", "value": "mimetic", "against": "default"}},
                       {"pairs": {"title": "Frozen against trained", "rows": {"model.pooling": "mean"},
                                  "against": {"model.pooling": "token"}, "evals": True}},
                       {"share": {"low": "default, trained", "mid": "mimetic, frozen", "high": "mimetic, trained"}}]}
    result = table(tmp_path, configs, spec)
    assert result.cmp.labels == ["default, trained", "default, frozen", "mimetic, trained", "mimetic, frozen"]
    text = render_section(result, Context()).text
    assert "| mimetic, frozen | 2 | 40.50 ± 0.71 | +0.00 ± 0.00 | 0/2 |" in text
    assert "| · \\ · | trained | frozen |" not in text and "Final test acc on the grid:" in text
    assert "| trained | 40.50 ± 0.71 | 45.50 ± 0.71 | +5.00 ± 0.00 | 2/2 |" in text  # within each setting
    assert "| default, frozen − default, trained | 2 | -5.00 ± 0.00 | [-5.00, -5.00] | 0/2 |" in text
    assert "| 2 | -5.00 ± 0.00 (0/2) | -5.00 ± 0.00 (0/2) |" in text  # the pairs at every epoch
    assert "Share of the default, trained → mimetic, trained gap that mimetic, frozen closes: **0.00**" in text


def test_runs_of_another_recipe_are_listed_and_never_counted(tmp_path, configs):
    gpt_like(tmp_path / "runs", seeds=(0, 1))
    root = tmp_path / "runs"
    toy_run(root, "default", 2, [1.0, 500.0], metric="test_ppl", extra=["trainer.epochs=1"],
            config={"trainer": {"epochs": 1}})
    smoke = toy_run(root, "mimetic", 2, [1.0, 1.0], metric="test_ppl", extra=["trainer.smoke=true"],
                    config={"trainer": {"smoke": True}})
    toy_run(root, "mimetic", 3, [1.0, 2.0], metric="test_ppl", extra=["trainer.epochs=3"])  # the recipe's own value
    result = table(tmp_path, configs, GPT_SPEC)
    assert result.evidence == {"runs": 9, "seeds": 3}  # 8 + the run that repeats the recipe's value
    why = {o.why: [r.path for r in o.runs] for o in result.off}
    assert why[("override trainer.epochs=1 (the recipe: trainer.epochs=3)",)]
    assert why[("are smoke runs (trainer.smoke=true: one step on a handful of samples)",)] == [smoke]
    text = render_section(result, Context(recipes=Recipes(configs))).text
    assert "- not counted: 1 run(s) of another recipe: they override trainer.epochs=1 (the recipe: " \
           "trainer.epochs=3)" in text


def test_runs_of_two_recipes_or_two_runs_in_a_slot_are_errors_that_say_how(tmp_path, configs, capsys):
    gpt_like(tmp_path / "runs", seeds=(0,))
    config = yaml.safe_load(next((tmp_path / "runs").glob("toy-default-*")).joinpath("config.yaml").read_text())
    other = toy_run(tmp_path / "runs", "default", 1, [1.0, 210.0], metric="test_ppl")
    config = yaml.safe_load((other / "config.yaml").read_text())
    config["_run"]["data_fingerprint"] = "feedbeef"
    (other / "config.yaml").write_text(yaml.safe_dump(config))
    assert "data fingerprint: 'feedbeef' in 1 run(s)" in table(tmp_path, configs, GPT_SPEC).problem
    shutil.rmtree(other)
    toy_run(tmp_path / "runs", "default", 0, [1.0, 205.0], metric="test_ppl", name="again", finished_at=2e9)
    specs = specs_file(tmp_path / "tables.yaml", {"t": GPT_SPEC})
    argv = ["--tables", "t", "--specs", str(specs), "--configs", str(configs), "--runs", str(tmp_path / "runs"),
            "--out", str(tmp_path / "out")]
    assert make_tables.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: t: 1 (row, seed) slot(s) hold more than one finished run") and "again" in err
    assert not (tmp_path / "out").exists()
    assert make_tables.main(argv + ["--prefer", "newest"]) == 0
    assert "| **default** (baseline) | 1 | 205.00 |" in (tmp_path / "out" / "lm.md").read_text()


def test_runs_of_a_folded_experiment_count_with_the_values_it_stood_for(tmp_path, configs):
    root = tmp_path / "runs"
    for seed in range(3):
        toy_run(root, "default", seed, [10.0, 50.0 + seed], config={"model": {"name": "m", "freeze_depthwise": False}})
        toy_run(root, "default", seed, [10.0, 45.0], experiment="toy_frozen",  # an older run: its config lacks it
                name=f"old-frozen-{seed}")
        toy_run(root, "dw_covariance", seed, [10.0, 46.0 + seed], experiment="toy_frozen", name=f"old-cov-{seed}",
                options={"sigma_first": 0.25, "sigma_last": 1.0})  # the default sigmas: no option file of its own
    conv = yaml.safe_load((REPO / "results" / "tables.yaml").read_text())["tables"]["proxy_conv_cifar_slice"]
    spec = {**conv, "experiments": ["toy"], "aliases": {"toy_frozen": {"model.freeze_depthwise": True}},
            "replaces": [], "prefer": None}
    result = table(tmp_path, configs, spec)
    cmp = result.cmp
    assert cmp.labels == ["default, trained", "default, frozen", "dw_covariance, frozen"]
    text = render_section(result, Context()).text
    assert "| dw_covariance, frozen − default, frozen | 3 | +2.00 ± 1.00 |" in text
    assert "| default, frozen − default, trained | 3 | -6.00 ± 1.00 | [-8.48, -3.52] | 0/3 |" in text
    assert "The same pairs at every epoch (pp) (seeds ahead):" in text


def test_commands_are_derived_from_the_experiment_and_its_grid(tmp_path, configs):
    specs = load_specs(specs_file(tmp_path / "tables.yaml", {
        "toy": {"file": "t.md", "layout": "comparison"},
        "arm": {"file": "t.md", "layout": "comparison", "experiments": ["toy"],
                "arms": {"pretrained_attention": {"init.checkpoint": "<a run>"}}},
        "group": {"file": "t.md", "layout": "comparison", "experiments": ["d-m"],
                  "grid": {"model": "vit_micro", "seed": "0,1", "init": "default,mimetic"}},
        "nofile": {"file": "t.md", "layout": "comparison"}}))
    recipes = Recipes(configs)
    assert commands(specs.table("toy"), recipes) == ["python train.py -m experiment=toy"]
    assert commands(specs.table("arm"), recipes) == [
        "python train.py -m experiment=toy", "python train.py -m experiment=toy init=pretrained_attention "
                                             "init.checkpoint=<a run>"]
    assert commands(specs.table("group"), recipes) == ["python train.py -m model=vit_micro seed=0,1 "
                                                       "init=default,mimetic"]
    assert grid_text(specs.table("group"), recipes) == "model vit_micro × seed 0,1 × init default,mimetic (4 runs)"
    assert grid_text(specs.table("nofile"), recipes) == "no configs/experiment/nofile.yaml"
    listed = make_tables.main(["--list", "--specs", str(tmp_path / "tables.yaml"), "--configs", str(configs)])
    assert listed == 0


def test_the_committed_specs_load_and_name_their_rows_by_the_init_options():
    specs = load_specs(REPO / "results" / "tables.yaml", REPO / "configs")
    assert {"proxy_cifar_slice", "components", "alpha_beta", "pos_pool", "transfer", "proxy_conv_cifar_slice",
            "proxy_gpt_wikitext_slice", "proxy_convmixer_cifar_slice", "proxy_convnext_cifar_slice",
            "successors_cifar_slice", "successors_digits"} <= set(specs.tables)
    conv = specs.table("proxy_conv_cifar_slice")
    assert conv.baseline_label == "default, trained"
    option = conv.init_option  # the option file whose keys a run's config has, the most specific one
    assert option({"init.name": "dw_covariance", "init.sigma_first": 0.01, "init.sigma_last": 0.01}) == "dw_iid"
    assert option({"init.name": "dw_covariance", "init.sigma_first": 0.25, "init.sigma_last": 1.0}) == "dw_covariance"
    assert option({"init.name": "mimetic_vo", "init.sign_vo": 1}) == "mimetic_vo_opposite"
    assert option({"init.name": "mimetic_vo", "init.sign_vo": -1}) == "mimetic_vo"
    assert option({"init.name": "impulse", "init.kernel_size": 5, "init.assign": "network"}) == "impulse_k5"
    assert option({"init.name": "pretrained_attention", "init.checkpoint": "runs/x"}) == "pretrained_attention"
    assert conv.label({"init": "dw_iid", "model.freeze_depthwise": True}) == "dw_iid, frozen"
    assert specs.table("alpha_beta").baseline_label == "α_qk=β_qk=0.7, α_vo=β_vo=0.4"


# ----------------------------------------------------------------------------- keep the evidence; one command


def test_a_section_and_its_figures_resting_on_more_runs_are_kept(tmp_path, configs, capsys):
    gpt_like(tmp_path / "runs")
    specs = specs_file(tmp_path / "tables.yaml", {"t": GPT_SPEC})
    argv = ["--tables", "t", "--specs", str(specs), "--configs", str(configs), "--runs", str(tmp_path / "runs"),
            "--out", str(tmp_path / "out")]
    assert make_tables.main(argv) == 0
    report, curves = tmp_path / "out" / "lm.md", tmp_path / "out" / "figures" / "lm_curves.png"
    first, picture = report.read_bytes(), curves.read_bytes()
    assert png_evidence(curves) == {"runs": 12, "seeds": 3}
    assert png_stamp(curves) == split_report(report.read_text())[1][0].stamp
    for path in (tmp_path / "runs").glob("*-s2"):
        shutil.rmtree(path)  # one seed fewer
    capsys.readouterr()
    assert make_tables.main(argv) == 0
    said = capsys.readouterr().out
    assert f"kept section t in {report}: the new one would rest on less (runs 8, seeds 2 now; runs 12, seeds 3 " \
           "before); --replace-with-less replaces it" in said
    assert report.read_bytes() == first and curves.read_bytes() == picture
    assert make_tables.main(argv + ["--replace-with-less"]) == 0
    assert split_report(report.read_text())[1][0].evidence == {"runs": 8, "seeds": 2}
    assert png_evidence(curves) == {"runs": 8, "seeds": 2}


def test_the_one_command_leaves_a_fresh_clone_byte_for_byte_as_committed(tmp_path, capsys):
    shutil.copytree(REPO / "results", tmp_path / "results", ignore=shutil.ignore_patterns("*.pt"))
    shutil.copy(REPO / "README.md", tmp_path / "README.md")
    before = {p: p.read_bytes() for p in [*tmp_path.rglob("*.md"), *tmp_path.rglob("*.png"), *tmp_path.rglob("*.pdf")]}
    argv = ["--all", "--base", str(tmp_path), "--out", str(tmp_path / "results"), "--readme",
            str(tmp_path / "README.md")]
    assert make_tables.main(argv) == 0  # no run directories at all
    said = capsys.readouterr().out
    after = {p: p.read_bytes() for p in before}
    changed = [str(p.relative_to(tmp_path)) for p in before if after[p] != before[p]]
    assert not changed, f"the one command changed {changed}; regenerate and commit them: {said}"
    assert "every committed measured result is kept as it is" in said
    assert "kept vit_cifar10's row and section: the new ones rest on less" in said
    assert "proxy_gpt_wikitext_slice: nothing to write (no runs)" in said
    assert sorted(p.name for p in (tmp_path / "results").glob("*.md")) == sorted(
        p.name for p in (REPO / "results").glob("*.md"))  # no file made for tables without runs


def test_the_one_command_writes_a_new_table_beside_the_committed_ones(tmp_path, capsys):
    """With the runs of one table, only its section (and its figures) is written; the rest is kept."""
    shutil.copytree(REPO / "results", tmp_path / "results", ignore=shutil.ignore_patterns("*.pt", "*.png", "*.pdf"))
    shutil.copy(REPO / "README.md", tmp_path / "README.md")
    for seed in range(3):
        for init, end in (("default", 40.0), ("mimetic", 50.0)):
            write_run(tmp_path / "runs", init, seed, [10.0, end + seed], "successors_digits", dataset="digits",
                      model="vit_micro", overrides=["experiment=successors_digits", f"seed={seed}", f"init={init}"])
    proxy = (tmp_path / "results" / "proxy.md").read_bytes()
    argv = ["--all", "--base", str(tmp_path), "--out", str(tmp_path / "results"), "--readme",
            str(tmp_path / "README.md")]
    assert make_tables.main(argv) == 0
    text = (tmp_path / "results" / "successors.md").read_text()
    assert text.startswith("# Mimetic init and its successors on the ViT proxies (issue 22)\n")
    assert "## successors_digits" in text and "| mimetic | 3 | 51.00 ± 1.00 |" in text
    assert (tmp_path / "results" / "figures" / "successors_digits_bars.png").exists()
    assert (tmp_path / "results" / "proxy.md").read_bytes() == proxy
    assert make_tables.main(argv) == 0  # the same runs again: nothing changes
    assert "successors.md unchanged" in capsys.readouterr().out


def test_the_merged_conv_table_replaces_the_twins_sections_only_with_more_evidence(tmp_path, capsys):
    """proxy_conv_cifar_slice (trained and frozen, one table) supersedes its frozen twin's section and the old
    conv_compare.py output once its runs outnumber theirs; the hand-written sections stay."""
    shutil.copy(REPO / "results" / "conv_proxy.md", tmp_path / "conv_proxy.md")
    arms = {"default": {}, "dw_covariance": {"sigma_first": 0.25, "sigma_last": 1.0},
            "dw_iid": {"sigma_first": 0.01, "sigma_last": 0.01}, "dw_covariance_transfer_proxy": {
                "path": "results/conv_proxy_covariance.pt", "kernel_map": "resize", "rescale": "default"}}

    def runs(seeds):
        for seed in seeds:
            for arm, options in arms.items():
                for frozen in (False, True):
                    init = {"dw_iid": "dw_covariance", "dw_covariance_transfer_proxy": "dw_covariance_transfer"}.get(
                        arm, arm)
                    end = 45.0 - (arm != "default") * 2 - frozen * 3 + seed
                    write_run(tmp_path / "runs", init, seed, [25.0, end], "proxy_conv_cifar_slice",
                              name=f"{arm}-{frozen}-{seed}", config={
                                  "init": {"name": init, **options},
                                  "model": {"name": "convmixer_micro", "freeze_depthwise": frozen}},
                              overrides=["experiment=proxy_conv_cifar_slice", f"seed={seed}", f"init={arm}",
                                         f"model.freeze_depthwise={str(frozen).lower()}"])

    argv = ["--tables", "proxy_conv_cifar_slice", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path),
            "--overwrite"]
    runs([0, 1])  # 16 runs: fewer than the 18 of the two sections it would replace
    assert make_tables.main(argv) == 0
    assert "kept section proxy_conv_cifar_slice" in capsys.readouterr().out
    assert (tmp_path / "conv_proxy.md").read_bytes() == (REPO / "results" / "conv_proxy.md").read_bytes()
    runs([2])
    assert make_tables.main(argv) == 0
    names = [s.name for s in split_report((tmp_path / "conv_proxy.md").read_text())[1]]
    # the twins' sections go; the hand-written one and the other tables' (the gated proxy's) stay
    assert names == ["proxy_conv_cifar_slice", "Choosing sigma on a validation split (never on test)",
                     "proxy_convmixer_cifar_slice"]
    text = (tmp_path / "conv_proxy.md").read_text()
    assert "| dw_iid, frozen − default, frozen | 3 | -2.00 ± 0.00 | [-2.00, -2.00] | 0/3 |" in text
    assert "| dw_covariance_transfer_proxy, trained − dw_covariance, trained | 3 | +0.00 ± 0.00 |" in text
    assert "| **default, trained** (baseline) | 3 | 46.00 ± 1.00 |" in text


def test_the_filters_block_measures_the_structure_of_each_rows_trained_filters(tmp_path, configs):
    """The conv proxies' gate: mean neighbour-tap correlation per depthwise layer, from each run's checkpoint."""
    import torch

    from mimetic.init.covariance import gaussian_covariance, sample_filters

    def conv_run(init, seed, sigma):
        path = toy_run(tmp_path / "runs", init, seed, [40.0, 50.0 + seed])
        g = torch.Generator().manual_seed(seed)
        # two depthwise layers of 32 channels, 5x5 taps: smooth (sigma) or i.i.d. (sigma ~ 0)
        state = {"stem.weight": torch.zeros(32, 3, 2, 2)}  # a layer that outputs the 32 channels they filter
        for i in range(2):
            filters = sample_filters(gaussian_covariance(5, sigma), 32, 1.0, g)
            state[f"blocks.{i}.dw.weight"] = filters.reshape(32, 1, 5, 5)
        state["head.weight"] = torch.zeros(10, 32)
        torch.save({"format_version": 2, "model": state}, path / "checkpoint.pt")

    for seed in (0, 1):
        conv_run("default", seed, 1e-3)
        conv_run("mimetic", seed, 1.5)  # any init name will do: the block reads filters, not the init
    spec = {"file": "c.md", "experiments": ["toy"], "rows": [{"key": "init", "values": ["default", "mimetic"]}],
            "baseline": {"init": "default"}, "blocks": [{"filters": {"rows": {"init": ["default", "mimetic"]}}}]}
    text = render_section(table(tmp_path, configs, spec), Context(recipes=Recipes(configs))).text
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert rows["row"] == "| row | n | layer 1 | layer 2 | deeper half |"
    smooth = [float(x) for x in rows["mimetic"].strip("| ").split(" | ")[2:]]
    iid = [float(x) for x in rows["default"].strip("| ").split(" | ")[2:]]
    assert rows["mimetic"].startswith("| mimetic | 2 |") and all(v > 0.6 for v in smooth)  # exp(-1/4.5) = 0.80
    assert all(abs(v) < 0.15 for v in iid)
