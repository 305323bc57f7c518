"""Every config composes and validates; the run key is deterministic; bad values are named."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from mimetic.errors import ConfigError
from mimetic.train.config import load_config, run_key

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def composed(*overrides: str, hydra_node: bool = False):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides), return_hydra_config=hydra_node)


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def test_defaults_are_the_papers_vit_tiny_cifar10_recipe():
    cfg = load_config(composed())
    m, t, o = cfg.model, cfg.trainer, cfg.optim
    assert (m.dim, m.depth, m.heads, m.mlp_ratio, m.patch_size, m.img_size) == (192, 12, 3, 4.0, 2, 32)
    assert (m.pooling, m.pos_embed) == ("token", "sincos")
    assert cfg.dataset.name == "cifar10" and cfg.aug.name == "randaug_cutout"
    assert (o.name, o.lr, o.weight_decay) == ("adamw", 3e-3, 0.01)
    assert (t.epochs, t.batch_size) == (100, 512)
    assert cfg.init.name == "default"


@pytest.mark.parametrize("group", ["model", "dataset", "aug", "init", "optim", "sched", "trainer", "logger"])
def test_every_option_of_every_group_composes(group):
    for option in options(group):
        overrides = [f"{group}={option}"]
        if option == "pretrained_attention":
            overrides.append("init.checkpoint=/some/vit.pth")
        cfg = load_config(composed(*overrides))
        if group in ("model", "dataset", "aug", "init"):
            assert getattr(cfg, group).name == option


@pytest.mark.parametrize("experiment", options("experiment"))
def test_experiment_configs_compose(experiment):
    cfg = load_config(composed(f"experiment={experiment}"))
    assert cfg.experiment == experiment


def test_init_options_carry_their_coefficients():
    cfg = load_config(composed("init=mimetic", "init.alpha_qk=0.5"))
    assert (cfg.init.alpha_qk, cfg.init.beta_qk, cfg.init.alpha_vo, cfg.init.beta_vo) == (0.5, 0.7, 0.4, 0.4)


def test_slurm_launcher_config_composes():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    cfg = composed("hydra/launcher=slurm", hydra_node=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.gpus_per_node == 1 and launcher.max_num_timeout > 0


def test_run_key_is_deterministic_and_separates_configs():
    key = run_key(load_config(composed("init=mimetic", "seed=1")))
    assert key == run_key(load_config(composed("init=mimetic", "seed=1")))
    assert key.startswith("cifar10-vit_tiny-mimetic-s1-")
    # Irrelevant to the result: same key (the run resumes).
    assert key == run_key(load_config(composed("init=mimetic", "seed=1", "logger.mode=disabled",
                                               "dataset.root=/elsewhere", "trainer.progress=false")))
    # Relevant: different keys, so two jobs never share a directory.
    assert key != run_key(load_config(composed("init=mimetic", "seed=2")))
    assert key != run_key(load_config(composed("init=mimetic", "seed=1", "optim.lr=1e-3")))
    assert key != run_key(load_config(composed("init=mimetic", "seed=1", "init.alpha_qk=0.5")))


def test_hydra_run_dir_is_the_run_key():
    from mimetic.cli import register_resolvers

    register_resolvers()
    cfg = composed("init=mimetic", "paths.runs_dir=/tmp/r", hydra_node=True)
    run_dir = OmegaConf.to_container(cfg.hydra.run, resolve=True)["dir"]
    assert run_dir == "/tmp/r/" + run_key(load_config(cfg))


@pytest.mark.parametrize(
    "override,message",
    [
        ("model.heads=5", "model.heads=5 does not divide model.dim=192"),
        ("trainer.batch_size=0", "trainer.batch_size must be > 0"),
        ("trainer.epochs=0", "trainer.epochs must be >= 1"),
        ("init.alpha_qk=-0.1", "init.alpha_qk must be >= 0"),
        ("init.beta_vo=-1", "init.beta_vo must be >= 0"),
        ("model.patch_size=5", "model.patch_size=5 does not divide model.img_size=32"),
        ("dataset.val_fraction=1.5", "dataset.val_fraction must be in [0, 1)"),
        ("trainer.precision=fp8", "trainer.precision='fp8' is not one of"),
        ("logger.mode=sometimes", "logger.mode='sometimes' is not one of"),
        ("trainer.batch_size=abc", "bad value for 'trainer.batch_size'"),
        ("+trainer.batchsize=64", "unknown config key 'trainer.batchsize'"),
    ],
)
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(composed(override))
    assert message in str(err.value)


def test_pretrained_attention_needs_a_checkpoint():
    with pytest.raises(ConfigError, match="init.checkpoint"):
        load_config(composed("init=pretrained_attention"))


@pytest.mark.parametrize("group", ["model", "dataset", "aug", "init", "optim", "sched", "trainer", "logger"])
def test_every_option_lists_every_schema_key(group):
    """So that `group.key=value` works on the command line whatever option is chosen."""
    import dataclasses

    from mimetic.train.config import TrainConfig

    schema = next(f for f in dataclasses.fields(TrainConfig) if f.name == group).default_factory()
    for option in options(group):
        keys = set(OmegaConf.load(CONFIGS / group / f"{option}.yaml").keys())
        assert keys == {f.name for f in dataclasses.fields(schema)}, option
