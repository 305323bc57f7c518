"""Every registered option composes and validates; the run key is deterministic; bad values are named."""

import dataclasses

import pytest
from helpers import CONFIGS, composed
from omegaconf import OmegaConf

from mimetic.errors import ConfigError
from mimetic.train.config import GROUPS, load_config, run_key


def test_defaults_are_the_papers_vit_tiny_cifar10_recipe():
    cfg = load_config(composed())
    m, t, o = cfg.model, cfg.trainer, cfg.optim
    assert (m.dim, m.depth, m.heads, m.mlp_ratio, m.patch_size, m.img_size) == (192, 12, 3, 4.0, 2, 32)
    assert (m.pooling, m.pos_embed) == ("token", "sincos")
    assert cfg.dataset.name == "cifar10" and cfg.aug.name == "randaug_cutout"
    assert (cfg.aug.randaug_ops, cfg.aug.cutout) == (2, 16)
    assert (o.name, o.lr, o.weight_decay) == ("adamw", 3e-3, 0.01)
    assert (t.epochs, t.batch_size) == (100, 512)
    assert cfg.init.name == "default"


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_every_registered_option_composes_and_selects_its_schema(group):
    """Each option composes with its own schema; one that needs a value (a checkpoint, a file)
    is refused by name until it gets one."""
    registry = GROUPS[group]
    assert registry.names(), group
    for option in registry.names():
        needs = registry.default_options(option).problems(group)
        # A dataset that is not images (wikitext103) takes no image augmentation: aug=none, as its experiments say.
        text = group == "dataset" and getattr(registry.get(option).schema, "task", "classification") != "classification"
        others = ["aug=none"] if text else []
        if needs:
            with pytest.raises(ConfigError) as err:
                load_config(composed(f"{group}={option}", *others))
            assert all(message in str(err.value) for message in needs), option
            continue
        chosen = getattr(load_config(composed(f"{group}={option}", *others)), group)
        assert chosen.name == option and isinstance(chosen, registry.get(option).schema)


def test_groups_list_only_what_is_registered():
    """No hand-kept list of names: an unknown option is refused by Hydra with the registered ones."""
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException) as err:
        composed("model=vit_gigantic")
    for name in GROUPS["model"].names():
        assert name in str(err.value)


def test_option_files_carry_only_their_own_keys():
    """A group option has its own schema: mimetic's coefficients are not keys of init=default."""
    default = load_config(composed("init=default")).init
    mimetic = load_config(composed("init=mimetic")).init
    assert not hasattr(default, "alpha_qk") and mimetic.alpha_qk == 0.7
    with pytest.raises(Exception, match="alpha_qk"):
        load_config(composed("init=default", "init.alpha_qk=0.5"))


def test_alpha_beta_defaults_exist_once():
    """The coefficients' defaults live in one place in the code, nowhere in YAML."""
    import re
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src"
    hits = [p for p in src.rglob("*.py") if re.search(r"alpha_qk\s*(:\s*float\s*)?=\s*0\.7", p.read_text())]
    assert len(hits) <= 1, hits
    assert not [p for p in CONFIGS.rglob("*.yaml") if "alpha_qk: 0.7" in p.read_text()]


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml")))
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
    key = run_key(load_config(composed("init=mimetic", "seed=1", "dataset=digits")))
    assert key == run_key(load_config(composed("init=mimetic", "seed=1", "dataset=digits")))
    assert key.startswith("digits-vit_tiny-mimetic-s1-")
    # Irrelevant to the result: same key (the run resumes).
    assert key == run_key(load_config(composed("init=mimetic", "seed=1", "dataset=digits", "logger.mode=disabled",
                                               "trainer.progress=false", "dataset.root=/elsewhere")))
    # Relevant: different keys, so two jobs never share a directory.
    for change in ("seed=2", "optim.lr=1e-3", "init.alpha_qk=0.5", "model.freeze=[head.*]", "trainer.max_steps=5"):
        other = [o for o in ("init=mimetic", "seed=1", "dataset=digits") if o.split("=")[0] != change.split("=")[0]]
        assert key != run_key(load_config(composed(*other, change))), change


def test_hydra_run_dir_is_the_run_key():
    cfg = composed("init=mimetic", "paths.runs_dir=/tmp/r", "dataset=digits", hydra_node=True)
    run_dir = OmegaConf.to_container(cfg.hydra.run, resolve=True)["dir"]
    assert run_dir == "/tmp/r/" + run_key(load_config(cfg))


def test_a_sweep_with_a_relative_runs_dir_does_not_nest(monkeypatch, tmp_path):
    import os

    monkeypatch.chdir(tmp_path)
    cfg = composed("paths.runs_dir=runs", "dataset=digits", hydra_node=True)
    sweep = OmegaConf.to_container(cfg.hydra.sweep, resolve=True)
    assert os.path.join(sweep["dir"], sweep["subdir"]) == str(tmp_path / "runs" / run_key(load_config(cfg)))


def test_an_invalid_config_gets_a_placeholder_dir_outside_runs():
    cfg = composed("model.heads=5", "paths.runs_dir=/tmp/r", "dataset=digits", hydra_node=True)
    run_dir = OmegaConf.to_container(cfg.hydra.run, resolve=True)["dir"]
    assert not run_dir.startswith("/tmp/r") and "mimetic-invalid-config" in run_dir


@pytest.mark.parametrize(
    "override,message",
    [
        ("model.heads=5", "model.heads=5 does not divide model.dim=192"),
        ("model.dim=2", "sin-cos position embedding needs a width divisible by 4"),
        ("trainer.batch_size=0", "trainer.batch_size must be > 0"),
        ("trainer.epochs=0", "trainer.epochs must be >= 1"),
        ("trainer.max_steps=-1", "trainer.max_steps must be >= 0"),
        ("model.patch_size=5", "model.patch_size=5 does not divide model.img_size=32"),
        ("dataset.val_fraction=1.5", "dataset.val_fraction must be in [0, 1)"),
        ("trainer.precision=fp8", "trainer.precision='fp8' is not one of"),
        ("logger.mode=sometimes", "logger.mode='sometimes' is not one of"),
        ("paths.runs_dir=", "paths.runs_dir='' is not a usable directory"),
        ("aug.randaug_magnitude=31", "aug.randaug_magnitude must be in [0, 30]"),
        ("model.pooling=max", "model.pooling='max' is not one of"),
    ],
)
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(composed(override))
    assert message in str(err.value)


@pytest.mark.parametrize("override,message", [("init.alpha_qk=-0.1", "init.alpha_qk"),
                                              ("init.beta_vo=inf", "init.beta_vo"),
                                              ("init.alpha_qk=nan", "init.alpha_qk")])
def test_bad_coefficients_name_the_key(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(composed("init=mimetic", override))
    assert message in str(err.value)


def test_pretrained_attention_needs_a_checkpoint():
    with pytest.raises(ConfigError, match="init.checkpoint"):
        load_config(composed("init=pretrained_attention"))
    with pytest.raises(ConfigError, match="no such file"):
        load_config(composed("init=pretrained_attention", "init.checkpoint=/nowhere/vit.pth"))


def test_wrong_types_and_unknown_keys_are_refused_at_compose_time():
    from hydra.errors import ConfigCompositionException

    for override, key in (("trainer.batch_size=abc", "trainer.batch_size"), ("model.dimm=3", "dimm")):
        with pytest.raises(ConfigCompositionException) as err:
            composed(override)
        assert key in str(err.value) + str(err.value.__cause__)
    # `+key=value` appends past the schema; the typed load then names the key.
    with pytest.raises(ConfigError, match="unknown config key 'trainer.batchsize'"):
        load_config(composed("+trainer.batchsize=64"))


def test_load_config_names_bad_keys_in_plain_dicts():
    """The same checks hold for configs built without Hydra (e.g. from a saved config.yaml)."""
    base = dataclasses.asdict(load_config(composed("dataset=digits")))
    base["trainer"]["batchsize"] = 3
    with pytest.raises(ConfigError, match="unknown config key 'trainer.batchsize'"):
        load_config(base)


@pytest.mark.parametrize("env,mode", [(None, "offline"), ("", "offline"), ("dryrun", "offline"), ("online", "online"),
                                      ("disabled", "disabled")])
def test_logger_mode_follows_wandb_mode(monkeypatch, env, mode):
    if env is None:
        monkeypatch.delenv("WANDB_MODE", raising=False)
    else:
        monkeypatch.setenv("WANDB_MODE", env)
    assert load_config(composed("dataset=digits")).logger.mode == mode


LM_CONFIG = ["model=gpt_micro", "dataset=wikitext103", "trainer.label_smoothing=0", "dataset.root=/unused"]


def test_language_model_refuses_image_augmentation_in_one_message():
    with pytest.raises(ConfigError) as err:
        load_config(composed(*LM_CONFIG, "dataset.seq_len=64"))  # the default aug: randaug_cutout
    assert "aug=randaug_cutout augments images, but dataset=wikitext103 is for language_modeling" in str(err.value)
    assert "add aug=none" in str(err.value)
    with pytest.raises(ConfigError, match="aug=basic augments images"):
        load_config(composed(*LM_CONFIG, "dataset.seq_len=64", "aug=basic"))
    assert load_config(composed(*LM_CONFIG, "dataset.seq_len=64", "aug=none")).aug.name == "none"


def test_a_window_longer_than_the_context_is_refused_naming_both_keys():
    with pytest.raises(ConfigError) as err:
        load_config(composed(*LM_CONFIG, "aug=none", "model.block_size=64", "dataset.seq_len=512"))
    assert str(err.value) == ("invalid config:\n  dataset.seq_len=512 is longer than model.block_size=64 (the longest "
                              "context the model has positions for): set dataset.seq_len=64, or model.block_size=512")


@pytest.mark.parametrize("experiment,seq_len", [("proxy_wikitext_slice", 64), ("gpt_wikitext103", 512)])
def test_a_larger_block_size_adds_positions_not_window_length(experiment, seq_len):
    """model.block_size=100000 used to set every window to 100,000 tokens (seq_len followed it): a first step
    that never finished. The window is the experiment's own value; the block only sizes the position table."""
    cfg = load_config(composed(f"experiment={experiment}", "model.block_size=100000", "dataset.root=/unused"))
    assert cfg.dataset.seq_len == seq_len and cfg.model.block_size == 100000
    assert load_config(composed(f"experiment={experiment}", "dataset.root=/unused")).model.block_size == seq_len


def test_lm_label_smoothing_tags_the_identity_only_where_it_now_changes_the_loss():
    from mimetic.train.config import config_blob

    lm = ["model=gpt_micro", "dataset=wikitext103", "aug=none", "dataset.seq_len=64", "dataset.root=/unused"]
    assert "lm_loss_smoothed" not in config_blob(load_config(composed(*lm, "trainer.label_smoothing=0")))
    assert '"lm_loss_smoothed":true' in config_blob(load_config(composed(*lm, "trainer.label_smoothing=0.1")))
    assert "lm_loss_smoothed" not in config_blob(load_config(composed("dataset=digits")))  # classification: as before


def test_a_sweep_job_lands_below_hydra_sweep_dir(tmp_path):
    import os

    cfg = composed("paths.runs_dir=/tmp/r", "dataset=digits", f"hydra.sweep.dir={tmp_path}", hydra_node=True)
    sweep = OmegaConf.to_container(cfg.hydra.sweep, resolve=True)
    assert os.path.join(sweep["dir"], sweep["subdir"]) == str(tmp_path / run_key(load_config(cfg)))
    default = OmegaConf.to_container(composed("paths.runs_dir=/tmp/r", "dataset=digits", hydra_node=True).hydra.sweep,
                                     resolve=True)
    assert os.path.join(default["dir"], default["subdir"]) == "/tmp/r/" + run_key(load_config(cfg))
    invalid = OmegaConf.to_container(composed("model.heads=5", "dataset=digits", f"hydra.sweep.dir={tmp_path}",
                                              hydra_node=True).hydra.sweep, resolve=True)
    assert "mimetic-invalid-config" in os.path.join(invalid["dir"], invalid["subdir"])
    assert not os.path.join(invalid["dir"], invalid["subdir"]).startswith(str(tmp_path))
