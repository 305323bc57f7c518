"""Run collection problems a new user meets: corrupt files, conflicting runs, runs without an experiment."""

import shlex

from test_tables import make_tables, write_run

from mimetic.analysis.runs import scan_runs
from mimetic.runtime.rundir import CONFIG, SUMMARY


def pair(root, experiment="exp", seeds=(0, 1), **kw):
    for seed in seeds:
        write_run(root, "default", seed, [10.0, 20.0 + seed], experiment, **kw)
        write_run(root, "mimetic", seed, [15.0, 30.0 + seed], experiment, **kw)


def test_corrupt_summary_stops_with_one_message_naming_the_file(tmp_path, capsys):
    pair(tmp_path / "runs")
    bad = write_run(tmp_path / "runs", "mimetic", 2, [1.0], name="broken")
    (bad / SUMMARY).write_text('{"init": "mimetic", "seed": ')  # torn write
    out = tmp_path / "r.md"
    assert make_tables.main(["--runs", str(tmp_path / "runs"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot read 1 finished run(s)")
    assert str(bad / SUMMARY) in err and "--skip-corrupt" in err and "Traceback" not in err
    assert not out.exists()  # nothing written


def test_corrupt_config_is_skipped_with_a_warning_when_asked(tmp_path, capsys):
    pair(tmp_path / "runs")
    bad = write_run(tmp_path / "runs", "default", 2, [1.0], name="broken")
    (bad / CONFIG).write_text("experiment: [unclosed\n")
    out = tmp_path / "r.md"
    assert make_tables.main(["--runs", str(tmp_path / "runs"), "--out", str(out), "--skip-corrupt"]) == 0
    err = capsys.readouterr().err
    assert "warning: left out an unreadable run" in err and str(bad / CONFIG) in err
    text = out.read_text()
    assert f"left out (unreadable): {bad / CONFIG}" in text
    assert "| default | 2 |" in text  # the two readable default runs only


def test_corrupt_run_of_another_experiment_does_not_block(tmp_path, capsys):
    pair(tmp_path / "runs", "wanted")
    bad = write_run(tmp_path / "runs", "default", 0, [1.0], "other")
    (bad / "metrics.jsonl").write_text("{not json\n")
    out = tmp_path / "r.md"
    assert make_tables.main(["--runs", str(tmp_path / "runs"), "--experiments", "wanted", "--out", str(out)]) == 0
    assert "ignored an unreadable run of other" in capsys.readouterr().err
    assert scan_runs(tmp_path / "runs")[1][0].group == "other"  # told by its readable summary


def test_conflicting_runs_say_which_and_how_they_differ(tmp_path, capsys):
    runs = tmp_path / "runs"
    pair(runs, overrides=None)
    write_run(runs, "default", 0, [10.0, 50.0], config_hash="ffff0000",
              overrides=["experiment=exp", "seed=0", "init=default", "trainer.epochs=3"])
    assert make_tables.main(["--runs", str(runs), "--out", str(tmp_path / "r.md")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: exp: 1 (row, seed) slot(s) hold more than one finished run")
    assert "default, seed 0" in err
    assert str(runs / "exp-default-s0-abcd1234") in err and str(runs / "exp-default-s0-ffff0000") in err
    assert "config abcd1234" in err and "config ffff0000" in err
    assert "overrides only here: trainer.epochs=3" in err
    assert "--prefer newest" in err and "--runs" in err and "Traceback" not in err


def test_conflicting_config_values_are_named_when_overrides_agree(tmp_path, capsys):
    runs = tmp_path / "runs"
    pair(runs, seeds=(0,))
    write_run(runs, "default", 0, [1.0], config_hash="ffff0000", config={"trainer": {"epochs": 7}})
    assert make_tables.main(["--runs", str(runs), "--out", str(tmp_path / "r.md")]) == 2
    assert "config values differ: trainer.epochs (None vs 7)" in capsys.readouterr().err


def test_conflicts_in_experiments_not_asked_for_are_ignored(tmp_path):
    runs = tmp_path / "runs"
    pair(runs, "wanted")
    pair(runs, "other", seeds=(0,))
    write_run(runs, "default", 0, [1.0], "other", config_hash="ffff0000")
    out = tmp_path / "r.md"
    assert make_tables.main(["--runs", str(runs), "--experiments", "wanted", "--out", str(out)]) == 0
    assert "## wanted" in out.read_text() and "## other" not in out.read_text()


def test_prefer_newest_keeps_the_newest_and_says_so(tmp_path):
    runs = tmp_path / "runs"
    pair(runs, seeds=(0,), finished_at=1_000_000)
    newer = write_run(runs, "default", 0, [10.0, 5.0], config_hash="ffff0000", finished_at=2_000_000)
    out = tmp_path / "r.md"
    assert make_tables.main(["--runs", str(runs), "--out", str(out), "--prefer", "newest"]) == 0
    text = out.read_text()
    assert "| default | 1 | 5.00 |" in text
    assert f"left out (another run of default, seed 0 was preferred): {runs / 'exp-default-s0-abcd1234'}" in text
    assert str(newer) in text
    oldest = tmp_path / "oldest" / "o.md"  # elsewhere: the figure beside r.md was made from other runs
    assert make_tables.main(["--runs", str(runs), "--out", str(oldest), "--prefer", "oldest"]) == 0
    assert "| default | 1 | 20.00 |" in oldest.read_text()


def test_one_sweep_dir_can_be_chosen_with_runs(tmp_path):
    runs = tmp_path / "runs"
    a = write_run(runs, "default", 0, [1.0, 2.0], config_hash="aaaa0000")
    b = write_run(runs, "mimetic", 0, [1.0, 3.0], config_hash="aaaa0000")
    write_run(runs, "default", 0, [1.0, 9.0], config_hash="bbbb0000")
    out = tmp_path / "r.md"
    assert make_tables.main(["--runs", str(a), str(b), "--out", str(out)]) == 0
    assert "| mimetic − default | 1 | +1.00 |" in out.read_text()


def _commands(text: str) -> list[list[str]]:
    lines = [line for line in text.splitlines() if line.startswith("- command: `")]
    return [shlex.split(line.split("`")[1]) for line in lines]


def test_run_without_experiment_gets_a_command_from_its_overrides(tmp_path):
    runs = tmp_path / "runs"
    for seed in (0, 1):
        for init in ("default", "mimetic"):
            write_run(runs, init, seed, [10.0, 20.0], experiment=None, dataset="digits", model="vit_micro",
                      overrides=["dataset=digits", "model=vit_micro", f"seed={seed}", f"init={init}",
                                 "trainer.epochs=2"])
    out = tmp_path / "r.md"
    assert make_tables.main(["--runs", str(runs), "--experiments", "digits-vit_micro", "--out", str(out)]) == 0
    text = out.read_text()
    assert "experiment=" not in text  # the old bug: experiment=digits-vit_micro, which does not exist
    assert _commands(text) == [  # one per set of recorded overrides, seeds merged
        ["python", "train.py", "-m", "dataset=digits", "model=vit_micro", f"init={init}", "trainer.epochs=2",
         "seed=0,1"] for init in ("default", "mimetic")]


def test_runs_with_different_overrides_get_one_command_each(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "default", 0, [1.0], overrides=["experiment=exp", "seed=0", "init=default"])
    write_run(runs, "mimetic", 0, [2.0], overrides=["experiment=exp", "seed=0", "init=mimetic", "init.alpha_qk=0.5"])
    out = tmp_path / "r.md"
    assert make_tables.main(["--runs", str(runs), "--out", str(out)]) == 0
    assert _commands(out.read_text()) == [
        ["python", "train.py", "-m", "experiment=exp", "init=default", "seed=0"],
        ["python", "train.py", "-m", "experiment=exp", "init=mimetic", "init.alpha_qk=0.5", "seed=0"],
    ]


def test_runs_without_recorded_overrides_rebuild_the_command_and_say_so(tmp_path):
    runs = tmp_path / "runs"
    for init in ("default", "mimetic"):
        path = write_run(runs, init, 0, [1.0], experiment=None, dataset="digits", model="vit_micro")
        (path / CONFIG).unlink()  # an old run: no config.yaml
    out = tmp_path / "r.md"
    assert make_tables.main(["--runs", str(runs), "--out", str(out)]) == 0
    text = out.read_text()
    assert _commands(text) == [["python", "train.py", "-m", "dataset=digits", "model=vit_micro", f"init={init}",
                                 "seed=0"] for init in ("default", "mimetic")]
    assert "rebuilt from summary.json" in text
