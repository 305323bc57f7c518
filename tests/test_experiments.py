"""Every experiment file runs: one optimizer step and one evaluation batch each (trainer.smoke)."""

from pathlib import Path

import pytest
from helpers import CONFIGS, composed, read_metrics

from mimetic.data import DATASETS
from mimetic.train.config import load_config
from mimetic.train.run import run

EXPERIMENTS = sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml"))


@pytest.fixture(scope="module")
def fake_roots(tmp_path_factory, folder_root, cifar_root):
    from fake_data import write_cifar100, write_svhn
    from fake_imagenet import write_imagenet, write_tiny_imagenet
    from fake_wikitext import write_wikitext

    base = tmp_path_factory.mktemp("datasets")
    return {"tiny_imagenet": write_tiny_imagenet(base / "tiny"), "imagenet": write_imagenet(base / "imagenet"),
            "image_folder": folder_root, "cifar10": cifar_root, "cifar100": write_cifar100(base / "c100"),
            "svhn": write_svhn(base / "svhn"), "digits": None, "wikitext103": write_wikitext(base / "wikitext")}


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_runs_one_step(experiment, fake_roots, tmp_path):
    header = (CONFIGS / "experiment" / f"{experiment}.yaml").read_text().splitlines()[:3]
    assert all(line.startswith("#") for line in header), "experiment files start with a comment: command, cost"
    dataset = load_config(composed(f"experiment={experiment}", "dataset.root=/unused")).dataset.name
    if dataset not in fake_roots:
        pytest.fail(f"{experiment}: no fake data for dataset {dataset!r}; add a writer to this test")
    overrides = [f"experiment={experiment}", "trainer.smoke=true", "logger.mode=disabled", "trainer.progress=false"]
    if fake_roots[dataset] is not None:
        overrides += [f"dataset.root={fake_roots[dataset]}"]
        if "verify_checksums" in DATASETS.get(dataset).schema.__dataclass_fields__:
            overrides += ["dataset.verify_checksums=false"]
    summary = run(composed(*overrides), run_dir=tmp_path)
    assert summary["steps"] == 1 and summary["experiment"] == experiment
    assert len(read_metrics(tmp_path)) == 1 and (Path(tmp_path) / "DONE").exists()
