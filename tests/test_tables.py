"""make_tables: paired statistics from run directories, tables that know their metric (ad hoc tables: one per
experiment, each init against default; the declared tables are tests/test_analysis_engine.py's)."""

import json
import os
import sys
from pathlib import Path

import pytest

from mimetic.analysis import AnalysisError
from mimetic.analysis.metrics import MetricSpec, metric_spec
from mimetic.analysis.paper import PaperColumn
from mimetic.analysis.runs import collect_runs
from mimetic.analysis.sections import curve_block, pairs_block, rows_block
from mimetic.analysis.specs import group_runs, load_specs
from mimetic.analysis.tables import mean_std
from mimetic.runtime.rundir import ENVIRONMENT, SUMMARY, RunDir

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import make_tables  # noqa: E402

SPECS = load_specs(ROOT / "results" / "tables.yaml")


def summary_table(cmp, columns=("n", "final", "paper", "best", "seeds")) -> str:
    """The per-init table of an ad hoc (experiment layout) section."""
    return rows_block(SPECS.adhoc(cmp.name), cmp, PaperColumn([], str, cmp.metric.name),
                      {"head": "init", "columns": list(columns)})[0]


def paired_table(cmp) -> str:
    return pairs_block(SPECS.adhoc(cmp.name), cmp, PaperColumn([], str, cmp.metric.name),
                       {"columns": ["pairs", "gap", "paper", "ahead"]})[0]


def curve_table(cmp) -> str:
    lines = curve_block(SPECS.adhoc(cmp.name), cmp, {})
    return lines[2] if lines else ""


def write_run(root: Path, init: str, seed: int, curve: list[float], experiment: str | None = "exp", *,
              metric: str = "test_acc", higher_is_better: bool | None = None, steps: list[int] | None = None,
              overrides: list[str] | None = None, config_hash: str = "abcd1234", dataset: str = "d",
              model: str = "m", done: bool = True, name: str | None = None, finished_at: float | None = None,
              config: dict | None = None) -> Path:
    """A finished run directory in the real format, written through RunDir (the module that owns it)."""
    path = root / (name or f"{experiment or dataset + '-' + model}-{init}-s{seed}-{config_hash}")
    rundir = RunDir(path)
    rundir.ensure()
    records = []
    for i, value in enumerate(curve):
        record = {"epoch": i + 1, metric: value, "train_loss": 1.0}
        if steps is not None:
            record["step"] = steps[i]
        records.append(record)
    rundir.metrics().reset(records)
    if overrides is None:
        overrides = ([f"experiment={experiment}"] if experiment else []) + [f"seed={seed}", f"init={init}"]
    resolved = {"experiment": experiment, "seed": seed, "init": {"name": init}, "dataset": {"name": dataset},
                "model": {"name": model}, **(config or {}),
                "_run": {"run_key": path.name, "config_hash": config_hash, "overrides": overrides}}
    rundir.write_config(resolved)
    rundir.write_json(ENVIRONMENT, {"device": "cpu (test)", "torch": "x", "timm": "y", "git_sha": "deadbeef"})
    spec = metric_spec(metric)
    summary = {"run_key": path.name, "experiment": experiment, "init": init, "seed": seed, "dataset": dataset,
               "model": model, metric: curve[-1], f"best_{metric}": spec.best(curve), "wall_time_s": 60.0}
    if metric != "test_acc" or higher_is_better is not None:
        summary["primary_metric"] = metric
        summary["higher_is_better"] = spec.higher_is_better if higher_is_better is None else higher_is_better
    rundir.write_json(SUMMARY, summary)
    if done:
        rundir.mark_done("2026-01-01T00:00:00")
        if finished_at is not None:
            os.utime(rundir.file("DONE"), (finished_at, finished_at))
    return path


def test_mean_std():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0, 3)
    m, s, n = mean_std([5.0])
    assert (m, n) == (5.0, 1) and s != s  # nan for a single value


def test_paired_differences_and_report(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "default", 0, [10, 20, 30])
    write_run(runs, "default", 1, [12, 22, 34])
    write_run(runs, "mimetic", 0, [15, 26, 33])
    write_run(runs, "mimetic", 1, [20, 25, 35])
    write_run(runs, "mimetic", 2, [99, 99, 99], done=False)  # unfinished: ignored
    cmp = group_runs(collect_runs(runs))["exp"]
    assert cmp.metric.name == "test_acc" and cmp.metric.higher_is_better  # no primary_metric: accuracy
    assert cmp.paired_final_diff("mimetic", "default") == [3, 1]
    assert mean_std(cmp.curve_diffs("mimetic", "default")[0])[:2] == (6.5, pytest.approx(2.1213, abs=1e-4))
    out = tmp_path / "report.md"
    assert make_tables.main(["--runs", str(runs), "--out", str(out)]) == 0
    text = out.read_text()
    assert "| mimetic − default | 2 | +2.00 ± 1.41 |  | 2/2 |" in text
    assert "| default | 2 | 32.00 ± 2.83 |  | 32.00 ± 2.83 | 0,1 |" in text
    assert "| 1 | 11.00 ± 1.41 | 17.50 ± 3.54 | +6.50 ± 2.12 |" in text
    assert "final test acc (%)" in text and "seeds ahead (higher test acc is better)" in text
    assert (tmp_path / "figures" / "exp_test_acc.png").stat().st_size > 1000  # beside the report


def test_missing_experiment_is_an_error(tmp_path, capsys):
    write_run(tmp_path, "default", 0, [1.0])
    assert make_tables.main(["--runs", str(tmp_path), "--experiments", "nope", "--out", str(tmp_path / "x.md")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no finished runs of nope") and "exp" in err


def test_metric_registry_and_direction():
    assert metric_spec("test_acc").higher_is_better and metric_spec("test_acc").unit == "%"
    assert not metric_spec("test_ppl").higher_is_better
    assert metric_spec("bleu", higher_is_better=True) == MetricSpec("bleu", True)
    with pytest.raises(AnalysisError, match="unknown metric 'bleu'"):
        metric_spec("bleu")
    with pytest.raises(AnalysisError, match="lower is better"):
        metric_spec("test_ppl", higher_is_better=True)
    ppl = metric_spec("test_ppl")
    assert ppl.is_ahead(-1.0) and not ppl.is_ahead(+1.0) and ppl.best([30.0, 20.0, 25.0]) == 20.0
    assert metric_spec("test_acc").best([30.0, 20.0]) == 30.0


def test_perplexity_table_counts_lower_as_ahead(tmp_path):
    # Language-model runs: the summary names the metric; mimetic has the lower perplexity on 2 of 3 seeds.
    runs = tmp_path / "runs"
    for seed, (d, m) in enumerate([(50.0, 40.0), (52.0, 45.0), (48.0, 49.0)]):
        write_run(runs, "default", seed, [90.0, d], "lm", metric="test_ppl")
        write_run(runs, "mimetic", seed, [95.0, m], "lm", metric="test_ppl")
    cmp = group_runs(collect_runs(runs))["lm"]
    assert cmp.metric.name == "test_ppl" and not cmp.metric.higher_is_better
    paired = paired_table(cmp)
    assert "| mimetic − default | 3 | -5.33 ± 5.69 |  | 2/3 |" in paired
    assert "seeds ahead (lower test perplexity is better)" in paired
    summary = summary_table(cmp)
    assert "final test perplexity" in summary and "(%)" not in summary
    assert "| default | 3 | 50.00 ± 2.00 |  | 50.00 ± 2.00 |" in summary  # best = the lowest value
    out = tmp_path / "lm.md"
    assert make_tables.main(["--runs", str(runs), "--out", str(out)]) == 0
    text = out.read_text()
    assert "test_ppl (test perplexity; lower is better)" in text and "2/3" in text
    assert (tmp_path / "figures" / "lm_test_ppl.png").exists()


def test_best_value_follows_direction_without_a_stored_best(tmp_path):
    path = write_run(tmp_path, "default", 0, [30.0, 20.0, 25.0], "lm", metric="test_ppl")
    summary = json.loads((path / SUMMARY).read_text())
    del summary["best_test_ppl"]
    RunDir(path).write_json(SUMMARY, summary)
    cmp = group_runs(collect_runs(tmp_path))["lm"]
    assert cmp.best("default") == [20.0]


def test_curves_use_step_when_present(tmp_path):
    for init, curve in (("default", [3.0, 2.0]), ("mimetic", [2.5, 1.5])):
        write_run(tmp_path, init, 0, curve, "lm", metric="val_loss", steps=[500, 1000])
    cmp = group_runs(collect_runs(tmp_path))["lm"]
    assert cmp.x_key == "step" and cmp.xs() == [500, 1000]
    table = curve_table(cmp)
    assert table.startswith("| step | default val loss | mimetic val loss |")
    assert "| 1000 | 2.0000 | 1.5000 | -0.5000 |" in table


def test_curves_fall_back_to_epoch_when_a_run_has_no_step(tmp_path):
    write_run(tmp_path, "default", 0, [1.0, 2.0], steps=[10, 20])
    write_run(tmp_path, "mimetic", 0, [1.5, 2.5])  # an older run: epochs only
    cmp = group_runs(collect_runs(tmp_path))["exp"]
    assert cmp.x_key == "epoch" and curve_table(cmp).startswith("| epoch |")


def test_a_block_shows_the_columns_asked_for(tmp_path):
    for init in ("default", "mimetic", "mimetic_qk"):
        write_run(tmp_path, init, 0, [10.0, 20.0])
    cmp = group_runs(collect_runs(tmp_path))["exp"]
    table = summary_table(cmp, ("n", "final"))
    assert table.splitlines() == ["| init | n | final test acc (%) |", "|---|---|---|", "| default | 1 | 20.00 |",
                                  "| mimetic | 1 | 20.00 |", "| mimetic_qk | 1 | 20.00 |"]
    with pytest.raises(AnalysisError, match="unknown table column 'gaps'"):
        summary_table(cmp, ("gaps",))


def test_metric_option_tabulates_another_metric(tmp_path):
    write_run(tmp_path / "runs", "default", 0, [10.0, 20.0])
    write_run(tmp_path / "runs", "mimetic", 0, [15.0, 25.0])
    out = tmp_path / "r.md"
    assert make_tables.main(["--runs", str(tmp_path / "runs"), "--out", str(out), "--metric", "train_loss"]) == 0
    assert "final train loss" in out.read_text() and "| mimetic − default | 1 | +0.0000 |" in out.read_text()


def test_best_of_another_metric_uses_that_metrics_direction(tmp_path):
    path = write_run(tmp_path, "default", 0, [30.0, 20.0, 25.0], "lm", metric="test_ppl")
    RunDir(path).metrics().reset([{"epoch": 1, "test_ppl": 30.0, "test_acc": 40.0},
                                  {"epoch": 2, "test_ppl": 20.0, "test_acc": 45.0}])
    cmp = group_runs(collect_runs(tmp_path))["lm"]
    assert cmp.best("default", "test_acc") == [45.0] and cmp.best("default") == [20.0]


def test_each_row_is_in_order_and_the_other_inits_follow_by_name(tmp_path):
    for init in ("zeta", "mimetic", "alpha", "default"):
        write_run(tmp_path, init, 0, [1.0, 2.0])
    assert group_runs(collect_runs(tmp_path))["exp"].labels == ["default", "mimetic", "alpha", "zeta"]
