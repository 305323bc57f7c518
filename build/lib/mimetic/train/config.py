"""The typed training config: schema, validation and the run key.

Hydra composes YAML from ``configs/``; :func:`load_config` merges the result into the
dataclass schema below, so an unknown key or a value of the wrong type fails at start
with one message naming the key, and :func:`validate` rejects impossible values.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from mimetic.errors import ConfigError


@dataclass
class ModelConfig:
    name: str = "vit_tiny"
    dim: int = 192
    depth: int = 12
    heads: int = 3
    mlp_ratio: float = 4.0
    patch_size: int = 2
    img_size: int = 32
    pooling: str = "token"  # token (class token) | mean (global average pooling)
    pos_embed: str = "sincos"  # sincos (fixed) | learned
    drop_path: float = 0.0


@dataclass
class DatasetConfig:
    name: str = "cifar10"
    root: str = "data/cifar10"
    download: bool = False
    val_fraction: float = 0.0
    verify_checksums: bool = True


@dataclass
class AugConfig:
    name: str = "randaug_cutout"
    crop_padding: int = 4
    flip: bool = True
    randaug_ops: int = 2
    randaug_magnitude: int = 9
    cutout: int = 16


@dataclass
class InitConfig:
    name: str = "default"
    alpha_qk: float = 0.7
    beta_qk: float = 0.7
    alpha_vo: float = 0.4
    beta_vo: float = 0.4
    checkpoint: str | None = None


@dataclass
class OptimConfig:
    name: str = "adamw"
    lr: float = 3e-3
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])


@dataclass
class SchedConfig:
    name: str = "warmup_cosine"
    warmup_epochs: float = 5.0
    warmup_lr: float = 1e-6
    min_lr: float = 1e-5


@dataclass
class TrainerConfig:
    epochs: int = 100
    batch_size: int = 512
    eval_batch_size: int = 1024
    label_smoothing: float = 0.1
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp16 | fp32
    compile: bool = False
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    progress: bool = True


@dataclass
class LoggerConfig:
    mode: str = "offline"  # online | offline | disabled
    project: str = "mimetic-init"
    entity: str | None = None
    group: str | None = None  # default: <experiment or dataset>-<model>
    tags: list[str] = field(default_factory=list)


@dataclass
class PathsConfig:
    runs_dir: str = "runs"
    data_dir: str = "data"


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    aug: AugConfig = field(default_factory=AugConfig)
    init: InitConfig = field(default_factory=InitConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sched: SchedConfig = field(default_factory=SchedConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    seed: int = 0
    experiment: str | None = None  # set by configs/experiment/*.yaml; tags and groups the run


CHOICES = {
    "model.name": ("vit_tiny", "vit_micro", "vit"),
    "model.pooling": ("token", "mean"),
    "model.pos_embed": ("sincos", "learned"),
    "dataset.name": ("cifar10", "cifar100", "svhn", "image_folder", "digits"),
    "aug.name": ("randaug_cutout", "basic", "none", "custom"),
    "init.name": ("default", "mimetic", "mimetic_qk", "mimetic_vo", "pretrained_attention"),
    "optim.name": ("adamw",),
    "sched.name": ("warmup_cosine",),
    "trainer.precision": ("auto", "bf16", "fp16", "fp32"),
    "logger.mode": ("online", "offline", "disabled"),
}

# Keys that do not change what a run computes; left out of the run key so that, e.g.,
# moving the data or switching wandb off still resumes the same run.
NOT_IN_RUN_KEY = (
    "logger",
    "paths",
    "experiment",
    "dataset.root",
    "dataset.download",
    "dataset.verify_checksums",
    "trainer.device",
    "trainer.progress",
    "trainer.eval_batch_size",
)


def _user_part(cfg: DictConfig | dict) -> dict:
    """The config as a plain dict without Hydra's own node."""
    if isinstance(cfg, DictConfig):
        # Copy without the hydra node first: resolving it would recurse into ${run_key:}.
        user_keys = [k for k in cfg.keys() if k != "hydra"]
        return OmegaConf.to_container(OmegaConf.masked_copy(cfg, user_keys), resolve=True)
    return {k: v for k, v in cfg.items() if k != "hydra"}


def load_config(cfg: DictConfig | dict) -> TrainConfig:
    """Merge a composed config into the schema; raise ``ConfigError`` naming any bad key."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(TrainConfig), _user_part(cfg))
        typed: TrainConfig = OmegaConf.to_object(merged)
    except ConfigKeyError as err:
        raise ConfigError(
            f"unknown config key '{err.full_key}'. Check the spelling; `python train.py --cfg job` "
            "prints every key."
        ) from None
    except ValidationError as err:
        reason = str(err).splitlines()[0]
        raise ConfigError(f"bad value for '{err.full_key}': {reason}") from None
    except OmegaConfBaseException as err:
        raise ConfigError(f"invalid config: {str(err).splitlines()[0]}") from None
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

    for key, allowed in CHOICES.items():
        value = _get(cfg, key)
        need(value in allowed, f"{key}={value!r} is not one of: {', '.join(allowed)}")

    m = cfg.model
    need(m.dim > 0 and m.depth > 0 and m.heads > 0, "model.dim, model.depth and model.heads must be > 0")
    if m.heads > 0:
        need(m.dim % m.heads == 0, f"model.heads={m.heads} does not divide model.dim={m.dim}")
    need(m.patch_size > 0 and m.img_size > 0, "model.patch_size and model.img_size must be > 0")
    if m.patch_size > 0:
        need(m.img_size % m.patch_size == 0,
             f"model.patch_size={m.patch_size} does not divide model.img_size={m.img_size}")
    need(m.mlp_ratio > 0, f"model.mlp_ratio must be > 0, got {m.mlp_ratio}")
    need(0 <= m.drop_path < 1, f"model.drop_path must be in [0, 1), got {m.drop_path}")

    d = cfg.dataset
    need(0 <= d.val_fraction < 1, f"dataset.val_fraction must be in [0, 1), got {d.val_fraction}")

    a = cfg.aug
    need(a.crop_padding >= 0 and a.cutout >= 0 and a.randaug_ops >= 0,
         "aug.crop_padding, aug.cutout and aug.randaug_ops must be >= 0")
    need(0 <= a.randaug_magnitude <= 30, f"aug.randaug_magnitude must be in [0, 30], got {a.randaug_magnitude}")

    i = cfg.init
    for key in ("alpha_qk", "beta_qk", "alpha_vo", "beta_vo"):
        value = getattr(i, key)
        need(value >= 0, f"init.{key} must be >= 0, got {value} (the method fixes the signs: +I for QK, -I for VO)")
    if i.name == "pretrained_attention":
        need(bool(i.checkpoint),
             "init=pretrained_attention needs init.checkpoint=<.pth/.safetensors file or timm name>")

    o = cfg.optim
    need(o.lr > 0, f"optim.lr must be > 0, got {o.lr}")
    need(o.weight_decay >= 0, f"optim.weight_decay must be >= 0, got {o.weight_decay}")
    need(len(o.betas) == 2 and all(0 <= b < 1 for b in o.betas),
         f"optim.betas must be two numbers in [0, 1), got {o.betas}")

    s = cfg.sched
    need(s.warmup_epochs >= 0, f"sched.warmup_epochs must be >= 0, got {s.warmup_epochs}")
    need(s.min_lr >= 0 and s.warmup_lr >= 0, "sched.min_lr and sched.warmup_lr must be >= 0")

    t = cfg.trainer
    need(t.epochs >= 1, f"trainer.epochs must be >= 1, got {t.epochs}")
    need(t.batch_size > 0, f"trainer.batch_size must be > 0, got {t.batch_size}")
    need(t.eval_batch_size > 0, f"trainer.eval_batch_size must be > 0, got {t.eval_batch_size}")
    need(0 <= t.label_smoothing < 1, f"trainer.label_smoothing must be in [0, 1), got {t.label_smoothing}")
    need(t.grad_clip >= 0, f"trainer.grad_clip must be >= 0 (0 disables), got {t.grad_clip}")
    need(t.device == "auto" or t.device == "cpu" or t.device.startswith("cuda"),
         f"trainer.device must be auto, cpu, cuda or cuda:N, got {t.device!r}")

    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))


def _drop(tree: dict, dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        node = node.get(part, {})
    node.pop(leaf, None)


def config_hash(cfg: TrainConfig | DictConfig | dict) -> str:
    """A stable hash of everything that changes what a run computes."""
    if isinstance(cfg, TrainConfig):
        tree = OmegaConf.to_container(OmegaConf.structured(cfg))
    else:
        tree = _user_part(cfg)
    tree = json.loads(json.dumps(tree))  # deep copy
    for key in NOT_IN_RUN_KEY:
        _drop(tree, key)
    blob = json.dumps(tree, sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(blob.encode()).hexdigest()[:8]


def run_key(cfg: TrainConfig) -> str:
    """``<dataset>-<model>-<init>-s<seed>-<hash>``: names the run dir, checkpoint and wandb id."""
    return f"{cfg.dataset.name}-{cfg.model.name}-{cfg.init.name}-s{cfg.seed}-{config_hash(cfg)}"


def run_key_from_composed(root: DictConfig) -> str:
    """``run_key`` for Hydra's ``hydra.run.dir`` interpolation (``${run_key:}``).

    A config that does not validate still gets a readable (hash-of-what-was-given) name,
    so that Hydra can start and the run can report the real problem with a clear message.
    """
    user = _user_part(root)
    try:
        return run_key(load_config(user))
    except ConfigError:
        pick = lambda group: (user.get(group) or {}).get("name", "unknown")  # noqa: E731
        return f"{pick('dataset')}-{pick('model')}-{pick('init')}-s{user.get('seed')}-invalid"
