"""Paper numbers (results/paper_numbers.yaml) beside the measured cells, with their provenance."""

from pathlib import Path

import pytest
import yaml
from test_tables import make_tables, write_run

from mimetic.analysis import AnalysisError
from mimetic.analysis.paper import PaperColumn, load_paper_numbers

PAPER = Path(__file__).resolve().parents[1] / "results" / "paper_numbers.yaml"


def cifar10_vit_tiny(root, seeds=(0, 1)):
    # Runs made without an experiment file: python train.py dataset=cifar10 init=... (model vit_tiny by default)
    for seed in seeds:
        write_run(root, "default", seed, [80.0, 86.0 + seed], experiment=None, dataset="cifar10", model="vit_tiny",
                  overrides=["dataset=cifar10", f"seed={seed}", "init=default"])
        write_run(root, "mimetic", seed, [82.0, 90.0 + seed], experiment=None, dataset="cifar10", model="vit_tiny",
                  overrides=["dataset=cifar10", f"seed={seed}", "init=mimetic"])


def test_committed_paper_numbers_keep_every_entry_and_its_source():
    numbers = {n.key: n for n in load_paper_numbers(PAPER)}
    assert {"vit_tiny_cifar10_gain", "vit_imagenet_resnet_pipeline_gain", "vit_tiny_cifar10_default_to_mimetic",
            "vit_cifar10_gain_and_gap_to_pretrained", "conv_covariance_init_gain", "wikitext103"} <= set(numbers)
    assert numbers["vit_tiny_cifar10_default_to_mimetic"].values == {"default": 87.39, "mimetic": 91.38}
    assert numbers["vit_tiny_cifar10_default_to_mimetic"].source == "a reviewer quoting the paper (secondary)"
    assert numbers["vit_tiny_cifar10_gain"].gain == "over 5%"
    assert all(n.source and n.applies_to for n in numbers.values())


def test_paper_numbers_are_printed_beside_the_measured_cells_with_their_source(tmp_path):
    cifar10_vit_tiny(tmp_path / "runs")
    out = tmp_path / "vit_tiny.md"
    assert make_tables.main(["--runs", str(tmp_path / "runs"), "--out", str(out), "--paper-numbers", str(PAPER)]) == 0
    text = out.read_text()
    assert "| default | 2 | 86.50 ± 0.71 | 87.39 [p1] |" in text
    assert "| mimetic | 2 | 90.50 ± 0.71 | 91.38 [p1] |" in text
    gap_row = next(line for line in text.splitlines() if line.startswith("| mimetic − default |"))
    assert "+3.99 [p1]" in gap_row and "over 5% [p2]" in gap_row
    assert "up to 6%; almost closes the gap to pre-trained [p3]" in gap_row
    assert "- [p1] default 87.39, mimetic 91.38 — source: a reviewer quoting the paper (secondary)" in text
    assert "source: paper abstract (Trockman & Kolter, ICML 2023, arXiv 2305.09828)" in text
    assert "`vit_tiny_cifar10_default_to_mimetic` in " in text
    assert "over 4%" not in text and "over 1%" not in text  # ImageNet and conv numbers do not apply here


def test_paper_cells_are_blank_where_the_paper_gives_nothing(tmp_path):
    for init in ("default", "mimetic"):
        write_run(tmp_path / "runs", init, 0, [10.0, 20.0], "proxy_digits", dataset="digits", model="vit_micro")
    out = tmp_path / "r.md"
    assert make_tables.main(["--runs", str(tmp_path / "runs"), "--out", str(out), "--paper-numbers", str(PAPER)]) == 0
    text = out.read_text()
    assert "| default | 1 | 20.00 |  |" in text and "[p1]" not in text
    assert "Paper numbers: none in" in text and "dataset=digits, model=vit_micro" in text


def test_paper_numbers_only_where_metric_and_every_key_match():
    number = load_paper_numbers(PAPER)
    lookup = {"dataset": "cifar10", "model": "vit_tiny"}.get
    assert "87.39" in PaperColumn(number, lookup, "test_acc").value("default")
    assert PaperColumn(number, lookup, "test_ppl").value("default") == ""  # accuracy numbers, perplexity table
    assert PaperColumn(number, {"dataset": "cifar10", "model": "vit_micro"}.get, "test_acc").value("default") == ""
    assert "smaller gains" in PaperColumn(number, {"dataset": "wikitext103"}.get, "test_ppl").gap("mimetic", "default")


def test_applies_to_can_name_a_config_key_and_alternatives(tmp_path):
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump({"long_run": {"default": 1.0, "source": "S", "applies_to": {
        "dataset": ["cifar10", "cifar100"], "trainer.epochs": 100}}}))
    numbers = load_paper_numbers(path)
    assert PaperColumn(numbers, {"dataset": "cifar100", "trainer.epochs": "100"}.get, "test_acc").value("default")
    assert not PaperColumn(numbers, {"dataset": "cifar100", "trainer.epochs": "3"}.get, "test_acc").value("default")


@pytest.mark.parametrize("entry, message", [
    ({"default": 1.0, "applies_to": {"dataset": "x"}}, "has no source"),
    ({"source": "s", "value": "over 5%"}, "has value, which is neither a known key"),
    ({"source": "s", "applies_to": ["cifar10"]}, "applies_to must be a mapping"),
])
def test_a_malformed_entry_is_one_clear_error(tmp_path, capsys, entry, message):
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump({"bad_entry": entry}))
    with pytest.raises(AnalysisError, match=message):
        load_paper_numbers(path)
    write_run(tmp_path / "runs", "default", 0, [1.0])
    assert make_tables.main(["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "r.md"),
                             "--paper-numbers", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: entry 'bad_entry'") or err.startswith(f"error: {path}: bad_entry")
