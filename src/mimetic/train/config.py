"""The typed training config: which schema each group uses, validation, and the run identity.

Groups that *select* something (``model``, ``dataset``, ``aug``, ``init``, ``optim``,
``sched``) are backed by registries: the option's ``name`` picks the registered entry and
its typed schema, which lives beside the code that uses it. :func:`register_configs`
stores every registered option in Hydra's ConfigStore, so ``model=vit_micro`` composes the
schema with its defaults (``python train.py --cfg job`` shows every key) and Hydra itself
rejects an unknown key or a value of the wrong type. :func:`load_config` then builds the
typed config and asks every option for impossible values, so a bad value fails at start
with one message naming the key.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from mimetic.data import AUGS, DATASETS
from mimetic.errors import ConfigError, MimeticError
from mimetic.init import INITS
from mimetic.models import MODELS
from mimetic.registry import Option, Registry
from mimetic.train.optim import OPTIMIZERS, SCHEDULES


@dataclass
class TrainerConfig:
    epochs: int = 100
    max_steps: int = 0  # > 0: stop after this many optimizer steps (the schedule spans them)
    eval_every: int = 0  # > 0: also evaluate every N steps; evaluation always closes an epoch
    checkpoint_every: int = 0  # > 0: also checkpoint every N steps; a checkpoint always closes an epoch
    batch_size: int = 512  # global batch, all processes together
    eval_batch_size: int = 1024
    label_smoothing: float = 0.1  # open choice (not stated in the paper)
    grad_clip: float = 1.0  # max global grad norm; 0 disables (open choice)
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU) | bf16 | fp16 | fp32
    compile: bool = False  # torch.compile the model
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: str = "auto"  # CPU threads: auto (cores free for this rank; see runtime/threads.py) | N
    progress: bool = True  # a progress bar per epoch
    smoke: bool = False  # one optimizer step on a batch of <= 8 and one evaluation batch: "does it run?"


@dataclass
class LoggerConfig:
    """Local files are the source of truth; wandb mirrors them."""

    mode: str = "offline"  # online | offline | disabled
    project: str = "mimetic-init"
    entity: str | None = None
    group: str | None = None  # default: <experiment or dataset>-<model>
    tags: list[str] = field(default_factory=list)
    if_unreachable: str = "offline"  # online mode without key/network: offline (warn) | fail


@dataclass
class PathsConfig:
    runs_dir: str = "runs"  # each run: <runs_dir>/<run key>/
    data_dir: str = "data"  # datasets: <data_dir>/<dataset name> unless dataset.root says otherwise


# Config groups backed by a registry: the option's ``name`` selects entry and schema.
GROUPS: dict[str, Registry] = {
    "model": MODELS, "dataset": DATASETS, "aug": AUGS, "init": INITS, "optim": OPTIMIZERS, "sched": SCHEDULES,
}
FIXED: dict[str, type] = {"trainer": TrainerConfig, "logger": LoggerConfig, "paths": PathsConfig}
FIXED_OPTION_NAMES = {"trainer": "default", "logger": "wandb", "paths": "default"}  # `logger=wandb` etc.

CHOICES = {
    "trainer.precision": ("auto", "bf16", "fp16", "fp32"),
    "logger.mode": ("online", "offline", "disabled"),
    "logger.if_unreachable": ("offline", "fail"),
}

# Keys that do not change what a run computes; left out of the run key so that, e.g.,
# moving the data or switching wandb off still resumes the same run. (The data itself is
# in the key through its fingerprint, not its path.)
NOT_IN_RUN_KEY = (
    "logger", "paths", "experiment", "dataset.root", "dataset.download", "dataset.verify_checksums",
    "dataset.cache_dir", "trainer.device", "trainer.threads", "trainer.progress", "trainer.eval_batch_size",
)


@dataclass
class TrainConfig:
    model: Option
    dataset: Option
    aug: Option
    init: Option
    optim: Option
    sched: Option
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    seed: int = 0
    experiment: str | None = None  # set by configs/experiment/*.yaml; tags and groups the run

    def to_dict(self) -> dict:
        return asdict(self)


def register_configs() -> None:
    """Store every registered option (and the fixed groups) in Hydra's ConfigStore."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for group, registry in GROUPS.items():
        for name in registry:
            store.store(group=group, name=name, node=registry.default_options(name))
    for group, schema in FIXED.items():
        store.store(group=group, name=FIXED_OPTION_NAMES[group], node=schema())


def _user_part(cfg: DictConfig | dict) -> dict:
    """The config as a plain, resolved dict without Hydra's own node."""
    if isinstance(cfg, DictConfig):
        # Copy without the hydra node first: resolving it would recurse into ${run_dir:}.
        user_keys = [k for k in cfg.keys() if k != "hydra"]
        return OmegaConf.to_container(OmegaConf.masked_copy(cfg, user_keys), resolve=True)
    return {k: v for k, v in cfg.items() if k != "hydra"}


def _typed(group: str, schema: type, node: Any) -> Any:
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), node or {})
        return OmegaConf.to_object(merged)
    except ConfigKeyError as err:
        key = f"{group}.{err.full_key}" if err.full_key and not err.full_key.startswith(group) else err.full_key
        raise ConfigError(
            f"unknown config key '{key}'. Check the spelling; `python train.py --cfg job` prints every key."
        ) from None
    except ValidationError as err:
        key = f"{group}.{err.full_key}" if err.full_key and not err.full_key.startswith(group) else err.full_key
        raise ConfigError(f"bad value for '{key}': {str(err).splitlines()[0]}") from None
    except OmegaConfBaseException as err:
        raise ConfigError(f"invalid config in '{group}': {str(err).splitlines()[0]}") from None


def load_config(cfg: DictConfig | dict) -> TrainConfig:
    """Build the typed config from a composed one; ``ConfigError`` naming any bad key or value."""
    try:
        user = _user_part(cfg)
    except OmegaConfBaseException as err:
        raise ConfigError(f"invalid config: {str(err).splitlines()[0]}") from None
    known = set(GROUPS) | set(FIXED) | {"seed", "experiment"}
    unknown = sorted(set(user) - known)
    if unknown:
        raise ConfigError(f"unknown config key '{unknown[0]}'. Top-level keys are: {', '.join(sorted(known))}")
    values: dict[str, Any] = {}
    for group, registry in GROUPS.items():
        node = dict(user.get(group) or {})
        if "name" not in node:
            raise ConfigError(f"{group}.name is missing; choose one of: {', '.join(registry.names())}")
        values[group] = _typed(group, registry.get(node["name"]).schema, node)
    for group, schema in FIXED.items():
        values[group] = _typed(group, schema, user.get(group))
    seed, experiment = user.get("seed", 0), user.get("experiment")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"bad value for 'seed': expected an integer, got {seed!r}")
    typed = TrainConfig(**values, seed=seed, experiment=experiment)
    validate(typed)
    return typed


def _get(cfg: TrainConfig, dotted: str) -> Any:
    value: Any = cfg
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def validate(cfg: TrainConfig) -> None:
    """Reject values that type-check but cannot work, naming the key and the fix."""
    problems: list[str] = []

    def need(ok: bool, message: str) -> None:
        if not ok:
            problems.append(message)

    for group in GROUPS:
        problems += getattr(cfg, group).problems(group)
    for key, allowed in CHOICES.items():
        value = _get(cfg, key)
        need(value in allowed, f"{key}={value!r} is not one of: {', '.join(allowed)}")

    t = cfg.trainer
    need(t.epochs >= 1, f"trainer.epochs must be >= 1, got {t.epochs}")
    for key in ("max_steps", "eval_every", "checkpoint_every"):
        need(getattr(t, key) >= 0, f"trainer.{key} must be >= 0 (0 = off), got {getattr(t, key)}")
    need(t.batch_size > 0, f"trainer.batch_size must be > 0, got {t.batch_size}")
    need(t.eval_batch_size > 0, f"trainer.eval_batch_size must be > 0, got {t.eval_batch_size}")
    need(0 <= t.label_smoothing < 1, f"trainer.label_smoothing must be in [0, 1), got {t.label_smoothing}")
    need(t.grad_clip >= 0, f"trainer.grad_clip must be >= 0 (0 disables), got {t.grad_clip}")
    need(t.threads == "auto" or (t.threads.isdigit() and int(t.threads) > 0),
         f"trainer.threads must be auto or a positive integer, got {t.threads!r}")
    need(t.device == "auto" or t.device == "cpu" or t.device.startswith("cuda"),
         f"trainer.device must be auto, cpu, cuda or cuda:N, got {t.device!r}")
    need(bool(cfg.paths.runs_dir.strip()) and cfg.paths.runs_dir.strip() not in ("/", "~"),
         f"paths.runs_dir={cfg.paths.runs_dir!r} is not a usable directory for runs: give a (new or existing) "
         "folder such as paths.runs_dir=runs")
    problems += _across_groups(cfg)
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))


def _across_groups(cfg: TrainConfig) -> list[str]:
    """Values that each group accepts on its own but that do not work together."""
    out = []
    task = getattr(cfg.dataset, "task", "classification")  # a dataset option may declare its task (wikitext)
    if task != "classification" and cfg.aug.name != "none":
        out.append(f"aug={cfg.aug.name} augments images, but dataset={cfg.dataset.name} is for {task} (no "
                   "images): add aug=none")
    seq_len, block_size = getattr(cfg.dataset, "seq_len", None), getattr(cfg.model, "block_size", None)
    if isinstance(seq_len, int) and isinstance(block_size, int) and seq_len > block_size > 0:
        out.append(f"dataset.seq_len={seq_len} is longer than model.block_size={block_size} (the longest context "
                   f"the model has positions for): set dataset.seq_len={block_size}, or model.block_size={seq_len}")
    return out


# ----------------------------------------------------------------------------- run identity
@dataclass(frozen=True)
class RunIdentity:
    """Names the run dir, the checkpoint's owner and the wandb id. Computed once per run."""

    run_key: str
    config_hash: str
    data_fingerprint: str


def _drop(tree: dict, dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        node = node.get(part, {})
    node.pop(leaf, None)


#: Keys added after runs existed: at this value they stay out of the hash, so those runs keep their
#: identity (and resume); any other value is part of it. (init.solver="auto" is the reference "svd" for
#: every model no wider than 512, i.e. for every run made before the key existed.)
IDENTITY_DEFAULTS = {"init.solver": "auto"}


def _tree_get(tree: dict, dotted: str) -> object:
    node: object = tree
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def config_blob(cfg: TrainConfig) -> str:
    tree = json.loads(json.dumps(cfg.to_dict()))  # deep copy
    for key in NOT_IN_RUN_KEY:
        _drop(tree, key)
    for key, value in IDENTITY_DEFAULTS.items():
        if _tree_get(tree, key) == value:
            _drop(tree, key)
    if getattr(cfg.dataset, "task", "classification") == "language_modeling" and cfg.trainer.label_smoothing:
        # Language-model runs made before the LM loss applied trainer.label_smoothing trained unsmoothed at any
        # value: tagged, a smoothed run never resumes (or skips as finished) such a run's directory.
        tree["lm_loss_smoothed"] = True
    return json.dumps(tree, sort_keys=True, separators=(",", ":"))


@functools.lru_cache(maxsize=64)
def _identity(blob: str, dataset: Option, dataset_name: str, model_name: str, init_name: str,
              seed: int) -> RunIdentity:
    fingerprint_fn = getattr(dataset, "fingerprint", None)
    fingerprint = fingerprint_fn() if fingerprint_fn is not None else ""
    digest = hashlib.sha1(f"{blob}|data:{fingerprint}".encode()).hexdigest()[:8]
    return RunIdentity(f"{dataset_name}-{model_name}-{init_name}-s{seed}-{digest}", digest, fingerprint)


def run_identity(cfg: TrainConfig) -> RunIdentity:
    """``<dataset>-<model>-<init>-s<seed>-<hash>``; the hash covers everything that changes what
    the run computes, including the data's fingerprint (file names and sizes, not its path)."""
    key = (config_blob(cfg), _Frozen(cfg.dataset), cfg.dataset.name, cfg.model.name, cfg.init.name, cfg.seed)
    return _identity(*key)


class _Frozen:
    """Hashable wrapper so a dataset option can key the identity cache (by its values)."""

    def __init__(self, option: Option):
        self.option = option
        self._key = json.dumps(asdict(option), sort_keys=True)

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Frozen) and other._key == self._key

    def fingerprint(self) -> str:
        fn = getattr(self.option, "fingerprint", None)
        return fn() if fn is not None else ""


def config_hash(cfg: TrainConfig) -> str:
    return run_identity(cfg).config_hash


def run_key(cfg: TrainConfig) -> str:
    return run_identity(cfg).run_key


__all__ = ["MimeticError", "TrainConfig", "load_config", "register_configs", "run_identity", "run_key"]


# Registering at import lets any Hydra compose (tests, notebooks) find the options.
register_configs()
