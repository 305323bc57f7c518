"""The reproduction report never over-claims: statuses by checkable rules, runs found where README puts
them, only runs of the table's own recipe counted, and measured rows never replaced by less evidence.

Every run directory here is written by the test (summary.json, metrics.jsonl, config.yaml with
``_run.overrides``, DONE), in the format ``analysis.runs`` reads; nothing trains. The claims name tables of
a results/tables.yaml written by the test too (or the committed one).
"""

from __future__ import annotations

import os
import shutil

import pytest
import yaml
from helpers import REPO
from test_tables import make_tables, write_run

from mimetic.analysis import AnalysisError
from mimetic.analysis.claims import (
    NOT_REPRODUCED,
    NOT_REPRODUCIBLE,
    NOT_RUN,
    OFF_RECIPE,
    PROXY_AHEAD,
    PROXY_BEHIND,
    PROXY_LEVEL,
    PROXY_TOO_FEW,
    REPRODUCED,
    RULES,
    SMALLER,
    TOO_FEW_SEEDS,
    evaluate,
    less_evidence,
    load_claims,
    merge_page,
    records,
    replace_block,
    rules_text,
    tables_of,
)
from mimetic.analysis.outputs import fingerprint
from mimetic.analysis.paper import load_paper_numbers
from mimetic.analysis.runs import scan_runs
from mimetic.analysis.specs import Recipes, commands, load_specs, tabulate
from mimetic.analysis.tables import t_interval

PAPER = {"gain": {"source": "abstract", "gain": "over 5%", "init": "mimetic"}}
CONFIGS = REPO / "configs"
START, END = make_tables.START, make_tables.END


def run(base, experiment, init, seed, final, *, sub="runs", extra=(), config=None, metric="test_acc",
        dataset="d", model="m"):
    """One finished run as a sweep writes it: ``<sub>/<run key>/``, with its command-line overrides recorded."""
    overrides = ([f"experiment={experiment}"] if experiment else []) + [f"seed={seed}", f"init={init}", *extra]
    return write_run(base / sub, init, seed, [final - 1.0, final], experiment, overrides=overrides,
                     config_hash=fingerprint(overrides)[:8], config=config, metric=metric, dataset=dataset,
                     model=model)


def pairs(base, experiment, gaps, *, base_value=80.0, **kw):
    """Default and mimetic runs whose paired gaps (mimetic − default) are ``gaps``, one seed each."""
    for seed, gap in enumerate(gaps):
        run(base, experiment, "default", seed, base_value + seed, **kw)
        run(base, experiment, "mimetic", seed, base_value + seed + gap, **kw)


def claim(cid, group=None, effect=5.0, evidence=(), reference=None, **more):
    entry = {"id": cid, "claim": f"claim {cid}", "paper": ["gain"], **more}
    if group:
        entry["paper_scale"] = {"table": group, "compare": ["mimetic", "default"]}
        if reference:
            entry["paper_scale"]["reference"] = reference
    if effect:
        entry["effect"] = {"size": effect, "unit": "pp", "paper": "gain", "reading": "\"over 5%\" as 5 pp"}
    entry["evidence"] = [{"table": e, "compare": ["mimetic", "default"]} for e in evidence]
    return entry


def write_site(base, claims, paper=PAPER):
    """claims.yaml, paper.yaml and a tables.yaml with one table per experiment the claims name."""
    (base / "claims.yaml").write_text(yaml.safe_dump({"claims": claims}))
    (base / "paper.yaml").write_text(yaml.safe_dump(paper))
    names = {e["table"] for c in claims for e in [c.get("paper_scale"), *c.get("evidence", [])] if e}
    tables = {n: {"file": "t.md", "rows": [{"key": "init.name", "values": ["default", "mimetic"]}],
                  "blocks": ["rows"]} for n in sorted(names)}
    (base / "tables.yaml").write_text(yaml.safe_dump({"tables": tables}))


def evaluated(base, claims, paper=PAPER, configs=None, folders=("runs",)):
    write_site(base, claims, paper)
    specs = load_specs(base / "tables.yaml")
    roots = [base / f for f in folders if (base / f).is_dir()]
    runs = scan_runs(roots)[0] if roots else []
    recipes = Recipes(configs)
    loaded = load_claims(base / "claims.yaml", specs)
    results = {n: tabulate(specs.table(n), runs, recipes) for n in tables_of(loaded)}
    out = evaluate(loaded, load_paper_numbers(base / "paper.yaml"), results, recipes, "runs/",
                   lambda path: os.path.relpath(path, base))
    return {r.claim.id: r for r in out}


def real(base, claims, **kw):
    """The committed tables.yaml, paper numbers and configs, with ``claims`` of the committed claims.yaml."""
    specs = load_specs(REPO / "results" / "tables.yaml")
    runs = scan_runs([base / "runs"])[0]
    recipes = Recipes(CONFIGS)
    results = {n: tabulate(specs.table(n), runs, recipes) for n in tables_of(claims)}
    out = evaluate(claims, load_paper_numbers(REPO / "results" / "paper_numbers.yaml"), results, recipes, "runs/",
                   lambda path: os.path.relpath(path, base))
    return {r.claim.id: r for r in out}


def committed_claims(*ids):
    claims = load_claims(REPO / "results" / "claims.yaml", load_specs(REPO / "results" / "tables.yaml"))
    return [c for c in claims if not ids or c.id in ids]


def test_the_interval_is_the_t_interval_over_paired_differences():
    iv = t_interval([5.0, 4.0, 6.0])
    assert (iv.mean, iv.std, iv.n) == (5.0, 1.0, 3)
    assert iv.lo == pytest.approx(5.0 - 4.302653 / 3 ** 0.5, abs=1e-5)
    assert iv.hi == pytest.approx(5.0 + 4.302653 / 3 ** 0.5, abs=1e-5)


def test_every_status_follows_its_rule(tmp_path):
    pairs(tmp_path, "good", [6.0, 6.5, 6.2])  # interval [5.6, 6.9]: reaches the claimed 5 pp
    pairs(tmp_path, "small", [0.1, 0.12, 0.08])  # ahead, interval [0.05, 0.15]: far below 5 pp
    pairs(tmp_path, "mixed", [5.0, -1.0, 2.0])  # interval includes zero
    pairs(tmp_path, "behind", [-3.0, -2.5, -3.5])
    pairs(tmp_path, "one", [9.0])  # one seed, a big gap: says nothing
    pairs(tmp_path, "nosize", [0.1, 0.12, 0.08])  # no claimed size: ahead is enough
    for seed, (d, m) in enumerate([(200.0, 190.0), (201.0, 191.5), (199.0, 189.0)]):  # perplexity: lower wins
        run(tmp_path, "ppl", "default", seed, d, metric="test_ppl")
        run(tmp_path, "ppl", "mimetic", seed, m, metric="test_ppl")
    pairs(tmp_path, "cpu_up", [5.0, 4.0, 6.0])
    pairs(tmp_path, "cpu_down", [-5.0, -4.0, -6.0])
    pairs(tmp_path, "cpu_level", [5.0, -4.0, 1.0])
    pairs(tmp_path, "cpu_two", [5.0, 6.0])
    results = evaluated(tmp_path, [
        claim("good", "good"), claim("small", "small"), claim("mixed", "mixed"), claim("behind", "behind"),
        claim("one", "one"), claim("nosize", "nosize", effect=None), claim("ppl", "ppl", effect=None),
        claim("proxy_ahead", "none_full", evidence=["cpu_up"]), claim("proxy_behind", evidence=["cpu_down"]),
        claim("proxy_level", evidence=["cpu_level"]), claim("proxy_few", evidence=["cpu_two"]),
        claim("none", "none_full"), claim("closed", not_reproducible="only the abstract could be read"),
        claim("big_proxy", "none_full", evidence=["cpu_two", "good"]),  # a CPU proxy never reproduces
    ])
    assert {k: r.status for k, r in results.items()} == {
        "good": REPRODUCED, "small": SMALLER, "mixed": NOT_REPRODUCED, "behind": NOT_REPRODUCED,
        "one": TOO_FEW_SEEDS, "nosize": REPRODUCED, "ppl": REPRODUCED, "proxy_ahead": PROXY_AHEAD,
        "proxy_behind": PROXY_BEHIND, "proxy_level": PROXY_LEVEL, "proxy_few": PROXY_TOO_FEW, "none": NOT_RUN,
        "closed": NOT_REPRODUCIBLE, "big_proxy": PROXY_AHEAD}
    line = results["proxy_ahead"].evidence[0].line()
    assert "mimetic 86.00 ± 1.73 vs default 81.00 ± 1.00 (test acc, final; n = 3/3)" in line
    assert "paired gap +5.00 ± 1.00 pp, 95% CI [+2.52, +7.48], mimetic ahead on 3/3 seeds" in line
    assert "6 runs in runs;" in results["proxy_ahead"].evidence[0].provenance()
    assert results["none"].paper_scale.line() == "no finished none_full runs below runs/; train them with the " \
                                                 "command above"
    assert "1 paired seed(s): fewer than 3" in merge_page(list(results.values()), None)[0]


def test_the_audits_synthetic_runs_no_longer_make_a_claim_reproduced(tmp_path):
    """Issue 23 item 4: four run directories (one seed, smoke runs, no mimetic run) printed "reproduced"."""
    smoke = dict(extra=["trainer.smoke=true"], config={"trainer": {"smoke": True}}, dataset="cifar10")
    run(tmp_path, None, "default", 0, 10.0, model="vit_tiny", **smoke)
    run(tmp_path, None, "mimetic", 0, 10.1, model="vit_tiny", **smoke)
    run(tmp_path, None, "default", 0, 50.0, dataset="cifar10", model="vit_tiny_p16_224")
    run(tmp_path, None, "pretrained_attention", 0, 60.0, dataset="cifar10", model="vit_tiny_p16_224",
        extra=["model=vit_tiny_p16_224", "init.checkpoint=/w/vit.safetensors"])
    results = real(tmp_path, committed_claims())
    assert results["vit_cifar10"].status == OFF_RECIPE
    off = results["vit_cifar10"].paper_scale.off[0]
    assert off.why[0].startswith("are smoke runs") and len(off.runs) == 2
    # the default run lacks model=vit_tiny_p16_224 on its command line but has the model: on recipe
    gap = results["vit_gap_to_pretrained"]
    assert gap.status == TOO_FEW_SEEDS and "no runs of mimetic on recipe" in gap.paper_scale.line()


def test_a_paper_claim_needs_three_seeds_and_the_claimed_size(tmp_path):
    claims = committed_claims("vit_cifar10")
    # README's own command for the main job (dataset=cifar10 repeats the recipe's value), on a GPU, no logging
    kw = dict(dataset="cifar10", model="vit_tiny", extra=["dataset=cifar10", "trainer.device=cuda",
                                                          "logger.mode=disabled"])
    pairs(tmp_path, None, [0.1, 0.12, 0.08], **kw)  # "+0.1 pp against an over-5% claim"
    assert real(tmp_path, claims)["vit_cifar10"].status == SMALLER
    shutil.rmtree(tmp_path / "runs")
    pairs(tmp_path, "vit_tiny_cifar10", [6.0, 6.5, 6.2], dataset="cifar10", model="vit_tiny")  # its experiment
    assert real(tmp_path, claims)["vit_cifar10"].status == REPRODUCED
    shutil.rmtree(tmp_path / "runs")
    pairs(tmp_path, None, [6.0, 6.5, 6.2], dataset="cifar10", model="vit_tiny", extra=["trainer.epochs=1"])
    result = real(tmp_path, claims)["vit_cifar10"]
    assert result.status == OFF_RECIPE
    assert result.paper_scale.off[0].why == ("override trainer.epochs=1 (the recipe: trainer.epochs=100)",)


def test_runs_of_another_recipe_are_named_under_the_command_and_never_counted(tmp_path):
    pairs(tmp_path, "proxy_digits", [40.0, 45.0, 50.0], sub="runs/sweep_a",
          extra=["trainer.device=cpu", "trainer.epochs=15"])  # 15 is the recipe's own value: on recipe
    pairs(tmp_path, "proxy_digits", [1.0, 2.0, 3.0], sub="runs/short", extra=["trainer.epochs=2"])
    run(tmp_path, "proxy_digits", "mimetic", 0, 99.0, sub="runs/other", extra=["init.alpha_qk=0.3"])
    run(tmp_path, "proxy_digits", "mimetic", 1, 99.0, sub="runs/other", extra=["model.dim=32"])
    unrecorded = run(tmp_path, "proxy_digits", "default", 2, 99.0, sub="runs/old")
    config = yaml.safe_load((unrecorded / "config.yaml").read_text())
    del config["_run"]["overrides"]
    (unrecorded / "config.yaml").write_text(yaml.safe_dump(config))
    results = evaluated(tmp_path, [claim("digits", evidence=["proxy_digits"])], configs=CONFIGS)
    m = results["digits"].evidence[0]
    assert len(m.found) == 15 and len(m.cmp.runs) == 6 and m.pairs == 3
    assert results["digits"].status == PROXY_AHEAD
    why = {o.why: len(o.runs) for o in m.off}
    assert why[("override trainer.epochs=2 (the recipe: trainer.epochs=15)",)] == 6
    assert why[("override init.alpha_qk=0.3 (the recipe: init.alpha_qk=0.7)",)] == 1
    assert why[("override model.dim=32 (the recipe: model.dim=64)",)] == 1
    assert any("do not record their command-line overrides" in w[0] for w in why)
    page = merge_page(list(results.values()), None)[0]
    assert ("not counted: 6 run(s) differ from the table's recipe: they override trainer.epochs=2 "
            "(the recipe: trainer.epochs=15) — their numbers, for information only: mimetic") in page
    assert "- CPU evidence, table `proxy_digits` (configs/experiment/proxy_digits.yaml)" in page
    assert "  - command: `python train.py -m experiment=proxy_digits`" in page
    shutil.rmtree(tmp_path / "runs" / "sweep_a")  # only the 2-epoch runs: they never count
    only_short = evaluated(tmp_path, [claim("digits", evidence=["proxy_digits"])], configs=CONFIGS)["digits"]
    assert only_short.status == OFF_RECIPE and only_short.evidence[0].cmp is None


def test_the_gap_to_pretrained_needs_all_three_inits_and_reports_the_share_closed(tmp_path):
    for seed, (d, m, p) in enumerate([(60.0, 65.0, 66.0), (61.0, 66.0, 67.0), (62.0, 66.0, 66.0)]):
        run(tmp_path, "near", "default", seed, d)
        run(tmp_path, "near", "mimetic", seed, m)
        run(tmp_path, "near", "pretrained_attention", seed, p, extra=["init.checkpoint=/w/a.pth"])
        run(tmp_path, "far", "default", seed, d)
        run(tmp_path, "far", "mimetic", seed, d + 1.0 + seed * 0.1)
        run(tmp_path, "far", "pretrained_attention", seed, p + 5.0)
        run(tmp_path, "half", "default", seed, d)
        run(tmp_path, "half", "mimetic", seed, m)
    results = evaluated(tmp_path, [claim(c, c, effect=None, reference="pretrained_attention")
                                   for c in ("near", "far", "half")])
    assert results["near"].status == REPRODUCED  # mimetic ahead of default, not clearly behind pre-trained
    assert results["far"].status == SMALLER  # ahead of default, clearly behind pre-trained
    assert results["half"].status == TOO_FEW_SEEDS  # no pre-trained runs: nothing to close
    extra, share = results["near"].paper_scale.extra()
    assert len(extra) == 1 and "pretrained_attention − default: +5.33 ± 1.15 pp" in extra[0]
    assert "mimetic closes 88% of the pretrained_attention − default gap (pooled; per seed: 83%, 83%, 100%)" \
        in extra[0]
    assert share == "mimetic closes 88% of the gap to pretrained_attention"
    assert "no pretrained_attention runs on recipe" in results["half"].paper_scale.extra()[0][0]


def test_the_committed_gap_claim_compares_mimetic_default_and_pretrained():
    (gap,) = committed_claims("vit_gap_to_pretrained")
    for e in (gap.paper_scale, *gap.evidence):
        assert e.compare == ("mimetic", "default") and e.reference == "pretrained_attention"
    specs, recipes = load_specs(REPO / "results" / "tables.yaml"), Recipes(CONFIGS)
    # no experiment file gives the ImageNet checkpoint: the derived command needs a second sweep for that arm
    assert commands(specs.table(gap.paper_scale.table), recipes) == [
        "python train.py -m model=vit_tiny_p16_224 seed=0,1,2 init=default,mimetic",
        "python train.py -m model=vit_tiny_p16_224 seed=0,1,2 init=pretrained_attention "
        "init.checkpoint=/path/to/vit_tiny_patch16_224.safetensors"]
    # the CPU table's grid has every arm (init=pretrained_transfer_source): one command
    assert commands(specs.table("transfer"), recipes) == ["python train.py -m experiment=transfer_target"]
    (cifar,) = committed_claims("vit_cifar10")
    assert cifar.effect.size == 5.0 and cifar.effect.paper == "vit_tiny_cifar10_gain"


def test_runs_are_found_below_runs_by_experiment_and_in_extra_folders(tmp_path):
    pairs(tmp_path, "flat", [5.0, 4.0, 6.0])  # runs/<key>/, as a sweep writes them
    pairs(tmp_path, "nested", [5.0, 4.0, 6.0], sub="runs/2026-11/sweep")
    pairs(tmp_path, "elsewhere", [5.0, 4.0, 6.0], sub="scratch")
    claims = [claim(c, evidence=[c]) for c in ("flat", "nested", "elsewhere")]
    found = evaluated(tmp_path, claims)
    assert [found[c].status for c in ("flat", "nested", "elsewhere")] == [PROXY_AHEAD, PROXY_AHEAD, NOT_RUN]
    assert evaluated(tmp_path, claims, folders=("runs", "scratch"))["elsewhere"].status == PROXY_AHEAD


# ----------------------------------------------------------------------------- the script


def script_args(base, out, readme, *more):
    return ["--report", "--claims", str(base / "claims.yaml"), "--paper-numbers", str(base / "paper.yaml"),
            "--specs", str(base / "tables.yaml"), "--base", str(base), "--out", str(out.parent),
            "--readme", str(readme), *more]


@pytest.fixture
def site(tmp_path):
    pairs(tmp_path, "cpu_up", [5.0, 4.0, 6.0])
    pairs(tmp_path, "cpu_down", [-5.0, -4.0, -6.0])
    write_site(tmp_path, [claim("up", "up_full", evidence=["cpu_up"]), claim("down", evidence=["cpu_down"]),
                          claim("none", "x")])
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{START}\nold table\n{END}\nrest\n")
    return tmp_path, tmp_path / "results" / "README.md", readme


def test_the_page_has_the_rules_the_table_and_an_evidence_record_per_claim(site, capsys):
    base, out, readme = site
    assert make_tables.main(script_args(base, out, readme)) == 0
    page = out.read_text()
    assert "## Rules" in page and all(f"*{status}*: " in page for status, _ in RULES)
    assert f"**{PROXY_AHEAD}**" in page and f"**{PROXY_BEHIND}**" in page and "source: abstract" in page
    recs = records(page)
    assert recs["up"]["status"] == PROXY_AHEAD and recs["up"]["runs"] == 6 and recs["up"]["seeds"] == 3
    assert recs["up"]["measurements"]["cpu_up"] == {"runs": 6, "seeds": 3, "counted": 6, "paired": 3}
    assert len(recs["up"]["folders"]) == 6 and all(f.startswith("runs/cpu_up-") for f in recs["up"]["folders"])
    table = readme.read_text()
    assert "old table" not in table and "[claim up](results/README.md#up)" in table
    assert table.startswith("intro\n") and table.endswith("rest\n") and records(table)["up"] == recs["up"]
    assert make_tables.main(script_args(base, out, readme)) == 0  # the same runs: the same page
    assert f"{out}: the reproduction report already current" in capsys.readouterr().out


def test_regenerating_with_fewer_runs_keeps_the_measured_rows(site, capsys):
    base, out, readme = site
    assert make_tables.main(script_args(base, out, readme)) == 0
    page, table = out.read_text(), readme.read_text()
    up_row = next(line for line in table.splitlines() if line.startswith("| [claim up]"))
    shutil.move(base / "runs", base / "runs-moved")  # a fresh clone: no run directory at all
    capsys.readouterr()
    assert make_tables.main(script_args(base, out, readme)) == 0
    said = capsys.readouterr().out
    assert "kept up's row and section: the new ones rest on less (cpu_up: 0 runs, 0 seeds now; 6 runs, 3 seeds " \
           "before)" in said and "kept down's row" in said
    kept = out.read_text()
    assert up_row in readme.read_text() and f"**{PROXY_AHEAD}**" in kept
    assert records(kept)["up"] == records(page)["up"] and "Kept from an earlier report" in kept
    assert make_tables.main(script_args(base, out, readme)) == 0  # kept twice: no note added twice
    assert out.read_text() == kept
    # one seed more: more evidence replaces the kept section at once
    shutil.move(base / "runs-moved", base / "runs")
    pairs(base, "cpu_up", [5.0, 4.0, 6.0, 5.5])
    assert make_tables.main(script_args(base, out, readme)) == 0
    assert records(out.read_text())["up"]["seeds"] == 4 and "Kept from" not in out.read_text().split("## up")[1]
    # fewer runs again, but asked to replace: the rows say what is there now
    shutil.rmtree(base / "runs")
    assert make_tables.main(script_args(base, out, readme, "--replace-with-less")) == 0
    assert records(out.read_text())["up"]["status"] == NOT_RUN
    assert f"| **{NOT_RUN}** |" in next(line for line in readme.read_text().splitlines() if "[claim up]" in line)


def test_a_fresh_clone_keeps_the_committed_measured_rows(tmp_path, capsys):
    """Issue 23 item 10: `--out results/README.md --readme README.md` without runs replaced every measured row."""
    shutil.copytree(REPO / "results", tmp_path / "results", ignore=shutil.ignore_patterns("figures", "*.pt"))
    shutil.copy(REPO / "README.md", tmp_path / "README.md")
    before_page, before_readme = (tmp_path / "results" / "README.md").read_text(), (tmp_path / "README.md").read_text()
    measured = [line for line in before_readme.split(START)[1].split(END)[0].splitlines()
                if line.startswith("| [") and not line.endswith("| – |")]
    assert len(measured) >= 4
    # the audit's command: a new page in outputs/, README's table rewritten from it
    assert make_tables.main(["--report", "--base", str(tmp_path), "--out", str(tmp_path / "outputs"),
                             "--readme", str(tmp_path / "README.md")]) == 0
    assert all(line in (tmp_path / "README.md").read_text() for line in measured)
    args = ["--report", "--base", str(tmp_path), "--out", str(tmp_path / "results"), "--readme",
            str(tmp_path / "README.md")]
    assert make_tables.main(args) == 0
    assert all(line in (tmp_path / "README.md").read_text() for line in measured)
    old_sections = {s.split("\n")[0]: s for s in before_page.split("\n## ")[1:]}
    page = (tmp_path / "results" / "README.md").read_text()
    for head, section in old_sections.items():
        if " runs in " in section and head != "Rules":  # a measured section: every measured line is still there
            new = page.split(f"\n## {head}\n")[1].split("\n## ")[0]
            assert all(line in new for line in section.splitlines() if " runs in " in line or "ours:" in line)
    assert "kept vit_cifar10's row" in capsys.readouterr().out
    assert make_tables.main(args) == 0 and (tmp_path / "results" / "README.md").read_text() == page


def test_less_evidence_compares_every_measurement_of_the_old_record():
    was = {"measurements": {"a": {"runs": 6, "seeds": 3}, "b": {"runs": None, "seeds": 3}}}
    assert less_evidence({"measurements": {"a": {"runs": 6, "seeds": 2}, "b": {"runs": 6, "seeds": 3}}}, was)
    assert less_evidence({"measurements": {"a": {"runs": 8, "seeds": 3}}}, was) == "b: 0 runs, 0 seeds now; 3 seeds " \
                                                                                  "before"
    assert less_evidence({"measurements": {"a": {"runs": 8, "seeds": 3}, "b": {"runs": 1, "seeds": 3}}}, was) is None


def test_a_missing_base_is_one_error_and_writes_nothing(site, capsys):
    base, out, readme = site
    before = readme.read_text()
    assert make_tables.main([*script_args(base, out, readme), "--base", str(base / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nowhere" in err and err.count("\n") == 1
    assert not out.exists() and readme.read_text() == before
    assert make_tables.main([*script_args(base, out, readme), "--runs", "nowhere"]) == 2
    assert not out.exists()


def test_replace_block_needs_its_markers():
    with pytest.raises(AnalysisError, match="markers"):
        replace_block("no markers", "table", "<!-- a -->", "<!-- b -->")


def test_every_status_has_one_rule_line():
    text = rules_text()
    for status, _ in RULES:
        assert text.count(f"  - *{status}*: ") == 1


def test_the_committed_claims_name_real_paper_numbers_tables_and_experiments():
    specs = load_specs(REPO / "results" / "tables.yaml")
    claims = load_claims(REPO / "results" / "claims.yaml", specs)  # every table named is declared
    keys = {p.key for p in load_paper_numbers(REPO / "results" / "paper_numbers.yaml")}
    assert {k for c in claims for k in c.paper} <= keys
    assert {k for s in specs.tables.values() for k in s.paper or ()} <= keys
    recipes = Recipes(CONFIGS)
    for spec in specs.tables.values():  # an experiment file trains it, or its runs are a group with a known recipe
        assert recipes.exists(spec.experiments[0]) or spec.grid or any("-" in e for e in spec.experiments), spec.name
    readme = (REPO / "README.md").read_text()
    assert START in readme and END in readme


def test_a_superseded_proxy_protects_no_row_once_its_successor_has_runs():
    """Old rows resting on more runs are kept, unless the claim names their proxy superseded and the new record
    has runs of the successor (then a better proxy on fewer seeds replaces them, its status saying so)."""
    old = {"measurements": {"proxy_old": {"runs": 12, "seeds": 3}}}
    new_without = {"measurements": {"proxy_old": {"runs": 0, "seeds": 0}, "proxy_new": {"runs": 0, "seeds": 0}}}
    new_with = {"measurements": {"proxy_old": {"runs": 0, "seeds": 0}, "proxy_new": {"runs": 2, "seeds": 1}}}
    assert "proxy_old: 0 runs, 0 seeds now" in less_evidence(new_with, old)  # not superseded: kept
    assert less_evidence(new_without, old, {"proxy_old": "proxy_new"})  # the successor has no runs yet: kept
    assert less_evidence(new_with, old, {"proxy_old": "proxy_new"}) is None  # replaced
    claims = load_claims(REPO / "results" / "claims.yaml")
    conv = next(c for c in claims if c.id == "conv_covariance")
    assert {e.key: e.superseded_by for e in conv.evidence if e.superseded_by} == {
        "proxy_conv_cifar_slice": "proxy_convmixer_cifar_slice",
        "proxy_conv_cifar_slice_frozen": "proxy_convmixer_cifar_slice"}
