"""make_tables: paired statistics from run directories."""

import json
import sys
from pathlib import Path

import pytest

from mimetic.analysis.runs import collect_runs
from mimetic.analysis.tables import group_runs, mean_std

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import make_tables  # noqa: E402


def fake_run(root: Path, init: str, seed: int, curve: list[float], experiment="exp", done=True):
    path = root / f"{experiment}-{init}-s{seed}"
    path.mkdir(parents=True)
    metrics = [{"epoch": e + 1, "test_acc": acc, "train_loss": 1.0} for e, acc in enumerate(curve)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    summary = {"experiment": experiment, "init": init, "seed": seed, "dataset": "d", "model": "m",
               "test_acc": curve[-1], "best_test_acc": max(curve), "wall_time_s": 60.0}
    (path / "summary.json").write_text(json.dumps(summary))
    (path / "environment.json").write_text(json.dumps({"device": "cpu (test)", "torch": "x", "timm": "y"}))
    if done:
        (path / "DONE").write_text("")


def test_mean_std():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0, 3)
    m, s, n = mean_std([5.0])
    assert (m, n) == (5.0, 1) and s != s  # nan for a single value


def test_paired_differences_and_report(tmp_path):
    runs = tmp_path / "runs"
    fake_run(runs, "default", 0, [10, 20, 30])
    fake_run(runs, "default", 1, [12, 22, 34])
    fake_run(runs, "mimetic", 0, [15, 26, 33])
    fake_run(runs, "mimetic", 1, [20, 25, 35])
    fake_run(runs, "mimetic", 2, [99, 99, 99], done=False)  # unfinished: ignored
    cmp = group_runs(collect_runs(runs))["exp"]
    assert cmp.paired_final_diff() == [3, 1]
    assert cmp.paired_curve_diff()[0][:2] == (6.5, pytest.approx(2.1213, abs=1e-4))
    out = tmp_path / "report.md"
    assert make_tables.main(["--runs", str(runs), "--out", str(out), "--figures", str(tmp_path / "fig")]) == 0
    text = out.read_text()
    assert "| mimetic − default | 2 | +2.00 ± 1.41 | 2/2 |" in text
    assert "| default | 2 | 32.00 ± 2.83 |" in text
    assert "| 1 | 11.00 ± 1.41 | 17.50 ± 3.54 | +6.50 ± 2.12 |" in text
    assert (tmp_path / "fig" / "exp_test_acc.png").stat().st_size > 1000


def test_missing_experiment_is_an_error(tmp_path):
    fake_run(tmp_path, "default", 0, [1.0])
    assert make_tables.main(["--runs", str(tmp_path), "--experiments", "nope",
                             "--out", str(tmp_path / "x.md")]) == 2
