"""Every experiment file runs (one optimizer step and one evaluation batch each: trainer.smoke), and its grid
(``hydra.sweeper.params``) launches exactly the jobs of its table, each a valid, distinct run; folding a twin
file into a grid factor keeps every run's identity (run key, run directory)."""

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import CONFIGS, REPO, cli, composed, read_metrics

from mimetic.cli import resolve_experiment_run, sweep_jobs
from mimetic.data import DATASETS
from mimetic.errors import ConfigError
from mimetic.train.config import config_blob, load_config, run_identity
from mimetic.train.run import run

EXPERIMENTS = sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml"))

#: Jobs each experiment's grid launches (`python train.py -m experiment=NAME`): the size of its table.
GRID_JOBS = {
    "ablation_alpha_beta": 27,  # 3 seeds x alpha_qk 3 x alpha_vo 3
    "ablation_components": 12,  # 3 seeds x default, mimetic, mimetic_qk, mimetic_vo
    "ablation_pos_pool": 24,  # 3 seeds x 2 inits x pos_embed 2 x pooling 2
    "convmixer_256_8_cifar10": 12,  # 3 seeds x default, dw_covariance x freeze_depthwise false, true
    "convnext_cifar10": 12,  # the same
    "gpt_wikitext103": 6,  # 3 seeds x default, mimetic
    "proxy_cifar_slice": 6,
    "proxy_conv_cifar_slice": 24,  # 3 seeds x 4 inits x freeze_depthwise false, true
    "proxy_convmixer_cifar_slice": 36,  # 3 seeds x 6 inits x freeze_depthwise false, true
    "proxy_convnext_cifar_slice": 6,  # 3 seeds x default, dw_covariance
    "proxy_digits": 10,  # 5 seeds x default, mimetic
    "proxy_gpt_wikitext_slice": 21,  # 3 seeds x 7 inits
    "proxy_gpt_wikitext_vo_grid": 5,  # seed 0 x 5 alphas of mimetic_vo
    "proxy_wikitext_slice": 15,  # 3 seeds x 5 inits
    "successors_cifar_slice": 24,  # 3 seeds x 8 inits
    "successors_digits": 24,
    "transfer_source": 1,  # seed 0, default init
    "transfer_target": 9,  # 3 seeds x default, mimetic, pretrained_transfer_source
    "tune_convmixer_sigma": 4,  # seed 0 x default and 3 sigma schedules
    "tune_impulse_scale": 5,  # seed 0 x 5 values of init.scale
    "tune_mimetic_simple_c": 5,  # seed 0 x 5 values of c
    "vit_tiny_cifar10": 6,
    "vit_tiny_cifar_slice": 6,
    "vit_tiny_imagenet": 6,
    "vit_tiny_imagenet_short": 4,  # 2 seeds x 2 inits
    "vit_tiny_tiny_imagenet": 6,
}


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


# ----------------------------------------------------------------------------- grids
@pytest.fixture(scope="module")
def grid_paths(tmp_path_factory):
    """paths.data_dir / paths.runs_dir under which every job of every grid validates: transfer_target's
    pretrained arm needs its source run (the transfer_source run under these paths) finished."""
    from fake_data import write_image_folder

    base = tmp_path_factory.mktemp("grid")
    write_image_folder(base / "data" / "cifar10-jpeg-6k-source", classes=("airplane", "bird"))
    source = Path(resolve_source(base))
    source.mkdir(parents=True)
    (source / "checkpoint.pt").write_bytes(b"")  # what init=pretrained_attention checks for before it runs
    (source / "DONE").write_text("done\n")
    return [f"paths.data_dir={base / 'data'}", f"paths.runs_dir={base / 'runs'}"]


def resolve_source(base: Path) -> str:
    """transfer_source's run directory under ``base``, computed from its own config."""
    cfg = load_config(composed("experiment=transfer_source", f"paths.data_dir={base / 'data'}",
                               f"paths.runs_dir={base / 'runs'}"))
    return str(base / "runs" / run_identity(cfg).run_key)


def test_every_experiment_has_its_grid_size_here():
    assert sorted(GRID_JOBS) == EXPERIMENTS, "add the new experiment's job count to GRID_JOBS (or remove a stale one)"


#: Grids with an arm whose option file is not written yet (strict: the test fails once it is, to drop the entry).
PENDING: dict[str, str] = {}


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_the_grid_launches_its_table_of_valid_distinct_runs(experiment, grid_paths, request):
    """`python train.py -m experiment=NAME` launches GRID_JOBS[NAME] jobs, each one that validates and none
    the same run as another (an inherited grid key the file forgot to restate would fail here)."""
    from hydra import compose, initialize_config_dir

    if experiment in PENDING:
        request.applymarker(pytest.mark.xfail(strict=True, reason=PENDING[experiment]))

    header = (CONFIGS / "experiment" / f"{experiment}.yaml").read_text()
    command = rf"^#\s+python train\.py -m (hydra/launcher=\S+ )?experiment={experiment}(\s|$)"
    assert re.search(command, header, re.MULTILINE), "the header gives the grid's command"
    jobs = sweep_jobs([f"experiment={experiment}"])
    assert len(jobs) == GRID_JOBS.get(experiment), experiment
    blobs = set()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        for job in jobs:
            cfg = load_config(compose(config_name="train", overrides=[*job, *grid_paths]))
            assert cfg.experiment == experiment
            blobs.add((config_blob(cfg), cfg.dataset.name, cfg.model.name, cfg.init.name, cfg.seed))
    assert len(blobs) == len(jobs), f"{experiment}: two jobs of the grid are the same run"


def test_the_command_line_narrows_or_widens_a_grid_key_as_hydra_does():
    """A key given on the command line replaces the grid's (in its place); launcher settings are no job's."""
    jobs = sweep_jobs(["experiment=proxy_digits", "seed=0", "hydra/launcher=slurm", "hydra.launcher.timeout_min=9",
                       "trainer.epochs=2"])
    assert jobs == [["seed=0", "init=default", "experiment=proxy_digits", "trainer.epochs=2"],
                    ["seed=0", "init=mimetic", "experiment=proxy_digits", "trainer.epochs=2"]]
    assert len(sweep_jobs(["experiment=ablation_components", "init=mimetic,mimetic_vo,mimetic_qk"])) == 9
    assert sweep_jobs(["seed=0,1", "init=default,mimetic"])[1] == ["seed=0", "init=mimetic"]  # no experiment: no grid


@pytest.mark.parametrize("overrides", [["experiment=ablation_alpha_beta", "seed=0"],  # replaces an inherited key
                                       ["experiment=proxy_conv_cifar_slice", "seed=1"],  # the folded factor
                                       ["experiment=transfer_target", "seed=1"]])  # an arm that names a run
def test_hydra_itself_launches_the_jobs_sweep_jobs_lists(overrides, tmp_path):
    """Hydra's basic sweeper and launcher, run on train.py's config with a task that trains nothing."""
    env = {**os.environ, "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "1"}
    done = subprocess.run([sys.executable, str(REPO / "tests" / "sweep_noop_app.py"), "-m", *overrides,
                           f"paths.runs_dir={tmp_path}"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    launched = [line.split()[1:] for line in done.stdout.splitlines() if line.startswith("JOB ")]
    assert launched == sweep_jobs([*overrides, f"paths.runs_dir={tmp_path}"])


@pytest.mark.slow
def test_train_py_sweeps_the_grid_of_an_experiment(tmp_path):
    """The real command: `python train.py -m experiment=proxy_digits trainer.smoke=true` trains its 10 jobs."""
    done = cli("-m", "experiment=proxy_digits", "trainer.smoke=true", f"paths.runs_dir={tmp_path}",
               "trainer.progress=false", timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    runs = sorted(p.parent for p in tmp_path.glob("*/DONE"))
    assert len(runs) == GRID_JOBS["proxy_digits"]
    seen = {(json.loads((r / "summary.json").read_text())["experiment"], r.name.split("-")[2], r.name.split("-")[3])
            for r in runs}
    assert seen == {("proxy_digits", init, f"s{seed}") for init in ("default", "mimetic") for seed in range(5)}


# ----------------------------------------------------------------------------- identity
def _digest(cfg) -> str:
    """The run key's config part: everything but the data's fingerprint (which the same data gives alike)."""
    return hashlib.sha1(config_blob(cfg).encode()).hexdigest()[:12]


#: Run keys and config digests of the twin files folded into a grid factor, computed from the old files
#: (configs/experiment/<name>_frozen.yaml, before the fold) for (seed, init): the folded grid's job must be
#: the same run, in the same directory. CIFAR-10's fingerprint is its pinned md5 (''): the whole key is fixed.
FOLDED = {
    ("proxy_conv_cifar_slice", "true", 0, "default"): "17125fd82f88",
    ("proxy_conv_cifar_slice", "true", 2, "dw_covariance"): "f38e54b1945f",
    ("proxy_conv_cifar_slice", "false", 0, "default"): "502a91ff494b",
    ("proxy_conv_cifar_slice", "false", 2, "dw_covariance"): "ce41e5e7af09",
    ("convmixer_256_8_cifar10", "true", 0, "default"): "cifar10-convmixer_256_8-default-s0-328f698f",
    ("convmixer_256_8_cifar10", "true", 2, "dw_covariance"): "cifar10-convmixer_256_8-dw_covariance-s2-cd85daae",
    ("convmixer_256_8_cifar10", "false", 0, "default"): "cifar10-convmixer_256_8-default-s0-ae30c972",
    ("convmixer_256_8_cifar10", "false", 2, "dw_covariance"): "cifar10-convmixer_256_8-dw_covariance-s2-ee367cd7",
    ("convnext_cifar10", "true", 0, "default"): "cifar10-convnext_cifar-default-s0-45dc1238",
    ("convnext_cifar10", "true", 2, "dw_covariance"): "cifar10-convnext_cifar-dw_covariance-s2-5d439547",
    ("convnext_cifar10", "false", 0, "default"): "cifar10-convnext_cifar-default-s0-7303f761",
    ("convnext_cifar10", "false", 2, "dw_covariance"): "cifar10-convnext_cifar-dw_covariance-s2-dc7bb005",
}


@pytest.mark.parametrize("key", sorted(FOLDED), ids=lambda k: "-".join(map(str, k)))
def test_a_folded_twin_keeps_its_runs_identity(key):
    """`experiment` is outside the run key, so a frozen run of the old `<name>_frozen` file and the same job
    of `<name>`'s grid (model.freeze_depthwise=true) are one run; the trained jobs (=false) keep theirs too."""
    experiment, frozen, seed, init = key
    job = next(job for job in sweep_jobs([f"experiment={experiment}"])
               if {f"seed={seed}", f"init={init}", f"model.freeze_depthwise={frozen.capitalize()}"} <= set(job))
    cfg = load_config(composed(*job))
    expected = FOLDED[key]
    assert (run_identity(cfg).run_key if expected.startswith("cifar10-") else _digest(cfg)) == expected


@pytest.mark.parametrize("option, overrides, experiment", [
    ("mimetic_opposite", ["init=mimetic", "init.sign_qk=-1", "init.sign_vo=1"], "proxy_wikitext_slice"),
    ("dw_covariance_transfer_proxy", ["init=dw_covariance_transfer", "init.path=results/conv_proxy_covariance.pt"],
     "proxy_conv_cifar_slice"),
    ("dw_iid", ["init=dw_covariance", "init.sigma_first=0.01", "init.sigma_last=0.01"], "proxy_conv_cifar_slice"),
])
def test_a_grid_arm_named_by_an_option_file_is_the_run_its_overrides_make(option, overrides, experiment,
                                                                          monkeypatch):
    monkeypatch.chdir(REPO)  # init.path is relative to the repository root, where train.py runs
    named = load_config(composed(f"experiment={experiment}", "seed=1", f"init={option}"))
    spelled = load_config(composed(f"experiment={experiment}", "seed=1", *overrides))
    assert named.init == spelled.init and _digest(named) == _digest(spelled)


PINNED_ARMS = {  # computed with the spelled-out overrides before the option files existed
    ("proxy_wikitext_slice", "mimetic_opposite"): "38844b492ab4",
    ("proxy_conv_cifar_slice", "dw_iid"): "e6c2933664aa",
}


@pytest.mark.parametrize("key", sorted(PINNED_ARMS), ids="-".join)
def test_option_file_arms_keep_the_runs_made_before_them(key):
    experiment, option = key
    seed = 1 if option == "mimetic_opposite" else 0
    assert _digest(load_config(composed(f"experiment={experiment}", f"seed={seed}", f"init={option}"))) == \
        PINNED_ARMS[key]


# ----------------------------------------------------------------------------- transfer_target's pretrained arm
def test_the_pretrained_arm_copies_from_the_transfer_source_run_it_names(tmp_path, folder_root):
    """init=pretrained_transfer_source: init.checkpoint is the transfer_source run's directory, computed from
    that experiment's config under the job's paths; a job whose source has not finished stops with one
    message naming the command to run first; once it has, the job copies its attention."""
    from fake_data import write_image_folder

    for half, classes in (("source", ("airplane", "bird")), ("target", ("dog", "frog"))):
        write_image_folder(tmp_path / "data" / f"cifar10-jpeg-6k-{half}", classes=classes)
    paths = [f"paths.data_dir={tmp_path / 'data'}", "paths.runs_dir=runs"]  # relative, as by default
    small = ["trainer.smoke=true", "logger.mode=disabled", "trainer.progress=false"]
    target = composed("experiment=transfer_target", "init=pretrained_transfer_source", "seed=2", *paths, *small)
    source_dir = str(Path("runs") / run_identity(load_config(composed("experiment=transfer_source", *paths))).run_key)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with pytest.raises(ConfigError, match="python train.py experiment=transfer_source paths.runs_dir=runs "):
            load_config(target)
        run(composed("experiment=transfer_source", *paths, *small), run_dir=source_dir)  # a stand-in source run
        cfg = load_config(target)
        assert cfg.init.name == "pretrained_attention" and cfg.init.checkpoint == source_dir  # relative, as typed
        spelled = load_config(composed("experiment=transfer_target", "init=pretrained_attention", "seed=2",
                                       f"init.checkpoint={source_dir}", *paths, *small))
        assert run_identity(cfg) == run_identity(spelled)
        run(target, run_dir=tmp_path / "target")
    finally:
        os.chdir(cwd)
    report = json.loads((tmp_path / "target" / "init_diagnostics.json").read_text())
    assert report["init"]["checkpoint"] == source_dir and report["init"]["layers"] == 6  # vit_micro's 6 blocks


def test_experiment_run_names_a_missing_experiment_in_one_message():
    from omegaconf import OmegaConf

    with pytest.raises(ConfigError, match="experiment=no_such_experiment does not compose"):
        resolve_experiment_run("no_such_experiment", OmegaConf.create({"paths": {"runs_dir": "r", "data_dir": "d"}}))
