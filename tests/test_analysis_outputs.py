"""Regenerating never replaces committed results made from other inputs, nor with less evidence (tables,
figures, the step-0 attention figure)."""

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import load_script
from test_tables import make_tables, write_run

from mimetic.analysis.outputs import png_stamp
from mimetic.analysis.sections import split_report

ROOT = Path(__file__).resolve().parents[1]
COMMITTED_REPORT = ROOT / "results" / "proxy.md"
COMMITTED_FIGURE = ROOT / "results" / "figures" / "proxy_digits_test_acc.png"
ATTENTION_FIGURE = ROOT / "results" / "figures" / "attention_at_init.png"
CIFAR_SLICE = ROOT.parent / "shared" / "data" / "cifar10-jpeg-6k.zip"


def digits_runs(root, seeds=(0, 1)):
    for seed in seeds:
        for init, last in (("default", 20.0), ("mimetic", 90.0)):
            write_run(root, init, seed, [10.0, last + seed], "proxy_digits", dataset="digits", model="vit_micro")


@pytest.fixture
def results(tmp_path):
    """A copy of the committed results: report and the digits figure."""
    (tmp_path / "results" / "figures").mkdir(parents=True)
    shutil.copy(COMMITTED_REPORT, tmp_path / "results" / "proxy.md")
    shutil.copy(COMMITTED_FIGURE, tmp_path / "results" / "figures" / COMMITTED_FIGURE.name)
    return tmp_path / "results"


def test_committed_report_and_figure_are_kept_when_the_new_runs_are_fewer(tmp_path, results, capsys):
    digits_runs(tmp_path / "runs")  # 2 seeds: the committed section rests on 5
    report, figure = results / "proxy.md", results / "figures" / COMMITTED_FIGURE.name
    argv = ["--runs", str(tmp_path / "runs"), "--experiments", "proxy_digits", "--out", str(report)]
    assert make_tables.main(argv) == 0
    said = capsys.readouterr().out
    assert f"kept section proxy_digits in {report}: the new one would rest on less (runs 4, seeds 2 now; runs 10, " \
           "seeds 5 before); --replace-with-less replaces it" in said
    assert report.read_bytes() == COMMITTED_REPORT.read_bytes()
    assert figure.read_bytes() == COMMITTED_FIGURE.read_bytes()


def test_committed_report_and_figure_are_not_replaced_by_other_runs(tmp_path, results, capsys):
    digits_runs(tmp_path / "runs", seeds=range(6))  # more evidence, but other runs
    report, figure = results / "proxy.md", results / "figures" / COMMITTED_FIGURE.name
    argv = ["--runs", str(tmp_path / "runs"), "--experiments", "proxy_digits", "--out", str(report)]
    assert make_tables.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: refusing to replace results made from other inputs; nothing was written")
    assert f"{report} (section proxy_digits)" in err and "--overwrite" in err
    assert report.read_bytes() == COMMITTED_REPORT.read_bytes()
    assert figure.read_bytes() == COMMITTED_FIGURE.read_bytes()
    # and once the section is replaced, its figure made from other runs is refused in turn
    assert make_tables.main(argv + ["--overwrite"]) == 0
    assert png_stamp(figure) == split_report(report.read_text())[1][1].stamp


def test_overwrite_replaces_one_experiment_and_keeps_the_others(tmp_path, results, capsys):
    digits_runs(tmp_path / "runs", seeds=range(6))
    report = results / "proxy.md"
    argv = ["--runs", str(tmp_path / "runs"), "--experiments", "proxy_digits", "--out", str(report), "--overwrite"]
    assert make_tables.main(argv) == 0
    said = capsys.readouterr().out
    assert "section proxy_digits (replaced, --overwrite)" in said
    assert "kept the sections of other tables: proxy_cifar_slice" in said
    _, old = split_report(COMMITTED_REPORT.read_text())
    _, new = split_report(report.read_text())
    assert [s.name for s in new] == ["proxy_cifar_slice", "proxy_digits"]
    assert new[0].text.rstrip() == old[0].text.rstrip()  # the other experiment's section, untouched
    assert "| default | 6 | 22.50 ± 1.87 |" in new[1].text and new[1].stamp
    assert new[1].evidence == {"runs": 12, "seeds": 6}
    assert png_stamp(results / "figures" / COMMITTED_FIGURE.name) == new[1].stamp


def test_replace_with_less_replaces_a_section_resting_on_more(tmp_path, results, capsys):
    digits_runs(tmp_path / "runs")
    report = results / "proxy.md"
    argv = ["--runs", str(tmp_path / "runs"), "--experiments", "proxy_digits", "--out", str(report),
            "--replace-with-less"]
    assert make_tables.main(argv) == 0
    assert "section proxy_digits (replaced with less, --replace-with-less)" in capsys.readouterr().out
    assert split_report(report.read_text())[1][1].evidence == {"runs": 4, "seeds": 2}


def test_same_runs_regenerate_freely_other_runs_do_not(tmp_path, capsys):
    runs, report = tmp_path / "runs", tmp_path / "out" / "report.md"
    digits_runs(runs)
    argv = ["--runs", str(runs), "--out", str(report)]
    assert make_tables.main(argv) == 0
    assert f"wrote {report}: section proxy_digits (new)" in capsys.readouterr().out
    first = report.read_bytes()
    assert make_tables.main(argv) == 0  # the same inputs: a reproduction, allowed
    assert "unchanged" in capsys.readouterr().out and report.read_bytes() == first
    digits_runs(runs, seeds=(2,))  # one more seed: other inputs
    assert make_tables.main(argv) == 2
    assert "was made from other inputs (stamp" in capsys.readouterr().err and report.read_bytes() == first


def test_another_experiment_is_added_beside_the_first(tmp_path, capsys):
    runs, report = tmp_path / "runs", tmp_path / "report.md"
    digits_runs(runs)
    for init in ("default", "mimetic"):
        write_run(runs, init, 0, [1.0, 2.0], "proxy_cifar_slice")
    assert make_tables.main(["--runs", str(runs), "--experiments", "proxy_digits", "--out", str(report)]) == 0
    assert make_tables.main(["--runs", str(runs), "--experiments", "proxy_cifar_slice", "--out", str(report)]) == 0
    assert [s.name for s in split_report(report.read_text())[1]] == ["proxy_digits", "proxy_cifar_slice"]


def test_a_file_not_written_by_make_tables_is_refused(tmp_path):
    digits_runs(tmp_path / "runs")
    notes = tmp_path / "notes.md"
    notes.write_text("# my notes\n\n## proxy_digits\n\nmine\n")
    assert make_tables.main(["--runs", str(tmp_path / "runs"), "--out", str(notes)]) == 2
    assert notes.read_text() == "# my notes\n\n## proxy_digits\n\nmine\n"


def test_default_output_is_outside_results_and_figures_go_beside_the_report(tmp_path):
    args = make_tables.parse_args([])
    assert args.out == "outputs/tables.md" and args.figures is None
    digits_runs(tmp_path / "runs")
    assert make_tables.main(["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "mine" / "r.md")]) == 0
    assert (tmp_path / "mine" / "figures" / "proxy_digits_test_acc.png").exists()


# ----------------------------------------------------------------------------- the step-0 attention figure


def make_figures():
    return load_script("scripts/make_figures.py")


def attention_args(images, out):
    return ["--only", "attention_at_init", "--images", str(images), "--out", str(out), "--runs", str(out)]


def test_the_step0_figure_is_not_replaced_by_one_made_from_other_images(tmp_path, folder_root, capsys):
    (tmp_path / "figures").mkdir()
    committed = tmp_path / "figures" / "attention_at_init.png"
    shutil.copy(ATTENTION_FIGURE, committed)
    assert make_figures().main(attention_args(folder_root, tmp_path / "figures")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: refusing to replace") and "--overwrite" in err and "Traceback" not in err
    assert committed.read_bytes() == ATTENTION_FIGURE.read_bytes()


def test_the_step0_figure_without_its_images_says_how_to_get_them(tmp_path, capsys):
    assert make_figures().main(attention_args(tmp_path / "nope", tmp_path)) == 0
    said = capsys.readouterr().out
    assert "skipped attention_at_init:" in said and "python -m zipfile -e ../shared/data/cifar10-jpeg-6k.zip" in said
    assert not (tmp_path / "attention_at_init.png").exists()


@pytest.mark.skipif(not CIFAR_SLICE.exists(), reason="needs shared/data/cifar10-jpeg-6k.zip")
def test_the_committed_step0_figure_is_kept_from_its_documented_inputs(tmp_path, capsys):
    from PIL import Image

    # The first 8 test images are airplane/0000..0007; one train image gives the folder its class.
    wanted = [f"cifar10-jpeg-6k/test/airplane/{i:04d}.jpg" for i in range(8)]
    wanted += ["cifar10-jpeg-6k/train/airplane/0000.jpg"]
    with zipfile.ZipFile(CIFAR_SLICE) as archive:
        for name in wanted:
            archive.extract(name, tmp_path)
    figures = tmp_path / "figures"
    figures.mkdir()
    shutil.copy(ATTENTION_FIGURE, figures / "attention_at_init.png")
    shutil.copy(ATTENTION_FIGURE.with_suffix(".pdf"), figures / "attention_at_init.pdf")
    args = attention_args(tmp_path / "cifar10-jpeg-6k", figures)
    assert make_figures().main(args) == 0  # the same inputs: kept as committed, byte for byte
    assert "already made from the same inputs" in capsys.readouterr().out
    assert (figures / "attention_at_init.png").read_bytes() == ATTENTION_FIGURE.read_bytes()
    (figures / "attention_at_init.pdf").unlink()  # redrawn from the same inputs: the same picture
    assert make_figures().main(args) == 0 and "(same inputs)" in capsys.readouterr().out
    with Image.open(figures / "attention_at_init.png") as new, Image.open(ATTENTION_FIGURE) as old:
        assert np.abs(np.asarray(new, dtype=float) - np.asarray(old, dtype=float)).mean() < 0.5
